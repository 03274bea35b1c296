//! Statistics and validity of one performance run, as LoadGen computes them
//! (`results.cc`): percentiles by index into the sorted latencies
//! (`sorted[floor(n × p)]`), integer means, the per-scenario throughput
//! metrics and the four validity checks.

use crate::early_stopping::{self, StreamEstimate};
use crate::effective::EffectiveSettings;
use crate::settings::Scenario;
use serde::{Deserialize, Serialize};

/// The percentiles LoadGen reports, in order.
pub const REPORTED_PERCENTILES: [f64; 6] = [0.50, 0.90, 0.95, 0.97, 0.99, 0.999];

/// What one timed run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerformanceResult {
    /// Per completed sample: completion − query scheduled time, in issue order.
    pub sample_latencies_ns: Vec<i64>,
    /// MultiStream only: per completed query, last completion − scheduled time.
    pub query_latencies_ns: Vec<i64>,
    /// Token latencies (when measured): time to first token per sample and
    /// time per output token.
    pub first_token_latencies_ns: Vec<i64>,
    pub time_per_output_token_ns: Vec<i64>,
    pub token_count: u64,
    pub queries_issued: u64,
    pub samples_issued: u64,
    pub samples_completed: u64,
    /// Samples the SUT reported as failed (not in any latency statistic).
    pub samples_failed: u64,
    /// Longest sample latency (LoadGen's `max_latency`), seconds.
    pub max_latency_s: f64,
    pub final_query_scheduled_time_s: f64,
    pub final_query_issued_time_s: f64,
    pub final_query_all_samples_done_time_s: f64,
    /// The timed window on the run clock (ns since the run's anchor): issue
    /// start to the last completion. This is LoadGen's power_begin/power_end.
    pub window_begin_ns: u64,
    pub window_end_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentileLatency {
    pub percentile: f64,
    pub latency_ns: i64,
}

/// Min/max/mean and percentiles of one latency population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min_ns: i64,
    pub max_ns: i64,
    /// Integer mean, truncated as LoadGen's.
    pub mean_ns: i64,
    pub percentiles: Vec<PercentileLatency>,
    /// The scenario's target percentile (e.g. p90 for SingleStream).
    pub target: PercentileLatency,
}

impl LatencyStats {
    /// Sorts `latencies` in place and computes the statistics; `None` if empty.
    pub fn compute(latencies: &mut [i64], target_percentile: f64) -> Option<LatencyStats> {
        if latencies.is_empty() {
            return None;
        }
        let n = latencies.len();
        let sum: i64 = latencies.iter().sum();
        latencies.sort_unstable();
        let at = |p: f64| latencies[((n as f64 * p) as usize).min(n - 1)];
        Some(LatencyStats {
            count: n as u64,
            min_ns: latencies[0],
            max_ns: latencies[n - 1],
            mean_ns: sum / n as i64,
            percentiles: REPORTED_PERCENTILES
                .iter()
                .map(|&p| PercentileLatency {
                    percentile: p,
                    latency_ns: at(p),
                })
                .collect(),
            target: PercentileLatency {
                percentile: target_percentile,
                latency_ns: at(target_percentile),
            },
        })
    }

    pub fn percentile(&self, p: f64) -> Option<i64> {
        self.percentiles
            .iter()
            .find(|x| x.percentile == p)
            .map(|x| x.latency_ns)
    }
}

/// The validity verdict, with LoadGen's checks and joulebench's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validity {
    pub valid: bool,
    /// Server only (LoadGen reports it only there).
    pub perf_constraints_met: Option<bool>,
    pub min_duration_met: bool,
    pub min_queries_met: bool,
    pub early_stopping_met: bool,
    /// All issued samples completed, no SUT errors, not interrupted.
    pub run_complete: bool,
    /// LoadGen's recommendations for each failed check, then ours.
    pub reasons: Vec<String>,
}

/// Early stopping's outcome, with the text LoadGen prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EarlyStopping {
    pub met: bool,
    /// LoadGen's multi-line text (lines start with " * ").
    pub text: String,
    /// SingleStream: the estimate of the target percentile.
    pub latency_ss_ns: Option<i64>,
    /// SingleStream: p99 estimate; MultiStream: the target percentile estimate.
    pub latency_ms_ns: Option<i64>,
    /// With token latencies, LoadGen judges time per output token, then
    /// (when that passed) time to first token, each with its own text.
    pub tokens: Option<TokenEarlyStopping>,
}

