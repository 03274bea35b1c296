//! Training throughput at scale: ResNet-50 training steps (forward, loss,
//! backward, AdamW update, batch norm in training mode) on ImageNet-shaped
//! synthetic inputs — seeded normal pixels, seeded labels, one batch made
//! once on the device and reused, so data loading is not measured. There is
//! no quality target: the figures are samples/s over a fixed number of timed
//! steps (after untimed warm-up steps) and, from the caller's meters, J/sample.
//!
//! On several devices the run is data parallel ([`crate::data_parallel`]):
//! one replica per device, each on its share of the global batch, gradients
//! averaged every step. One device is the same code with one rank. Batch
//! norm's statistics are each replica's own (PyTorch DDP without SyncBN).

use crate::data_parallel::{GradientSync, Lockstep, Meeting, Verdict};
use crate::init::{SeededRng, SeededVarMap};
use crate::mllog::{keys, MlLog, Precision, RunDisclosure};
use crate::resnet::ResNet50;
use crate::trainer::{Ending, PhaseSpan};
use crate::TrainingError;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
// Two kernels per variable instead of candle AdamW's dozen (same formula).
use kernels::adamw::FusedAdamW as AdamW;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use workloads::device::DeviceSpec;

/// ImageNet's classes.
pub const CLASSES: usize = 1000;

#[derive(Debug, Clone)]
pub struct ThroughputConfig {
    /// One replica per device (data parallel when more than one).
    pub devices: Vec<DeviceSpec>,
    pub dtype: DType,
    pub seed: u64,
    /// The global batch: split evenly across the devices.
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
            devices: vec![DeviceSpec::Cpu],
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

impl ThroughputConfig {
    /// Refuses what cannot run (called by [`train_resnet50_synthetic`];
    /// callers may check first, before writing anything).
    pub fn check(&self) -> Result<(), TrainingError> {
        if self.batch_size == 0 || self.steps == 0 || self.image_side < 32 {
            return Err(TrainingError::ThroughputSizes);
        }
        let n = self.devices.len();
        if n == 0 {
            return Err(TrainingError::NoDevice);
        }
        if !self.batch_size.is_multiple_of(n) {
            return Err(TrainingError::UnevenBatch {
                batch_size: self.batch_size,
                devices: n,
            });
        }
        Ok(())
    }

    /// Each replica's share of the global batch.
    pub fn batch_per_device(&self) -> usize {
        self.batch_size / self.devices.len().max(1)
    }

    /// What the run's log discloses (rulesets 6.0.0 on): ResNet-50 has no
    /// attention; its convolutions are [`workloads::conv`]'s; replicas
    /// average their gradients in f32 ([`crate::data_parallel`]); the micro
    /// batch is each replica's share.
    /// The settings the run trains with, as `result.json` and
    /// `train_config.json` record them.
    pub fn hyperparameters(&self) -> serde_json::Value {
        serde_json::json!({
            "optimizer": "adamw",
            "learning_rate": self.learning_rate,
            "global_batch_size": self.batch_size,
            "batch_per_device": self.batch_per_device(),
            "timed_steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "image_side": self.image_side,
            "dtype": format!("{:?}", self.dtype).to_lowercase(),
            "batch_norm": if self.devices.len() > 1 {
                "training mode (each replica's own batch statistics)"
            } else {
                "training mode (batch statistics)"
            },
        })
    }

