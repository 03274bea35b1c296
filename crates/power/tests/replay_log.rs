//! joulebench's own power logs (`power/<meter>.csv`, written by `power::log`)
//! replayed as meters (`--power replay:FILE`): the energy a replay gives over
//! a window is the energy the log recorded, counter wraps and a tail cut by a
//! crash included.

mod common;

use common::FakeSys;
use power::energy::{energy_over_window, Window};
use power::log::{read_log, write_log, PowerLogWriter, Sample};
use power::meter::replay::{self, Format, Replay, ReplayMeter};
use power::meter::{Meter, Reading, ReadingKind, Scope};
use power::sampler::{MeterPlan, Sampler, SamplerConfig};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// A RAPL package's `max_energy_range_uj`.
const RAPL_WRAP_UJ: u64 = 262_143_328_850;

/// Power that is not constant, so interpolation mistakes show.
fn watts_at(t_ns: u64) -> f64 {
    let t = t_ns as f64 * 1e-9;
    50.0 + 20.0 * (t * 7.0).sin()
}

/// Sample times as a sampler takes them: about every 10 ms, with jitter.
fn sample_times(n: u64) -> Vec<u64> {
    (0..n)
        .map(|k| 5 * MS + k * 10 * MS + (k * 7919) % 900_000)
        .collect()
}

/// A RAPL-like counter that starts 30 J before its wrap.
fn wrapping_counter() -> Vec<Sample> {
    let times = sample_times(200);
    let mut counter_uj = RAPL_WRAP_UJ - 30_000_000;
    let mut out = Vec::new();
    let mut prev_t = times[0];
    for t in times {
        let step_uj = ((t - prev_t) as f64 * 1e-9 * watts_at(t) * 1e6).round() as u64;
        counter_uj = (counter_uj + step_uj) % RAPL_WRAP_UJ;
        prev_t = t;
        out.push(Sample {
            t_ns: t,
            reading: Reading::Energy {
                counter_uj,
                wrap_uj: Some(RAPL_WRAP_UJ),
            },
        });
    }
    out
}

/// The replay read at every time of `grid` (window edges included).
fn resample(r: &Replay, grid: impl IntoIterator<Item = u64>) -> Vec<Sample> {
    grid.into_iter()
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .map(|t_ns| Sample {
            t_ns,
            reading: r.reading_at(t_ns).expect("inside the trace"),
        })
        .collect()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(bytes).expect("append");
}

