//! The Prometheus meter (`prom://`) against a loopback HTTP server serving
//! (a) a page as `joulebench exporter` renders it (made by
//! `power::prometheus::render` itself) and (b) a DCGM exporter page of the
//! shape dcgm-exporter 3.x writes, whose counters advance between scrapes.

mod prom_common;

use power::energy::{energy_over_window, Window};
use power::log::Sample;
use power::meter::prom::series::{Family, Page};
use power::meter::prom::{probe, PromConfig};
use power::meter::{MeterError, MeterInfo, Provenance, Reading, ReadingKind, Scope};
use power::prometheus::{render, MeterState};
use prom_common::{counter_uj, dcgm_page, meter, split, FakeExporter};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

// ---- (a) joulebench's own exporter ----

fn info(id: &str, domain: &str, scope: Scope, kind: ReadingKind, prov: Provenance) -> MeterInfo {
    MeterInfo {
        id: id.into(),
        source: id.split('-').next().unwrap().into(),
        domain: domain.into(),
        scope,
        kind,
        provenance: prov,
        resolution: 1e-3,
        update_period: Duration::from_millis(100),
        contains: vec![],
    }
}

/// A remote node's exporter state: a BMC, a GPU measured four ways plus its
/// memory, a CPU package and core, and an estimate.
fn remote_states() -> Vec<MeterState> {
    use Provenance::*;
    use ReadingKind::*;
    let second = Duration::from_secs(1);
    [
        info("ipmi-node", "node", Scope::Node, PowerSample, Measured),
        info("nvml-gpu0", "gpu0", Scope::Gpu, EnergyCounter, Measured),
        info("nvml-gpu0-power", "gpu0", Scope::Gpu, PowerSample, Measured),
        info(
            "nvml-gpu0-memory-power",
            "gpu0-memory",
            Scope::Gpu,
            PowerSample,
            Measured,
        ),
        info("nvml-gpu1", "gpu1", Scope::Gpu, EnergyCounter, Measured),
        info(
            "rapl-package-0",
            "package-0",
            Scope::CpuPackage,
            EnergyCounter,
            Measured,
        ),
        info(
            "rapl-core-0",
            "core-0",
            Scope::CpuSubdomain,
            EnergyCounter,
            Measured,
        ),
        info(
            "estimate-cpu",
            "cpu",
            Scope::CpuPackage,
            PowerSample,
            Estimated,
        ),
    ]
    .into_iter()
    .map(|i| MeterState::new(i, second))
    .collect()
}

/// Feeds each remote meter one reading at `at`: counters at `uj`, power
/// meters at `watts`.
fn feed(states: &mut [MeterState], at: Instant, uj: u64, watts: f64) {
    for s in states {
        let reading = match s.info.kind {
            ReadingKind::EnergyCounter => Reading::Energy {
                counter_uj: uj,
                wrap_uj: None,
            },
            ReadingKind::PowerSample => Reading::watts(watts),
        };
        s.read(at, reading);
    }
}