/// LoadGen's two early-stopping texts of a token-latency run (`ttft` stays
/// empty when the TPOT check already failed, as LoadGen short-circuits).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenEarlyStopping {
    pub ttft: String,
    pub tpot: String,
}

impl EarlyStopping {
    fn passed() -> EarlyStopping {
        EarlyStopping {
            met: true,
            text: String::new(),
            latency_ss_ns: None,
            latency_ms_ns: None,
            tokens: None,
        }
    }
}

/// Everything the summary and detail logs report for one run.
#[derive(Debug, Clone, Serialize)]
pub struct PerformanceSummary {
    pub sut_name: String,
    pub settings: EffectiveSettings,
    pub result: PerformanceResult,
    pub sample: Option<LatencyStats>,
    /// MultiStream per-query statistics.
    pub query: Option<LatencyStats>,
    pub first_token: Option<LatencyStats>,
    pub time_per_output_token: Option<LatencyStats>,
    pub overlatency_query_count: u64,
    pub early_stopping: EarlyStopping,
    pub validity: Validity,
    /// Problems of the run itself (a SUT that stopped answering, bad ids,
    /// an interrupt); each also makes the result invalid.
    pub run_problems: Vec<String>,
}

impl PerformanceSummary {
    pub fn new(
        sut_name: &str,
        settings: &EffectiveSettings,
        mut result: PerformanceResult,
        run_problems: Vec<String>,
    ) -> PerformanceSummary {
        let s = settings;
        let sample =
            LatencyStats::compute(&mut result.sample_latencies_ns, s.target_latency_percentile);
        let query = if s.scenario == Scenario::MultiStream {
            LatencyStats::compute(&mut result.query_latencies_ns, s.target_latency_percentile)
        } else {
            None
        };
        let (first_token, time_per_output_token) = if s.use_token_latencies {
            (
                LatencyStats::compute(
                    &mut result.first_token_latencies_ns,
                    s.target_latency_percentile,
                ),
                LatencyStats::compute(
                    &mut result.time_per_output_token_ns,
                    s.target_latency_percentile,
                ),
            )
        } else {
            (None, None)
        };
        let overlatency_query_count = if s.scenario == Scenario::Server {
            let bound = s.target_latency_ns as i64;
            result
                .sample_latencies_ns
                .iter()
                .filter(|&&l| l > bound)
                .count() as u64
        } else {
            0
        };
        let mut summary = PerformanceSummary {
            sut_name: sut_name.to_string(),
            settings: s.clone(),
            result,
            sample,
            query,
            first_token,
            time_per_output_token,
            overlatency_query_count,
            early_stopping: EarlyStopping::passed(),
            validity: Validity {
                valid: false,
                perf_constraints_met: None,
                min_duration_met: false,
                min_queries_met: false,
                early_stopping_met: false,
                run_complete: false,
                reasons: Vec::new(),
            },
            run_problems,
        };
        summary.early_stopping = summary.compute_early_stopping();
        summary.validity = summary.compute_validity();
        summary
    }

    /// Samples actually measured (completed).
    pub fn sample_count(&self) -> u64 {
        self.sample.as_ref().map_or(0, |s| s.count)
    }

    /// Offline: samples / longest latency.
    pub fn samples_per_second(&self) -> f64 {
        self.sample_count() as f64 / self.result.max_latency_s
    }

    /// Server: (samples − 1) / time the final query finished.
    pub fn completed_samples_per_second(&self) -> f64 {
        (self.sample_count() as f64 - 1.0) / self.result.final_query_all_samples_done_time_s
    }

    /// Server: (samples − 1) / scheduled time of the final query.
    pub fn scheduled_samples_per_second(&self) -> f64 {
        (self.sample_count() as f64 - 1.0) / self.result.final_query_scheduled_time_s
    }

    /// SingleStream: (samples − 1) / issue time of the final query.
    pub fn qps_with_loadgen_overhead(&self) -> f64 {
        (self.sample_count() as f64 - 1.0) / self.result.final_query_issued_time_s
    }

    /// SingleStream: 1 / mean latency.
    pub fn qps_without_loadgen_overhead(&self) -> f64 {
        self.sample.as_ref().map_or(0.0, |s| 1e9 / s.mean_ns as f64)
    }

