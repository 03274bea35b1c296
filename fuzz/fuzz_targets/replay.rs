//! `--power replay:FILE`: traces and power logs as raw bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = power::meter::replay::parse_bytes(data, Path::new("fuzz.csv"));
});
