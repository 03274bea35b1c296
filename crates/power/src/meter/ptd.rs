//! SPEC PTDaemon over TCP: the wall-power analyzer MLPerf Power requires.
//!
//! PTDaemon drives one power analyzer (a Yokogawa WT310 and the like) and
//! answers a line-based text protocol: one command per line, one reply line
//! (or, for `RL`, a header line and then the sample lines). The facts this file
//! follows are in `shared/reference/ptd-protocol.md`; the replies that MLPerf's
//! tooling compares verbatim (`Hello, PTDaemon here!`, `Range V changed`, ...)
//! are checked verbatim here too, so talking to something that is not PTDaemon
//! fails at once instead of producing numbers of unknown meaning.
//!
//! Three layers, each usable alone:
//! - [`PtdClient`]: the connection and one method per command. Every read has
//!   a deadline, so a daemon that stops answering gives a
//!   [`PtdError::Timeout`] naming the command, never a hang. After a timeout,
//!   a dropped connection or an over-long line the byte stream can no longer
//!   be trusted to be in step, so the client refuses further commands
//!   ([`PtdError::Broken`]) rather than pairing a late reply with the wrong
//!   command.
//! - Parsing ([`parse_sample_line`], [`parse_ranges_reply`],
//!   [`parse_identify_reply`]) as plain functions, used for `RL` replies and
//!   for PTDaemon's own log file alike.
//! - The ranging → testing step of MLPerf Power ([`testing_ranges`]): the
//!   testing run fixes the analyzer's ranges from what the ranging run saw.
//!
//! [`PtdMeter`] puts the client behind the [`Meter`] trait. The client is
//! shared (`Arc<Mutex<_>>`) because PTDaemon serves one connection: the run
//! orchestrator sends `Go`/`Stop`/`SR` on the same connection the sampler
//! thread reads samples from.

use super::{Meter, MeterError, MeterInfo, Provenance, Reading, ReadingKind, Scope};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// PTDaemon's exact answer to `Hello`.
pub const HELLO_REPLY: &str = "Hello, PTDaemon here!";
/// Sampling interval MLPerf uses in `Go,1000,0,{mark}` (one sample a second).
pub const SAMPLE_INTERVAL_MS: u32 = 1000;
/// Testing-run current range = this × the largest current seen while ranging.
pub const AMPS_HEADROOM: f64 = 1.1;
/// Longest reply line accepted; a longer one means the peer is not PTDaemon.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most sample lines accepted in one `RL` reply.
const MAX_RL_SAMPLES: usize = 1_000_000;

/// What went wrong talking to PTDaemon. Each message names the command.
#[derive(Debug, thiserror::Error)]
pub enum PtdError {
    #[error("{addr}: cannot connect: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no reply to `{command}` within {timeout_ms} ms; is PTDaemon busy or hung?")]
    Timeout { command: String, timeout_ms: u128 },
    #[error("PTDaemon closed the connection while answering `{command}`")]
    Closed { command: String },
    #[error("I/O error on `{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PTDaemon rejected `{command}`: {reply}")]
    Daemon { command: String, reply: String },
    #[error("unexpected reply to `{command}`: {reply:?} ({reason})")]
    Unexpected {
        command: String,
        reply: String,
        reason: String,
    },
    #[error("malformed line from PTDaemon: {line:?}: {reason}")]
    Malformed { line: String, reason: String },
    #[error("connection unusable after an earlier failure ({reason}); reconnect")]
    Broken { reason: String },
    #[error("invalid argument: range {range} is not a positive number")]
    InvalidRange { range: f64 },
    #[error(
        "invalid argument: mark `{mark}` must be non-empty and use only letters, digits, `_`, `-`, `.`"
    )]
    InvalidMark { mark: String },
    #[error("invalid argument: command {command:?} must be one non-empty line")]
    InvalidCommand { command: String },
}

/// How long to wait for the daemon. PTDaemon answers most commands at once,
/// but a range change makes the analyzer re-range, which can take seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PtdTimeouts {
    pub connect: Duration,
    pub reply: Duration,
}

impl Default for PtdTimeouts {
    fn default() -> Self {
        PtdTimeouts {
            connect: Duration::from_secs(5),
            reply: Duration::from_secs(10),
        }
    }
}

/// Parses a `ptd://HOST:PORT` address (the form the CLI's `--power` takes).
/// The port is required: it is whatever PTDaemon was started with (`-p`).
pub fn parse_ptd_url(url: &str) -> Result<(String, u16), MeterError> {
    let config = |reason: String| MeterError::Config {
        meter: "ptd".into(),
        reason,
    };
    let rest = url.strip_prefix("ptd://").ok_or_else(|| {
        config(format!(
            "`{url}` is not a PTDaemon address; write ptd://HOST:PORT"
        ))
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
        config(format!(
            "`{url}` has no port; write ptd://HOST:PORT with the port PTDaemon listens on (its -p)"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(config(format!("`{url}` has no host")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| config(format!("`{url}`: port `{port}` is not a number 1-65535")))?;
    if port == 0 {
        return Err(config(format!("`{url}`: port 0 is not a PTDaemon port")));
    }
    Ok((host.to_string(), port))
}

// ---------------------------------------------------------------------------
// Replies and sample lines
// ---------------------------------------------------------------------------

/// A PTDaemon timestamp, `MM-DD-YYYY HH:MM:SS.fff`, in UTC (the MLPerf server
/// runs PTDaemon with `TZ=UTC`). It is the analyzer host's clock, not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PtdTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
}

impl PtdTime {
    /// Parses `MM-DD-YYYY HH:MM:SS.fff` (the fraction may have 1-6 digits;
    /// digits past milliseconds are dropped).
    pub fn parse(text: &str) -> Option<PtdTime> {
        let (date, time) = text.trim().split_once(' ')?;
        let mut d = date.split('-');
        let month: u8 = d.next()?.parse().ok()?;
        let day: u8 = d.next()?.parse().ok()?;
        let year: u16 = d.next()?.parse().ok()?;
        if d.next().is_some() {
            return None;
        }
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut t = hms.split(':');
        let hour: u8 = t.next()?.parse().ok()?;
        let minute: u8 = t.next()?.parse().ok()?;
        let second: u8 = t.next()?.parse().ok()?;
        if t.next().is_some() || frac.is_empty() || frac.len() > 6 {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let millis_text = format!("{frac:0<3}");
        let millisecond: u16 = millis_text[..3].parse().ok()?;
        let valid = (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 61;
        valid.then_some(PtdTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millisecond,
        })
    }

    /// Milliseconds since the Unix epoch (UTC).
    pub fn unix_ms(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        secs * 1000 + i64::from(self.millisecond)
    }
}

impl std::fmt::Display for PtdTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}-{:02}-{:04} {:02}:{:02}:{:02}.{:03}",
            self.month, self.day, self.year, self.hour, self.minute, self.second, self.millisecond
        )
    }
}

fn is_leap(year: u16) -> bool {
    // February has 29 days when 1 March is 29 days after 1 February.
    let y = i64::from(year);
    days_from_civil(y, 3, 1) - days_from_civil(y, 2, 1) == 29
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's method).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One channel's values in a multichannel sample line (`Ch{n},Watts,...`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSample {
    pub channel: u32,
    pub watts: f64,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
    pub power_factor: Option<f64>,
}

/// One analyzer sample, as in an `RL` reply or PTDaemon's log file.
///
/// PTDaemon writes `-1` for a quantity it does not know (a multichannel
/// analyzer's total line has no single voltage); those become `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct PtdSample {
    pub time: PtdTime,
    pub watts: f64,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
    pub power_factor: Option<f64>,
    /// The mark given with `Go` (`notset` before any).
    pub mark: String,
    /// Per-channel values on multichannel analyzers; empty otherwise.
    pub channels: Vec<ChannelSample>,
}

impl PtdSample {
    /// The largest voltage in this sample: the total line's, or the largest
    /// channel's where the total line has none.
    pub fn max_volts(&self) -> Option<f64> {
        self.volts
            .or_else(|| max_of(self.channels.iter().filter_map(|c| c.volts)))
    }

    /// The largest current in this sample, chosen like [`Self::max_volts`].
    pub fn max_amps(&self) -> Option<f64> {
        self.amps
            .or_else(|| max_of(self.channels.iter().filter_map(|c| c.amps)))
    }
}

fn max_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |acc, v| Some(acc.map_or(v, |a: f64| a.max(v))))
}

