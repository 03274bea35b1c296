//! Python values as pybind11 converts them for LoadGen's fields: an
//! unsigned integer refuses floats and negative numbers (TypeError), a
//! double takes ints and floats, a bool takes what has a truth value among
//! bool, int, float and None.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

fn wrong(field: &str, expected: &str, value: &Bound<'_, PyAny>) -> PyErr {
    let given = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let shown = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| given.clone());
    PyTypeError::new_err(format!("{field} takes {expected}; got {shown} ({given})"))
}

pub fn unsigned(value: &Bound<'_, PyAny>, field: &str) -> PyResult<u64> {
    // A float never converts (no __index__), so the fast path is exact.
    value
        .extract::<u64>()
        .map_err(|_| wrong(field, "a non-negative int below 2**64", value))
}

pub fn signed32(value: &Bound<'_, PyAny>, field: &str) -> PyResult<i32> {
    if value.is_instance_of::<PyFloat>() {
        return Err(wrong(field, "an int", value));
    }
    value
        .extract::<i32>()
        .map_err(|_| wrong(field, "an int between -2**31 and 2**31-1", value))
}

pub fn double(value: &Bound<'_, PyAny>, field: &str) -> PyResult<f64> {
    if value.is_instance_of::<PyBool>()
        || value.is_instance_of::<PyFloat>()
        || value.is_instance_of::<PyInt>()
    {
        if let Ok(v) = value.extract::<f64>() {
            return Ok(v);
        }
    }
    // numpy scalars and other numbers with __float__.
    if value.hasattr("__float__")? {
        return value
            .extract::<f64>()
            .map_err(|_| wrong(field, "a number", value));
    }
    Err(wrong(field, "a number", value))
}

pub fn flag(value: &Bound<'_, PyAny>, field: &str) -> PyResult<bool> {
    if value.is_none() {
        return Ok(false);
    }
    if value.is_instance_of::<PyBool>()
        || value.is_instance_of::<PyInt>()
        || value.is_instance_of::<PyFloat>()
        || value.get_type().name()? == "bool_"
    {
        return value.is_truthy();
    }
    Err(wrong(field, "a bool", value))
}

/// A path given as `str` or `os.PathLike`.
pub fn path_text(value: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    if let Ok(text) = value.extract::<String>() {
        return Ok(text);
    }
    let py = value.py();
    let fspath = py.import("os")?.getattr("fspath")?;
    fspath
        .call1((value,))
        .and_then(|p| p.extract::<String>())
        .map_err(|_| wrong(field, "a str (or os.PathLike)", value))
}
