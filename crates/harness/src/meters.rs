//! Which meters a session uses: `--power` specs turned into meters and
//! checked before anything starts. A meter the user named but that cannot be
//! read is an error that says why; `auto` takes whatever this machine offers
//! and lists the rest as unusable.

use power::discover::{self, Roots};
use power::meter::estimate::EstimateConfig;
use power::meter::ptd::{PtdMeter, PtdTimeouts, SharedPtdClient};
use power::meter::{ipmi, nvml, prom, redfish, replay, Meter, MeterError, Probe, Scope};
use power::sampler::MeterPlan;
use report::schema::UnusableMeter;
use std::path::PathBuf;
use std::time::Duration;

/// Every spec `--power` takes, for messages.
pub const KNOWN_SPECS: &str = "auto, none, nvml, rapl, hwmon, estimate, ipmi, ipmi://USER@HOST, \
                               redfish://HOST, ptd://HOST:PORT, prom://HOST:PORT[/PATH], \
                               replay:FILE";

/// What the user asked of the meters (the CLI's `--power*` flags, or a
/// Python front end's settings), with no parsing library attached.
#[derive(Debug, Clone)]
pub struct PowerOptions {
    /// Meter specs: auto, none, nvml, rapl, hwmon, estimate, ipmi, ipmi://…,
    /// redfish://…, ptd://HOST:PORT, prom://HOST:PORT[/PATH], replay:FILE.
    pub specs: Vec<String>,
    /// Sampling interval per meter.
    pub interval: Duration,
    /// CPU TDP for `estimate`.
    pub tdp_w: Option<f64>,
    /// Meters that make the system total, instead of the default rule.
    pub total: Vec<String>,
    /// Idle power is measured for this long first, when set.
    pub idle_s: Option<f64>,
    pub ipmi_password_file: Option<PathBuf>,
    pub redfish_credentials: Option<PathBuf>,
    pub redfish_insecure: bool,
    pub sysfs_root: PathBuf,
    pub procfs_root: PathBuf,
}

impl Default for PowerOptions {
    fn default() -> Self {
        Self {
            specs: vec!["auto".into()],
            interval: Duration::from_millis(100),
            tdp_w: None,
            total: Vec::new(),
            idle_s: None,
            ipmi_password_file: None,
            redfish_credentials: None,
            redfish_insecure: false,
            sysfs_root: PathBuf::from("/sys"),
            procfs_root: PathBuf::from("/proc"),
        }
    }
}

/// Why the meters asked for cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MeterSelectionError {
    #[error("--power {spec}: unknown meter ({KNOWN_SPECS})")]
    UnknownSpec { spec: String },
    #[error("--power none cannot be combined with other meters")]
    NoneWithOthers,
    #[error("--power estimate needs --tdp WATTS (the CPU's thermal design power)")]
    EstimateWithoutTdp,
    #[error("--tdp {0}: must be a positive number of watts")]
    Tdp(f64),
    #[error("--power {spec}: {error}")]
    Ptd { spec: String, error: MeterError },
    #[error(
        "--power {spec}: no usable meter:\n{}\n(`joulebench power list` shows every meter and what to do)",
        reasons.join("\n")
    )]
    NoneUsable { spec: String, reasons: Vec<String> },
    #[error("--total {id}: not among the selected meters ({})", if selected.is_empty() { "none".to_string() } else { selected.join(", ") })]
    TotalNotSelected { id: String, selected: Vec<String> },
    #[error("--power-interval must be above zero")]
    Interval,
}

/// A meter looked for but not usable, and why.
pub struct Unusable {
    pub source: String,
    pub domain: String,
    pub error: MeterError,
}

impl Unusable {
    /// As `result.json` records it.
    pub fn record(&self) -> UnusableMeter {
        UnusableMeter {
            source: self.source.clone(),
            domain: self.domain.clone(),
            reason: self.error.to_string(),
        }
    }
}

/// The meters chosen, and what was looked for but could not be used.
pub struct Selection {
    pub meters: Vec<Box<dyn Meter>>,
    pub unusable: Vec<Unusable>,
    /// The PTDaemon connection when one is used (for MLPerf's ranging and
    /// testing runs) and the analyzer's model.
    pub ptd: Option<(SharedPtdClient, String)>,
}

