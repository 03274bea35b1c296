//! Time to quality, the MLPerf Training way, on the digits data set.
//!
//! One run: `init` (build the model and optimiser: not timed), then
//! `run_start`; epochs of shuffled mini-batches, grouped in blocks of
//! `eval_every` epochs, each block followed by an evaluation of the whole
//! held-out set; `run_stop` when the held-out accuracy reaches the target
//! (status `success`) or after `max_epochs` (status `aborted`, not
//! converged). Time to train is `run_start → run_stop`.
//!
//! Every phase's window (training blocks, evaluations) is recorded on the
//! run clock so the caller can compute the energy of each. The loss is read
//! back after every step: a loss that is not a finite number ends the run at
//! once (logged as aborted) with [`TrainingError::NonFiniteLoss`].

use crate::digits::Digits;
use crate::init::{SeededRng, SeededVarMap};
use crate::mllog::{keys, MlLog, RunDisclosure};
use crate::model::{self, DigitsNet};
use crate::TrainingError;
use candle_core::{DType, Device, Module};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use workloads::device::DeviceSpec;

/// The digits CNN's weights and activations.
pub const DIGITS_DTYPE: DType = DType::F32;

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct DigitsConfig {
    pub device: DeviceSpec,
    pub seed: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Held-out top-1 accuracy to reach, 0..=1.
    pub target_accuracy: f64,
    pub max_epochs: usize,
    /// Evaluate after every this many epochs (and after the last).
    pub eval_every: usize,
    /// Poison the loss with NaN at this step (1-based), to test that divergence
    /// is caught end to end; never set in a real run.
    pub inject_nan_at_step: Option<u64>,
}

impl Default for DigitsConfig {
    fn default() -> Self {
        DigitsConfig {
            device: DeviceSpec::Cpu,
            seed: 1,
            batch_size: 32,
            learning_rate: 0.003,
            weight_decay: 0.0001,
            target_accuracy: 0.97,
            max_epochs: 40,
            eval_every: 1,
            inject_nan_at_step: None,
        }
    }
}

impl DigitsConfig {
    /// The settings the run trains with, as `result.json` and
    /// `train_config.json` record them.
    pub fn hyperparameters(&self) -> serde_json::Value {
        serde_json::json!({
            "optimizer": "adamw",
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "global_batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "eval_every_epochs": self.eval_every,
            "target_accuracy": self.target_accuracy,
            "dtype": format!("{DIGITS_DTYPE:?}").to_lowercase(),
        })
    }

    /// What the run's log discloses (rulesets 6.0.0 on): the digits CNN
    /// trains in f32 on one device with candle's own convolutions and
    /// matrix products, has no attention, and its micro batch is the batch.
    pub fn run_disclosure(&self, config_filename: &str) -> RunDisclosure {
        RunDisclosure {
            linear: crate::linear_precision(DIGITS_DTYPE, &[self.device], false),
            attention: None,
            communication: None,
            micro_batch_size: self.batch_size,
            config_filename: config_filename.to_string(),
        }
    }

    pub fn check(&self) -> Result<(), TrainingError> {
        let at_least = |flag, minimum| Err(TrainingError::AtLeast { flag, minimum });
        if self.batch_size == 0 {
            return at_least("--batch-size", "1");
        }
        if self.max_epochs == 0 {
            return at_least("--max-epochs", "1");
        }
        if self.eval_every == 0 {
            return at_least("--eval-every", "1 epoch");
        }
        if !(self.target_accuracy > 0.0 && self.target_accuracy <= 1.0) {
            return Err(TrainingError::TargetAccuracy {
                value: self.target_accuracy,
            });
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(TrainingError::LearningRate {
                value: self.learning_rate,
            });
        }
        Ok(())
    }

    fn adamw(&self) -> ParamsAdamW {
        ParamsAdamW {
            lr: self.learning_rate,
            weight_decay: self.weight_decay,
            ..ParamsAdamW::default()
        }
    }
}

/// A phase of a run, on the run clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSpan {
    /// `init`, `train` or `eval`.
    pub name: String,
    pub begin_ns: u64,
    pub end_ns: u64,
}

/// One evaluation: a point of the quality curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub epoch: usize,
    /// Training samples processed before this evaluation.
    pub samples_trained: u64,
    /// Held-out top-1 accuracy, 0..=1.
    pub accuracy: f64,
    /// Mean training loss over the epochs since the previous evaluation.
    pub train_loss: f64,
    /// Seconds since run_start at the end of the evaluation.
    pub at_s: f64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Reached the target: `run_stop` status `success`.
    Converged,
    /// Ran `max_epochs` without reaching the target: status `aborted`.
    NotConverged,
    /// Stopped by the user: status `aborted`.
    Interrupted,
}

