//! Discovery and reading of RAPL, hwmon and the estimate over a fake sysfs tree.

mod common;

use common::FakeSys;
use power::discover::{describe, discover, with_extra, Roots};
use power::energy::{energy_over_window, Window};
use power::log::Sample;
use power::meter::estimate::EstimateConfig;
use power::meter::{Meter, MeterError, Probe, Provenance, Reading, ReadingKind, Scope};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

const MAX: u64 = 262_143_328_850;

fn roots(f: &FakeSys) -> Roots {
    Roots {
        sysfs: f.sysfs(),
        procfs: f.procfs(),
    }
}

fn usable(probes: Vec<Probe>) -> HashMap<String, Box<dyn Meter>> {
    probes
        .into_iter()
        .filter_map(|p| match p {
            Probe::Usable(m) => Some((m.info().id.clone(), m)),
            Probe::Unusable { .. } => None,
        })
        .collect()
}

/// A two-socket server plus a client-style psys zone and an MMIO duplicate.
fn server_tree() -> FakeSys {
    let f = FakeSys::new();
    f.rapl_zone("intel-rapl:0", "package-0", 1_000, MAX);
    f.rapl_zone("intel-rapl:0:0", "core", 500, MAX);
    f.rapl_zone("intel-rapl:0:1", "dram", 300, MAX);
    f.rapl_zone("intel-rapl:1", "package-1", 2_000, MAX);
    f.rapl_zone("intel-rapl:1:0", "dram", 400, MAX);
    f.rapl_zone("intel-rapl:2", "psys", 9_000, MAX);
    f.rapl_zone("intel-rapl-mmio:0", "package-0", 1_000, MAX);
    // The control-type directory itself is not a zone.
    std::fs::create_dir_all(f.powercap().join("intel-rapl")).unwrap();
    f
}

#[test]
fn rapl_finds_every_package_and_subdomain_with_placement() {
    let f = server_tree();
    let meters = usable(power::meter::rapl::probe(&f.sysfs()));
    let mut ids: Vec<&str> = meters.keys().map(String::as_str).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "rapl-core-0",
            "rapl-dram-0",
            "rapl-dram-1",
            "rapl-package-0",
            "rapl-package-1",
            "rapl-psys"
        ],
        "the MMIO duplicate of package-0 is skipped"
    );
    let info = |id: &str| meters[id].info().clone();
    assert_eq!(info("rapl-package-0").scope, Scope::CpuPackage);
    assert_eq!(info("rapl-package-0").contains, ["rapl-core-0"]);
    assert_eq!(info("rapl-core-0").scope, Scope::CpuSubdomain);
    assert_eq!(info("rapl-core-0").domain, "core-0");
    assert_eq!(info("rapl-dram-1").scope, Scope::Dram);
    assert_eq!(info("rapl-psys").scope, Scope::Other);
    assert_eq!(info("rapl-psys").contains.len(), 5);
    let p0 = info("rapl-package-0");
    assert_eq!(p0.kind, ReadingKind::EnergyCounter);
    assert_eq!(p0.provenance, Provenance::Measured);
    assert_eq!(p0.resolution, 1e-6);
}

#[test]
fn rapl_reads_the_counter_and_its_wrap() {
    let f = server_tree();
    let mut meters = usable(power::meter::rapl::probe(&f.sysfs()));
    let m = meters.get_mut("rapl-package-1").unwrap();
    assert_eq!(
        m.read().unwrap(),
        Reading::Energy {
            counter_uj: 2_000,
            wrap_uj: Some(MAX)
        }
    );
    f.set_energy("intel-rapl:1", MAX - 1_000_000);
    let a = m.read().unwrap();
    f.set_energy("intel-rapl:1", 4_000_000);
    let b = m.read().unwrap();
    // Energy across the wrap: 1 J before it and 4 J after.
    let info = m.info().clone();
    let samples = [
        Sample {
            t_ns: 0,
            reading: a,
        },
        Sample {
            t_ns: 1_000_000_000,
            reading: b,
        },
    ];
    let e = energy_over_window(
        &info,
        &samples,
        Window::new(0, 1_000_000_000).unwrap(),
        2_000_000_000,
    )
    .unwrap();
    assert!((e.energy_j - 5.0).abs() < 1e-9, "{}", e.energy_j);
    assert!(e.is_complete());
}

#[test]
fn amd_style_zone_names_work() {
    let f = FakeSys::new();
    f.rapl_zone("amd-rapl:0", "package-0", 10, MAX);
    f.rapl_zone("amd-rapl:0:0", "core", 5, MAX);
    let meters = usable(power::meter::rapl::probe(&f.sysfs()));
    assert!(meters.contains_key("rapl-package-0"));
    assert_eq!(meters["rapl-package-0"].info().contains, ["rapl-core-0"]);
}

#[test]
fn unreadable_energy_uj_says_how_to_grant_access() {
    let f = FakeSys::new();
    let zone = f.rapl_zone("intel-rapl:0", "package-0", 1, MAX);
    let energy = zone.join("energy_uj");
    std::fs::set_permissions(&energy, std::fs::Permissions::from_mode(0o000)).unwrap();

    if common::reads_mode_000_files(f.dir.path()) {
        println!(
            "running with CAP_DAC_OVERRIDE (root): a mode-000 energy_uj stays readable, so the \
             EACCES path is covered by the unit test rapl::tests::eacces_becomes_a_permission_error_with_a_remedy; \
             here energy_uj is made a directory instead"
        );
        std::fs::remove_file(&energy).unwrap();
        std::fs::create_dir(&energy).unwrap();
        let probes = power::meter::rapl::probe(&f.sysfs());
        assert_eq!(probes.len(), 1);
        let Probe::Unusable { domain, error, .. } = &probes[0] else {
            panic!("expected unusable, got {probes:?}");
        };
        assert_eq!(domain, "package-0");
        assert!(matches!(error, MeterError::Read { .. }), "{error}");
        assert!(error.to_string().contains("energy_uj"), "{error}");
        return;
    }

    let probes = power::meter::rapl::probe(&f.sysfs());
    assert_eq!(probes.len(), 1);
    let Probe::Unusable { error, .. } = &probes[0] else {
        panic!("expected unusable, got {probes:?}");
    };
    let MeterError::Permission { remedy, .. } = error else {
        panic!("expected a permission error, got {error}");
    };
    assert!(remedy.contains("sudo chmod o+r"), "{remedy}");
    assert!(remedy.contains("intel-rapl:*/energy_uj"), "{remedy}");
    assert!(remedy.contains("CVE-2020-8694"), "{remedy}");
}

