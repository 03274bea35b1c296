//! The Prometheus text exposition format (version 0.0.4), strictly enough
//! that a page we misread fails loudly with its line number instead of
//! yielding a wrong number.
//!
//! A line is blank, a comment (`#` …; `# HELP NAME TEXT` and
//! `# TYPE NAME TYPE` are checked), or a sample:
//! `NAME[{LABEL="VALUE",…}] VALUE [TIMESTAMP_MS]`. Label values may hold
//! `\\`, `\"` and `\n` escapes; values are Go floats (`NaN`, `+Inf`, `-Inf`,
//! `1.5e3`). OpenMetrics' `# EOF` is a comment here.
//!
//! Not from crates.io: `prometheus-parse` (0.2) reads labels with a regex
//! that stops at the first `}` (a `}` inside a quoted value breaks it),
//! skips lines it cannot read without saying which, and brings regex and
//! chrono along. This is a hand-written scanner, linear in the page.

use std::borrow::Cow;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// Label names and unescaped values, in page order.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A metric family's declared type (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One line of a page, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// Blank, or a comment other than HELP and TYPE.
    Empty,
    Help {
        name: &'a str,
        text: &'a str,
    },
    Type {
        name: &'a str,
        kind: MetricType,
    },
    Sample(Sample<'a>),
}

/// Why a line could not be read: its number (from 1), what was expected,
/// and a short, printable excerpt of what was there instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected {expected}, found `{found}`")]
pub struct ParseError {
    pub line: usize,
    pub expected: &'static str,
    pub found: String,
}

/// Longest excerpt of a bad line quoted in an error.
const EXCERPT_CHARS: usize = 60;

fn excerpt(rest: &str) -> String {
    let mut out: String = rest
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if rest.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("end of line");
    }
    out
}

/// Reads every line of `text` in order, stopping at the first bad one.
/// `each` gets the line number (from 1) and the line.
pub fn for_each_line<'a>(
    text: &'a str,
    mut each: impl FnMut(usize, Line<'a>),
) -> Result<(), ParseError> {
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let read = parse_line(line).map_err(|(expected, at)| ParseError {
            line: i + 1,
            expected,
            found: excerpt(&line[at..]),
        })?;
        each(i + 1, read);
    }
    Ok(())
}

/// What went wrong, and the byte offset in the line where.
type LineError = (&'static str, usize);

/// Reads one line (without its line end).
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    let mut c = Cursor { s: line, at: 0 };
    c.blanks();
    if c.done() {
        return Ok(Line::Empty);
    }
    if c.eat('#') {
        return comment(&mut c);
    }
    let name = c.name("a metric name")?;
    let mut labels = Vec::new();
    let mut spaced = c.blanks();
    if c.eat('{') {
        loop {
            c.blanks();
            if c.eat('}') {
                break;
            }
            let label = c.name("a label name or `}`")?;
            if label.contains(':') {
                return Err(("a label name (no `:`)", c.at - label.len()));
            }
            c.blanks();
            c.expect('=', "`=` after the label name")?;
            c.blanks();
            let value = c.quoted()?;
            if labels.iter().any(|(n, _)| *n == label) {
                return Err(("each label once per sample", c.at));
            }
            labels.push((label, value));
            c.blanks();
            if !c.eat(',') {
                c.blanks();
                c.expect('}', "`,` or `}` after a label value")?;
                break;
            }
        }
        spaced = c.blanks();
    }
    if !spaced {
        return Err(("a space before the value", c.at));
    }
    let value = c.word();
    let value = go_float(value).ok_or(("a number, NaN, +Inf or -Inf", c.at - value.len()))?;
    let timestamp_ms = if c.blanks() && !c.done() {
        let t = c.word();
        Some(
            t.parse::<i64>()
                .map_err(|_| ("a timestamp in milliseconds", c.at - t.len()))?,
        )
    } else {
        None
    };
    c.blanks();
    if !c.done() {
        return Err(("the end of the line", c.at));
    }
    Ok(Line::Sample(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    }))
}

/// `# HELP NAME TEXT`, `# TYPE NAME TYPE`, or any other comment.
fn comment<'a>(c: &mut Cursor<'a>) -> Result<Line<'a>, LineError> {
    c.blanks();
    let keyword = c.word();
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(Line::Empty);
    }
    if !c.blanks() {
        return Err(("a metric name after the keyword", c.at));
    }
    let name = c.name("a metric name after the keyword")?;
    if keyword == "HELP" {
        if !c.done() && !c.blanks() {
            return Err(("a space after the metric name", c.at));
        }
        return Ok(Line::Help {
            name,
            text: &c.s[c.at..],
        });
    }
    if !c.blanks() {
        return Err(("a space and a type after the metric name", c.at));
    }
    let kind_at = c.at;
    let kind = match c.word() {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" | "unknown" => MetricType::Untyped,
        _ => return Err(("counter, gauge, histogram, summary or untyped", kind_at)),
    };
    c.blanks();
    if !c.done() {
        return Err(("the end of the line after the type", c.at));
    }
    Ok(Line::Type { name, kind })
}

