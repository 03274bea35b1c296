//! `mlperf_loadgen`, the Python module MLCommons' LoadGen ships, built on
//! joulebench's load generator: the same functions, classes, enums and
//! files, so MLPerf's reference implementations run under it unchanged, with
//! each test's energy measured over LoadGen's timed window by the measuring
//! harness. `../shared/reference/mlperf-loadgen-python-api.md` is the
//! specification it follows.

mod callbacks;
mod complete;
mod config;
mod enums;
mod handles;
mod logs;
mod power;
mod results;
mod running;
mod samples;
mod settings;
mod start_test;
mod values;

use callbacks::{PyQsl, PySut, SutKind};
use handles::Handle;
use pyo3::prelude::*;
use std::sync::Arc;

/// `ConstructSUT(issue_cb, flush_cb) -> handle`.
#[pyfunction]
#[pyo3(name = "ConstructSUT", signature = (arg0, arg1, /))]
fn construct_sut(arg0: Py<PyAny>, arg1: Py<PyAny>) -> u64 {
    handles::insert(Handle::Sut(Arc::new(PySut::new(
        SutKind::Samples,
        arg0,
        arg1,
        None,
    ))))
}

/// `ConstructFastSUT(fast_issue_cb(ids, indices), flush_cb) -> handle`.
#[pyfunction]
#[pyo3(name = "ConstructFastSUT", signature = (arg0, arg1, /))]
fn construct_fast_sut(arg0: Py<PyAny>, arg1: Py<PyAny>) -> u64 {
    handles::insert(Handle::Sut(Arc::new(PySut::new(
        SutKind::Fast,
        arg0,
        arg1,
        None,
    ))))
}

/// `ConstructQDL(issue_cb, flush_cb, name_cb) -> handle`; the handle goes
/// in StartTest's `sut` slot.
#[pyfunction]
#[pyo3(name = "ConstructQDL", signature = (arg0, arg1, arg2, /))]
fn construct_qdl(arg0: Py<PyAny>, arg1: Py<PyAny>, arg2: Py<PyAny>) -> u64 {
    handles::insert(Handle::Sut(Arc::new(PySut::new(
        SutKind::Dispatch,
        arg0,
        arg1,
        Some(arg2),
    ))))
}

/// `ConstructQSL(total_sample_count, performance_sample_count, load_cb,
/// unload_cb) -> handle`.
#[pyfunction]
#[pyo3(name = "ConstructQSL", signature = (arg0, arg1, arg2, arg3, /))]
fn construct_qsl(arg0: usize, arg1: usize, arg2: Py<PyAny>, arg3: Py<PyAny>) -> u64 {
    handles::insert(Handle::Qsl(Arc::new(PyQsl::new(arg0, arg1, arg2, arg3))))
}

#[pyfunction]
#[pyo3(name = "DestroySUT", signature = (arg0, /))]
fn destroy_sut(arg0: u64) -> PyResult<()> {
    handles::destroy(arg0, "ConstructSUT")
}

#[pyfunction]
#[pyo3(name = "DestroyFastSUT", signature = (arg0, /))]
fn destroy_fast_sut(arg0: u64) -> PyResult<()> {
    handles::destroy(arg0, "ConstructFastSUT")
}

#[pyfunction]
#[pyo3(name = "DestroyQDL", signature = (arg0, /))]
fn destroy_qdl(arg0: u64) -> PyResult<()> {
    handles::destroy(arg0, "ConstructQDL")
}

#[pyfunction]
#[pyo3(name = "DestroyQSL", signature = (arg0, /))]
fn destroy_qsl(arg0: u64) -> PyResult<()> {
    handles::destroy(arg0, "ConstructQSL")
}

#[pymodule(gil_used = false)]
fn mlperf_loadgen(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    enums::register(m)?;
    m.add_class::<settings::PyTestSettings>()?;
    m.add_class::<logs::PyLogOutputSettings>()?;
    m.add_class::<logs::PyLogSettings>()?;
    m.add_class::<samples::PyQuerySample>()?;
    m.add_class::<samples::PyQuerySampleResponse>()?;
    for f in [
        wrap_pyfunction!(construct_sut, m)?,
        wrap_pyfunction!(construct_fast_sut, m)?,
        wrap_pyfunction!(construct_qdl, m)?,
        wrap_pyfunction!(construct_qsl, m)?,
        wrap_pyfunction!(destroy_sut, m)?,
        wrap_pyfunction!(destroy_fast_sut, m)?,
        wrap_pyfunction!(destroy_qdl, m)?,
        wrap_pyfunction!(destroy_qsl, m)?,
        wrap_pyfunction!(start_test::start_test, m)?,
        wrap_pyfunction!(start_test::start_test_with_log_settings, m)?,
        wrap_pyfunction!(complete::query_samples_complete, m)?,
        wrap_pyfunction!(complete::first_token_complete, m)?,
    ] {
        m.add_function(f)?;
    }
    let joulebench = results::submodule(py)?;
    m.add_submodule(&joulebench)?;
    // `import mlperf_loadgen.joulebench` finds it too.
    py.import("sys")?
        .getattr("modules")?
        .set_item("mlperf_loadgen.joulebench", &joulebench)?;
    m.add("__version__", "6.0.17")?;
    Ok(())
}