    /// The scenario's headline throughput in samples per second (what the
    /// energy efficiency is computed from).
    pub fn throughput_samples_per_second(&self) -> f64 {
        match self.settings.scenario {
            Scenario::Offline => self.samples_per_second(),
            Scenario::Server => self.completed_samples_per_second(),
            Scenario::SingleStream | Scenario::MultiStream => {
                let window_s = (self
                    .result
                    .window_end_ns
                    .saturating_sub(self.result.window_begin_ns))
                    as f64
                    / 1e9;
                self.sample_count() as f64 / window_s
            }
        }
    }

    /// LoadGen's early-stopping verdict; with token latencies, TPOT first
    /// and then TTFT, each against its own bound.
    fn compute_early_stopping(&self) -> EarlyStopping {
        let s = &self.settings;
        let r = &self.result;
        if !s.use_token_latencies {
            return self.early_stopping_on(&r.sample_latencies_ns, s.target_latency_ns as i64);
        }
        let tpot =
            self.early_stopping_on(&r.time_per_output_token_ns, s.server_tpot_latency_ns as i64);
        let ttft = if tpot.met {
            self.early_stopping_on(&r.first_token_latencies_ns, s.server_ttft_latency_ns as i64)
        } else {
            EarlyStopping::passed()
        };
        EarlyStopping {
            met: tpot.met && ttft.met,
            text: String::new(),
            // LoadGen keeps the estimate of the last check that ran.
            latency_ss_ns: ttft.latency_ss_ns.or(tpot.latency_ss_ns),
            latency_ms_ns: ttft.latency_ms_ns.or(tpot.latency_ms_ns),
            tokens: Some(TokenEarlyStopping {
                ttft: ttft.text,
                tpot: tpot.text,
            }),
        }
    }

    /// LoadGen's `PerformanceSummary::EarlyStopping` over `sorted` latencies
    /// (SingleStream, Server) with `target_ns` (Server's bound).
    fn early_stopping_on(&self, sorted: &[i64], target_ns: i64) -> EarlyStopping {
        let s = &self.settings;
        let n = self.result.queries_issued as i64;
        let percent = |p: f64| format!("{:.1}", p * 100.0);
        let mut es = EarlyStopping::passed();
        match s.scenario {
            Scenario::Offline => {}
            Scenario::SingleStream | Scenario::MultiStream => {
                let sorted = if s.scenario == Scenario::SingleStream {
                    sorted
                } else {
                    &self.result.query_latencies_ns
                };
                let p = s.target_latency_percentile;
                let target = early_stopping::stream_estimate(sorted, n, p);
                let StreamEstimate {
                    min_queries,
                    discarded,
                    estimate_ns,
                } = target;
                let (Some(discarded), Some(estimate)) = (discarded, estimate_ns) else {
                    es.met = false;
                    es.text = format!(
                        " * Only processed {n} queries.\n * Need to process at least {min_queries} queries for early stopping."
                    );
                    return es;
                };
                es.text = format!(
                    " * Processed at least {min_queries} queries ({n}).\n * Would discard {discarded} highest latency queries.\n * Early stopping {}th percentile estimate: {estimate}",
                    percent(p)
                );
                if s.scenario == Scenario::MultiStream {
                    es.latency_ms_ns = Some(estimate);
                    return es;
                }
                es.latency_ss_ns = Some(estimate);
                // SingleStream also estimates p99 (to infer MultiStream).
                let p99 = early_stopping::stream_estimate(sorted, n, 0.99);
                match p99.estimate_ns {
                    Some(estimate) => {
                        es.text += &format!(
                            "\n * Early stopping {}th percentile estimate: {estimate}",
                            percent(0.99)
                        );
                        es.latency_ms_ns = Some(estimate);
                    }
                    None => {
                        es.text += &format!(
                            "\n * Not enough queries processed for {}th percentile\n early stopping estimate (would need to process at\n least {} total queries).",
                            percent(0.99),
                            p99.min_queries
                        );
                    }
                }
            }
            Scenario::Server => {
                let t = sorted.iter().filter(|&&l| l > target_ns).count() as i64;
                match early_stopping::server_queries_needed(t, n, s.target_latency_percentile) {
                    None => es.text = " * Run successful.".into(),
                    Some(more) => {
                        es.met = false;
                        es.text = format!(
                            " * Run unsuccessful.\n * Processed {n} queries.\n * Would need to run at least {more} more queries,\n with the run being successful if every additional\n query were under latency."
                        );
                    }
                }
            }
        }
        es
    }

