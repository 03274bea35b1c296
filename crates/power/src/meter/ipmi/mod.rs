//! Node power from the BMC through IPMI DCMI (`ipmitool dcmi power reading`).
//!
//! Why a child process and not an IPMI library: `ipmitool` is what every
//! server vendor documents, it already handles the local device
//! (`/dev/ipmi0`) and the LAN (`-I lanplus`) with its cipher suites and
//! vendor quirks, and its output is stable enough that other tools parse it
//! too. The cost is a process start per reading (a few milliseconds), small
//! beside the BMC's own refresh of about a second.
//!
//! Passwords never go on the command line (any user can read it from
//! `/proc`): `-E` makes ipmitool read `IPMI_PASSWORD` from its environment,
//! and `-f FILE` reads it from a file. A spec that carries a password is
//! refused.
//!
//! The reading is the BMC's, for the whole node (PSU input on most servers),
//! so the scope is [`Scope::Node`]. The "power reading state" line says
//! whether the BMC's power measurement is active; some BMCs (OpenBMC among
//! them) say `deactivated` while reporting real values, so a deactivated
//! state is only refused when the reading is also zero, and otherwise noted
//! in the log once.

mod tool;

use tool::run_ipmitool;
pub use tool::MAX_OUTPUT_BYTES;

use super::{Meter, MeterError, MeterInfo, Probe, Provenance, Reading, ReadingKind, Scope};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The binary run when no other is configured (found on `PATH`).
pub const DEFAULT_BINARY: &str = "ipmitool";
/// The environment variable `ipmitool -E` reads the password from.
pub const PASSWORD_ENV: &str = "IPMI_PASSWORD";
const METER: &str = "ipmi";

/// Where the BMC password for a LAN session comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `IPMI_PASSWORD` in the environment (`ipmitool -E`).
    Env,
    /// A file whose first line is the password (`ipmitool -f FILE`).
    File(PathBuf),
}

/// Which BMC to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpmiTarget {
    /// This machine's BMC through the local IPMI device.
    Local,
    /// A BMC on the network (`-I lanplus -H host -U user`).
    Lan {
        host: String,
        user: String,
        password: PasswordSource,
    },
}

/// How to run ipmitool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiConfig {
    /// The ipmitool binary (a name looked up on `PATH`, or a path).
    pub binary: PathBuf,
    pub target: IpmiTarget,
    /// The longest one `ipmitool` run may take before it is killed.
    pub timeout: Duration,
}

impl IpmiConfig {
    /// The local BMC with the default binary.
    pub fn local() -> IpmiConfig {
        IpmiConfig {
            binary: PathBuf::from(DEFAULT_BINARY),
            target: IpmiTarget::Local,
            timeout: Duration::from_secs(5),
        }
    }

    /// The arguments given to ipmitool (never a password).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if let IpmiTarget::Lan {
            host,
            user,
            password,
        } = &self.target
        {
            for a in ["-I", "lanplus", "-H", host.as_str(), "-U", user.as_str()] {
                args.push(a.into());
            }
            match password {
                PasswordSource::Env => args.push("-E".into()),
                PasswordSource::File(path) => {
                    args.push("-f".into());
                    args.push(path.clone().into_os_string());
                }
            }
        }
        for a in ["dcmi", "power", "reading"] {
            args.push(a.into());
        }
        args
    }

    fn domain(&self) -> String {
        match &self.target {
            IpmiTarget::Local => "node".to_string(),
            IpmiTarget::Lan { host, .. } => format!("node@{host}"),
        }
    }
}

/// Parses an IPMI meter spec:
/// - `ipmi` or `ipmi://` or `ipmi://local`: this machine's BMC;
/// - `ipmi://USER@HOST`: a BMC over the LAN, the password from
///   `password_file` when given, else from `IPMI_PASSWORD`.
///
/// A password inside the spec (`USER:PASS@HOST`) is refused.
pub fn parse_ipmi_spec(spec: &str, password_file: Option<&Path>) -> Result<IpmiConfig, MeterError> {
    let config = |reason: String| MeterError::Config {
        meter: METER.into(),
        reason,
    };
    let rest = match spec {
        "ipmi" => "",
        s => s.strip_prefix("ipmi://").ok_or_else(|| {
            config(format!(
                "`{spec}` is not an IPMI spec; write `ipmi` (this machine) or ipmi://USER@HOST"
            ))
        })?,
    };
    let rest = rest.trim_end_matches('/');
    let mut cfg = IpmiConfig::local();
    if rest.is_empty() || rest == "local" {
        if password_file.is_some() {
            return Err(config(
                "a password file was given for the local BMC, which needs none".into(),
            ));
        }
        return Ok(cfg);
    }
    let (user, host) = rest.rsplit_once('@').ok_or_else(|| {
        config(format!(
            "`{spec}` names no user; write ipmi://USER@HOST (the password comes from \
             {PASSWORD_ENV} or a password file)"
        ))
    })?;
    if user.contains(':') {
        return Err(config(format!(
            "`{spec}` carries a password; passwords on the command line are visible to every \
             user of this machine. Put it in {PASSWORD_ENV} or a password file instead"
        )));
    }
    if user.is_empty() || host.is_empty() {
        return Err(config(format!("`{spec}`: user and host must not be empty")));
    }
    if host.starts_with('-') || user.starts_with('-') {
        return Err(config(format!(
            "`{spec}`: user and host may not start with `-`"
        )));
    }
    cfg.target = IpmiTarget::Lan {
        host: host.to_string(),
        user: user.to_string(),
        password: match password_file {
            Some(p) => PasswordSource::File(p.to_path_buf()),
            None => PasswordSource::Env,
        },
    };
    Ok(cfg)
}

