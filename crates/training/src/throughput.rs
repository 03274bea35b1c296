//! Training throughput at scale: ResNet-50 training steps (forward, loss,
//! backward, AdamW update, batch norm in training mode) on ImageNet-shaped
//! synthetic inputs — seeded normal pixels, seeded labels, one batch made
//! once on the device and reused, so data loading is not measured. There is
//! no quality target: the figures are samples/s over a fixed number of timed
//! steps (after untimed warm-up steps) and, from the caller's meters, J/sample.

use crate::init::{SeededRng, SeededVarMap};
use crate::mllog::{keys, MlLog};
use crate::resnet::ResNet50;
use crate::trainer::{Ending, PhaseSpan};
use crate::TrainingError;
use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use workloads::device::DeviceSpec;

/// ImageNet's classes.
pub const CLASSES: usize = 1000;

#[derive(Debug, Clone)]
pub struct ThroughputConfig {
    pub device: DeviceSpec,
    pub dtype: DType,
    pub seed: u64,
    pub batch_size: usize,
    /// Timed steps.
    pub steps: u64,
    /// Untimed steps first (allocations, kernel selection, caches).
    pub warmup_steps: u64,
    /// Input side in pixels (224 is ImageNet's; smaller only for tests).
    pub image_side: usize,
    pub learning_rate: f64,
}

impl Default for ThroughputConfig {
    fn default() -> Self {
        ThroughputConfig {
            device: DeviceSpec::Cpu,
            dtype: DType::F32,
            seed: 1,
            batch_size: 32,
            steps: 20,
            warmup_steps: 2,
            image_side: 224,
            learning_rate: 0.001,
        }
    }
}

pub struct ThroughputOutcome {
    pub ending: Ending,
    pub steps: u64,
    pub samples: u64,
    pub run_start_ns: u64,
    pub run_stop_ns: u64,
    pub phases: Vec<PhaseSpan>,
    pub parameters: usize,
    /// Mean loss of the timed steps (a sanity figure: random labels keep it near ln 1000).
    pub mean_loss: f64,
}

impl ThroughputOutcome {
    pub fn seconds(&self) -> f64 {
        self.run_stop_ns.saturating_sub(self.run_start_ns) as f64 / 1e9
    }

    pub fn samples_per_s(&self) -> f64 {
        let s = self.seconds();
        if s > 0.0 {
            self.samples as f64 / s
        } else {
            0.0
        }
    }
}

