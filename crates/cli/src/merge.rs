//! `joulebench merge DIR...`: per-node `measure` results summed into one
//! (the rules are in `report::merge`).
//!
//! Each DIR is a node's result folder, or a folder holding one folder per node
//! (what `srun joulebench measure -o DIR` writes). A node result that cannot
//! be read is left out with a message naming it, the rest is merged and
//! written, and the exit status is 1 so a script notices.

use anyhow::{bail, Context, Result};
use clap::Args;
use report::merge::{merge, NodeInput};
use report::schema::{self, AnyResult};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Node result folders, or folders of them (e.g. the --output of `srun joulebench measure`).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,

    /// Where to write the merged result.json. Default: the one DIR given, when it holds node folders.
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// Print the merged result as one JSON object on stdout.
    #[arg(long)]
    json: bool,

    /// No summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: MergeArgs) -> Result<ExitCode> {
    let mut dirs = Vec::new();
    let mut parent_out = None;
    for d in &args.dirs {
        let (found, is_parent) = report::merge::node_dirs(d)?;
        if is_parent && args.dirs.len() == 1 {
            parent_out = Some(d.clone());
        }
        dirs.extend(found);
    }
    let out = match (&args.output, parent_out) {
        (Some(o), _) => o.clone(),
        (None, Some(p)) => p,
        (None, None) => bail!("where should the merged result go? give --output DIR"),
    };

    let mut inputs = Vec::new();
    let mut skipped = 0;
    for d in &dirs {
        let path = d.join(schema::RESULT_FILE);
        match schema::read_any(&path) {
            Ok(AnyResult::Command(c)) => inputs.push(NodeInput {
                dir: d.display().to_string(),
                result: *c,
            }),
            Ok(AnyResult::Inference(_)) => {
                eprintln!(
                    "joulebench merge: {}: an inference run, not a measured command; left out",
                    path.display()
                );
                skipped += 1;
            }
            Err(e) => {
                eprintln!("joulebench merge: {e}; left out");
                skipped += 1;
            }
        }
    }
    if inputs.is_empty() {
        bail!("no node result could be read; nothing merged");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out_abs = std::fs::canonicalize(&out).unwrap_or_else(|_| out.clone());
    let log_path = |node_dir: &str, file: &str| {
        let node = std::fs::canonicalize(node_dir).unwrap_or_else(|_| PathBuf::from(node_dir));
        let full = node.join(file);
        full.strip_prefix(&out_abs)
            .map(Path::to_path_buf)
            .unwrap_or(full)
            .display()
            .to_string()
    };
    let merged = merge(
        inputs,
        std::env::args().collect(),
        env!("CARGO_PKG_VERSION"),
        &log_path,
    )?;
    for w in &merged.warnings {
        eprintln!("joulebench merge: warning: {w}");
    }
    let mut result = merged.result;
    result.files = vec![schema::RESULT_FILE.to_string()];
    let json = serde_json::to_string_pretty(&result).context("serialising result.json")?;
    let path = out.join(schema::RESULT_FILE);
    atomic_file::write(&path, json.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    if !args.quiet {
        eprint!("{}", report::text::merged_nodes(&result));
        eprint!(
            "{}",
            report::text::command_summary(&result, &out.display().to_string())
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&result).context("serialising the JSON summary")?
        );
    }
    Ok(if skipped > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
