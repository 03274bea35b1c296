//! PTDaemon's replies and sample lines, and MLPerf's power timestamps, under
//! hostile input: arbitrary bytes and mutations of valid lines never panic,
//! errors quote the offending line, and what does parse is what was written.

use hostile_input::strategies::{config, hostile_text, mutate, mutation_with, nasty_value};
use mlperf_time::Timestamp;
use power::meter::ptd::{
    format_sample_line, parse_identify_reply, parse_ptd_url, parse_ranges_reply, parse_sample_line,
    parse_sample_log, AutoRange, ChannelSample, PtdError, PtdSample,
};
use proptest::prelude::*;
use std::time::{Duration, SystemTime};

const VALID: &str = "Time,02-29-2024 12:34:56.789,Watts,230.500000,Volts,229.900000,Amps,1.010000,PF,0.990000,Mark,run_1";
const MULTI: &str = "Time,02-29-2024 12:34:56.789,Watts,400.000000,Volts,-1.000000,Amps,-1.000000,PF,-1.000000,Mark,m,Ch1,Watts,200.000000,Volts,230.000000,Amps,0.900000,PF,0.970000,Ch2,Watts,200.000000,Volts,231.000000,Amps,0.910000,PF,0.960000";

/// Words of PTDaemon's replies and sample lines.
const PTD_WORDS: &[&str] = &[
    ",",
    "Time",
    "Watts",
    "Volts",
    "Amps",
    "PF",
    "Mark",
    "Ch",
    "Ch99999999999",
    "Ranges",
    "02-29-2024 12:34:56.789",
];

/// Text a hostile peer might send: any characters, with the protocol's
/// separators, words and number spellings over-represented.
fn ptd_text() -> impl Strategy<Value = String> {
    hostile_text(PTD_WORDS)
}

/// A valid line with its fields damaged: one field a line, so that the
/// line mutations (cut, duplicated, deleted, swapped, replaced by a nasty
/// value or a word of the protocol, inserted, non-UTF-8) apply to fields;
/// then joined back with commas, sometimes with PTDaemon's CRLF line end.
fn mutated_line() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => nasty_value(),
        1 => prop::sample::select(PTD_WORDS).prop_map(String::from),
    ];
    (
        prop_oneof![Just(VALID), Just(MULTI)],
        prop::collection::vec(mutation_with(value), 1..4),
        any::<bool>(),
    )
        .prop_map(|(base, muts, crlf)| {
            let fields = mutate(&base.replace(',', "\n"), &muts);
            let line = String::from_utf8_lossy(&fields).replace('\n', ",");
            if crlf {
                line + "\r\n"
            } else {
                line
            }
        })
}

/// Checks what `parse_sample_line` said about `line`: an error names the
/// line; a sample has only finite numbers.
fn check_sample_line(line: &str) {
    match parse_sample_line(line) {
        Ok(s) => {
            let values = [Some(s.watts), s.volts, s.amps, s.power_factor];
            let channel_values = s
                .channels
                .iter()
                .flat_map(|c| [Some(c.watts), c.volts, c.amps, c.power_factor]);
            for v in values.into_iter().chain(channel_values).flatten() {
                assert!(v.is_finite(), "{line:?} gave {v}");
            }
        }
        Err(PtdError::Malformed { line: quoted, .. }) => {
            assert_eq!(quoted, line, "the error quotes the whole line");
        }
        Err(e) => panic!("unexpected error kind for {line:?}: {e}"),
    }
}

