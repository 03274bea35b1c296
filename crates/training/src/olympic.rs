//! MLPerf Training's score over several runs: the olympic average. Sort the
//! runs' times to train, drop the fastest and the slowest, average the rest.
//! A run that did not converge counts as the slowest (it is the one dropped);
//! more than one such run leaves no score, as the result summarizer rules.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OlympicScore {
    /// The average of the counted runs.
    pub value: f64,
    /// Indices (into the runs given) of the runs averaged, fastest first.
    pub counted: Vec<usize>,
    /// Indices of the runs dropped (fastest, slowest or not converged).
    pub dropped: Vec<usize>,
    /// False when fewer than 3 runs were given: nothing could be dropped, so
    /// `value` is a plain mean, not an olympic average.
    pub olympic: bool,
}

/// The olympic average of `scores` (`None` for a run that did not converge).
/// `None` when no score can be given: no converged run, or more than one
/// run not converged.
pub fn olympic_average(scores: &[Option<f64>]) -> Option<OlympicScore> {
    let failed: Vec<usize> = (0..scores.len()).filter(|&i| scores[i].is_none()).collect();
    let mut done: Vec<(usize, f64)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|v| (i, v)))
        .collect();
    if failed.len() > 1 || done.is_empty() {
        return None;
    }
    done.sort_by(|a, b| a.1.total_cmp(&b.1));
    let olympic = scores.len() >= 3;
    let mut dropped = failed;
    if olympic {
        // The fastest always goes; the slowest goes unless a failed run
        // already took its place.
        dropped.push(done.remove(0).0);
        if dropped.len() < 2 {
            if let Some(slowest) = done.pop() {
                dropped.push(slowest.0);
            }
        }
    }
    if done.is_empty() {
        return None;
    }
    let value = done.iter().map(|d| d.1).sum::<f64>() / done.len() as f64;
    Some(OlympicScore {
        value,
        counted: done.iter().map(|d| d.0).collect(),
        dropped,
        olympic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_fastest_and_the_slowest() {
        let s =
            olympic_average(&[Some(5.0), Some(1.0), Some(3.0), Some(4.0), Some(100.0)]).unwrap();
        assert_eq!(s.value, 4.0);
        assert_eq!(s.counted, [2, 3, 0]);
        assert_eq!(s.dropped, [1, 4]);
        assert!(s.olympic);
    }

    #[test]
    fn one_run_not_converged_is_the_slowest_dropped() {
        let s = olympic_average(&[Some(2.0), None, Some(1.0), Some(6.0)]).unwrap();
        // Dropped: the failed run and the fastest (1.0); counted 2.0 and 6.0.
        assert_eq!(s.value, 4.0);
        assert_eq!(s.dropped, [1, 2]);
    }

    #[test]
    fn two_runs_not_converged_leave_no_score() {
        assert!(olympic_average(&[Some(2.0), None, None, Some(1.0), Some(3.0)]).is_none());
        assert!(olympic_average(&[None]).is_none());
        assert!(olympic_average(&[]).is_none());
    }

    #[test]
    fn fewer_than_three_runs_are_a_plain_mean_and_say_so() {
        let s = olympic_average(&[Some(2.0), Some(4.0)]).unwrap();
        assert_eq!(s.value, 3.0);
        assert!(!s.olympic);
        assert!(s.dropped.is_empty());
        let one = olympic_average(&[Some(7.0)]).unwrap();
        assert_eq!(one.value, 7.0);
    }
}
