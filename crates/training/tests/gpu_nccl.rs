//! The NCCL gradient exchange on a real GPU (`--features nccl`, GPU
//! machine). A one-GPU machine can only hold a world of one rank (NCCL
//! refuses two ranks on one GPU), so this checks the plumbing — libnccl.so.2
//! loads, a communicator joins on candle's stream, the in-place averaging
//! all-reduce runs on a flattened f32 buffer and the gradients come back
//! whole — and bench/training/scaling.sh checks the arithmetic across GPUs
//! (replicas' weight sums must agree). Without a GPU it says so.
#![cfg(feature = "nccl")]

use candle_core::{DType, Tensor, Var};
use training::data_parallel::GradientSync;

#[test]
fn a_one_rank_nccl_exchange_leaves_gradients_as_they_were() {
    let device = match workloads::device::DeviceSpec::Cuda(0).open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no GPU here ({e}): NCCL not checked");
            return;
        }
    };
    let id = cudarc::nccl::safe::Id::new().expect("NCCL makes an id (libnccl.so.2 found)");
    let sync = GradientSync::Nccl(id);
    let exchange = sync.join(0, 1, &device).expect("one rank joins");
    for dtype in [DType::F32, DType::BF16] {
        let a = Var::from_tensor(&Tensor::zeros((3, 5), dtype, &device).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::zeros(7, dtype, &device).unwrap()).unwrap();
        let loss = ((a.as_tensor().to_dtype(DType::F32).unwrap() * 2.0)
            .unwrap()
            .sum_all()
            .unwrap()
            + (b.as_tensor().to_dtype(DType::F32).unwrap() * 3.0)
                .unwrap()
                .sum_all()
                .unwrap())
        .unwrap();
        let mut grads = loss.backward().unwrap();
        exchange
            .average(&[a.clone(), b.clone()], &mut grads)
            .unwrap();
        let values = |v: &Var| {
            let g = grads.get(v.as_tensor()).unwrap();
            assert_eq!((g.dims(), g.dtype()), (v.dims(), dtype));
            g.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(values(&a), vec![2.0; 15]);
        assert_eq!(values(&b), vec![3.0; 7]);
    }
}
