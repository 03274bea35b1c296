//! Lists the NVIDIA GPUs NVML sees and reads each NVML meter 20 times at
//! 100 Hz, printing the values and how often they changed, so the update
//! period of each series can be checked on real hardware.
//!
//! Run on a GPU machine: `cargo run -p power --example nvml_probe`
//! (optionally with a library path: `-- /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1`).

use power::meter::nvml::{list_gpus, probe, probe_library};
use power::meter::{Probe, Reading};
use std::time::{Duration, Instant};

const READS: usize = 20;
const PERIOD: Duration = Duration::from_millis(10);

fn main() {
    let library = std::env::args_os().nth(1);
    if library.is_none() {
        match list_gpus() {
            Ok(gpus) => {
                for g in gpus {
                    println!("gpu{}: {} {}", g.index, g.name, g.uuid);
                }
            }
            Err(e) => println!("list_gpus: {e}"),
        }
    }
    let probes = match &library {
        Some(path) => probe_library(path),
        None => probe(),
    };
    for p in probes {
        match p {
            Probe::Unusable {
                source,
                domain,
                error,
            } => println!("unusable {source} {domain}: {error}"),
            Probe::Usable(mut meter) => {
                let info = meter.info().clone();
                println!(
                    "\n{} (domain {}, {:?}, resolution {}, nominal update {:?}, contains {:?})",
                    info.id,
                    info.domain,
                    info.kind,
                    info.resolution,
                    info.update_period,
                    info.contains
                );
                let start = Instant::now();
                let mut last: Option<Reading> = None;
                let mut changes: Vec<Duration> = Vec::new();
                for i in 0..READS {
                    let due = start + PERIOD * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t = start.elapsed();
                    match meter.read() {
                        Ok(r) => {
                            let text = match r {
                                Reading::Energy { counter_uj, .. } => format!("{counter_uj} uJ"),
                                Reading::Power { watts, .. } => format!("{watts:.3} W"),
                            };
                            if last.is_some_and(|l| l != r) {
                                changes.push(t);
                            }
                            last = Some(r);
                            println!("  t={:>7.2} ms  {text}", t.as_secs_f64() * 1e3);
                        }
                        Err(e) => println!("  t={:>7.2} ms  error: {e}", t.as_secs_f64() * 1e3),
                    }
                }
                let gaps: Vec<String> = changes
                    .windows(2)
                    .map(|w| format!("{:.1}", (w[1] - w[0]).as_secs_f64() * 1e3))
                    .collect();
                println!(
                    "  value changed {} times in {} reads; ms between changes: [{}]",
                    changes.len(),
                    READS,
                    gaps.join(", ")
                );
            }
        }
    }
}
