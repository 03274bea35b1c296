//! `joulebench accuracy`: scores a run's `mlperf_log_accuracy.json` the way
//! MLPerf's reference scripts do, prints their line, and writes the scores
//! to `accuracy.json` beside the log (and into `result.json`'s `accuracy`
//! record when the run directory has one).
//!
//! - `--kind top1 --labels val_map.txt`: classification (`accuracy-imagenet.py`);
//!   the response is the class as float32 (joulebench's classifier, MLPerf's
//!   default), or `--dtype int32|int64`.
//! - `--kind squad --references FILE`: exact match and F1 with SQuAD v1.1's
//!   rules; the response is the answer as UTF-8, or token ids with
//!   `--tokenizer`.
//! - `--kind rouge --references FILE`: ROUGE-1/2/L/Lsum of generated text;
//!   token ids (`u32` LE) with `--tokenizer`, or UTF-8 with `--text-responses`.
//! - `--kind perplexity`: the response holds each token's negative
//!   log-likelihood (`f32` LE, nats).
//!
//! docs/accuracy.md describes the layouts and formats.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use workloads::datasets::accuracy_log::{read_accuracy_log, ACCURACY_LOG};
use workloads::datasets::generation::{score_perplexity, score_rouge};
use workloads::datasets::labels::read_val_map;
use workloads::datasets::references::{read_references, DetokenizeError, ResponseText};
use workloads::datasets::squad::score_squad;
use workloads::datasets::top1::{score_top1, ClassEncoding};
use workloads::datasets::AccuracyReport;

/// The file the scores are written to, beside the accuracy log.
const ACCURACY_FILE: &str = "accuracy.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Top-1 classification accuracy (needs --labels).
    Top1,
    /// SQuAD exact match and F1 (needs --references).
    Squad,
    /// ROUGE-1/2/L/Lsum of generated text (needs --references).
    Rouge,
    /// Perplexity from per-token negative log-likelihoods.
    Perplexity,
}

#[derive(Debug, Args)]
pub struct AccuracyArgs {
    /// A run directory (with mlperf_log_accuracy.json), or the accuracy log itself.
    #[arg(value_name = "RUN_DIR|LOG")]
    pub path: PathBuf,

    /// What to score.
    #[arg(long, value_enum)]
    pub kind: Kind,

    /// top1: the label file, ImageNet validation layout (`FILE LABEL` per line; line N is sample N).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// top1: how a response encodes the class: float32 (joulebench's classifier, MLPerf's
    /// default), int32 or int64.
    #[arg(long, default_value = "float32")]
    pub dtype: ClassEncoding,

    /// squad, rouge: the reference answers or texts, sample N being the N-th: SQuAD JSON, or
    /// JSON Lines / a JSON list with `answers`, `references` or `reference` (the text data set
    /// given to `run --dataset` is one).
    #[arg(long, value_name = "FILE")]
    pub references: Option<PathBuf>,

    /// squad, rouge: responses are generated token ids (u32 little endian), decoded with this
    /// tokenizer.json, special tokens skipped.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,

    /// rouge: responses are UTF-8 text (otherwise --tokenizer is needed).
    #[arg(long, conflicts_with = "tokenizer")]
    pub text_responses: bool,

    /// perplexity: samples in the data set, to report missing ones. Default: the highest
    /// sample logged + 1.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,

    /// Where to write the scores. Default: accuracy.json beside the log.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also list a few wrong answers (sample, expected, found).
    #[arg(long)]
    pub show_wrong: bool,
}

/// `accuracy.json`: the report and what was scored against what.
#[derive(Serialize)]
struct AccuracyFile<'a> {
    /// The accuracy log scored.
    log: String,
    /// Labels or references used (absent for perplexity).
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    /// How responses were read (e.g. `float32 class`, `token ids`).
    response_format: String,
    /// Every sample of the reference was scored.
    complete: bool,
    #[serde(flatten)]
    report: &'a AccuracyReport,
}

