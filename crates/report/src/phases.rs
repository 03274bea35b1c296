//! Phases of a measured command: marks in, energy per phase out.
//!
//! A program separates its phases ("load", "train", "eval") by writing one
//! line per mark to the path in `JOULEBENCH_MARKS` while `joulebench measure`
//! runs it. The measuring side stamps each line on the run clock the moment it
//! arrives; this module turns those stamped lines into phase windows and each
//! window into energy, with the same integration and total rule as the whole
//! run, so phase figures add up to the command's figure when the phases cover
//! it.
//!
//! The protocol is one line per mark, chosen so that `echo train >
//! "$JOULEBENCH_MARKS"` from a shell and one `write()` from any language work:
//!
//! - `NAME` starts phase `NAME` now, ending the phase before it, if any;
//! - `end` (or `-`) ends the current phase; time until the next mark is in
//!   no phase;
//! - the command's exit ends the last phase;
//! - blank lines are ignored; a name longer than [`MAX_NAME_CHARS`] or with
//!   control characters is ignored and reported as a problem, never guessed.
//!
//! A name may repeat (`train`, `eval`, `train`, `eval`): each occurrence is
//! its own [`PhaseRecord`], and [`phase_totals`] sums them per name.

use crate::schema::{PhaseRecord, PhaseTotal};
use power::energy::{MeterEnergy, SystemTotal};

/// Longest phase name kept.
pub const MAX_NAME_CHARS: usize = 64;

/// One line read from the marks channel, stamped on the run clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub t_ns: u64,
    pub line: String,
}

/// A phase's window on the run clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSpan {
    pub name: String,
    pub begin_ns: u64,
    pub end_ns: u64,
}

/// Phase windows from `marks` (in arrival order) for a command that ran from
/// `begin_ns` to `end_ns`; lines that are not marks come back as problems.
pub fn spans(marks: &[Mark], begin_ns: u64, end_ns: u64) -> (Vec<PhaseSpan>, Vec<String>) {
    let mut spans = Vec::new();
    let mut problems = Vec::new();
    let mut open: Option<(String, u64)> = None;
    let clamp = |t: u64| t.clamp(begin_ns, end_ns.max(begin_ns));
    for mark in marks {
        let line = mark.line.trim();
        if line.is_empty() {
            continue;
        }
        if line.chars().any(char::is_control) {
            problems.push(format!(
                "mark at {:.3} s ignored: control characters in {line:?}",
                secs(mark.t_ns.saturating_sub(begin_ns))
            ));
            continue;
        }
        if line.chars().count() > MAX_NAME_CHARS {
            problems.push(format!(
                "mark at {:.3} s ignored: a phase name is at most {MAX_NAME_CHARS} characters ({:?}…)",
                secs(mark.t_ns.saturating_sub(begin_ns)),
                line.chars().take(20).collect::<String>()
            ));
            continue;
        }
        let t = clamp(mark.t_ns);
        if let Some((name, from)) = open.take() {
            spans.push(PhaseSpan {
                name,
                begin_ns: from,
                end_ns: t,
            });
        }
        if line != "end" && line != "-" {
            open = Some((line.to_string(), t));
        }
    }
    if let Some((name, from)) = open {
        spans.push(PhaseSpan {
            name,
            begin_ns: from,
            end_ns: clamp(end_ns),
        });
    }
    (spans, problems)
}

