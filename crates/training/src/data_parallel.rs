//! Data-parallel training: one model replica per device, each on its own
//! share of the global batch, gradients averaged across the replicas before
//! every optimiser step, so the replicas stay identical.
//!
//! - [`Meeting`]: every rank (thread) hands in a value and gets back the
//!   combination of all of them; ranks use it to agree, step by step, on
//!   going on, stopping (Ctrl-C) or giving up (a rank failed) — so no rank is
//!   left waiting in a collective that another will never join.
//! - [`GradientSync`]: how gradients are averaged. Through NCCL when every
//!   device is a GPU and this build has the `nccl` feature (one all-reduce of
//!   all gradients, flattened, on the GPUs' own streams); otherwise through
//!   host memory, which works for any device (CPUs, or GPUs without NCCL) at
//!   the cost of a copy out and back per step.
//!
//! Gradients are averaged in f32 whatever the training type: one flat buffer
//! of all trainable variables in a fixed order (the same on every rank).

use crate::TrainingError;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A reusable rendezvous of `parties` threads that folds their values.
pub struct Meeting<T> {
    parties: usize,
    state: Mutex<MeetingState<T>>,
    all_here: Condvar,
}

struct MeetingState<T> {
    /// Completed meetings; a waiter leaves when it moves on.
    generation: u64,
    arrived: usize,
    folded: Option<T>,
    result: Option<Arc<T>>,
}

impl<T> Meeting<T> {
    pub fn new(parties: usize) -> Meeting<T> {
        assert!(parties > 0, "a meeting needs at least one party");
        Meeting {
            parties,
            state: Mutex::new(MeetingState {
                generation: 0,
                arrived: 0,
                folded: None,
                result: None,
            }),
            all_here: Condvar::new(),
        }
    }

    /// Hands in `mine`; returns once every party has, with all values folded
    /// by `fold` (in arrival order: `fold` must not care about order).
    pub fn meet(&self, mine: T, fold: impl Fn(T, T) -> T) -> Arc<T> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = s.generation;
        s.folded = Some(match s.folded.take() {
            None => mine,
            Some(so_far) => fold(so_far, mine),
        });
        s.arrived += 1;
        if s.arrived == self.parties {
            // The last to arrive publishes; the next meeting can only finish
            // once every waiter of this one has come back, so the result
            // stays in place until all have read it.
            s.arrived = 0;
            s.generation += 1;
            let result = Arc::new(s.folded.take().expect("folded above"));
            s.result = Some(Arc::clone(&result));
            self.all_here.notify_all();
            return result;
        }
        while s.generation == generation {
            s = self
                .all_here
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Arc::clone(s.result.as_ref().expect("published by the last party"))
    }
}

/// What the ranks agree on before each step's gradient exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Some rank was asked to stop (Ctrl-C): all stop after the same step.
    Stop,
    /// Some rank failed this step: all give up.
    GiveUp,
}

/// Per step, each rank says whether its step worked and whether it was
/// asked to stop; every rank gets the same [`Verdict`].
pub struct Lockstep(Meeting<(bool, bool)>);

impl Lockstep {
    pub fn new(ranks: usize) -> Lockstep {
        Lockstep(Meeting::new(ranks))
    }

    pub fn agree(&self, ok: bool, stop: bool) -> Verdict {
        let all = self.0.meet((ok, stop), |(ok_a, stop_a), (ok_b, stop_b)| {
            (ok_a && ok_b, stop_a || stop_b)
        });
        match *all {
            (false, _) => Verdict::GiveUp,
            (true, true) => Verdict::Stop,
            (true, false) => Verdict::Go,
        }
    }
}

/// How the ranks of a run average their gradients; made once, shared by all
/// ranks, each of which [`GradientSync::join`]s it from its own thread.
pub enum GradientSync {
    /// One rank: nothing to average.
    Alone,
    /// Through host memory: each rank's flat f32 gradients summed under a lock.
    Host(Meeting<Option<Vec<f32>>>),
    /// Through NCCL: the run's unique id, from which each rank makes its communicator.
    #[cfg(feature = "nccl")]
    Nccl(cudarc::nccl::safe::Id),
}

