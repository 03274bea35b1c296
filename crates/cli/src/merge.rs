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

/// The node folders under `dir`: itself when it holds a node's result, else
/// its subfolders that hold one (a merged result in `dir` is not a node).
fn node_dirs(dir: &Path) -> Result<(Vec<PathBuf>, bool)> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let own = dir.join(schema::RESULT_FILE);
    if own.exists() {
        let merged_here = matches!(
            schema::read_any(&own),
            Ok(AnyResult::Command(ref c)) if !c.nodes.is_empty()
        );
        if !merged_here {
            return Ok((vec![dir.to_path_buf()], false));
        }
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join(schema::RESULT_FILE).exists())
        .collect();
    subs.sort();
    if subs.is_empty() {
        bail!(
            "{}: no result.json in it or in its subfolders (give the --output folder of \
             `joulebench measure`)",
            dir.display()
        );
    }
    Ok((subs, true))
}

pub fn run(args: MergeArgs) -> Result<ExitCode> {
    let mut dirs = Vec::new();
    let mut parent_out = None;
    for d in &args.dirs {
        let (found, is_parent) = node_dirs(d)?;
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
        eprint!("{}", node_lines(&result));
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

fn node_lines(r: &report::schema::CommandResult) -> String {
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
