//! ImageNet's `val_map.txt` (`FILE LABEL` lines).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = workloads::datasets::labels::parse_val_map(text, Path::new("val_map.txt"));
});
