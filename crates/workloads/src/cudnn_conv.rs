//! Convolutions through cuDNN, forward and backward, as a candle custom op.
//!
//! candle's own CUDA convolution writes every input patch out (im2col) and
//! then multiplies; its `cudnn` feature builds descriptors, asks for an
//! algorithm and zero-fills a fresh workspace on every call, and never allows
//! tensor-core math, which measured slower still (docs/runtime-choice.md).
//! Here each thread keeps one cuDNN handle per candle device and, per layer
//! shape, the descriptors and the algorithms cuDNN's heuristics picked, which
//! is what PyTorch does with `cudnn.benchmark` off. Tensor-core math is
//! allowed as PyTorch allows it (bf16/f16 on tensor cores, f32 as TF32), and
//! the workspace is one buffer per handle that only grows.
//!
//! Only what ResNet needs: NCHW, contiguous, cross-correlation, symmetric
//! padding, no dilation or groups.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_void, CStr};

use crate::conv::InputGradient;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, DType, InplaceOp3, Layout, Result, Shape, Tensor, WithDType,
};
use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use half::{bf16, f16};

/// `conv(x, weight)` on a CUDA device through cuDNN, with gradients for
/// both inputs.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let geometry = Geometry::new(x.dims4()?, weight.dims4()?, stride, padding)?;
    x.contiguous()?.apply_op2(
        &weight.contiguous()?,
        ConvOp {
            pass: Pass::Forward,
            geometry,
        },
    )
}

/// `dx` (as `input_gradient` asks) and `dw` of [`conv2d`] for the output
/// gradient `dy`, through cuDNN, recorded nowhere. A gradient to add `dx`
/// to takes it in place (cuDNN's β = 1), with no pass of its own.
pub fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    stride: usize,
    padding: usize,
    input_gradient: InputGradient,
) -> Result<(Option<Tensor>, Tensor)> {
    let geometry = Geometry::new(x.dims4()?, weight.dims4()?, stride, padding)?;
    backward(geometry, x, weight, dy, input_gradient)
}

fn backward(
    geometry: Geometry,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    input_gradient: InputGradient,
) -> Result<(Option<Tensor>, Tensor)> {
    let dy = dy.contiguous()?;
    let pass = |pass| ConvOp { pass, geometry };
    let w = w.contiguous()?;
    let dx = match input_gradient {
        InputGradient::Skip => None,
        InputGradient::New => Some(w.apply_op2_no_bwd(&dy, &pass(Pass::BackwardData))?),
        InputGradient::AddedTo(sum) => {
            if sum.dims() != geometry.x {
                candle_core::bail!(
                    "cuDNN convolution: the gradient to add to is {:?}, the input {:?}",
                    sum.shape(),
                    geometry.x
                );
            }
            let sum = sum.contiguous()?;
            sum.inplace_op3(&w, &dy, &AddData(geometry))?;
            Some(sum)
        }
    };
    let dw = x
        .contiguous()?
        .apply_op2_no_bwd(&dy, &pass(Pass::BackwardFilter))?;
    Ok((dx, dw))
}

/// The shapes of one convolution: everything a plan depends on but the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Geometry {
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn new(
        x: (usize, usize, usize, usize),
        w: (usize, usize, usize, usize),
        stride: usize,
        padding: usize,
    ) -> Result<Geometry> {
        let g = Geometry {
            x: [x.0, x.1, x.2, x.3],
            w: [w.0, w.1, w.2, w.3],
            stride,
            padding,
        };
        if g.x[1] != g.w[1]
            || stride == 0
            || g.x[2] + 2 * padding < g.w[2]
            || g.x[3] + 2 * padding < g.w[3]
        {
            candle_core::bail!(
                "convolution: input {:?} does not fit kernel {:?} with stride {stride}, padding {padding}",
                g.x,
                g.w
            );
        }
        Ok(g)
    }

    fn y(&self) -> [usize; 4] {
        let out = |i: usize, k: usize| (i + 2 * self.padding - k) / self.stride + 1;
        [
            self.x[0],
            self.w[0],
            out(self.x[2], self.w[2]),
            out(self.x[3], self.w[3]),
        ]
    }
}

