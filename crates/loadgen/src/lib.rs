//! joulebench's load generator: MLPerf Inference LoadGen's behaviour and file
//! formats, in Rust.
//!
//! - Contracts: [`sut::SystemUnderTest`], [`qsl::QuerySampleLibrary`], and the
//!   [`Responder`] a SUT completes samples through.
//! - Settings: [`settings::TestSettings`] (requested, LoadGen's fields),
//!   [`conf`] (mlperf.conf / user.conf), [`effective::EffectiveSettings`].
//! - The run: [`run::start_test`] generates the queries (LoadGen's random
//!   streams, bit for bit), issues them and times completions; [`stats`] and
//!   [`early_stopping`] judge the result, [`log`] writes the files MLPerf
//!   tooling reads. How queries are scheduled, issued and recorded is
//!   internal; what a caller holds is re-exported here ([`RunControl`],
//!   [`Progress`], [`Responder`], [`QuerySampleResponse`], [`LoggedResponse`]).
//!
//! Nothing here knows about power: the caller passes the run clock's anchor
//! and receives the timed window ([`run::PowerWindow`]) on that clock.

pub mod conf;
pub mod early_stopping;
pub mod effective;
pub mod from_config;
mod issue;
pub mod layers;
pub mod log;
pub mod qsl;
mod response;
mod rng;
pub mod run;
mod schedule;
pub mod settings;
pub mod stats;
pub mod sut;

pub use issue::{Progress, RunControl};
pub use qsl::QuerySampleLibrary;
pub use response::{LoggedResponse, QuerySampleResponse, Responder, SampleFailure};
pub use run::{start_test, LogSettings, TestOutput};
pub use settings::{Mode, Scenario, TestSettings, UnknownMode, UnknownScenario};
pub use sut::{QuerySample, QuerySampleIndex, ResponseId, SystemUnderTest};
