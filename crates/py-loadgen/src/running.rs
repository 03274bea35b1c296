//! The test running now, as `QuerySamplesComplete` (a module function,
//! called from any thread) finds it: the pass's responder, the run control
//! to stop it, and the first exception a callback raised.
//!
//! Response ids handed to Python carry the pass they belong to in their top
//! bits (`generation << 40 | sequence`), so an id from a pass that ended —
//! one LoadGen would dereference after freeing — is refused with a
//! `ValueError` instead.

use loadgen::{Responder, ResponseId, RunControl};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

struct Pass {
    generation: u64,
    responder: Responder,
}

struct Test {
    control: RunControl,
    pass: Option<Pass>,
}

static CURRENT: RwLock<Option<Test>> = RwLock::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static FAILURE: Mutex<Option<PyErr>> = Mutex::new(None);

fn read() -> std::sync::RwLockReadGuard<'static, Option<Test>> {
    CURRENT.read().unwrap_or_else(|p| p.into_inner())
}

fn write() -> std::sync::RwLockWriteGuard<'static, Option<Test>> {
    CURRENT.write().unwrap_or_else(|p| p.into_inner())
}

/// Marks a test as running; one at a time per process, as in LoadGen.
pub fn begin(control: &RunControl) -> PyResult<()> {
    let mut current = write();
    if current.is_some() {
        return Err(PyRuntimeError::new_err(
            "a test is already running in this process (StartTest runs one test at a time)",
        ));
    }
    *FAILURE.lock().unwrap_or_else(|p| p.into_inner()) = None;
    *current = Some(Test {
        control: control.clone(),
        pass: None,
    });
    Ok(())
}

/// Ends the running test; returns the first exception a callback raised.
pub fn end() -> Option<PyErr> {
    *write() = None;
    FAILURE.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The generation of `responder`'s pass, starting a new one when it is not
/// the pass seen last (LoadGen's accuracy and performance passes).
pub fn enter_pass(responder: &Responder) -> u64 {
    if let Some(Test {
        pass: Some(pass), ..
    }) = read().as_ref()
    {
        if pass.responder.same_pass(responder) {
            return pass.generation;
        }
    }
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(test) = write().as_mut() {
        test.pass = Some(Pass {
            generation,
            responder: responder.clone(),
        });
    }
    generation
}

/// The id Python sees for a sample of pass `generation`.
pub fn python_id(generation: u64, id: ResponseId) -> u64 {
    (generation << SEQ_BITS) | (id.0 & SEQ_MASK)
}

/// Stops the running test because a callback raised; keeps the first error.
pub fn fail(py: Python<'_>, err: PyErr, callback: &str) {
    let reason = format!(
        "stopped: the Python {callback} callback raised {}",
        err.value(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "an exception".into())
    );
    {
        let mut failure = FAILURE.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            *failure = Some(err);
        }
    }
    if let Some(test) = read().as_ref() {
        test.control.stop(reason);
    }
}

/// Runs `f` with the running pass's responder and the ids, checked and
/// translated: every id must belong to this pass, or nothing is done.
pub fn with_pass<T>(ids: &[u64], f: impl FnOnce(&Responder, &[ResponseId]) -> T) -> PyResult<T> {
    let current = read();
    let Some(Pass {
        generation,
        responder,
    }) = current.as_ref().and_then(|t| t.pass.as_ref())
    else {
        return Err(PyValueError::new_err(match ids.first() {
            Some(id) => format!("response id {id}: no test is issuing queries now"),
            None => "no test is issuing queries now".into(),
        }));
    };
    let mut translated = Vec::with_capacity(ids.len());
    for &id in ids {
        let seq = ResponseId(id & SEQ_MASK);
        if id >> SEQ_BITS != *generation || !responder.issued(seq) {
            return Err(PyValueError::new_err(format!(
                "response id {id} was not issued by the running test (from an earlier test or \
                 pass, or not an id LoadGen gave); nothing in this call was completed"
            )));
        }
        translated.push(seq);
    }
    Ok(f(responder, &translated))
}