impl Selection {
    pub fn unusable_records(&self) -> Vec<UnusableMeter> {
        self.unusable.iter().map(Unusable::record).collect()
    }
}

impl PowerOptions {
    fn roots(&self) -> Roots {
        Roots {
            sysfs: self.sysfs_root.clone(),
            procfs: self.procfs_root.clone(),
        }
    }

    /// Whether the user asked for no meter at all.
    pub fn none_asked(&self) -> bool {
        self.specs.iter().any(|s| s == "none")
    }

    fn estimate_config(&self) -> Result<Option<EstimateConfig>, MeterSelectionError> {
        match self.tdp_w {
            Some(tdp) if tdp.is_finite() && tdp > 0.0 => Ok(Some(EstimateConfig::new(tdp))),
            Some(tdp) => Err(MeterSelectionError::Tdp(tdp)),
            None => Ok(None),
        }
    }

    /// Every probe this machine answers, for `power list` (remote meters only
    /// when named).
    pub fn probe_all(&self) -> Result<Vec<Probe>, MeterSelectionError> {
        let mut probes = discover::discover(&self.roots(), self.estimate_config()?);
        probes.extend(nvml::probe());
        probes.extend(ipmi::probe());
        for spec in &self.specs {
            if ["redfish", "ptd://", "replay:", "ipmi://", "prom"]
                .iter()
                .any(|p| spec.starts_with(p))
            {
                probes.extend(self.probe_spec(spec)?);
            }
        }
        Ok(probes)
    }

    fn probe_spec(&self, spec: &str) -> Result<Vec<Probe>, MeterSelectionError> {
        let unusable = |source: &str, error: MeterError| Probe::Unusable {
            source: source.into(),
            domain: spec.into(),
            error,
        };
        Ok(match spec {
            "nvml" => nvml::probe(),
            "rapl" => power::meter::rapl::probe(&self.sysfs_root),
            "hwmon" => power::meter::hwmon::probe(&self.sysfs_root),
            "ipmi" => ipmi::probe(),
            "estimate" => match self.estimate_config()? {
                Some(cfg) => vec![power::meter::estimate::probe(&self.procfs_root, cfg)],
                None => return Err(MeterSelectionError::EstimateWithoutTdp),
            },
            s if s.starts_with("ipmi://") => {
                match ipmi::parse_ipmi_spec(s, self.ipmi_password_file.as_deref()) {
                    Ok(cfg) => ipmi::probe_with(cfg),
                    Err(e) => vec![unusable("ipmi", e)],
                }
            }
            s if s.starts_with("redfish") => {
                match redfish::RedfishConfig::from_spec(s, self.redfish_credentials.as_deref()) {
                    Ok(mut cfg) => {
                        cfg.accept_invalid_certs = self.redfish_insecure;
                        redfish::probe(&cfg)
                    }
                    Err(e) => vec![unusable("redfish", e)],
                }
            }
            s if s.starts_with("prom") => prom::probe_spec(s),
            s if s.starts_with("ptd://") => match PtdMeter::connect(s, PtdTimeouts::default()) {
                Ok(m) => vec![Probe::Usable(Box::new(m))],
                Err(e) => vec![unusable("ptd", e)],
            },
            s if s.starts_with("replay:") => {
                let path = PathBuf::from(&s["replay:".len()..]);
                match replay::ReplayMeter::open(&path, Scope::Node) {
                    Ok(m) => vec![Probe::Usable(Box::new(m))],
                    Err(e) => vec![unusable("replay", e)],
                }
            }
            other => return Err(MeterSelectionError::UnknownSpec { spec: other.into() }),
        })
    }

