//! `mlperf_loadgen.joulebench`: what LoadGen gives Python no way to read —
//! the last test's result (our `result.json`, as a dict), so a script can
//! sweep settings without parsing logs. Outside LoadGen's names, so a script
//! using it says so.

use pyo3::prelude::*;
use pyo3::types::PyModule;
use report::schema::RunResult;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static LAST: Mutex<Option<(String, PathBuf)>> = Mutex::new(None);

pub fn store(result: &RunResult, outdir: &Path) {
    if let Ok(json) = serde_json::to_string(result) {
        *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some((json, outdir.to_path_buf()));
    }
}

/// The last test's result (`result.json`'s content) as a dict, or None
/// before any test finished.
#[pyfunction]
fn last_result(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    let json = LAST
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(json, _)| json.clone());
    match json {
        Some(json) => {
            let loads = py.import("json")?.getattr("loads")?;
            Ok(Some(loads.call1((json,))?.unbind()))
        }
        None => Ok(None),
    }
}

/// The folder the last test wrote into (LoadGen's logs, `result.json`,
/// `power/`), or None.
#[pyfunction]
fn last_outdir() -> Option<String> {
    LAST.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(_, dir)| dir.display().to_string())
}

pub fn submodule(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "joulebench")?;
    m.add_function(wrap_pyfunction!(last_result, &m)?)?;
    m.add_function(wrap_pyfunction!(last_outdir, &m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(m)
}
