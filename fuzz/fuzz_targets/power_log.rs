//! joulebench's own power logs (`power/<meter>.csv`) read back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = power::log::parse_log(text, Path::new("fuzz.csv"));
});
