//! `--workload onnx`'s flags: the ONNX file and how ONNX Runtime runs it,
//! turned into `ort_backend`'s options.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where `joulebench run --help` lists these options.
const ORT_HEADING: &str = "ONNX models (onnx)";

#[derive(Debug, Clone, Args)]
pub struct OrtArgs {
    /// The .onnx file `--workload onnx` runs through ONNX Runtime (found through
    /// ORT_DYLIB_PATH, `pip install onnxruntime`, or the system's library).
    #[arg(long, value_name = "FILE", help_heading = ORT_HEADING)]
    pub model_file: Option<PathBuf>,

    /// The size of one of the model's named dynamic dimensions, e.g. `--dim sequence=128`;
    /// repeatable. The first dimension is the batch (--batch-size).
    #[arg(long = "dim", value_name = "NAME=N", help_heading = ORT_HEADING)]
    pub dims: Vec<String>,

    /// ONNX Runtime's threads inside one session (intra-op). Default: one per core.
    #[arg(long, value_name = "N", help_heading = ORT_HEADING)]
    pub ort_threads: Option<usize>,

    /// Graph optimisation: 0 none, 1 basic, 2 extended, 3 all.
    #[arg(long, value_name = "LEVEL", default_value = "3", value_parser = clap::value_parser!(u8).range(0..=3), help_heading = ORT_HEADING)]
    pub ort_optimization: u8,

    /// A folder with one `<input name>.npy` per model input, or an .npz archive of them
    /// (np.savez), the first dimension counting the samples. Default: seeded synthetic inputs.
    #[arg(long, value_name = "DIR|FILE.npz", help_heading = ORT_HEADING)]
    pub inputs: Option<PathBuf>,

    /// Synthetic integer inputs (token ids) are drawn from [0, N); inputs named *mask* are 1.
    #[arg(long, value_name = "N", default_value = "100", help_heading = ORT_HEADING)]
    pub int_max: i64,

    /// On a GPU (--device cuda:N): cuda, or tensorrt (TensorRT takes the nodes it can, CUDA
    /// the rest; needs onnxruntime-gpu and TensorRT's libnvinfer). Refused, never swapped,
    /// when the loaded ONNX Runtime lacks it.
    #[arg(long, value_name = "PROVIDER", value_enum, help_heading = ORT_HEADING)]
    pub ort_provider: Option<GpuProvider>,

    /// Where TensorRT keeps the engines it builds (minutes each; reused when the model,
    /// shapes and GPU match). Default: $JOULEBENCH_CACHE/tensorrt, else
    /// ~/.cache/joulebench/tensorrt.
    #[arg(long, value_name = "DIR", help_heading = ORT_HEADING)]
    pub tensorrt_cache: Option<PathBuf>,
}

/// The execution providers of a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuProvider {
    Cuda,
    Tensorrt,
}

impl OrtArgs {
    /// `images`: the run's --image-folder and --image-preprocess; `text`:
    /// its --dataset and --tokenizer.
    pub fn options(
        &self,
        images: workloads::builtin::image::ImageOptions,
        text: &crate::model_args::TextArgs,
        on_gpu: bool,
    ) -> Result<ort_backend::OrtOptions> {
        let tensorrt_cache = match self.ort_provider {
            Some(_) if !on_gpu => bail!("--ort-provider is for a GPU: add --device cuda:N"),
            Some(GpuProvider::Tensorrt) => Some(match &self.tensorrt_cache {
                Some(dir) => dir.clone(),
                None => workloads::datasets::cache_dir()
                    .context("--ort-provider tensorrt: no HOME or JOULEBENCH_CACHE for its engine cache; give --tensorrt-cache DIR")?
                    .join("tensorrt"),
            }),
            _ if self.tensorrt_cache.is_some() => {
                bail!("--tensorrt-cache goes with --ort-provider tensorrt")
            }
            _ => None,
        };
        let text = match (&text.dataset, &text.tokenizer) {
            (Some(d), Some(t)) => Some((d.clone(), t.clone())),
            (Some(_), None) => bail!("--workload onnx --dataset needs --tokenizer tokenizer.json"),
            (None, _) => None,
        };
        let model = self.model_file.clone().context(
            "--workload onnx needs --model-file FILE.onnx (--model names the conf files' model)",
        )?;
        if self.ort_threads == Some(0) {
            bail!("--ort-threads must be at least 1");
        }
        if self.int_max < 1 {
            bail!("--int-max must be at least 1");
        }
        let mut dims = BTreeMap::new();
        for d in &self.dims {
            let (name, n) = d
                .split_once('=')
                .with_context(|| format!("--dim {d}: expected NAME=N, e.g. sequence=128"))?;
            let n: usize = n
                .trim()
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("--dim {d}: N must be a positive whole number"))?;
            dims.insert(name.trim().to_string(), n);
        }
        Ok(ort_backend::OrtOptions {
            model,
            threads: self.ort_threads,
            optimization: self.ort_optimization,
            dims,
            int_max: self.int_max,
            inputs: self.inputs.clone(),
            images,
            text,
            tensorrt_cache,
        })
    }
}