/// Runs the warm-up then the timed steps; `run_start → run_stop` spans
/// exactly the timed steps.
pub fn train_resnet50_synthetic(
    cfg: &ThroughputConfig,
    log: &mut MlLog,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ThroughputOutcome, TrainingError> {
    if cfg.batch_size == 0 || cfg.steps == 0 || cfg.image_side < 32 {
        return Err(TrainingError::Config(
            "--batch-size and --steps must be at least 1, and --image-size at least 32".into(),
        ));
    }
    let device_name = cfg.device.to_string();
    let device: Device = cfg.device.open().map_err(TrainingError::Device)?;
    let m = |what: &str| {
        let what = what.to_string();
        let dev = device_name.clone();
        move |e: candle_core::Error| TrainingError::model(&what, &dev, e)
    };
    log.event(
        keys::CACHE_CLEAR,
        json!(false),
        json!({"note": "synthetic data made in memory; nothing read from disk"}),
    )?;
    let init_start_ns = log.start(keys::INIT_START, json!({}))?;
    for (key, value) in [
        (keys::SEED, json!(cfg.seed)),
        (keys::GLOBAL_BATCH_SIZE, json!(cfg.batch_size)),
        (keys::GRADIENT_ACCUMULATION_STEPS, json!(1)),
        (
            keys::TRAIN_SAMPLES,
            json!(cfg.batch_size as u64 * cfg.steps),
        ),
        (keys::EVAL_SAMPLES, json!(0)),
        (keys::MAX_STEPS, json!(cfg.steps)),
        (keys::OPT_NAME, json!("adamw")),
        (keys::OPT_BASE_LR, json!(cfg.learning_rate)),
    ] {
        log.event(key, value, json!({}))?;
    }
    let vars = SeededVarMap::new(cfg.seed);
    let net = ResNet50::new(CLASSES, vars.var_builder(cfg.dtype, &device))
        .map_err(m("building ResNet-50"))?;
    let params = ParamsAdamW {
        lr: cfg.learning_rate,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(vars.trainable(), params).map_err(m("building the optimiser"))?;
    let mut rng = SeededRng::new(cfg.seed ^ 0x01a6_e0e7);
    let n = cfg.batch_size * 3 * cfg.image_side * cfg.image_side;
    let pixels: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let labels: Vec<u32> = (0..cfg.batch_size)
        .map(|_| rng.below(CLASSES) as u32)
        .collect();
    let x = Tensor::from_vec(
        pixels,
        (cfg.batch_size, 3, cfg.image_side, cfg.image_side),
        &device,
    )
    .and_then(|t| t.to_dtype(cfg.dtype))
    .map_err(m("making the synthetic batch"))?;
    let y = Tensor::from_vec(labels, cfg.batch_size, &device)
        .map_err(m("making the synthetic batch"))?;
    let step = |opt: &mut AdamW| -> Result<f32, TrainingError> {
        let logits = net
            .forward_t(&x, true)
            .and_then(|l| l.to_dtype(DType::F32))
            .map_err(m("the forward pass"))?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(m("the loss"))?;
        opt.backward_step(&loss)
            .map_err(m("the backward pass and update"))?;
        // Reading the loss waits for the device: each step is complete when timed.
        loss.to_scalar::<f32>().map_err(m("reading the loss"))
    };
    for _ in 0..cfg.warmup_steps {
        step(&mut opt)?;
    }
    let init_stop_ns = log.end(keys::INIT_STOP, json!({"warmup_steps": cfg.warmup_steps}))?;
    let run_start_ns = log.start(keys::RUN_START, json!({}))?;
    log.start(
        keys::BLOCK_START,
        json!({keys::FIRST_EPOCH_NUM: 1, keys::EPOCH_COUNT: 1, keys::SAMPLES_COUNT: 0}),
    )?;
    let mut done = 0u64;
    let mut loss_sum = 0.0f64;
    let mut ending = Ending::Converged;
    while done < cfg.steps {
        if stop.load(Ordering::Relaxed) {
            ending = Ending::Interrupted;
            break;
        }
        let loss = step(&mut opt)?;
        done += 1;
        if !loss.is_finite() {
            log.end(keys::RUN_STOP, json!({keys::STATUS: keys::ABORTED}))?;
            return Err(TrainingError::NonFiniteLoss {
                epoch: 1,
                step: done,
                loss,
            });
        }
        loss_sum += f64::from(loss);
        progress(done, cfg.steps);
    }
    let samples = done * cfg.batch_size as u64;
    let block_stop_ns = log.end(
        keys::BLOCK_STOP,
        json!({keys::FIRST_EPOCH_NUM: 1, keys::SAMPLES_COUNT: samples}),
    )?;
    let status = if ending == Ending::Converged {
        keys::SUCCESS
    } else {
        keys::ABORTED
    };
    let run_stop_ns = log.end(
        keys::RUN_STOP,
        json!({keys::STATUS: status, keys::SAMPLES_COUNT: samples,
               "note": "throughput task: fixed steps on synthetic data, no quality target"}),
    )?;
    Ok(ThroughputOutcome {
        ending,
        steps: done,
        samples,
        run_start_ns,
        run_stop_ns,
        phases: vec![
            PhaseSpan {
                name: "init".into(),
                begin_ns: init_start_ns,
                end_ns: init_stop_ns,
            },
            PhaseSpan {
                name: "train".into(),
                begin_ns: run_start_ns,
                end_ns: block_stop_ns,
            },
        ],
        parameters: vars.parameter_count(),
        mean_loss: if done > 0 {
            loss_sum / done as f64
        } else {
            f64::NAN
        },
    })
}
