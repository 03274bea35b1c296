//! power-dev's server.conf (INI) and PTDaemon's command line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = mlperf_power::server::PowerDevConfig::parse(text, Path::new("server.conf"));
    let args: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let _ = mlperf_power::ptd_daemon::PtdCommandLine::parse(&args);
});