/// Everything `ipmitool dcmi power reading` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct DcmiPowerReading {
    pub instantaneous_w: f64,
    pub minimum_w: Option<f64>,
    pub maximum_w: Option<f64>,
    pub average_w: Option<f64>,
    /// The BMC's timestamp, as printed.
    pub timestamp: Option<String>,
    /// The BMC's averaging period for min/max/average, in seconds.
    pub sampling_period_s: Option<f64>,
    /// `Some(true)` for `activated`, `Some(false)` for `deactivated`.
    pub active: Option<bool>,
}

/// Why ipmitool's `dcmi power reading` output gives no reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DcmiParseError {
    #[error("`{label}` value `{value}` is not in Watts")]
    NotWatts { label: String, value: String },
    #[error("`{label}` value `{value}` is not a number of watts")]
    NotANumber { label: String, value: String },
    /// `said`: the output's first non-empty line, which usually says why.
    #[error(
        "no `Instantaneous power reading` in ipmitool's output{}",
        said.as_ref().map(|l| format!(" (it said: {l})")).unwrap_or_default()
    )]
    NoReading { said: Option<String> },
}

/// Parses `ipmitool dcmi power reading` output. Fields are found by their
/// labels anywhere in the text, because some ipmitool versions print the
/// timestamp without a line break before `Sampling period:`.
pub fn parse_dcmi_power_reading(text: &str) -> Result<DcmiPowerReading, DcmiParseError> {
    let watts = |label: &str| -> Result<Option<f64>, DcmiParseError> {
        let Some(value) = field(text, label) else {
            return Ok(None);
        };
        let mut words = value.split_whitespace();
        let number = words.next().unwrap_or_default();
        let unit = words.next().unwrap_or_default();
        if unit != "Watts" {
            return Err(DcmiParseError::NotWatts {
                label: label.into(),
                value: value.into(),
            });
        }
        number
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && *w >= 0.0)
            .map(Some)
            .ok_or_else(|| DcmiParseError::NotANumber {
                label: label.into(),
                value: number.into(),
            })
    };
    let instantaneous_w =
        watts("Instantaneous power reading:")?.ok_or_else(|| DcmiParseError::NoReading {
            said: text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(String::from),
        })?;
    let timestamp = field(text, "IPMI timestamp:").map(|t| {
        let t = t.split("Sampling period:").next().unwrap_or(t);
        t.trim().to_string()
    });
    let sampling_period_s = field(text, "Sampling period:")
        .and_then(parse_period_s)
        // A number of digits past f64's range is no period.
        .filter(|s| s.is_finite());
    let active =
        field(text, "Power reading state is:").and_then(|s| match s.split_whitespace().next() {
            Some("activated") => Some(true),
            Some("deactivated") => Some(false),
            _ => None,
        });
    Ok(DcmiPowerReading {
        instantaneous_w,
        minimum_w: watts("Minimum during sampling period:")?,
        maximum_w: watts("Maximum during sampling period:")?,
        average_w: watts("Average power reading over sample period:")?,
        timestamp,
        sampling_period_s,
        active,
    })
}

/// The rest of the line after `label`, trimmed.
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let start = text.find(label)? + label.len();
    let rest = &text[start..];
    Some(rest.lines().next().unwrap_or_default().trim())
}

/// `00000005 Seconds.`, `5 sec`, `1 Minute` and the like, in seconds.
fn parse_period_s(value: &str) -> Option<f64> {
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: f64 = digits.parse().ok()?;
    let unit = value[digits.len()..].trim().to_ascii_lowercase();
    let scale = if unit.starts_with("min") {
        60.0
    } else if unit.starts_with("hour") || unit.starts_with("hr") {
        3600.0
    } else if unit.starts_with("day") {
        86_400.0
    } else if unit.is_empty() || unit.starts_with("sec") {
        1.0
    } else {
        return None;
    };
    Some(n * scale)
}