fn known(value: f64) -> Option<f64> {
    // PTDaemon prints exactly -1 (as -1.000000) for "unknown".
    if value == -1.0 {
        None
    } else {
        Some(value)
    }
}

/// Parses one sample line:
/// `Time,MM-DD-YYYY HH:MM:SS.fff,Watts,{w},Volts,{v},Amps,{a},PF,{pf},Mark,{mark}`
/// optionally followed by `Ch{n},Watts,{w},Volts,{v},Amps,{a},PF,{pf}` groups.
pub fn parse_sample_line(line: &str) -> Result<PtdSample, PtdError> {
    let malformed = |reason: &str| PtdError::Malformed {
        line: line.to_string(),
        reason: reason.to_string(),
    };
    let line_text = line.trim_end_matches(['\r', '\n']);
    let fields: Vec<&str> = line_text.split(',').collect();
    if fields.first().map(|f| f.trim()) != Some("Time") || fields.len() < 2 {
        return Err(malformed("does not start with `Time,`"));
    }
    let time = PtdTime::parse(fields[1])
        .ok_or_else(|| malformed("time is not MM-DD-YYYY HH:MM:SS.fff"))?;

    let mut total = Group::default();
    let mut mark: Option<String> = None;
    let mut channels: Vec<ChannelSample> = Vec::new();
    let mut current: Option<(u32, Group)> = None;
    let mut i = 2;
    while i < fields.len() {
        let key = fields[i].trim();
        if let Some(n) = key.strip_prefix("Ch") {
            let channel: u32 = n
                .parse()
                .map_err(|_| malformed("channel label is not Ch{number}"))?;
            if let Some((ch, group)) = current.take() {
                channels.push(group.finish(ch).map_err(|r| malformed(&r.to_string()))?);
            }
            current = Some((channel, Group::default()));
            i += 1;
            continue;
        }
        let value = fields
            .get(i + 1)
            .map(|v| v.trim())
            .ok_or_else(|| malformed(&format!("`{key}` has no value")))?;
        if key == "Mark" {
            if current.is_some() {
                return Err(malformed("`Mark` inside a channel group"));
            }
            mark = Some(value.to_string());
        } else {
            let number: f64 = value
                .parse()
                .map_err(|_| malformed(&format!("`{key}` value `{value}` is not a number")))?;
            if !number.is_finite() {
                return Err(malformed(&format!("`{key}` value `{value}` is not finite")));
            }
            let group = match current.as_mut() {
                Some((_, g)) => g,
                None => &mut total,
            };
            group
                .set(key, number)
                .map_err(|r| malformed(&r.to_string()))?;
        }
        i += 2;
    }
    if let Some((ch, group)) = current.take() {
        channels.push(group.finish(ch).map_err(|r| malformed(&r.to_string()))?);
    }
    let mark = mark.ok_or_else(|| malformed("no `Mark` field"))?;
    let watts = total.watts.ok_or_else(|| malformed("no `Watts` field"))?;
    Ok(PtdSample {
        time,
        watts,
        volts: total.volts.and_then(known),
        amps: total.amps.and_then(known),
        power_factor: total.pf.and_then(known),
        mark,
        channels,
    })
}

#[derive(Default)]
struct Group {
    watts: Option<f64>,
    volts: Option<f64>,
    amps: Option<f64>,
    pf: Option<f64>,
}

/// What is wrong with one field group of a sample line.
#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error("unknown field `{field}`")]
    UnknownField { field: String },
    #[error("`{field}` given twice")]
    Twice { field: String },
    #[error("channel {channel} has no `Watts`")]
    NoWatts { channel: u32 },
}

impl Group {
    fn set(&mut self, key: &str, value: f64) -> Result<(), GroupError> {
        let slot = match key {
            "Watts" => &mut self.watts,
            "Volts" => &mut self.volts,
            "Amps" => &mut self.amps,
            "PF" => &mut self.pf,
            other => {
                return Err(GroupError::UnknownField {
                    field: other.into(),
                })
            }
        };
        if slot.replace(value).is_some() {
            return Err(GroupError::Twice { field: key.into() });
        }
        Ok(())
    }

