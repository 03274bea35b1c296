//! The virtual analyzer: PTDaemon's commands and replies over readings that
//! come from a joulebench meter instead of a Yokogawa.
//!
//! This is the state machine only (no sockets, no clock): [`VirtualAnalyzer::handle`]
//! takes one command line and returns the reply lines, exactly as PTDaemon
//! words them (`shared/reference/ptd-protocol.md`); [`VirtualAnalyzer::record`]
//! turns one interval's reading into a sample while a measurement runs.
//! [`crate::ptd_daemon`] puts it on a TCP port with PTDaemon's command line.
//!
//! Ranges behave as an analyzer's: standard range steps per model; with
//! auto-ranging each sample picks the smallest range that holds it (and `RR`
//! reports it); a fixed range is rounded up to a step, and a reading above
//! it is over-range: the sample's values are logged as unknown (`-1`) and an
//! `ERROR:` status line says so, which MLPerf's checker refuses during the
//! testing load.
//!
//! Honesty: by default `Identify` names joulebench's virtual analyzer and the
//! meter behind it, which no MLPerf checker accepts. Only a rehearsal
//! ([`Identity::Rehearsal`]) answers as a supported model, and every line it
//! writes outside the protocol says it is a rehearsal, not a measurement.

use mlperf_time::Timestamp;
use power::meter::ptd::{format_sample_line, PtdSample, HELLO_REPLY};

/// A model the virtual analyzer can rehearse as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// What users type: `WT310`.
    pub short: &'static str,
    /// What `Identify` answers in field 0 (the checker's names).
    pub name: &'static str,
    /// PTDaemon's device type number.
    pub device_type: u32,
    pub volt_ranges_v: &'static [f64],
    pub amp_ranges_a: &'static [f64],
}

const WT3_VOLTS: &[f64] = &[15.0, 30.0, 60.0, 150.0, 300.0, 600.0];
const WT3_AMPS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0];
const WT500_AMPS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0];

/// The models a rehearsal may answer as (single channel, AC).
pub const MODELS: [Model; 4] = [
    Model {
        short: "WT210",
        name: "YokogawaWT210",
        device_type: 8,
        volt_ranges_v: WT3_VOLTS,
        amp_ranges_a: WT3_AMPS,
    },
    Model {
        short: "WT310",
        name: "YokogawaWT310",
        device_type: 49,
        volt_ranges_v: WT3_VOLTS,
        amp_ranges_a: WT3_AMPS,
    },
    Model {
        short: "WT330",
        name: "YokogawaWT330",
        device_type: 52,
        volt_ranges_v: WT3_VOLTS,
        amp_ranges_a: WT3_AMPS,
    },
    Model {
        short: "WT500",
        name: "YokogawaWT500",
        device_type: 35,
        volt_ranges_v: WT3_VOLTS,
        amp_ranges_a: WT500_AMPS,
    },
];

/// Finds a rehearsal model by `WT310`, `YokogawaWT310` (any case).
pub fn model(name: &str) -> Option<Model> {
    let n = name.trim().to_ascii_uppercase();
    MODELS
        .iter()
        .copied()
        .find(|m| m.short == n || m.name.to_ascii_uppercase() == n)
}

/// PTDaemon version a rehearsal reports (the one MLPerf's checker wants).
pub const REHEARSAL_PTD_VERSION: &str = "1.11.1";

/// Who the analyzer says it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// joulebench's virtual analyzer, backed by `meter`.
    Honest { meter: String },
    /// Answers as `model` so the MLPerf flow can be rehearsed end to end.
    Rehearsal { model: Model, meter: String },
}

impl Identity {
    pub fn is_rehearsal(&self) -> bool {
        matches!(self, Identity::Rehearsal { .. })
    }

