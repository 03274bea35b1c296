//! Sampler cost and the highest rate each local meter kind sustains.
//!
//! Not a test: it prints two tables and never fails on timing.
//!
//! 1. Per meter kind (fake RAPL tree, fake hwmon, replay trace, estimate over
//!    a copy of this machine's /proc/stat): the cost of one bare `read()` in
//!    a tight loop (the peer), and the highest rate on a ladder at which the
//!    sampler delivers at least 95 % of the requested samples.
//! 2. The sampler's CPU cost per sample (process CPU time from getrusage over
//!    samples taken) at 100 Hz and 1 kHz on fake RAPL, against the bare read
//!    of the same meter: the ratio is the sampler's overhead (stamping,
//!    CSV, waiting).
//!
//! Run: `cargo bench -p power --bench sampler`.

use power::meter::estimate::{EstimateConfig, EstimateMeter};
use power::meter::replay::ReplayMeter;
use power::meter::{Meter, Probe, Scope};
use power::sampler::{MeterPlan, Sampler, SamplerConfig};
use std::path::Path;
use std::time::{Duration, Instant};

const LADDER_HZ: [f64; 7] = [100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0];
const STEP: Duration = Duration::from_millis(500);

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn first_usable(probes: Vec<Probe>) -> Box<dyn Meter> {
    for p in probes {
        match p {
            Probe::Usable(m) => return m,
            Probe::Unusable { error, .. } => eprintln!("skipping: {error}"),
        }
    }
    panic!("no usable meter in the fake tree");
}

/// Builds a fresh meter of one kind over files under `root`.
fn make(kind: &str, root: &Path) -> Box<dyn Meter> {
    match kind {
        "rapl" => first_usable(power::meter::rapl::probe(&root.join("sys"))),
        "hwmon" => first_usable(power::meter::hwmon::probe(&root.join("sys"))),
        "replay" => {
            Box::new(ReplayMeter::open(&root.join("trace.csv"), Scope::Node).expect("replay trace"))
        }
        "estimate" => Box::new(
            EstimateMeter::open(&root.join("proc"), EstimateConfig::new(100.0)).expect("estimate"),
        ),
        other => panic!("unknown kind {other}"),
    }
}