    fn finish(self, channel: u32) -> Result<ChannelSample, GroupError> {
        Ok(ChannelSample {
            channel,
            watts: self.watts.ok_or(GroupError::NoWatts { channel })?,
            volts: self.volts.and_then(known),
            amps: self.amps.and_then(known),
            power_factor: self.pf.and_then(known),
        })
    }
}

/// Every sample line of a PTDaemon log file (or `spl.txt`) in order; lines
/// that are not sample lines (PTDaemon's status messages) are skipped, and
/// their count is returned so a caller can tell an empty log from a wrong file.
pub fn parse_sample_log(text: &str) -> (Vec<PtdSample>, usize) {
    let mut samples = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_sample_line(line) {
            Ok(s) => samples.push(s),
            Err(_) => skipped += 1,
        }
    }
    (samples, skipped)
}

/// Writes a sample in PTDaemon's log and `RL` form (the inverse of
/// [`parse_sample_line`]): six decimals, `-1.000000` for an unknown quantity,
/// channel groups after the mark. Used by joulebench's virtual analyzer.
pub fn format_sample_line(sample: &PtdSample) -> String {
    let num = |v: Option<f64>| format!("{:.6}", v.unwrap_or(-1.0));
    let mut line = format!(
        "Time,{},Watts,{:.6},Volts,{},Amps,{},PF,{},Mark,{}",
        sample.time,
        sample.watts,
        num(sample.volts),
        num(sample.amps),
        num(sample.power_factor),
        sample.mark
    );
    for c in &sample.channels {
        line.push_str(&format!(
            ",Ch{},Watts,{:.6},Volts,{},Amps,{},PF,{}",
            c.channel,
            c.watts,
            num(c.volts),
            num(c.amps),
            num(c.power_factor)
        ));
    }
    line
}

/// An analyzer range state as `RR` reports it: auto-ranging on/off/unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoRange {
    Unknown,
    Disabled,
    Enabled,
}

/// The reply to `RR`: `Ranges,{amp_autorange},{amp_range},{volt_autorange},{volt_range}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranges {
    pub amps_auto: AutoRange,
    /// The fixed current range in amperes, if known.
    pub amps_range_a: Option<f64>,
    pub volts_auto: AutoRange,
    /// The fixed voltage range in volts, if known.
    pub volts_range_v: Option<f64>,
}

impl Ranges {
    /// The settings that restore these ranges after a run: the fixed range
    /// where auto-ranging was off and the range is known, `Auto` otherwise.
    pub fn restore_settings(&self) -> (RangeSetting, RangeSetting) {
        let pick = |auto: AutoRange, range: Option<f64>| match (auto, range) {
            (AutoRange::Disabled, Some(r)) if r > 0.0 => RangeSetting::Fixed(r),
            _ => RangeSetting::Auto,
        };
        (
            pick(self.volts_auto, self.volts_range_v),
            pick(self.amps_auto, self.amps_range_a),
        )
    }
}

/// Parses the reply to `RR`.
pub fn parse_ranges_reply(reply: &str) -> Result<Ranges, PtdError> {
    let malformed = |reason: &str| PtdError::Malformed {
        line: reply.to_string(),
        reason: reason.to_string(),
    };
    let f: Vec<&str> = reply.trim().split(',').map(str::trim).collect();
    if f.len() != 5 || f[0] != "Ranges" {
        return Err(malformed(
            "expected Ranges,{amp_autorange},{amp_range},{volt_autorange},{volt_range}",
        ));
    }
    let auto = |s: &str| -> Result<AutoRange, PtdError> {
        let v = s.parse::<f64>().ok();
        if v == Some(1.0) {
            Ok(AutoRange::Enabled)
        } else if v == Some(0.0) {
            Ok(AutoRange::Disabled)
        } else if v == Some(-1.0) {
            Ok(AutoRange::Unknown)
        } else {
            Err(malformed(&format!(
                "autorange flag `{s}` is not -1, 0 or 1"
            )))
        }
    };
    let range = |s: &str| -> Result<Option<f64>, PtdError> {
        let v: f64 = s
            .parse()
            .map_err(|_| malformed(&format!("range `{s}` is not a number")))?;
        Ok((v.is_finite() && v > 0.0).then_some(v))
    };
    Ok(Ranges {
        amps_auto: auto(f[1])?,
        amps_range_a: range(f[2])?,
        volts_auto: auto(f[3])?,
        volts_range_v: range(f[4])?,
    })
}

/// What `Identify` says: the analyzer model first, PTDaemon's version in a
/// `version=` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtdIdentity {
    /// The whole reply, kept for the logs.
    pub raw: String,
    /// Field 0, e.g. `WT310`.
    pub model: String,
    /// The text after `version=`, e.g. `1.11.1-...`, if present.
    pub version: Option<String>,
}

/// Parses the reply to `Identify`.
pub fn parse_identify_reply(reply: &str) -> Result<PtdIdentity, PtdError> {
    let raw = reply.trim().to_string();
    let mut fields = raw.split(',').map(str::trim);
    let model = fields.next().unwrap_or_default().to_string();
    if model.is_empty() || model.starts_with("Error") {
        return Err(PtdError::Malformed {
            line: raw.clone(),
            reason: "no analyzer model in the first field".into(),
        });
    }
    let version = fields
        .find_map(|f| f.strip_prefix("version="))
        .map(str::to_string);
    Ok(PtdIdentity {
        raw,
        model,
        version,
    })
}

// ---------------------------------------------------------------------------
// Ranging -> testing
// ---------------------------------------------------------------------------

/// The largest current range of a Yokogawa model, in amperes (from the MLPerf
/// power tooling's table). `None` for a model we have no figure for.
///
/// The model is matched by its `WT` number anywhere in the text, so `WT310`,
/// `YokogawaWT310` and `WT310E` all match, and `WT5000` is not taken for `WT500`.
pub fn max_current_range_a(model: &str) -> Option<f64> {
    let upper = model.to_ascii_uppercase();
    let start = upper.find("WT")?;
    let digits: String = upper[start + 2..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    match digits.as_str() {
        "210" | "310" | "330" => Some(20.0),
        "500" => Some(40.0),
        "1800" => Some(50.0),
        "5000" => Some(30.0),
        _ => None,
    }
}

/// Ranges for the testing run, derived from the ranging run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestingRanges {
    /// The largest voltage seen while ranging.
    pub volts_v: f64,
    /// [`AMPS_HEADROOM`] × the largest current seen while ranging, capped.
    pub amps_a: f64,
    /// True when the cap (the model's largest current range) applied.
    pub amps_capped: bool,
}