impl GradientSync {
    /// The best way for these devices: NCCL when all are GPUs and this build
    /// has it, else host memory.
    pub fn for_devices(devices: &[workloads::device::DeviceSpec]) -> Result<Self, TrainingError> {
        if devices.len() == 1 {
            return Ok(GradientSync::Alone);
        }
        #[cfg(feature = "nccl")]
        if devices
            .iter()
            .all(|d| matches!(d, workloads::device::DeviceSpec::Cuda(_)))
        {
            let id =
                cudarc::nccl::safe::Id::new().map_err(|error| TrainingError::NcclId { error })?;
            return Ok(GradientSync::Nccl(id));
        }
        Ok(GradientSync::Host(Meeting::new(devices.len())))
    }

    /// What the result records as the gradient exchange.
    pub fn name(&self) -> &'static str {
        match self {
            GradientSync::Alone => "none (one device)",
            GradientSync::Host(_) => "all-reduce through host memory",
            #[cfg(feature = "nccl")]
            GradientSync::Nccl(_) => "NCCL all-reduce",
        }
    }

    /// Rank `rank`'s side of the exchange, on `device`. With NCCL every rank
    /// must call this at the same time (the communicator is made collectively).
    #[cfg_attr(not(feature = "nccl"), allow(unused_variables))]
    pub fn join<'a>(
        &'a self,
        rank: usize,
        ranks: usize,
        device: &Device,
    ) -> Result<RankSync<'a>, TrainingError> {
        Ok(match self {
            GradientSync::Alone => RankSync::Alone,
            GradientSync::Host(meeting) => RankSync::Host { meeting, ranks },
            #[cfg(feature = "nccl")]
            GradientSync::Nccl(id) => {
                let Device::Cuda(cuda) = device else {
                    return Err(TrainingError::NcclOnCpu { rank });
                };
                let comm =
                    cudarc::nccl::safe::Comm::from_rank(cuda.cuda_stream(), rank, ranks, *id)
                        .map_err(|error| TrainingError::NcclJoin { rank, ranks, error })?;
                RankSync::Nccl(nccl::AllReduceMean(comm))
            }
        })
    }
}

/// One rank's handle on the gradient exchange.
pub enum RankSync<'a> {
    Alone,
    Host {
        meeting: &'a Meeting<Option<Vec<f32>>>,
        ranks: usize,
    },
    #[cfg(feature = "nccl")]
    Nccl(nccl::AllReduceMean),
}

impl RankSync<'_> {
    /// Replaces each of `vars`' gradients in `grads` by its mean over all
    /// ranks. Every rank must call this once per step with the same `vars`.
    pub fn average(&self, vars: &[Var], grads: &mut GradStore) -> candle_core::Result<()> {
        let mean = match self {
            RankSync::Alone => return Ok(()),
            RankSync::Host { meeting, ranks } => {
                let flat = flatten(vars, grads)?;
                // A rank that cannot read its gradients hands in None, and
                // every rank gets the error instead of waiting forever.
                let mine = flat.to_vec1::<f32>().ok();
                let sum = meeting.meet(mine, |a, b| match (a, b) {
                    (Some(mut a), Some(b)) => {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                        Some(a)
                    }
                    _ => None,
                });
                let Some(sum) = sum.as_ref() else {
                    candle_core::bail!("a rank could not hand in its gradients");
                };
                let scale = 1.0 / *ranks as f32;
                let mean: Vec<f32> = sum.iter().map(|x| x * scale).collect();
                Tensor::from_vec(mean, flat.elem_count(), flat.device())?
            }
            #[cfg(feature = "nccl")]
            RankSync::Nccl(op) => {
                let flat = flatten(vars, grads)?;
                flat.inplace_op1(op)?;
                flat
            }
        };
        unflatten(vars, &mean, grads)
    }
}