#[test]
fn a_counter_log_cut_by_a_crash_replays_the_energy_it_recorded_across_a_wrap() {
    let f = FakeSys::new();
    let path = f.dir.path().join("rapl-package-0.csv");
    let samples = wrapping_counter();
    let mut w = PowerLogWriter::create(&path, ReadingKind::EnergyCounter).unwrap();
    for s in &samples {
        w.append(s).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    // The run crashed while writing the next row.
    append(&path, b"2015000000,1234");

    let r = replay::load(&path).unwrap();
    assert_eq!(r.format, Format::CounterLog);
    assert_eq!(r.kind, ReadingKind::EnergyCounter);
    assert_eq!(r.dropped_tail_bytes, "2015000000,1234".len());
    assert_eq!(r.rows, samples, "rows are the log's samples, bit for bit");
    let wraps = samples
        .windows(2)
        .filter(|w| match (w[0].reading, w[1].reading) {
            (Reading::Energy { counter_uj: a, .. }, Reading::Energy { counter_uj: b, .. }) => b < a,
            _ => false,
        })
        .count();
    assert_eq!(wraps, 1, "the test log wraps once");

    let meter = ReplayMeter::open(&path, Scope::CpuPackage).unwrap();
    assert_eq!(meter.info().id, "replay-rapl-package-0");
    assert_eq!(meter.info().kind, ReadingKind::EnergyCounter);
    let window = Window::new(250 * MS + 123, 1_750 * MS + 4_567).unwrap();
    let original = energy_over_window(meter.info(), &samples, window, S).unwrap();
    assert!(original.counter_resets.is_empty());
    assert!(original.energy_j > 50.0, "{}", original.energy_j);

    // Read at other times than the log's, at another rate, as a sampler would.
    let replayed = resample(
        &r,
        (5 * MS..1_990 * MS)
            .step_by(3_001_003)
            .chain([window.begin_ns, window.end_ns]),
    );
    assert!(replayed
        .windows(2)
        .any(|w| match (w[0].reading, w[1].reading) {
            (Reading::Energy { counter_uj: a, .. }, Reading::Energy { counter_uj: b, .. }) => b < a,
            _ => false,
        }));
    let e = energy_over_window(meter.info(), &replayed, window, S).unwrap();
    assert!(e.counter_resets.is_empty(), "{:?}", e.counter_resets);
    // Each replayed reading is rounded to the microjoule.
    assert!(
        (e.energy_j - original.energy_j).abs() <= 2e-6,
        "replayed {} J, recorded {} J",
        e.energy_j,
        original.energy_j
    );
}

#[test]
fn a_power_log_with_analyzer_fields_replays_the_energy_it_recorded() {
    let f = FakeSys::new();
    let path = f.dir.path().join("ptd.csv");
    let samples: Vec<Sample> = sample_times(150)
        .into_iter()
        .enumerate()
        .map(|(k, t_ns)| {
            let watts = watts_at(t_ns);
            // Every third row without the analyzer's extras (empty cells).
            let extras = k % 3 != 0;
            Sample {
                t_ns,
                reading: Reading::Power {
                    watts,
                    volts: extras.then_some(230.0 + (k % 5) as f64 * 0.1),
                    amps: extras.then_some(watts / 230.0),
                    power_factor: extras.then_some(0.98),
                },
            }
        })
        .collect();
    write_log(&path, ReadingKind::PowerSample, &samples).unwrap();
    assert_eq!(read_log(&path).unwrap().samples, samples);

    let r = replay::load(&path).unwrap();
    assert_eq!(r.format, Format::PowerLog);
    assert_eq!(r.dropped_tail_bytes, 0);
    assert_eq!(r.rows, samples);
    for s in &samples {
        assert_eq!(r.reading_at(s.t_ns), Some(s.reading));
    }

    let meter = ReplayMeter::open(&path, Scope::Node).unwrap();
    let window = Window::new(333 * MS, 1_222 * MS + 17).unwrap();
    let original = energy_over_window(meter.info(), &samples, window, S).unwrap();
    // Power is linear between rows: read at a finer grid that includes the
    // rows' times, the trapezoids add up to the same integral.
    let replayed = resample(
        &r,
        samples
            .iter()
            .map(|s| s.t_ns)
            .chain((5 * MS..1_490 * MS).step_by(2_718_281))
            .chain([window.begin_ns, window.end_ns]),
    );
    let e = energy_over_window(meter.info(), &replayed, window, S).unwrap();
    assert!(
        (e.energy_j - original.energy_j).abs() <= 1e-9 * original.energy_j,
        "replayed {} J, recorded {} J",
        e.energy_j,
        original.energy_j
    );
}

#[test]
fn a_replayed_counter_log_runs_as_a_live_meter_and_logs_a_replayable_counter() {
    let f = FakeSys::new();
    let path = f.dir.path().join("nvml-gpu0.csv");
    // 20 W on a counter that wraps every 10 J, starting 0.5 J below it:
    // it wraps at 25 ms and 525 ms.
    let wrap_uj = 10_000_000;
    let samples: Vec<Sample> = (0..=300u64)
        .map(|k| Sample {
            t_ns: k * 10 * MS,
            reading: Reading::Energy {
                counter_uj: (9_500_000 + k * 200_000) % wrap_uj,
                wrap_uj: Some(wrap_uj),
            },
        })
        .collect();
    write_log(&path, ReadingKind::EnergyCounter, &samples).unwrap();

    let meter = ReplayMeter::open(&path, Scope::Gpu).unwrap();
    let config = SamplerConfig::for_run(&f.dir.path().join("run"), Instant::now());
    let plans = vec![MeterPlan::with_rate(Box::new(meter), 100.0)];
    let sampler = Sampler::start(&config, plans).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let begin = sampler.now_ns();
    std::thread::sleep(Duration::from_millis(700));
    let end = sampler.now_ns();
    let report = sampler.stop();
    let m = report.meter("replay-nvml-gpu0").unwrap();
    assert_eq!(m.faults.read_errors, 0, "{:?}", m.faults);
    assert!(m.faults.counter_resets.is_empty(), "{:?}", m.faults);
    let e = m.energy(Window::new(begin, end).unwrap()).unwrap();
    assert!(e.counter_resets.is_empty(), "{e:?}");
    assert!((e.avg_w - 20.0).abs() < 0.2, "{} W", e.avg_w);

    // The new run's log is itself a counter log with the same wrap range,
    // which replays in turn.
    let again = config.log_dir.join("replay-nvml-gpu0.csv");
    let log = read_log(&again).unwrap();
    assert_eq!(log.kind, ReadingKind::EnergyCounter);
    assert!(log.samples.iter().all(|s| matches!(
        s.reading,
        Reading::Energy { wrap_uj: Some(w), .. } if w == wrap_uj
    )));
    let m = ReplayMeter::open(&again, Scope::Gpu).unwrap();
    assert_eq!(m.info().kind, ReadingKind::EnergyCounter);
}