impl TestingRanges {
    /// The two `SR` settings to send before the testing run.
    pub fn settings(&self) -> (RangeSetting, RangeSetting) {
        (
            RangeSetting::Fixed(self.volts_v),
            RangeSetting::Fixed(self.amps_a),
        )
    }
}

/// Why testing ranges could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum RangingError {
    #[error(
        "no samples with mark `{mark}` carry a positive voltage and current \
         (did the ranging run last at least one sample interval?)"
    )]
    NoSamples { mark: String },
}

/// MLPerf's ranging → testing rule: volts = the largest voltage of the
/// samples marked `ranging_mark`, amps = 1.1 × their largest current, capped
/// at `max_current_a` (see [`max_current_range_a`]) when given.
pub fn testing_ranges(
    samples: &[PtdSample],
    ranging_mark: &str,
    max_current_a: Option<f64>,
) -> Result<TestingRanges, RangingError> {
    let marked = samples.iter().filter(|s| s.mark == ranging_mark);
    let (mut volts, mut amps) = (None::<f64>, None::<f64>);
    for s in marked {
        if let Some(v) = s.max_volts() {
            volts = Some(volts.map_or(v, |m| m.max(v)));
        }
        if let Some(a) = s.max_amps() {
            amps = Some(amps.map_or(a, |m| m.max(a)));
        }
    }
    ranges_from_maxima(volts, amps, max_current_a).ok_or_else(|| RangingError::NoSamples {
        mark: ranging_mark.to_string(),
    })
}

/// The testing ranges from the largest voltage and current seen while
/// ranging (however they were collected: `RL` replies or our own power log).
/// `None` without a positive voltage and current.
pub fn ranges_from_maxima(
    max_volts: Option<f64>,
    max_amps: Option<f64>,
    max_current_a: Option<f64>,
) -> Option<TestingRanges> {
    match (max_volts, max_amps) {
        (Some(v), Some(a)) if v > 0.0 && a > 0.0 => {
            let wanted = a * AMPS_HEADROOM;
            let (amps_a, amps_capped) = match max_current_a {
                Some(cap) if wanted > cap => (cap, true),
                _ => (wanted, false),
            };
            Some(TestingRanges {
                volts_v: v,
                amps_a,
                amps_capped,
            })
        }
        _ => None,
    }
}

/// One analyzer range setting for `SR`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeSetting {
    Auto,
    /// A fixed range: volts for `SR,V`, amperes for `SR,A`.
    Fixed(f64),
}

impl RangeSetting {
    /// The text sent after `SR,V,` or `SR,A,`. Fixed values keep at most six
    /// decimals (what PTDaemon's samples carry), without trailing zeros.
    pub fn to_command_value(self) -> String {
        match self {
            RangeSetting::Auto => "Auto".to_string(),
            RangeSetting::Fixed(v) => {
                let text = format!("{v:.6}");
                let text = text.trim_end_matches('0').trim_end_matches('.');
                text.to_string()
            }
        }
    }
}

/// Which range `SR` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeQuantity {
    Volts,
    Amps,
}

