//! The null SUT: completes every sample inside `issue_query`, with no data.
//! What it measures is the load generator itself.

use loadgen::{QuerySample, Responder, SystemUnderTest};

#[derive(Debug, Default)]
pub struct NullSut;

impl SystemUnderTest for NullSut {
    fn name(&self) -> &str {
        "joulebench-null"
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        responder.complete_ids(samples.iter().map(|s| s.id));
    }
}
