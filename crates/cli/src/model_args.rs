//! The model flags of `joulebench run` (`--device`, `--weights`,
//! `--batch-size`, the image and text data options) and their mapping to
//! `workloads::builtin`'s options, which build and check the model.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use workloads::builtin::image::{ImageOptions, Preprocessing};
use workloads::builtin::text::TextOptions;
use workloads::builtin::ModelOptions;
use workloads::device::DeviceSpec;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,

    /// Several devices serving one queue (image models): `all` (every GPU), GPU indices
    /// (`0,2`), or device names (`cuda:0,cuda:1`; `cpu,cpu` runs two CPU model copies). Each
    /// device gets its own model copy and --workers threads; whichever is free takes the next
    /// batch, and a device that fails hands its work to the others. Overrides --device.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,

    /// Weights: a .safetensors or .onnx file, a folder with model.safetensors, or hf:ORG/NAME
    /// (local Hugging Face cache). Default: seeded random weights (performance and energy only).
    #[arg(long, value_name = "PATH")]
    pub weights: Option<String>,

    /// Largest batch a worker runs.
    #[arg(long, default_value = "32")]
    pub batch_size: usize,

    /// Longest a sample waits for its batch to fill (dynamic batching, Server).
    #[arg(long, default_value = "2ms", value_parser = crate::run::parse_duration)]
    pub max_wait: Duration,

    /// Inference worker threads per device (each runs whole batches). Default: 1, and 2 per
    /// GPU for the image models and ONNX models, so that one worker gathers and copies its
    /// batch while the other's runs (on an H100, ResNet-50: 1.56× built in, 1.42× through
    /// ONNX Runtime: docs/runtime-choice.md, docs/measurements.md).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Real images: a folder in ImageNet validation layout (val_map.txt with `FILE LABEL`
    /// lines, JPEG/PNG files), preprocessed when loaded, before the timed run; its size replaces
    /// --samples. Score the accuracy log with `joulebench accuracy --kind top1`. Default:
    /// synthetic images.
    #[arg(long, value_name = "DIR", help_heading = IMAGE_HEADING)]
    pub image_folder: Option<PathBuf>,

    /// How --image-folder images are preprocessed (resize shorter side to 256, centre 224).
    #[arg(
        long,
        value_enum,
        default_value = "torchvision",
        help_heading = IMAGE_HEADING
    )]
    pub image_preprocess: ImagePreprocessing,
}

/// Where `joulebench run --help` lists the image data options.
const IMAGE_HEADING: &str = "Image models (resnet50, resnet18)";

/// MLPerf's two ResNet-50 reference preprocessings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagePreprocessing {
    /// MLPerf's PyTorch reference (what torchvision-layout weights expect): Pillow bilinear
    /// resize, ImageNet mean/std on [0, 1] pixels.
    Torchvision,
    /// MLPerf's ONNX/TensorFlow reference: OpenCV INTER_AREA resize, channel means subtracted
    /// from 0-255 pixels.
    Opencv,
}

impl From<ImagePreprocessing> for Preprocessing {
    fn from(p: ImagePreprocessing) -> Preprocessing {
        match p {
            ImagePreprocessing::Torchvision => Preprocessing::Torchvision,
            ImagePreprocessing::Opencv => Preprocessing::Opencv,
        }
    }
}

/// Where `joulebench run --help` lists these options.
const TEXT_HEADING: &str = "Text models (minilm, gpt2)";

#[derive(Debug, Clone, Args)]
pub struct TextArgs {
    /// tokenizer.json. Default: the one beside --weights; with none, inputs are a synthetic
    /// token stream (random weights and no --dataset only).
    #[arg(long, value_name = "FILE", help_heading = TEXT_HEADING)]
    pub tokenizer: Option<PathBuf>,

    /// Text data set, tokenized before the run: JSON Lines or a JSON list of {"text": ...} or
    /// {"prompt": ...} objects, or SQuAD JSON. Default: a synthetic token stream.
    #[arg(long, value_name = "FILE", help_heading = TEXT_HEADING)]
    pub dataset: Option<PathBuf>,

    /// gpt2, openai: most tokens generated per sample (greedy; real text stops at end of
    /// text). A prompt's own `max_tokens` wins.
    #[arg(long, alias = "max-tokens", value_name = "TOKENS", default_value = "32", help_heading = TEXT_HEADING)]
    pub max_new_tokens: usize,

    /// Longest input in tokens (longer ones are cut); synthetic inputs have exactly this
    /// many. Default: 128 for minilm, 64 for gpt2.
    #[arg(long, value_name = "TOKENS", help_heading = TEXT_HEADING)]
    pub seq_len: Option<usize>,

    /// The architecture as a Hugging Face config.json (layers, widths, vocabulary). Default:
    /// config.json beside --weights, else all-MiniLM-L6-v2 or GPT-2 small.
    #[arg(long, value_name = "FILE", help_heading = TEXT_HEADING)]
    pub model_config: Option<PathBuf>,
}

/// What the run's own flags add to the model flags.
pub struct RunScope {
    pub seed: u64,
    pub samples: usize,
    pub performance_samples: usize,
    pub accuracy: bool,
}

impl ModelArgs {
    pub fn options(&self, scope: &RunScope) -> ModelOptions {
        ModelOptions {
            device: self.device,
            devices: self.devices.clone(),
            weights: self.weights.clone(),
            batch_size: self.batch_size,
            max_wait: self.max_wait,
            workers: self.workers,
            seed: scope.seed,
            samples: scope.samples,
            performance_samples: scope.performance_samples,
            accuracy: scope.accuracy,
        }
    }

    pub fn image_options(&self) -> ImageOptions {
        ImageOptions {
            folder: self.image_folder.clone(),
            preprocessing: self.image_preprocess.into(),
        }
    }
}

impl TextArgs {
    pub fn options(&self) -> TextOptions {
        TextOptions {
            tokenizer: self.tokenizer.clone(),
            dataset: self.dataset.clone(),
            max_new_tokens: self.max_new_tokens,
            seq_len: self.seq_len,
            model_config: self.model_config.clone(),
        }
    }
}
