//! Prometheus exposition pages under hostile input: arbitrary text and
//! bytes, and mutations of valid joulebench and DCGM pages, never panic and
//! parse in bounded time; errors name the URL and a line the page has; and
//! any label value joulebench's exporter writes is read back as written.

use hostile_input::strategies::{
    config, hostile_bytes, hostile_text, mutate, mutation_with, nasty_value, timed,
};
use power::meter::prom::series::{Family, Page};
use power::meter::prom::text::for_each_line;
use power::meter::{MeterInfo, Provenance, Reading, ReadingKind, Scope};
use power::prometheus::{render, MeterState};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const URL: &str = "http://node1:9400/metrics";

const WORDS: &[&str] = &[
    "\n",
    "# HELP ",
    "# TYPE ",
    " counter",
    " gauge",
    "{",
    "}",
    "=",
    "\"",
    "\\",
    "\\\"",
    "\\n",
    ",",
    " ",
    "NaN",
    "+Inf",
    "-Inf",
    "gpu",
    "meter",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_POWER_USAGE",
    "joulebench_energy_joules_total",
    "joulebench_meter_up",
];

const DCGM: &str = "# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).\n\
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n\
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\",UUID=\"GPU-5fd4\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node1\"} 123456789\n\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-5fd4\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node1\"} 312.456000\n";

fn state(id: &str) -> MeterState {
    let info = MeterInfo {
        id: id.into(),
        source: "nvml".into(),
        domain: "gpu0".into(),
        scope: Scope::Gpu,
        kind: ReadingKind::EnergyCounter,
        provenance: Provenance::Measured,
        resolution: 1e-3,
        update_period: Duration::from_millis(100),
        contains: vec![],
    };
    let mut s = MeterState::new(info, Duration::from_secs(1));
    let t0 = Instant::now();
    for (dt, uj) in [(0, 0), (1, 1_234_567)] {
        let reading = Reading::Energy {
            counter_uj: uj,
            wrap_uj: None,
        };
        s.read(t0 + Duration::from_secs(dt), reading);
    }
    s
}

/// Scans `bytes`; an error names the URL and a line that exists.
fn check(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let lines = text.split('\n').count();
    timed("for_each_line", || for_each_line(&text, |_, _| {})).ok();
    match timed("Page::scan", || Page::scan(&text, URL)) {
        Ok(page) => {
            for f in &page.found {
                assert!(f.line >= 1 && f.line <= lines, "{f:?}");
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains(URL), "{e}");
            let n: usize = e
                .split("line ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no line number in {e}"));
            assert!(n >= 1 && n <= lines, "line {n} of {lines}: {e}");
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_pages_never_panic(bytes in hostile_bytes(hostile_text(WORDS))) {
        check(&bytes);
    }

    #[test]
    fn damaged_pages_never_panic(
        base in prop_oneof![Just(DCGM.to_string()), Just(render(&[state("nvml-gpu0")], "n1"))],
        changes in prop::collection::vec(
            mutation_with(prop_oneof![
                3 => nasty_value(),
                1 => prop::sample::select(WORDS).prop_map(String::from),
            ]),
            1..5,
        ),
    ) {
        check(&mutate(&base, &changes));
    }

    #[test]
    fn any_meter_id_the_exporter_writes_is_read_back(id in "\\PC{0,40}", host in any::<String>()) {
        let page = render(&[state(&id)], &host);
        let read = Page::scan(&page, URL).unwrap();
        let found = read.get(Family::JoulebenchEnergy, &id).unwrap();
        prop_assert!((found.value - 1.234567).abs() < 1e-12);
        prop_assert_eq!(read.up.get(&id), Some(&true));
    }
}

#[test]
fn valid_pages_are_read_whole() {
    let page = Page::scan(DCGM, URL).unwrap();
    assert_eq!(page.found.len(), 2);
    assert_eq!(
        page.get(Family::DcgmEnergy, "0").unwrap().value,
        123456789.0
    );
}
