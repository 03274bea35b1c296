//! Proptest strategies for hostile files and answers, shared so that every
//! parser of outside input is attacked with the same values and the same
//! damage:
//!
//! - [`config`]: the proptest configuration of a hostile-input test;
//! - [`nasty_value`]: what a hostile file holds where a number or a word
//!   belongs (NaN, infinities, -1, numbers past u64 and f64, JSON of the
//!   wrong type, U+FFFD and NUL, a 20 000-character word, any text);
//! - [`hostile_text`] and [`hostile_bytes`]: whole inputs, made of any
//!   characters, separators, line ends, nasty values and the format's own
//!   words;
//! - [`Mutation`], [`mutation`], [`mutations`] and [`mutate`]: structured
//!   damage to a valid line-oriented text (a torn write, duplicated, deleted
//!   and swapped lines, a field or number replaced, a line inserted, CRLF,
//!   bytes that are not UTF-8);
//! - [`timed`]: runs a parse and fails if it took longer than [`BOUND`].

use proptest::collection::SizeRange;
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// The proptest configuration of a hostile-input test: `cases` cases, and
/// failures kept as plain `#[test]`s next to the properties (a regression
/// that a reader can see), not in a `proptest-regressions` file.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// Fixed values that have broken parsers: number spellings Rust, C and JSON
/// disagree on, numbers just past what u64, i64 and f64 hold, JSON of the
/// wrong type where a number belongs, and text that is empty, replaced or
/// NUL.
const NASTY_VALUES: &[&str] = &[
    "NaN",
    "-NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "0",
    "1",
    "-0",
    "-0.0",
    "-1",
    "1e300",
    "1e308",
    "1e309",
    "1e400",
    "1e999",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "0xffffffffffffffff",
    "99999999999999999999999999999999",
    "null",
    "true",
    "\"12\"",
    "[312]",
    "{}",
    "\"\\ud800\"",
    "",
    "\u{FFFD}",
    "\u{0}",
    "\u{FFFD}\u{0}",
];

/// Characters in a 20 000-character word: more than any field of ours holds,
/// small enough that a few hundred cases stay quick.
pub const LONG_WORD_CHARS: usize = 20_000;

/// A value a hostile file might hold where a number or a word belongs: one
/// of [`NASTY_VALUES`], a very long word or number, unclosed JSON nesting,
/// or arbitrary text, integers and floats.
pub fn nasty_value() -> impl Strategy<Value = String> + Clone {
    let mut fixed: Vec<String> = NASTY_VALUES.iter().map(|v| v.to_string()).collect();
    fixed.push("x".repeat(LONG_WORD_CHARS));
    // 400 digits: past f64's range, so "infinite" to a lenient parser.
    fixed.push("9".repeat(400));
    // Deeper than serde_json's recursion limit.
    fixed.push("[".repeat(5_000));
    prop_oneof![
        4 => prop::sample::select(fixed),
        1 => "[0-9.eE+-]{0,30}",
        1 => "\\PC{0,40}",
        1 => any::<String>(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| format!("{n:e}")),
    ]
}

/// What separates fields and lines in the formats we read.
const SEPARATORS: &[&str] = &[",", ";", ":", "=", " ", "\t", "#", "\n", "\r\n", "\r"];

/// Text a hostile file or peer might send: any characters, with
/// separators, line ends, numbers, [`nasty_value`]s and the format's own
/// `words` (its keys and labels) over-represented, so that much of it comes
/// close to valid. Up to 300 pieces.
pub fn hostile_text(words: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    let words = if words.is_empty() { SEPARATORS } else { words };
    let piece = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        3 => prop::sample::select(SEPARATORS).prop_map(String::from),
        2 => prop::sample::select(words).prop_map(String::from),
        1 => "[0-9]{1,20}",
        1 => "[0-9]{1,5}\\.[0-9]{1,5}",
        1 => nasty_value(),
    ];
    prop::collection::vec(piece, 0..300).prop_map(|pieces| pieces.concat())
}

