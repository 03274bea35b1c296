//! What a run effectively uses: LoadGen's `TestSettingsInternal`.
//!
//! The rules are LoadGen's: the target QPS of SingleStream/MultiStream is the
//! inverse of the expected latency; Offline coalesces everything into one
//! query of `1.1 × min_duration × expected_qps` samples; the performance and
//! accuracy sample counts come from the QSL unless overridden.

use crate::settings::{Mode, Scenario, TestSettings};
use serde::Serialize;
use std::time::Duration;

/// Effective settings, as LoadGen logs them under `effective_*`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveSettings {
    #[serde(skip)]
    pub requested: TestSettings,
    pub scenario: Scenario,
    pub mode: Mode,
    pub samples_per_query: u64,
    pub target_qps: f64,
    pub target_latency_ns: u64,
    pub target_latency_percentile: f64,
    pub max_async_queries: u64,
    pub target_duration_ms: u64,
    pub min_duration_ms: u64,
    pub max_duration_ms: u64,
    pub min_query_count: u64,
    pub max_query_count: u64,
    pub min_sample_count: u64,
    pub qsl_rng_seed: u64,
    pub sample_index_rng_seed: u64,
    pub schedule_rng_seed: u64,
    pub accuracy_log_rng_seed: u64,
    pub accuracy_log_probability: f64,
    pub accuracy_log_sampling_target: u64,
    pub print_timestamps: bool,
    pub performance_issue_unique: bool,
    pub performance_issue_same: bool,
    pub performance_issue_same_index: u64,
    pub performance_sample_count: u64,
    pub accuracy_sample_count: u64,
    pub sample_concatenate_permutation: bool,
    pub use_token_latencies: bool,
    pub server_ttft_latency_ns: u64,
    pub server_tpot_latency_ns: u64,
    pub infer_token_latencies: bool,
    pub token_latency_scaling_factor: u64,
    /// SingleStream's streams (1 unless joulebench's closed loop was asked for).
    pub closed_loop_streams: u64,
}

/// An effective setting that contradicts the QSL (found once the QSL's sizes
/// are known).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EffectiveError(pub String);

impl EffectiveSettings {
    /// Derives the effective settings from the requested ones and the QSL's
    /// sizes. `requested` must already have passed [`TestSettings::validate`].
    pub fn new(
        requested: &TestSettings,
        qsl_performance_sample_count: u64,
        qsl_total_sample_count: u64,
    ) -> Result<EffectiveSettings, EffectiveError> {
        let r = requested;
        // test05 (an audit) swaps in its own seeds and forces performance mode.
        let (mode, qsl_seed, sample_seed, schedule_seed) = if r.test05 {
            (
                Mode::PerformanceOnly,
                r.test05_qsl_rng_seed,
                r.test05_sample_index_rng_seed,
                r.test05_schedule_rng_seed,
            )
        } else {
            (
                r.mode,
                r.qsl_rng_seed,
                r.sample_index_rng_seed,
                r.schedule_rng_seed,
            )
        };
        let streams = r.closed_loop_streams.max(1);
        if streams > 1 && r.scenario != Scenario::SingleStream {
            return Err(EffectiveError(format!(
                "closed_loop_streams ({streams}) runs several SingleStream loops at once: \
                 the scenario must be SingleStream, not {}",
                r.scenario
            )));
        }
        let (target_qps, target_latency_ns, target_latency_percentile, max_async_queries) =
            match r.scenario {
                // N streams issue N times as many queries in the same time.
                Scenario::SingleStream => (
                    streams as f64 * 1e9 / r.single_stream_expected_latency_ns,
                    0,
                    r.single_stream_target_latency_percentile,
                    streams,
                ),
                Scenario::MultiStream => (
                    1e9 / r.multi_stream_expected_latency_ns,
                    0,
                    r.multi_stream_target_latency_percentile,
                    1,
                ),
                Scenario::Server => (
                    r.server_target_qps,
                    r.server_target_latency_ns,
                    r.server_target_latency_percentile,
                    r.server_max_async_queries,
                ),
                Scenario::Offline => (r.offline_expected_qps, 0, 0.99, 1),
            };
        let performance_sample_count = if r.performance_sample_count_override == 0 {
            qsl_performance_sample_count
        } else {
            r.performance_sample_count_override
        };
        let accuracy_sample_count = if r.accuracy_sample_count_override == 0 {
            qsl_total_sample_count
        } else {
            r.accuracy_sample_count_override
        };
        if performance_sample_count == 0 {
            return Err(EffectiveError(
                "the performance sample count is 0: the QSL reports no performance samples and \
                 performance_sample_count_override is not set"
                    .into(),
            ));
        }
        let mut samples_per_query = match r.scenario {
            Scenario::MultiStream => r.multi_stream_samples_per_query,
            _ => 1,
        };
        let mut min_query_count = r.min_query_count;
        let mut target_duration_ms = r.min_duration_ms;
        if r.scenario == Scenario::Offline {
            // LoadGen's slack: enough samples that the SUT runs past the
            // minimum duration even when faster than expected.
            const SLACK: f64 = 1.1;
            let target_sample_count =
                (SLACK * (target_duration_ms as f64 / 1000.0) * target_qps) as u64;
            samples_per_query = if r.performance_issue_unique {
                performance_sample_count
            } else {
                min_query_count.max(target_sample_count)
            };
            min_query_count = 1;
            target_duration_ms = 0;
        }
        if r.sample_concatenate_permutation && r.scenario == Scenario::SingleStream {
            // LoadGen's rule for non-uniform data sets (3D-UNet): at least twice
            // the expected queries, rounded up to whole passes over the set.
            const SLACK: f64 = 2.0;
            let expected = (SLACK * (target_duration_ms as f64 / 1000.0) * target_qps) as u64;
            min_query_count = min_query_count.max(expected);
            min_query_count += qsl_performance_sample_count
                - (min_query_count % qsl_performance_sample_count.max(1));
        }
        if r.performance_issue_same && r.performance_issue_same_index >= performance_sample_count {
            return Err(EffectiveError(format!(
                "performance_issue_same_index ({}) must be below the performance sample count ({})",
                r.performance_issue_same_index, performance_sample_count
            )));
        }
        Ok(EffectiveSettings {
            requested: r.clone(),
            scenario: r.scenario,
            mode,
            samples_per_query,
            target_qps,
            target_latency_ns,
            target_latency_percentile,
            max_async_queries,
            target_duration_ms,
            min_duration_ms: r.min_duration_ms,
            max_duration_ms: r.max_duration_ms,
            min_query_count,
            max_query_count: r.max_query_count,
            min_sample_count: min_query_count * samples_per_query,
            qsl_rng_seed: qsl_seed,
            sample_index_rng_seed: sample_seed,
            schedule_rng_seed: schedule_seed,
            accuracy_log_rng_seed: r.accuracy_log_rng_seed,
            accuracy_log_probability: r.accuracy_log_probability,
            accuracy_log_sampling_target: r.accuracy_log_sampling_target,
            print_timestamps: r.print_timestamps,
            performance_issue_unique: r.performance_issue_unique,
            performance_issue_same: r.performance_issue_same,
            performance_issue_same_index: r.performance_issue_same_index,
            performance_sample_count,
            accuracy_sample_count,
            sample_concatenate_permutation: r.sample_concatenate_permutation,
            use_token_latencies: r.use_token_latencies,
            server_ttft_latency_ns: r.server_ttft_latency,
            server_tpot_latency_ns: r.server_tpot_latency,
            infer_token_latencies: r.infer_token_latencies,
            token_latency_scaling_factor: r.token_latency_scaling_factor,
            closed_loop_streams: streams,
        })
    }