fn build_tree(root: &Path) -> std::io::Result<()> {
    let zone = root.join("sys/class/powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone)?;
    std::fs::write(zone.join("name"), "package-0\n")?;
    std::fs::write(zone.join("energy_uj"), "123456789012\n")?;
    std::fs::write(zone.join("max_energy_range_uj"), "262143328850\n")?;
    let hw = root.join("sys/class/hwmon/hwmon0");
    std::fs::create_dir_all(&hw)?;
    std::fs::write(hw.join("name"), "power_meter\n")?;
    std::fs::write(hw.join("power1_average"), "245500000\n")?;
    let mut trace = String::from("t_s,watts\n");
    for i in 0..=36_000 {
        trace.push_str(&format!("{},{}\n", i as f64 * 0.1, 100.0 + (i % 7) as f64));
    }
    std::fs::write(root.join("trace.csv"), trace)?;
    std::fs::create_dir_all(root.join("proc"))?;
    let stat = std::fs::read_to_string("/proc/stat")
        .unwrap_or_else(|_| "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0 0 0\n".into());
    std::fs::write(root.join("proc/stat"), stat)
}

/// Mean wall time of one bare read over `dur`.
fn bare_read_cost(meter: &mut dyn Meter, dur: Duration) -> (Duration, u64) {
    let t = Instant::now();
    let mut n = 0u64;
    let mut errors = 0u64;
    while t.elapsed() < dur {
        if meter.read().is_err() {
            errors += 1;
        }
        n += 1;
    }
    if errors > 0 {
        eprintln!("{}: {errors} read errors", meter.info().id);
    }
    (t.elapsed() / n.max(1) as u32, n)
}

struct Run {
    samples: usize,
    wall: Duration,
    cpu: Duration,
    errors: u64,
}

fn sample_for(meter: Box<dyn Meter>, rate_hz: f64, dur: Duration, log_dir: &Path) -> Run {
    let config = SamplerConfig {
        log_dir: log_dir.to_path_buf(),
        ..SamplerConfig::for_run(log_dir, Instant::now())
    };
    let cpu0 = cpu_time();
    let t = Instant::now();
    let sampler =
        Sampler::start(&config, vec![MeterPlan::with_rate(meter, rate_hz)]).expect("sampler start");
    std::thread::sleep(dur);
    let report = sampler.stop();
    let wall = t.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let m = &report.meters[0];
    Run {
        samples: m.samples.len(),
        wall,
        cpu,
        errors: m.faults.read_errors,
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    build_tree(dir.path()).expect("fake tree");
    let logs = dir.path().join("logs");

    println!("joulebench power sampler bench ({} CPUs)", num_cpus());
    println!();
    println!(
        "Highest sustained rate per meter kind (>= 95 % of requested samples, {STEP:?} per step)"
    );
    println!(
        "{:<10} {:>14} {:>16} {:>16} {:>14}",
        "meter", "bare read", "bare reads/s", "max sampler Hz", "achieved Hz"
    );
    for kind in ["rapl", "hwmon", "replay", "estimate"] {
        let mut m = make(kind, dir.path());
        let (cost, _) = bare_read_cost(m.as_mut(), Duration::from_millis(300));
        let mut best: Option<(f64, f64)> = None;
        for &hz in &LADDER_HZ {
            let run = sample_for(make(kind, dir.path()), hz, STEP, &logs);
            let achieved = run.samples as f64 / run.wall.as_secs_f64();
            if achieved >= 0.95 * hz && run.errors == 0 {
                best = Some((hz, achieved));
            } else {
                break;
            }
        }
        let (max_hz, achieved) = match best {
            Some((h, a)) => (format!("{h:.0}"), format!("{a:.0}")),
            None => ("< 100".into(), "-".into()),
        };
        println!(
            "{:<10} {:>11.2} us {:>16.0} {:>16} {:>14}",
            kind,
            cost.as_secs_f64() * 1e6,
            1.0 / cost.as_secs_f64(),
            max_hz,
            achieved
        );
    }

    println!();
    println!("Sampler CPU cost per sample, fake RAPL (process CPU time / samples), vs a bare read");
    let mut m = make("rapl", dir.path());
    let (bare, _) = bare_read_cost(m.as_mut(), Duration::from_millis(500));
    println!(
        "{:<10} {:>9} {:>10} {:>16} {:>12} {:>18}",
        "rate Hz", "samples", "CPU %", "CPU us/sample", "bare read us", "ratio sampler/bare"
    );
    let mut runs = Vec::new();
    for hz in [10.0, 100.0, 1_000.0] {
        let run = sample_for(make("rapl", dir.path()), hz, Duration::from_secs(2), &logs);
        let per = run.cpu.as_secs_f64() / run.samples.max(1) as f64;
        println!(
            "{:<10.0} {:>9} {:>9.2}% {:>16.2} {:>12.2} {:>17.2}x",
            hz,
            run.samples,
            100.0 * run.cpu.as_secs_f64() / run.wall.as_secs_f64(),
            per * 1e6,
            bare.as_secs_f64() * 1e6,
            per / bare.as_secs_f64()
        );
        runs.push(run);
    }
    // The per-sample figures above include the fixed cost of starting and
    // stopping a thread and creating its log; the difference between the
    // 1 kHz and 100 Hz runs is the cost of one more sample.
    let (a, b) = (&runs[1], &runs[2]);
    let extra = b.samples.saturating_sub(a.samples).max(1) as f64;
    let marginal = b.cpu.saturating_sub(a.cpu).as_secs_f64() / extra;
    println!(
        "marginal CPU per sample (1 kHz run minus 100 Hz run): {:.2} us = {:.2}x a bare read",
        marginal * 1e6,
        marginal / bare.as_secs_f64()
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
