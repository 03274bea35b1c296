//! The GPU paths against the CPU ones: our kernels (crates/kernels: the
//! epilogue, batch norm, max pool, AdamW, attention) against candle's ops or
//! their CPU loops, on devices opened as workloads open them, and a whole
//! ResNet-18 and MiniLM with the same seeded weights, on the GPU and on the
//! CPU. Runs on the GPU machine (`cargo test -p workloads --features cuda`);
//! without a GPU it says so and passes nothing off as checked.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Module, Tensor};
use kernels::epilogue::{conv_bias_residual_relu, linear_bias_residual_act, Activation};
use workloads::resnet::{Depth, ResNet};
use workloads::weights::WeightSource;

mod gpu_common;
use gpu_common::relative_error;

fn gpu() -> Option<Device> {
    match workloads::device::DeviceSpec::Cuda(0).open() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("no GPU here ({e}): GPU inference not checked");
            None
        }
    }
}

#[test]
fn the_epilogue_kernel_matches_candles_ops() {
    let Some(gpu) = gpu() else { return };
    // 7×7 planes: odd, so channel boundaries fall mid-word in 16-bit types.
    let (n, c, h, w) = (3, 5, 7, 7);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for (residual, relu) in [(false, false), (false, true), (true, true)] {
            let y = Tensor::randn(0f32, 1.0, (n, c, h, w), &Device::Cpu).unwrap();
            let bias = Tensor::randn(0f32, 1.0, (1, c, 1, 1), &Device::Cpu).unwrap();
            let z = Tensor::randn(0f32, 1.0, (n, c, h, w), &Device::Cpu).unwrap();
            let z = residual.then_some(&z);
            let want = conv_bias_residual_relu(y.clone(), &bias, z, relu).unwrap();
            let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
            let got =
                conv_bias_residual_relu(on(&y), &on(&bias), z.map(on).as_ref(), relu).unwrap();
            assert_eq!(got.dims(), want.dims());
            let err = relative_error(&got, &want);
            // f32 sums exactly; 16-bit inputs are rounded once going in and
            // once coming out.
            let bound = if dtype == DType::F32 { 1e-6 } else { 1e-2 };
            assert!(
                err <= bound,
                "{dtype:?} residual {residual} relu {relu}: {err}"
            );
            if relu {
                let min = got.to_dtype(DType::F32).unwrap().min_all().unwrap();
                assert!(min.to_scalar::<f32>().unwrap() >= 0.0);
            }
        }
    }
}

#[test]
fn the_linear_epilogue_matches_candles_ops_for_every_activation() {
    let Some(gpu) = gpu() else { return };
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
    ];
    // 7 outputs: the general kernel; 70: channel pairs in 16-bit types.
    for ((b, len, out), dtype) in [(3, 5, 7), (3, 5, 70)]
        .into_iter()
        .flat_map(|shape| [DType::F32, DType::BF16, DType::F16].map(|d| (shape, d)))
    {
        for act in acts {
            for residual in [false, true] {
                let y = Tensor::randn(0f32, 2.0, (b, len, out), &Device::Cpu).unwrap();
                let bias = Tensor::randn(0f32, 1.0, out, &Device::Cpu).unwrap();
                let z = Tensor::randn(0f32, 1.0, (b, len, out), &Device::Cpu).unwrap();
                let z = residual.then_some(&z);
                let want = linear_bias_residual_act(y.clone(), &bias, z, act).unwrap();
                let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
                let got =
                    linear_bias_residual_act(on(&y), &on(&bias), z.map(on).as_ref(), act).unwrap();
                let err = relative_error(&got, &want);
                let bound = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
                assert!(err <= bound, "{dtype:?} {act:?} residual {residual}: {err}");
            }
        }
    }
}

