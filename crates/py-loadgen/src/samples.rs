//! `QuerySample` (what the SUT is asked) and `QuerySampleResponse` (what it
//! answers), with LoadGen's positional-only constructors.

use crate::values;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyClass, PyClassInitializer};

/// A new object of one of these classes, left out of the cycle collector.
///
/// PyO3 puts every `#[pyclass]` object under the collector, but these hold
/// plain integers and no Python reference, so they can never be part of a
/// cycle (pybind11, MLCommons' binding, never tracks them either). Tracked,
/// the million samples and responses of one Offline query made the
/// collector's full passes walk them again and again: 0.6 of the 0.88 s
/// that `bench/python_loadgen/point.py offline 1000000` took.
pub fn untracked<T: PyClass>(
    py: Python<'_>,
    value: impl Into<PyClassInitializer<T>>,
) -> PyResult<Bound<'_, T>> {
    let object = Bound::new(py, value)?;
    // SAFETY: a live object of a GC type (every pyclass is one); untracking
    // an untracked object does nothing, and PyO3's dealloc untracks again
    // only when it is tracked.
    unsafe { ffi::PyObject_GC_UnTrack(object.as_ptr().cast()) };
    Ok(object)
}

fn positional<'py>(
    class: &str,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    arities: &[usize],
    shape: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if kwargs.is_some_and(|k| !k.is_empty()) || !arities.contains(&args.len()) {
        return Err(PyTypeError::new_err(format!(
            "{class}() takes positional arguments only: {shape}"
        )));
    }
    Ok(args.iter().collect())
}

#[pyclass(name = "QuerySample", module = "mlperf_loadgen")]
#[derive(Clone, Default)]
pub struct PyQuerySample {
    /// The response id to complete the sample with.
    #[pyo3(get)]
    pub id: u64,
    /// The sample's index in the QSL.
    #[pyo3(get)]
    pub index: u64,
}

#[pymethods]
impl PyQuerySample {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new<'py>(
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let a = positional("QuerySample", args, kwargs, &[0, 2], "() or (id, index)")?;
        let sample = match a.as_slice() {
            [] => Self::default(),
            [id, index] => PyQuerySample {
                id: values::unsigned(id, "id")?,
                index: values::unsigned(index, "index")?,
            },
            _ => unreachable!("positional() checked the count"),
        };
        untracked(args.py(), sample)
    }

    #[setter]
    fn set_id(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.id = values::unsigned(value, "id")?;
        Ok(())
    }

    #[setter]
    fn set_index(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.index = values::unsigned(value, "index")?;
        Ok(())
    }

    fn __getstate__(&self) -> (u64, u64) {
        (self.id, self.index)
    }

    fn __setstate__(&mut self, state: (u64, u64)) {
        (self.id, self.index) = state;
    }

    fn __repr__(&self) -> String {
        format!("QuerySample(id={}, index={})", self.id, self.index)
    }
}

#[pyclass(name = "QuerySampleResponse", module = "mlperf_loadgen")]
#[derive(Clone, Default)]
pub struct PyQuerySampleResponse {
    #[pyo3(get)]
    pub id: u64,
    /// The address of the response bytes (as `array.buffer_info()[0]` or
    /// `ndarray.ctypes.data` give it); read only while completing.
    #[pyo3(get)]
    pub data: u64,
    /// Bytes at `data`.
    #[pyo3(get)]
    pub size: u64,
    #[pyo3(get)]
    pub n_tokens: i64,
}

#[pymethods]
impl PyQuerySampleResponse {
    /// `()`, `(id, data, size)` or `(id, data, size, n_tokens)`, positional
    /// only. Built once per sample in a SUT's hot loop, so the arguments are
    /// read without a tuple walk, and the object is left out of the cycle
    /// collector (see [`untracked`]).
    #[new]
    #[pyo3(signature = (id = None, data = None, size = None, n_tokens = None, /))]
    fn new<'py>(
        py: Python<'py>,
        id: Option<&Bound<'py, PyAny>>,
        data: Option<&Bound<'py, PyAny>>,
        size: Option<&Bound<'py, PyAny>>,
        n_tokens: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Self>> {
        let response =
            match (id, data, size) {
                (None, None, None) if n_tokens.is_none() => Self::default(),
                (Some(id), Some(data), Some(size)) => PyQuerySampleResponse {
                    id: values::unsigned(id, "id")?,
                    data: values::unsigned(data, "data")?,
                    size: values::unsigned(size, "size")?,
                    n_tokens: n_tokens.map(signed).transpose()?.unwrap_or(0),
                },
                _ => return Err(PyTypeError::new_err(
                    "QuerySampleResponse() takes positional arguments only: (), (id, data, size) \
                     or (id, data, size, n_tokens)",
                )),
            };
        untracked(py, response)
    }

    #[setter]
    fn set_id(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.id = values::unsigned(value, "id")?;
        Ok(())
    }

    #[setter]
    fn set_data(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.data = values::unsigned(value, "data")?;
        Ok(())
    }

    #[setter]
    fn set_size(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.size = values::unsigned(value, "size")?;
        Ok(())
    }

    #[setter]
    fn set_n_tokens(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.n_tokens = signed(value)?;
        Ok(())
    }

    /// Unlike LoadGen 6.0.17's (whose `__setstate__` always raises), these
    /// round-trip, `n_tokens` included.
    fn __getstate__(&self) -> (u64, u64, u64, i64) {
        (self.id, self.data, self.size, self.n_tokens)
    }

    fn __setstate__(&mut self, state: &Bound<'_, PyTuple>) -> PyResult<()> {
        let a: Vec<Bound<'_, PyAny>> = state.iter().collect();
        if a.len() != 3 && a.len() != 4 {
            return Err(PyRuntimeError::new_err(
                "Invalid state for QuerySampleResponse: expected (id, data, size[, n_tokens])",
            ));
        }
        self.id = values::unsigned(&a[0], "id")?;
        self.data = values::unsigned(&a[1], "data")?;
        self.size = values::unsigned(&a[2], "size")?;
        self.n_tokens = a.get(3).map(signed).transpose()?.unwrap_or(0);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "QuerySampleResponse(id={}, data={:#x}, size={}, n_tokens={})",
            self.id, self.data, self.size, self.n_tokens
        )
    }
}

fn signed(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_instance_of::<pyo3::types::PyFloat>() {
        return Err(PyTypeError::new_err("n_tokens takes an int"));
    }
    value
        .extract::<i64>()
        .map_err(|_| PyTypeError::new_err("n_tokens takes an int that fits in 64 bits"))
}