#[test]
fn a_joulebench_page_gives_one_meter_per_remote_meter_with_its_scope_and_provenance() {
    let mut states = remote_states();
    let t0 = Instant::now();
    feed(&mut states, t0, 1_000_000, 100.0);
    feed(&mut states, t0 + Duration::from_secs(2), 3_000_000, 100.0);
    states[3].failed(); // the memory meter's last read failed there
    let exporter = FakeExporter::start(&render(&states, "node7"));
    let (mut meters, errors) = split(probe(&exporter.config("")));
    assert!(errors.is_empty(), "{errors:?}");
    let p = format!("prom-127.0.0.1-{}", exporter.port);
    let ids: Vec<&str> = meters.iter().map(|m| m.info().id.as_str()).collect();
    assert_eq!(ids.len(), 8, "{ids:?}");
    let gpu0 = meter(&mut meters, &format!("{p}-nvml-gpu0")).info().clone();
    assert_eq!(
        (gpu0.source.as_str(), gpu0.domain.as_str(), gpu0.scope),
        ("prom", "node7:gpu0", Scope::Gpu)
    );
    assert_eq!(gpu0.kind, ReadingKind::EnergyCounter);
    // The GPU's main meter holds its other readings and its memory.
    let mut inside = gpu0.contains.clone();
    inside.sort();
    assert_eq!(
        inside,
        [
            format!("{p}-nvml-gpu0-memory-power"),
            format!("{p}-nvml-gpu0-power")
        ]
    );
    let node = meter(&mut meters, &format!("{p}-ipmi-node")).info().clone();
    assert_eq!(node.scope, Scope::Node);
    assert_eq!(node.contains.len(), 7, "{:?}", node.contains);
    let core = meter(&mut meters, &format!("{p}-rapl-core-0"))
        .info()
        .clone();
    assert_eq!(core.scope, Scope::CpuSubdomain);
    let est = meter(&mut meters, &format!("{p}-estimate-cpu"))
        .info()
        .clone();
    assert_eq!(
        (est.provenance, est.scope),
        (Provenance::Estimated, Scope::CpuPackage)
    );
    // Every remote meter is read through its energy counter (joules → µJ);
    // the power meter's energy is the exporter's integral (2 s × 100 W).
    let r = meter(&mut meters, &format!("{p}-nvml-gpu0"))
        .read()
        .unwrap();
    assert_eq!(counter_uj(r), 2_000_000);
    let r = meter(&mut meters, &format!("{p}-ipmi-node"))
        .read()
        .unwrap();
    assert_eq!(counter_uj(r), 200_000_000);
    // A remote meter that is down fails here too, naming it.
    let e = meter(&mut meters, &format!("{p}-nvml-gpu0-memory-power"))
        .read()
        .unwrap_err();
    assert!(e.to_string().contains("joulebench_meter_up"), "{e}");
    assert!(e.to_string().contains(&exporter.url()), "{e}");
}

#[test]
fn joulebench_counters_give_energy_by_difference_and_a_restart_is_a_reset() {
    let mut states = remote_states();
    let t0 = Instant::now();
    feed(&mut states, t0, 0, 50.0);
    let exporter = FakeExporter::start(&render(&states, "n"));
    let (mut meters, _) = split(probe(&exporter.config("?gpu=1")));
    assert_eq!(meters.len(), 1, "?gpu=1 keeps only gpu1");
    let m = &mut meters[0];
    let mut samples = Vec::new();
    for (i, uj) in [10_000_000u64, 12_500_000, 20_000_000]
        .into_iter()
        .enumerate()
    {
        feed(
            &mut states,
            t0 + Duration::from_secs(1 + i as u64),
            uj,
            50.0,
        );
        exporter.set(&render(&states, "n"));
        samples.push(Sample {
            t_ns: i as u64 * 1_000_000_000,
            reading: m.read().unwrap(),
        });
    }
    let w = Window::new(0, 2_000_000_000).unwrap();
    let e = energy_over_window(m.info(), &samples, w, u64::MAX).unwrap();
    assert!((e.energy_j - 10.0).abs() < 1e-9, "{e:?}");
    // The exporter restarts: its counter starts again from zero.
    let mut fresh = remote_states();
    feed(&mut fresh, t0, 0, 50.0);
    feed(&mut fresh, t0 + Duration::from_secs(1), 1_000_000, 50.0);
    exporter.set(&render(&fresh, "n"));
    samples.push(Sample {
        t_ns: 3_000_000_000,
        reading: m.read().unwrap(),
    });
    let w = Window::new(0, 3_000_000_000).unwrap();
    let e = energy_over_window(m.info(), &samples, w, u64::MAX).unwrap();
    assert!((e.energy_j - 10.0).abs() < 1e-9, "{e:?}");
    assert_eq!(e.counter_resets.len(), 1, "{e:?}");
    assert!(!e.is_complete());
}

// ---- (b) NVIDIA's DCGM exporter ----

