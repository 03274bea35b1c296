//! Systems under test for joulebench.
//!
//! For now the two harness SUTs: [`null::NullSut`] answers at once (it
//! measures the load generator's own overhead) and [`sleep::SleepSut`] takes
//! a fixed or random service time with a set concurrency (a stand-in for a
//! real model with known behaviour). [`synthetic::SyntheticQsl`] is the data
//! set they read from.

pub mod null;
pub mod sleep;
pub mod synthetic;