/// A value PTDaemon's six decimals carry exactly: a whole number of
/// micro-units, never exactly -1 (which means "unknown").
fn six_decimals() -> impl Strategy<Value = f64> {
    (-1_000_000_000_000i64..1_000_000_000_000).prop_filter_map("-1 means unknown", |n| {
        (n != -1_000_000).then_some(n as f64 / 1e6)
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 1970 to 9999, whole milliseconds (what the format carries).
    (0u64..253_402_300_799_999)
        .prop_map(|ms| Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

fn channel() -> impl Strategy<Value = ChannelSample> {
    (
        0u32..100,
        six_decimals(),
        prop::option::of(six_decimals()),
        prop::option::of(six_decimals()),
        prop::option::of(six_decimals()),
    )
        .prop_map(
            |(channel, watts, volts, amps, power_factor)| ChannelSample {
                channel,
                watts,
                volts,
                amps,
                power_factor,
            },
        )
}

fn sample() -> impl Strategy<Value = PtdSample> {
    (
        timestamp(),
        six_decimals(),
        prop::option::of(six_decimals()),
        prop::option::of(six_decimals()),
        prop::option::of(six_decimals()),
        "[A-Za-z0-9_.-]{0,20}",
        prop::collection::vec(channel(), 0..4),
    )
        .prop_map(
            |(time, watts, volts, amps, power_factor, mark, channels)| PtdSample {
                time,
                watts,
                volts,
                amps,
                power_factor,
                mark,
                channels,
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_as_a_sample_line_never_panics_and_errors_quote_it(line in ptd_text()) {
        check_sample_line(&line);
    }

    #[test]
    fn mutated_sample_lines_parse_to_finite_values_or_errors_that_quote_them(line in mutated_line()) {
        check_sample_line(&line);
    }

    #[test]
    fn formatted_samples_parse_back_to_the_same_sample(s in sample()) {
        let line = format_sample_line(&s);
        prop_assert_eq!(parse_sample_line(&line).unwrap(), s.clone());
        // PTDaemon's line ends, too.
        prop_assert_eq!(parse_sample_line(&format!("{line}\r\n")).unwrap(), s);
    }

    #[test]
    fn a_sample_log_counts_every_non_blank_line_once(
        lines in prop::collection::vec(prop_oneof![mutated_line(), ptd_text()], 0..20),
        crlf in any::<bool>(),
    ) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let (samples, skipped) = parse_sample_log(&text);
        let non_blank = text.lines().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(samples.len() + skipped, non_blank);
        for s in &samples {
            prop_assert!(s.watts.is_finite());
        }
    }

    #[test]
    fn ranges_replies_parse_only_with_known_flags_and_positive_ranges(reply in ptd_text()) {
        match parse_ranges_reply(&reply) {
            Ok(r) => {
                for range in [r.amps_range_a, r.volts_range_v].into_iter().flatten() {
                    prop_assert!(range.is_finite() && range > 0.0);
                }
            }
            Err(PtdError::Malformed { line, .. }) => prop_assert_eq!(line, reply),
            Err(e) => panic!("unexpected error kind for {reply:?}: {e}"),
        }
    }

    #[test]
    fn ranges_replies_with_hostile_fields_never_panic(
        fields in prop::collection::vec(
            prop_oneof![Just("NaN"), Just("inf"), Just("-1"), Just("0"), Just("1"), Just("1e309"),
                        Just("-0"), Just("0.5"), Just(""), Just("Ranges")],
            0..8),
    ) {
        let reply = format!("Ranges,{}", fields.join(","));
        if let Ok(r) = parse_ranges_reply(&reply) {
            for flag in [r.amps_auto, r.volts_auto] {
                prop_assert!(matches!(flag, AutoRange::Unknown | AutoRange::Disabled | AutoRange::Enabled));
            }
            for range in [r.amps_range_a, r.volts_range_v].into_iter().flatten() {
                prop_assert!(range.is_finite() && range > 0.0);
            }
        }
    }

    #[test]
    fn identify_replies_never_panic_and_keep_the_reply(reply in ptd_text()) {
        match parse_identify_reply(&reply) {
            Ok(id) => {
                prop_assert_eq!(id.raw, reply.trim());
                prop_assert!(!id.model.is_empty());
            }
            Err(PtdError::Malformed { line, .. }) => prop_assert_eq!(line, reply.trim()),
            Err(e) => panic!("unexpected error kind for {reply:?}: {e}"),
        }
    }

    #[test]
    fn ptd_urls_never_panic_and_errors_quote_the_url(url in ptd_text()) {
        let url = format!("ptd://{url}");
        match parse_ptd_url(&url) {
            Ok((host, port)) => {
                prop_assert!(!host.is_empty());
                prop_assert!(port > 0);
            }
            Err(e) => prop_assert!(e.to_string().contains(&url), "{e}"),
        }
    }

    #[test]
    fn ptd_urls_round_trip(host in "[a-z0-9.-]{1,30}", port in 1u16..) {
        prop_assert_eq!(parse_ptd_url(&format!("ptd://{host}:{port}")).unwrap(), (host, port));
    }

    #[test]
    fn timestamps_parse_back_from_their_display(t in timestamp()) {
        prop_assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn arbitrary_text_as_a_timestamp_never_panics(text in ptd_text()) {
        let _ = Timestamp::parse(&text);
    }

    #[test]
    fn near_miss_timestamps_never_panic(
        month in 0u32..100, day in 0u32..100, year in prop_oneof![0i64..100_000, Just(i64::MAX), Just(-1)],
        hour in 0u32..100, minute in 0u32..100, second in 0u32..100, fraction in "[0-9]{0,9}",
    ) {
        let text = format!("{month:02}-{day:02}-{year:04} {hour:02}:{minute:02}:{second:02}.{fraction}");
        if let (Some(t), true) = (Timestamp::parse(&text), (0..=9999).contains(&year)) {
            // What parses is what was written, to the second.
            let written = t.to_string();
            prop_assert_eq!(&written[..19], &text[..19]);
        }
    }
}

#[test]
fn a_one_megabyte_line_is_refused_with_the_line_quoted() {
    let line = format!("{VALID},{}", "Watts,1,".repeat(128 * 1024));
    match parse_sample_line(&line) {
        Err(PtdError::Malformed { line: quoted, .. }) => assert_eq!(quoted.len(), line.len()),
        other => panic!("{other:?}"),
    }
    let long_mark = format!("{VALID}{}", "x".repeat(1 << 20));
    assert_eq!(
        parse_sample_line(&long_mark).unwrap().mark.len(),
        "run_1".len() + (1 << 20)
    );
}

#[test]
fn nan_and_infinite_watts_are_refused() {
    for bad in ["NaN", "inf", "-inf", "1e309"] {
        let line = VALID.replace("230.500000", bad);
        let err = parse_sample_line(&line).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
}
