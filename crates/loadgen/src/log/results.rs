//! The `result_*` lines of the detail log (LoadGen's
//! `PerformanceSummary::LogDetail`), in its order and with its value types.

use super::detail::DetailLog;
use super::format::fixed;
use crate::mllog;
use crate::settings::Scenario;
use crate::stats::PerformanceSummary;

pub fn log_results(log: &mut DetailLog, summary: &PerformanceSummary) {
    let s = &summary.settings;
    let v = &summary.validity;
    mllog!(
        log,
        "result_validity",
        if v.valid { "VALID" } else { "INVALID" }
    );
    if let Some(met) = v.perf_constraints_met {
        mllog!(log, "result_perf_constraints_met", met);
    }
    mllog!(log, "result_min_duration_met", v.min_duration_met);
    mllog!(log, "result_min_queries_met", v.min_queries_met);
    mllog!(log, "early_stopping_met", v.early_stopping_met);
    if !v.valid {
        let reason = v
            .reasons
            .iter()
            .map(|r| format!("{r} "))
            .collect::<String>()
            .replace('\n', " ");
        mllog!(log, "result_invalid_reason", reason.trim_end().to_string());
    }
    match &summary.early_stopping.tokens {
        None => mllog!(
            log,
            "early_stopping_result",
            summary.early_stopping.text.replace('\n', " ")
        ),
        Some(tokens) => {
            mllog!(
                log,
                "early_stopping_ttft_result",
                tokens.ttft.replace('\n', " ")
            );
            mllog!(
                log,
                "early_stopping_tpot_result",
                tokens.tpot.replace('\n', " ")
            );
        }
    }
    mllog!(log, "result_query_count", summary.result.queries_issued);
    if s.scenario == Scenario::Server {
        mllog!(
            log,
            "result_overlatency_query_count",
            summary.overlatency_query_count
        );
    }
    match s.scenario {
        Scenario::SingleStream => {
            mllog!(
                log,
                "result_qps_with_loadgen_overhead",
                summary.qps_with_loadgen_overhead()
            );
            mllog!(
                log,
                "result_qps_without_loadgen_overhead",
                summary.qps_without_loadgen_overhead()
            );
            mllog!(
                log,
                "early_stopping_latency_ss",
                summary.early_stopping.latency_ss_ns.unwrap_or(0)
            );
            mllog!(
                log,
                "early_stopping_latency_ms",
                summary.early_stopping.latency_ms_ns.unwrap_or(0)
            );
        }
        Scenario::MultiStream => {
            if let Some(q) = &summary.query {
                mllog!(log, "result_min_query_latency_ns", q.min_ns);
                mllog!(log, "result_max_query_latency_ns", q.max_ns);
                mllog!(log, "result_mean_query_latency_ns", q.mean_ns);
                for p in &q.percentiles {
                    let key = format!(
                        "result_{}_percentile_per_query_latency_ns",
                        fixed(p.percentile * 100.0, 2)
                    );
                    mllog!(log, &key, p.latency_ns);
                }
            }
            mllog!(
                log,
                "early_stopping_latency_ms",
                summary.early_stopping.latency_ms_ns.unwrap_or(0)
            );
        }
        Scenario::Server => {
            mllog!(
                log,
                "result_scheduled_samples_per_sec",
                summary.scheduled_samples_per_second()
            );
            mllog!(
                log,
                "result_completed_samples_per_sec",
                summary.completed_samples_per_second()
            );
        }
        Scenario::Offline => {
            mllog!(
                log,
                "result_samples_per_second",
                summary.samples_per_second()
            );
        }
    }
    if let Some(sample) = &summary.sample {
        mllog!(log, "result_min_latency_ns", sample.min_ns);
        mllog!(log, "result_max_latency_ns", sample.max_ns);
        mllog!(log, "result_mean_latency_ns", sample.mean_ns);
        for p in &sample.percentiles {
            let key = format!(
                "result_{}_percentile_latency_ns",
                fixed(p.percentile * 100.0, 2)
            );
            mllog!(log, &key, p.latency_ns);
        }
    }
    if s.use_token_latencies {
        let r = &summary.result;
        if s.scenario != Scenario::Offline {
            if let Some(ft) = &summary.first_token {
                mllog!(log, "result_first_token_min_latency_ns", ft.min_ns);
                mllog!(log, "result_first_token_max_latency_ns", ft.max_ns);
                mllog!(log, "result_first_token_mean_latency_ns", ft.mean_ns);
                for p in &ft.percentiles {
                    let key = format!(
                        "result_first_token_{}_percentile_latency_ns",
                        fixed(p.percentile * 100.0, 2)
                    );
                    mllog!(log, &key, p.latency_ns);
                }
            }
            mllog!(
                log,
                "result_token_throughput_with_loadgen_overhead",
                r.token_count as f64 / r.final_query_issued_time_s
            );
            if let Some(sample) = &summary.sample {
                mllog!(
                    log,
                    "result_token_throughput",
                    r.token_count as f64 / (sample.mean_ns as f64 * sample.count as f64) * 1e9
                );
            }
            if let Some(tpot) = &summary.time_per_output_token {
                for p in &tpot.percentiles {
                    let key = format!(
                        "result_time_per_output_token_{}_percentile_ns",
                        fixed(p.percentile * 100.0, 2)
                    );
                    mllog!(log, &key, p.latency_ns);
                }
                mllog!(log, "result_time_to_output_token_min", tpot.min_ns);
                mllog!(log, "result_time_to_output_token_max", tpot.max_ns);
                mllog!(log, "result_time_to_output_token_mean", tpot.mean_ns);
            }
            mllog!(
                log,
                "result_completed_tokens_per_second",
                r.token_count as f64 / r.final_query_all_samples_done_time_s
            );
        } else {
            mllog!(
                log,
                "result_tokens_per_second",
                r.token_count as f64 / r.max_latency_s
            );
        }
    }
    if s.infer_token_latencies {
        let factor = s.token_latency_scaling_factor as f64;
        match s.scenario {
            Scenario::Server => mllog!(
                log,
                "result_inferred_completed_tokens_per_second",
                (summary.sample_count() as f64 - 1.0) * factor
                    / summary.result.final_query_all_samples_done_time_s
            ),
            Scenario::Offline => mllog!(
                log,
                "result_inferred_tokens_per_second",
                summary.sample_count() as f64 * factor / summary.result.max_latency_s
            ),
            _ => {}
        }
    }
}
