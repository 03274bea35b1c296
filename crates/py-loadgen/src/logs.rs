//! `LogOutputSettings` and `LogSettings`. `LogSettings.log_output` returns
//! the object it holds, so `ls.log_output.outdir = x` changes it; assigning
//! `ls.log_output = los` copies `los`, as pybind11's `def_readwrite` does.

use crate::enums;
use crate::values;
use loadgen::log::files::Trace;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use std::path::PathBuf;

#[pyclass(name = "LogOutputSettings", module = "mlperf_loadgen")]
#[derive(Clone)]
pub struct PyLogOutputSettings {
    #[pyo3(get)]
    outdir: String,
    #[pyo3(get)]
    prefix: String,
    #[pyo3(get)]
    suffix: String,
    prefix_with_datetime: bool,
    copy_detail_to_stdout: bool,
    copy_summary_to_stdout: bool,
}

impl Default for PyLogOutputSettings {
    fn default() -> Self {
        PyLogOutputSettings {
            outdir: ".".into(),
            prefix: "mlperf_log_".into(),
            suffix: String::new(),
            prefix_with_datetime: false,
            copy_detail_to_stdout: false,
            copy_summary_to_stdout: false,
        }
    }
}

#[pymethods]
impl PyLogOutputSettings {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    #[setter]
    fn set_outdir(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.outdir = values::path_text(value, "outdir")?;
        Ok(())
    }

    #[setter]
    fn set_prefix(&mut self, value: String) {
        self.prefix = value;
    }

    #[setter]
    fn set_suffix(&mut self, value: String) {
        self.suffix = value;
    }

    #[getter]
    fn prefix_with_datetime(&self) -> bool {
        self.prefix_with_datetime
    }

    #[setter]
    fn set_prefix_with_datetime(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.prefix_with_datetime = values::flag(value, "prefix_with_datetime")?;
        Ok(())
    }

    #[getter]
    fn copy_detail_to_stdout(&self) -> bool {
        self.copy_detail_to_stdout
    }

    #[setter]
    fn set_copy_detail_to_stdout(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.copy_detail_to_stdout = values::flag(value, "copy_detail_to_stdout")?;
        Ok(())
    }

    #[getter]
    fn copy_summary_to_stdout(&self) -> bool {
        self.copy_summary_to_stdout
    }

    #[setter]
    fn set_copy_summary_to_stdout(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.copy_summary_to_stdout = values::flag(value, "copy_summary_to_stdout")?;
        Ok(())
    }
}

#[pyclass(name = "LogSettings", module = "mlperf_loadgen")]
pub struct PyLogSettings {
    log_output: Py<PyLogOutputSettings>,
    log_mode: i64,
    log_mode_async_poll_interval_ms: u64,
    enable_trace: bool,
}

impl PyLogSettings {
    pub fn default_in(py: Python<'_>) -> PyResult<PyLogSettings> {
        Ok(PyLogSettings {
            log_output: Py::new(py, PyLogOutputSettings::default())?,
            log_mode: 0,
            log_mode_async_poll_interval_ms: 1000,
            enable_trace: true,
        })
    }

    /// loadgen's file settings for this Python object.
    pub fn to_loadgen(&self, py: Python<'_>) -> loadgen::LogSettings {
        let out = self.log_output.borrow(py);
        let mut logs = loadgen::LogSettings::in_dir(PathBuf::from(&out.outdir));
        logs.prefix = out.prefix.clone();
        logs.suffix = out.suffix.clone();
        logs.prefix_with_datetime = out.prefix_with_datetime;
        logs.copy_detail_to_stdout = out.copy_detail_to_stdout;
        logs.copy_summary_to_stdout = out.copy_summary_to_stdout;
        logs.trace = if self.enable_trace {
            Trace::Events
        } else {
            Trace::EmptyFile
        };
        logs
    }
}

#[pymethods]
impl PyLogSettings {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        Self::default_in(py)
    }

    #[getter]
    fn log_output(&self, py: Python<'_>) -> Py<PyLogOutputSettings> {
        self.log_output.clone_ref(py)
    }

    #[setter]
    fn set_log_output(
        &mut self,
        py: Python<'_>,
        value: PyRef<'_, PyLogOutputSettings>,
    ) -> PyResult<()> {
        self.log_output = Py::new(py, value.clone())?;
        Ok(())
    }

    #[getter]
    fn log_mode(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        enums::logging_mode_to(py, self.log_mode).map(Bound::unbind)
    }

    #[setter]
    fn set_log_mode(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.log_mode = enums::logging_mode_from(value, "log_mode")?;
        Ok(())
    }

    #[getter]
    fn log_mode_async_poll_interval_ms(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.log_mode_async_poll_interval_ms.into_py_any(py)
    }

    #[setter]
    fn set_log_mode_async_poll_interval_ms(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.log_mode_async_poll_interval_ms =
            values::unsigned(value, "log_mode_async_poll_interval_ms")?;
        Ok(())
    }

    #[getter]
    fn enable_trace(&self) -> bool {
        self.enable_trace
    }

    #[setter]
    fn set_enable_trace(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.enable_trace = values::flag(value, "enable_trace")?;
        Ok(())
    }
}
