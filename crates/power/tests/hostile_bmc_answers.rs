//! What a BMC or the kernel answers, under hostile input: ipmitool's
//! `dcmi power reading` output, Redfish JSON (through a loopback BMC, since
//! the resource readers sit behind the HTTP client), and `/proc/stat` (through
//! the estimate meter). Nothing panics, every error says what it was reading,
//! and no NaN, negative or overflowed number becomes a reading.

use hostile_input::strategies::{config, hostile_text, mutate, mutations, nasty_value};
use power::meter::estimate::{EstimateConfig, EstimateMeter};
use power::meter::ipmi::{parse_dcmi_power_reading, DcmiParseError};
use power::meter::redfish::{probe, RedfishConfig};
use power::meter::{Meter, Probe, Reading};
use proptest::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DCMI: &str = "
    Instantaneous power reading:                   346 Watts
    Minimum during sampling period:                 12 Watts
    Maximum during sampling period:                703 Watts
    Average power reading over sample period:      346 Watts
    IPMI timestamp:                           Tue Jul 16 14:57:49 2024
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated
";

/// Words of ipmitool's output: its labels and unit.
const DCMI_WORDS: &[&str] = &[
    " Watts",
    "Instantaneous power reading:",
    "Minimum during sampling period:",
    "Maximum during sampling period:",
    "Average power reading over sample period:",
    "Sampling period:",
    " Seconds.",
    "IPMI timestamp:",
    "Power reading state is:",
    "activated",
];

fn dcmi_text() -> impl Strategy<Value = String> + Clone {
    hostile_text(DCMI_WORDS)
}

/// The valid output damaged line by line (cut, duplicated, deleted,
/// swapped, a field or number replaced, CRLF, non-UTF-8).
fn mutated_dcmi() -> impl Strategy<Value = String> {
    mutations(1..4).prop_map(|muts| String::from_utf8_lossy(&mutate(DCMI, &muts)).into_owned())
}

/// What `parse_dcmi_power_reading` said about `text`: only plausible
/// numbers as readings; errors quote the label and the offending text.
fn check_dcmi(text: &str) {
    match parse_dcmi_power_reading(text) {
        Ok(r) => {
            for w in [
                Some(r.instantaneous_w),
                r.minimum_w,
                r.maximum_w,
                r.average_w,
            ]
            .into_iter()
            .flatten()
            {
                assert!(w.is_finite() && w >= 0.0, "{w} from {text:?}");
            }
            if let Some(p) = r.sampling_period_s {
                assert!(p.is_finite() && p >= 0.0, "period {p} from {text:?}");
            }
        }
        Err(DcmiParseError::NotWatts { label, value })
        | Err(DcmiParseError::NotANumber { label, value }) => {
            assert!(text.contains(&label), "{label}");
            assert!(text.contains(&value), "{value:?} not in {text:?}");
        }
        Err(DcmiParseError::NoReading { said }) => {
            if let Some(said) = said {
                assert!(text.contains(&said));
            }
        }
    }
}

/// A loopback BMC: a chassis whose EnvironmentMetrics body (or the chassis
/// or collection body) is whatever the test puts in `hostile`.
struct FakeBmc {
    port: u16,
    /// (path served hostile, body).
    hostile: Arc<Mutex<(String, Vec<u8>)>>,
}

const COLLECTION: &str = "/redfish/v1/Chassis";
const CHASSIS: &str = "/redfish/v1/Chassis/1";
const METRICS: &str = "/redfish/v1/Chassis/1/EnvironmentMetrics";

impl FakeBmc {
    fn start() -> FakeBmc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hostile = Arc::new(Mutex::new((String::new(), Vec::new())));
        let shared = hostile.clone();
        // Serves until the test process ends.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &shared);
            }
        });
        FakeBmc { port, hostile }
    }

    fn config(&self) -> RedfishConfig {
        RedfishConfig {
            base_url: format!("http://127.0.0.1:{}", self.port),
            credentials: None,
            accept_invalid_certs: false,
            timeout: Duration::from_secs(5),
        }
    }
}

