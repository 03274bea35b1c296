//! `joulebench sweep --concurrency 1,2,4,…`: one closed-loop run per
//! concurrency level into its own folder, then the Pareto table and chart
//! (system tokens/s against tokens/s per user, tokens/J at each point) as
//! `sweep.html`, `sweep.md` and `sweep.json` beside them.

use crate::run::{run_point, RunArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use report::format::Format;
use report::page::sweep::{self, SweepPoint};
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.long("sleep-concurrency")))]
#[command(after_long_help = "\
Each level N is `joulebench run --scenario single-stream --streams N` with the other flags as \
given: N requests always in flight (MLPerf Endpoints' load pattern), for --duration seconds. \
Levels run in the order given; Ctrl-C ends the sweep after writing what was measured.

OUTPUT (in --output): c<N>/ per level (LoadGen's logs and result.json), sweep.html (the Pareto \
chart and table), sweep.md (the table) and sweep.json (each level's serving record).

EXAMPLE:
  joulebench sweep --concurrency 1,2,4,8 --workload openai --endpoint http://127.0.0.1:8080 \\
      --model gemma --max-tokens 128 --ignore-eos --duration 60 --power auto -o sweep-gemma")]
pub struct SweepArgs {
    /// Concurrency levels: requests always in flight, e.g. 1,2,4,8,16.
    #[arg(
        id = "levels",
        long = "concurrency",
        value_delimiter = ',',
        required = true,
        value_name = "N,N,…"
    )]
    concurrency: Vec<u64>,

    /// The run's own flags; the sleep SUT's --concurrency is --sleep-concurrency here.
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(args: SweepArgs) -> Result<ExitCode> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency: every level must be at least 1");
    }
    let parent = match args.run.output() {
        Some(dir) => dir.to_path_buf(),
        None => harness::output::default_folder(&chrono::Local::now(), &["sweep"]),
    };
    let interrupt = harness::Interrupt::on_signals("the logs");
    let mut points = Vec::new();
    let mut exit = 0u8;
    for &level in &args.concurrency {
        let dir = parent.join(format!("c{level}"));
        eprintln!("sweep: concurrency {level} → {}", dir.display());
        let outcome = run_point(args.run.sweep_point(level, dir))
            .with_context(|| format!("the run at concurrency {level}"))?;
        exit = exit.max(outcome.exit_code.min(1));
        let stop = match outcome.exit_code {
            130 => Some("interrupted"),
            2 => Some("the run could not be measured"),
            _ => None,
        };
        points.push(SweepPoint {
            concurrency: level,
            dir: format!("c{level}"),
            result: outcome.result,
        });
        if let Some(why) = stop.or(interrupt.is_set().then_some("interrupted")) {
            eprintln!("sweep: stopped after concurrency {level}: {why}");
            exit = if why == "interrupted" { 130 } else { 2 };
            break;
        }
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let doc = sweep::page(&points, &command);
    let (table, _) = sweep::table(&points);
    let markdown = Format::Markdown
        .renderer()
        .render(&report::document::Document {
            title: doc.title.clone(),
            subtitle: doc.subtitle.clone(),
            sections: vec![report::document::Section {
                heading: "Pareto curve".into(),
                blocks: vec![report::document::Block::Table(table)],
            }],
        });
    let html = Format::Html.renderer().render(&doc);
    let records: Vec<serde_json::Value> = points
        .iter()
        .map(|p| {
            serde_json::json!({
                "concurrency": p.concurrency,
                "dir": p.dir,
                "valid": p.result.performance.as_ref().map(|x| x.valid),
                "serving": p.result.serving,
            })
        })
        .collect();
    for (name, bytes) in [
        ("sweep.html", html.into_bytes()),
        ("sweep.md", markdown.clone().into_bytes()),
        (
            "sweep.json",
            serde_json::to_vec_pretty(
                &serde_json::json!({ "command": command, "points": records }),
            )?,
        ),
    ] {
        let path = parent.join(name);
        atomic_file::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("\n{markdown}");
    println!("sweep: {}", parent.join("sweep.html").display());
    Ok(ExitCode::from(exit))
}