/// One pass of one convolution as a candle op. The forward pass's
/// gradients are the two backward passes, run as ops of their own.
struct ConvOp {
    pass: Pass,
    geometry: Geometry,
}

impl ConvOp {
    /// The shape this pass writes: `y` forward, `x` for `dx`, `w` for `dw`.
    fn out_dims(&self) -> [usize; 4] {
        match self.pass {
            Pass::Forward => self.geometry.y(),
            Pass::BackwardData => self.geometry.x,
            Pass::BackwardFilter => self.geometry.w,
        }
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "cudnn-conv2d",
            Pass::BackwardData => "cudnn-conv2d-backward-data",
            Pass::BackwardFilter => "cudnn-conv2d-backward-filter",
        }
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!(
            "{} runs on CUDA devices only; CPU tensors use candle's convolution",
            self.name()
        )
    }
    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        al: &Layout,
        b: &CudaStorage,
        bl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dims = self.out_dims();
        let out =
            run(self.pass, self.geometry, a, al, b, bl, Output::New(dims))?.expect("a new tensor");
        Ok((out, Shape::from(dims.to_vec())))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.pass != Pass::Forward {
            candle_core::bail!("{}: no second derivatives", self.name());
        }
        let (dx, dw) = backward(self.geometry, x, w, dy, InputGradient::New)?;
        Ok((dx, Some(dw)))
    }
}

/// The input-gradient pass added onto a gradient in place: `(sum, w, dy)`,
/// `sum += dx`.
struct AddData(Geometry);

impl InplaceOp3 for AddData {
    fn name(&self) -> &'static str {
        "cudnn-conv2d-backward-data-add"
    }
    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        candle_core::bail!("{} runs on CUDA devices only", self.name())
    }
    fn cuda_fwd(
        &self,
        sum: &mut CudaStorage,
        sum_l: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        dy: &CudaStorage,
        dyl: &Layout,
    ) -> Result<()> {
        let out = Output::AddTo(sum, sum_l);
        run(Pass::BackwardData, self.0, w, wl, dy, dyl, out).map(|_| ())
    }
}

/// Where a pass writes: a new tensor of these dims, or added onto one.
enum Output<'a> {
    New([usize; 4]),
    AddTo(&'a mut CudaStorage, &'a Layout),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pass {
    /// `y = conv(x, w)`; inputs `(x, w)`.
    Forward,
    /// `dx`; inputs `(w, dy)`.
    BackwardData,
    /// `dw`; inputs `(x, dy)`.
    BackwardFilter,
}

/// Runs one pass on `a` and `b` (see [`Pass`]) into `out`, typed as the
/// inputs: the new tensor, or `None` when added onto one.
fn run(
    pass: Pass,
    g: Geometry,
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
    out: Output,
) -> Result<Option<CudaStorage>> {
    let contiguous = match &out {
        Output::AddTo(_, l) => l.is_contiguous(),
        Output::New(_) => true,
    };
    if !al.is_contiguous() || !bl.is_contiguous() || !contiguous {
        candle_core::bail!("cuDNN convolution: operands must be contiguous");
    }
    match (a.dtype(), b.dtype()) {
        (DType::BF16, DType::BF16) => typed::<bf16>(pass, g, a, al, b, bl, out),
        (DType::F16, DType::F16) => typed::<f16>(pass, g, a, al, b, bl, out),
        (DType::F32, DType::F32) => typed::<f32>(pass, g, a, al, b, bl, out),
        (l, r) => {
            candle_core::bail!("cuDNN convolution: {l:?} and {r:?} (bf16, f16 or f32, both alike)")
        }
    }
}

/// An element type cuDNN convolves, with the type it accumulates in.
trait Element: CudaDType + DeviceRepr + WithDType {
    const DATA: sys::cudnnDataType_t;
}
impl Element for bf16 {
    const DATA: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16;
}
impl Element for f16 {
    const DATA: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_HALF;
}
impl Element for f32 {
    const DATA: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
}

