//! Every request's client-side record, and the run's serving record made
//! from them: counts and failures by kind, tokens and where they were
//! counted, TTFT and TPOT under LoadGen's and MLPerf Endpoints' definitions,
//! and the server's own timings beside them.
//!
//! These are measured from the moment the request was sent, so they leave
//! out any wait for a `--max-concurrency` slot; LoadGen's own statistics
//! (the detail log) are from the query's issue, as LoadGen defines them.

use crate::exchange::Outcome;
use crate::openai::ServerTimings;
use report::serving::{RequestCounts, ServerTimingStats, ServingRecord, Spread, TokenCounts};
use std::collections::BTreeSet;

/// Where an output-token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenSource {
    Usage,
    Tokenizer,
    Chunks,
    None,
}

impl TokenSource {
    fn name(self) -> &'static str {
        match self {
            TokenSource::Usage => "usage",
            TokenSource::Tokenizer => "tokenizer",
            TokenSource::Chunks => "chunks",
            TokenSource::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub failure_kind: Option<String>,
    /// Sent → first non-empty content.
    pub ttft_ns: Option<u64>,
    /// Sent → done.
    pub e2e_ns: u64,
    pub tokens: u64,
    pub source: TokenSource,
    pub content_chunks: u64,
    /// Tokens in the first content chunk (with a tokenizer).
    pub first_chunk_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub timings: Option<ServerTimings>,
}

impl RequestRecord {
    pub fn new(
        outcome: &Outcome,
        tokens: u64,
        source: TokenSource,
        first_chunk_tokens: Option<u64>,
    ) -> RequestRecord {
        RequestRecord {
            failure_kind: outcome.result.as_ref().err().map(|f| f.kind()),
            ttft_ns: outcome
                .first_content
                .map(|t| t.duration_since(outcome.sent).as_nanos() as u64),
            e2e_ns: outcome.done.duration_since(outcome.sent).as_nanos() as u64,
            tokens,
            source,
            content_chunks: outcome.content_chunks,
            first_chunk_tokens,
            prompt_tokens: outcome.usage.and_then(|u| u.prompt_tokens),
            timings: outcome.timings,
        }
    }

