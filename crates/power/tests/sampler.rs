//! The sampler over fake RAPL trees and replay traces.

mod common;

use common::FakeSys;
use power::energy::Window;
use power::log::read_log;
use power::meter::replay::ReplayMeter;
use power::meter::{Meter, Probe, Reading, Scope};
use power::sampler::{measure_idle, MeterPlan, Sampler, SamplerConfig, SamplerError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX: u64 = 262_143_328_850;

fn rapl_meters(f: &FakeSys) -> Vec<Box<dyn Meter>> {
    power::meter::rapl::probe(&f.sysfs())
        .into_iter()
        .map(|p| match p {
            Probe::Usable(m) => m,
            Probe::Unusable { error, .. } => panic!("fake zone unusable: {error}"),
        })
        .collect()
}

/// Drives a fake zone's counter at `watts` from `start` until `stop`.
fn drive_counter(
    f: &FakeSys,
    zone: &'static str,
    watts: f64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let dir = f.powercap().join(zone);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let uj = (start.elapsed().as_secs_f64() * watts * 1e6) as u64;
            let tmp = dir.join(".tmp");
            std::fs::write(&tmp, format!("{uj}\n")).unwrap();
            std::fs::rename(&tmp, dir.join("energy_uj")).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
    })
}

#[test]
fn rapl_at_100_hz_streams_a_csv_that_reads_back() {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 0, MAX);
    let anchor = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let driver = drive_counter(&f, "intel-rapl:0", 50.0, anchor, stop.clone());

    let run_dir = f.dir.path().join("run");
    let config = SamplerConfig::for_run(&run_dir, anchor);
    let plans = rapl_meters(&f)
        .into_iter()
        .map(|m| MeterPlan::with_rate(m, 100.0))
        .collect();
    let sampler = Sampler::start(&config, plans).unwrap();
    let begin_ns = sampler.now_ns();
    std::thread::sleep(Duration::from_millis(1500));
    let end_ns = sampler.now_ns();
    let report = sampler.stop();
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();

    let run = report.meter("rapl-package-0").unwrap();
    let n = run.samples.len();
    assert!(n >= 120, "only {n} samples in 1.5 s at 100 Hz");
    assert!(n <= 155, "{n} samples in 1.5 s at 100 Hz");
    assert!(run.samples.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    assert_eq!(run.faults.read_errors, 0, "{:?}", run.faults);
    assert!(run.faults.counter_resets.is_empty(), "{:?}", run.faults);
    assert!(
        run.samples[0].t_ns <= begin_ns,
        "start() returns after the first read"
    );
    assert!(
        run.samples[n - 1].t_ns >= end_ns,
        "stop() takes a closing read"
    );

    // The CSV holds exactly what came back in memory.
    assert_eq!(run.log_path, run_dir.join("power/rapl-package-0.csv"));
    let log = read_log(&run.log_path).unwrap();
    assert_eq!(log.samples, run.samples);
    assert!(!log.truncated_tail);

    // 50 W over the window, within the driver's and stamp's jitter.
    let e = run.energy(Window::new(begin_ns, end_ns).unwrap()).unwrap();
    let want = 50.0 * (end_ns - begin_ns) as f64 * 1e-9;
    assert!(
        (e.energy_j - want).abs() / want < 0.03,
        "{} J vs {want} J",
        e.energy_j
    );
    assert!((e.avg_w - 50.0).abs() < 1.5, "{} W", e.avg_w);
}