fn typed<T: Element>(
    pass: Pass,
    g: Geometry,
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
    out: Output,
) -> Result<Option<CudaStorage>> {
    let device = a.device.clone();
    let stream = device.cuda_stream();
    let a_slice = a.as_cuda_slice::<T>()?;
    let b_slice = b.as_cuda_slice::<T>()?;
    let elem = std::mem::size_of::<T>() as u64;
    let mut target = match out {
        // SAFETY: cuDNN writes every element of the output (beta = 0).
        Output::New(dims) => Target::New(unsafe { device.alloc::<T>(dims.iter().product())? }),
        Output::AddTo(sum, l) => Target::Into(sum.as_cuda_slice_mut::<T>()?, l.start_offset()),
    };
    {
        let (a_ptr, _a_done) = a_slice.device_ptr(&stream);
        let (b_ptr, _b_done) = b_slice.device_ptr(&stream);
        let (out_ptr, beta, _out_done) = match &mut target {
            Target::New(slice) => {
                let (p, done) = slice.device_ptr_mut(&stream);
                (p, 0.0, done)
            }
            Target::Into(slice, offset) => {
                let (p, done) = slice.device_ptr_mut(&stream);
                (p + *offset as u64 * elem, 1.0, done)
            }
        };
        let a_ptr = a_ptr + al.start_offset() as u64 * elem;
        let b_ptr = b_ptr + bl.start_offset() as u64 * elem;
        HANDLES.with(|handles| -> Result<()> {
            let mut handles = handles.borrow_mut();
            let handle = match handles.entry(device.id()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(Handle::new(&device)?),
            };
            handle.launch::<T>(&device, pass, g, (a_ptr, b_ptr, out_ptr), beta)
        })?;
    }
    Ok(match target {
        Target::New(slice) => Some(CudaStorage::wrap_cuda_slice(slice, device)),
        Target::Into(..) => None,
    })
}

/// [`Output`] as a typed buffer: a new one, or one (from an element offset)
/// to add onto.
enum Target<'a, T> {
    New(CudaSlice<T>),
    Into(&'a mut CudaSlice<T>, usize),
}

thread_local! {
    /// cuDNN handles are not to be shared between threads; candle gives each
    /// `Device::new_cuda` its own stream and id, so one handle per id.
    static HANDLES: RefCell<HashMap<DeviceId, Handle>> = RefCell::new(HashMap::new());
}

/// One cuDNN handle bound to one candle device's stream, its plans and its
/// workspace.
struct Handle {
    raw: sys::cudnnHandle_t,
    plans: HashMap<(DType, Geometry), Plan>,
    workspace: Option<CudaSlice<u8>>,
}

impl Handle {
    fn new(device: &CudaDevice) -> Result<Handle> {
        let mut raw = std::ptr::null_mut();
        check("cudnnCreate", unsafe { sys::cudnnCreate(&mut raw) })?;
        let handle = Handle {
            raw,
            plans: HashMap::new(),
            workspace: None,
        };
        let stream = device.cuda_stream().cu_stream() as sys::cudaStream_t;
        check("cudnnSetStream", unsafe {
            sys::cudnnSetStream(raw, stream)
        })?;
        Ok(handle)
    }

