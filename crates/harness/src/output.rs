//! Where a session's files go: the folder the user named, or
//! `joulebench-results/<local time>-<what>-<detail>` (the same shape for every
//! command, so runs sort by time in a listing).

use std::path::PathBuf;

/// The default folder for a session that began at `started`, e.g.
/// `joulebench-results/20261204-231500-resnet50-offline`.
pub fn default_folder<Tz: chrono::TimeZone>(
    started: &chrono::DateTime<Tz>,
    parts: &[&str],
) -> PathBuf
where
    Tz::Offset: std::fmt::Display,
{
    let mut name = started.format("%Y%m%d-%H%M%S").to_string();
    for p in parts {
        name.push('-');
        name.push_str(p);
    }
    PathBuf::from("joulebench-results").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn folders_sort_by_time_and_say_what_ran() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 4, 23, 15, 0)
            .unwrap();
        assert_eq!(
            default_folder(&t, &["resnet50", "offline"]),
            PathBuf::from("joulebench-results/20261204-231500-resnet50-offline")
        );
    }
}