impl RangeQuantity {
    fn letter(self) -> char {
        match self {
            RangeQuantity::Volts => 'V',
            RangeQuantity::Amps => 'A',
        }
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// A connection to PTDaemon. Not thread-safe by itself; share it as
/// [`SharedPtdClient`].
#[derive(Debug)]
pub struct PtdClient {
    addr: String,
    reader: BufReader<TcpStream>,
    timeouts: PtdTimeouts,
    broken: Option<String>,
    /// The sample-reading command this daemon accepted (`RL,*,*`, `RL` or
    /// `DC-RL`), learnt on first use.
    rl_command: Option<&'static str>,
    /// Every exchange since [`PtdClient::record_transcript`], when recording.
    transcript: Option<Vec<PtdExchange>>,
}

/// One command and the one reply line it got, as MLPerf's server records them
/// (`ptd_messages` in `server.json`). For `RL` the reply is the header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtdExchange {
    pub command: String,
    pub reply: String,
}

/// A client shared by the meter's sampling thread and the run orchestrator.
pub type SharedPtdClient = Arc<Mutex<PtdClient>>;

/// What [`PtdClient::start_session`] learnt, in PTDaemon's required order.
#[derive(Debug, Clone, PartialEq)]
pub struct PtdGreeting {
    pub identity: PtdIdentity,
    /// The ranges before we changed anything: restore them when done.
    pub initial_ranges: Ranges,
}

impl PtdClient {
    /// Opens a TCP connection; sends nothing.
    pub fn connect(host: &str, port: u16, timeouts: PtdTimeouts) -> Result<PtdClient, PtdError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let connect_err = |reason: String| PtdError::Connect {
            addr: addr.clone(),
            reason,
        };
        let candidates: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve host: {e}")))?
            .collect();
        if candidates.is_empty() {
            return Err(connect_err("host resolves to no address".into()));
        }
        let mut last = String::new();
        for sock in candidates {
            match TcpStream::connect_timeout(&sock, timeouts.connect) {
                Ok(stream) => {
                    let io = |e: std::io::Error| connect_err(e.to_string());
                    stream.set_nodelay(true).map_err(io)?;
                    stream.set_write_timeout(Some(timeouts.reply)).map_err(io)?;
                    return Ok(PtdClient {
                        addr,
                        reader: BufReader::new(stream),
                        timeouts,
                        broken: None,
                        rl_command: None,
                        transcript: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                    last = format!("no answer within {} ms", timeouts.connect.as_millis());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(connect_err(last))
    }

    /// The address this client talks to, as `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The session opening MLPerf's checker expects: `Hello`, `Identify`, then
    /// `RR` as the third command.
    pub fn start_session(&mut self) -> Result<PtdGreeting, PtdError> {
        self.hello()?;
        let identity = self.identify()?;
        let initial_ranges = self.read_ranges()?;
        Ok(PtdGreeting {
            identity,
            initial_ranges,
        })
    }

    /// `Hello`; fails unless the peer answers exactly as PTDaemon does.
    pub fn hello(&mut self) -> Result<(), PtdError> {
        let reply = self.request("Hello")?;
        expect_exact("Hello", &reply, HELLO_REPLY)
    }

    /// `Identify`.
    pub fn identify(&mut self) -> Result<PtdIdentity, PtdError> {
        let reply = self.request("Identify")?;
        reject_error("Identify", &reply)?;
        parse_identify_reply(&reply)
    }

    /// `RR`: the analyzer's current ranges.
    pub fn read_ranges(&mut self) -> Result<Ranges, PtdError> {
        let reply = self.request("RR")?;
        reject_error("RR", &reply)?;
        parse_ranges_reply(&reply)
    }

    /// `SR,V,...` or `SR,A,...`. Any reply but the exact
    /// `Range V changed` / `Range A changed` is an error.
    pub fn set_range(
        &mut self,
        quantity: RangeQuantity,
        setting: RangeSetting,
    ) -> Result<(), PtdError> {
        if let RangeSetting::Fixed(v) = setting {
            if !(v.is_finite() && v > 0.0) {
                return Err(PtdError::InvalidRange { range: v });
            }
        }
        let letter = quantity.letter();
        let command = format!("SR,{letter},{}", setting.to_command_value());
        let reply = self.request(&command)?;
        if reply.contains("Error") {
            return Err(PtdError::Daemon { command, reply });
        }
        expect_exact(&command, &reply, &format!("Range {letter} changed"))
    }

    /// Auto-ranging for both voltage and current, as MLPerf's ranging run
    /// sets it (`SR,V,Auto`, then `SR,A,Auto`).
    pub fn set_auto_ranges(&mut self) -> Result<(), PtdError> {
        self.set_range(RangeQuantity::Volts, RangeSetting::Auto)?;
        self.set_range(RangeQuantity::Amps, RangeSetting::Auto)
    }

    /// Fixed ranges for the testing run.
    pub fn set_testing_ranges(&mut self, ranges: &TestingRanges) -> Result<(), PtdError> {
        let (v, a) = ranges.settings();
        self.set_range(RangeQuantity::Volts, v)?;
        self.set_range(RangeQuantity::Amps, a)
    }

    /// `Go,1000,0,{mark}`: start logging one sample a second, tagged `mark`.
    /// The mark may hold letters, digits, `_`, `-` and `.` only, so it cannot
    /// break the comma-separated log format.
    pub fn go(&mut self, mark: &str) -> Result<(), PtdError> {
        let mark_ok = !mark.is_empty()
            && mark
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !mark_ok {
            return Err(PtdError::InvalidMark { mark: mark.into() });
        }
        let command = format!("Go,{SAMPLE_INTERVAL_MS},0,{mark}");
        let reply = self.request(&command)?;
        reject_error(&command, &reply)?;
        if reply.starts_with("Starting untimed measurement") {
            Ok(())
        } else {
            Err(PtdError::Unexpected {
                command,
                reply,
                reason: "expected `Starting untimed measurement, ...`".into(),
            })
        }
    }

    /// `Stop`. Returns `false` when nothing was running (PTDaemon's
    /// `Error: no measurement to stop`), which is harmless when cleaning up.
    pub fn stop(&mut self) -> Result<bool, PtdError> {
        let reply = self.request("Stop")?;
        if reply == "Stopping untimed measurement" {
            Ok(true)
        } else if reply.starts_with("Error") && reply.contains("no measurement to stop") {
            Ok(false)
        } else {
            reject_error("Stop", &reply)?;
            Err(PtdError::Unexpected {
                command: "Stop".into(),
                reply,
                reason: "expected `Stopping untimed measurement`".into(),
            })
        }
    }

    /// `Watts`: the latest power reading, in watts.
    pub fn watts(&mut self) -> Result<f64, PtdError> {
        let reply = self.request("Watts")?;
        reject_error("Watts", &reply)?;
        let text = reply.strip_prefix("Watts,").unwrap_or(&reply).trim();
        text.parse::<f64>()
            .ok()
            .filter(|w| w.is_finite())
            .ok_or_else(|| PtdError::Unexpected {
                command: "Watts".into(),
                reply: reply.clone(),
                reason: "not a number of watts".into(),
            })
    }

    /// `Uncertainty`: the reply as sent, and the last comma-separated field
    /// read as a number where it is one. Our reference does not pin this
    /// reply's layout, so the raw text is always kept.
    pub fn uncertainty(&mut self) -> Result<(String, Option<f64>), PtdError> {
        let reply = self.request("Uncertainty")?;
        reject_error("Uncertainty", &reply)?;
        let value = reply
            .rsplit(',')
            .next()
            .map(|f| f.trim().trim_end_matches('%'))
            .and_then(|f| f.parse::<f64>().ok());
        Ok((reply, value))
    }

    /// Starts keeping every command and its reply line (see [`PtdExchange`]).
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    /// The exchanges recorded so far; recording goes on.
    pub fn take_transcript(&mut self) -> Vec<PtdExchange> {
        self.transcript
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Reads the samples PTDaemon offers (`RL,*,*` for multichannel
    /// analyzers, falling back to `RL`, then `DC-RL`, the way MLPerf's
    /// server does). The accepted command is remembered for later calls.
    pub fn read_samples(&mut self) -> Result<Vec<PtdSample>, PtdError> {
        let lines = self.read_sample_lines()?;
        lines.iter().map(|l| parse_sample_line(l)).collect()
    }

    /// Like [`Self::read_samples`], but the sample lines as PTDaemon sent
    /// them, unparsed (for a server that stores them verbatim).
    pub fn read_sample_lines(&mut self) -> Result<Vec<String>, PtdError> {
        let mut command: &'static str = self.rl_command.unwrap_or("RL,*,*");
        loop {
            let header = self.request(command)?;
            let next = if header.contains("Unknown command") && command != "DC-RL" {
                Some("DC-RL")
            } else if command == "RL,*,*" && header.contains("Invalid number of parameters") {
                Some("RL")
            } else {
                None
            };
            if let Some(next) = next {
                if self.rl_command.is_none() {
                    command = next;
                    continue;
                }
            }
            reject_error(command, &header)?;
            let count = parse_rl_header(&header).ok_or_else(|| PtdError::Unexpected {
                command: command.to_string(),
                reply: header.clone(),
                reason: "expected `Last N samples`".into(),
            })?;
            if count > MAX_RL_SAMPLES {
                self.broken = Some(format!("`{command}` announced {count} samples"));
                return Err(PtdError::Unexpected {
                    command: command.to_string(),
                    reply: header,
                    reason: format!("more than {MAX_RL_SAMPLES} samples announced"),
                });
            }
            // Read every announced line before judging any, so one bad line
            // does not leave the rest queued up as replies to later commands.
            let deadline = Instant::now() + self.timeouts.reply;
            let mut lines = Vec::with_capacity(count);
            for _ in 0..count {
                lines.push(self.read_line(command, deadline)?);
            }
            self.rl_command = Some(command);
            return Ok(lines);
        }
    }

    /// Sends one command and returns its one reply line (without `\r\n`).
    /// `Error...` replies are returned as text; the typed methods above turn
    /// them into [`PtdError::Daemon`].
    pub fn request(&mut self, command: &str) -> Result<String, PtdError> {
        if let Some(reason) = &self.broken {
            return Err(PtdError::Broken {
                reason: reason.clone(),
            });
        }
        if command.is_empty() || command.contains(['\r', '\n']) {
            return Err(PtdError::InvalidCommand {
                command: command.into(),
            });
        }
        let deadline = Instant::now() + self.timeouts.reply;
        let line = format!("{command}\r\n");
        if let Err(e) = self.reader.get_mut().write_all(line.as_bytes()) {
            return Err(self.fail(command, e));
        }
        tracing::trace!(target: "ptd", command, "sent");
        let reply = self.read_line(command, deadline)?;
        tracing::trace!(target: "ptd", command, reply = reply.as_str(), "reply");
        if let Some(t) = self.transcript.as_mut() {
            t.push(PtdExchange {
                command: command.to_string(),
                reply: reply.clone(),
            });
        }
        Ok(reply)
    }

    fn fail(&mut self, command: &str, e: std::io::Error) -> PtdError {
        let err = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => PtdError::Timeout {
                command: command.to_string(),
                timeout_ms: self.timeouts.reply.as_millis(),
            },
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => PtdError::Closed {
                command: command.to_string(),
            },
            _ => PtdError::Io {
                command: command.to_string(),
                source: e,
            },
        };
        self.broken = Some(err.to_string());
        err
    }

    /// Reads one line, giving up at `deadline` however slowly bytes arrive.
    fn read_line(&mut self, command: &str, deadline: Instant) -> Result<String, PtdError> {
        let mut line: Vec<u8> = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.fail(command, ErrorKind::TimedOut.into()));
            }
            if let Err(e) = self.reader.get_ref().set_read_timeout(Some(remaining)) {
                return Err(self.fail(command, e));
            }
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(command, e)),
            };
            if chunk.is_empty() {
                return Err(self.fail(command, ErrorKind::UnexpectedEof.into()));
            }
            let (taken, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    line.extend_from_slice(&chunk[..pos]);
                    (pos + 1, true)
                }
                None => {
                    line.extend_from_slice(chunk);
                    (chunk.len(), false)
                }
            };
            self.reader.consume(taken);
            if line.len() > MAX_LINE_BYTES {
                let err = PtdError::Malformed {
                    line: String::from_utf8_lossy(&line[..80]).into_owned(),
                    reason: format!("reply line longer than {MAX_LINE_BYTES} bytes"),
                };
                self.broken = Some(err.to_string());
                return Err(err);
            }
            if done {
                break;
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|e| PtdError::Malformed {
            line: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            reason: "reply is not UTF-8 text".into(),
        })
    }
}

fn parse_rl_header(header: &str) -> Option<usize> {
    let rest = header.trim().strip_prefix("Last ")?;
    let (n, word) = rest.split_once(' ')?;
    matches!(word.trim(), "samples" | "sample").then_some(())?;
    n.parse().ok()
}

fn reject_error(command: &str, reply: &str) -> Result<(), PtdError> {
    if reply.starts_with("Error") {
        Err(PtdError::Daemon {
            command: command.to_string(),
            reply: reply.to_string(),
        })
    } else {
        Ok(())
    }
}

fn expect_exact(command: &str, reply: &str, expected: &str) -> Result<(), PtdError> {
    if reply == expected {
        return Ok(());
    }
    reject_error(command, reply)?;
    Err(PtdError::Unexpected {
        command: command.to_string(),
        reply: reply.to_string(),
        reason: format!("expected exactly `{expected}`"),
    })
}

// ---------------------------------------------------------------------------
// The meter
// ---------------------------------------------------------------------------

/// PTDaemon as a [`Meter`]: wall power with volts, amps and power factor.
///
/// Each [`Meter::read`] asks for the samples logged since the last read and
/// returns the newest; when none is new (the analyzer logs once a second) it
/// repeats the newest one, and before any measurement has started it falls
/// back to `Watts`. The analyzer's own timestamp of the newest sample is kept
/// ([`PtdMeter::last_sample_time`]) for clock-offset checks.
pub struct PtdMeter {
    info: MeterInfo,
    client: SharedPtdClient,
    greeting: PtdGreeting,
    last: Option<PtdSample>,
}

impl PtdMeter {
    /// Connects to `ptd://HOST:PORT` and opens the session (`Hello`,
    /// `Identify`, `RR`).
    pub fn connect(url: &str, timeouts: PtdTimeouts) -> Result<PtdMeter, MeterError> {
        let (host, port) = parse_ptd_url(url)?;
        let mut client =
            PtdClient::connect(&host, port, timeouts).map_err(|e| to_meter_error(e, true))?;
        let greeting = client
            .start_session()
            .map_err(|e| to_meter_error(e, true))?;
        tracing::info!(
            target: "ptd",
            addr = client.addr(),
            identity = greeting.identity.raw.as_str(),
            "connected to PTDaemon"
        );
        Ok(PtdMeter::new(Arc::new(Mutex::new(client)), greeting))
    }