    fn compute_validity(&self) -> Validity {
        let s = &self.settings;
        let r = &self.result;
        let min_duration_s = s.min_duration_ms as f64 / 1000.0;
        let min_duration_met = match s.scenario {
            Scenario::Offline => r.max_latency_s >= min_duration_s,
            Scenario::Server => r.final_query_scheduled_time_s >= min_duration_s,
            Scenario::SingleStream | Scenario::MultiStream => {
                r.final_query_issued_time_s >= min_duration_s
            }
        };
        let min_queries_met =
            r.queries_issued >= s.min_query_count && self.sample_count() >= s.min_sample_count;
        let perf_constraints_met = (s.scenario == Scenario::Server).then(|| match &self.sample {
            Some(stats) if !s.use_token_latencies => {
                stats.target.latency_ns <= s.target_latency_ns as i64
            }
            Some(_) => {
                let ttft_ok = self
                    .first_token
                    .as_ref()
                    .is_some_and(|f| f.target.latency_ns <= s.server_ttft_latency_ns as i64);
                let tpot_ok = self
                    .time_per_output_token
                    .as_ref()
                    .is_some_and(|t| t.target.latency_ns <= s.server_tpot_latency_ns as i64);
                ttft_ok && tpot_ok
            }
            None => false,
        });
        let run_complete = self.run_problems.is_empty();
        let mut reasons = Vec::new();
        if perf_constraints_met == Some(false) {
            reasons.push("Reduce target QPS to improve latency.".to_string());
        }
        if !min_duration_met {
            reasons.push(
                match s.scenario {
                    Scenario::SingleStream | Scenario::MultiStream => {
                        "Decrease the expected latency so the loadgen pre-generates more queries."
                    }
                    Scenario::Server => "Increase the target QPS so the loadgen pre-generates more queries.",
                    Scenario::Offline => {
                        "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
                    }
                }
                .to_string(),
            );
        }
        if !min_queries_met {
            reasons.push(
                "The test exited early, before enough queries were issued.\n   See the detailed log for why this may have occurred."
                    .to_string(),
            );
        }
        reasons.extend(self.run_problems.iter().cloned());
        Validity {
            valid: min_duration_met
                && min_queries_met
                && perf_constraints_met != Some(false)
                && self.early_stopping.met
                && run_complete,
            perf_constraints_met,
            min_duration_met,
            min_queries_met,
            early_stopping_met: self.early_stopping.met,
            run_complete,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_index_the_sorted_latencies() {
        // 10 latencies 10..=100: p50 = sorted[5] = 60, p90 = sorted[9] = 100,
        // p99.9 = sorted[floor(9.99)] = 100; mean 55.
        let mut l: Vec<i64> = (1..=10).rev().map(|x| x * 10).collect();
        let s = LatencyStats::compute(&mut l, 0.9).unwrap();
        assert_eq!((s.min_ns, s.max_ns, s.mean_ns), (10, 100, 55));
        assert_eq!(s.percentile(0.5), Some(60));
        assert_eq!(s.percentile(0.9), Some(100));
        assert_eq!(s.percentile(0.97), Some(100));
        assert_eq!(s.target.latency_ns, 100);
    }

    #[test]
    fn percentiles_on_a_thousand_hand_computed() {
        // 0..1000: index floor(1000 × p) → p50 500, p90 900, p95 950,
        // p97 970, p99 990, p99.9 999. Mean of 0..999 is 499 (truncated 499.5).
        let mut l: Vec<i64> = (0..1000).collect();
        let s = LatencyStats::compute(&mut l, 0.99).unwrap();
        let got: Vec<i64> = s.percentiles.iter().map(|p| p.latency_ns).collect();
        assert_eq!(got, vec![500, 900, 950, 970, 990, 999]);
        assert_eq!(s.mean_ns, 499);
    }

    #[test]
    fn empty_latencies_have_no_stats() {
        assert!(LatencyStats::compute(&mut [], 0.9).is_none());
    }
}
