//! PTDaemon's replies and sample lines as plain functions, used for `RL`
//! replies and for PTDaemon's own log file alike.

use super::PtdError;
use mlperf_time::Timestamp;

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
    pub time: Timestamp,
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
    let time = Timestamp::parse(fields[1])
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
    pub(super) fn letter(self) -> char {
        match self {
            RangeQuantity::Volts => 'V',
            RangeQuantity::Amps => 'A',
        }
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
    fn range_values_are_formatted_without_float_noise() {
        assert_eq!(RangeSetting::Auto.to_command_value(), "Auto");
        assert_eq!(RangeSetting::Fixed(230.0).to_command_value(), "230");
        assert_eq!(
            RangeSetting::Fixed(0.225410 * 1.1).to_command_value(),
            "0.247951"
        );
    }
}
