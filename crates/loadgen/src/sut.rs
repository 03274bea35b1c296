//! The system under test: what the load generator drives.
//!
//! LoadGen hands the SUT batches of [`QuerySample`]s; the SUT answers each
//! sample, from any thread and in any order, through the [`Responder`] it was
//! given (clone it into worker threads: it is an `Arc`).

use crate::response::Responder;

/// Index of a sample in the query sample library.
pub type QuerySampleIndex = usize;

/// Identifies one issued sample; pass it back unchanged when completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResponseId(pub u64);

/// One sample of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuerySample {
    pub id: ResponseId,
    pub index: QuerySampleIndex,
}

pub trait SystemUnderTest: Send + Sync {
    /// Shown in the logs as `sut_name`.
    fn name(&self) -> &str;

    /// Start work on `samples`; return quickly. Each sample must be completed
    /// exactly once through `responder` (now or later, from any thread).
    fn issue_query(&self, samples: &[QuerySample], responder: &Responder);

    /// No more queries will come in this run: finish what is pending now
    /// (e.g. a partial batch).
    fn flush_queries(&self) {}
}

/// A shared SUT is a SUT: the harness can run it while its owner keeps a
/// handle to read what it did (per-device counts, errors) afterwards.
impl<T: SystemUnderTest + ?Sized> SystemUnderTest for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        (**self).issue_query(samples, responder)
    }
    fn flush_queries(&self) {
        (**self).flush_queries()
    }
}
