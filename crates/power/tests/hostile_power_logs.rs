//! Power logs (`power::log`) and replayed traces (`power::meter::replay`)
//! under hostile input: arbitrary bytes and mutations of valid files never
//! panic, errors name the file and the line, NaN, negative counters and
//! numbers too big to hold are refused rather than taken as energy, and what
//! the writer writes reads back as the same samples.

use hostile_input::strategies::{config, hostile_bytes, hostile_text, mutate, mutations};
use power::log::{parse_log, read_log, write_log, LogError, PowerLogWriter, Sample};
use power::meter::replay::{self, Format, ReplayError, ReplayMeter};
use power::meter::{Meter, Reading, ReadingKind, Scope};
use proptest::prelude::*;
use std::path::Path;

const PATH: &str = "hostile/meter.csv";

fn path() -> &'static Path {
    Path::new(PATH)
}

/// Words of power logs and traces: separators, comments, field names.
const LOG_WORDS: &[&str] = &[
    ",",
    "#",
    "t_s",
    "t_ns",
    "watts",
    "energy_j",
    "counter_uj",
    "wrap_uj",
    "volts",
];

/// Hostile text, often after a valid header of one of the formats.
fn log_text() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just(""),
        Just("t_s,watts\n"),
        Just("t_s,energy_j\n"),
        Just("t_ns,watts,volts,amps,power_factor\n"),
        Just("t_ns,counter_uj,wrap_uj\n"),
        Just("t_ns,watts\n"),
    ];
    (header, hostile_text(LOG_WORDS)).prop_map(|(h, text)| format!("{h}{text}"))
}

/// Mostly values next to 0, u64::MAX and 2^63, where arithmetic overflows.
fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..4096).prop_map(|d| u64::MAX - d),
        (0u64..4096).prop_map(|d| (1u64 << 63) ^ d),
        0u64..4096,
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |v| v.is_finite())
}

fn power_samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (
            any::<u64>(),
            finite(),
            prop::option::of(finite()),
            prop::option::of(finite()),
            prop::option::of(finite()),
        )
            .prop_map(|(t_ns, watts, volts, amps, power_factor)| Sample {
                t_ns,
                reading: Reading::Power {
                    watts,
                    volts,
                    amps,
                    power_factor,
                },
            }),
        0..40,
    )
}

fn energy_samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (any::<u64>(), any::<u64>(), prop::option::of(any::<u64>())).prop_map(
            |(t_ns, counter_uj, wrap_uj)| Sample {
                t_ns,
                reading: Reading::Energy {
                    counter_uj,
                    wrap_uj,
                },
            },
        ),
        0..40,
    )
}

/// Samples of one kind, with the kind.
fn samples() -> impl Strategy<Value = (ReadingKind, Vec<Sample>)> {
    prop_oneof![
        power_samples().prop_map(|s| (ReadingKind::PowerSample, s)),
        energy_samples().prop_map(|s| (ReadingKind::EnergyCounter, s)),
    ]
}

/// The same samples with time strictly increasing (what a replay needs).
fn increasing(mut samples: Vec<Sample>) -> Vec<Sample> {
    samples.sort_by_key(|s| s.t_ns);
    samples.dedup_by_key(|s| s.t_ns);
    samples
}

/// The text the writer writes for `samples`.
fn written(kind: ReadingKind, samples: &[Sample]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.csv");
    write_log(&file, kind, samples).unwrap();
    std::fs::read_to_string(&file).unwrap()
}

/// A log error names the file and, where it concerns a line, the line.
fn check_log_error(e: &LogError) {
    let msg = e.to_string();
    assert!(msg.starts_with(PATH), "{msg}");
    match e {
        LogError::Header { line, .. }
        | LogError::Field { line, .. }
        | LogError::Row { line, .. } => {
            assert!(msg.starts_with(&format!("{PATH}:{line}:")), "{msg}");
            assert!(*line >= 1);
        }
        LogError::Io { .. } | LogError::KindMismatch { .. } => panic!("not a parse error: {msg}"),
    }
}

fn check_replay_error(e: &ReplayError) {
    let msg = e.to_string();
    assert!(msg.starts_with(PATH), "{msg}");
    match e {
        ReplayError::Header { line, .. }
        | ReplayError::Field { line, .. }
        | ReplayError::Row { line, .. }
        | ReplayError::Encoding { line, .. } => {
            assert!(msg.starts_with(&format!("{PATH}:{line}:")), "{msg}");
        }
        ReplayError::Log(e) => check_log_error(e),
        ReplayError::Empty { .. } => {}
        ReplayError::Io { .. } => panic!("not a parse error: {msg}"),
    }
}

