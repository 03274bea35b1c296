//! LoadGen's early-stopping estimate.
//!
//! With `n` queries of which `t` were over a latency bound, the run may claim
//! the percentile `p` if, with confidence `c = 0.99`, the true fraction of
//! queries within the bound is at least `p`. The odds of `t` or fewer
//! overlatency queries among `h + t` are the binomial CDF, written as a
//! regularized incomplete beta function `I_{p}(h, 1 + t)`; we want the
//! smallest `h` making those odds fall below `1 - c`.
//!
//! The incomplete beta is evaluated with LoadGen's series (Gauss'
//! hypergeometric function with a = 1) and the same floating-point steps,
//! because the thresholds (e.g. "at least 64 queries") are compared exactly.

/// Early stopping uses 99% confidence and no tolerance in every scenario.
pub const CONFIDENCE: f64 = 0.99;
pub const TOLERANCE: f64 = 0.0;

extern "C" {
    /// The C library's reentrant log-gamma, the function LoadGen calls
    /// (through `std::lgamma`); Rust's std has no stable log-gamma.
    fn lgamma_r(x: f64, sign: *mut i32) -> f64;
}

fn lgamma(x: f64) -> f64 {
    let mut sign = 0;
    // SAFETY: lgamma_r is a pure function of `x` that writes one int to the
    // pointer, which points at a live local.
    unsafe { lgamma_r(x, &mut sign) }
}

fn lbeta(x: i64, y: i64) -> f64 {
    lgamma(x as f64) + lgamma(y as f64) - lgamma((x + y) as f64)
}

/// 2F1(1, b; c; x), converging for c > 0 and (b <= 0 or x < 1).
fn hypergeometric_2f1_a1(b: i64, c: i64, x: f64) -> f64 {
    let tolerance = 1.0 / (1u64 << 33) as f64;
    let mut term: f64 = 1.0;
    let mut result: f64 = 1.0;
    let mut i: i64 = 0;
    while term.abs() > tolerance {
        term *= (b + i) as f64 * x / (c + i) as f64;
        result += term;
        i += 1;
    }
    result
}

/// The regularized incomplete beta `I_x(a, b)`.
fn beta_regularized(x: f64, a: i64, b: i64) -> f64 {
    (a as f64 * x.ln() + (b - 1) as f64 * (1.0 - x).ln() - lbeta(a, b)).exp() / a as f64
        * hypergeometric_2f1_a1(1 - b, 1 + a, x / (x - 1.0))
}

/// Odds of `t` or fewer overlatency queries among `h + t`.
pub fn odds(h: i64, t: i64, p: f64, d: f64) -> f64 {
    beta_regularized(p - d, h, 1 + t)
}