pub fn run(args: AccuracyArgs) -> Result<ExitCode> {
    let log = if args.path.is_dir() {
        args.path.join(ACCURACY_LOG)
    } else {
        args.path.clone()
    };
    if !log.is_file() {
        bail!(
            "{}: no accuracy log (run with --mode accuracy to write {ACCURACY_LOG})",
            log.display()
        );
    }
    let entries = read_accuracy_log(&log)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(
            workloads::text::tokens::TextTokenizer::from_file(path)
                .with_context(|| format!("--tokenizer {}", path.display()))?,
        ),
        None => None,
    };
    let decode = |ids: &[u32]| -> std::result::Result<String, DetokenizeError> {
        match &tokenizer {
            Some(t) => Ok(t.decode(ids)?),
            None => Err("no tokenizer".into()),
        }
    };
    let text_format = || match &args.tokenizer {
        Some(path) => (
            ResponseText::TokenIds(&decode),
            format!("token ids (u32 LE), decoded with {}", path.display()),
        ),
        None => (ResponseText::Utf8, "UTF-8 text".to_string()),
    };
    let kind = args
        .kind
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string());
    let needs = |option: &Option<PathBuf>, flag: &str, what: &str| -> Result<PathBuf> {
        option
            .clone()
            .with_context(|| format!("--kind {kind} needs {flag} ({what})"))
    };
    let (report, reference, response_format) = match args.kind {
        Kind::Top1 => {
            let labels = needs(&args.labels, "--labels", "val_map.txt")?;
            let report = score_top1(&entries, &read_val_map(&labels)?, &labels, args.dtype)?;
            let format = format!("{:?} class (little endian)", args.dtype).to_lowercase();
            (report, Some(labels), format)
        }
        Kind::Squad => {
            let references = needs(&args.references, "--references", "the reference answers")?;
            let (how, format) = text_format();
            let report = score_squad(&entries, &read_references(&references)?, &references, &how)?;
            (report, Some(references), format)
        }
        Kind::Rouge => {
            let references = needs(&args.references, "--references", "the reference texts")?;
            if args.tokenizer.is_none() && !args.text_responses {
                bail!(
                    "--kind rouge: say how responses are encoded: --tokenizer FILE (token ids, \
                     what joulebench's generating models write) or --text-responses (UTF-8)"
                );
            }
            let (how, format) = text_format();
            let report = score_rouge(&entries, &read_references(&references)?, &references, &how)?;
            (report, Some(references), format)
        }
        Kind::Perplexity => {
            let report = score_perplexity(&entries, args.samples, &log)?;
            let format = "per-token negative log-likelihood (f32 LE, nats)".to_string();
            (report, None, format)
        }
    };

    print_report(&report, args.show_wrong);

    let output = args.output.clone().unwrap_or_else(|| {
        log.parent()
            .unwrap_or_else(|| Path::new("."))
            .join(ACCURACY_FILE)
    });
    let file = AccuracyFile {
        log: log.display().to_string(),
        reference: reference.map(|p| p.display().to_string()),
        response_format,
        complete: report.coverage.complete(),
        report: &report,
    };
    let json = serde_json::to_value(&file).context("serialising the scores")?;
    let text = serde_json::to_string_pretty(&json)? + "\n";
    atomic_file::write(&output, text.as_bytes())
        .with_context(|| format!("writing {}", output.display()))?;
    println!("scores written to {}", output.display());
    if let Some(dir) = log.parent() {
        use report::accuracy_record::{record_score, Recorded};
        match record_score(dir, &output, json)? {
            Recorded::InResult(path) => println!("score recorded in {}", path.display()),
            Recorded::NotAnAccuracyRun(path) => eprintln!(
                "note: {} has no accuracy record (not an accuracy run); the scores are only in {}",
                path.display(),
                output.display()
            ),
            Recorded::NoResult => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// MLPerf's line, then coverage and the metrics.
fn print_report(report: &AccuracyReport, show_wrong: bool) {
    println!("{}", report.mlperf_line);
    let c = &report.coverage;
    println!(
        "scored {} of {} samples ({} log entries, {} duplicates ignored)",
        c.scored_samples, c.dataset_samples, c.logged_entries, c.duplicate_entries
    );
    if c.missing_samples > 0 {
        let examples: Vec<String> = c.missing_examples.iter().map(|i| i.to_string()).collect();
        eprintln!(
            "warning: {} samples have no response in the log (first: {}); the accuracy run did \
             not cover the data set",
            c.missing_samples,
            examples.join(", ")
        );
    }
    if c.empty_responses > 0 {
        eprintln!(
            "warning: {} responses are empty (the system under test failed on them); scored as wrong",
            c.empty_responses
        );
    }
    for (name, value) in &report.metrics {
        println!("  {name}: {value}");
    }
    if show_wrong {
        for line in &report.mismatch_examples {
            println!("  wrong: {line}");
        }
    }
}