/// Node power through `ipmitool dcmi power reading`.
#[derive(Debug)]
pub struct IpmiMeter {
    info: MeterInfo,
    config: IpmiConfig,
    warned_deactivated: bool,
    last: Option<DcmiPowerReading>,
}

impl IpmiMeter {
    /// Checks that the BMC answers with a power reading, and returns the meter.
    pub fn open(config: IpmiConfig) -> Result<IpmiMeter, MeterError> {
        if let IpmiTarget::Lan {
            password: PasswordSource::Env,
            ..
        } = &config.target
        {
            if std::env::var_os(PASSWORD_ENV).is_none() {
                return Err(MeterError::Config {
                    meter: METER.into(),
                    reason: format!(
                        "{PASSWORD_ENV} is not set; export it (or give a password file) for \
                         the BMC's password"
                    ),
                });
            }
        }
        let id = match &config.target {
            IpmiTarget::Local => "ipmi-node".to_string(),
            IpmiTarget::Lan { host, .. } => format!("ipmi-{}", file_safe(host)),
        };
        let mut meter = IpmiMeter {
            info: MeterInfo {
                id,
                source: METER.into(),
                domain: config.domain(),
                scope: Scope::Node,
                kind: ReadingKind::PowerSample,
                provenance: Provenance::Measured,
                resolution: 1.0,
                update_period: Duration::from_secs(1),
                contains: Vec::new(),
            },
            config,
            warned_deactivated: false,
            last: None,
        };
        let first = meter.read_full()?;
        if let Some(period) = first.sampling_period_s.filter(|p| *p > 0.0) {
            tracing::debug!(target: "ipmi", period_s = period, "BMC sampling period");
        }
        Ok(meter)
    }

    /// Everything the last reading printed (min/max/average, state, ...).
    pub fn last_reading(&self) -> Option<&DcmiPowerReading> {
        self.last.as_ref()
    }

    /// Runs ipmitool once and parses its full output.
    pub fn read_full(&mut self) -> Result<DcmiPowerReading, MeterError> {
        let stdout = run_ipmitool(&self.config)?;
        let reading = parse_dcmi_power_reading(&stdout).map_err(|reason| {
            if stdout.contains("DCMI request failed") || stdout.contains("Invalid command") {
                MeterError::NotPresent {
                    meter: METER.into(),
                    reason: format!("the BMC does not offer a DCMI power reading: {reason}"),
                }
            } else {
                MeterError::Read {
                    meter: METER.into(),
                    reason: reason.to_string(),
                }
            }
        })?;
        if reading.active == Some(false) {
            if reading.instantaneous_w == 0.0 {
                return Err(MeterError::NotPresent {
                    meter: METER.into(),
                    reason: "the BMC reports its power measurement as deactivated and reads 0 W"
                        .into(),
                });
            }
            if !self.warned_deactivated {
                self.warned_deactivated = true;
                tracing::warn!(
                    target: "ipmi",
                    watts = reading.instantaneous_w,
                    "BMC says its power reading state is deactivated but reports a value; using it"
                );
            }
        }
        self.last = Some(reading.clone());
        Ok(reading)
    }
}

impl Meter for IpmiMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        self.read_full().map(|r| Reading::watts(r.instantaneous_w))
    }
}

/// Probes this machine's BMC with the default binary.
pub fn probe() -> Vec<Probe> {
    probe_with(IpmiConfig::local())
}

/// Probes one configured BMC: one usable meter, or why not.
pub fn probe_with(config: IpmiConfig) -> Vec<Probe> {
    let domain = config.domain();
    vec![match IpmiMeter::open(config) {
        Ok(m) => Probe::Usable(Box::new(m)),
        Err(error) => Probe::Unusable {
            source: METER.into(),
            domain,
            error,
        },
    }]
}

fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ipmitool 1.8.18 on a Dell server.
    const CLASSIC: &str = "
    Instantaneous power reading:                   346 Watts
    Minimum during sampling period:                 12 Watts
    Maximum during sampling period:                703 Watts
    Average power reading over sample period:      346 Watts
    IPMI timestamp:                           Tue Jul 16 14:57:49 2024
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated


";

    /// ipmitool 1.8.19: the timestamp has no line break after it.
    const JOINED: &str = "
    Instantaneous power reading:                   195 Watts
    Minimum during sampling period:                188 Watts
    Maximum during sampling period:               1940 Watts
    Average power reading over sample period:      194 Watts
    IPMI timestamp:                           08/28/26 07:12:06 UTC    Sampling period:                          00000005 Seconds.
    Power reading state is:                   activated

