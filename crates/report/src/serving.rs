//! A serving endpoint's run (`--workload openai|http`): requests and their
//! failures by kind, tokens and where their count came from, latencies as
//! the client measured them under each peer's definition, the server's own
//! timings, and energy per token from the run's power record.

use crate::schema::PowerRecord;
use power::meter::Provenance;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServingRecord {
    /// The URL requests went to (never with credentials).
    pub endpoint: String,
    /// `chat`, `completions`, `lon` (MLPerf's LoadGen-over-Network demo) or `template`.
    pub api: String,
    pub model: Option<String>,
    pub streaming: bool,
    pub requests: RequestCounts,
    pub tokens: TokenCounts,
    /// Request sent → first non-empty content, client side (ms).
    pub ttft_ms: Option<Spread>,
    /// LoadGen's definition from the client's clock: (e2e − TTFT) / (tokens − 1).
    pub tpot_ms: Option<Spread>,
    /// MLPerf Endpoints' definition: (complete − first content) / tokens
    /// after the first content chunk (needs a tokenizer, or one token per chunk).
    pub tpot_endpoints_ms: Option<Spread>,
    /// Request sent → response complete (ms).
    pub e2e_ms: Option<Spread>,
    /// Output tokens of successful requests over the timed window.
    pub system_tokens_per_s: f64,
    /// MLPerf Endpoints' TPS per user: 1000 / p90 of TPOT (their definition
    /// when known, else LoadGen's).
    pub tokens_per_s_per_user: Option<f64>,
    /// Means of the server's own `timings` (llama.cpp), when it sent them.
    pub server: Option<ServerTimingStats>,
    /// Energy per token, per basis (the measured total, each meter).
    #[serde(default)]
    pub energy: Vec<TokenEnergy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RequestCounts {
    pub issued: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Started but never finished (open when the run was interrupted).
    #[serde(default)]
    pub unfinished: u64,
    /// Sent a second time on a new connection because the server had closed
    /// the kept-alive one without reading them (as curl does); not failures.
    #[serde(default)]
    pub resent: u64,
    /// Failures by kind (`connect`, `http_429`, `idle_timeout`, `truncated`, …).
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TokenCounts {
    /// Output tokens of successful requests.
    pub output: u64,
    /// Output tokens of requests that failed part way (the energy was spent).
    pub output_of_failed: u64,
    /// Prompt tokens, when the server reported them.
    pub input: Option<u64>,
    /// Where output counts came from: `usage` (the server), `tokenizer`
    /// (client side, --tokenizer), `chunks` (one per content chunk: an
    /// estimate) or `none`.
    pub source: String,
}

/// A latency population in ms (nearest-rank percentiles, as LoadGen's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for an empty population.
    pub fn of(mut values_ms: Vec<f64>) -> Option<Spread> {
        if values_ms.is_empty() {
            return None;
        }
        values_ms.sort_by(f64::total_cmp);
        let n = values_ms.len();
        let at = |p: f64| values_ms[((n as f64 * p) as usize).min(n - 1)];
        Some(Spread {
            count: n as u64,
            mean: values_ms.iter().sum::<f64>() / n as f64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: values_ms[n - 1],
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerTimingStats {
    pub requests: u64,
    pub prompt_ms_mean: f64,
    /// predicted_ms / predicted_n: the server's time per output token.
    pub ms_per_output_token_mean: f64,
    pub output_tokens_per_s_mean: f64,
}

/// Energy per token on one basis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenEnergy {
    /// `measured total`, `estimated total`, or a meter id.
    pub basis: String,
    /// What the basis covers (`node`, `gpu`, `cpu_package`, or the meters summed).
    pub scope: String,
    pub provenance: Provenance,
    pub energy_j: f64,
    /// Over every output token generated (successful and failed requests).
    pub j_per_output_token: Option<f64>,
    pub output_tokens_per_j: Option<f64>,
    pub j_per_request: Option<f64>,
}

/// Energy per token from `power`: the totals first, then each meter with
/// its scope (a GPU-only meter gives a GPU-only figure, labelled so).
pub fn token_energy(power: &PowerRecord, serving: &ServingRecord) -> Vec<TokenEnergy> {
    let tokens = serving.tokens.output + serving.tokens.output_of_failed;
    let requests = serving.requests.issued;
    let figure = |basis: String, scope: String, provenance, energy_j: f64| TokenEnergy {
        basis,
        scope,
        provenance,
        energy_j,
        j_per_output_token: (tokens > 0).then(|| energy_j / tokens as f64),
        output_tokens_per_j: (energy_j > 0.0).then(|| tokens as f64 / energy_j),
        j_per_request: (requests > 0).then(|| energy_j / requests as f64),
    };
    let mut out = Vec::new();
    for (label, part, provenance) in [
        (
            "measured total",
            &power.total.measured,
            Provenance::Measured,
        ),
        (
            "estimated total",
            &power.total.estimated,
            Provenance::Estimated,
        ),
    ] {
        if let Some(p) = part {
            out.push(figure(
                label.into(),
                p.meter_ids.join(" + "),
                provenance,
                p.energy_j,
            ));
        }
    }
    for m in &power.meters {
        out.push(figure(
            m.meter_id.clone(),
            crate::page::serde_name(&m.scope),
            m.provenance,
            m.energy_j,
        ));
    }
    out
}

/// The text summary's serving lines.
pub fn lines(s: &ServingRecord) -> Vec<String> {
    rows(s)
        .into_iter()
        .map(|(k, v)| format!("  {k:<17} {v}"))
        .collect()
}

/// What a serving run did, as (name, value) rows: the text summary's lines
/// and the report's table.
pub fn rows(s: &ServingRecord) -> Vec<(String, String)> {
    let mut rows = vec![(
        "serving".to_string(),
        format!(
            "{} requests to {} ({}{}): {} succeeded, {} failed{}",
            s.requests.issued,
            s.endpoint,
            s.api,
            if s.streaming { ", streaming" } else { "" },
            s.requests.succeeded,
            s.requests.failed,
            if s.requests.unfinished > 0 {
                format!(", {} unfinished", s.requests.unfinished)
            } else {
                String::new()
            }
        ),
    )];
    if s.requests.resent > 0 {
        rows.push((
            "resent".into(),
            format!(
                "{} requests sent again on a new connection: the server had closed the kept-alive one without reading them",
                s.requests.resent
            ),
        ));
    }
    if !s.requests.failures.is_empty() {
        let kinds: Vec<String> = s
            .requests
            .failures
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect();
        rows.push(("failures".into(), kinds.join(", ")));
    }
    rows.push((
        "tokens".into(),
        format!(
            "{} output (counted by {}){}, {:.1} tokens/s{}",
            s.tokens.output,
            s.tokens.source,
            if s.tokens.output_of_failed > 0 {
                format!(" + {} in failed requests", s.tokens.output_of_failed)
            } else {
                String::new()
            },
            s.system_tokens_per_s,
            s.tokens_per_s_per_user
                .map(|u| format!(", {u:.1} tokens/s per user"))
                .unwrap_or_default()
        ),
    ));
    for (name, spread) in [
        ("TTFT", &s.ttft_ms),
        ("TPOT", &s.tpot_ms),
        ("TPOT (Endpoints)", &s.tpot_endpoints_ms),
        ("request", &s.e2e_ms),
    ] {
        if let Some(x) = spread {
            rows.push((
                name.into(),
                format!(
                    "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  (client side)",
                    x.p50, x.p90, x.p99
                ),
            ));
        }
    }
    if let Some(t) = &s.server {
        rows.push((
            "server says".into(),
            format!(
                "{:.2} ms per output token, {:.1} tokens/s per request, prompt {:.1} ms ({} requests)",
                t.ms_per_output_token_mean, t.output_tokens_per_s_mean, t.prompt_ms_mean, t.requests
            ),
        ));
    }
    for e in &s.energy {
        let tag = if e.provenance == Provenance::Estimated {
            "estimated"
        } else {
            "measured"
        };
        if let (Some(per_token), Some(per_j)) = (e.j_per_output_token, e.output_tokens_per_j) {
            rows.push((
                "energy/token".into(),
                format!(
                    "{:.4} J/token  {:.3} tokens/J  {:.3} J/request  ({}, {}, {tag})",
                    per_token,
                    per_j,
                    e.j_per_request.unwrap_or(0.0),
                    e.basis,
                    e.scope
                ),
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_use_nearest_rank() {
        let s = Spread::of((1..=10).map(f64::from).collect()).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (6.0, 10.0, 10.0, 10.0));
        assert_eq!(s.mean, 5.5);
        assert!(Spread::of(Vec::new()).is_none());
    }
}
