//! One run's report: headline numbers, energy per meter, phases (or nodes),
//! power over time per meter, the latency distribution, the system, and
//! anything that could not be read.

use super::{joules, ns, num, opt, serde_name, tag};
use crate::chart::{self, EventMark};
use crate::document::{Block, Document, Section, Table};
use crate::run_dir::LoadedRun;
use crate::schema::{AnyResult, CommandResult, PowerRecord, RunResult, RunStatus};

/// The report page of one run. Charts that fail to draw become warnings on
/// the page; the rest of the report is still made.
pub fn page(run: &LoadedRun) -> Document {
    let r = &run.result;
    let mut doc = Document {
        title: format!("joulebench report: {}", r.label()),
        subtitle: vec![
            format!("{} · started {}", run.dir.display(), r.started_at()),
            format!("$ {}", r.command().join(" ")),
        ],
        sections: Vec::new(),
    };
    let mut headline = Section::new("Headline");
    headline
        .blocks
        .push(Block::Table(Table::key_values(match r {
            AnyResult::Inference(x) => inference_headline(x),
            AnyResult::Command(x) => command_headline(x),
        })));
    doc.sections.push(headline);

    if let Some(p) = r.power() {
        doc.sections.push(energy_section(run, p));
    }
    if let Some(s) = match r {
        AnyResult::Inference(x) => x.serving.as_ref(),
        _ => None,
    } {
        let mut section = Section::new("Serving endpoint");
        section
            .blocks
            .push(Block::Table(Table::key_values(crate::serving::rows(s))));
        doc.sections.push(section);
    }
    if let AnyResult::Command(c) = r {
        if let Some(s) = phases_section(c) {
            doc.sections.push(s);
        }
        if let Some(s) = nodes_section(c) {
            doc.sections.push(s);
        }
    }
    doc.sections.push(power_charts(run));
    if let AnyResult::Inference(x) = r {
        if let Some(s) = latency_section(x) {
            doc.sections.push(s);
        }
    }
    doc.sections.push(system_section(r));
    if let Some(s) = problems_section(run) {
        doc.sections.push(s);
    }
    doc
}

fn status_text(s: RunStatus) -> String {
    match s {
        RunStatus::Completed => "completed".into(),
        RunStatus::Interrupted => "INTERRUPTED (partial result kept)".into(),
    }
}

fn power_lines(p: &PowerRecord, rows: &mut Vec<(String, String)>) {
    for (label, part) in [
        ("measured total", &p.total.measured),
        ("estimated total", &p.total.estimated),
    ] {
        if let Some(t) = part {
            rows.push((
                label.into(),
                format!(
                    "{} W average · {} ({})",
                    num(t.avg_w),
                    joules(t.energy_j),
                    t.meter_ids.join(" + ")
                ),
            ));
        }
    }
    if let Some(idle) = &p.idle {
        if let Some(w) = idle.total_idle_w {
            rows.push(("idle power".into(), format!("{} W", num(w))));
        }
        if let Some(j) = idle.energy_above_idle_j {
            rows.push(("energy above idle".into(), joules(j)));
        }
    }
    rows.push((
        "energy complete".into(),
        if p.complete {
            "yes".into()
        } else {
            "NO: gaps or errors in a counted meter (see below)".into()
        },
    ));
}