    fn launch<T: Element>(
        &mut self,
        device: &CudaDevice,
        pass: Pass,
        g: Geometry,
        (a, b, out): (u64, u64, u64),
        beta: f32,
    ) -> Result<()> {
        let key = (T::DTYPE, g);
        let plan = match self.plans.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Plan::new(T::DATA, g)?),
        };
        let (algo, math, bytes) = plan.algorithm(self.raw, pass)?;
        check("cudnnSetConvolutionMathType", unsafe {
            sys::cudnnSetConvolutionMathType(plan.conv, math)
        })?;
        if self
            .workspace
            .as_ref()
            .map_or(bytes > 0, |w| w.len() < bytes)
        {
            // Drop the old buffer first: its memory goes back to the pool.
            self.workspace = None;
            // SAFETY: scratch memory, never read before cuDNN writes it.
            self.workspace = Some(unsafe { device.alloc::<u8>(bytes)? });
        }
        let stream = device.cuda_stream();
        let (ws_ptr, ws_bytes, _ws_done) = match &self.workspace {
            Some(w) => {
                let (p, done) = w.device_ptr(&stream);
                (p as *mut c_void, w.len(), Some(done))
            }
            None => (std::ptr::null_mut(), 0, None),
        };
        // out = α·result + β·out: β is 0 for a new tensor, 1 to add onto one.
        let one = 1f32;
        let alpha = &one as *const f32 as *const c_void;
        let beta = &beta as *const f32 as *const c_void;
        let (a, b, out) = (a as *const c_void, b as *const c_void, out as *mut c_void);
        // SAFETY: the descriptors describe these buffers: same geometry, type
        // and NCHW contiguous layout, checked by the callers.
        let status = unsafe {
            match (pass, algo) {
                (Pass::Forward, Algo::Forward(algo)) => sys::cudnnConvolutionForward(
                    self.raw, alpha, plan.x, a, plan.w, b, plan.conv, algo, ws_ptr, ws_bytes, beta,
                    plan.y, out,
                ),
                (Pass::BackwardData, Algo::Data(algo)) => sys::cudnnConvolutionBackwardData(
                    self.raw, alpha, plan.w, a, plan.y, b, plan.conv, algo, ws_ptr, ws_bytes, beta,
                    plan.x, out,
                ),
                (Pass::BackwardFilter, Algo::Filter(algo)) => sys::cudnnConvolutionBackwardFilter(
                    self.raw, alpha, plan.x, a, plan.y, b, plan.conv, algo, ws_ptr, ws_bytes, beta,
                    plan.w, out,
                ),
                _ => unreachable!("Plan::algorithm answers in the pass's own kind"),
            }
        };
        check_for(pass, g, status)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.plans.clear();
        unsafe { sys::cudnnDestroy(self.raw) };
    }
}

#[derive(Clone, Copy)]
enum Algo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    Data(sys::cudnnConvolutionBwdDataAlgo_t),
    Filter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// Descriptors for one geometry and type, and per pass the algorithm, its
/// math type and its workspace in bytes, chosen on first use.
struct Plan {
    x: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
    chosen: HashMap<Pass, (Algo, sys::cudnnMathType_t, usize)>,
}

/// The most workspace an algorithm may ask for; cuDNN's heuristics rank
/// some algorithms first that want gigabytes.
const WORKSPACE_LIMIT_BYTES: usize = 1 << 30;

impl Plan {
    fn new(data: sys::cudnnDataType_t, g: Geometry) -> Result<Plan> {
        let i = |v: usize| v as i32;
        let mut plan = Plan {
            x: std::ptr::null_mut(),
            w: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            conv: std::ptr::null_mut(),
            chosen: HashMap::new(),
        };
        let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let y = g.y();
        unsafe {
            check(
                "cudnnCreateTensorDescriptor",
                sys::cudnnCreateTensorDescriptor(&mut plan.x),
            )?;
            check(
                "cudnnCreateTensorDescriptor",
                sys::cudnnCreateTensorDescriptor(&mut plan.y),
            )?;
            check(
                "cudnnCreateFilterDescriptor",
                sys::cudnnCreateFilterDescriptor(&mut plan.w),
            )?;
            check(
                "cudnnCreateConvolutionDescriptor",
                sys::cudnnCreateConvolutionDescriptor(&mut plan.conv),
            )?;
            let [n, c, h, w] = g.x;
            check(
                "cudnnSetTensor4dDescriptor",
                sys::cudnnSetTensor4dDescriptor(plan.x, nchw, data, i(n), i(c), i(h), i(w)),
            )?;
            let [n, c, h, w] = y;
            check(
                "cudnnSetTensor4dDescriptor",
                sys::cudnnSetTensor4dDescriptor(plan.y, nchw, data, i(n), i(c), i(h), i(w)),
            )?;
            let [k, c, r, s] = g.w;
            check(
                "cudnnSetFilter4dDescriptor",
                sys::cudnnSetFilter4dDescriptor(plan.w, data, nchw, i(k), i(c), i(r), i(s)),
            )?;
            // Accumulate in f32 whatever the storage type (cuDNN's "pseudo
            // half/bfloat16" configurations, as PyTorch uses).
            check(
                "cudnnSetConvolution2dDescriptor",
                sys::cudnnSetConvolution2dDescriptor(
                    plan.conv,
                    i(g.padding),
                    i(g.padding),
                    i(g.stride),
                    i(g.stride),
                    1,
                    1,
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ),
            )?;
        }
        Ok(plan)
    }

