//! PTDaemon's sample lines and replies, and MLPerf's timestamps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use power::meter::ptd;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sample) = ptd::parse_sample_line(text) {
        // What we write back must read back.
        let again = ptd::parse_sample_line(&ptd::format_sample_line(&sample));
        assert!(again.is_ok(), "{text:?} parsed, its formatted form did not");
    }
    let _ = ptd::parse_sample_log(text);
    let _ = ptd::parse_ranges_reply(text);
    let _ = ptd::parse_identify_reply(text);
    let _ = ptd::parse_ptd_url(text);
    let _ = mlperf_time::Timestamp::parse(text);
});
