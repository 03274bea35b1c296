//! `joulebench power list` and `joulebench power watch`: what meters this
//! machine has (and, for each one that is not usable, why and what to do),
//! and their live readings.

use crate::meters::PowerArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use power::discover;
use power::energy::{self, Window};
use power::log::Sample;
use power::sampler::{Sampler, SamplerConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum PowerCommand {
    /// Every meter found on this machine; for each one not usable, why and what to do.
    List(ListArgs),
    /// Live readings in the terminal; with --output, the power logs and energy per meter.
    Watch(WatchArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    power: PowerArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    power: PowerArgs,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// How often the display refreshes.
    #[arg(long, default_value = "1s", value_parser = crate::run::parse_duration)]
    refresh: Duration,
    /// Keep the power logs (power/<meter>.csv) and watch.json here.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(cmd: PowerCommand) -> Result<ExitCode> {
    match cmd {
        PowerCommand::List(args) => list(args),
        PowerCommand::Watch(args) => watch(args),
    }
}

fn list(args: ListArgs) -> Result<ExitCode> {
    let probes = args.power.options().probe_all()?;
    let lines = discover::describe(&probes);
    if args.json {
        for l in &lines {
            println!(
                "{}",
                serde_json::json!({"id": l.id, "source": l.source, "domain": l.domain, "usable": l.usable, "status": l.status})
            );
        }
    } else {
        println!("{:<28} {:<9} {:<14} status", "meter", "source", "domain");
        for l in &lines {
            println!("{:<28} {:<9} {:<14} {}", l.id, l.source, l.domain, l.status);
        }
        let usable = lines.iter().filter(|l| l.usable).count();
        println!("\n{usable} usable meter(s). `--power auto` uses the usable local ones (NVML, RAPL, hwmon).");
        println!("System total rule:\n{}", energy::TOTAL_RULE);
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(args: WatchArgs) -> Result<ExitCode> {
    let selection = args.power.select()?;
    if selection.meters.is_empty() {
        bail!("no usable meter to watch (`joulebench power list` says why; --power estimate --tdp W for an estimate)");
    }
    let (dir, _tmp) = match &args.output {
        Some(dir) => (dir.clone(), None),
        None => {
            // A private folder for logs nobody asked to keep, removed afterwards.
            let tmp = tempfile::Builder::new()
                .prefix("joulebench-watch-")
                .tempdir()
                .context("creating a folder for the watch's logs")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let stop = harness::Interrupt::on_signals("the watch");
    let anchor = Instant::now();
    let plans = args.power.options().plans(selection.meters);
    let sampler = Sampler::start(&SamplerConfig::for_run(&dir, anchor), plans)
        .context("starting the power sampler")?;
    let deadline = args
        .duration
        .map(|s| anchor + Duration::from_secs_f64(s.max(0.0)));
    let mut previous: HashMap<String, Sample> = HashMap::new();
    let stdout = std::io::stdout();
    while !stop.is_set() && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(args.refresh.min(deadline.map_or(args.refresh, |d| {
            d.saturating_duration_since(Instant::now())
        })));
        let mut line = format!("{:>8.1} s", anchor.elapsed().as_secs_f64());
        for (info, latest) in sampler.latest() {
            let watts = latest.and_then(|s| {
                let w = power::running::live_watts(previous.get(&info.id), &s);
                previous.insert(info.id.clone(), s);
                w
            });
            match watts {
                Some(w) => line += &format!("  {} {w:.1} W", info.id),
                None => line += &format!("  {} -", info.id),
            }
        }
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}");
    }
    let end_ns = sampler.now_ns();
    let report = sampler.stop();
    let window = Window::new(0, end_ns.max(1))?;
    let energies = report.energy(window)?;
    println!(
        "\n{:<28} {:>10} {:>14} {:>8}",
        "meter", "avg W", "energy J", "samples"
    );
    for (e, run) in energies.iter().zip(&report.meters) {
        println!(
            "{:<28} {:>10.2} {:>14.3} {:>8}",
            e.meter_id,
            e.avg_w,
            e.energy_j,
            run.samples.len()
        );
    }
    let total = energy::system_total(&energies);
    for (label, part) in [
        ("measured total", &total.measured),
        ("estimated total", &total.estimated),
    ] {
        if let Some(p) = part {
            println!(
                "{label:<28} {:>10.2} {:>14.3}  ({})",
                p.avg_w,
                p.energy_j,
                p.meter_ids.join(" + ")
            );
        }
    }
    if args.output.is_some() {
        let json = serde_json::json!({ "window_s": window.duration_s(), "meters": energies, "total": total });
        atomic_file::write(&dir.join("watch.json"), &serde_json::to_vec_pretty(&json)?)?;
        println!("logs: {}", dir.join("power").display());
    }
    Ok(ExitCode::SUCCESS)
}
