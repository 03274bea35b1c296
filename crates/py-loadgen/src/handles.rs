//! The integers `ConstructSUT`/`ConstructQSL`/... return. LoadGen hands out
//! raw pointers (a wrong or twice-destroyed one crashes the interpreter);
//! ours are keys into a table, checked on every use.

use crate::callbacks::{PyQsl, PySut};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a handle stands for.
#[derive(Clone)]
pub enum Handle {
    /// `ConstructSUT`, `ConstructFastSUT` or `ConstructQDL`.
    Sut(Arc<PySut>),
    Qsl(Arc<PyQsl>),
}

impl Handle {
    fn kind(&self) -> &'static str {
        match self {
            Handle::Sut(sut) => sut.kind.constructor(),
            Handle::Qsl(_) => "ConstructQSL",
        }
    }
}

struct Table {
    next: u64,
    live: BTreeMap<u64, Handle>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    // Never 0, like a pointer; odd-looking so nobody mistakes it for an index.
    next: 0x4a42_0001,
    live: BTreeMap::new(),
});

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn insert(handle: Handle) -> u64 {
    let mut t = table();
    let key = t.next;
    t.next += 1;
    t.live.insert(key, handle);
    key
}

fn unknown(key: u64, wanted: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{key} is not a live {wanted} handle: it was destroyed already, or never returned by \
         {wanted} (LoadGen would crash here)"
    ))
}

fn wrong_kind(key: u64, found: &Handle, wanted: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "handle {key} came from {}, not from {wanted}",
        found.kind()
    ))
}

/// The SUT behind `key` (any of the three SUT constructors).
pub fn sut(key: u64) -> PyResult<Arc<PySut>> {
    match table().live.get(&key) {
        Some(Handle::Sut(sut)) => Ok(Arc::clone(sut)),
        Some(other) => Err(wrong_kind(
            key,
            other,
            "ConstructSUT, ConstructFastSUT or ConstructQDL",
        )),
        None => Err(unknown(key, "SUT")),
    }
}

pub fn qsl(key: u64) -> PyResult<Arc<PyQsl>> {
    match table().live.get(&key) {
        Some(Handle::Qsl(qsl)) => Ok(Arc::clone(qsl)),
        Some(other) => Err(wrong_kind(key, other, "ConstructQSL")),
        None => Err(unknown(key, "QSL")),
    }
}

/// Removes `key`, which must have come from `constructor`.
pub fn destroy(key: u64, constructor: &str) -> PyResult<()> {
    let mut t = table();
    match t.live.get(&key) {
        Some(h) if h.kind() == constructor => {
            t.live.remove(&key);
            Ok(())
        }
        Some(other) => Err(wrong_kind(key, other, constructor)),
        None => Err(unknown(key, constructor)),
    }
}