#[test]
fn resnet18_on_the_gpu_computes_what_it_computes_on_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let weights = WeightSource::Random { seed: 3 };
    let classes = 10;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let cpu_net = ResNet::load(
        Depth::R18,
        classes,
        weights.var_builder(DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let want = cpu_net.forward(&x).unwrap();
    for (dtype, bound) in [(DType::F32, 1e-2), (DType::BF16, 5e-2)] {
        let net = ResNet::load(
            Depth::R18,
            classes,
            weights.var_builder(dtype, &gpu).unwrap(),
        )
        .unwrap();
        let got = net
            .forward(&x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap())
            .unwrap();
        let err = relative_error(&got, &want);
        eprintln!("resnet18 {dtype:?} on the GPU against f32 on the CPU: relative error {err:.2e}");
        // f32 convolutions may run as TF32 on tensor cores, as PyTorch allows.
        assert!(err <= bound, "{dtype:?}: {err}");
    }
}

/// Training-mode batch norm on the GPU (our kernels) against the CPU path
/// (plain loops, itself checked against candle's layer): output, the input's,
/// γ's and β's gradients, and the running statistics, for each type.
#[test]
fn the_batch_norm_kernels_match_the_cpu_path() {
    use candle_core::Var;
    use candle_nn::{ModuleT, VarBuilder, VarMap};
    use kernels::batch_norm::TrainBatchNorm;
    let Some(gpu) = gpu() else { return };
    // 2×7×7 planes spread over several reduction blocks; [N, C] too.
    // tail: 0 none, 1 ReLU, 2 residual add and ReLU.
    for (shape, tail) in [
        (vec![9usize, 6, 14, 49], 0),
        (vec![9, 6, 14, 49], 1),
        (vec![9, 6, 14, 49], 2),
        (vec![64, 10], 0),
    ] {
        let x = Tensor::randn(0.5f32, 2.0, shape.as_slice(), &Device::Cpu).unwrap();
        let r = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu).unwrap();
        for (dtype, tol) in [(DType::F32, 1e-4), (DType::BF16, 3e-2), (DType::F16, 5e-3)] {
            let run = |dev: &Device| {
                let map = VarMap::new();
                let vb = VarBuilder::from_varmap(&map, dtype, dev);
                let bn = TrainBatchNorm::new(shape[1], 1e-5, vb).unwrap();
                let x =
                    Var::from_tensor(&x.to_dtype(dtype).unwrap().to_device(dev).unwrap()).unwrap();
                let r =
                    Var::from_tensor(&r.to_dtype(dtype).unwrap().to_device(dev).unwrap()).unwrap();
                let y = match tail {
                    0 => bn.forward_t(x.as_tensor(), true),
                    1 => bn.forward_t_relu(x.as_tensor(), true),
                    _ => bn.forward_t_add_relu(x.as_tensor(), r.as_tensor(), true),
                }
                .unwrap();
                let loss = (y.to_dtype(DType::F32).unwrap() * w.to_device(dev).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let grads = loss.backward().unwrap();
                let data = map.data().lock().unwrap();
                let grad = |t: &Tensor| {
                    grads
                        .get(t)
                        .cloned()
                        .unwrap_or_else(|| t.zeros_like().unwrap())
                };
                vec![
                    y.clone(),
                    grad(x.as_tensor()),
                    grad(r.as_tensor()),
                    grad(data["weight"].as_tensor()),
                    grad(data["bias"].as_tensor()),
                    data["running_mean"].as_tensor().clone(),
                    data["running_var"].as_tensor().clone(),
                ]
            };
            let (got, want) = (run(&gpu), run(&Device::Cpu));
            let names = [
                "y",
                "dx",
                "d residual",
                "dγ",
                "dβ",
                "running mean",
                "running var",
            ];
            for (what, (g, w)) in names.iter().zip(got.iter().zip(&want)) {
                let e = relative_error(g, w);
                assert!(
                    e < tol,
                    "{shape:?} tail {tail} {dtype:?} {what}: relative error {e}"
                );
            }
        }
    }
}

/// The max-pool kernels (forward and the gathering backward) against the
/// CPU loops: the same maxima and gradients, to the last bit (each input
/// sums its windows' gradients in the same order, in f32), ties included.
#[test]
fn the_max_pool_kernels_match_the_cpu_path() {
    use candle_core::Var;
    use kernels::max_pool::max_pool2d;
    let Some(gpu) = gpu() else { return };
    for (shape, k, s, p) in [
        ((2, 3, 113, 113), 3, 2, 1),
        ((2, 64, 56, 56), 3, 2, 1),
        ((1, 2, 9, 7), 2, 2, 0),
    ] {
        let x = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap();
        // Whole numbers: most windows tie, and ties must go to the first.
        let tied = (&x * 2.0).unwrap().round().unwrap();
        for (x, dtype) in [DType::F32, DType::BF16, DType::F16]
            .into_iter()
            .flat_map(|d| [(&x, d), (&tied, d)])
        {
            let run = |dev: &Device| {
                let x =
                    Var::from_tensor(&x.to_dtype(dtype).unwrap().to_device(dev).unwrap()).unwrap();
                let y = max_pool2d(x.as_tensor(), k, s, p).unwrap();
                let w = Tensor::arange(0f32, y.elem_count() as f32, dev)
                    .unwrap()
                    .reshape(y.shape())
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                (y, grads.get(x.as_tensor()).unwrap().clone())
            };
            let (gy, gdx) = run(&gpu);
            let (cy, cdx) = run(&Device::Cpu);
            assert_eq!(relative_error(&gy, &cy), 0.0, "{shape:?} {dtype:?} forward");
            assert!(
                relative_error(&gdx, &cdx) < 1e-6,
                "{shape:?} {dtype:?} backward"
            );
        }
    }
}

/// Our AdamW's kernels against its CPU loops (themselves checked against
/// candle's AdamW): three steps on the same gradients, each type.
#[test]
fn the_adamw_kernels_match_the_cpu_path() {
    use candle_core::Var;
    use candle_nn::{Optimizer, ParamsAdamW};
    use kernels::adamw::FusedAdamW;
    let Some(gpu) = gpu() else { return };
    let start = Tensor::randn(0f32, 1.0, (300, 70), &Device::Cpu).unwrap();
    let params = ParamsAdamW {
        lr: 0.01,
        weight_decay: 0.05,
        ..ParamsAdamW::default()
    };
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 1e-2), (DType::F16, 2e-3)] {
        let run = |dev: &Device| {
            let w =
                Var::from_tensor(&start.to_dtype(dtype).unwrap().to_device(dev).unwrap()).unwrap();
            let mut opt = FusedAdamW::new(vec![w.clone()], params.clone()).unwrap();
            for k in 1..=3 {
                let loss = ((w.as_tensor().to_dtype(DType::F32).unwrap() - k as f64)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all())
                .unwrap();
                opt.backward_step(&loss).unwrap();
            }
            w.as_tensor().clone()
        };
        let e = relative_error(&run(&gpu), &run(&Device::Cpu));
        assert!(e < tol, "{dtype:?}: relative error {e}");
    }
}