/// A finished run.
pub struct RunOutcome {
    pub ending: Ending,
    pub epochs: usize,
    pub steps: u64,
    pub samples_trained: u64,
    pub train_set: usize,
    pub eval_set: usize,
    pub init_start_ns: u64,
    pub run_start_ns: u64,
    pub run_stop_ns: u64,
    pub curve: Vec<EvalPoint>,
    pub phases: Vec<PhaseSpan>,
    pub parameters: usize,
    /// The trained weights (safetensors through `VarMap::save`).
    pub weights: VarMap,
}

impl RunOutcome {
    pub fn time_to_train_s(&self) -> f64 {
        self.run_stop_ns.saturating_sub(self.run_start_ns) as f64 / 1e9
    }

    pub fn final_accuracy(&self) -> Option<f64> {
        self.curve.last().map(|p| p.accuracy)
    }
}

/// What the caller is told while a run goes on (progress display).
pub trait Observer {
    fn evaluated(&mut self, _point: &EvalPoint, _target: f64) {}
}

impl Observer for () {}

/// Trains one run. The log gets everything from `cache_clear` to `run_stop`
/// (the caller writes the `submission_*` lines first).
pub fn train_digits(
    data: &Digits,
    cfg: &DigitsConfig,
    log: &mut MlLog,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<RunOutcome, TrainingError> {
    cfg.check()?;
    let device_name = cfg.device.to_string();
    let device: Device = cfg.device.open()?;
    let m = |what: &str| {
        let what = what.to_string();
        let dev = device_name.clone();
        move |e: candle_core::Error| TrainingError::model(&what, &dev, e)
    };
    let (train_idx, eval_idx) = data.split();
    // The data set is already in memory (read before the run); MLPerf's
    // cache_clear says caches were dropped, which joulebench does not do.
    log.event(
        keys::CACHE_CLEAR,
        json!(false),
        json!({"note": "data set read into memory before init; page cache not dropped"}),
    )?;
    let init_start_ns = log.start(keys::INIT_START, json!({}))?;
    for (key, value) in [
        (keys::SEED, json!(cfg.seed)),
        (keys::GLOBAL_BATCH_SIZE, json!(cfg.batch_size)),
        (keys::GRADIENT_ACCUMULATION_STEPS, json!(1)),
        (keys::TRAIN_SAMPLES, json!(train_idx.len())),
        (keys::EVAL_SAMPLES, json!(eval_idx.len())),
        (keys::OPT_NAME, json!("adamw")),
        (keys::OPT_BASE_LR, json!(cfg.learning_rate)),
        (keys::OPT_ADAMW_BETA_1, json!(cfg.adamw().beta1)),
        (keys::OPT_ADAMW_BETA_2, json!(cfg.adamw().beta2)),
        (keys::OPT_ADAMW_EPSILON, json!(cfg.adamw().eps)),
        (keys::OPT_ADAMW_WEIGHT_DECAY, json!(cfg.weight_decay)),
    ] {
        log.event(key, value, json!({}))?;
    }
    let vars = SeededVarMap::new(cfg.seed);
    let net =
        DigitsNet::new(vars.var_builder(DIGITS_DTYPE, &device)).map_err(m("building the model"))?;
    let mut opt = AdamW::new(vars.trainable(), cfg.adamw()).map_err(m("building the optimiser"))?;
    // The held-out set goes to the device once; training batches are built
    // per step from the shuffled order.
    let (eval_x, eval_y) = data
        .batch(&eval_idx, &device)
        .map_err(m("loading the held-out set"))?;
    let init_stop_ns = log.end(keys::INIT_STOP, json!({}))?;
    let mut phases = vec![PhaseSpan {
        name: "init".into(),
        begin_ns: init_start_ns,
        end_ns: init_stop_ns,
    }];

    let run_start_ns = log.start(keys::RUN_START, json!({}))?;
    let mut rng = SeededRng::new(cfg.seed ^ 0x5eed_da7a);
    let mut order = train_idx.clone();
    let mut steps: u64 = 0;
    let mut samples: u64 = 0;
    let mut curve = Vec::new();
    let mut ending = Ending::NotConverged;
    let mut epochs_done = 0;
    let mut block_start_ns = run_start_ns;
    let mut block_first_epoch = 1;
    let (mut loss_sum, mut loss_batches) = (0.0f64, 0u64);
    'epochs: for epoch in 1..=cfg.max_epochs {
        if (epoch - 1) % cfg.eval_every == 0 {
            block_first_epoch = epoch;
            let count = cfg.eval_every.min(cfg.max_epochs - epoch + 1);
            block_start_ns = log.start(
                keys::BLOCK_START,
                json!({keys::FIRST_EPOCH_NUM: epoch, keys::EPOCH_COUNT: count, keys::SAMPLES_COUNT: samples}),
            )?;
        }
        log.start(keys::EPOCH_START, json!({keys::EPOCH_NUM: epoch}))?;
        rng.shuffle(&mut order);
        for batch in order.chunks(cfg.batch_size) {
            if stop.load(Ordering::Relaxed) {
                ending = Ending::Interrupted;
                let at = log.end(keys::EPOCH_STOP, json!({keys::EPOCH_NUM: epoch}))?;
                phases.push(PhaseSpan {
                    name: "train".into(),
                    begin_ns: block_start_ns,
                    end_ns: at,
                });
                break 'epochs;
            }
            let (x, y) = data.batch(batch, &device).map_err(m("loading a batch"))?;
            let logits = net.forward(&x).map_err(m("the forward pass"))?;
            let mut loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(m("the loss"))?;
            steps += 1;
            if cfg.inject_nan_at_step == Some(steps) {
                loss = (loss * f64::NAN).map_err(m("the loss"))?;
            }
            let value = loss.to_scalar::<f32>().map_err(m("reading the loss"))?;
            if !value.is_finite() {
                log.end(keys::EPOCH_STOP, json!({keys::EPOCH_NUM: epoch}))?;
                log.end(
                    keys::RUN_STOP,
                    json!({keys::STATUS: keys::ABORTED, "reason": format!("training loss became {value} at step {steps}")}),
                )?;
                return Err(TrainingError::NonFiniteLoss {
                    epoch,
                    step: steps,
                    loss: value,
                });
            }
            opt.backward_step(&loss).map_err(m("the optimiser step"))?;
            samples += batch.len() as u64;
            loss_sum += f64::from(value);
            loss_batches += 1;
        }
        log.end(keys::EPOCH_STOP, json!({keys::EPOCH_NUM: epoch}))?;
        epochs_done = epoch;
        if epoch % cfg.eval_every != 0 && epoch != cfg.max_epochs {
            continue;
        }
        let block_stop_ns = log.end(
            keys::BLOCK_STOP,
            json!({keys::FIRST_EPOCH_NUM: block_first_epoch, keys::SAMPLES_COUNT: samples}),
        )?;
        phases.push(PhaseSpan {
            name: "train".into(),
            begin_ns: block_start_ns,
            end_ns: block_stop_ns,
        });
        let eval_start_ns = log.start(
            keys::EVAL_START,
            json!({keys::EPOCH_NUM: epoch, keys::SAMPLES_COUNT: samples}),
        )?;
        let logits = net.forward(&eval_x).map_err(m("evaluation"))?;
        let hits = model::correct(&logits, &eval_y).map_err(m("evaluation"))?;
        let accuracy = hits as f64 / eval_idx.len() as f64;
        log.event(
            keys::EVAL_ACCURACY,
            json!(accuracy),
            json!({keys::EPOCH_NUM: epoch, keys::SAMPLES_COUNT: samples}),
        )?;
        let eval_stop_ns = log.end(
            keys::EVAL_STOP,
            json!({keys::EPOCH_NUM: epoch, keys::SAMPLES_COUNT: samples}),
        )?;
        phases.push(PhaseSpan {
            name: "eval".into(),
            begin_ns: eval_start_ns,
            end_ns: eval_stop_ns,
        });
        let point = EvalPoint {
            epoch,
            samples_trained: samples,
            accuracy,
            train_loss: if loss_batches > 0 {
                loss_sum / loss_batches as f64
            } else {
                f64::NAN
            },
            at_s: eval_stop_ns.saturating_sub(run_start_ns) as f64 / 1e9,
        };
        (loss_sum, loss_batches) = (0.0, 0);
        observer.evaluated(&point, cfg.target_accuracy);
        curve.push(point);
        if accuracy >= cfg.target_accuracy {
            ending = Ending::Converged;
            break;
        }
    }
    let status = if ending == Ending::Converged {
        keys::SUCCESS
    } else {
        keys::ABORTED
    };
    let run_stop_ns = log.end(
        keys::RUN_STOP,
        json!({keys::STATUS: status, keys::EPOCH_NUM: epochs_done, keys::SAMPLES_COUNT: samples}),
    )?;
    Ok(RunOutcome {
        ending,
        epochs: epochs_done,
        steps,
        samples_trained: samples,
        train_set: train_idx.len(),
        eval_set: eval_idx.len(),
        init_start_ns,
        run_start_ns,
        run_stop_ns,
        curve,
        phases,
        parameters: vars.parameter_count(),
        weights: vars.map,
    })
}
