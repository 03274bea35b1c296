//! Hostile input to what reads a run back: `result.json` (`read_any` and the
//! run folder loader `report`, `compare` and `merge` use), the power logs it
//! names, the accuracy score writer on a corrupt result, and phase marks from
//! a user's FIFO. Arbitrary bytes and mutations of recorded runs never panic,
//! errors name the file (and the line and column, for JSON), and a result
//! written by serde reads back with the same values.

use hostile_input::strategies::{config, mutate, mutations};
use proptest::prelude::*;
use report::accuracy_record::{record_score, Recorded};
use report::format::Format;
use report::phases::{spans, Mark, MAX_NAME_CHARS};
use report::run_dir::{load, LoadError};
use report::schema::{read_any, AnyResult, ReadError};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name).join("result.json")).unwrap()
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

const FIXTURES: [&str; 2] = ["run-offline", "measure-phases"];

/// The error names the file; a JSON error also names line and column.
fn check_read_error(e: &ReadError, path: &Path) {
    let shown = e.to_string();
    assert!(shown.starts_with(&path.display().to_string()), "{shown}");
    if let ReadError::Json { source, .. } = e {
        assert!(source.line() >= 1, "{shown}");
        assert!(shown.contains(" line "), "{shown}");
    }
}

/// Reads `text` as a result file; the value, or the checked error.
fn read_text(text: &[u8]) -> Option<AnyResult> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result.json");
    std::fs::write(&path, text).unwrap();
    match read_any(&path) {
        Ok(r) => Some(r),
        Err(e) => {
            check_read_error(&e, &path);
            None
        }
    }
}