";

    /// OpenBMC: deactivated, yet a real value.
    const OPENBMC: &str = "
    Instantaneous power reading:                   235 Watts
    Minimum during sampling period:                235 Watts
    Maximum during sampling period:                235 Watts
    Average power reading over sample period:      235 Watts
    IPMI timestamp:                                Thu Jan  1 00:00:00 1970
    Sampling period:                               00000000 Seconds.
    Power reading state is:                        deactivated
";

    #[test]
    fn classic_output_parses_every_line() {
        let r = parse_dcmi_power_reading(CLASSIC).unwrap();
        assert_eq!(r.instantaneous_w, 346.0);
        assert_eq!(r.minimum_w, Some(12.0));
        assert_eq!(r.maximum_w, Some(703.0));
        assert_eq!(r.average_w, Some(346.0));
        assert_eq!(r.timestamp.as_deref(), Some("Tue Jul 16 14:57:49 2024"));
        assert_eq!(r.sampling_period_s, Some(1.0));
        assert_eq!(r.active, Some(true));
    }

    #[test]
    fn timestamp_run_into_sampling_period_is_split() {
        let r = parse_dcmi_power_reading(JOINED).unwrap();
        assert_eq!(r.instantaneous_w, 195.0);
        assert_eq!(r.maximum_w, Some(1940.0));
        assert_eq!(r.timestamp.as_deref(), Some("08/28/26 07:12:06 UTC"));
        assert_eq!(r.sampling_period_s, Some(5.0));
    }

    #[test]
    fn deactivated_state_is_reported() {
        let r = parse_dcmi_power_reading(OPENBMC).unwrap();
        assert_eq!(r.active, Some(false));
        assert_eq!(r.instantaneous_w, 235.0);
        assert_eq!(r.sampling_period_s, Some(0.0));
    }

    #[test]
    fn unsupported_or_garbled_output_is_an_error_that_quotes_it() {
        let err = parse_dcmi_power_reading(
            "\n    DCMI request failed because: Invalid data field in request (cc)\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("DCMI request failed"), "{err}");
        let err =
            parse_dcmi_power_reading("Instantaneous power reading:  lots Watts\n").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        let err = parse_dcmi_power_reading("Instantaneous power reading:  12 mW\n").unwrap_err();
        assert!(err.to_string().contains("not in Watts"), "{err}");
    }

    #[test]
    fn sampling_periods_in_other_units() {
        assert_eq!(parse_period_s("00000005 Seconds."), Some(5.0));
        assert_eq!(parse_period_s("5 sec"), Some(5.0));
        assert_eq!(parse_period_s("1 Minute"), Some(60.0));
        assert_eq!(parse_period_s("2 hours"), Some(7200.0));
        assert_eq!(parse_period_s("soon"), None);
        assert_eq!(parse_period_s("3 fortnights"), None);
    }

    #[test]
    fn specs_map_to_targets_and_never_carry_a_password() {
        assert_eq!(parse_ipmi_spec("ipmi", None).unwrap(), IpmiConfig::local());
        assert_eq!(
            parse_ipmi_spec("ipmi://local", None).unwrap(),
            IpmiConfig::local()
        );
        let lan = parse_ipmi_spec("ipmi://admin@bmc-7.lab", None).unwrap();
        assert_eq!(
            lan.target,
            IpmiTarget::Lan {
                host: "bmc-7.lab".into(),
                user: "admin".into(),
                password: PasswordSource::Env
            }
        );
        let args: Vec<String> = lan
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-I",
                "lanplus",
                "-H",
                "bmc-7.lab",
                "-U",
                "admin",
                "-E",
                "dcmi",
                "power",
                "reading"
            ]
        );
        let file =
            parse_ipmi_spec("ipmi://admin@10.0.0.9", Some(Path::new("/etc/bmc.pw"))).unwrap();
        let args = file.args();
        assert!(args.contains(&OsString::from("-f")));
        assert!(args.contains(&OsString::from("/etc/bmc.pw")));
        for bad in [
            "ipmi://admin:secret@bmc",
            "ipmi://bmc",
            "ipmi://@bmc",
            "ipmi://-oops@bmc",
            "redfish://bmc",
        ] {
            match parse_ipmi_spec(bad, None) {
                Err(MeterError::Config { reason, .. }) => {
                    assert!(!reason.is_empty());
                    if bad.contains("secret") {
                        assert!(reason.contains("command line"), "{reason}");
                    }
                }
                other => panic!("{bad}: expected Config error, got {other:?}"),
            }
        }
        assert!(parse_ipmi_spec("ipmi", Some(Path::new("/x"))).is_err());
    }
}
