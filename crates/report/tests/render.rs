//! Reports and comparisons rendered from recorded runs (tests/fixtures), and
//! run folders that are missing, corrupt or of another schema version.

use report::format::Format;
use report::run_dir::{load, LoadError};
use report::schema::AnyResult;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of a fixture in a temp dir, to damage.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture(name);
    std::fs::copy(src.join("result.json"), dir.path().join("result.json")).unwrap();
    std::fs::create_dir(dir.path().join("power")).unwrap();
    for e in std::fs::read_dir(src.join("power")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("power").join(e.file_name())).unwrap();
    }
    dir
}

#[test]
fn an_inference_run_reports_headline_energy_latency_and_a_chart_per_meter() {
    let run = load(&fixture("run-offline")).unwrap();
    assert!(run.problems.is_empty(), "{:?}", run.problems);
    assert_eq!(run.series.len(), 2);
    let doc = report::page::run::page(&run);
    let md = Format::Markdown.renderer().render(&doc);
    for needle in [
        "| result | VALID |",
        "| MLPerf metric (samples_per_second) | 1951 samples/s |",
        "| efficiency | 55.70 samples/J |",
        "| rapl-package-0 | rapl | package-0 | cpu_package | measured | 35.03 |",
        "| sample latency | 4400 |",
        "## System",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
    let html = Format::Html.renderer().render(&doc);
    for id in ["power-rapl-package-0", "power-estimate-cpu", "latency"] {
        assert!(
            html.contains(&format!("data-chart=\"{id}\"")),
            "no chart {id}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 3);
    // The measured line is drawn with every point of the log (46 intervals of a 47-row log).
    let rows = std::fs::read_to_string(fixture("run-offline/power/rapl-package-0.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let line = html
        .split("<polyline")
        .find(|p| p.contains("stroke=\"#1F77B4\"") && p.contains("stroke-width=\"2\""))
        .expect("the rapl line");
    let points = line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .split_whitespace()
        .count();
    assert_eq!(points, rows - 1, "one point per counter interval");
}

#[test]
fn a_measured_command_reports_its_phases_and_marks_them_on_the_charts() {
    let run = load(&fixture("measure-phases")).unwrap();
    let AnyResult::Command(c) = &run.result else {
        panic!("kind command expected")
    };
    let names: Vec<&str> = c.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["load", "train", "eval", "train"]);
    // Phases never overlap and sum to at most the command's energy.
    let measured = |p: &report::schema::PhaseRecord| p.total.measured.as_ref().unwrap().energy_j;
    let phase_sum: f64 = c.phases.iter().map(measured).sum();
    let total = c
        .power
        .as_ref()
        .unwrap()
        .total
        .measured
        .as_ref()
        .unwrap()
        .energy_j;
    assert!(
        phase_sum < total && phase_sum > 0.8 * total,
        "{phase_sum} of {total}"
    );
    let doc = report::page::run::page(&run);
    let md = Format::Markdown.renderer().render(&doc);
    assert!(md.contains("## Phases"), "{md}");
    assert!(md.contains("| train | 2 |"), "train twice, summed:\n{md}");
    let html = Format::Html.renderer().render(&doc);
    // Each power chart carries the 4 phase marks.
    assert_eq!(html.matches("data-marks=\"4\"").count(), 2, "{html:.2000}");
    assert!(
        !html.contains("Latency distribution"),
        "a command has no latency"
    );
}

#[test]
fn comparing_an_inference_run_with_a_command_leaves_what_one_lacks_empty() {
    let a = load(&fixture("run-offline")).unwrap();
    let b = load(&fixture("measure-phases")).unwrap();
    let rows: Vec<_> = [&a, &b]
        .iter()
        .map(|r| report::page::compare::row(r))
        .collect();
    assert!(rows[0].throughput_samples_per_s.is_some());
    assert_eq!(rows[1].throughput_samples_per_s, None);
    assert_eq!(rows[1].j_per_sample, None);
    let t = report::page::compare::table(&rows);
    assert_eq!(t.rows[0][11], "1.00×");
    let w_ratio = rows[1].avg_w.unwrap() / rows[0].avg_w.unwrap();
    assert_eq!(t.rows[1][11], format!("{w_ratio:.2}×"));
    let doc = report::page::compare::page(&[a, b], &[]);
    let html = Format::Html.renderer().render(&doc);
    for id in [
        "compare-throughput",
        "compare-power",
        "compare-j-per-sample",
        "compare-samples-per-j",
    ] {
        assert!(html.contains(&format!("data-chart=\"{id}\"")), "no {id}");
    }
}

#[test]
fn a_folder_without_a_result_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, LoadError::NoResult { .. }));
    assert!(err.to_string().contains("no result.json here"), "{err}");
    let err = load(&dir.path().join("nope")).unwrap_err();
    assert!(err.to_string().contains("not a folder"), "{err}");
}

#[test]
fn a_corrupt_result_names_the_file_and_the_problem() {
    let dir = copy_of("run-offline");
    let path = dir.path().join("result.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("result.json: not a joulebench result"),
        "{err}"
    );
    assert!(err.contains("EOF"), "{err}");
}

#[test]
fn another_schema_version_is_refused_by_name() {
    let dir = copy_of("run-offline");
    let path = dir.path().join("result.json");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "\"schema_version\": 1",
        "\"schema_version\": 2",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("schema version 2 is not supported (this joulebench reads version 1)"),
        "{err}"
    );
}

#[test]
fn a_corrupt_power_log_still_gives_a_report_that_says_so() {
    let dir = copy_of("measure-phases");
    std::fs::write(
        dir.path().join("power/rapl-package-0.csv"),
        "t_ns,counter_uj,wrap_uj\n12,notanumber,\n",
    )
    .unwrap();
    let run = load(dir.path()).unwrap();
    assert_eq!(run.series.len(), 1, "the other meter is still plotted");
    assert_eq!(run.problems.len(), 1);
    assert!(
        run.problems[0].contains("rapl-package-0"),
        "{:?}",
        run.problems
    );
    let md = Format::Markdown
        .renderer()
        .render(&report::page::run::page(&run));
    assert!(
        md.contains("> **Warning:** power log of rapl-package-0"),
        "{md}"
    );
    assert!(md.contains("| measured total |"), "headline still there");
}