fn inference_headline(r: &RunResult) -> Vec<(String, String)> {
    let mut rows = vec![
        (
            "run".to_string(),
            format!(
                "{} · {} · {} · {}",
                r.workload.name, r.settings.scenario, r.settings.mode, r.workload.sut_name
            ),
        ),
        ("status".into(), status_text(r.status)),
    ];
    if let Some(p) = &r.performance {
        rows.push((
            "result".into(),
            if p.valid {
                "VALID".into()
            } else {
                format!("INVALID: {}", p.validity.reasons.join("; "))
            },
        ));
        rows.push((
            format!("MLPerf metric ({})", p.metric.name),
            format!("{} {}", num(p.metric.value), p.metric.unit),
        ));
        // Offline's metric is the throughput itself: say it once.
        if p.metric.name != "samples_per_second" {
            rows.push((
                "throughput".into(),
                format!("{} samples/s", num(p.throughput_samples_per_s)),
            ));
        }
        if let Some(l) = &p.sample_latency {
            let pct = |q: f64| {
                l.percentile(q)
                    .map_or_else(|| "-".to_string(), |v| ns(v).to_string())
            };
            rows.push((
                "sample latency".into(),
                format!(
                    "p50 {} · p90 {} · p99 {} · max {}",
                    pct(0.5),
                    pct(0.9),
                    pct(0.99),
                    ns(l.max_ns)
                ),
            ));
        }
        rows.push((
            "samples".into(),
            format!("{} of {} completed", p.samples_completed, p.samples_issued),
        ));
    }
    if let Some(w) = &r.timed_window {
        rows.push(("timed window".into(), format!("{:.3} s", w.duration_s)));
    }
    if let Some(p) = &r.power {
        power_lines(p, &mut rows);
        if let Some(e) = &p.efficiency {
            let v = match e.name.as_str() {
                "samples_per_joule" => format!("{} samples/J", num(e.value)),
                _ => format!("{} mJ/query", num(e.value * 1e3)),
            };
            rows.push(("efficiency".into(), format!("{v}{}", tag(e.provenance))));
        }
    } else {
        rows.push(("power".into(), "no meter was used".into()));
    }
    rows
}