/// Bytes a hostile file might hold: arbitrary bytes, or `text` (a
/// [`hostile_text`], say) with arbitrary bytes, often not UTF-8, spliced in
/// somewhere.
pub fn hostile_bytes(text: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2000),
        (
            text,
            prop::collection::vec(any::<u8>(), 0..50),
            any::<usize>(),
        )
            .prop_map(|(text, junk, at)| {
                let mut bytes = text.into_bytes();
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, junk);
                bytes
            }),
    ]
}

/// One structured change to a valid line-oriented text. Line, field and
/// byte positions are taken modulo what the text has when the change
/// applies, so that every change lands somewhere.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Cut the text at a byte offset (a torn write).
    Truncate(usize),
    /// Copy a line to another place.
    Duplicate {
        line: usize,
        to: usize,
    },
    Delete(usize),
    Swap(usize, usize),
    /// Replace one field of a line (the text between two of
    /// [`FIELD_SEPARATORS`]; the last one is what follows the last
    /// separator) with a value.
    Field {
        line: usize,
        field: usize,
        value: String,
    },
    /// Replace the first number on a line (its digits, signs, points and
    /// exponent) with a value.
    Number {
        line: usize,
        value: String,
    },
    /// Insert a line.
    Insert {
        at: usize,
        line: String,
    },
    /// Windows line ends.
    Crlf,
    /// A byte that is never UTF-8 (0xFF) at a byte offset.
    NotUtf8(usize),
    /// Arbitrary bytes at a byte offset.
    Bytes {
        at: usize,
        bytes: Vec<u8>,
    },
}

/// What separates the fields a [`Mutation::Field`] replaces.
pub const FIELD_SEPARATORS: &[char] = &[':', '=', ',', ';', ' ', '\t'];

/// A [`Mutation`] whose new fields, numbers and lines are [`nasty_value`]s.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    mutation_with(nasty_value())
}

/// A [`Mutation`] whose new fields, numbers and lines come from `values`
/// (a format's own words next to [`nasty_value`]s, say).
pub fn mutation_with(
    values: impl Strategy<Value = String> + Clone + 'static,
) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(line, to)| Mutation::Duplicate { line, to }),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), any::<usize>(), values.clone())
            .prop_map(|(line, field, value)| { Mutation::Field { line, field, value } }),
        (any::<usize>(), values.clone()).prop_map(|(line, value)| Mutation::Number { line, value }),
        (any::<usize>(), values).prop_map(|(at, line)| Mutation::Insert { at, line }),
        Just(Mutation::Crlf),
        any::<usize>().prop_map(Mutation::NotUtf8),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
    ]
}

/// A number of [`mutation`]s in `count` (`0..6`, say: none at all included).
pub fn mutations(count: impl Into<SizeRange>) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), count)
}

