//! `ipmitool dcmi power reading` output, as a BMC prints it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reading) = power::meter::ipmi::parse_dcmi_power_reading(text) {
        let w = reading.instantaneous_w;
        assert!(w.is_finite() && w >= 0.0, "{text:?}: {w} W");
    }
});
