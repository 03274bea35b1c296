//! One timestamp format for everything MLPerf's power checker lines up:
//! LoadGen's `power_begin`/`power_end` (its `DateTimeStringForPower`),
//! PTDaemon's sample lines and console lines. `MM-DD-YYYY HH:MM:SS.fff`,
//! in UTC (the MLPerf server runs PTDaemon with `TZ=UTC`), millisecond
//! precision. A shared crate because `loadgen` and `power`, which both write
//! it, never import each other.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use std::fmt;
use std::time::SystemTime;

/// The format, as chrono writes it.
pub const FORMAT: &str = "%m-%d-%Y %H:%M:%S%.3f";

/// A point in time at millisecond precision, written and read in MLPerf's
/// power format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Parses `MM-DD-YYYY HH:MM:SS[.f]` (1 to 6 fraction digits; digits past
    /// milliseconds are dropped). `None` for anything else, including dates
    /// that do not exist.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let text = text.trim();
        let (date_time, fraction) = match text.split_once('.') {
            Some((dt, f)) => (dt, f),
            None => (text, "0"),
        };
        let fraction_ok =
            (1..=6).contains(&fraction.len()) && fraction.bytes().all(|b| b.is_ascii_digit());
        if !fraction_ok {
            return None;
        }
        let whole = NaiveDateTime::parse_from_str(date_time, "%m-%d-%Y %H:%M:%S").ok()?;
        let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
        let at = Utc.from_utc_datetime(&whole) + chrono::Duration::milliseconds(millis);
        Some(Timestamp(at))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn utc(&self) -> DateTime<Utc> {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        let at = DateTime::<Utc>::from(t);
        // Millisecond precision, as written: a parsed-back value compares equal.
        Timestamp(DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(FORMAT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converts_to_unix_milliseconds() {
        let t = Timestamp::parse("01-01-1970 00:00:01.5").unwrap();
        assert_eq!(t.unix_ms(), 1500);
        let t = Timestamp::parse("02-29-2024 12:34:56.789").unwrap();
        assert_eq!(t.unix_ms(), 1_709_210_096_789);
        assert_eq!(
            Timestamp::parse("02-29-2024 12:34:56").unwrap().unix_ms(),
            1_709_210_096_000
        );
        assert_eq!(
            Timestamp::parse("02-29-2024 12:34:56.123456")
                .unwrap()
                .unix_ms(),
            1_709_210_096_123
        );
    }

    #[test]
    fn impossible_or_malformed_times_are_refused() {
        for bad in [
            "02-29-2023 12:34:56.789",
            "01-01-2024 24:00:00.000",
            "01-01-2024 10:00:00.0000000",
            "01-01-2024 10:00:00.",
            "01-01-2024 10:00:00.1x",
            "2024-01-01 10:00:00.000",
            "13-01-2024 10:00:00.000",
            "",
        ] {
            assert!(Timestamp::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn written_as_loadgen_and_ptdaemon_write_it_and_read_back() {
        let t = SystemTime::UNIX_EPOCH
            + Duration::from_millis(1_709_210_096_789)
            + Duration::from_micros(400);
        let ts = Timestamp::from(t);
        assert_eq!(ts.to_string(), "02-29-2024 12:34:56.789");
        assert_eq!(Timestamp::parse(&ts.to_string()), Some(ts));
    }
}