#[test]
fn a_meter_failing_mid_run_is_reported_while_the_others_go_on() {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 1_000, MAX);
    let doomed = f.rapl_zone("intel-rapl:1", "package-1", 1_000, MAX);
    let anchor = Instant::now();
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), anchor);
    let plans = rapl_meters(&f)
        .into_iter()
        .map(|m| MeterPlan::with_rate(m, 50.0))
        .collect();
    let sampler = Sampler::start(&config, plans).unwrap();
    let begin_ns = sampler.now_ns();
    std::thread::sleep(Duration::from_millis(300));
    // The device goes away (driver unloaded, socket offlined).
    std::fs::remove_file(doomed.join("energy_uj")).unwrap();
    let gone_ns = sampler.now_ns();
    std::thread::sleep(Duration::from_millis(500));
    let end_ns = sampler.now_ns();
    let report = sampler.stop();

    let ok = report.meter("rapl-package-0").unwrap();
    // Gaps can happen on a loaded machine; errors cannot.
    assert!(
        ok.faults.read_errors == 0 && ok.faults.counter_resets.is_empty(),
        "{:?}",
        ok.faults
    );
    assert!(ok.samples.len() >= 30, "{}", ok.samples.len());
    assert!(ok.samples.last().unwrap().t_ns >= end_ns);

    let bad = report.meter("rapl-package-1").unwrap();
    assert!(bad.faults.read_errors >= 15, "{:?}", bad.faults);
    let last = bad.faults.last_error.as_deref().unwrap();
    assert!(last.contains("intel-rapl:1/energy_uj"), "{last}");
    assert!(bad.faults.first_error_ns.unwrap() >= gone_ns.saturating_sub(30_000_000));
    assert!(bad.samples.last().unwrap().t_ns <= gone_ns + 30_000_000);

    let window = Window::new(begin_ns, end_ns).unwrap();
    assert!(ok.energy(window).unwrap().is_complete());
    let e = bad.energy(window).unwrap();
    assert!(!e.is_complete());
    assert!(
        e.completeness
            .reasons()
            .iter()
            .any(|r| r.contains("last sample")),
        "{:?}",
        e.completeness
    );
    assert!(e.coverage < 0.6, "{}", e.coverage);
}

#[test]
fn counter_going_backwards_and_a_gap_are_faults() {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 5_000_000, 1_000_000_000_000);
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), Instant::now());
    let plans = rapl_meters(&f)
        .into_iter()
        .map(|m| MeterPlan::with_rate(m, 100.0))
        .collect();
    let sampler = Sampler::start(&config, plans).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    f.set_energy("intel-rapl:0", 10); // a reset, not a wrap
    std::thread::sleep(Duration::from_millis(100));
    // Unreadable for 100 ms (> 3 periods of 10 ms): a gap.
    let energy = f.powercap().join("intel-rapl:0/energy_uj");
    std::fs::rename(&energy, energy.with_extension("away")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::rename(energy.with_extension("away"), &energy).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let report = sampler.stop();
    let run = &report.meters[0];
    assert_eq!(run.faults.counter_resets.len(), 1, "{:?}", run.faults);
    assert_eq!(run.faults.counter_resets[0].before_uj, 5_000_000);
    assert_eq!(run.faults.counter_resets[0].after_uj, 10);
    assert!(!run.faults.gaps.is_empty(), "{:?}", run.faults);
    let longest = run
        .faults
        .gaps
        .iter()
        .map(|g| g.duration_s())
        .fold(0.0, f64::max);
    assert!(longest >= 0.09, "{longest}");
}

#[test]
fn logs_are_flushed_while_running() {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 1, MAX);
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), Instant::now());
    let plans = rapl_meters(&f).into_iter().map(MeterPlan::new).collect();
    let sampler = Sampler::start(&config, plans).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    // Read while the sampler still runs, as after a crash.
    let path = config.log_dir.join("rapl-package-0.csv");
    let log = read_log(&path).unwrap();
    assert!(
        log.samples.len() >= 8,
        "{} rows on disk after 1.3 s at 10 Hz",
        log.samples.len()
    );
    let report = sampler.stop();
    assert!(report.meters[0].samples.len() >= log.samples.len());
}

#[test]
fn stop_is_prompt_even_at_a_slow_rate() {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 1, MAX);
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), Instant::now());
    let plans = rapl_meters(&f)
        .into_iter()
        .map(|m| MeterPlan::with_rate(m, 0.1))
        .collect();
    let sampler = Sampler::start(&config, plans).unwrap();
    let t = Instant::now();
    let report = sampler.stop();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(report.meters[0].samples.len(), 2); // the first and the closing read
}