/// `softmax(q·kᵀ + mask)·v` by candle's ops in f32, as the context
/// `[batch, len, hidden]`, for the fused kernels' inputs.
fn attention_by_candles_ops(qkv: &Tensor, mask: Option<&Tensor>, heads: usize) -> Tensor {
    let (b, len, width) = qkv.dims3().unwrap();
    let (hidden, d) = (width / 3, width / 3 / heads);
    let parts = qkv
        .reshape((b, len, 3, heads, d))
        .unwrap()
        .permute((2, 0, 3, 1, 4))
        .unwrap()
        .contiguous()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let (q, k, v) = (
        parts.get(0).unwrap(),
        parts.get(1).unwrap(),
        parts.get(2).unwrap(),
    );
    let mut scores = q.matmul(&k.t().unwrap()).unwrap();
    if let Some(mask) = mask {
        scores = scores
            .broadcast_add(&mask.to_dtype(DType::F32).unwrap())
            .unwrap();
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
    probs
        .matmul(&v)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, len, hidden))
        .unwrap()
}

/// Both fused attention kernels against candle's ops on the same GPU tensors:
/// with and without a padding mask (−∞ and a large negative), lengths that
/// are and are not multiples of 16 and of the tensor-core kernel's 64-key
/// steps, head sizes 32 and 64, each type, each kernel that serves the
/// tensors; and which kernel `fused` picks (tensor cores for bf16 and f16).
#[test]
fn the_fused_attention_kernel_matches_candles_ops() {
    use kernels::attention::{fused, fused_on, kernel_for, Kernel};
    let Some(gpu) = gpu() else { return };
    // 90 × 64: k and v (f32) just fit the CUDA-core kernel's 48 KiB of shared
    // memory; 160 × 64 and 288 × 32 are the most the tensor-core kernel
    // takes, 288 rows in three blocks per head.
    let shapes = [
        (3usize, 77usize, 12usize, 32usize),
        (2, 90, 4, 64),
        (4, 128, 12, 32),
        (2, 128, 4, 64),
        (2, 160, 2, 64),
        (2, 288, 2, 32),
    ];
    for (b, len, heads, d) in shapes {
        let hidden = heads * d;
        let qkv = Tensor::randn(0f32, 1.0, (b, len, 3 * hidden), &Device::Cpu).unwrap();
        // The last 10 tokens of sample 0 are padding.
        let mut m = vec![0f32; b * len];
        for x in &mut m[len - 10..len] {
            *x = f32::NEG_INFINITY;
        }
        m[len + 3] = -10_000.0;
        let mask = Tensor::from_vec(m, (b, 1, 1, len), &Device::Cpu).unwrap();
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 2e-2), (DType::F16, 5e-3)] {
            let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
            let (qkv, mask) = (on(&qkv), on(&mask));
            let cuda_cores_fit = 2 * len * d * 4 <= 48 * 1024;
            let expected = match dtype {
                DType::F32 => cuda_cores_fit.then_some(Kernel::CudaCores),
                _ => Some(Kernel::TensorCores),
            };
            for mask in [None, Some(&mask)] {
                let what = format!("{dtype:?} b{b} len{len} d{d} mask {}", mask.is_some());
                assert_eq!(kernel_for(&qkv, mask, heads), expected, "{what}");
                assert_eq!(
                    fused(&qkv, mask, heads).unwrap().is_some(),
                    expected.is_some()
                );
                let want = attention_by_candles_ops(&qkv, mask, heads);
                for kernel in [Kernel::TensorCores, Kernel::CudaCores] {
                    let Some(got) = fused_on(kernel, &qkv, mask, heads).unwrap() else {
                        continue;
                    };
                    let e = relative_error(&got, &want);
                    println!("{what} {kernel:?}: relative error {e:.2e}");
                    assert!(e < tol, "{what} {kernel:?}: {e}");
                }
            }
        }
    }

    // A sample whose every key is masked: zeros from the tensor-core kernel
    // (candle's softmax and the CUDA-core kernel give NaN), the other sample
    // untouched.
    let (b, len, heads, d) = (2, 128, 12, 32);
    let qkv = Tensor::randn(0f32, 1.0, (b, len, 3 * heads * d), &Device::Cpu).unwrap();
    let mut m = vec![0f32; b * len];
    m[..len].fill(f32::NEG_INFINITY);
    let mask = Tensor::from_vec(m, (b, 1, 1, len), &Device::Cpu).unwrap();
    let on = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_device(&gpu).unwrap();
    let (qkv, mask) = (on(&qkv), on(&mask));
    let got = fused_on(Kernel::TensorCores, &qkv, Some(&mask), heads)
        .unwrap()
        .expect("the tensor-core kernel serves these tensors")
        .to_dtype(DType::F32)
        .unwrap();
    let masked = got.get(0).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(masked.to_scalar::<f32>().unwrap(), 0.0);
    let want = attention_by_candles_ops(&qkv, Some(&mask), heads);
    let e = relative_error(&got.get(1).unwrap(), &want.get(1).unwrap());
    assert!(e < 2e-2, "the unmasked sample: {e}");

    let cpu = Tensor::zeros((1, 4, 3 * 64), DType::F32, &Device::Cpu).unwrap();
    assert!(
        fused(&cpu, None, 2).unwrap().is_none(),
        "CPU tensors take candle's ops"
    );
}