/// What a parsed replay must be, whatever the input: rows, time strictly
/// increasing, finite watts; and reading it anywhere never panics.
fn check_replay(bytes: &[u8], probes: &[u64]) {
    match replay::parse_bytes(bytes, path()) {
        Ok(r) => {
            assert!(!r.rows.is_empty());
            for w in r.rows.windows(2) {
                assert!(w[0].t_ns < w[1].t_ns, "time must increase");
            }
            for row in &r.rows {
                if let Reading::Power {
                    watts,
                    volts,
                    amps,
                    power_factor,
                } = row.reading
                {
                    for v in [Some(watts), volts, amps, power_factor]
                        .into_iter()
                        .flatten()
                    {
                        assert!(v.is_finite(), "{v}");
                    }
                }
            }
            let end = r.end_ns();
            let mut times: Vec<u64> = probes.to_vec();
            times.extend(r.rows.iter().map(|s| s.t_ns));
            times.extend(r.rows.iter().map(|s| s.t_ns.saturating_add(1)));
            times.extend(r.rows.iter().map(|s| s.t_ns.saturating_sub(1)));
            for t in times {
                match r.reading_at(t) {
                    Some(Reading::Power { watts, .. }) => assert!(watts.is_finite()),
                    Some(Reading::Energy { .. }) => {}
                    None => assert!(t > end),
                }
            }
            let _ = r.duration_s();
            let _ = ReplayMeter::from_replay(r, Scope::Node);
        }
        Err(e) => check_replay_error(&e),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn written_logs_read_back_as_the_same_samples((kind, samples) in samples()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.csv");
        write_log(&file, kind, &samples).unwrap();
        let back = read_log(&file).unwrap();
        prop_assert_eq!(back.kind, kind);
        prop_assert_eq!(&back.samples, &samples);
        prop_assert!(!back.truncated_tail);

        // The streaming writer writes the same file.
        let streamed = dir.path().join("s.csv");
        let mut w = PowerLogWriter::create(&streamed, kind).unwrap();
        for s in &samples {
            w.append(s).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        prop_assert_eq!(std::fs::read(&streamed).unwrap(), std::fs::read(&file).unwrap());

        // A CRLF copy (a log passed through a Windows tool) reads the same.
        let crlf = std::fs::read_to_string(&file).unwrap().replace('\n', "\r\n");
        prop_assert_eq!(parse_log(&crlf, path()).unwrap().samples, samples);
    }

    #[test]
    fn written_logs_with_increasing_time_replay_as_the_same_rows((kind, samples) in samples()) {
        let samples = increasing(samples);
        let text = written(kind, &samples);
        match replay::parse(&text, path()) {
            Ok(r) => {
                prop_assert_eq!(r.kind, kind);
                prop_assert_eq!(r.format, match kind {
                    ReadingKind::PowerSample => Format::PowerLog,
                    ReadingKind::EnergyCounter => Format::CounterLog,
                });
                prop_assert_eq!(&r.rows, &samples);
            }
            Err(ReplayError::Empty { .. }) => prop_assert!(samples.is_empty()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn arbitrary_text_as_a_power_log_never_panics_and_errors_name_file_and_line(text in log_text()) {
        match parse_log(&text, path()) {
            Ok(log) => {
                for s in &log.samples {
                    if let Reading::Power { watts, .. } = s.reading {
                        prop_assert!(watts.is_finite());
                    }
                }
            }
            Err(e) => check_log_error(&e),
        }
    }

    #[test]
    fn mutated_logs_never_panic_and_errors_name_file_and_line(
        (kind, samples) in samples(),
        muts in mutations(1..4),
    ) {
        let bytes = mutate(&written(kind, &samples), &muts);
        let text = String::from_utf8_lossy(&bytes);
        match parse_log(&text, path()) {
            Ok(log) => {
                for s in &log.samples {
                    if let Reading::Power { watts, volts, amps, power_factor } = s.reading {
                        for v in [Some(watts), volts, amps, power_factor].into_iter().flatten() {
                            prop_assert!(v.is_finite(), "{v}");
                        }
                    }
                }
            }
            Err(e) => check_log_error(&e),
        }
        check_replay(&bytes, &[0, u64::MAX]);
    }

    #[test]
    fn a_log_cut_anywhere_reads_its_whole_lines_back((kind, samples) in samples(), cut in any::<prop::sample::Index>()) {
        let text = written(kind, &samples);
        let cut = cut.index(text.len() + 1);
        let cut_text = &text[..cut];
        let whole_lines = cut_text.matches('\n').count().saturating_sub(1);
        match parse_log(cut_text, path()) {
            Ok(log) => {
                // Every whole line is read back exactly; a cut last line is
                // dropped and flagged, even where what is left still reads
                // as a row (`230.5` cut to `23`).
                prop_assert_eq!(&log.samples[..], &samples[..whole_lines]);
                let tail = &cut_text[cut_text.rfind('\n').map_or(cut_text.len(), |i| i + 1)..];
                prop_assert_eq!(log.truncated_tail, !tail.trim().is_empty());
            }
            Err(e) => {
                // Only a header cut short is an error.
                prop_assert!(matches!(e, LogError::Header { line: 1, .. }), "{}", e);
                prop_assert!(!cut_text.contains('\n'));
            }
        }
        // The replay drops whatever follows the last newline of a log.
        let samples = increasing(samples);
        let text = written(kind, &samples);
        let cut = cut.min(text.len());
        if let Ok(r) = replay::parse_bytes(&text.as_bytes()[..cut], path()) {
            let whole_lines = text[..cut].matches('\n').count().saturating_sub(1);
            prop_assert_eq!(&r.rows[..], &samples[..whole_lines]);
        }
    }

    #[test]
    fn counter_logs_at_the_edges_of_u64_replay_without_overflow(
        rows in prop::collection::vec((edge_u64(), edge_u64(), prop::option::of(edge_u64())), 1..12),
    ) {
        let samples = increasing(
            rows.into_iter()
                .map(|(t_ns, counter_uj, wrap_uj)| Sample { t_ns, reading: Reading::Energy { counter_uj, wrap_uj } })
                .collect(),
        );
        let text = written(ReadingKind::EnergyCounter, &samples);
        check_replay(text.as_bytes(), &[0, 1, u64::MAX / 2, u64::MAX]);
    }

    #[test]
    fn arbitrary_bytes_as_a_replay_never_panic_and_errors_name_file_and_line(
        bytes in hostile_bytes(log_text()),
        probes in prop::collection::vec(any::<u64>(), 0..8),
    ) {
        check_replay(&bytes, &probes);
    }

    #[test]
    fn hand_written_traces_read_the_values_written(
        rows in prop::collection::vec((1u32..1_000_000, 0u32..100_000_000), 1..30),
        energy in any::<bool>(),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        // Time in milliseconds as seconds with three decimals; the value in
        // milli-units with three decimals.
        let mut t_ms = 0u64;
        let mut expected = Vec::new();
        let mut text = String::from(if energy { "t_s,energy_j" } else { "t_s,watts" });
        for (dt, v) in &rows {
            t_ms += u64::from(*dt);
            text.push_str(if crlf { "\r\n" } else { "\n" });
            text.push_str(&format!("{}.{:03},{}.{:03}", t_ms / 1000, t_ms % 1000, v / 1000, v % 1000));
            let t_ns = t_ms * 1_000_000;
            expected.push(Sample {
                t_ns,
                reading: if energy {
                    Reading::Energy { counter_uj: u64::from(*v) * 1000, wrap_uj: None }
                } else {
                    Reading::watts(format!("{}.{:03}", v / 1000, v % 1000).parse().unwrap())
                },
            });
        }
        if final_newline {
            text.push('\n');
        }
        let r = replay::parse(&text, path()).unwrap();
        prop_assert_eq!(r.rows, expected);
        prop_assert_eq!(r.dropped_tail_bytes, 0);
    }

    #[test]
    fn hostile_values_in_hand_written_traces_are_refused_with_file_line_and_field(
        value in prop_oneof![
            Just("NaN"), Just("-NaN"), Just("inf"), Just("-inf"), Just("1e400"), Just("-1"),
            Just("-0.5"), Just("1e300"), Just("1e20"), Just("abc"), Just(""),
        ],
        energy in any::<bool>(),
        in_time in any::<bool>(),
    ) {
        let header = if energy { "t_s,energy_j" } else { "t_s,watts" };
        let row = if in_time { format!("{value},1") } else { format!("1,{value}") };
        let text = format!("{header}\n0,0\n{row}\n2,2\n");
        match replay::parse(&text, path()) {
            Ok(r) => {
                // Only a finite power passes (negative: power fed back).
                prop_assert!(
                    !in_time && !energy && ["-1", "-0.5", "1e300", "1e20"].contains(&value),
                    "{} accepted: {:?}", value, r.rows
                );
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with(&format!("{PATH}:3: field `")), "{}", msg);
            }
        }
    }
}

#[test]
fn a_one_megabyte_line_is_an_error_naming_its_line() {
    let text = format!("t_s,watts\n0,1\n1,{}\n", "9".repeat(1 << 20));
    let err = replay::parse(&text, path()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{PATH}:3: field `watts`")),
        "{err}"
    );
    let text = format!("t_ns,watts\n0,1\n1,{}\n", "1,".repeat(1 << 19));
    let err = parse_log(&text, path()).unwrap_err();
    assert!(matches!(err, LogError::Row { line: 3, .. }), "{err}");
}

#[test]
fn non_utf8_names_its_line() {
    let err = replay::parse_bytes(b"t_s,watts\n0,1\n1,\xff\n", path()).unwrap_err();
    assert!(
        matches!(err, ReplayError::Encoding { line: 3, .. }),
        "{err}"
    );
}

#[test]
fn negative_and_too_large_counters_are_refused() {
    for bad in ["-1", "18446744073709551616", "NaN", "1e3"] {
        let text = format!("t_ns,counter_uj,wrap_uj\n0,1,\n1,{bad},\n2,3,\n");
        let err = parse_log(&text, path()).unwrap_err();
        assert!(
            matches!(err, LogError::Field { line: 3, ref field, .. } if field == "counter_uj"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_replay_meter_opens_a_file_and_refuses_a_hostile_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "t_s,watts\r\n0,10\r\n3600,10\r\n").unwrap();
    let mut m = ReplayMeter::open(&good, Scope::Node).unwrap();
    assert_eq!(m.read().unwrap(), Reading::watts(10.0));
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, b"t_s,watts\n0,10\n1,NaN\n").unwrap();
    let err = ReplayMeter::open(&bad, Scope::Node).unwrap_err();
    assert!(err.to_string().contains("bad.csv:3"), "{err}");
}

/// Found by `hostile_values_in_hand_written_traces_are_refused_with_file_line_and_field`:
/// a time or energy past what u64 nanoseconds or microjoules hold was
/// saturated to u64::MAX and replayed as if it were the value written.
#[test]
fn times_and_energies_too_large_to_hold_are_refused() {
    for (header, row, field) in [
        ("t_s,watts", "1e300,1", "t_s"),
        ("t_s,watts", "18446744074,1", "t_s"),
        ("t_s,energy_j", "1,1e300", "energy_j"),
        ("t_s,energy_j", "1,18446744073709.56", "energy_j"),
    ] {
        let text = format!("{header}\n0,0\n{row}\n");
        let err = replay::parse(&text, path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{PATH}:3: field `{field}`: ")),
            "{row}: {err}"
        );
    }
    // Just inside the limits still reads.
    let r = replay::parse("t_s,energy_j\n0,0\n18446744073,18446744073709\n", path()).unwrap();
    assert_eq!(r.rows.len(), 2);
}

/// Interpolating a counter log whose counter climbs to near u64::MAX
/// between rows far apart must not overflow.
#[test]
fn a_counter_near_its_type_limit_interpolates_without_overflow() {
    let text = format!(
        "t_ns,counter_uj,wrap_uj\n0,1000,\n{},{},\n",
        1u64 << 63,
        u64::MAX
    );
    let r = replay::parse(&text, path()).unwrap();
    for t in [1, (1u64 << 62), (1u64 << 63) - 1, 1u64 << 63] {
        match r.reading_at(t) {
            Some(Reading::Energy { counter_uj, .. }) => assert!(counter_uj >= 1000, "{t}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Found by `a_log_cut_anywhere_reads_its_whole_lines_back`: a written log's
/// last line cut short by a crash that still read as a row was taken as a
/// sample, its number cut short (`230.5` read as `23`, a wrap range cut to
/// a tenth).
#[test]
fn a_written_log_cut_inside_a_number_drops_the_cut_line() {
    let log = parse_log(
        "t_ns,watts,volts,amps,power_factor\n0,230.5,,,\n1,230.5,,,",
        path(),
    )
    .unwrap();
    assert_eq!(log.samples.len(), 1);
    assert!(log.truncated_tail);
    let log = parse_log(
        "t_ns,counter_uj,wrap_uj\n0,10,262143328850\n1,12,26214332885",
        path(),
    )
    .unwrap();
    assert_eq!(log.samples.len(), 1);
    assert!(log.truncated_tail);
    // A hand-written file's last line needs no newline.
    let log = parse_log("t_ns,watts\n0,10\n1,12.5", path()).unwrap();
    assert_eq!(log.samples.len(), 2);
    assert!(!log.truncated_tail);
}
