//! `joulebench report` and `joulebench compare` on recorded runs
//! (crates/report/tests/fixtures), checked by a real browser: the HTML is
//! loaded in headless Chromium, the page's own script checks each chart's SVG
//! against the series it should show, and the DOM Chromium dumps after that
//! is what this test reads. Skipped, saying so, where Chromium is absent.

mod common;

use common::joulebench;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../report/tests/fixtures")
        .join(name)
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
}

/// Chromium with no network, no profile, no GPU; `extra` picks the output.
fn headless(browser: &Path, profile: &Path, extra: &[String], page: &Path) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

/// Each `<figure data-chart=…>`'s attributes from the dumped DOM.
fn figures(dom: &str) -> Vec<(String, String, String)> {
    let attr = |tag: &str, name: &str| {
        tag.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    dom.split("<figure")
        .skip(1)
        .filter_map(|f| f.split('>').next())
        .map(|tag| {
            (
                attr(tag, "data-chart"),
                attr(tag, "data-drawn"),
                attr(tag, "data-found"),
            )
        })
        .collect()
}

/// The count after `name=` in a figure's data-found.
fn drawn_count(found: &str, name: &str) -> usize {
    found
        .split(',')
        .find_map(|s| s.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_report_of_a_recorded_run_draws_every_chart_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("report.html");
    let r = joulebench()
        .arg("report")
        .arg(fixture("run-offline"))
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let text = std::fs::read_to_string(&html).unwrap();
    // No network needed: nothing is loaded from anywhere (the SVG namespace
    // URI is a name, not a fetch).
    for loads in [" src=", " href=", "<link", "@import", "url("] {
        assert!(!text.contains(loads), "the page loads something: {loads}");
    }

    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: chromium not found on PATH (apt-get install chromium); the HTML was made but not checked in a browser");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let dump = headless(&browser, profile.path(), &["--dump-dom".into()], &html);
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dom.contains("data-charts-checked=\"3/3\""),
        "the page's check did not pass for every chart: {:?}\n{}",
        figures(&dom),
        String::from_utf8_lossy(&dump.stderr)
    );
    let figs = figures(&dom);
    let ids: Vec<&str> = figs.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        ids,
        ["power-rapl-package-0", "power-estimate-cpu", "latency"]
    );
    for (id, drawn, _) in &figs {
        assert_eq!(drawn, "yes", "{id}");
    }
    // The series drew with every point: 46 counter intervals, 47 estimate
    // samples, min + 6 percentiles + max.
    assert_eq!(drawn_count(&figs[0].2, "rapl-package-0"), 46);
    assert_eq!(drawn_count(&figs[1].2, "estimate-cpu"), 47);
    assert_eq!(drawn_count(&figs[2].2, "sample latency"), 8);

    let shot = std::env::temp_dir().join("joulebench-report.png");
    let s = headless(
        &browser,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1100,1900".into(),
            "--hide-scrollbars".into(),
        ],
        &html,
    );
    assert!(
        shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn a_measured_commands_report_marks_its_phases_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("report.html");
    let r = joulebench()
        .arg("report")
        .arg(fixture("measure-phases"))
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: chromium not found on PATH (apt-get install chromium)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let dump = headless(&browser, profile.path(), &["--dump-dom".into()], &html);
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dom.contains("data-charts-checked=\"2/2\""),
        "{:?}",
        figures(&dom)
    );
    // The phase labels are text inside the drawn chart.
    let chart = dom
        .split("data-chart=\"power-rapl-package-0\"")
        .nth(1)
        .and_then(|r| r.split("</figure>").next())
        .unwrap();
    for phase in ["load", "train", "eval"] {
        assert!(
            chart.contains(&format!("\n{phase}\n</text>")),
            "no {phase} mark"
        );
    }
    let shot = std::env::temp_dir().join("joulebench-report-measure.png");
    headless(
        &browser,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1100,1700".into(),
            "--hide-scrollbars".into(),
        ],
        &html,
    );
}

#[test]
fn compare_prints_the_table_and_its_charts_draw_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("compare.html");
    let r = joulebench()
        .arg("compare")
        .arg(fixture("run-offline"))
        .arg(fixture("measure-phases"))
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let table = String::from_utf8_lossy(&r.stdout);
    assert!(
        table.contains("| 1 | sleep Offline | inference | yes |"),
        "{table}"
    );
    assert!(table.contains("| 2 | sh | command | - |"), "{table}");
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: chromium not found on PATH (apt-get install chromium)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let dump = headless(&browser, profile.path(), &["--dump-dom".into()], &html);
    let dom = String::from_utf8_lossy(&dump.stdout);
    let figs = figures(&dom);
    assert_eq!(figs.len(), 4, "{figs:?}");
    for (id, drawn, found) in &figs {
        assert_eq!(drawn, "yes", "{id}: {found}");
    }
    // Throughput: one bar (the command has none); power: a bar per run.
    assert_eq!(drawn_count(&figs[0].2, "throughput"), 1);
    assert_eq!(drawn_count(&figs[1].2, "average power"), 2);
    let shot = std::env::temp_dir().join("joulebench-compare.png");
    headless(
        &browser,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1100,1200".into(),
            "--hide-scrollbars".into(),
        ],
        &html,
    );
}

#[test]
fn compare_leaves_out_unreadable_runs_by_name_and_exits_1() {
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("result.json"),
        r#"{"schema_version": 2, "kind": "inference"}"#,
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = joulebench()
        .arg("compare")
        .arg(fixture("run-offline"))
        .arg(bad.path())
        .arg(out.path().join("missing"))
        .args(["--format", "md"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("schema version 2 is not supported (this joulebench reads version 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("missing: not a folder"), "{stderr}");
    let md = String::from_utf8_lossy(&r.stdout);
    assert!(
        md.contains("| 1 | sleep Offline |"),
        "the readable run is still compared: {md}"
    );
    assert!(md.contains("> **Warning:** left out"), "{md}");

    let r = joulebench().arg("report").arg(bad.path()).output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("schema version 2"));
}
