//! `QuerySamplesComplete` and `FirstTokenComplete`: callable from any
//! thread, timestamped on entry to joulebench's recorder (after the list is
//! read, as LoadGen's is after its copy into a vector).

use crate::running;
use crate::samples::PyQuerySampleResponse;
use loadgen::{QuerySampleResponse, Responder, ResponseId};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// One response as read from Python.
struct Raw {
    /// Kept only for `response_cb`.
    python: Option<Py<PyQuerySampleResponse>>,
    id: u64,
    data: u64,
    size: u64,
    n_tokens: i64,
}

fn read_responses(responses: &Bound<'_, PyAny>, keep_objects: bool) -> PyResult<Vec<Raw>> {
    let mut out = Vec::with_capacity(responses.len().unwrap_or(0));
    for item in responses.try_iter().map_err(|_| {
        PyTypeError::new_err("responses must be a list of mlperf_loadgen.QuerySampleResponse")
    })? {
        let item = item?;
        let r = item.cast::<PyQuerySampleResponse>().map_err(|_| {
            PyTypeError::new_err(format!(
                "responses must hold mlperf_loadgen.QuerySampleResponse objects, not {}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let b = r.borrow();
        out.push(Raw {
            python: keep_objects.then(|| r.clone().unbind()),
            id: b.id,
            data: b.data,
            size: b.size,
            n_tokens: b.n_tokens,
        });
    }
    Ok(out)
}

/// The response bytes at the address Python gave. Only logged responses are
/// copied (accuracy mode, audit samples), as in LoadGen; the memory must be
/// valid for the duration of the call, LoadGen's rule.
fn bytes<'a>(r: &Raw) -> &'a [u8] {
    if r.data == 0 || r.size == 0 {
        return &[];
    }
    // SAFETY: the caller promises, as LoadGen's API requires, that `data`
    // points at `size` readable bytes until this call returns; the slice
    // does not outlive the call.
    unsafe { std::slice::from_raw_parts(r.data as usize as *const u8, r.size as usize) }
}

fn call_response_cb(
    py: Python<'_>,
    responder: &Responder,
    ids: &[ResponseId],
    raws: &[Raw],
    response_cb: &Option<Py<PyAny>>,
) -> PyResult<()> {
    if let Some(cb) = response_cb {
        for (raw, id) in raws.iter().zip(ids) {
            if let (true, Some(object)) = (responder.logs(*id), &raw.python) {
                cb.call1(py, (object.clone_ref(py),))?;
            }
        }
    }
    Ok(())
}

#[pyfunction]
#[pyo3(name = "QuerySamplesComplete", signature = (responses, response_cb = None))]
pub fn query_samples_complete(
    py: Python<'_>,
    responses: &Bound<'_, PyAny>,
    response_cb: Option<Py<PyAny>>,
) -> PyResult<()> {
    let raws = read_responses(responses, response_cb.is_some())?;
    let ids: Vec<u64> = raws.iter().map(|r| r.id).collect();
    running::with_pass(&ids, |responder, ids| {
        call_response_cb(py, responder, ids, &raws, &response_cb)?;
        responder.complete(&to_loadgen(&raws, ids));
        Ok(())
    })?
}

/// The responses as joulebench's recorder takes them, with the pass's ids.
fn to_loadgen<'a>(raws: &[Raw], ids: &[ResponseId]) -> Vec<QuerySampleResponse<'a>> {
    raws.iter()
        .zip(ids)
        .map(|(raw, id)| QuerySampleResponse {
            id: *id,
            data: bytes(raw),
            // LoadGen counts a negative token count as 0.
            n_tokens: raw.n_tokens.max(0) as u64,
        })
        .collect()
}

/// `response_cb` is accepted and never called, as in LoadGen.
#[pyfunction]
#[pyo3(name = "FirstTokenComplete", signature = (responses, response_cb = None))]
pub fn first_token_complete(
    responses: &Bound<'_, PyAny>,
    response_cb: Option<Py<PyAny>>,
) -> PyResult<()> {
    let _ = response_cb;
    let raws = read_responses(responses, false)?;
    let ids: Vec<u64> = raws.iter().map(|r| r.id).collect();
    running::with_pass(&ids, |responder, ids| {
        responder.first_token(&to_loadgen(&raws, ids));
    })
}
