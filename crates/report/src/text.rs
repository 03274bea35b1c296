//! The short text summaries `joulebench run`, `train` and `measure` print at
//! the end.

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

/// The summary `joulebench measure` prints on stderr after the command exits
/// (and `merge` after merging): how it ended, then per meter average and peak
/// W and energy in J and Wh, the totals with measured and estimated apart,
/// idle, phases, and where the result is.
pub fn command_summary(r: &crate::schema::CommandResult, dir: &str) -> String {
    use power::meter::Provenance;
    let mut o = String::new();
    let m = &r.measured_command;
    let how = match (m.exit_code, m.signal, &m.start_error) {
        (_, _, Some(e)) => format!("could not start: {e}"),
        (Some(c), _, _) => format!("exited with {c}"),
        (None, Some(s), _) => format!("was killed by signal {s}"),
        _ => format!("ended (exit code {})", m.reported_exit_code),
    };
    let _ = writeln!(
        o,
        "\njoulebench measure: `{}` {how} after {:.3} s{}",
        m.argv.join(" "),
        m.wall_s,
        if r.nodes.is_empty() {
            String::new()
        } else {
            format!(" (longest of {} nodes)", r.nodes.len())
        }
    );
    if r.status == crate::schema::RunStatus::Interrupted {
        let _ = writeln!(o, "  INTERRUPTED: {}", m.forwarded_signals.join("; "));
    }
    let Some(p) = &r.power else {
        let _ = writeln!(o, "  no meter: wall time only\n  result      {dir}");
        return o;
    };
    let _ = writeln!(
        o,
        "  {:<28} {:>9} {:>9} {:>13} {:>10}",
        "meter", "avg W", "peak W", "energy J", "Wh"
    );
    for e in &p.meters {
        let peak = r
            .peak_power
            .iter()
            .find(|x| x.meter_id == e.meter_id)
            .map_or_else(|| "-".to_string(), |x| format!("{:.2}", x.peak_w));
        let tag = if e.provenance == Provenance::Estimated {
            " (estimated)"
        } else {
            ""
        };
        let incomplete = if e.completeness.is_complete() {
            String::new()
        } else {
            format!("  INCOMPLETE: {}", e.completeness.reasons().join("; "))
        };
        let _ = writeln!(
            o,
            "  {:<28} {:>9.2} {:>9} {:>13.3} {:>10.5}{tag}{incomplete}",
            e.meter_id,
            e.avg_w,
            peak,
            e.energy_j,
            e.energy_j / 3600.0
        );
    }
    for (label, part) in [
        ("measured total", &p.total.measured),
        ("estimated total", &p.total.estimated),
    ] {
        if let Some(t) = part {
            let _ = writeln!(
                o,
                "  {:<28} {:>9.2} {:>9} {:>13.3} {:>10.5}  ({})",
                label,
                t.avg_w,
                "",
                t.energy_j,
                t.energy_j / 3600.0,
                t.meter_ids.join(" + ")
            );
        }
    }
    if p.total.measured.is_none() && p.total.estimated.is_some() {
        let _ = writeln!(o, "  (no measuring meter: the total is an estimate)");
    }
    if let Some(idle) = &p.idle {
        if let (Some(w), Some(j)) = (idle.total_idle_w, idle.energy_above_idle_j) {
            let _ = writeln!(o, "  idle        {w:.2} W; {j:.3} J above idle");
        }
    }
    if !r.phase_totals.is_empty() {
        let _ = writeln!(
            o,
            "  {:<28} {:>9} {:>12} {:>13} {:>13}",
            "phase", "times", "duration s", "measured J", "estimated J"
        );
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
        for t in &r.phase_totals {
            let _ = writeln!(
                o,
                "  {:<28} {:>9} {:>12.3} {:>13} {:>13}",
                t.name,
                t.occurrences,
                t.duration_s,
                f(t.measured_j),
                f(t.estimated_j)
            );
        }
    }
    if !p.complete {
        let _ = writeln!(
            o,
            "  energy INCOMPLETE: a counted meter had gaps or errors (see result.json)"
        );
    }
    let _ = writeln!(o, "  result      {dir}");
    o
}

/// Energy lines for a run's or a training's text summary: each meter, the
/// totals (measured and estimated apart), the efficiency metric and idle.
pub fn power_lines(record: &crate::schema::PowerRecord) -> Vec<String> {
    let mut lines = Vec::new();
    for m in &record.meters {
        let tag = if m.provenance == power::meter::Provenance::Estimated {
            " (estimated)"
        } else {
            ""
        };
        let incomplete = if m.completeness.is_complete() {
            String::new()
        } else {
            format!("  INCOMPLETE: {}", m.completeness.reasons().join("; "))
        };
        lines.push(format!(
            "  {:<24} {:>9.2} W {:>12.3} J{tag}{incomplete}",
            m.meter_id, m.avg_w, m.energy_j
        ));
    }
    for (label, part) in [
        ("measured total", &record.total.measured),
        ("estimated total", &record.total.estimated),
    ] {
        if let Some(p) = part {
            lines.push(format!(
                "  {:<24} {:>9.2} W {:>12.3} J  ({})",
                label,
                p.avg_w,
                p.energy_j,
                p.meter_ids.join(" + ")
            ));
        }
    }
    if let Some(e) = &record.efficiency {
        let tag = if e.provenance == power::meter::Provenance::Estimated {
            " (estimated)"
        } else {
            ""
        };
        match e.name.as_str() {
            "samples_per_joule" => {
                lines.push(format!("  efficiency  {:.3} samples/J{tag}", e.value))
            }
            _ => lines.push(format!("  efficiency  {:.3} mJ/query{tag}", e.value * 1e3)),
        }
    }
    if let Some(idle) = &record.idle {
        if let (Some(w), Some(j)) = (idle.total_idle_w, idle.energy_above_idle_j) {
            lines.push(format!(
                "  idle        {w:.2} W; {j:.3} J above idle in the timed window"
            ));
        }
    }
    lines
}
