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

/// The summary `joulebench train` prints: the task, each run's status, time,
/// throughput, accuracy and energy (with its phases), the scores (time and
/// energy to train, or throughput for a task without a target), the energy
/// of the median run, and where the result is.
pub fn training_summary(r: &crate::schema::TrainingResult, dir: &str) -> String {
    let mut o = String::new();
    let t = &r.training;
    let _ = writeln!(
        o,
        "joulebench train: {} ({}) on {}",
        t.task, t.model, t.device
    );
    let _ = writeln!(o, "  data        {}", t.data);
    if let Some(target) = t.target_accuracy {
        let _ = writeln!(
            o,
            "  target      {:.2}% held-out top-1 accuracy",
            target * 100.0
        );
    }
    let _ = writeln!(o, "  run  seed  status         epochs  steps   time s   samples/s  accuracy   energy J   avg W");
    for (i, run) in t.runs.iter().enumerate() {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
        let _ = writeln!(
            o,
            "  {:>3}  {:>4}  {:<13}  {:>6}  {:>5}  {:>7.3}  {:>10.1}  {:>8}  {:>9}  {:>6}",
            i + 1,
            run.seed,
            run.status,
            run.epochs,
            run.steps,
            run.time_to_train_s,
            run.samples_per_s,
            opt(run.final_accuracy, &|a| format!("{:.2}%", a * 100.0)),
            opt(run.energy_j, &|j| format!("{j:.2}")),
            opt(run.avg_w, &|w| format!("{w:.2}")),
        );
        for p in &run.phase_totals {
            if let Some(j) = p.measured_j.or(p.estimated_j) {
                let _ = writeln!(
                    o,
                    "        {:<6} {:>8.3} s {:>10.3} J",
                    p.name, p.duration_s, j
                );
            }
        }
    }
    let throughput = t.target_accuracy.is_none();
    if throughput {
        let rep = &t.runs[t.representative_run];
        let j = rep
            .j_per_sample
            .map_or_else(|| "-".to_string(), |j| format!("{j:.4} J/sample"));
        let _ = writeln!(
            o,
            "  throughput  {:.2} samples/s, {j} (median run; synthetic data)",
            rep.samples_per_s
        );
    }
    match &t.time_to_train_s {
        _ if throughput => {}
        Some(s) => {
            let _ = writeln!(
                o,
                "  time to train  {:.3} s ({})",
                s.value,
                if s.olympic {
                    format!("olympic average of {} runs", s.counted.len())
                } else {
                    format!(
                        "mean of {} runs: fewer than 3, nothing dropped",
                        s.counted.len()
                    )
                }
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  time to train  none: too many runs did not converge (MLPerf allows one)"
            );
        }
    }
    if let Some(e) = t.energy_to_train_j.as_ref().filter(|_| !throughput) {
        let est = if e.provenance == Some(power::meter::Provenance::Estimated) {
            " (estimated)"
        } else {
            ""
        };
        let _ = writeln!(o, "  energy to train  {:.3} J{est}", e.value);
    }
    if let Some(p) = &r.common.power {
        let _ = writeln!(
            o,
            "  energy of the median run (run {}):",
            t.representative_run + 1
        );
        for line in power_lines(p) {
            let _ = writeln!(o, "{line}");
        }
    } else {
        let _ = writeln!(o, "  energy      not measured: no usable meter (`joulebench power list` says why; --power estimate --tdp W gives an estimate)");
    }
    let _ = writeln!(o, "  results     {}", dir);
    o
}

/// `joulebench merge`'s table of nodes: exit status, wall time, measured and
/// estimated energy, completeness.
pub fn merged_nodes(r: &crate::schema::CommandResult) -> String {
    let mut o = format!(
        "joulebench merge: {} nodes\n  {:<16} {:>5} {:>10} {:>14} {:>14}\n",
        r.nodes.len(),
        "node",
        "exit",
        "wall s",
        "measured J",
        "estimated J"
    );
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
    for n in &r.nodes {
        o.push_str(&format!(
            "  {:<16} {:>5} {:>10.3} {:>14} {:>14}{}\n",
            n.hostname,
            n.reported_exit_code,
            n.wall_s,
            f(n.measured_j),
            f(n.estimated_j),
            if n.complete { "" } else { "  INCOMPLETE" }
        ));
    }
    o
}

/// What `joulebench measure` warns of, always: a meter that failed while
/// measuring (its energy is incomplete), and phase marks it could not use.
pub fn command_warnings(result: &crate::schema::CommandResult) -> Vec<String> {
    let mut out = Vec::new();
    let begin = result.timed_window.as_ref().map_or(0, |w| w.begin_ns);
    for l in result.power.iter().flat_map(|p| p.logs.iter()) {
        let f = &l.faults;
        if f.read_errors > 0 {
            out.push(format!(
                "meter {} failed {} read(s) from {:.3} s on (last error: {}); its energy is incomplete",
                l.meter_id,
                f.read_errors,
                f.first_error_ns.unwrap_or(begin).saturating_sub(begin) as f64 * 1e-9,
                f.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        if let Some(e) = &f.panicked {
            out.push(format!("meter {}: {e}", l.meter_id));
        }
    }
    out.extend(result.measured_command.mark_problems.iter().cloned());
    out
}
