//! NumPy `.npy` headers (`joulebench run --workload onnx --inputs DIR`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ort_backend::npy::parse_header(data) {
        assert!(h.data_offset <= data.len());
    }
});
