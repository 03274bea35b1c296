//! `joulebench report RUN_DIR`: one self-contained HTML file (or Markdown on
//! stdout) from a run folder. The pages and formats live in `report`; this
//! reads the folder, picks the format and writes the file.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use report::format::Format;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One HTML file with charts (default: RUN_DIR/report.html).
    Html,
    /// The tables as Markdown, on stdout (or --output).
    Md,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Html => Format::Html,
            FormatArg::Md => Format::Markdown,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A folder written by `joulebench run`, `measure` or `merge`.
    #[arg(value_name = "RUN_DIR")]
    dir: PathBuf,

    #[arg(long, value_enum, default_value = "html")]
    format: FormatArg,

    /// The file to write (HTML default: RUN_DIR/report.html; Markdown default: stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let run = report::run_dir::load(&args.dir)?;
    for p in &run.problems {
        eprintln!("joulebench report: warning: {p} (the report is made without it)");
    }
    let doc = report::page::run::page(&run);
    let renderer = Format::from(args.format).renderer();
    let text = renderer.render(&doc);
    let target = match (args.output, args.format) {
        (Some(o), _) => Some(o),
        (None, FormatArg::Html) => Some(args.dir.join(format!("report.{}", renderer.extension()))),
        (None, FormatArg::Md) => None,
    };
    match target {
        Some(path) => {
            atomic_file::write(&path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("report: {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
