//! `joulebench compare RUN_DIR...`: runs side by side (the table and charts
//! are built in `report::page::compare`).
//!
//! A run folder that cannot be read (missing, corrupt, or a schema version
//! this joulebench does not read) is left out with a message naming it and
//! why; the others are still compared, and the exit status is 1.

use crate::report_cmd::FormatArg;
use anyhow::{bail, Context, Result};
use clap::Args;
use report::format::{Format, Markdown, Renderer};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run folders; ratios are to the first.
    #[arg(required = true, value_name = "RUN_DIR")]
    dirs: Vec<PathBuf>,

    /// html: the table on stdout and an HTML page with charts in --output; md: Markdown on stdout.
    #[arg(long, value_enum, default_value = "html")]
    format: FormatArg,

    /// The HTML file to write.
    #[arg(long, short, default_value = "joulebench-compare.html")]
    output: PathBuf,
}

pub fn run(args: CompareArgs) -> Result<ExitCode> {
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for d in &args.dirs {
        match report::run_dir::load(d) {
            Ok(r) => {
                for p in &r.problems {
                    eprintln!("joulebench compare: warning: {p}");
                }
                runs.push(r);
            }
            Err(e) => {
                let msg = format!("left out {}: {e}", d.display());
                eprintln!("joulebench compare: {msg}");
                skipped.push(msg);
            }
        }
    }
    if runs.is_empty() {
        bail!("no run could be read; nothing to compare");
    }
    let doc = report::page::compare::page(&runs, &skipped);
    match args.format {
        FormatArg::Md => print!("{}", Markdown.render(&doc)),
        FormatArg::Html => {
            let rows: Vec<_> = runs.iter().map(report::page::compare::row).collect();
            let table = report::page::compare::table(&rows);
            let only_table = report::document::Document {
                title: doc.title.clone(),
                subtitle: doc.subtitle.clone(),
                sections: vec![report::document::Section {
                    heading: "Runs".into(),
                    blocks: vec![report::document::Block::Table(table)],
                }],
            };
            print!("{}", Markdown.render(&only_table));
            let html = Format::Html.renderer().render(&doc);
            atomic_file::write(&args.output, html.as_bytes())
                .with_context(|| format!("writing {}", args.output.display()))?;
            eprintln!("comparison: {}", args.output.display());
        }
    }
    Ok(if skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