    pub fn run_disclosure(&self, config_filename: &str) -> RunDisclosure {
        RunDisclosure {
            linear: crate::linear_precision(self.dtype, &self.devices, true),
            attention: None,
            communication: (self.devices.len() > 1).then_some(Precision::Fp32),
            micro_batch_size: self.batch_per_device(),
            config_filename: config_filename.to_string(),
        }
    }
}

pub struct ThroughputOutcome {
    pub ending: Ending,
    pub steps: u64,
    /// Samples over all devices.
    pub samples: u64,
    pub run_start_ns: u64,
    pub run_stop_ns: u64,
    pub phases: Vec<PhaseSpan>,
    pub parameters: usize,
    /// Mean loss of the timed steps over all replicas (a sanity figure:
    /// random labels keep it near ln 1000).
    pub mean_loss: f64,
    /// How gradients were averaged ([`GradientSync::name`]).
    pub gradient_sync: &'static str,
    /// Every replica's weights summed at the end, rank order: all equal
    /// (they start equal and take the same averaged steps; a run whose
    /// replicas differ ends with [`TrainingError::ReplicasDiverged`]).
    pub weight_sums: Vec<f64>,
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

/// Runs the warm-up then the timed steps on every device; `run_start →
/// run_stop` spans exactly the timed steps of all of them.
pub fn train_resnet50_synthetic(
    cfg: &ThroughputConfig,
    log: &mut MlLog,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ThroughputOutcome, TrainingError> {
    cfg.check()?;
    let ranks = cfg.devices.len();
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
    let sync = GradientSync::for_devices(&cfg.devices)?;
    let team = Team {
        cfg,
        sync: &sync,
        lockstep: Lockstep::new(ranks),
        // The ranks and this thread: built, warmed up, go.
        gate: Meeting::new(ranks + 1),
        stop,
    };
    let all_true = |a: bool, b: bool| a && b;
    std::thread::scope(|s| {
        let (steps_tx, steps_rx) = mpsc::channel();
        let handles: Vec<_> = (0..ranks)
            .map(|rank| {
                let team = &team;
                // Rank 0 reports each timed step; the channel closes when it ends.
                let tx = (rank == 0).then(|| steps_tx.clone());
                s.spawn(move || team.rank(rank, tx))
            })
            .collect();
        drop(steps_tx);
        let join = |handles: Vec<std::thread::ScopedJoinHandle<_>>| {
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(TrainingError::RankPanicked))
                })
                .collect::<Vec<Result<RankDone, TrainingError>>>()
        };
        let built = *team.gate.meet(true, all_true);
        // A failed run's log ends with run_stop aborted, giving the reason.
        let abort =
            |log: &mut MlLog, e: TrainingError| -> Result<ThroughputOutcome, TrainingError> {
                log.end(
                    keys::RUN_STOP,
                    json!({keys::STATUS: keys::ABORTED, "reason": e.to_string()}),
                )?;
                Err(e)
            };
        if !built || !*team.gate.meet(true, all_true) {
            return abort(log, first_error(join(handles)));
        }
        let init_stop_ns = log.end(
            keys::INIT_STOP,
            json!({"warmup_steps": cfg.warmup_steps, "devices": ranks,
                   "gradient_sync": sync.name()}),
        )?;
        let run_start_ns = log.start(keys::RUN_START, json!({}))?;
        log.start(
            keys::BLOCK_START,
            json!({keys::FIRST_EPOCH_NUM: 1, keys::EPOCH_COUNT: 1, keys::SAMPLES_COUNT: 0}),
        )?;
        team.gate.meet(true, all_true);
        for done in steps_rx {
            progress(done, cfg.steps);
        }
        let results = join(handles);
        if results.iter().any(Result::is_err) {
            return abort(log, first_error(results));
        }
        let done: Vec<RankDone> = results.into_iter().filter_map(Result::ok).collect();
        // Replicas that took the same averaged steps hold the same weights;
        // if not, the exchange is broken and the figures mean nothing.
        let weight_sums: Vec<f64> = done.iter().map(|d| d.weight_sum).collect();
        if weight_sums.windows(2).any(|w| w[0] != w[1]) {
            return abort(log, TrainingError::ReplicasDiverged(weight_sums));
        }
        let steps = done[0].steps;
        let ending = if steps < cfg.steps {
            Ending::Interrupted
        } else {
            Ending::Converged
        };
        let samples = steps * cfg.batch_size as u64;
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
        let loss_sum: f64 = done.iter().map(|d| d.loss_sum).sum();
        Ok(ThroughputOutcome {
            ending,
            steps,
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
            parameters: done[0].parameters,
            mean_loss: if steps > 0 {
                loss_sum / (steps as f64 * ranks as f64)
            } else {
                f64::NAN
            },
            gradient_sync: sync.name(),
            weight_sums,
        })
    })
}