fn as_json(r: &AnyResult) -> serde_json::Value {
    match r {
        AnyResult::Inference(r) => serde_json::to_value(r).unwrap(),
        AnyResult::Command(r) => serde_json::to_value(r).unwrap(),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes as result.json: an error naming the file (and line
    /// and column for bad JSON), never a panic.
    #[test]
    fn arbitrary_bytes_as_result_json_are_errors_naming_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        prop_assert!(read_text(&bytes).is_none());
    }

    /// A recorded result cut short anywhere: an error naming file, line and
    /// column (or, cut only in trailing whitespace, the same result).
    #[test]
    fn truncated_result_is_an_error_naming_file_and_line(
        which in 0..FIXTURES.len(),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = fixture_text(FIXTURES[which]);
        let cut = cut.index(text.len());
        if let Some(r) = read_text(&text.as_bytes()[..cut]) {
            prop_assert_eq!(text[cut..].trim(), "");
            prop_assert_eq!(as_json(&r), as_json(&read_text(text.as_bytes()).unwrap()));
        }
    }

    /// Deleted, duplicated, swapped lines, hostile numbers, garbage bytes and
    /// CRLF in a recorded result: read or refused with the file named.
    #[test]
    fn mutated_result_lines_never_panic(
        which in 0..FIXTURES.len(),
        edits in mutations(1..4),
    ) {
        let text = fixture_text(FIXTURES[which]);
        let _ = read_text(&mutate(&text, &edits));
    }

    /// The run folder loader (report, compare, merge) on a damaged
    /// result.json and damaged power logs: an error naming the file, or a
    /// run whose pages render; never a panic.
    #[test]
    fn damaged_run_folder_loads_or_names_the_problem_and_renders(
        which in 0..FIXTURES.len(),
        result_edits in mutations(0..2),
        log_edits in mutations(0..5),
        log in 0..2usize,
    ) {
        let dir = copy_of(FIXTURES[which]);
        let result = dir.path().join("result.json");
        if !result_edits.is_empty() {
            let text = std::fs::read_to_string(&result).unwrap();
            std::fs::write(&result, mutate(&text, &result_edits)).unwrap();
        }
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("power"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        logs.sort();
        let log = &logs[log % logs.len()];
        let text = std::fs::read_to_string(log).unwrap();
        std::fs::write(log, mutate(&text, &log_edits)).unwrap();
        match load(dir.path()) {
            Ok(run) => {
                for problem in &run.problems {
                    prop_assert!(problem.contains("power log") || problem.contains(".csv"), "{}", problem);
                }
                let page = report::page::run::page(&run);
                for format in [Format::Markdown, Format::Html] {
                    let _ = format.renderer().render(&page);
                }
            }
            Err(LoadError::Read(e)) => check_read_error(&e, &result),
            Err(e) => prop_assert!(false, "unexpected {}", e),
        }
    }

    /// Round trip: a result written by serde reads back with the same
    /// values, whatever the numbers in it.
    #[test]
    fn result_written_by_serde_reads_back_the_same(
        which in 0..FIXTURES.len(),
        count in any::<u64>(),
        watts in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
        label in any::<String>(),
    ) {
        let mut value = as_json(&read_text(fixture_text(FIXTURES[which]).as_bytes()).unwrap());
        value["started_at"] = label.into();
        if let Some(p) = value.get_mut("performance").filter(|p| p.is_object()) {
            p["samples_completed"] = count.into();
            p["throughput_samples_per_s"] = watts.into();
        }
        if let Some(p) = value.get_mut("power").filter(|p| p.is_object()) {
            if let Some(t) = p.get_mut("system_total").filter(|p| p.is_object()) {
                t["avg_watts"] = watts.into();
            }
        }
        // Through the typed value, as a run writes it.
        let typed = read_text(&serde_json::to_vec(&value).unwrap()).unwrap();
        let written = serde_json::to_string_pretty(&as_json(&typed)).unwrap();
        let back = read_text(written.as_bytes()).unwrap();
        prop_assert_eq!(as_json(&back), as_json(&typed));
        prop_assert_eq!(back.started_at(), value["started_at"].as_str().unwrap());
        if let Some(p) = back.performance() {
            prop_assert_eq!(p.samples_completed, count);
            prop_assert_eq!(p.throughput_samples_per_s, watts);
        }
    }

    /// `joulebench accuracy` writing its score into a damaged result.json:
    /// an error naming the file (which is left as it was), or a result that
    /// is still JSON; never a panic.
    #[test]
    fn score_into_a_damaged_result_never_panics(
        edits in mutations(0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = fixture_text("run-offline").replacen(
            "\"accuracy\": null",
            "\"accuracy\": {\n    \"samples_issued\": 3,\n    \"samples_logged\": 3,\n    \"complete\": true\n  }",
            1,
        );
        let mut bytes = mutate(&text, &edits);
        bytes.truncate(cut.index(bytes.len() + 1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        std::fs::write(&path, &bytes).unwrap();
        let scores = dir.path().join("accuracy.json");
        match record_score(dir.path(), &scores, serde_json::json!({"acc": 0.5})) {
            Ok(Recorded::InResult(p)) => {
                let after = std::fs::read_to_string(&p).unwrap();
                let v: serde_json::Value = serde_json::from_str(&after).unwrap();
                prop_assert_eq!(&v["accuracy"]["score"]["acc"], &serde_json::json!(0.5));
            }
            Ok(Recorded::NotAnAccuracyRun(_)) => {
                prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
            }
            Ok(Recorded::NoResult) => prop_assert!(false, "the result is there"),
            Err(e) => {
                prop_assert!(e.to_string().contains(&path.display().to_string()), "{}", e);
                prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
            }
        }
    }

    /// Phase marks from a user's FIFO: any lines at any times, any command
    /// window. Spans stay inside the window, in order, with valid names;
    /// every ignored line comes back as a problem naming the mark.
    #[test]
    fn phase_marks_of_any_text_give_spans_inside_the_window(
        marks in proptest::collection::vec(
            (any::<u64>(), prop_oneof![
                Just("end".to_string()),
                Just("-".to_string()),
                Just("".to_string()),
                Just("train\r".to_string()),
                "[a-z]{1,8}",
                any::<String>(),
                "[a-z]{60,70}",
            ]).prop_map(|(t_ns, line)| Mark { t_ns, line }),
            0..40,
        ),
        begin_ns in any::<u64>(),
        end_ns in any::<u64>(),
    ) {
        let (got, problems) = spans(&marks, begin_ns, end_ns);
        let hi = end_ns.max(begin_ns);
        let named = marks.iter().filter(|m| !m.line.trim().is_empty()).count();
        prop_assert!(got.len() + problems.len() <= named);
        for span in &got {
            prop_assert!(begin_ns <= span.begin_ns && span.begin_ns <= hi, "{:?}", span);
            prop_assert!(begin_ns <= span.end_ns && span.end_ns <= hi, "{:?}", span);
            prop_assert!(!span.name.is_empty());
            prop_assert!(span.name.chars().count() <= MAX_NAME_CHARS);
            prop_assert!(!span.name.chars().any(char::is_control));
            prop_assert!(span.name != "end" && span.name != "-");
        }
        for p in &problems {
            prop_assert!(p.starts_with("mark at "), "{}", p);
        }
    }
}

/// A mark of about 1 MB: ignored as a problem, quickly, with a short quote.
#[test]
fn a_megabyte_mark_is_a_short_problem() {
    let marks = [Mark {
        t_ns: 5,
        line: "x".repeat(1 << 20),
    }];
    let (got, problems) = spans(&marks, 0, 10);
    assert!(got.is_empty());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].len() < 200, "{}", problems[0]);
}

/// A result.json of one 1 MB line: an error naming file, line and column.
#[test]
fn a_megabyte_line_result_is_an_error_naming_file_and_line() {
    let mut text = fixture_text("run-offline");
    text.insert_str(1, &format!("\"x\": \"{}", "y".repeat(1 << 20)));
    assert!(read_text(text.as_bytes()).is_none());
}

/// Regression (found by the round-trip property): without serde_json's
/// `float_roundtrip`, a written f64 could read back one bit off.
#[test]
fn a_tiny_float_reads_back_exactly() {
    let mut value = as_json(&read_text(fixture_text("run-offline").as_bytes()).unwrap());
    let watts = 3.510288388992774e-279;
    value["performance"]["throughput_samples_per_s"] = watts.into();
    let back = read_text(&serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    assert_eq!(back.performance().unwrap().throughput_samples_per_s, watts);
}

/// Regression (found by the line mutations): a result that is JSON but lacks
/// a field was reported as "missing field `scope`" with no place; it was
/// read into a `serde_json::Value` first, which forgets lines.
#[test]
fn a_missing_field_names_file_line_and_column() {
    let text = fixture_text("measure-phases");
    let without: Vec<&str> = text.lines().filter(|l| !l.contains("\"scope\"")).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result.json");
    std::fs::write(&path, without.join("\n")).unwrap();
    let e = read_any(&path).unwrap_err().to_string();
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(e.contains("missing field `scope` at line "), "{e}");
}

/// Regression (found by the damaged run folders): a power log out of time
/// order (or with negative watts) put points outside the chart's range and
/// plotters' pixel arithmetic overflowed: the HTML report panicked.
#[test]
fn a_power_log_out_of_order_or_negative_still_renders() {
    let dir = copy_of("run-offline");
    let log = dir.path().join("power/estimate-cpu.csv");
    let text = std::fs::read_to_string(&log).unwrap();
    for damaged in [
        text.replacen("50482879,", "6266360226457205,", 1),
        text.replacen("50482879,10.289383811275327", "50482879,-1e300", 1),
    ] {
        std::fs::write(&log, damaged).unwrap();
        let run = load(dir.path()).unwrap();
        let page = report::page::run::page(&run);
        let html = Format::Html.renderer().render(&page);
        assert!(html.contains("<svg"), "the chart is still drawn");
    }
}

/// Found by `damaged_run_folder_loads_or_names_the_problem_and_renders`: a
/// percentile latency of -23584872286901838 ns made plotters overflow while
/// drawing the latency chart. The page renders; the table keeps the number.
#[test]
fn a_far_negative_latency_still_renders() {
    let dir = copy_of("run-offline");
    let result = dir.path().join("result.json");
    let text = std::fs::read_to_string(&result).unwrap();
    assert!(text.contains("\"latency_ns\": 2137101947"));
    let damaged = text.replacen("2137101947", "-23584872286901838", 1);
    std::fs::write(&result, damaged).unwrap();
    let run = load(dir.path()).unwrap();
    let page = report::page::run::page(&run);
    for format in [Format::Markdown, Format::Html] {
        let _ = format.renderer().render(&page);
    }
}