    /// A meter over a client whose session is already open.
    pub fn new(client: SharedPtdClient, greeting: PtdGreeting) -> PtdMeter {
        PtdMeter {
            info: MeterInfo {
                id: "ptd".into(),
                source: "ptd".into(),
                domain: "wall".into(),
                scope: Scope::Node,
                kind: ReadingKind::PowerSample,
                provenance: Provenance::Measured,
                resolution: 1e-6,
                update_period: Duration::from_millis(u64::from(SAMPLE_INTERVAL_MS)),
                contains: Vec::new(),
            },
            client,
            greeting,
            last: None,
        }
    }

    /// The connection, for the run orchestrator's `Go`/`Stop`/`SR` commands.
    pub fn client(&self) -> SharedPtdClient {
        Arc::clone(&self.client)
    }

    /// What the daemon said when the session opened.
    pub fn greeting(&self) -> &PtdGreeting {
        &self.greeting
    }

    /// The analyzer host's timestamp of the newest sample read.
    pub fn last_sample_time(&self) -> Option<PtdTime> {
        self.last.as_ref().map(|s| s.time)
    }
}

impl Meter for PtdMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let mut client = self.client.lock().map_err(|_| MeterError::Read {
            meter: "ptd".into(),
            reason: "the PTDaemon connection was poisoned by a panic elsewhere".into(),
        })?;
        let samples = client
            .read_samples()
            .map_err(|e| to_meter_error(e, false))?;
        let newest = samples.into_iter().max_by_key(|s| s.time);
        if let Some(s) = newest {
            if self.last.as_ref().is_none_or(|l| s.time >= l.time) {
                self.last = Some(s);
            }
        }
        match &self.last {
            Some(s) => Ok(Reading::Power {
                watts: s.watts,
                volts: s.volts,
                amps: s.amps,
                power_factor: s.power_factor,
            }),
            None => client
                .watts()
                .map(Reading::watts)
                .map_err(|e| to_meter_error(e, false)),
        }
    }
}

