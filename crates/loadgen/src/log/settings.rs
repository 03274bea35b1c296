//! The `requested_*` and `effective_*` lines of the detail log, in LoadGen's
//! order, so a result always says exactly what ran.

use super::detail::DetailLog;
use crate::effective::EffectiveSettings;
use crate::mllog;
use crate::settings::{Scenario, TestSettings};

pub fn log_requested(log: &mut DetailLog, s: &TestSettings) {
    mllog!(log, "requested_scenario", s.scenario.mlperf_name());
    mllog!(log, "requested_test_mode", s.mode.mlperf_name());
    match s.scenario {
        Scenario::SingleStream => {
            mllog!(
                log,
                "requested_single_stream_expected_latency_ns",
                s.single_stream_expected_latency_ns
            );
            mllog!(
                log,
                "requested_single_stream_target_latency_percentile",
                s.single_stream_target_latency_percentile
            );
        }
        Scenario::MultiStream => {
            mllog!(
                log,
                "requested_multi_stream_expected_latency_ns",
                s.multi_stream_expected_latency_ns
            );
            mllog!(
                log,
                "requested_multi_stream_target_latency_percentile",
                s.multi_stream_target_latency_percentile
            );
            mllog!(
                log,
                "requested_multi_stream_samples_per_query",
                s.multi_stream_samples_per_query
            );
        }
        Scenario::Server => {
            mllog!(log, "requested_server_target_qps", s.server_target_qps);
            mllog!(
                log,
                "requested_server_target_latency_ns",
                s.server_target_latency_ns
            );
            mllog!(
                log,
                "requested_server_target_latency_percentile",
                s.server_target_latency_percentile
            );
            mllog!(
                log,
                "requested_server_coalesce_queries",
                s.server_coalesce_queries
            );
            mllog!(
                log,
                "requested_server_find_peak_qps_decimals_of_precision",
                s.server_find_peak_qps_decimals_of_precision
            );
            mllog!(
                log,
                "requested_server_find_peak_qps_boundary_step_size",
                s.server_find_peak_qps_boundary_step_size
            );
            mllog!(
                log,
                "requested_server_max_async_queries",
                s.server_max_async_queries
            );
            mllog!(
                log,
                "requested_server_num_issue_query_threads",
                s.server_num_issue_query_threads
            );
        }
        Scenario::Offline => {
            mllog!(
                log,
                "requested_offline_expected_qps",
                s.offline_expected_qps
            );
        }
    }
    mllog!(log, "requested_min_duration_ms", s.min_duration_ms);
    mllog!(log, "requested_max_duration_ms", s.max_duration_ms);
    mllog!(log, "requested_min_query_count", s.min_query_count);
    mllog!(log, "requested_max_query_count", s.max_query_count);
    mllog!(log, "requested_qsl_rng_seed", s.qsl_rng_seed);
    mllog!(
        log,
        "requested_sample_index_rng_seed",
        s.sample_index_rng_seed
    );
    mllog!(log, "requested_schedule_rng_seed", s.schedule_rng_seed);
    mllog!(
        log,
        "requested_accuracy_log_rng_seed",
        s.accuracy_log_rng_seed
    );
    mllog!(
        log,
        "requested_accuracy_log_probability",
        s.accuracy_log_probability
    );
    mllog!(
        log,
        "requested_accuracy_log_sampling_target",
        s.accuracy_log_sampling_target
    );
    mllog!(log, "requested_print_timestamps", s.print_timestamps);
    mllog!(
        log,
        "requested_performance_issue_unique",
        s.performance_issue_unique
    );
    mllog!(
        log,
        "requested_performance_issue_same",
        s.performance_issue_same
    );
    mllog!(
        log,
        "requested_performance_issue_same_index",
        s.performance_issue_same_index
    );
    mllog!(
        log,
        "requested_performance_sample_count_override",
        s.performance_sample_count_override
    );
    mllog!(
        log,
        "requested_accuracy_sample_count_override",
        s.accuracy_sample_count_override
    );
    mllog!(
        log,
        "requested_sample_concatenate_permutation",
        s.sample_concatenate_permutation
    );
    if s.use_token_latencies {
        mllog!(log, "requested_use_token_latencies", s.use_token_latencies);
        if s.scenario != Scenario::Offline {
            mllog!(log, "requested_server_ttft_latency", s.server_ttft_latency);
            mllog!(log, "requested_server_tpot_latency", s.server_tpot_latency);
        }
    }
}

pub fn log_effective(log: &mut DetailLog, s: &EffectiveSettings) {
    mllog!(log, "effective_scenario", s.scenario.mlperf_name());
    mllog!(log, "effective_test_mode", s.mode.mlperf_name());
    mllog!(log, "effective_samples_per_query", s.samples_per_query);
    mllog!(log, "effective_target_qps", s.target_qps);
    mllog!(log, "effective_target_latency_ns", s.target_latency_ns);
    mllog!(
        log,
        "effective_target_latency_percentile",
        s.target_latency_percentile
    );
    mllog!(log, "effective_max_async_queries", s.max_async_queries);
    if s.closed_loop_streams > 1 {
        // Not LoadGen's: only a closed-loop run has it.
        mllog!(log, "effective_closed_loop_streams", s.closed_loop_streams);
    }
    mllog!(log, "effective_target_duration_ms", s.target_duration_ms);
    mllog!(log, "effective_min_duration_ms", s.min_duration_ms);
    mllog!(log, "effective_max_duration_ms", s.max_duration_ms);
    mllog!(log, "effective_min_query_count", s.min_query_count);
    mllog!(log, "effective_max_query_count", s.max_query_count);
    mllog!(log, "effective_min_sample_count", s.min_sample_count);
    mllog!(log, "effective_qsl_rng_seed", s.qsl_rng_seed);
    mllog!(
        log,
        "effective_sample_index_rng_seed",
        s.sample_index_rng_seed
    );
    mllog!(log, "effective_schedule_rng_seed", s.schedule_rng_seed);
    mllog!(
        log,
        "effective_accuracy_log_rng_seed",
        s.accuracy_log_rng_seed
    );
    mllog!(
        log,
        "effective_accuracy_log_probability",
        s.accuracy_log_probability
    );
    mllog!(
        log,
        "effective_accuracy_log_sampling_target",
        s.accuracy_log_sampling_target
    );
    mllog!(log, "effective_print_timestamps", s.print_timestamps);
    mllog!(
        log,
        "effective_performance_issue_unique",
        s.performance_issue_unique
    );
    mllog!(
        log,
        "effective_performance_issue_same",
        s.performance_issue_same
    );
    mllog!(
        log,
        "effective_performance_issue_same_index",
        s.performance_issue_same_index
    );
    mllog!(
        log,
        "effective_performance_sample_count",
        s.performance_sample_count
    );
    mllog!(
        log,
        "effective_accuracy_sample_count",
        s.accuracy_sample_count
    );
    mllog!(
        log,
        "effective_sample_concatenate_permutation",
        s.sample_concatenate_permutation
    );
}