    pub fn min_duration(&self) -> Duration {
        Duration::from_millis(self.min_duration_ms)
    }

    pub fn target_duration(&self) -> Duration {
        Duration::from_millis(self.target_duration_ms)
    }

    /// `None` when there is no maximum.
    pub fn max_duration(&self) -> Option<Duration> {
        (self.max_duration_ms != 0).then(|| Duration::from_millis(self.max_duration_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(scenario: Scenario) -> TestSettings {
        // The settings of shared/reference/loadgen-6.0.17.
        let mut s = TestSettings {
            scenario,
            min_duration_ms: 1000,
            min_query_count: 1,
            ..Default::default()
        };
        match scenario {
            Scenario::Offline => s.offline_expected_qps = 100_000.0,
            Scenario::Server => s.server_target_qps = 20_000.0,
            Scenario::SingleStream => s.single_stream_expected_latency_ns = 10_000.0,
            Scenario::MultiStream => s.multi_stream_expected_latency_ns = 10_000.0,
        }
        s
    }

    #[test]
    fn offline_coalesces_with_loadgens_slack() {
        let e = EffectiveSettings::new(&reference(Scenario::Offline), 1024, 1024).unwrap();
        // As in the reference detail log: effective_samples_per_query 110000.
        assert_eq!(e.samples_per_query, 110_000);
        assert_eq!(e.min_query_count, 1);
        assert_eq!(e.target_duration_ms, 0);
        assert_eq!(e.min_sample_count, 110_000);
        assert_eq!(e.max_async_queries, 1);
        assert_eq!(e.target_latency_percentile, 0.99);
    }

    #[test]
    fn streams_target_qps_is_inverse_latency() {
        let e = EffectiveSettings::new(&reference(Scenario::SingleStream), 1024, 1024).unwrap();
        assert_eq!(e.target_qps, 100_000.0);
        assert_eq!(e.target_latency_percentile, 0.9);
        assert_eq!(e.target_duration_ms, 1000);
        let e = EffectiveSettings::new(&reference(Scenario::MultiStream), 1024, 1024).unwrap();
        assert_eq!(e.samples_per_query, 8);
        assert_eq!(e.min_sample_count, 8);
    }

    #[test]
    fn server_takes_its_targets() {
        let e = EffectiveSettings::new(&reference(Scenario::Server), 1024, 1024).unwrap();
        assert_eq!(e.target_qps, 20_000.0);
        assert_eq!(e.target_latency_ns, 100_000_000);
        assert_eq!(e.max_async_queries, 0);
    }

    #[test]
    fn overrides_and_contradictions() {
        let mut s = reference(Scenario::Server);
        s.performance_sample_count_override = 64;
        s.accuracy_sample_count_override = 10;
        let e = EffectiveSettings::new(&s, 1024, 5000).unwrap();
        assert_eq!(
            (e.performance_sample_count, e.accuracy_sample_count),
            (64, 10)
        );
        s.performance_issue_same = true;
        s.performance_issue_same_index = 64;
        assert!(EffectiveSettings::new(&s, 1024, 5000).is_err());
        assert!(EffectiveSettings::new(&reference(Scenario::Server), 0, 0).is_err());
    }
}