/// A float as Go's `strconv.ParseFloat` writes it for Prometheus: decimal
/// or exponent notation, `NaN`, and infinities with an optional sign.
fn go_float(word: &str) -> Option<f64> {
    let body = word.strip_prefix(['+', '-']).unwrap_or(word);
    if body.is_empty() {
        return None;
    }
    let special = ["nan", "inf", "infinity"]
        .iter()
        .any(|s| body.eq_ignore_ascii_case(s));
    let plain = body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if !(special || plain) {
        return None;
    }
    word.parse::<f64>().ok()
}

struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn eat(&mut self, want: char) -> bool {
        if self.peek() == Some(want) {
            self.at += want.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: char, what: &'static str) -> Result<(), LineError> {
        if self.eat(want) {
            Ok(())
        } else {
            Err((what, self.at))
        }
    }

    /// Skips spaces and tabs; whether there were any.
    fn blanks(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
        self.at > start
    }

    /// Everything up to the next space, tab or the end.
    fn word(&mut self) -> &'a str {
        let start = self.at;
        while !matches!(self.peek(), None | Some(' ' | '\t')) {
            self.at += self.peek().map_or(1, char::len_utf8);
        }
        &self.s[start..self.at]
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    fn name(&mut self, what: &'static str) -> Result<&'a str, LineError> {
        let start = self.at;
        let bytes = self.s.as_bytes();
        while let Some(&b) = bytes.get(self.at) {
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || b == b':'
                || (self.at > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        if self.at == start {
            return Err((what, start));
        }
        Ok(&self.s[start..self.at])
    }

    /// A double-quoted label value, unescaped.
    fn quoted(&mut self) -> Result<Cow<'a, str>, LineError> {
        self.expect('"', "`\"` opening the label value")?;
        let start = self.at;
        let mut owned: Option<String> = None;
        loop {
            let Some(ch) = self.peek() else {
                return Err(("`\"` closing the label value", self.at));
            };
            let here = self.at;
            self.at += ch.len_utf8();
            match ch {
                '"' => {
                    return Ok(match owned {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(&self.s[start..here]),
                    })
                }
                '\\' => {
                    let unescaped = match self.peek() {
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some('n') => '\n',
                        _ => return Err(("`\\\\`, `\\\"` or `\\n` after `\\`", here)),
                    };
                    self.at += 1;
                    owned
                        .get_or_insert_with(|| self.s[start..here].to_string())
                        .push(unescaped);
                }
                c => {
                    if let Some(s) = owned.as_mut() {
                        s.push(c);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> Sample<'_> {
        match parse_line(line) {
            Ok(Line::Sample(s)) => s,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn samples_with_labels_escapes_and_timestamps() {
        let s = sample(r#"m_total{a="x",b="q\"uo\\te\nd}",} 1.5e3 1395066363000"#);
        assert_eq!(s.name, "m_total");
        assert_eq!(s.label("a"), Some("x"));
        assert_eq!(s.label("b"), Some("q\"uo\\te\nd}"));
        assert_eq!(s.value, 1500.0);
        assert_eq!(s.timestamp_ms, Some(1395066363000));
        let s = sample("up 1");
        assert!(s.labels.is_empty());
        assert_eq!(s.timestamp_ms, None);
        assert!(sample("x{} NaN").value.is_nan());
        assert_eq!(sample("x +Inf").value, f64::INFINITY);
        assert_eq!(sample("x\t-Inf\t").value, f64::NEG_INFINITY);
        assert_eq!(sample("x { a = \"1\" } 2").label("a"), Some("1"));
    }

    #[test]
    fn help_type_and_other_comments() {
        assert_eq!(
            parse_line("# HELP x_total Energy \\n in joules."),
            Ok(Line::Help {
                name: "x_total",
                text: "Energy \\n in joules."
            })
        );
        assert_eq!(
            parse_line("# TYPE x_total counter"),
            Ok(Line::Type {
                name: "x_total",
                kind: MetricType::Counter
            })
        );
        for empty in ["", "   ", "# just a comment", "# EOF", "#"] {
            assert_eq!(parse_line(empty), Ok(Line::Empty), "{empty:?}");
        }
    }

    #[test]
    fn bad_lines_say_what_was_expected_where() {
        let cases: [(&str, &str); 12] = [
            ("x", "a space before the value"),
            ("x 12abc", "a number"),
            ("x 0x1f", "a number"),
            ("x{a=\"1\" 2", "`,` or `}`"),
            ("x{a=1} 2", "`\"` opening"),
            ("x{a=\"1} 2", "`\"` closing"),
            ("x{a=\"\\t\"} 2", "after `\\`"),
            ("x{a=\"1\",a=\"2\"} 3", "each label once"),
            ("x 1 2 3", "the end of the line"),
            ("x 1 soon", "a timestamp"),
            ("9x 1", "a metric name"),
            ("# TYPE x countr", "counter, gauge"),
        ];
        for (line, expected) in cases {
            let err = for_each_line(line, |_, _| {}).expect_err(line);
            assert_eq!(err.line, 1);
            assert!(err.expected.contains(expected), "{line}: {err}");
        }
        let err = for_each_line("a 1\nb 2\r\nc ?\n", |_, _| {}).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.found, "?");
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        let long = format!("x {}", "9".repeat(500) + "z");
        let err = for_each_line(&long, |_, _| {}).unwrap_err();
        assert!(err.found.chars().count() <= EXCERPT_CHARS + 1, "{err}");
        let err = for_each_line("x\u{1b}[2J 1", |_, _| {}).unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }
}