    /// The pass's algorithm: the best that cuDNN's heuristics rank as
    /// supported with workspace under the limit, tensor cores allowed.
    fn algorithm(
        &mut self,
        handle: sys::cudnnHandle_t,
        pass: Pass,
    ) -> Result<(Algo, sys::cudnnMathType_t, usize)> {
        if let Some(chosen) = self.chosen.get(&pass) {
            return Ok(*chosen);
        }
        let tensor_ops = sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH;
        check("cudnnSetConvolutionMathType", unsafe {
            sys::cudnnSetConvolutionMathType(self.conv, tensor_ops)
        })?;
        const MAX: usize = 16;
        let mut count = 0i32;
        let ok = sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS;
        // The three queries differ only in their types, function and the
        // order of the descriptors; the answer's fields are the same.
        macro_rules! best_ranked {
            ($perf:ty, $query:ident, $algo:path, $a:expr, $b:expr, $c:expr, $d:expr) => {{
                let mut perf = [std::mem::zeroed::<$perf>(); MAX];
                check(
                    stringify!($query),
                    sys::$query(
                        handle,
                        $a,
                        $b,
                        $c,
                        $d,
                        MAX as i32,
                        &mut count,
                        perf.as_mut_ptr(),
                    ),
                )?;
                perf[..count as usize]
                    .iter()
                    .find(|p| p.status == ok && p.memory <= WORKSPACE_LIMIT_BYTES)
                    .map(|p| ($algo(p.algo), p.mathType, p.memory))
            }};
        }
        // SAFETY: the descriptors are this plan's, valid until it drops;
        // cuDNN writes at most MAX entries and says how many in `count`.
        let chosen = unsafe {
            match pass {
                Pass::Forward => best_ranked!(
                    sys::cudnnConvolutionFwdAlgoPerf_t,
                    cudnnGetConvolutionForwardAlgorithm_v7,
                    Algo::Forward,
                    self.x,
                    self.w,
                    self.conv,
                    self.y
                ),
                Pass::BackwardData => best_ranked!(
                    sys::cudnnConvolutionBwdDataAlgoPerf_t,
                    cudnnGetConvolutionBackwardDataAlgorithm_v7,
                    Algo::Data,
                    self.w,
                    self.y,
                    self.conv,
                    self.x
                ),
                Pass::BackwardFilter => best_ranked!(
                    sys::cudnnConvolutionBwdFilterAlgoPerf_t,
                    cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                    Algo::Filter,
                    self.x,
                    self.y,
                    self.conv,
                    self.w
                ),
            }
        };
        let Some(chosen) = chosen else {
            candle_core::bail!(
                "cuDNN has no {pass:?} convolution algorithm for this layer (of {count} ranked)"
            );
        };
        self.chosen.insert(pass, chosen);
        Ok(chosen)
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        unsafe {
            sys::cudnnDestroyTensorDescriptor(self.x);
            sys::cudnnDestroyTensorDescriptor(self.y);
            sys::cudnnDestroyFilterDescriptor(self.w);
            sys::cudnnDestroyConvolutionDescriptor(self.conv);
        }
    }
}

fn status_text(status: sys::cudnnStatus_t) -> String {
    // SAFETY: cuDNN returns a static, NUL-terminated string.
    let text = unsafe { CStr::from_ptr(sys::cudnnGetErrorString(status)) };
    text.to_string_lossy().into_owned()
}

fn check(call: &str, status: sys::cudnnStatus_t) -> Result<()> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    candle_core::bail!("{call} failed: {}", status_text(status))
}

fn check_for(pass: Pass, g: Geometry, status: sys::cudnnStatus_t) -> Result<()> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    candle_core::bail!(
        "cuDNN convolution {pass:?} (input {:?}, kernel {:?}, stride {}, padding {}) failed: {}",
        g.x,
        g.w,
        g.stride,
        g.padding,
        status_text(status)
    )
}