#[test]
fn dcgm_counters_give_energy_in_joules_and_power_integrates() {
    let exporter = FakeExporter::start(&dcgm_page([123_456_789, 5_000_000], [300.0, 80.0]));
    let (mut meters, errors) = split(probe(&exporter.config("")));
    assert!(errors.is_empty(), "{errors:?}");
    let p = format!("prom-127.0.0.1-{}", exporter.port);
    let ids: Vec<&str> = meters.iter().map(|m| m.info().id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{p}-gpu0"),
            format!("{p}-gpu0-power"),
            format!("{p}-gpu1"),
            format!("{p}-gpu1-power")
        ]
    );
    let main = meters[0].info().clone();
    assert_eq!(main.domain, "node1:gpu0");
    assert_eq!(
        (main.scope, main.kind),
        (Scope::Gpu, ReadingKind::EnergyCounter)
    );
    assert_eq!(main.contains, [format!("{p}-gpu0-power")]);
    assert_eq!(meters[1].info().kind, ReadingKind::PowerSample);
    // Three scrapes a second apart: GPU 0 spends 300 J, then 310 J.
    let steps = [
        ([123_456_789, 5_000_000], [300.0, 80.0]),
        ([123_756_789, 5_080_000], [310.0, 80.0]),
        ([124_066_789, 5_160_000], [320.0, 80.0]),
    ];
    let mut counter = Vec::new();
    let mut power = Vec::new();
    for (i, (mj, w)) in steps.into_iter().enumerate() {
        exporter.set(&dcgm_page(mj, w));
        let t_ns = i as u64 * 1_000_000_000;
        counter.push(Sample {
            t_ns,
            reading: meters[0].read().unwrap(),
        });
        power.push(Sample {
            t_ns,
            reading: meters[1].read().unwrap(),
        });
    }
    assert_eq!(counter_uj(counter[0].reading), 123_456_789_000);
    let w = Window::new(0, 2_000_000_000).unwrap();
    let e = energy_over_window(meters[0].info(), &counter, w, u64::MAX).unwrap();
    assert!((e.energy_j - 610.0).abs() < 1e-9, "{e:?}");
    assert!(e.is_complete(), "{e:?}");
    let e = energy_over_window(meters[1].info(), &power, w, u64::MAX).unwrap();
    assert!((e.energy_j - 620.0).abs() < 1e-9, "{e:?}");
}

