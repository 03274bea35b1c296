//! `StartTest` and `StartTestWithLogSettings`: one LoadGen test through the
//! measuring harness (meters around LoadGen's timed window), with the GIL
//! released while it runs, and `result.json` written beside LoadGen's logs.
//!
//! Where LoadGen crashes, this one explains: a missing `outdir` is created;
//! a callback's exception ends the test with its logs written and is raised
//! again here; Ctrl-C ends the test the same way and then raises
//! `KeyboardInterrupt`.

use crate::callbacks::PySut;
use crate::logs::PyLogSettings;
use crate::settings::PyTestSettings;
use crate::{config, handles, power, results, running};
use harness::inference::{run_result, LoadgenTest, RunDescription};
use harness::{Interrupt, Session};
use loadgen::from_config::{from_config, UserConfCount};
use loadgen::log::detail::Severity;
use loadgen::log::files::EarlyMessage;
use loadgen::{RunControl, TestSettings};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[pyfunction]
#[pyo3(
    name = "StartTest",
    signature = (sut, qsl, test_settings, audit_config_filename = "audit.config")
)]
pub fn start_test(
    py: Python<'_>,
    sut: u64,
    qsl: u64,
    test_settings: PyRef<'_, PyTestSettings>,
    audit_config_filename: &str,
) -> PyResult<()> {
    let logs = PyLogSettings::default_in(py)?;
    run(
        py,
        sut,
        qsl,
        &test_settings.inner,
        &logs,
        audit_config_filename,
    )
}

#[pyfunction]
#[pyo3(
    name = "StartTestWithLogSettings",
    signature = (sut, qsl, test_settings, log_settings, audit_config_filename = "audit.config")
)]
pub fn start_test_with_log_settings(
    py: Python<'_>,
    sut: u64,
    qsl: u64,
    test_settings: PyRef<'_, PyTestSettings>,
    log_settings: PyRef<'_, PyLogSettings>,
    audit_config_filename: &str,
) -> PyResult<()> {
    run(
        py,
        sut,
        qsl,
        &test_settings.inner,
        &log_settings,
        audit_config_filename,
    )
}

/// LoadGen re-reads `audit.config` from the working folder (compliance
/// tests TEST01/04/05 put one there) onto a copy of the settings.
fn apply_audit(settings: &mut TestSettings, audit: &str) {
    if audit.is_empty() || !Path::new(audit).is_file() {
        return;
    }
    let scenario = settings.scenario.mlperf_name();
    let outcome = from_config(
        settings,
        Path::new(audit),
        "*",
        scenario,
        2,
        &mut UserConfCount(1),
    );
    config::queue_early(EarlyMessage {
        key: "warning_generic_message".into(),
        value: format!(
            "Found Audit Config file ({audit}). Overriding TestSettings from audit.config file."
        ),
        severity: Severity::Warning,
    });
    for error in outcome.detail_errors {
        config::queue_early(EarlyMessage {
            key: "error_invalid_config".into(),
            value: error,
            severity: Severity::Error,
        });
    }
}

fn run(
    py: Python<'_>,
    sut_key: u64,
    qsl_key: u64,
    settings: &TestSettings,
    py_logs: &PyLogSettings,
    audit: &str,
) -> PyResult<()> {
    let sut: Arc<PySut> = handles::sut(sut_key)?;
    let qsl = handles::qsl(qsl_key)?;
    let mut settings = settings.clone();
    apply_audit(&mut settings, audit);
    let mut logs = py_logs.to_loadgen(py);
    let outdir = absolute(&logs.outdir);
    logs.outdir = outdir.clone();
    if !outdir.is_dir() {
        config::warn(
            py,
            &format!(
                "mlperf_loadgen: outdir {} did not exist; created it (LoadGen would fail to open \
                 its logs and abort the interpreter at exit)",
                outdir.display()
            ),
        )?;
    }
    let options = power::options()?;
    let mut session = Session::open(outdir.clone(), &options, Interrupt::detached())
        .map_err(|e| PyRuntimeError::new_err(format!("joulebench: {e}")))?;
    if !session.has_meters() && !options.none_asked() {
        power::say_no_meter_once();
    }
    logs.early_messages = config::take_early();
    let control = RunControl {
        // A Python SUT may take long on its first batch (model warm-up);
        // LoadGen itself never gives up.
        sut_timeout: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    running::begin(&control)?;
    let ctrl_c =
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&control.interrupt));
    let test = LoadgenTest {
        sut: sut.as_ref(),
        qsl: qsl.as_ref(),
        settings: &settings,
        control: &control,
        logs: &logs,
    };
    let measured = py.detach(|| {
        session
            .measure_idle(|s| eprintln!("joulebench: measuring idle power for {s} s"))
            .map_err(|e| e.to_string())?;
        test.measure(&mut session, |_| ())
            .map_err(|e| e.to_string())
    });
    if let Ok(id) = ctrl_c {
        signal_hook::low_level::unregister(id);
    }
    let failure = running::end();
    let measured = match (measured, failure) {
        (Ok(measured), failure) => (measured, failure),
        // A callback's own exception says more than the run's failure.
        (Err(_), Some(err)) => return Err(err),
        (Err(e), None) => return Err(PyRuntimeError::new_err(format!("joulebench: {e}"))),
    };
    let (measured, failure) = measured;
    let (conf_files, model) = config::history();
    let description = RunDescription {
        command: py
            .import("sys")
            .and_then(|sys| sys.getattr("argv"))
            .and_then(|argv| argv.extract::<Vec<String>>())
            .unwrap_or_default(),
        workload: "python".into(),
        conf_model: model.unwrap_or_default(),
        parameters: serde_json::json!({
            "front_end": "mlperf_loadgen (joulebench)",
            "sut_kind": sut.kind.constructor(),
        }),
        conf_files,
        applied: Vec::new(),
    };
    let result = run_result(&session, description, measured)
        .map_err(|e| PyRuntimeError::new_err(format!("joulebench: {e}")))?;
    session
        .write_json(report::schema::RESULT_FILE, &result)
        .map_err(|e| PyRuntimeError::new_err(format!("joulebench: {e}")))?;
    if logs.copy_summary_to_stdout {
        if let Some(record) = &result.power {
            println!("energy over the timed window (joulebench):");
            for line in report::text::power_lines(record) {
                println!("{line}");
            }
        }
    }
    results::store(&result, &outdir);
    if let Some(err) = failure {
        return Err(err);
    }
    // Ctrl-C: the logs are complete; now Python's own KeyboardInterrupt.
    py.check_signals()?;
    let by_user = control
        .stop_reason
        .lock()
        .map(|r| r.is_none())
        .unwrap_or(true);
    if by_user && control.interrupt.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(
            "the test was interrupted; its logs are complete",
        ));
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
