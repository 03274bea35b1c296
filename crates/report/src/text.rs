//! The short text summary `joulebench run` prints at the end.

use crate::schema::RunResult;
use std::fmt::Write;

pub fn run_summary(r: &RunResult, dir: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} · {} · {} · {}",
        r.workload.name, r.settings.scenario, r.settings.mode, r.workload.sut_name
    );
    if let Some(p) = &r.performance {
        let verdict = if p.valid { "VALID" } else { "INVALID" };
        let _ = writeln!(o, "  result      {verdict}");
        for reason in &p.validity.reasons {
            let _ = writeln!(
                o,
                "    - {}",
                reason
                    .replace('\n', " ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let _ = writeln!(
            o,
            "  {:<11} {} {}",
            "metric",
            format_number(p.metric.value),
            p.metric.unit
        );
        let _ = writeln!(o, "  {:<11} ({})", "", p.metric.name);
        let _ = writeln!(
            o,
            "  throughput  {} samples/s",
            format_number(p.throughput_samples_per_s)
        );
        if let Some(l) = &p.sample_latency {
            let _ = writeln!(
                o,
                "  latency     p50 {}  p90 {}  p99 {}  max {}",
                ns(l.percentile(0.5)),
                ns(l.percentile(0.9)),
                ns(l.percentile(0.99)),
                ns(Some(l.max_ns))
            );
        }
        let _ = writeln!(
            o,
            "  queries     {} issued, {} of {} samples completed",
            p.queries_issued, p.samples_completed, p.samples_issued
        );
    }
    if let Some(a) = &r.accuracy {
        let _ = writeln!(
            o,
            "  accuracy    {} samples logged{}",
            a.samples_logged,
            if a.complete { "" } else { " (incomplete)" }
        );
    }
    if let Some(w) = &r.timed_window {
        let _ = writeln!(o, "  timed       {:.3} s", w.duration_s);
    }
    if r.status == crate::schema::RunStatus::Interrupted {
        let _ = writeln!(o, "  status      INTERRUPTED (partial result kept)");
    }
    let _ = writeln!(o, "  logs        {dir}");
    o
}

fn format_number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn ns(v: Option<i64>) -> String {
    match v {
        None => "-".into(),
        Some(n) if n >= 1_000_000_000 => format!("{:.3} s", n as f64 / 1e9),
        Some(n) if n >= 1_000_000 => format!("{:.3} ms", n as f64 / 1e6),
        Some(n) if n >= 1_000 => format!("{:.1} µs", n as f64 / 1e3),
        Some(n) => format!("{n} ns"),
    }
}