/// Both attention kernels on MiniLM's shape at batch 256 (len 128, hidden
/// 384 as 12 heads × 32, and as 6 heads × 64; bf16, a padding mask), 20 calls
/// each after one to load the module and check it against candle's ops: the
/// wall clock per call here; the kernels' own times under ncu (`ncu
/// --clock-control none --kernel-name regex:attention --metrics
/// gpu__time_duration.sum <test binary> --ignored time_the_attention_kernels`).
#[test]
#[ignore = "a timing, not a check"]
fn time_the_attention_kernels() {
    use kernels::attention::{fused_on, Kernel};
    let Some(gpu) = gpu() else { return };
    let (b, len) = (256, 128);
    let mut m = vec![0f32; b * len];
    for (i, x) in m.iter_mut().enumerate() {
        // Sample s has s % 64 padding tokens.
        if i % len >= len - (i / len) % 64 {
            *x = f32::NEG_INFINITY;
        }
    }
    let mask = Tensor::from_vec(m, (b, 1, 1, len), &gpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    for (heads, d) in [(12, 32), (6, 64)] {
        let qkv = Tensor::randn(0f32, 1.0, (b, len, 3 * heads * d), &gpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let want = attention_by_candles_ops(&qkv, Some(&mask), heads);
        for kernel in [Kernel::CudaCores, Kernel::TensorCores] {
            let run = || fused_on(kernel, &qkv, Some(&mask), heads).unwrap();
            let Some(got) = run() else {
                println!("d{d} {kernel:?}: does not serve this shape");
                continue;
            };
            let e = relative_error(&got, &want);
            gpu.synchronize().unwrap();
            let calls = 20;
            let start = std::time::Instant::now();
            for _ in 0..calls {
                run();
            }
            gpu.synchronize().unwrap();
            let per_call_us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
            println!("d{d} {kernel:?}: {per_call_us:.1} µs per call (wall clock), error {e:.2e}");
        }
    }
}

/// MiniLM's architecture with seeded weights, f32, on the GPU (fused
/// attention, epilogue kernels) against the CPU (candle's ops): the same
/// embeddings for a batch of different lengths (so the padding mask is used).
#[test]
fn the_encoder_on_the_gpu_embeds_as_on_the_cpu() {
    use workloads::text::encoder::{minilm_l6_v2_config, SentenceEncoder};
    if gpu().is_none() {
        return;
    }
    let load = |device| {
        SentenceEncoder::load(
            minilm_l6_v2_config(),
            WeightSource::Random { seed: 5 },
            device,
            DType::F32,
            true,
        )
        .unwrap()
    };
    let (on_gpu, on_cpu) = (
        load(workloads::device::DeviceSpec::Cuda(0)),
        load(workloads::device::DeviceSpec::Cpu),
    );
    let inputs: Vec<Vec<u32>> = [128usize, 77, 5]
        .iter()
        .map(|&n| (0..n as u32).map(|i| 101 + (i * 37) % 29_000).collect())
        .collect();
    let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let (g, c) = (on_gpu.embed(&refs).unwrap(), on_cpu.embed(&refs).unwrap());
    for (i, (g, c)) in g.iter().zip(&c).enumerate() {
        let worst = g
            .iter()
            .zip(c)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "input {i}: largest difference {worst}");
    }
}