#[test]
fn match_and_gpu_options_pick_series() {
    let exporter = FakeExporter::start(&dcgm_page([1, 2], [3.0, 4.0]));
    let pick = |rest: &str| -> Vec<String> {
        let (meters, errors) = split(probe(&exporter.config(rest)));
        assert!(errors.is_empty(), "{rest}: {errors:?}");
        let cut = format!("prom-127.0.0.1-{}-", exporter.port);
        meters
            .iter()
            .map(|m| m.info().id.replace(&cut, ""))
            .collect()
    };
    assert_eq!(pick("?gpu=1"), ["gpu1", "gpu1-power"]);
    assert_eq!(
        pick("?match=DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
        ["gpu0", "gpu1"]
    );
    // Power alone takes the GPU's id.
    assert_eq!(pick("?match=DCGM_FI_DEV_POWER_USAGE&gpu=0"), ["gpu0"]);
    let (_, errors) = split(probe(
        &exporter.config("?match=joulebench_energy_joules_total"),
    ));
    assert!(errors[0].to_string().contains("match=/gpu="), "{errors:?}");
}

#[test]
fn dcgm_blank_values_are_not_readings() {
    // GPU 1 has no energy counter: DCGM prints its "not supported" sentinel.
    let exporter = FakeExporter::start(&dcgm_page([1, 9223372036854775794], [3.0, 4.0]));
    let (mut meters, errors) = split(probe(&exporter.config("")));
    let p = format!("prom-127.0.0.1-{}", exporter.port);
    let gpu1 = meter(&mut meters, &format!("{p}-gpu1")).info().clone();
    assert_eq!(gpu1.kind, ReadingKind::PowerSample);
    assert!(gpu1.contains.is_empty());
    assert_eq!(meters.len(), 3);
    let text = errors[0].to_string();
    assert!(text.contains("line 16") && text.contains("blank"), "{text}");
    // A blank power reading later is an error, not 140 TW.
    exporter.set(&dcgm_page([1, 2], [140737488355328.0, 4.0]));
    let e = meters[1].read().unwrap_err().to_string();
    assert!(e.contains("blank sentinel"), "{e}");
}

#[test]
fn meters_of_one_page_share_a_scrape() {
    let exporter = FakeExporter::start(&dcgm_page([1, 2], [3.0, 4.0]));
    let mut config = exporter.config("");
    config.share_within = Duration::from_secs(60);
    let (mut meters, _) = split(probe(&config));
    for m in &mut meters {
        m.read().unwrap();
    }
    assert_eq!(exporter.hits.load(Ordering::SeqCst), 1);
}

// ---- errors ----

#[test]
fn errors_name_the_url_the_line_and_what_was_expected() {
    // Nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = PromConfig::from_spec(&format!("prom://127.0.0.1:{port}")).unwrap();
    let (_, errors) = split(probe(&config));
    assert!(
        matches!(errors[..], [MeterError::NotPresent { .. }]),
        "{errors:?}"
    );
    assert!(errors[0].to_string().contains(&config.url), "{errors:?}");

    let exporter = FakeExporter::start("# HELP up Up.\n# TYPE up gauge\nup 1\n");
    let (_, errors) = split(probe(&exporter.config("")));
    let text = errors[0].to_string();
    assert!(
        text.contains(&exporter.url()) && text.contains("DCGM_FI_DEV_POWER_USAGE"),
        "{text}"
    );

    let bad = dcgm_page([1, 2], [3.0, 4.0]).replace("} 41\n", "} 41 degrees\n");
    exporter.set(&bad);
    let (_, errors) = split(probe(&exporter.config("")));
    let text = errors[0].to_string();
    assert!(matches!(errors[0], MeterError::Read { .. }), "{text}");
    assert!(text.contains(&exporter.url()), "{text}");
    assert!(text.contains("line 7: expected a timestamp"), "{text}");

    for (status, variant) in [(500, "read failed"), (404, "not present")] {
        exporter.set_status(status);
        let (_, errors) = split(probe(&exporter.config("")));
        let text = errors[0].to_string();
        assert!(
            text.contains(variant) && text.contains(&status.to_string()),
            "{text}"
        );
        assert!(text.contains(&exporter.url()), "{text}");
    }

    // A series that goes away, a negative counter, a NaN power: read errors.
    exporter.set(&dcgm_page([1, 2], [3.0, 4.0]));
    let (mut meters, _) = split(probe(&exporter.config("")));
    exporter.set(&dcgm_page([1, 2], [3.0, 4.0]).replace("gpu=\"1\"", "gpu=\"7\""));
    let e = meters[2].read().unwrap_err().to_string();
    assert!(
        e.contains("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"1\"} is no longer"),
        "{e}"
    );
    exporter.set(&dcgm_page([1, 2], [f64::NAN, 4.0]).replace("} 1\n", "} -1\n"));
    let e = meters[0].read().unwrap_err().to_string();
    assert!(
        e.contains("line 15") && e.contains("is -1; expected a finite"),
        "{e}"
    );
    let e = meters[1].read().unwrap_err().to_string();
    assert!(e.contains("is NaN"), "{e}");
}

#[test]
fn pages_are_read_with_their_escapes() {
    let page = Page::scan(&dcgm_page([7, 8], [1.0, 2.0]), "http://x/metrics").unwrap();
    let g1 = page.get(Family::DcgmEnergy, "1").unwrap();
    assert_eq!(g1.value, 8.0);
    assert_eq!(page.found.len(), 4);
}
