//! MLPerf's `mlperf_log_accuracy.json`, as `joulebench accuracy` reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = workloads::datasets::accuracy_log::parse_accuracy_log(
        text,
        Path::new("mlperf_log_accuracy.json"),
    );
});