/// All of `vars`' gradients as one f32 vector, in `vars`' order; a variable
/// with no gradient contributes zeros so every rank's layout is the same.
fn flatten(vars: &[Var], grads: &GradStore) -> candle_core::Result<Tensor> {
    let parts = vars
        .iter()
        .map(|v| match grads.get(v.as_tensor()) {
            Some(g) => g.flatten_all()?.to_dtype(DType::F32),
            None => Tensor::zeros(v.elem_count(), DType::F32, v.device()),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}

fn unflatten(vars: &[Var], flat: &Tensor, grads: &mut GradStore) -> candle_core::Result<()> {
    let mut at = 0;
    for v in vars {
        let n = v.elem_count();
        let g = flat
            .narrow(0, at, n)?
            .reshape(v.shape())?
            .to_dtype(v.dtype())?;
        grads.insert(v.as_tensor(), g);
        at += n;
    }
    Ok(())
}

#[cfg(feature = "nccl")]
mod nccl {
    use candle_core::{CpuStorage, CudaStorage, Layout};
    use cudarc::nccl::safe::{Comm, ReduceOp};

    /// NCCL's averaging all-reduce, in place on a contiguous f32 tensor, on
    /// the stream the rank's tensors live on (the communicator's).
    pub struct AllReduceMean(pub Comm);

    impl candle_core::InplaceOp1 for AllReduceMean {
        fn name(&self) -> &'static str {
            "nccl-all-reduce-mean"
        }

        fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout) -> candle_core::Result<()> {
            candle_core::bail!("NCCL all-reduce needs a GPU tensor")
        }

        fn cuda_fwd(&self, storage: &mut CudaStorage, layout: &Layout) -> candle_core::Result<()> {
            let Some((start, end)) = layout.contiguous_offsets() else {
                candle_core::bail!("NCCL all-reduce needs a contiguous tensor");
            };
            let slice = storage.as_cuda_slice_mut::<f32>()?;
            let mut view = slice.slice_mut(start..end);
            self.0
                .all_reduce_in_place(&mut view, &ReduceOp::Avg)
                .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Module, Var};

    #[test]
    fn meeting_folds_every_party_and_can_be_reused() {
        let m = Meeting::new(4);
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=4u64)
                .map(|rank| {
                    let m = &m;
                    s.spawn(move || {
                        (0..50u64)
                            .map(|round| *m.meet(rank * 1000 + round, |a, b| a + b))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                let got = h.join().unwrap();
                let want: Vec<u64> = (0..50).map(|round| 10_000 + 4 * round).collect();
                assert_eq!(got, want);
            }
        });
    }

    #[test]
    fn lockstep_gives_every_rank_the_same_verdict() {
        let l = Lockstep::new(3);
        std::thread::scope(|s| {
            let h: Vec<_> = (0..3)
                .map(|rank| {
                    let l = &l;
                    s.spawn(move || {
                        [
                            l.agree(true, false),
                            l.agree(true, rank == 2),
                            l.agree(rank != 1, rank == 0),
                        ]
                    })
                })
                .collect();
            for h in h {
                assert_eq!(
                    h.join().unwrap(),
                    [Verdict::Go, Verdict::Stop, Verdict::GiveUp]
                );
            }
        });
    }

    /// Two ranks on half batches each, averaged, give the gradient of the
    /// whole batch on one rank (a mean loss with no batch statistics).
    #[test]
    fn host_average_of_half_batches_is_the_whole_batch_gradient() {
        let dev = Device::Cpu;
        let w0: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let xs: Vec<f32> = (0..8 * 4).map(|i| (i as f32 * 0.11).cos()).collect();
        let x = Tensor::from_vec(xs, (8, 4), &dev).unwrap();
        let grad_of = |x: &Tensor| {
            let w = Var::from_tensor(&Tensor::from_vec(w0.clone(), (3, 4), &dev).unwrap()).unwrap();
            let y = candle_nn::Linear::new(w.as_tensor().clone(), None)
                .forward(x)
                .unwrap();
            let loss = y.sqr().unwrap().mean_all().unwrap();
            (w.clone(), loss.backward().unwrap())
        };
        let (w, whole) = grad_of(&x);
        let whole = whole.get(w.as_tensor()).unwrap().flatten_all().unwrap();
        let sync = GradientSync::for_devices(&[
            workloads::device::DeviceSpec::Cpu,
            workloads::device::DeviceSpec::Cpu,
        ])
        .unwrap();
        assert!(matches!(sync, GradientSync::Host(_)));
        let halves: Vec<Vec<f32>> = std::thread::scope(|s| {
            let h: Vec<_> = (0..2)
                .map(|rank| {
                    let (sync, x, grad_of) = (&sync, &x, &grad_of);
                    s.spawn(move || {
                        let (w, mut grads) = grad_of(&x.narrow(0, rank * 4, 4).unwrap());
                        let me = sync.join(rank, 2, &Device::Cpu).unwrap();
                        me.average(std::slice::from_ref(&w), &mut grads).unwrap();
                        let g = grads.get(w.as_tensor()).unwrap();
                        assert_eq!(g.dims(), &[3, 4]);
                        g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                    })
                })
                .collect();
            h.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let whole = whole.to_vec1::<f32>().unwrap();
        assert_eq!(
            halves[0], halves[1],
            "ranks must end with identical gradients"
        );
        for (a, b) in halves[0].iter().zip(&whole) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