/// The smallest `h` such that `odds(h, t, p, d) < 1 - c`: how many queries
/// within the bound are needed to tolerate `t` over it.
pub fn min_passing_queries(t: i64, p: f64, d: f64, c: f64) -> i64 {
    let passes = |h: i64| odds(h, t, p, d) < 1.0 - c;
    // odds falls as h grows: widen an upper bound, then bisect.
    let mut low: i64 = 1;
    let mut high: i64 = ((1.0 - c).ln() / (p - d).ln()).ceil().max(1.0) as i64;
    while !passes(high) {
        low = high + 1;
        high *= 2;
    }
    while low < high {
        let mid = low + (high - low) / 2;
        if passes(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// The outcome for SingleStream/MultiStream: how many of the slowest queries
/// may be discarded, and the resulting percentile estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEstimate {
    /// Queries needed before any estimate exists (LoadGen prints
    /// "Processed at least {min_queries} queries").
    pub min_queries: i64,
    /// `None` when fewer than `min_queries` ran.
    pub discarded: Option<i64>,
    pub estimate_ns: Option<i64>,
}

/// Early-stopping estimate of percentile `p` over `sorted_latencies`
/// (ascending) of `queries_issued` queries.
pub fn stream_estimate(sorted_latencies: &[i64], queries_issued: i64, p: f64) -> StreamEstimate {
    let h_min = min_passing_queries(1, p, TOLERANCE, CONFIDENCE);
    if queries_issued < h_min + 1 || sorted_latencies.is_empty() {
        return StreamEstimate {
            min_queries: h_min + 1,
            discarded: None,
            estimate_ns: None,
        };
    }
    // LoadGen scans t = 2, 3, … for the first t with h(t) + t > n and keeps
    // t - 1; h(t) + t grows with t, so bisect for that first t instead.
    let exceeds = |t: i64| min_passing_queries(t, p, TOLERANCE, CONFIDENCE) + t > queries_issued;
    let mut t = 1;
    if exceeds(queries_issued) {
        let (mut low, mut high) = (2, queries_issued);
        while low < high {
            let mid = low + (high - low) / 2;
            if exceeds(mid) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        t = low - 1;
    }
    let index = (queries_issued - t).clamp(0, sorted_latencies.len() as i64 - 1) as usize;
    StreamEstimate {
        min_queries: h_min + 1,
        discarded: Some(t - 1),
        estimate_ns: Some(sorted_latencies[index]),
    }
}

/// Server: with `overlatency` queries over the bound, whether `queries_issued`
/// suffices, and if not how many more (all within the bound) would.
pub fn server_queries_needed(overlatency: i64, queries_issued: i64, p: f64) -> Option<i64> {
    let h = min_passing_queries(overlatency, p, TOLERANCE, CONFIDENCE);
    (queries_issued < h + overlatency).then_some(h + overlatency - queries_issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_match_loadgens_reference_runs() {
        // shared/reference/loadgen-6.0.17: "Processed at least 64 queries" at
        // p90 and "at least 662" at p99.
        assert_eq!(min_passing_queries(1, 0.9, 0.0, 0.99) + 1, 64);
        assert_eq!(min_passing_queries(1, 0.99, 0.0, 0.99) + 1, 662);
    }

    #[test]
    fn discard_counts_match_loadgens_reference_runs() {
        // SingleStream: 106290 queries, "Would discard 10400"; MultiStream:
        // 36222 queries, "Would discard 317".
        let latencies: Vec<i64> = (0..106_290).collect();
        let e = stream_estimate(&latencies, 106_290, 0.9);
        assert_eq!(e.discarded, Some(10_400));
        assert_eq!(e.estimate_ns, Some(106_290 - 10_401));
        let latencies: Vec<i64> = (0..36_222).collect();
        assert_eq!(
            stream_estimate(&latencies, 36_222, 0.99).discarded,
            Some(317)
        );
    }

    #[test]
    fn odds_is_the_binomial_cdf() {
        // P(at most t failures in h + t trials with success p) by direct sum.
        fn binomial_cdf(h: i64, t: i64, p: f64) -> f64 {
            let n = h + t;
            (0..=t)
                .map(|k| {
                    let ln_choose = lgamma((n + 1) as f64)
                        - lgamma((k + 1) as f64)
                        - lgamma((n - k + 1) as f64);
                    (ln_choose + (n - k) as f64 * p.ln() + k as f64 * (1.0 - p).ln()).exp()
                })
                .sum()
        }
        for (h, t, p) in [(50, 2, 0.9), (300, 5, 0.99), (1000, 20, 0.97)] {
            let a = odds(h, t, p, 0.0);
            let b = binomial_cdf(h, t, p);
            assert!((a - b).abs() < 1e-9, "h={h} t={t} p={p}: {a} vs {b}");
        }
    }

    #[test]
    fn too_few_queries_gives_no_estimate() {
        let e = stream_estimate(&[1, 2, 3], 3, 0.9);
        assert_eq!(e.min_queries, 64);
        assert_eq!(e.discarded, None);
    }

    #[test]
    fn server_needs_more_queries_when_many_are_late() {
        assert_eq!(server_queries_needed(0, 10_000, 0.99), None);
        let more = server_queries_needed(50, 1000, 0.99).unwrap();
        assert!(more > 0);
        assert_eq!(server_queries_needed(50, 1000 + more, 0.99), None);
    }
}
