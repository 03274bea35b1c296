//! mlperf.conf / user.conf text: parsed, then applied to every scenario.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loadgen::{Scenario, TestSettings};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(conf) = loadgen::conf::ConfFile::parse(Path::new("fuzz.conf"), text) {
        for scenario in Scenario::ALL {
            let mut settings = TestSettings {
                scenario,
                ..Default::default()
            };
            let _ = conf.apply("resnet50", &mut settings);
        }
    }
    let _ = loadgen::conf::apply_override(&mut TestSettings::default(), "resnet50", text);
});
