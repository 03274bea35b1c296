//! A measured session end to end, with a RAPL package faked at the OS
//! boundary (its counter rises at a known power): energy over each named
//! window, idle subtracted, the meters kept across measurements.

use harness::{Interrupt, PowerOptions, Session};
use power::energy::Window;
use power::testing::FakeRapl;
use std::time::Duration;

fn rapl_options(sysfs: &std::path::Path) -> PowerOptions {
    PowerOptions {
        specs: vec!["rapl".into()],
        interval: Duration::from_millis(10),
        sysfs_root: sysfs.to_path_buf(),
        ..Default::default()
    }
}

#[test]
fn energy_over_each_window_comes_from_the_meter_on_the_sessions_clock() {
    let dir = tempfile::tempdir().unwrap();
    let _rapl = FakeRapl::start(&dir.path().join("sys"), 40.0);
    let out = dir.path().join("run");
    let mut options = rapl_options(&dir.path().join("sys"));
    options.idle_s = Some(0.2);
    let mut session = Session::open(out.clone(), &options, Interrupt::detached()).unwrap();
    let mut announced = None;
    session.measure_idle(|s| announced = Some(s)).unwrap();
    assert_eq!(announced, Some(0.2));
    assert!(out.join("power-idle/rapl-package-0.csv").is_file());

    // Two measurements with the same meters: a window inside each.
    for name in ["first", "second"] {
        let dir = out.join(name);
        let m = session
            .measure(&dir, |clock: &harness::session::Clock| {
                std::thread::sleep(Duration::from_millis(100));
                let begin = clock.now_ns();
                std::thread::sleep(Duration::from_millis(500));
                (begin, clock.now_ns())
            })
            .unwrap();
        let (begin, end) = m.output;
        let report = m.report.expect("a meter was selected");
        let window = Window::new(begin, end).unwrap();
        let record = session.power_record(&report, window, None, None).unwrap();
        let measured = record.total.measured.as_ref().expect("RAPL is measured");
        assert!(
            (measured.avg_w - 40.0).abs() < 6.0,
            "{name}: {} W over the window, the counter rose at 40 W",
            measured.avg_w
        );
        let idle = record.idle.as_ref().expect("idle was measured");
        let above = idle.energy_above_idle_j.unwrap();
        // Idle and the run both draw 40 W: nothing above idle.
        assert!(above.abs() < 3.0, "{name}: {above} J above idle");
        assert_eq!(
            record.logs[0].file,
            format!("{name}/power/rapl-package-0.csv")
        );
        assert!(record.efficiency.is_none(), "no LoadGen counts: no metric");
    }
}

#[test]
fn a_loadgen_window_gets_mlperfs_efficiency_metric() {
    let dir = tempfile::tempdir().unwrap();
    let _rapl = FakeRapl::start(&dir.path().join("sys"), 20.0);
    let out = dir.path().join("run");
    let mut session = Session::open(
        out.clone(),
        &rapl_options(&dir.path().join("sys")),
        Interrupt::detached(),
    )
    .unwrap();
    let m = session
        .measure(&out, |clock: &harness::session::Clock| {
            let begin = clock.now_ns();
            std::thread::sleep(Duration::from_millis(500));
            (begin, clock.now_ns())
        })
        .unwrap();
    let window = Window::new(m.output.0, m.output.1).unwrap();
    let counts = harness::efficiency::RunCounts {
        scenario: loadgen::Scenario::Offline,
        samples: 1000,
        queries: 1,
    };
    let record = session
        .power_record(&m.report.unwrap(), window, Some(counts), None)
        .unwrap();
    let energy_j = record.total.measured.as_ref().unwrap().energy_j;
    let e = record.efficiency.expect("Offline with energy has a metric");
    assert_eq!(e.name, "samples_per_joule");
    assert!((e.value - 1000.0 / energy_j).abs() < 1e-9);
}
