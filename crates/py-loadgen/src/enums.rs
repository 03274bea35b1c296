//! `TestScenario`, `TestMode` and `LoggingMode`: Python enums (see
//! `enums.py`) that behave as pybind11's do, and their conversions.

use loadgen::{Mode, Scenario};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyType};
use std::ffi::CString;

static CLASSES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The module holding the three enum classes, built once per interpreter.
fn classes(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    CLASSES
        .get_or_try_init(py, || {
            let code = CString::new(include_str!("enums.py")).expect("no NUL in enums.py");
            PyModule::from_code(
                py,
                &code,
                c"mlperf_loadgen/enums.py",
                c"mlperf_loadgen._enums",
            )
            .map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

/// Adds the enum classes to `module`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    for name in ["TestScenario", "TestMode", "LoggingMode"] {
        module.add(name, classes(py)?.getattr(name)?)?;
    }
    Ok(())
}

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    Ok(classes(py)?.getattr(name)?.cast_into::<PyType>()?)
}

/// The member's value, when `value` is a member of enum `name`.
fn value_of(value: &Bound<'_, PyAny>, name: &str, field: &str) -> PyResult<i64> {
    if !value.is_instance(class(value.py(), name)?.as_any())? {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a mlperf_loadgen.{name} (e.g. mlperf_loadgen.{name}.{}), not {}",
            match name {
                "TestScenario" => "Offline",
                "TestMode" => "PerformanceOnly",
                _ => "AsyncPoll",
            },
            value.get_type().name()?
        )));
    }
    value.getattr("value")?.extract()
}

fn member<'py>(py: Python<'py>, name: &str, value: i64) -> PyResult<Bound<'py, PyAny>> {
    class(py, name)?.call1((value,))
}

pub fn scenario_from(value: &Bound<'_, PyAny>, field: &str) -> PyResult<Scenario> {
    Ok(Scenario::ALL[value_of(value, "TestScenario", field)? as usize])
}

pub fn scenario_to(py: Python<'_>, scenario: Scenario) -> PyResult<Bound<'_, PyAny>> {
    let value = Scenario::ALL
        .iter()
        .position(|s| *s == scenario)
        .unwrap_or(0);
    member(py, "TestScenario", value as i64)
}

pub fn mode_from(value: &Bound<'_, PyAny>, field: &str) -> PyResult<Mode> {
    let v = value_of(value, "TestMode", field)?;
    Ok(Mode::from_conf_value(v as u64).unwrap_or(Mode::PerformanceOnly))
}

pub fn mode_to(py: Python<'_>, mode: Mode) -> PyResult<Bound<'_, PyAny>> {
    let value = match mode {
        Mode::SubmissionRun => 0,
        Mode::AccuracyOnly => 1,
        Mode::PerformanceOnly => 2,
        Mode::FindPeakPerformance => 3,
    };
    member(py, "TestMode", value)
}

/// `LoggingMode` values are kept as given (only AsyncPoll is implemented,
/// in LoadGen as here).
pub fn logging_mode_from(value: &Bound<'_, PyAny>, field: &str) -> PyResult<i64> {
    value_of(value, "LoggingMode", field)
}

pub fn logging_mode_to(py: Python<'_>, value: i64) -> PyResult<Bound<'_, PyAny>> {
    member(py, "LoggingMode", value)
}