    /// MLPerf Endpoints' denominator: tokens after the first content chunk.
    fn tokens_after_first_chunk(&self) -> Option<u64> {
        match (self.first_chunk_tokens, self.source) {
            (Some(first), _) => Some(self.tokens.saturating_sub(first)),
            // The server sent one token per chunk: the first chunk was one token.
            (None, TokenSource::Usage) if self.tokens == self.content_chunks => {
                Some(self.tokens.saturating_sub(1))
            }
            (None, TokenSource::Chunks) => Some(self.content_chunks.saturating_sub(1)),
            _ => None,
        }
    }
}

/// The requests of one run.
#[derive(Debug, Clone)]
pub struct Tally {
    pub url: String,
    pub api: String,
    pub model: Option<String>,
    pub streaming: bool,
    /// Requests started; those without a record never finished (the run
    /// was interrupted, or stopped, while they were open).
    pub started: u64,
    /// Requests resent on a fresh connection (the server had closed theirs
    /// before reading them).
    pub resent: u64,
    pub records: Vec<RequestRecord>,
}

impl Tally {
    /// The serving record; throughput is over `window_s`, the timed window.
    pub fn record(&self, window_s: f64) -> ServingRecord {
        let ok: Vec<&RequestRecord> = self
            .records
            .iter()
            .filter(|r| r.failure_kind.is_none())
            .collect();
        let finished = self.records.len() as u64;
        let mut requests = RequestCounts {
            issued: self.started.max(finished),
            succeeded: ok.len() as u64,
            unfinished: self.started.saturating_sub(finished),
            resent: self.resent,
            ..Default::default()
        };
        for kind in self.records.iter().filter_map(|r| r.failure_kind.as_ref()) {
            requests.failed += 1;
            *requests.failures.entry(kind.clone()).or_default() += 1;
        }
        let sources: BTreeSet<TokenSource> = ok.iter().map(|r| r.source).collect();
        let reported: Vec<u64> = self
            .records
            .iter()
            .filter_map(|r| r.prompt_tokens)
            .collect();
        let tokens = TokenCounts {
            output: ok.iter().map(|r| r.tokens).sum(),
            output_of_failed: self
                .records
                .iter()
                .filter(|r| r.failure_kind.is_some())
                .map(|r| r.tokens)
                .sum(),
            input: (!reported.is_empty()).then(|| reported.iter().sum()),
            source: if sources.is_empty() {
                "none".into()
            } else {
                sources
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join("+")
            },
        };
        let ms = |ns: u64| ns as f64 / 1e6;
        let ttft = Spread::of(ok.iter().filter_map(|r| r.ttft_ns.map(ms)).collect());
        let decode_ms = |r: &RequestRecord| r.ttft_ns.map(|t| ms(r.e2e_ns.saturating_sub(t)));
        let tpot = Spread::of(
            ok.iter()
                .filter(|r| r.tokens > 1)
                .filter_map(|r| Some(decode_ms(r)? / (r.tokens - 1) as f64))
                .collect(),
        );
        let tpot_endpoints = Spread::of(
            ok.iter()
                .filter_map(|r| {
                    let after = r.tokens_after_first_chunk().filter(|&n| n > 0)?;
                    Some(decode_ms(r)? / after as f64)
                })
                .collect(),
        );
        let per_user_basis = tpot_endpoints.as_ref().or(tpot.as_ref());
        let timings: Vec<&ServerTimings> = ok.iter().filter_map(|r| r.timings.as_ref()).collect();
        let server = (!timings.is_empty()).then(|| {
            let n = timings.len() as f64;
            let decoding: Vec<&&ServerTimings> = timings
                .iter()
                .filter(|t| t.predicted_n > 0 && t.predicted_ms > 0.0)
                .collect();
            let m = decoding.len().max(1) as f64;
            ServerTimingStats {
                requests: timings.len() as u64,
                prompt_ms_mean: timings.iter().map(|t| t.prompt_ms).sum::<f64>() / n,
                ms_per_output_token_mean: decoding
                    .iter()
                    .map(|t| t.predicted_ms / t.predicted_n as f64)
                    .sum::<f64>()
                    / m,
                output_tokens_per_s_mean: decoding
                    .iter()
                    .map(|t| t.predicted_n as f64 * 1e3 / t.predicted_ms)
                    .sum::<f64>()
                    / m,
            }
        });
        ServingRecord {
            endpoint: self.url.clone(),
            api: self.api.clone(),
            model: self.model.clone(),
            streaming: self.streaming,
            system_tokens_per_s: if window_s > 0.0 {
                tokens.output as f64 / window_s
            } else {
                0.0
            },
            tokens_per_s_per_user: per_user_basis.filter(|s| s.p90 > 0.0).map(|s| 1e3 / s.p90),
            requests,
            tokens,
            ttft_ms: ttft,
            tpot_ms: tpot,
            tpot_endpoints_ms: tpot_endpoints,
            e2e_ms: Spread::of(ok.iter().map(|r| ms(r.e2e_ns)).collect()),
            server,
            energy: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ttft_ms: u64, e2e_ms: u64, tokens: u64, chunks: u64) -> RequestRecord {
        RequestRecord {
            failure_kind: None,
            ttft_ns: Some(ttft_ms * 1_000_000),
            e2e_ns: e2e_ms * 1_000_000,
            tokens,
            source: TokenSource::Usage,
            content_chunks: chunks,
            first_chunk_tokens: None,
            prompt_tokens: Some(5),
            timings: None,
        }
    }

    #[test]
    fn the_two_tpot_definitions_differ_only_when_the_first_chunk_is_not_one_token() {
        // 11 tokens, one per chunk: both are (e2e - ttft) / 10.
        let mut t = Tally {
            url: "u".into(),
            api: "chat".into(),
            model: None,
            streaming: true,
            started: 1,
            resent: 0,
            records: vec![record(10, 110, 11, 11)],
        };
        let r = t.record(1.0);
        assert_eq!(r.tpot_ms.as_ref().unwrap().p50, 10.0);
        assert_eq!(r.tpot_endpoints_ms.as_ref().unwrap().p50, 10.0);
        assert_eq!(r.tokens_per_s_per_user, Some(100.0));
        // The first chunk carried 3 of the 11 tokens: Endpoints divides by 8.
        t.records[0].first_chunk_tokens = Some(3);
        t.records[0].content_chunks = 9;
        let r = t.record(1.0);
        assert_eq!(r.tpot_ms.as_ref().unwrap().p50, 10.0);
        assert_eq!(r.tpot_endpoints_ms.as_ref().unwrap().p50, 12.5);
    }

    #[test]
    fn failures_are_counted_by_kind_and_kept_out_of_latencies() {
        let mut failed = record(1, 2, 4, 4);
        failed.failure_kind = Some("truncated".into());
        let t = Tally {
            url: "u".into(),
            api: "chat".into(),
            model: None,
            streaming: true,
            started: 4,
            resent: 0,
            records: vec![record(10, 110, 11, 11), failed.clone(), failed],
        };
        let r = t.record(2.0);
        assert_eq!(
            (r.requests.issued, r.requests.succeeded, r.requests.failed),
            (4, 1, 2)
        );
        assert_eq!(r.requests.unfinished, 1, "started, never finished");
        assert_eq!(r.requests.failures["truncated"], 2);
        assert_eq!((r.tokens.output, r.tokens.output_of_failed), (11, 8));
        assert_eq!(r.tokens.input, Some(15));
        assert_eq!(r.ttft_ms.unwrap().count, 1);
        assert_eq!(r.system_tokens_per_s, 5.5);
    }
}