#[test]
fn start_refuses_bad_plans_before_starting_anything() {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 1, MAX);
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), Instant::now());
    let twice: Vec<MeterPlan> = rapl_meters(&f)
        .into_iter()
        .chain(rapl_meters(&f))
        .map(MeterPlan::new)
        .collect();
    assert!(matches!(
        Sampler::start(&config, twice),
        Err(SamplerError::DuplicateId { id }) if id == "rapl-package-0"
    ));
    for rate in [0.0, -1.0, f64::NAN, 1e6] {
        let plans = rapl_meters(&f)
            .into_iter()
            .map(|m| MeterPlan::with_rate(m, rate))
            .collect();
        assert!(matches!(
            Sampler::start(&config, plans),
            Err(SamplerError::Rate { .. })
        ));
    }
    // A log directory that cannot be created.
    common::write(&f.dir.path().join("file"), "x");
    let bad = SamplerConfig::for_run(&f.dir.path().join("file"), Instant::now());
    let plans = rapl_meters(&f).into_iter().map(MeterPlan::new).collect();
    assert!(matches!(
        Sampler::start(&bad, plans),
        Err(SamplerError::LogDir { .. })
    ));
}

#[test]
fn idle_power_of_a_replayed_wall_trace() {
    let f = FakeSys::new();
    let trace = f.dir.path().join("wall.csv");
    common::write(&trace, "t_s,watts\n0,42\n60,42\n");
    let meter = ReplayMeter::open(&trace, Scope::Node).unwrap();
    let config = SamplerConfig {
        log_dir: f.dir.path().join("run/power-idle"),
        ..SamplerConfig::for_run(f.dir.path(), Instant::now())
    };
    let plans = vec![MeterPlan::with_rate(Box::new(meter), 50.0)];
    let (idle, plans) = measure_idle(&config, plans, Duration::from_millis(300)).unwrap();
    assert_eq!(idle.energies.len(), 1);
    let e = &idle.energies[0];
    assert!((e.avg_w - 42.0).abs() < 1e-9, "{}", e.avg_w);
    assert!(e.is_complete(), "{:?}", e.completeness);
    assert!(config.log_dir.join("replay-wall.csv").exists());
    // The meter comes back for the run.
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].rate_hz, 50.0);
    assert!(measure_idle(&config, plans, Duration::ZERO).is_err());
}

#[test]
fn a_replay_that_ends_mid_run_leaves_a_reported_gap() {
    let f = FakeSys::new();
    let short = f.dir.path().join("short.csv");
    common::write(&short, "t_s,watts\n0,10\n0.2,10\n");
    let long = f.dir.path().join("long.csv");
    common::write(&long, "t_s,energy_j\n0,0\n100,1000\n");
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), Instant::now());
    let plans = vec![
        MeterPlan::with_rate(
            Box::new(ReplayMeter::open(&short, Scope::Node).unwrap()),
            100.0,
        ),
        MeterPlan::with_rate(
            Box::new(ReplayMeter::open(&long, Scope::Node).unwrap()),
            100.0,
        ),
    ];
    let sampler = Sampler::start(&config, plans).unwrap();
    let begin = sampler.now_ns();
    std::thread::sleep(Duration::from_millis(500));
    let end = sampler.now_ns();
    let report = sampler.stop();
    let s = report.meter("replay-short").unwrap();
    assert!(s.faults.read_errors > 10);
    assert!(s.faults.last_error.as_deref().unwrap().contains("ended"));
    let l = report.meter("replay-long").unwrap();
    // Gaps can happen on a loaded machine; errors cannot.
    assert!(
        l.faults.read_errors == 0 && l.faults.counter_resets.is_empty(),
        "{:?}",
        l.faults
    );
    let e = l.energy(Window::new(begin, end).unwrap()).unwrap();
    // 10 W as a counter.
    assert!((e.avg_w - 10.0).abs() < 0.01, "{}", e.avg_w);
    assert!(matches!(l.samples[0].reading, Reading::Energy { .. }));
}