fn command_headline(r: &CommandResult) -> Vec<(String, String)> {
    let m = &r.measured_command;
    let ending = match (m.exit_code, m.signal, &m.start_error) {
        (_, _, Some(e)) => format!("could not start: {e}"),
        (Some(c), _, _) => format!("exited with {c}"),
        (None, Some(s), _) => format!("killed by signal {s}"),
        _ => format!("exit code {}", m.reported_exit_code),
    };
    let mut rows = vec![
        ("command".to_string(), m.argv.join(" ")),
        ("status".into(), status_text(r.status)),
        ("ended".into(), ending),
        ("wall time".into(), format!("{:.3} s", m.wall_s)),
    ];
    if !r.nodes.is_empty() {
        rows.push((
            "nodes".into(),
            format!(
                "{} ({})",
                r.nodes.len(),
                r.nodes
                    .iter()
                    .map(|n| n.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(s) = &m.slurm {
        rows.push((
            "Slurm".into(),
            format!(
                "job {}{} on {}",
                s.job_id,
                s.step_id
                    .as_ref()
                    .map(|x| format!(".{x}"))
                    .unwrap_or_default(),
                s.node_name
            ),
        ));
    }
    match &r.power {
        Some(p) => power_lines(p, &mut rows),
        None => rows.push(("power".into(), "no meter was used".into())),
    }
    rows
}

fn energy_section(run: &LoadedRun, p: &PowerRecord) -> Section {
    let mut s = Section::new("Energy per meter");
    let mut t = Table::new(&[
        "meter", "source", "device", "scope", "figure", "avg W", "peak W", "energy J", "Wh",
        "coverage", "complete",
    ])
    .numeric(&[5, 6, 7, 8, 9]);
    for m in &p.meters {
        let peak = run
            .series
            .iter()
            .find(|x| x.meter_id == m.meter_id)
            .and_then(|x| x.peak_w);
        t.row(vec![
            m.meter_id.clone(),
            m.source.clone(),
            m.domain.clone(),
            serde_name(&m.scope),
            serde_name(&m.provenance),
            num(m.avg_w),
            opt(peak),
            num(m.energy_j),
            num(m.energy_j / 3600.0),
            format!("{:.1}%", m.coverage * 100.0),
            if m.completeness.is_complete() {
                "yes".into()
            } else {
                format!("no: {}", m.completeness.reasons().join("; "))
            },
        ]);
    }
    s.blocks.push(Block::Table(t));
    s.blocks
        .push(Block::Note(format!("Total rule: {}", p.total.rule)));
    for e in &p.total.excluded {
        s.blocks.push(Block::Note(format!(
            "Not added to the total: {} ({})",
            e.meter_id, e.reason
        )));
    }
    s
}

fn phases_section(r: &CommandResult) -> Option<Section> {
    if r.phases.is_empty() && r.phase_totals.is_empty() {
        return None;
    }
    let mut s = Section::new("Phases");
    if !r.phases.is_empty() {
        let begin = r.timed_window.as_ref().map_or(0, |w| w.begin_ns);
        let mut t = Table::new(&[
            "phase",
            "starts at s",
            "duration s",
            "measured J",
            "measured avg W",
            "estimated J",
            "above idle J",
        ])
        .numeric(&[1, 2, 3, 4, 5, 6]);
        for p in &r.phases {
            t.row(vec![
                p.name.clone(),
                format!("{:.3}", p.begin_ns.saturating_sub(begin) as f64 * 1e-9),
                format!("{:.3}", p.duration_s),
                opt(p.total.measured.as_ref().map(|x| x.energy_j)),
                opt(p.total.measured.as_ref().map(|x| x.avg_w)),
                opt(p.total.estimated.as_ref().map(|x| x.energy_j)),
                opt(p.energy_above_idle_j),
            ]);
        }
        s.blocks.push(Block::Table(t));
    }
    if !r.phase_totals.is_empty() {
        let mut t = Table::new(&[
            "phase (all occurrences)",
            "times",
            "duration s",
            "measured J",
            "estimated J",
            "above idle J",
        ])
        .numeric(&[1, 2, 3, 4, 5]);
        for p in &r.phase_totals {
            t.row(vec![
                p.name.clone(),
                p.occurrences.to_string(),
                format!("{:.3}", p.duration_s),
                opt(p.measured_j),
                opt(p.estimated_j),
                opt(p.energy_above_idle_j),
            ]);
        }
        s.blocks.push(Block::Table(t));
    }
    Some(s)
}

fn nodes_section(r: &CommandResult) -> Option<Section> {
    if r.nodes.is_empty() {
        return None;
    }
    let mut s = Section::new("Nodes");
    let mut t = Table::new(&[
        "node",
        "exit",
        "wall s",
        "measured avg W",
        "measured J",
        "estimated J",
        "complete",
        "folder",
    ])
    .numeric(&[1, 2, 3, 4, 5]);
    for n in &r.nodes {
        t.row(vec![
            n.hostname.clone(),
            n.reported_exit_code.to_string(),
            format!("{:.3}", n.wall_s),
            opt(n.measured_avg_w),
            opt(n.measured_j),
            opt(n.estimated_j),
            if n.complete { "yes" } else { "no" }.into(),
            n.dir.clone(),
        ]);
    }
    s.blocks.push(Block::Table(t));
    Some(s)
}

fn power_charts(run: &LoadedRun) -> Section {
    let mut s = Section::new("Power over time");
    if run.series.is_empty() {
        s.blocks.push(Block::Note(
            "No power log to plot (no meter was used, or its log could not be read).".into(),
        ));
        return s;
    }
    let marks: Vec<EventMark> = match &run.result {
        AnyResult::Command(c) => c
            .phases
            .iter()
            .map(|p| EventMark {
                at_s: p.begin_ns as f64 * 1e-9,
                label: p.name.clone(),
            })
            .collect(),
        AnyResult::Inference(r) => r
            .timed_window
            .iter()
            .flat_map(|w| {
                [
                    EventMark {
                        at_s: w.begin_ns as f64 * 1e-9,
                        label: "power_begin".into(),
                    },
                    EventMark {
                        at_s: w.end_ns as f64 * 1e-9,
                        label: "power_end".into(),
                    },
                ]
            })
            .collect(),
    };
    s.blocks.push(Block::Note(
        "The shaded band is the window energy was computed over (LoadGen's timed window, or the \
         command's run); vertical lines mark phases."
            .into(),
    ));
    for (i, series) in run.series.iter().enumerate() {
        let id = format!("power-{}", series.meter_id.replace('/', "-"));
        // A merged result's meters each keep their own node's clock: marks
        // from one node would be misplaced on another's chart.
        let own_marks: &[EventMark] = if series.meter_id.contains('/') {
            &[]
        } else {
            &marks
        };
        match chart::power_over_time(&id, series, i, own_marks) {
            Ok(c) if series.points.len() >= 2 => s.blocks.push(Block::Chart(c)),
            Ok(_) => s.blocks.push(Block::Warning(format!(
                "{}: fewer than two readings in its log; nothing to plot",
                series.meter_id
            ))),
            Err(e) => s.blocks.push(Block::Warning(e.to_string())),
        }
    }
    s
}

fn latency_section(r: &RunResult) -> Option<Section> {
    let p = r.performance.as_ref()?;
    let mut pops = Vec::new();
    if let Some(l) = &p.sample_latency {
        pops.push(("sample latency", l));
    }
    if let Some(l) = &p.query_latency {
        if r.settings.scenario == loadgen::Scenario::MultiStream {
            pops.push(("query latency", l));
        }
    }
    if pops.is_empty() {
        return None;
    }
    let mut s = Section::new("Latency distribution");
    match chart::latency_distribution("latency", &pops) {
        Ok(c) => s.blocks.push(Block::Chart(c)),
        Err(e) => s.blocks.push(Block::Warning(e.to_string())),
    }
    let mut t = Table::new(&[
        "population",
        "count",
        "min",
        "mean",
        "p50",
        "p90",
        "p99",
        "max",
    ])
    .numeric(&[1, 2, 3, 4, 5, 6, 7]);
    for (name, l) in &pops {
        let pct = |q: f64| l.percentile(q).map_or_else(|| "-".to_string(), ns);
        t.row(vec![
            name.to_string(),
            l.count.to_string(),
            ns(l.min_ns),
            ns(l.mean_ns),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            ns(l.max_ns),
        ]);
    }
    s.blocks.push(Block::Table(t));
    Some(s)
}

fn system_section(r: &AnyResult) -> Section {
    let sys = r.system();
    let mut s = Section::new("System");
    s.blocks.push(Block::Table(Table::key_values(vec![
        ("host".into(), sys.hostname.clone()),
        ("OS".into(), sys.os.clone()),
        ("kernel".into(), sys.kernel.clone()),
        ("CPU".into(), sys.cpu_model.clone()),
        ("logical CPUs".into(), sys.logical_cpus.to_string()),
        (
            "memory".into(),
            format!("{:.1} GiB", sys.memory_bytes as f64 / (1u64 << 30) as f64),
        ),
        ("joulebench".into(), r.joulebench_version().to_string()),
        ("kind".into(), r.kind().to_string()),
    ])));
    s
}

fn problems_section(run: &LoadedRun) -> Option<Section> {
    let mut s = Section::new("Problems");
    for p in &run.problems {
        s.blocks.push(Block::Warning(p.clone()));
    }
    if let Some(p) = run.result.power() {
        for u in &p.unusable {
            s.blocks.push(Block::Note(format!(
                "Meter not usable: {} {}: {}",
                u.source, u.domain, u.reason
            )));
        }
        for l in &p.logs {
            if !l.faults.is_clean() {
                let mut what = Vec::new();
                if l.faults.read_errors > 0 {
                    what.push(format!(
                        "{} read errors (last: {})",
                        l.faults.read_errors,
                        l.faults.last_error.as_deref().unwrap_or("?")
                    ));
                }
                if !l.faults.gaps.is_empty() {
                    what.push(format!("{} gaps", l.faults.gaps.len()));
                }
                if !l.faults.counter_resets.is_empty() {
                    what.push(format!("{} counter resets", l.faults.counter_resets.len()));
                }
                if let Some(e) = &l.faults.log_error {
                    what.push(format!("log: {e}"));
                }
                if let Some(e) = &l.faults.panicked {
                    what.push(e.clone());
                }
                s.blocks.push(Block::Warning(format!(
                    "{}: {}",
                    l.meter_id,
                    what.join("; ")
                )));
            }
        }
    }
    if let AnyResult::Command(c) = &run.result {
        for p in &c.measured_command.mark_problems {
            s.blocks.push(Block::Warning(p.clone()));
        }
    }
    (!s.blocks.is_empty()).then_some(s)
}