#[test]
fn no_rapl_zones_gives_a_hint() {
    let f = FakeSys::new();
    std::fs::create_dir_all(f.powercap()).unwrap();
    let probes = power::meter::rapl::probe(&f.sysfs());
    let Probe::Unusable { error, .. } = &probes[0] else {
        panic!("{probes:?}");
    };
    assert!(matches!(error, MeterError::NotPresent { .. }));
    assert!(
        error.to_string().contains("modprobe intel_rapl_msr"),
        "{error}"
    );
}

#[test]
fn hwmon_power_and_energy_channels() {
    let f = FakeSys::new();
    f.hwmon(
        0,
        "power_meter",
        &[
            ("power1_average", "245500000"),
            ("power1_average_interval", "1000"),
        ],
    );
    f.hwmon(
        1,
        "amdgpu",
        &[
            ("power1_input", "35250000"),
            ("power1_average", "1"),
            ("power1_label", "PPT"),
        ],
    );
    f.hwmon(
        2,
        "amd_energy",
        &[
            ("energy1_input", "123456789"),
            ("energy1_label", "Esocket0"),
        ],
    );
    f.hwmon(3, "k10temp", &[("temp1_input", "45000")]);
    let mut meters = usable(power::meter::hwmon::probe(&f.sysfs()));
    let mut ids: Vec<String> = meters.keys().cloned().collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "hwmon0-power_meter-power1",
            "hwmon1-amdgpu-power1",
            "hwmon2-amd_energy-energy1"
        ]
    );

    let node = meters.get_mut("hwmon0-power_meter-power1").unwrap();
    assert_eq!(node.info().scope, Scope::Node);
    assert_eq!(node.info().update_period.as_millis(), 1000);
    assert_eq!(node.read().unwrap(), Reading::watts(245.5));

    let gpu = meters.get_mut("hwmon1-amdgpu-power1").unwrap();
    assert_eq!(gpu.info().scope, Scope::Gpu);
    assert_eq!(gpu.info().domain, "amdgpu/PPT");
    assert_eq!(
        gpu.read().unwrap(),
        Reading::watts(35.25),
        "_input wins over _average"
    );

    let e = meters.get_mut("hwmon2-amd_energy-energy1").unwrap();
    assert_eq!(e.info().kind, ReadingKind::EnergyCounter);
    assert_eq!(e.info().scope, Scope::Other);
    assert_eq!(
        e.read().unwrap(),
        Reading::Energy {
            counter_uj: 123_456_789,
            wrap_uj: None
        }
    );
}

#[test]
fn hwmon_garbage_value_is_unusable_with_the_file_named() {
    let f = FakeSys::new();
    f.hwmon(0, "weird", &[("power1_input", "n/a")]);
    let probes = power::meter::hwmon::probe(&f.sysfs());
    let Probe::Unusable { error, .. } = &probes[0] else {
        panic!("{probes:?}");
    };
    assert!(error.to_string().contains("power1_input"), "{error}");
    assert!(error.to_string().contains("n/a"), "{error}");
}

#[test]
fn discover_lists_everything_and_says_why_not() {
    let f = server_tree();
    f.hwmon(0, "k10temp", &[("temp1_input", "45000")]);
    f.proc_stat("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0 0 0\n");
    let probes = discover(&roots(&f), Some(EstimateConfig::new(100.0)));
    let lines = describe(&probes);
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(lines.iter().filter(|l| l.usable).count(), 7, "{text:#?}");
    let hw = lines.iter().find(|l| l.source == "hwmon").unwrap();
    assert!(!hw.usable && hw.status.contains("power or energy"), "{hw}");
    let est = lines.iter().find(|l| l.source == "estimate").unwrap();
    assert!(est.status.contains("estimated"), "{est}");

    // A probe from another source with a clashing id is refused, not renamed.
    let again = power::meter::rapl::probe(&f.sysfs());
    let joined = with_extra(probes, again);
    let refused = describe(&joined)
        .into_iter()
        .filter(|l| l.status.contains("already has this id"))
        .count();
    assert_eq!(refused, 6);
}

#[test]
fn estimate_reads_fake_proc_stat() {
    let f = FakeSys::new();
    f.proc_stat("cpu  0 0 0 100 0 0 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0 0 0\n");
    let probes = discover(
        &roots(&f),
        Some(EstimateConfig {
            tdp_w: 50.0,
            idle_w: Some(10.0),
        }),
    );
    let mut m = usable(probes).remove("estimate-cpu").unwrap();
    assert_eq!(m.read().unwrap(), Reading::watts(10.0));
    f.proc_stat("cpu  10 0 10 120 0 0 0 0 0 0\ncpu0 10 0 10 120 0 0 0 0 0 0\n");
    // 20 busy of 40 ticks: 10 + 40 × 0.5
    assert_eq!(m.read().unwrap(), Reading::watts(30.0));
    assert_eq!(m.info().provenance, Provenance::Estimated);
}