/// Applies `changes` to `valid`, in order: first the line changes, then the
/// byte changes ([`Mutation::Truncate`], [`Mutation::NotUtf8`],
/// [`Mutation::Bytes`]) on the joined text, so that a cut or a bad byte can
/// fall anywhere, inside a line end too. A final line end stays if `valid`
/// has one. The result may not be UTF-8.
pub fn mutate(valid: &str, changes: &[Mutation]) -> Vec<u8> {
    let mut lines: Vec<String> = valid.lines().map(str::to_string).collect();
    let mut crlf = false;
    for change in changes {
        match change {
            Mutation::Duplicate { line, to } if !lines.is_empty() => {
                let copy = lines[line % lines.len()].clone();
                lines.insert(to % (lines.len() + 1), copy);
            }
            Mutation::Delete(line) if !lines.is_empty() => {
                lines.remove(line % lines.len());
            }
            Mutation::Swap(a, b) if !lines.is_empty() => {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            Mutation::Field { line, field, value } if !lines.is_empty() => {
                let n = lines.len();
                replace_field(&mut lines[line % n], *field, value);
            }
            Mutation::Number { line, value } if !lines.is_empty() => {
                let n = lines.len();
                replace_first_number(&mut lines[line % n], value);
            }
            Mutation::Insert { at, line } => lines.insert(at % (lines.len() + 1), line.clone()),
            Mutation::Crlf => crlf = true,
            _ => {}
        }
    }
    let line_end = if crlf { "\r\n" } else { "\n" };
    let mut bytes = lines.join(line_end).into_bytes();
    if valid.ends_with('\n') {
        bytes.extend_from_slice(line_end.as_bytes());
    }
    for change in changes {
        match change {
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::NotUtf8(at) => bytes.insert(at % (bytes.len() + 1), 0xFF),
            Mutation::Bytes { at, bytes: junk } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, junk.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

/// Replaces field `field` (modulo their number) of `line`, fields split at
/// [`FIELD_SEPARATORS`], with `value`.
fn replace_field(line: &mut String, field: usize, value: &str) {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            line.char_indices()
                .filter(|(_, c)| FIELD_SEPARATORS.contains(c))
                .map(|(at, c)| at + c.len_utf8()),
        )
        .collect();
    let start = starts[field % starts.len()];
    let end = line[start..]
        .find(FIELD_SEPARATORS)
        .map_or(line.len(), |len| start + len);
    line.replace_range(start..end, value);
}

/// Replaces the first number of `line` (a digit and what follows it of
/// digits, `.`, `e`, `E`, `+` and `-`) with `value`; a line without one is
/// left as it is.
fn replace_first_number(line: &mut String, value: &str) {
    let Some(start) = line.find(|c: char| c.is_ascii_digit()) else {
        return;
    };
    let end = line[start..]
        .find(|c: char| !(c.is_ascii_digit() || ".eE+-".contains(c)))
        .map_or(line.len(), |len| start + len);
    line.replace_range(start..end, value);
}

/// How long one parse of a few KB may take: generous, for a debug build on
/// shared cores; what it catches is a parse that is quadratic or worse.
pub const BOUND: Duration = Duration::from_secs(5);

/// Runs `f` (a parse, named `what` in the failure) and fails the test if it
/// took longer than [`BOUND`].
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took < BOUND, "{what} took {took:?} (bound {BOUND:?})");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn no_change_keeps_the_text() {
        for valid in ["a,1\nb,2\n", "a,1\nb,2", ""] {
            assert_eq!(mutate(valid, &[]), valid.as_bytes());
        }
    }

    #[test]
    fn crlf_changes_every_line_end() {
        assert_eq!(mutate("a\nb\n", &[Mutation::Crlf]), b"a\r\nb\r\n");
    }

    #[test]
    fn field_and_number_replace_what_they_name() {
        let mut line = "t_s,watts: 230.5 W".to_string();
        replace_first_number(&mut line, "NaN");
        assert_eq!(line, "t_s,watts: NaN W");
        let mut line = "a,b c".to_string();
        replace_field(&mut line, 0, "x");
        assert_eq!(line, "x,b c");
        replace_field(&mut line, 5, "y");
        assert_eq!(line, "x,b y", "modulo the 3 fields: the last");
        let mut line = "no number".to_string();
        replace_first_number(&mut line, "1");
        assert_eq!(line, "no number");
    }

    #[test]
    fn mutations_of_empty_text_never_panic() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..200 {
            let changes = mutations(0..8).new_tree(&mut runner).unwrap().current();
            let _ = mutate("", &changes);
            let _ = mutate("\n", &changes);
        }
    }

    #[test]
    fn most_mutations_change_a_valid_text() {
        let valid = "t_s,watts\n0,230.5\n1,231\n2,229.75\n";
        let mut runner = TestRunner::deterministic();
        let changed = (0..200)
            .filter(|_| {
                let changes = mutations(1..4).new_tree(&mut runner).unwrap().current();
                mutate(valid, &changes) != valid.as_bytes()
            })
            .count();
        assert!(changed > 150, "only {changed} of 200 changed the text");
    }

    #[test]
    fn timed_returns_what_the_parse_gave() {
        assert_eq!(timed("nothing", || 7), 7);
    }
}
