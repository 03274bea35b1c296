//! `mlperf_log_summary.txt`, line for line in LoadGen's layout.

use super::format::{fixed, g6};
use crate::settings::Scenario;
use crate::stats::{LatencyStats, PerformanceSummary};
use std::fmt::Write;

const RULE: &str = "================================================";

/// Renders the summary; `warnings`/`errors` are the detail log's counts.
pub fn render(summary: &PerformanceSummary, warnings: u64, errors: u64) -> String {
    let s = &summary.settings;
    let v = &summary.validity;
    let yes_no = |b: bool| if b { "Yes" } else { "NO" };
    let mut o = String::new();
    let mut line = |text: &str| {
        o.push_str(text);
        o.push('\n');
    };
    line(RULE);
    line("MLPerf Results Summary");
    line(RULE);
    line(&format!("SUT name : {}", summary.sut_name));
    line(&format!("Scenario : {}", s.scenario));
    if s.closed_loop_streams > 1 {
        line(&format!(
            "Streams  : {} (joulebench's closed loop at fixed concurrency; not an MLPerf scenario)",
            s.closed_loop_streams
        ));
    }
    line(&format!("Mode     : {}", s.mode));
    let target_percent = fixed(s.target_latency_percentile * 100.0, 1);
    match s.scenario {
        Scenario::SingleStream => line(&format!(
            "{target_percent}th percentile latency (ns) : {}",
            summary.sample.as_ref().map_or(0, |x| x.target.latency_ns)
        )),
        Scenario::MultiStream => line(&format!(
            "{target_percent}th percentile latency (ns) : {}",
            summary.query.as_ref().map_or(0, |x| x.target.latency_ns)
        )),
        Scenario::Server => line(&format!(
            "Completed samples per second    : {}",
            fixed(summary.completed_samples_per_second(), 2)
        )),
        Scenario::Offline => line(&format!(
            "Samples per second: {}",
            g6(summary.samples_per_second())
        )),
    }
    if s.use_token_latencies {
        match s.scenario {
            Scenario::SingleStream | Scenario::MultiStream => line(&format!(
                "{target_percent}th first token percentile latency (ns) : {}",
                summary
                    .first_token
                    .as_ref()
                    .map_or(0, |x| x.target.latency_ns)
            )),
            Scenario::Offline => line(&format!(
                "Tokens per second: {}",
                g6(summary.result.token_count as f64 / summary.result.max_latency_s)
            )),
            Scenario::Server => line(&format!(
                "Completed tokens per second: {}",
                fixed(
                    summary.result.token_count as f64
                        / summary.result.final_query_all_samples_done_time_s,
                    2
                )
            )),
        }
    }
    line(&format!(
        "Result is : {}",
        if v.valid { "VALID" } else { "INVALID" }
    ));
    if let Some(met) = v.perf_constraints_met {
        line(&format!(
            "  Performance constraints satisfied : {}",
            yes_no(met)
        ));
    }
    line(&format!(
        "  Min duration satisfied : {}",
        yes_no(v.min_duration_met)
    ));
    line(&format!(
        "  Min queries satisfied : {}",
        yes_no(v.min_queries_met)
    ));
    line(&format!(
        "  Early stopping satisfied: {}",
        yes_no(v.early_stopping_met)
    ));
    if !v.valid {
        line("Recommendations:");
        for reason in &v.reasons {
            line(&format!(" * {reason}"));
        }
    }
    if s.scenario != Scenario::Offline {
        match &summary.early_stopping.tokens {
            None => {
                line("Early Stopping Result:");
                line(&summary.early_stopping.text);
            }
            Some(tokens) => {
                line("TTFT Early Stopping Result:");
                line(&tokens.ttft);
                line("TPOT Early Stopping Result:");
                line(&tokens.tpot);
            }
        }
    }
    line(&format!("\n{RULE}\nAdditional Stats\n{RULE}"));
    let stats_lines = |o: &mut dyn FnMut(&str), stats: &LatencyStats| {
        o(&format!(
            "Min latency (ns)                : {}",
            stats.min_ns
        ));
        o(&format!(
            "Max latency (ns)                : {}",
            stats.max_ns
        ));
        o(&format!(
            "Mean latency (ns)               : {}",
            stats.mean_ns
        ));
        for p in &stats.percentiles {
            o(&format!(
                "{} percentile latency (ns)   : {}",
                fixed(p.percentile * 100.0, 2),
                p.latency_ns
            ));
        }
    };
    match s.scenario {
        Scenario::SingleStream => {
            line(&format!(
                "QPS w/ loadgen overhead         : {}",
                fixed(summary.qps_with_loadgen_overhead(), 2)
            ));
            line(&format!(
                "QPS w/o loadgen overhead        : {}",
                fixed(summary.qps_without_loadgen_overhead(), 2)
            ));
            line("");
        }
        Scenario::Server => line(&format!(
            "Scheduled samples per second : {}",
            fixed(summary.scheduled_samples_per_second(), 2)
        )),
        Scenario::MultiStream => {
            line("Per-query latency:  ");
            if let Some(query) = &summary.query {
                stats_lines(&mut line, query);
            }
        }
        Scenario::Offline => {}
    }
    if s.scenario != Scenario::MultiStream {
        if let Some(sample) = &summary.sample {
            stats_lines(&mut line, sample);
        }
    }
    if s.use_token_latencies {
        line("");
        let tokens = summary.result.token_count as f64;
        match s.scenario {
            Scenario::SingleStream => {
                let mean_s = summary
                    .sample
                    .as_ref()
                    .map_or(0.0, |x| x.mean_ns as f64 / 1e9);
                line(&format!(
                    "TPS w/ loadgen overhead         : {}",
                    fixed(tokens / summary.result.final_query_issued_time_s, 2)
                ));
                line(&format!(
                    "TPS w/o loadgen overhead        : {}",
                    fixed(tokens / (mean_s * summary.sample_count() as f64), 2)
                ));
            }
            Scenario::Server => line(&format!(
                "Completed tokens per second                 : {}",
                fixed(
                    tokens / summary.result.final_query_all_samples_done_time_s,
                    2
                )
            )),
            _ => {}
        }
    }
    if s.use_token_latencies && s.scenario != Scenario::Offline {
        if let Some(ft) = &summary.first_token {
            line(&format!(
                "Min First Token latency (ns)                : {}",
                ft.min_ns
            ));
            line(&format!(
                "Max First Token latency (ns)                : {}",
                ft.max_ns
            ));
            line(&format!(
                "Mean First Token latency (ns)               : {}",
                ft.mean_ns
            ));
            for p in &ft.percentiles {
                line(&format!(
                    "{} percentile first token latency (ns)   : {}",
                    fixed(p.percentile * 100.0, 2),
                    p.latency_ns
                ));
            }
        }
        line("");
        if let Some(tpot) = &summary.time_per_output_token {
            line(&format!(
                "Min Time per Output Token (ns)                : {}",
                tpot.min_ns
            ));
            line(&format!(
                "Max Time per Output Token (ns)                : {}",
                tpot.max_ns
            ));
            line(&format!(
                "Mean Time per Output Token (ns)               : {}",
                tpot.mean_ns
            ));
            for p in &tpot.percentiles {
                line(&format!(
                    "{} percentile time to output token (ns)   : {}",
                    fixed(p.percentile * 100.0, 2),
                    p.latency_ns
                ));
            }
        }
    }
    line(&format!("\n{RULE}\nTest Parameters Used\n{RULE}"));
    line(&format!("samples_per_query : {}", s.samples_per_query));
    line(&format!("target_qps : {}", g6(s.target_qps)));
    if s.use_token_latencies {
        line(&format!("ttft_latency (ns): {}", s.server_ttft_latency_ns));
        line(&format!("tpot_latency (ns): {}", s.server_tpot_latency_ns));
    } else {
        line(&format!("target_latency (ns): {}", s.target_latency_ns));
    }
    line(&format!("max_async_queries : {}", s.max_async_queries));
    line(&format!("min_duration (ms): {}", s.min_duration_ms));
    line(&format!("max_duration (ms): {}", s.max_duration_ms));
    line(&format!("min_query_count : {}", s.min_query_count));
    line(&format!("max_query_count : {}", s.max_query_count));
    line(&format!("qsl_rng_seed : {}", s.qsl_rng_seed));
    line(&format!(
        "sample_index_rng_seed : {}",
        s.sample_index_rng_seed
    ));
    line(&format!("schedule_rng_seed : {}", s.schedule_rng_seed));
    line(&format!(
        "accuracy_log_rng_seed : {}",
        s.accuracy_log_rng_seed
    ));
    line(&format!(
        "accuracy_log_probability : {}",
        g6(s.accuracy_log_probability)
    ));
    line(&format!(
        "accuracy_log_sampling_target : {}",
        s.accuracy_log_sampling_target
    ));
    line(&format!(
        "print_timestamps : {}",
        u8::from(s.print_timestamps)
    ));
    line(&format!(
        "performance_issue_unique : {}",
        u8::from(s.performance_issue_unique)
    ));
    line(&format!(
        "performance_issue_same : {}",
        u8::from(s.performance_issue_same)
    ));
    line(&format!(
        "performance_issue_same_index : {}",
        s.performance_issue_same_index
    ));
    line(&format!(
        "performance_sample_count : {}",
        s.performance_sample_count
    ));
    line(&format!(
        "accuracy_sample_count : {}",
        s.accuracy_sample_count
    ));
    if s.sample_concatenate_permutation {
        line(
            "WARNING: sample_concatenate_permutation was set to true. \nGenerated samples per query might be different as the one in the setting.\nCheck the generated_samples_per_query line in the detailed log for the real\nsamples_per_query value",
        );
    }
    let _ = write!(
        o,
        "{}{}",
        match warnings {
            0 => "\nNo warnings encountered during test.\n".to_string(),
            1 => "\n1 warning encountered. See detailed log.\n".to_string(),
            n => format!("\n{n} warnings encountered. See detailed log.\n"),
        },
        match errors {
            0 => "\nNo errors encountered during test.\n".to_string(),
            1 => "\n1 ERROR encountered. See detailed log.\n".to_string(),
            n => format!("\n{n} ERRORS encountered. See detailed log.\n"),
        }
    );
    o
}

/// The summary of a test without a performance run (accuracy only): LoadGen
/// writes only the warning and error counts.
pub fn render_footer_only(warnings: u64, errors: u64) -> String {
    let mut o = String::new();
    o.push_str(&match warnings {
        0 => "\nNo warnings encountered during test.\n".to_string(),
        1 => "\n1 warning encountered. See detailed log.\n".to_string(),
        n => format!("\n{n} warnings encountered. See detailed log.\n"),
    });
    o.push_str(&match errors {
        0 => "\nNo errors encountered during test.\n".to_string(),
        1 => "\n1 ERROR encountered. See detailed log.\n".to_string(),
        n => format!("\n{n} ERRORS encountered. See detailed log.\n"),
    });
    o
}
