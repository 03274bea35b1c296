//! The Python callbacks as joulebench's SUT and QSL. LoadGen's thread (the
//! one that called `StartTest`) takes the GIL for each call, as MLCommons'
//! binding does; an exception stops the test (see `running::fail`) instead
//! of aborting the process.

use crate::running;
use crate::samples::{self, PyQuerySample};
use loadgen::qsl::QslError;
use loadgen::{QuerySample, QuerySampleIndex, QuerySampleLibrary, Responder, SystemUnderTest};
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::OnceLock;

/// Which constructor made a SUT: what its issue callback receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SutKind {
    /// `issue(list[QuerySample])`.
    Samples,
    /// `issue(list[int] ids, list[int] indices)`.
    Fast,
    /// LoadGen over the network: like `Samples`, named by a callback.
    Dispatch,
}

impl SutKind {
    pub fn constructor(self) -> &'static str {
        match self {
            SutKind::Samples => "ConstructSUT",
            SutKind::Fast => "ConstructFastSUT",
            SutKind::Dispatch => "ConstructQDL",
        }
    }
}

pub struct PySut {
    pub kind: SutKind,
    issue: Py<PyAny>,
    flush: Py<PyAny>,
    name_cb: Option<Py<PyAny>>,
    /// A QDL's name, asked once (LoadGen times the call).
    name: OnceLock<String>,
}

impl PySut {
    pub fn new(
        kind: SutKind,
        issue: Py<PyAny>,
        flush: Py<PyAny>,
        name_cb: Option<Py<PyAny>>,
    ) -> PySut {
        PySut {
            kind,
            issue,
            flush,
            name_cb,
            name: OnceLock::new(),
        }
    }
}

impl SystemUnderTest for PySut {
    fn name(&self) -> &str {
        match (&self.name_cb, self.kind) {
            (Some(cb), _) => self.name.get_or_init(|| {
                Python::attach(
                    |py| match cb.call0(py).and_then(|n| n.extract::<String>(py)) {
                        Ok(name) => name,
                        Err(err) => {
                            running::fail(py, err, "name");
                            "PyQDL".into()
                        }
                    },
                )
            }),
            (None, SutKind::Fast) => "PyFastSUT",
            (None, _) => "PySUT",
        }
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        let generation = running::enter_pass(responder);
        Python::attach(|py| {
            let call = || -> PyResult<()> {
                let ids = samples.iter().map(|s| running::python_id(generation, s.id));
                match self.kind {
                    SutKind::Fast => {
                        let ids = PyList::new(py, ids)?;
                        let indices = PyList::new(py, samples.iter().map(|s| s.index as u64))?;
                        self.issue.call1(py, (ids, indices))?;
                    }
                    _ => {
                        let objects = ids
                            .zip(samples)
                            .map(|(id, s)| {
                                samples::untracked(
                                    py,
                                    PyQuerySample {
                                        id,
                                        index: s.index as u64,
                                    },
                                )
                            })
                            .collect::<PyResult<Vec<_>>>()?;
                        self.issue.call1(py, (PyList::new(py, objects)?,))?;
                    }
                }
                Ok(())
            };
            if let Err(err) = call() {
                running::fail(py, err, "issue_queries");
            }
        });
    }

    fn flush_queries(&self) {
        Python::attach(|py| {
            if let Err(err) = self.flush.call0(py) {
                running::fail(py, err, "flush_queries");
            }
        });
    }
}

pub struct PyQsl {
    pub total: usize,
    pub performance: usize,
    load: Py<PyAny>,
    unload: Py<PyAny>,
}

impl PyQsl {
    pub fn new(total: usize, performance: usize, load: Py<PyAny>, unload: Py<PyAny>) -> PyQsl {
        PyQsl {
            total,
            performance,
            load,
            unload,
        }
    }
}

fn indices<'py>(py: Python<'py>, samples: &[QuerySampleIndex]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, samples.iter().map(|&i| i as u64))
}

impl QuerySampleLibrary for PyQsl {
    fn name(&self) -> &str {
        "PyQSL"
    }

    fn total_sample_count(&self) -> usize {
        self.total
    }

    fn performance_sample_count(&self) -> usize {
        self.performance
    }

    fn load_samples_to_ram(&self, samples: &[QuerySampleIndex]) -> Result<(), QslError> {
        Python::attach(|py| {
            let called = indices(py, samples).and_then(|list| self.load.call1(py, (list,)));
            called.map(drop).map_err(|err| {
                let text = err.to_string();
                running::fail(py, err, "load_samples_to_ram");
                QslError::from(format!("load_samples_to_ram raised {text}"))
            })
        })
    }

    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        Python::attach(|py| {
            let called = indices(py, samples).and_then(|list| self.unload.call1(py, (list,)));
            if let Err(err) = called {
                running::fail(py, err, "unload_samples_from_ram");
            }
        });
    }
}