fn serve(stream: TcpStream, hostile: &Mutex<(String, Vec<u8>)>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let (hostile_path, hostile_body) = hostile.lock().unwrap().clone();
    let body: Vec<u8> = if path == hostile_path {
        hostile_body
    } else {
        match path {
            COLLECTION => format!(r#"{{"Members":[{{"@odata.id":"{CHASSIS}"}}]}}"#).into_bytes(),
            CHASSIS => format!(
                r#"{{"Id":"1","ChassisType":"RackMount","EnvironmentMetrics":{{"@odata.id":"{METRICS}"}}}}"#
            )
            .into_bytes(),
            METRICS => br#"{"PowerWatts":{"Reading":312.5}}"#.to_vec(),
            _ => {
                let mut out = stream;
                let _ = out.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
        }
    };
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(&body);
}

/// Probes the fake BMC and reads every usable meter: readings are finite and
/// non-negative; every failure says which resource it was reading.
fn check_redfish(bmc: &FakeBmc, at: &str, body: Vec<u8>) -> Vec<Result<f64, String>> {
    *bmc.hostile.lock().unwrap() = (at.to_string(), body);
    let probes = probe(&bmc.config());
    assert!(!probes.is_empty());
    let mut results = Vec::new();
    for p in probes {
        match p {
            Probe::Usable(mut meter) => match meter.read() {
                Ok(Reading::Power { watts, .. }) => {
                    assert!(watts.is_finite() && watts >= 0.0, "{watts}");
                    results.push(Ok(watts));
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(METRICS) || msg.contains("implausible"),
                        "{msg}"
                    );
                    results.push(Err(msg));
                }
            },
            Probe::Unusable { domain, error, .. } => {
                let msg = error.to_string();
                // The domain names the chassis (or the BMC, when the
                // collection itself is bad); the message says what failed.
                assert!(
                    domain == CHASSIS || domain.starts_with("127.0.0.1"),
                    "{domain}: {msg}"
                );
                assert!(
                    msg.contains("/redfish/v1/Chassis") || msg.contains("chassis"),
                    "{msg}"
                );
                results.push(Err(msg));
            }
        }
    }
    results
}

/// JSON a BMC might send for a reading, valid in shape or not.
fn hostile_json() -> impl Strategy<Value = Vec<u8>> {
    let reading = prop_oneof![
        3 => nasty_value(),
        1 => prop::sample::select(vec!["-5", "\"NaN\"", "\"312\""]).prop_map(String::from),
        1 => Just(format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000))),
        1 => (0u32..100_000).prop_map(|w| w.to_string()),
    ];
    prop_oneof![
        reading.prop_map(|r| format!(r#"{{"PowerWatts":{{"Reading":{r}}}}}"#).into_bytes()),
        dcmi_text().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..500),
        (0usize..=32).prop_map(|cut| br#"{"PowerWatts":{"Reading":312.5}}"#[..cut].to_vec()),
    ]
}

/// A `/proc/stat` with the aggregate line given.
fn stat_text(cpu_line: &str) -> String {
    format!("{cpu_line}\ncpu0 1 2 3 4 5 6 7 8 0 0\ncpu1 1 2 3 4 5 6 7 8 0 0\nintr 12345 0 0\nctxt 999\n")
}

fn hostile_stat() -> impl Strategy<Value = String> {
    let tick = prop_oneof![
        3 => (0u64..1_000_000).prop_map(|t| t.to_string()),
        1 => Just(u64::MAX.to_string()),
        1 => Just((u64::MAX / 4).to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("1e3".to_string()),
        1 => Just("".to_string()),
    ];
    // Valid counts, often at u64's end, where sums overflow.
    let count = prop_oneof![
        2 => (0u64..1_000_000).prop_map(|t| t.to_string()),
        1 => (0u64..4).prop_map(|d| (u64::MAX - d).to_string()),
        1 => Just((u64::MAX / 4).to_string()),
    ];
    prop_oneof![
        prop::collection::vec(tick, 0..12)
            .prop_map(|ticks| stat_text(&format!("cpu  {}", ticks.join(" ")))),
        prop::collection::vec(count, 4..11)
            .prop_map(|ticks| stat_text(&format!("cpu  {}", ticks.join(" ")))),
        dcmi_text(),
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        (dcmi_text(), any::<bool>()).prop_map(|(t, crlf)| {
            let s = format!("cpu  10 0 10 100 0 0 0 0 0 0\n{t}");
            if crlf {
                s.replace('\n', "\r\n")
            } else {
                s
            }
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_as_dcmi_output_never_panics_and_errors_quote_it(text in dcmi_text()) {
        check_dcmi(&text);
    }

    #[test]
    fn mutated_dcmi_output_gives_plausible_watts_or_errors_that_quote_it(text in mutated_dcmi()) {
        check_dcmi(&text);
    }

    #[test]
    fn hostile_numbers_in_each_dcmi_field_are_refused_or_dropped(field in 0usize..5, value in nasty_value()) {
        let numbers = ["346 Watts\n    Min", " 12 Watts", "703 Watts", "346 Watts\n    IPMI", "00000001"];
        let n = numbers[field];
        let digits = n.trim_start().split(' ').next().unwrap();
        let text = DCMI.replacen(n, &n.replacen(digits, &value, 1), 1);
        check_dcmi(&text);
    }

    #[test]
    fn dcmi_output_reads_the_values_printed(
        inst in 0u32..100_000, min in 0u32..100_000, max in 0u32..100_000, avg in 0u32..100_000,
        period in 0u32..100_000, crlf in any::<bool>(),
    ) {
        let text = format!(
            "Instantaneous power reading:   {inst} Watts\n\
             Minimum during sampling period:   {min} Watts\n\
             Maximum during sampling period:   {max} Watts\n\
             Average power reading over sample period:   {avg} Watts\n\
             IPMI timestamp:   Tue Jul 16 14:57:49 2024\n\
             Sampling period:   {period:08} Seconds.\n\
             Power reading state is:   activated\n"
        );
        let text = if crlf { text.replace('\n', "\r\n") } else { text };
        let r = parse_dcmi_power_reading(&text).unwrap();
        prop_assert_eq!(r.instantaneous_w, f64::from(inst));
        prop_assert_eq!(r.minimum_w, Some(f64::from(min)));
        prop_assert_eq!(r.maximum_w, Some(f64::from(max)));
        prop_assert_eq!(r.average_w, Some(f64::from(avg)));
        prop_assert_eq!(r.sampling_period_s, Some(f64::from(period)));
        prop_assert_eq!(r.active, Some(true));
    }

    #[test]
    fn hostile_proc_stat_never_panics_and_gives_watts_within_the_tdp(text in hostile_stat(), next in hostile_stat()) {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(&stat, &text).unwrap();
        let config = EstimateConfig::new(100.0);
        match EstimateMeter::open(dir.path(), config) {
            Ok(mut meter) => {
                std::fs::write(&stat, &next).unwrap();
                match meter.read() {
                    Ok(Reading::Power { watts, .. }) => {
                        prop_assert!((20.0..=100.0).contains(&watts), "{}", watts);
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(e) => prop_assert!(e.to_string().contains(&stat.display().to_string()), "{}", e),
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(&stat.display().to_string()), "{}", e),
        }
    }

    #[test]
    fn proc_stat_utilisation_gives_the_expected_watts(
        user in 0u64..1_000_000, idle in 0u64..1_000_000, d_user in 0u64..100_000, d_idle in 0u64..100_000,
    ) {
        prop_assume!(d_user + d_idle >= 30);
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(&stat, stat_text(&format!("cpu  {user} 0 0 {idle} 0 0 0 0 0 0"))).unwrap();
        let config = EstimateConfig::new(100.0);
        let mut meter = EstimateMeter::open(dir.path(), config).unwrap();
        std::fs::write(
            &stat,
            stat_text(&format!("cpu  {} 0 0 {} 0 0 0 0 0 0", user + d_user, idle + d_idle)),
        )
        .unwrap();
        let Reading::Power { watts, .. } = meter.read().unwrap() else { panic!() };
        let expected = config.power_w(d_user as f64 / (d_user + d_idle) as f64);
        prop_assert!((watts - expected).abs() < 1e-9, "{} vs {}", watts, expected);
    }
}

proptest! {
    // Each case is a few HTTP requests on loopback.
    #![proptest_config(config(64))]

    #[test]
    fn hostile_redfish_answers_never_panic_and_never_become_a_bad_reading(
        at in prop_oneof![2 => Just(METRICS), 1 => Just(CHASSIS), 1 => Just(COLLECTION)],
        body in hostile_json(),
    ) {
        let bmc = FakeBmc::start();
        check_redfish(&bmc, at, body);
    }
}

#[test]
fn redfish_readings_are_read_as_served_and_bad_ones_refused() {
    let bmc = FakeBmc::start();
    let body = |r: &str| format!(r#"{{"PowerWatts":{{"Reading":{r}}}}}"#).into_bytes();
    assert_eq!(
        check_redfish(&bmc, METRICS, body("288.25")),
        vec![Ok(288.25)]
    );
    for bad in ["-5", "\"NaN\"", "null", "1e400", "not json"] {
        let results = check_redfish(&bmc, METRICS, body(bad));
        assert!(matches!(results[..], [Err(_)]), "{bad}: {results:?}");
    }
    // Nesting deeper than serde_json's limit is an error, not a stack overflow.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let results = check_redfish(&bmc, METRICS, deep.into_bytes());
    assert!(
        results[0].as_ref().unwrap_err().contains("not JSON"),
        "{results:?}"
    );
}

/// Found by `hostile_proc_stat_never_panics_and_gives_watts_within_the_tdp`:
/// tick counts whose sum passes u64 overflowed (a panic in debug builds, a
/// wrapped, wrong utilisation in release).
#[test]
fn proc_stat_ticks_that_add_up_past_u64_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let stat = dir.path().join("stat");
    let max = u64::MAX;
    for line in [
        format!("cpu  {max} {max} 0 0 0"),
        format!("cpu  0 0 0 {max} {max}"),
    ] {
        std::fs::write(&stat, stat_text(&line)).unwrap();
        let err = EstimateMeter::open(dir.path(), EstimateConfig::new(100.0)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&stat.display().to_string()) && msg.contains("2^64"),
            "{msg}"
        );
    }
}

/// Found by `hostile_numbers_in_each_dcmi_field_are_refused_or_dropped`:
/// a sampling period of more digits than f64 holds became an infinite period.
#[test]
fn a_dcmi_sampling_period_past_f64_is_no_period() {
    let text = DCMI.replace("00000001", &"9".repeat(400));
    assert_eq!(
        parse_dcmi_power_reading(&text).unwrap().sampling_period_s,
        None
    );
}

#[test]
fn a_one_megabyte_dcmi_line_is_an_error_that_quotes_the_value() {
    let text = DCMI.replace(
        "346 Watts\n    Min",
        &format!("{} Watts\n    Min", "9".repeat(1 << 20)),
    );
    // 10^(2^20) is no number of watts: it is refused, not taken as infinity.
    let err = parse_dcmi_power_reading(&text).unwrap_err();
    assert!(matches!(err, DcmiParseError::NotANumber { ref value, .. } if value.len() == 1 << 20));
}