/// What the ranks of one run share.
struct Team<'a> {
    cfg: &'a ThroughputConfig,
    sync: &'a GradientSync,
    lockstep: Lockstep,
    gate: Meeting<bool>,
    stop: &'a AtomicBool,
}

/// One rank's share of a finished run.
struct RankDone {
    steps: u64,
    loss_sum: f64,
    parameters: usize,
    weight_sum: f64,
}

/// Of two ranks' errors, a rank's own over "another device failed".
fn prefer_own(a: TrainingError, b: TrainingError) -> TrainingError {
    match a {
        TrainingError::PeerFailed => b,
        a => a,
    }
}

fn first_error(results: Vec<Result<RankDone, TrainingError>>) -> TrainingError {
    results
        .into_iter()
        .filter_map(Result::err)
        .reduce(prefer_own)
        .unwrap_or(TrainingError::PeerFailed)
}

/// One replica: its network, optimiser and share of the batch.
struct Replica {
    net: ResNet50,
    trainable: Vec<Var>,
    opt: AdamW,
    x: Tensor,
    y: Tensor,
    parameters: usize,
    device_name: String,
}

impl Replica {
    fn build(cfg: &ThroughputConfig, rank: usize) -> Result<(Replica, Device), TrainingError> {
        let spec = cfg.devices[rank];
        let device_name = spec.to_string();
        let device: Device = spec.open()?;
        let m = |what: &'static str| {
            let dev = device_name.clone();
            move |e: candle_core::Error| TrainingError::model(what, &dev, e)
        };
        // The same seed on every rank: the replicas start identical.
        let vars = SeededVarMap::new(cfg.seed);
        let net = ResNet50::new(CLASSES, vars.var_builder(cfg.dtype, &device))
            .map_err(m("building ResNet-50"))?;
        let params = ParamsAdamW {
            lr: cfg.learning_rate,
            ..ParamsAdamW::default()
        };
        let trainable = vars.trainable();
        let opt = AdamW::new(trainable.clone(), params).map_err(m("building the optimiser"))?;
        // Each rank its own samples (rank 0's are the one-device run's).
        let mut rng = SeededRng::new(cfg.seed ^ 0x01a6_e0e7 ^ (rank as u64).wrapping_mul(0x9e37));
        let batch = cfg.batch_per_device();
        let n = batch * 3 * cfg.image_side * cfg.image_side;
        let pixels: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let labels: Vec<u32> = (0..batch).map(|_| rng.below(CLASSES) as u32).collect();
        let x = Tensor::from_vec(pixels, (batch, 3, cfg.image_side, cfg.image_side), &device)
            .and_then(|t| t.to_dtype(cfg.dtype))
            .map_err(m("making the synthetic batch"))?;
        let y =
            Tensor::from_vec(labels, batch, &device).map_err(m("making the synthetic batch"))?;
        let replica = Replica {
            net,
            trainable,
            opt,
            x,
            y,
            parameters: vars.parameter_count(),
            device_name,
        };
        Ok((replica, device))
    }

    fn err(&self, what: &'static str) -> impl Fn(candle_core::Error) -> TrainingError {
        let device = self.device_name.clone();
        move |e| TrainingError::model(what, &device, e)
    }

    /// The sum of all trainable weights (after the run, out of its window).
    fn weight_sum(&self) -> Result<f64, TrainingError> {
        let mut total = 0.0;
        for v in &self.trainable {
            let s = v
                .as_tensor()
                .to_dtype(DType::F32)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar::<f32>())
                .map_err(self.err("summing the weights"))?;
            total += f64::from(s);
        }
        Ok(total)
    }

    /// Forward, loss and backward: this replica's gradients and loss.
    fn gradients(&self) -> Result<(candle_core::backprop::GradStore, f32), TrainingError> {
        let (loss, grads) = self
            .net
            .loss_and_gradients(&self.x, &self.y)
            .map_err(self.err("the forward and backward passes"))?;
        // Reading the loss waits for the device: a step is complete when timed,
        // and a diverged rank is known before the ranks agree to go on.
        let value = loss
            .to_scalar::<f32>()
            .map_err(self.err("reading the loss"))?;
        if !value.is_finite() {
            return Err(TrainingError::NonFiniteLoss {
                epoch: 1,
                step: 0,
                loss: value,
            });
        }
        Ok((grads, value))
    }
}

