//! Input batches onto an NVIDIA GPU through page-locked host memory.
//!
//! Each thread keeps one page-locked buffer per GPU and the data set writes
//! the batch straight into it, in place of stacking the samples into a host
//! tensor first and moving that with `to_device`. Measured on an H100
//! (ResNet-50, batch 64): the stack took 26 ms; writing into the buffer and
//! copying in took about as long as the pageable copy alone (5–6 ms), so the
//! gain is the stack this replaces. MLPerf keeps the copy in the timed path
//! (samples start in host memory), and so do we.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Result, Shape, Storage, Tensor};
use cudarc::driver::PinnedHostSlice;

thread_local! {
    /// One growing buffer per GPU for this thread; the copy out of it ends
    /// before the next batch overwrites it (`as_mut_slice` waits for it).
    static PINNED: RefCell<HashMap<DeviceId, PinnedHostSlice<f32>>> = RefCell::new(HashMap::new());
}

/// A new f32 tensor of `shape` on `device`, its elements written by `fill`
/// into page-locked memory and copied in on the device's stream.
pub fn upload_f32(
    device: &CudaDevice,
    shape: impl Into<Shape>,
    fill: impl FnOnce(&mut [f32]) -> std::result::Result<(), crate::image_qsl::SampleError>,
) -> Result<Tensor> {
    let shape = shape.into();
    let len = shape.elem_count();
    let stream = device.cuda_stream();
    PINNED.with(|pinned| -> Result<Tensor> {
        let mut pinned = pinned.borrow_mut();
        let id = device.id();
        if pinned.get(&id).is_none_or(|buf| buf.len() < len) {
            // Drop the smaller buffer first; then one of the needed size.
            pinned.remove(&id);
            // SAFETY: written in full below (`fill` gets exactly `len`
            // elements) before anything reads it.
            let buf = unsafe { stream.context().alloc_pinned::<f32>(len) }
                .map_err(candle_core::Error::wrap)?;
            pinned.insert(id, buf);
        }
        let host = &mut pinned
            .get_mut(&id)
            .expect("inserted above")
            .as_mut_slice()
            .map_err(candle_core::Error::wrap)?[..len];
        fill(host).map_err(candle_core::Error::wrap)?;
        // SAFETY: the copy below writes every element.
        let mut on_device = unsafe { device.alloc::<f32>(len)? };
        // A plain slice to cudarc: it waits for the copy before returning,
        // which keeps the buffer's reuse safe; the pointer is page-locked,
        // so the driver copies from it directly, with no bounce buffer.
        stream
            .memcpy_htod(&*host, &mut on_device)
            .map_err(candle_core::Error::wrap)?;
        let storage = CudaStorage::wrap_cuda_slice(on_device, device.clone());
        Ok(Tensor::from_storage(
            Storage::Cuda(storage),
            shape,
            BackpropOp::none(),
            false,
        ))
    })
}