fn secs(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// A phase's record from the energies of its meters over its window and the
/// system total computed from them.
pub fn record(
    span: &PhaseSpan,
    meters: Vec<MeterEnergy>,
    total: SystemTotal,
    idle_total_w: Option<f64>,
) -> PhaseRecord {
    let duration_s = secs(span.end_ns.saturating_sub(span.begin_ns));
    let energy_above_idle_j = match (&total.measured, idle_total_w) {
        (Some(part), Some(w)) => Some(part.energy_j - w * duration_s),
        _ => None,
    };
    PhaseRecord {
        name: span.name.clone(),
        begin_ns: span.begin_ns,
        end_ns: span.end_ns,
        duration_s,
        meters,
        total,
        energy_above_idle_j,
    }
}

/// Per phase name, in order of first appearance: occurrences, time and
/// energy summed.
pub fn phase_totals(phases: &[PhaseRecord]) -> Vec<PhaseTotal> {
    let mut totals: Vec<PhaseTotal> = Vec::new();
    for p in phases {
        let entry = match totals.iter().position(|t| t.name == p.name) {
            Some(i) => &mut totals[i],
            None => {
                totals.push(PhaseTotal {
                    name: p.name.clone(),
                    occurrences: 0,
                    duration_s: 0.0,
                    measured_j: None,
                    estimated_j: None,
                    energy_above_idle_j: None,
                });
                let last = totals.len() - 1;
                &mut totals[last]
            }
        };
        add_total(
            entry,
            &PhaseTotal {
                name: p.name.clone(),
                occurrences: 1,
                duration_s: p.duration_s,
                measured_j: p.total.measured.as_ref().map(|t| t.energy_j),
                estimated_j: p.total.estimated.as_ref().map(|t| t.energy_j),
                energy_above_idle_j: p.energy_above_idle_j,
            },
        );
    }
    totals
}

/// Adds `more` into `into` (same name): counts, times and energies summed;
/// an energy one side lacks stays as the other side's.
pub fn add_total(into: &mut PhaseTotal, more: &PhaseTotal) {
    let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    };
    into.occurrences += more.occurrences;
    into.duration_s += more.duration_s;
    into.measured_j = add(into.measured_j, more.measured_j);
    into.estimated_j = add(into.estimated_j, more.estimated_j);
    into.energy_above_idle_j = add(into.energy_above_idle_j, more.energy_above_idle_j);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(t_ns: u64, line: &str) -> Mark {
        Mark {
            t_ns,
            line: line.into(),
        }
    }

    #[test]
    fn each_mark_ends_the_phase_before_it_and_exit_ends_the_last() {
        let (s, problems) = spans(
            &[mark(100, "load"), mark(300, "train\n"), mark(700, " eval ")],
            50,
            1000,
        );
        assert!(problems.is_empty());
        let got: Vec<(&str, u64, u64)> = s
            .iter()
            .map(|p| (p.name.as_str(), p.begin_ns, p.end_ns))
            .collect();
        assert_eq!(
            got,
            [("load", 100, 300), ("train", 300, 700), ("eval", 700, 1000)]
        );
    }

    #[test]
    fn end_closes_a_phase_and_the_gap_belongs_to_none() {
        let (s, _) = spans(
            &[
                mark(100, "a"),
                mark(200, "end"),
                mark(500, "b"),
                mark(600, "-"),
            ],
            0,
            1000,
        );
        let got: Vec<(&str, u64, u64)> = s
            .iter()
            .map(|p| (p.name.as_str(), p.begin_ns, p.end_ns))
            .collect();
        assert_eq!(got, [("a", 100, 200), ("b", 500, 600)]);
    }

    #[test]
    fn marks_outside_the_command_are_clamped_to_it() {
        let (s, _) = spans(&[mark(10, "early"), mark(5000, "late")], 100, 1000);
        assert_eq!(
            s,
            [
                PhaseSpan {
                    name: "early".into(),
                    begin_ns: 100,
                    end_ns: 1000
                },
                PhaseSpan {
                    name: "late".into(),
                    begin_ns: 1000,
                    end_ns: 1000
                }
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_not_guessed() {
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let (s, problems) = spans(
            &[
                mark(100, "ok"),
                mark(200, &long),
                mark(300, "a\u{7}b"),
                mark(400, "  "),
            ],
            0,
            1000,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].end_ns, 1000, "ignored lines do not end a phase");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("at most 64"), "{}", problems[0]);
        assert!(problems[1].contains("control"), "{}", problems[1]);
    }

    #[test]
    fn totals_sum_repeated_names_in_first_seen_order() {
        let rec = |name: &str, d: f64, j: Option<f64>| PhaseTotal {
            name: name.into(),
            occurrences: 1,
            duration_s: d,
            measured_j: j,
            estimated_j: None,
            energy_above_idle_j: None,
        };
        let mut a = rec("train", 1.0, Some(10.0));
        add_total(&mut a, &rec("train", 2.0, Some(5.0)));
        add_total(&mut a, &rec("train", 0.5, None));
        assert_eq!(a.occurrences, 3);
        assert!((a.duration_s - 3.5).abs() < 1e-12);
        assert_eq!(a.measured_j, Some(15.0));
        assert_eq!(a.estimated_j, None);
    }
}
