//! `FromConfig`'s process-wide state, as LoadGen keeps it: the count of
//! `conf_type=1` calls, the messages waiting for the next test's detail log,
//! and (ours) which files and model were read, for `result.json`.

use loadgen::from_config::{from_config as loadgen_from_config, UserConfCount};
use loadgen::log::detail::Severity;
use loadgen::log::files::EarlyMessage;
use loadgen::TestSettings;
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use std::ffi::CString;
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
struct ConfState {
    user_confs: UserConfCount,
    early: Vec<EarlyMessage>,
    files: Vec<String>,
    model: Option<String>,
}

static STATE: Mutex<ConfState> = Mutex::new(ConfState {
    user_confs: UserConfCount(0),
    early: Vec::new(),
    files: Vec::new(),
    model: None,
});

fn state() -> std::sync::MutexGuard<'static, ConfState> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// LoadGen's `TestSettings::FromConfig`, with each skipped or refused line
/// also raised as a `UserWarning` naming file, line and key.
pub fn from_config(
    py: Python<'_>,
    settings: &mut TestSettings,
    path: &str,
    model: &str,
    scenario: &str,
    conf_type: i64,
) -> PyResult<i32> {
    let outcome = {
        let mut state = state();
        let outcome = loadgen_from_config(
            settings,
            Path::new(path),
            model,
            scenario,
            conf_type,
            &mut state.user_confs,
        );
        state
            .early
            .extend(outcome.detail_errors.iter().map(|e| EarlyMessage {
                key: "error_invalid_config".into(),
                value: e.clone(),
                severity: Severity::Error,
            }));
        if conf_type != 0 {
            state.files.push(path.to_string());
        }
        state.model = Some(model.to_string());
        outcome
    };
    for note in &outcome.notes {
        warn(py, &format!("mlperf_loadgen.FromConfig: {note}"))?;
    }
    Ok(outcome.code)
}

/// Queues a message for the next test's detail log.
pub fn queue_early(message: EarlyMessage) {
    state().early.push(message);
}

/// The messages for the test starting now (LoadGen flushes them into it).
pub fn take_early() -> Vec<EarlyMessage> {
    std::mem::take(&mut state().early)
}

/// The conf files read so far and the model they were read for.
pub fn history() -> (Vec<String>, Option<String>) {
    let state = state();
    (state.files.clone(), state.model.clone())
}

/// A `UserWarning` pointing at the caller's line.
pub fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &text, 1)
}