    /// The reply to `Identify`.
    pub fn identify_reply(&self) -> String {
        match self {
            Identity::Honest { meter } => format!(
                "joulebench-virtual,joulebench virtual analyzer - not a power analyzer - \
                 readings from {meter},version=joulebench-{}",
                env!("CARGO_PKG_VERSION")
            ),
            Identity::Rehearsal { model, meter } => format!(
                "{},joulebench virtual analyzer REHEARSAL - not a measurement - readings from \
                 {meter},version={REHEARSAL_PTD_VERSION}-joulebench-rehearsal-{}",
                model.name,
                env!("CARGO_PKG_VERSION")
            ),
        }
    }

    /// One line for logs and file headers saying what this analyzer is.
    pub fn banner(&self) -> String {
        match self {
            Identity::Honest { meter } => {
                format!("joulebench virtual analyzer (not a power analyzer), readings from {meter}")
            }
            Identity::Rehearsal { model, meter } => format!(
                "joulebench virtual analyzer REHEARSAL: answers as {} but readings come from \
                 {meter}; this is a rehearsal, not a measurement",
                model.name
            ),
        }
    }

    fn ranges(&self) -> (&'static [f64], &'static [f64]) {
        match self {
            Identity::Honest { .. } => (WT3_VOLTS, WT3_AMPS),
            Identity::Rehearsal { model, .. } => (model.volt_ranges_v, model.amp_ranges_a),
        }
    }
}

/// One interval's electrical values (assumptions already applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Electrical {
    pub watts: f64,
    pub volts: f64,
    pub amps: f64,
    pub power_factor: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    auto: bool,
    value: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    mark: String,
    interval_ms: u32,
}

/// The analyzer's state.
#[derive(Debug)]
pub struct VirtualAnalyzer {
    identity: Identity,
    volts: Range,
    amps: Range,
    measuring: Option<Measurement>,
    unread: Vec<String>,
    last_sample: Option<PtdSample>,
    last_uncertainty_pct: Option<f64>,
    latest_watts: Option<f64>,
    status: Vec<String>,
}

/// Reply to a command that is not PTDaemon's.
pub const UNKNOWN_COMMAND: &str = "Error: Unknown command";
/// Reply to `RL,*,*` on a single-channel analyzer.
pub const INVALID_PARAMETERS: &str = "Error: Invalid number of parameters";
/// Most samples kept for `RL` between reads.
const MAX_UNREAD: usize = 500_000;

