//! The null SUT: completes every sample inside `issue_query`, with no data.
//! What it measures is the load generator itself.
//!
//! It completes in batches of [`BATCH`] samples, as a real batching SUT
//! does. A completion is timestamped when the call begins, so one call for
//! a whole Offline query of millions of samples would time only its start
//! and hide the cost of recording them; batches make that cost visible.

use loadgen::{QuerySample, Responder, SystemUnderTest};

/// Samples per completion call.
pub const BATCH: usize = 1024;

#[derive(Debug, Default)]
pub struct NullSut;

impl SystemUnderTest for NullSut {
    fn name(&self) -> &str {
        "joulebench-null"
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        for batch in samples.chunks(BATCH) {
            responder.complete_ids(batch.iter().map(|s| s.id));
        }
    }
}
