//! Several runs side by side: one table (throughput, W, J per sample,
//! samples/J, and each as a ratio to the first run) and one bar chart per
//! quantity.
//!
//! A quantity a run does not have (throughput of a measured command, energy
//! of a run without a meter) is shown as `-`, never as zero, and its ratio
//! too. Where a run's power is estimated rather than measured, its figures
//! say so: comparing a measured run with an estimated one is allowed but
//! visible.

use super::{headline_total, opt};
use crate::chart;
use crate::document::{Block, Document, Section, Table};
use crate::run_dir::LoadedRun;
use power::meter::Provenance;

/// One run's comparable figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub dir: String,
    pub kind: String,
    pub duration_s: Option<f64>,
    pub throughput_samples_per_s: Option<f64>,
    pub avg_w: Option<f64>,
    pub energy_j: Option<f64>,
    pub j_per_sample: Option<f64>,
    pub samples_per_j: Option<f64>,
    pub estimated: bool,
    pub valid: Option<bool>,
}

/// The figures of `run`.
pub fn row(run: &LoadedRun) -> Row {
    let r = &run.result;
    let total = r.power().and_then(headline_total);
    let perf = r.performance();
    let samples = perf.map(|p| p.samples_completed as f64);
    let energy_j = total.map(|t| t.energy_j);
    let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    Row {
        label: r.label(),
        dir: run.dir.display().to_string(),
        kind: r.kind().to_string(),
        duration_s: r.duration_s(),
        throughput_samples_per_s: perf.map(|p| p.throughput_samples_per_s),
        avg_w: total.map(|t| t.avg_w),
        energy_j,
        j_per_sample: per(energy_j, samples),
        samples_per_j: per(samples, energy_j),
        estimated: total.is_some_and(|t| t.provenance == Provenance::Estimated),
        valid: perf.map(|p| p.valid),
    }
}

/// `v / base`, when both exist and base is not zero.
pub fn ratio(v: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (v, base) {
        (Some(v), Some(b)) if b != 0.0 && v.is_finite() && b.is_finite() => Some(v / b),
        _ => None,
    }
}

fn x(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

/// The comparison table alone (for Markdown and the terminal).
pub fn table(rows: &[Row]) -> Table {
    let mut t = Table::new(&[
        "#",
        "run",
        "kind",
        "valid",
        "duration s",
        "samples/s",
        "avg W",
        "energy J",
        "J/sample",
        "samples/J",
        "samples/s ratio",
        "W ratio",
        "J/sample ratio",
        "samples/J ratio",
        "folder",
    ])
    .numeric(&[0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    let first = rows.first();
    for (i, r) in rows.iter().enumerate() {
        let est = if r.estimated { " (est.)" } else { "" };
        let base = |f: fn(&Row) -> Option<f64>| first.and_then(f);
        t.row(vec![
            format!("{}", i + 1),
            r.label.clone(),
            r.kind.clone(),
            match r.valid {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
            opt(r.duration_s),
            opt(r.throughput_samples_per_s),
            format!("{}{est}", opt(r.avg_w)),
            format!("{}{est}", opt(r.energy_j)),
            format!("{}{est}", opt(r.j_per_sample)),
            format!("{}{est}", opt(r.samples_per_j)),
            x(ratio(
                r.throughput_samples_per_s,
                base(|f| f.throughput_samples_per_s),
            )),
            x(ratio(r.avg_w, base(|f| f.avg_w))),
            x(ratio(r.j_per_sample, base(|f| f.j_per_sample))),
            x(ratio(r.samples_per_j, base(|f| f.samples_per_j))),
            r.dir.clone(),
        ]);
    }
    t
}

/// A figure of a row.
type Quantity = fn(&Row) -> Option<f64>;

/// The comparison page: table, then one bar chart per quantity.
pub fn page(runs: &[LoadedRun], skipped: &[String]) -> Document {
    let rows: Vec<Row> = runs.iter().map(row).collect();
    let mut doc = Document {
        title: format!("joulebench comparison of {} runs", rows.len()),
        subtitle: vec!["Ratios are to run #1.".into()],
        sections: Vec::new(),
    };
    let mut s = Section::new("Runs");
    s.blocks.push(Block::Table(table(&rows)));
    if rows.iter().any(|r| r.estimated) {
        s.blocks.push(Block::Note(
            "(est.): that run had no measuring meter; its power is estimated (TDP × utilisation)."
                .into(),
        ));
    }
    for w in skipped {
        s.blocks.push(Block::Warning(w.clone()));
    }
    doc.sections.push(s);

    let mut charts = Section::new("Charts");
    let quantities: [(&str, &str, &str, Quantity); 4] = [
        ("throughput", "throughput", "samples/s", |r| {
            r.throughput_samples_per_s
        }),
        ("power", "average power", "W", |r| r.avg_w),
        ("j-per-sample", "energy per sample", "J/sample", |r| {
            r.j_per_sample
        }),
        ("samples-per-j", "samples per joule", "samples/J", |r| {
            r.samples_per_j
        }),
    ];
    for (i, (id, title, unit, f)) in quantities.iter().enumerate() {
        let values: Vec<Option<f64>> = rows.iter().map(f).collect();
        if values.iter().all(Option::is_none) {
            charts
                .blocks
                .push(Block::Note(format!("{title}: no run has it, no chart.")));
            continue;
        }
        match chart::bars(&format!("compare-{id}"), title, unit, &values, i) {
            Ok(c) => charts.blocks.push(Block::Chart(c)),
            Err(e) => charts.blocks.push(Block::Warning(e.to_string())),
        }
    }
    doc.sections.push(charts);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(tp: Option<f64>, w: Option<f64>, jps: Option<f64>) -> Row {
        Row {
            label: "x".into(),
            dir: "d".into(),
            kind: "inference".into(),
            duration_s: Some(1.0),
            throughput_samples_per_s: tp,
            avg_w: w,
            energy_j: w,
            j_per_sample: jps,
            samples_per_j: jps.map(|j| 1.0 / j),
            estimated: false,
            valid: Some(true),
        }
    }

    #[test]
    fn ratios_are_to_the_first_run_and_missing_values_stay_missing() {
        let t = table(&[
            r(Some(100.0), Some(50.0), Some(0.5)),
            r(Some(300.0), Some(100.0), Some(0.25)),
            r(None, Some(25.0), None),
        ]);
        assert_eq!(t.rows[0][10], "1.00×");
        assert_eq!(t.rows[1][10], "3.00×");
        assert_eq!(t.rows[1][11], "2.00×");
        assert_eq!(t.rows[1][12], "0.50×");
        assert_eq!(t.rows[1][13], "2.00×");
        assert_eq!(t.rows[2][5], "-", "no throughput is not zero");
        assert_eq!(t.rows[2][10], "-");
        assert_eq!(t.rows[2][11], "0.50×");
    }

    #[test]
    fn a_zero_base_gives_no_ratio() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(Some(2.0), Some(4.0)), Some(0.5));
    }
}