impl Team<'_> {
    /// Rank `rank`'s whole run: build, warm up, then the timed steps, in
    /// step with the other ranks and the caller (the gate).
    fn rank(
        &self,
        rank: usize,
        steps_tx: Option<mpsc::Sender<u64>>,
    ) -> Result<RankDone, TrainingError> {
        let ranks = self.cfg.devices.len();
        let all_true = |a: bool, b: bool| a && b;
        let built = Replica::build(self.cfg, rank);
        if !*self.gate.meet(built.is_ok(), all_true) {
            return Err(built.err().unwrap_or(TrainingError::PeerFailed));
        }
        let (mut replica, device) = built?;
        // NCCL makes its communicator collectively: every rank is here now.
        let exchange = self.sync.join(rank, ranks, &device);
        let warm = exchange.and_then(|exchange| {
            let steps = self.steps(&mut replica, &exchange, self.cfg.warmup_steps, None)?;
            Ok((exchange, steps))
        });
        if !*self.gate.meet(warm.is_ok(), all_true) {
            return Err(warm.err().unwrap_or(TrainingError::PeerFailed));
        }
        let (exchange, _) = warm?;
        // The caller has logged run_start.
        self.gate.meet(true, all_true);
        let timed = self.steps(&mut replica, &exchange, self.cfg.steps, Some(steps_tx));
        let (steps, loss_sum) = timed?;
        Ok(RankDone {
            steps,
            loss_sum,
            parameters: replica.parameters,
            weight_sum: replica.weight_sum()?,
        })
    }

    /// Up to `count` steps in lockstep with the other ranks; timed steps
    /// (`report` given) stop early when asked to. Returns the steps done and
    /// the sum of their losses.
    fn steps(
        &self,
        replica: &mut Replica,
        exchange: &crate::data_parallel::RankSync,
        count: u64,
        report: Option<Option<mpsc::Sender<u64>>>,
    ) -> Result<(u64, f64), TrainingError> {
        let timed = report.is_some();
        let report = report.flatten();
        let mut loss_sum = 0.0;
        // The previous step's update: a failure there is told to the other
        // ranks at the next agreement, before anyone starts an exchange.
        let mut updated: Result<(), TrainingError> = Ok(());
        for done in 0..count {
            let attempt = updated.and_then(|()| replica.gradients());
            let asked_to_stop = timed && self.stop.load(Ordering::Relaxed);
            match self.lockstep.agree(attempt.is_ok(), asked_to_stop) {
                Verdict::GiveUp => {
                    return Err(match attempt {
                        Err(TrainingError::NonFiniteLoss { loss, .. }) => {
                            TrainingError::NonFiniteLoss {
                                epoch: 1,
                                step: done + 1,
                                loss,
                            }
                        }
                        Err(e) => e,
                        Ok(_) => TrainingError::PeerFailed,
                    })
                }
                Verdict::Stop => return Ok((done, loss_sum)),
                Verdict::Go => {}
            }
            let (mut grads, loss) = attempt?;
            loss_sum += f64::from(loss);
            updated = exchange
                .average(&replica.trainable, &mut grads)
                .map_err(replica.err("averaging gradients across devices"))
                .and_then(|()| {
                    replica
                        .opt
                        .step(&grads)
                        .map_err(replica.err("the optimiser step"))
                });
            if let Some(tx) = &report {
                let _ = tx.send(done + 1);
            }
        }
        updated.map(|()| (count, loss_sum))
    }
}