impl VirtualAnalyzer {
    pub fn new(identity: Identity) -> VirtualAnalyzer {
        let (v, a) = identity.ranges();
        let top = |r: &[f64]| r.last().copied().unwrap_or(1.0);
        VirtualAnalyzer {
            volts: Range {
                auto: true,
                value: top(v),
            },
            amps: Range {
                auto: true,
                value: top(a),
            },
            identity,
            measuring: None,
            unread: Vec::new(),
            last_sample: None,
            last_uncertainty_pct: None,
            latest_watts: None,
            status: Vec::new(),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Status messages (without timestamps) produced since the last call.
    pub fn take_status(&mut self) -> Vec<String> {
        std::mem::take(&mut self.status)
    }

    /// The sampling interval while a measurement runs.
    pub fn interval_ms(&self) -> Option<u32> {
        self.measuring.as_ref().map(|m| m.interval_ms)
    }

    /// The client's connection ended: a measurement it left running is
    /// stopped (with a warning and PTDaemon's `Completed test`) and the
    /// samples it did not read are dropped (they are in LOGFILE), so that
    /// the next client's `Go` and `RL` are its own.
    pub fn client_gone(&mut self) {
        if let Some(m) = self.measuring.take() {
            self.status.push(format!(
                "WARNING: the client disconnected during the measurement with mark '{}'; stopped it",
                m.mark
            ));
            self.status.push("Completed test".into());
        }
        self.unread.clear();
    }

    /// The latest instantaneous reading (for `Watts`), measuring or not.
    pub fn set_latest_watts(&mut self, watts: f64) {
        self.latest_watts = Some(watts);
    }

    /// Startup status lines (what PTDaemon prints before serving).
    pub fn startup_status(&mut self) {
        self.status.push(self.identity.banner());
        if let Identity::Rehearsal { model, .. } = &self.identity {
            self.status.push(format!(
                "Uncertainty checking for {} is activated",
                model.name
            ));
        }
    }

    /// Answers one command line; returns the reply lines.
    pub fn handle(&mut self, line: &str) -> Vec<String> {
        let line = line.trim();
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let one = |s: &str| vec![s.to_string()];
        match fields.as_slice() {
            ["Hello"] => one(HELLO_REPLY),
            ["Identify"] => vec![self.identity.identify_reply()],
            ["RR"] => vec![format!(
                "Ranges,{},{:.6},{},{:.6}",
                u8::from(self.amps.auto),
                self.amps.value,
                u8::from(self.volts.auto),
                self.volts.value
            )],
            ["SR", q @ ("V" | "A"), value] => {
                let (steps, range) = {
                    let (v, a) = self.identity.ranges();
                    if *q == "V" {
                        (v, &mut self.volts)
                    } else {
                        (a, &mut self.amps)
                    }
                };
                if value.eq_ignore_ascii_case("auto") {
                    range.auto = true;
                    return vec![format!("Range {q} changed")];
                }
                match value.parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => match steps.iter().find(|&&s| s >= v) {
                        Some(&step) => {
                            *range = Range {
                                auto: false,
                                value: step,
                            };
                            vec![format!("Range {q} changed")]
                        }
                        None => vec![format!(
                            "Error: range {value} is above the largest {q} range ({})",
                            steps.last().copied().unwrap_or(0.0)
                        )],
                    },
                    _ => vec![format!("Error: invalid range value `{value}`")],
                }
            }
            ["SR", ..] => one(INVALID_PARAMETERS),
            ["Go", interval, rampup, mark] => {
                if self.measuring.is_some() {
                    return one("Error: measurement already running");
                }
                let Ok(interval_ms) = interval.parse::<u32>() else {
                    return one("Error: invalid sample interval");
                };
                if !(10..=600_000).contains(&interval_ms) {
                    return one("Error: invalid sample interval");
                }
                let Ok(rampup) = rampup.parse::<u32>() else {
                    return one("Error: invalid number of rampup samples");
                };
                let mark_ok = !mark.is_empty()
                    && mark
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !mark_ok {
                    return one("Error: invalid mark");
                }
                self.measuring = Some(Measurement {
                    mark: mark.to_string(),
                    interval_ms,
                });
                self.status.push(format!("Go with mark '{mark}'"));
                vec![format!(
                    "Starting untimed measurement, maximum 500000 samples at {interval_ms}ms \
                     with {rampup} rampup samples"
                )]
            }
            ["Go", ..] => one(INVALID_PARAMETERS),
            ["Stop"] => {
                if self.measuring.take().is_some() {
                    self.status.push("Completed test".into());
                    one("Stopping untimed measurement")
                } else {
                    one("Error: no measurement to stop")
                }
            }
            ["RL", "*", "*"] => one(INVALID_PARAMETERS),
            ["RL"] => {
                let lines = std::mem::take(&mut self.unread);
                let mut out = Vec::with_capacity(lines.len() + 1);
                out.push(format!(
                    "Last {} sample{}",
                    lines.len(),
                    if lines.len() == 1 { "" } else { "s" }
                ));
                out.extend(lines);
                out
            }
            ["Uncertainty"] => vec![match self.last_uncertainty_pct {
                Some(p) => format!("Uncertainty,{p:.4}%"),
                None => "Uncertainty,-1".to_string(),
            }],
            ["Watts"] => vec![match self.latest_watts {
                Some(w) => format!("{w:.6}"),
                None => "-1.000000".to_string(),
            }],
            _ => one(UNKNOWN_COMMAND),
        }
    }

    /// One interval's reading while measuring: applies the ranges, keeps the
    /// sample for `RL` and returns its log line (None when not measuring).
    pub fn record(&mut self, reading: Electrical, time: Timestamp) -> Option<String> {
        let mark = self.measuring.as_ref()?.mark.clone();
        let (volt_steps, amp_steps) = self.identity.ranges();
        let pick = |range: &mut Range, steps: &[f64], value: f64| -> bool {
            if range.auto {
                range.value = steps
                    .iter()
                    .copied()
                    .find(|&s| s >= value)
                    .unwrap_or_else(|| steps.last().copied().unwrap_or(value));
            }
            value > range.value
        };
        let volts_over = pick(&mut self.volts, volt_steps, reading.volts);
        let amps_over = pick(&mut self.amps, amp_steps, reading.amps);
        let sample = if volts_over || amps_over {
            if amps_over {
                self.status.push(format!(
                    "ERROR: Current appears to be too high for set range ({:.6} A above the {} A range)",
                    reading.amps, self.amps.value
                ));
            }
            if volts_over {
                self.status.push(format!(
                    "ERROR: Voltage appears to be too high for set range ({:.6} V above the {} V range)",
                    reading.volts, self.volts.value
                ));
            }
            self.last_uncertainty_pct = None;
            PtdSample {
                time,
                watts: -1.0,
                volts: None,
                amps: None,
                power_factor: None,
                mark,
                channels: Vec::new(),
            }
        } else {
            if self.identity.is_rehearsal() {
                // The rehearsed model's stated accuracy (0.1 % of reading
                // plus 0.1 % of range): a model of that instrument, not of the
                // meter behind it.
                let range_w = self.volts.value * self.amps.value;
                let pct = if reading.watts > 0.0 {
                    0.1 + 0.1 * range_w / reading.watts
                } else {
                    100.0
                };
                if pct > 1.0 {
                    self.status.push(format!(
                        "WARNING: Uncertainty {pct:.2}%, which is above 1.00% limit for the last sample!"
                    ));
                }
                self.last_uncertainty_pct = Some(pct);
            }
            PtdSample {
                time,
                watts: reading.watts,
                volts: Some(reading.volts),
                amps: Some(reading.amps),
                power_factor: Some(reading.power_factor),
                mark,
                channels: Vec::new(),
            }
        };
        let line = format_sample_line(&sample);
        if self.unread.len() < MAX_UNREAD {
            self.unread.push(line.clone());
        }
        self.last_sample = Some(sample);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rehearsal() -> VirtualAnalyzer {
        VirtualAnalyzer::new(Identity::Rehearsal {
            model: model("wt310").unwrap(),
            meter: "replay".into(),
        })
    }

    fn t() -> Timestamp {
        Timestamp::parse("11-24-2026 10:00:00.000").unwrap()
    }

    fn reading(watts: f64) -> Electrical {
        Electrical {
            watts,
            volts: 230.0,
            amps: watts / 230.0,
            power_factor: 1.0,
        }
    }

    #[test]
    fn replies_are_ptdaemons_exact_words() {
        let mut a = rehearsal();
        assert_eq!(a.handle("Hello"), ["Hello, PTDaemon here!"]);
        let id = &a.handle("Identify")[0];
        assert!(id.starts_with("YokogawaWT310,") && id.contains("version=1.11.1-"));
        assert!(id.contains("REHEARSAL"));
        assert_eq!(a.handle("RR"), ["Ranges,1,20.000000,1,600.000000"]);
        assert_eq!(a.handle("SR,V,Auto"), ["Range V changed"]);
        assert_eq!(a.handle("SR,A,Auto"), ["Range A changed"]);
        assert_eq!(
            a.handle("Go,1000,0,s_ranging"),
            ["Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"]
        );
        assert_eq!(a.handle("Stop"), ["Stopping untimed measurement"]);
        assert_eq!(a.handle("Stop"), ["Error: no measurement to stop"]);
        assert_eq!(a.handle("RL,*,*"), [INVALID_PARAMETERS]);
        assert_eq!(a.handle("RL"), ["Last 0 samples"]);
        assert_eq!(a.handle("DC-RL"), [UNKNOWN_COMMAND]);
        assert_eq!(a.handle("SR,A,abc"), ["Error: invalid range value `abc`"]);
        assert!(a.handle("SR,A,25")[0].starts_with("Error"));
        assert_eq!(
            a.take_status(),
            ["Go with mark 's_ranging'", "Completed test"]
        );
    }

    #[test]
    fn honest_identity_is_not_a_supported_model() {
        let mut a = VirtualAnalyzer::new(Identity::Honest {
            meter: "rapl".into(),
        });
        let id = &a.handle("Identify")[0];
        assert!(id.starts_with("joulebench-virtual,"), "{id}");
        assert!(!id.contains("version=1.11.1"));
    }

    #[test]
    fn samples_only_while_measuring_and_rl_returns_them_once() {
        let mut a = rehearsal();
        assert!(a.record(reading(200.0), t()).is_none());
        a.handle("Go,1000,0,m");
        let line = a.record(reading(200.0), t()).unwrap();
        assert_eq!(
            line,
            "Time,11-24-2026 10:00:00.000,Watts,200.000000,Volts,230.000000,Amps,0.869565,PF,1.000000,Mark,m"
        );
        a.record(reading(210.0), t());
        let rl = a.handle("RL");
        assert_eq!(rl.len(), 3);
        assert_eq!(rl[0], "Last 2 samples");
        assert_eq!(a.handle("RL"), ["Last 0 samples"]);
        // Auto range followed the reading: 230 V -> 300 V, 0.87 A -> 1 A.
        assert_eq!(a.handle("RR"), ["Ranges,1,1.000000,1,300.000000"]);
    }

    #[test]
    fn a_client_gone_mid_measurement_leaves_nothing_to_the_next() {
        let mut a = rehearsal();
        a.client_gone();
        assert!(a.take_status().is_empty());
        a.handle("Go,1000,0,gone");
        a.record(reading(200.0), t());
        a.take_status();
        a.client_gone();
        assert_eq!(a.interval_ms(), None);
        let status = a.take_status();
        assert!(
            status[0].starts_with("WARNING: the client disconnected"),
            "{status:?}"
        );
        assert_eq!(status[1], "Completed test");
        assert_eq!(a.handle("RL"), ["Last 0 samples"]);
        assert!(a.handle("Go,1000,0,next")[0].starts_with("Starting"));
    }

    #[test]
    fn fixed_ranges_round_up_and_over_range_is_reported() {
        let mut a = rehearsal();
        assert_eq!(a.handle("SR,V,231.5"), ["Range V changed"]);
        assert_eq!(a.handle("SR,A,0.95"), ["Range A changed"]);
        assert_eq!(a.handle("RR"), ["Ranges,0,1.000000,0,300.000000"]);
        a.handle("Go,1000,0,m_testing");
        a.take_status();
        let line = a.record(reading(460.0), t()).unwrap(); // 2 A on a 1 A range
        assert!(line.contains("Watts,-1.000000"), "{line}");
        let status = a.take_status();
        assert!(
            status[0].starts_with("ERROR: Current appears to be too high for set range"),
            "{status:?}"
        );
        assert_eq!(a.handle("Uncertainty"), ["Uncertainty,-1"]);
        // Back to auto, as the director restores it.
        a.handle("Stop");
        a.handle("SR,V,Auto");
        a.handle("SR,A,Auto");
        assert!(a.handle("RR")[0].starts_with("Ranges,1,"));
    }

    #[test]
    fn low_readings_on_a_big_range_warn_about_uncertainty() {
        let mut a = rehearsal();
        a.handle("SR,A,20");
        a.handle("SR,V,600");
        a.handle("Go,1000,0,m");
        a.take_status();
        a.record(reading(100.0), t());
        let status = a.take_status();
        assert!(status[0].starts_with("WARNING: Uncertainty"), "{status:?}");
    }
}