/// Maps a protocol error onto the meter contract; `opening` tells setup
/// problems (wrong address, not PTDaemon) from failures of a running meter.
pub fn to_meter_error(e: PtdError, opening: bool) -> MeterError {
    let meter = "ptd".to_string();
    match e {
        PtdError::Connect { .. } if opening => MeterError::NotPresent {
            meter,
            reason: format!("{e}; is PTDaemon running and listening on that port?"),
        },
        PtdError::InvalidRange { .. }
        | PtdError::InvalidMark { .. }
        | PtdError::InvalidCommand { .. } => MeterError::Config {
            meter,
            reason: e.to_string(),
        },
        _ if opening => MeterError::Config {
            meter,
            reason: e.to_string(),
        },
        _ => MeterError::Read {
            meter,
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "Time,01-22-2021 15:05:15.322,Watts,25.650000,Volts,227.370000,\
                        Amps,0.225410,PF,0.500600,Mark,2021-01-22_15-05-02_loadgen_ranging";
    const MULTI: &str = "Time,11-13-2020 22:38:59.240,Watts,272.930000,Volts,-1.000000,\
                         Amps,-1.000000,PF,-1.000000,Mark,notset,Ch1,Watts,91.060000,\
                         Volts,120.950000,Amps,0.832100,PF,0.938900,Ch2,Watts,90.970000,\
                         Volts,120.830000,Amps,0.802000,PF,0.938800,Ch3,Watts,90.900000,\
                         Volts,120.750000,Amps,0.802000,PF,0.938700";

    #[test]
    fn single_channel_sample_line_parses_every_field() {
        let s = parse_sample_line(LINE).unwrap();
        assert_eq!(s.time.to_string(), "01-22-2021 15:05:15.322");
        assert_eq!(s.watts, 25.65);
        assert_eq!(s.volts, Some(227.37));
        assert_eq!(s.amps, Some(0.22541));
        assert_eq!(s.power_factor, Some(0.5006));
        assert_eq!(s.mark, "2021-01-22_15-05-02_loadgen_ranging");
        assert!(s.channels.is_empty());
    }

    #[test]
    fn multichannel_line_keeps_total_and_channels_and_maps_minus_one_to_unknown() {
        let s = parse_sample_line(MULTI).unwrap();
        assert_eq!(s.watts, 272.93);
        assert_eq!((s.volts, s.amps, s.power_factor), (None, None, None));
        assert_eq!(s.mark, "notset");
        assert_eq!(s.channels.len(), 3);
        assert_eq!(s.channels[1].channel, 2);
        assert_eq!(s.channels[1].watts, 90.97);
        assert_eq!(s.channels[1].volts, Some(120.83));
        assert_eq!(s.max_volts(), Some(120.95));
        assert_eq!(s.max_amps(), Some(0.8321));
    }

    #[test]
    fn malformed_sample_lines_are_rejected_with_the_reason() {
        let cases = [
            ("", "Time"),
            ("Watts,1,Volts,2", "Time"),
            ("Time,13-01-2021 00:00:00.000,Watts,1,Mark,x", "MM-DD-YYYY"),
            ("Time,02-30-2021 00:00:00.000,Watts,1,Mark,x", "MM-DD-YYYY"),
            (
                "Time,01-22-2021 15:05:15.322,Watts,abc,Mark,x",
                "not a number",
            ),
            ("Time,01-22-2021 15:05:15.322,Watts,1,Volts", "no value"),
            ("Time,01-22-2021 15:05:15.322,Volts,1,Mark,x", "no `Watts`"),
            ("Time,01-22-2021 15:05:15.322,Watts,1,Volts,2", "no `Mark`"),
            (
                "Time,01-22-2021 15:05:15.322,Watts,1,Foo,2,Mark,x",
                "unknown field",
            ),
            (
                "Time,01-22-2021 15:05:15.322,Watts,1,Watts,2,Mark,x",
                "twice",
            ),
            (
                "Time,01-22-2021 15:05:15.322,Watts,NaN,Mark,x",
                "not finite",
            ),
            (
                "Time,01-22-2021 15:05:15.322,Watts,1,Mark,x,ChX,Watts,1",
                "Ch{number}",
            ),
            (
                "Time,01-22-2021 15:05:15.322,Watts,1,Mark,x,Ch1,Volts,1",
                "no `Watts`",
            ),
        ];
        for (line, reason) in cases {
            match parse_sample_line(line) {
                Err(PtdError::Malformed { reason: r, .. }) => {
                    assert!(r.contains(reason), "{line:?}: got reason {r:?}")
                }
                other => panic!("{line:?}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn formatted_sample_lines_parse_back_to_the_same_sample() {
        for line in [LINE, MULTI] {
            let s = parse_sample_line(line).unwrap();
            assert_eq!(format_sample_line(&s), line);
        }
    }

    #[test]
    fn ptd_time_converts_to_unix_milliseconds() {
        let t = PtdTime::parse("01-01-1970 00:00:01.5").unwrap();
        assert_eq!(t.unix_ms(), 1500);
        let t = PtdTime::parse("02-29-2024 12:34:56.789").unwrap();
        assert_eq!(t.unix_ms(), 1_709_210_096_789);
        assert!(PtdTime::parse("02-29-2023 12:34:56.789").is_none());
        assert!(PtdTime::parse("01-01-2024 24:00:00.000").is_none());
        assert!(PtdTime::parse("01-01-2024 10:00:00.0000000").is_none());
    }

    #[test]
    fn sample_log_skips_status_lines_and_counts_them() {
        let text =
            format!("11-24-2026 10:00:00.000: Go with mark 'x_ranging'\n{LINE}\r\n\n{MULTI}\n");
        let (samples, skipped) = parse_sample_log(&text);
        assert_eq!(samples.len(), 2);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn ranges_reply_parses_and_gives_restore_settings() {
        let r = parse_ranges_reply("Ranges,0,5.000000,1,-1.000000").unwrap();
        assert_eq!(r.amps_auto, AutoRange::Disabled);
        assert_eq!(r.amps_range_a, Some(5.0));
        assert_eq!(r.volts_auto, AutoRange::Enabled);
        assert_eq!(r.volts_range_v, None);
        assert_eq!(
            r.restore_settings(),
            (RangeSetting::Auto, RangeSetting::Fixed(5.0))
        );
        assert!(parse_ranges_reply("Ranges,0,5").is_err());
        assert!(parse_ranges_reply("Ranges,2,5,1,1").is_err());
        assert!(parse_ranges_reply("Error: bad").is_err());
    }

    #[test]
    fn identify_reply_gives_model_and_version() {
        let id = parse_identify_reply("WT310,SPEC PTDaemon,version=1.11.1-abc,build=x").unwrap();
        assert_eq!(id.model, "WT310");
        assert_eq!(id.version.as_deref(), Some("1.11.1-abc"));
        assert!(parse_identify_reply("").is_err());
        assert!(parse_identify_reply("Error: no device").is_err());
    }

    #[test]
    fn model_current_caps_follow_the_mlperf_table() {
        assert_eq!(max_current_range_a("WT310"), Some(20.0));
        assert_eq!(max_current_range_a("YokogawaWT330"), Some(20.0));
        assert_eq!(max_current_range_a("WT210"), Some(20.0));
        assert_eq!(max_current_range_a("WT500"), Some(40.0));
        assert_eq!(max_current_range_a("WT5000"), Some(30.0));
        assert_eq!(max_current_range_a("wt1800"), Some(50.0));
        assert_eq!(max_current_range_a("WT333"), None);
        assert_eq!(max_current_range_a("virtual"), None);
    }

    fn sample(mark: &str, volts: f64, amps: f64) -> PtdSample {
        PtdSample {
            time: PtdTime::parse("01-01-2026 00:00:00.000").unwrap(),
            watts: volts * amps,
            volts: Some(volts),
            amps: Some(amps),
            power_factor: Some(0.9),
            mark: mark.into(),
            channels: vec![],
        }
    }

    #[test]
    fn testing_ranges_take_max_volts_and_110_percent_of_max_amps_of_the_ranging_mark() {
        let samples = [
            sample("s_ranging", 229.0, 1.0),
            sample("s_ranging", 231.5, 2.0),
            sample("s_ranging", 230.0, 1.5),
            sample("s_testing", 400.0, 9.0),
        ];
        let r = testing_ranges(&samples, "s_ranging", Some(20.0)).unwrap();
        assert_eq!(r.volts_v, 231.5);
        assert!((r.amps_a - 2.2).abs() < 1e-12);
        assert!(!r.amps_capped);
        assert_eq!(r.settings().1.to_command_value(), "2.2");
        assert_eq!(r.settings().0.to_command_value(), "231.5");
    }

    #[test]
    fn testing_amps_are_capped_at_the_model_range() {
        let samples = [sample("r", 230.0, 19.0)];
        let r = testing_ranges(&samples, "r", max_current_range_a("WT310")).unwrap();
        assert_eq!(r.amps_a, 20.0);
        assert!(r.amps_capped);
        let r = testing_ranges(&samples, "r", None).unwrap();
        assert!((r.amps_a - 20.9).abs() < 1e-9);
    }

    #[test]
    fn testing_ranges_without_marked_samples_is_an_error() {
        let samples = [sample("other", 230.0, 1.0)];
        assert!(matches!(
            testing_ranges(&samples, "r", None),
            Err(RangingError::NoSamples { .. })
        ));
        let mut unknown = sample("r", 230.0, 1.0);
        unknown.amps = None;
        assert!(testing_ranges(&[unknown], "r", None).is_err());
    }

    #[test]
    fn testing_ranges_use_channel_values_when_the_total_has_none() {
        let mut s = parse_sample_line(MULTI).unwrap();
        s.mark = "m".into();
        let r = testing_ranges(&[s], "m", None).unwrap();
        assert_eq!(r.volts_v, 120.95);
        assert!((r.amps_a - 0.8321 * 1.1).abs() < 1e-12);
    }

    #[test]
    fn range_values_are_formatted_without_float_noise() {
        assert_eq!(RangeSetting::Auto.to_command_value(), "Auto");
        assert_eq!(RangeSetting::Fixed(230.0).to_command_value(), "230");
        assert_eq!(
            RangeSetting::Fixed(0.225410 * 1.1).to_command_value(),
            "0.247951"
        );
    }

    #[test]
    fn rl_header_counts_samples() {
        assert_eq!(parse_rl_header("Last 3 samples"), Some(3));
        assert_eq!(parse_rl_header("Last 1 sample"), Some(1));
        assert_eq!(parse_rl_header("Last 0 samples"), Some(0));
        assert_eq!(parse_rl_header("Last x samples"), None);
        assert_eq!(parse_rl_header("Time,..."), None);
    }

    #[test]
    fn ptd_urls_need_host_and_port() {
        assert_eq!(
            parse_ptd_url("ptd://analyzer:8888").unwrap(),
            ("analyzer".to_string(), 8888)
        );
        assert_eq!(
            parse_ptd_url("ptd://[::1]:4950/").unwrap(),
            ("::1".to_string(), 4950)
        );
        for bad in [
            "analyzer:8888",
            "ptd://analyzer",
            "ptd://:8888",
            "ptd://h:0",
            "ptd://h:99999",
        ] {
            assert!(
                matches!(parse_ptd_url(bad), Err(MeterError::Config { .. })),
                "{bad}"
            );
        }
    }
}
