//! result.json as `joulebench report`, `compare` and `merge` read it back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<report::schema::RunResult>(data);
    let _ = serde_json::from_slice::<report::schema::CommandResult>(data);
    let _ = serde_json::from_slice::<report::schema::TrainingResult>(data);
});
