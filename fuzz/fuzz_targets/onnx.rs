//! ONNX protobuf weight files (`--weights model.onnx`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader takes a path: the input goes to a file of this process's own.
    let path = std::env::temp_dir().join(format!("joulebench-fuzz-{}.onnx", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = workloads::onnx::load(&path);
    }
    let _ = std::fs::remove_file(&path);
});