    /// The meters to sample, resolved before anything starts.
    pub fn select(&self) -> Result<Selection, MeterSelectionError> {
        let mut selection = Selection {
            meters: Vec::new(),
            unusable: Vec::new(),
            ptd: None,
        };
        if self.interval.is_zero() {
            return Err(MeterSelectionError::Interval);
        }
        if self.none_asked() {
            if self.specs.len() > 1 {
                return Err(MeterSelectionError::NoneWithOthers);
            }
            return Ok(selection);
        }
        for spec in &self.specs {
            if spec.starts_with("ptd://") {
                // Kept apart: the session needs its connection for ranging and testing.
                let meter = PtdMeter::connect(spec, PtdTimeouts::default()).map_err(|error| {
                    MeterSelectionError::Ptd {
                        spec: spec.clone(),
                        error,
                    }
                })?;
                selection.ptd = Some((meter.client(), meter.greeting().identity.model.clone()));
                selection.meters.push(Box::new(meter));
                continue;
            }
            let (probes, required) = if spec == "auto" {
                let mut p = discover::discover(&self.roots(), self.estimate_config()?);
                p.extend(nvml::probe());
                (p, false)
            } else {
                (self.probe_spec(spec)?, true)
            };
            let mut usable = 0;
            for probe in probes {
                match probe {
                    Probe::Usable(meter) => {
                        let id = &meter.info().id;
                        if selection.meters.iter().any(|m| &m.info().id == id) {
                            continue;
                        }
                        usable += 1;
                        selection.meters.push(meter);
                    }
                    Probe::Unusable {
                        source,
                        domain,
                        error,
                    } => selection.unusable.push(Unusable {
                        source,
                        domain,
                        error,
                    }),
                }
            }
            if required && usable == 0 {
                return Err(MeterSelectionError::NoneUsable {
                    spec: spec.clone(),
                    reasons: selection
                        .unusable
                        .iter()
                        .map(|u| format!("  {}", u.error))
                        .collect(),
                });
            }
        }
        self.check_total(&selection)?;
        Ok(selection)
    }

    /// Checks `total` names meters that were selected.
    fn check_total(&self, selection: &Selection) -> Result<(), MeterSelectionError> {
        for id in &self.total {
            if !selection.meters.iter().any(|m| &m.info().id == id) {
                return Err(MeterSelectionError::TotalNotSelected {
                    id: id.clone(),
                    selected: selection
                        .meters
                        .iter()
                        .map(|m| m.info().id.clone())
                        .collect(),
                });
            }
        }
        Ok(())
    }

    /// A sampling plan per meter at this options' rate.
    pub fn plans(&self, meters: Vec<Box<dyn Meter>>) -> Vec<MeterPlan> {
        let rate_hz = 1.0 / self.interval.as_secs_f64();
        meters
            .into_iter()
            .map(|m| MeterPlan::with_rate(m, rate_hz))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(specs: &[&str]) -> PowerOptions {
        let empty = tempfile::tempdir().unwrap();
        PowerOptions {
            specs: specs.iter().map(|s| s.to_string()).collect(),
            sysfs_root: empty.path().join("sys"),
            procfs_root: empty.path().join("proc"),
            ..Default::default()
        }
    }

    #[test]
    fn none_selects_nothing_and_combines_with_nothing() {
        assert!(options(&["none"]).select().unwrap().meters.is_empty());
        assert!(matches!(
            options(&["none", "rapl"]).select(),
            Err(MeterSelectionError::NoneWithOthers)
        ));
    }

    #[test]
    fn a_named_meter_that_cannot_be_read_stops_the_session() {
        let err = options(&["rapl"])
            .select()
            .err()
            .expect("no RAPL in an empty sysfs");
        assert!(
            matches!(err, MeterSelectionError::NoneUsable { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("joulebench power list"), "{err}");
    }

    #[test]
    fn bad_specs_say_what_is_known() {
        let err = options(&["watts"]).select().err().unwrap();
        assert!(err.to_string().contains("ptd://HOST:PORT"), "{err}");
        let err = options(&["estimate"]).select().err().unwrap();
        assert!(matches!(err, MeterSelectionError::EstimateWithoutTdp));
    }

    #[test]
    fn the_total_must_name_selected_meters() {
        let mut o = options(&["none"]);
        o.specs = vec!["auto".into()];
        o.total = vec!["nvml-gpu7".into()];
        let err = o.select().err().unwrap();
        assert!(err.to_string().starts_with("--total nvml-gpu7"), "{err}");
    }
}
