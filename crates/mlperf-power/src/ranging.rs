//! MLPerf Power's ranging → testing rule: the testing run fixes the
//! analyzer's ranges from what the ranging run saw (the largest voltage;
//! 1.1 × the largest current, capped at the model's largest range).

use power::meter::ptd::{PtdSample, RangeSetting};

/// Testing-run current range = this × the largest current seen while ranging.
pub const AMPS_HEADROOM: f64 = 1.1;

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

#[cfg(test)]
mod tests {
    use super::*;
    use mlperf_time::Timestamp;
    use power::meter::ptd::parse_sample_line;

    const MULTI: &str = "Time,11-13-2020 22:38:59.240,Watts,272.930000,Volts,-1.000000,\
                         Amps,-1.000000,PF,-1.000000,Mark,notset,Ch1,Watts,91.060000,\
                         Volts,120.950000,Amps,0.832100,PF,0.938900,Ch2,Watts,90.970000,\
                         Volts,120.830000,Amps,0.802000,PF,0.938800,Ch3,Watts,90.900000,\
                         Volts,120.750000,Amps,0.802000,PF,0.938700";

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
            time: Timestamp::parse("01-01-2026 00:00:00.000").unwrap(),
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
}
