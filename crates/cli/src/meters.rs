//! Which meters a command uses: `--power` specs turned into meters, checked
//! before anything starts (a meter the user named but cannot read is an
//! error that says why; `auto` takes whatever this machine offers).

use anyhow::{bail, Result};
use clap::Args;
use power::discover::{self, Roots};
use power::meter::estimate::EstimateConfig;
use power::meter::ptd::{PtdMeter, PtdTimeouts, SharedPtdClient};
use power::meter::{ipmi, nvml, redfish, replay, Meter, MeterError, Probe, Scope};
use power::sampler::MeterPlan;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct PowerArgs {
    /// Meters, comma-separated or repeated: auto (every local meter found: NVML, RAPL, hwmon),
    /// none, nvml, rapl, hwmon, estimate (needs --tdp), ipmi, ipmi://USER@HOST,
    /// redfish://HOST[:PORT], ptd://HOST:PORT, replay:FILE.csv
    #[arg(
        long = "power",
        value_name = "SPEC",
        value_delimiter = ',',
        default_value = "auto"
    )]
    pub power: Vec<String>,

    /// Sampling interval per meter (e.g. 100ms = 10 Hz, 10ms = 100 Hz).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = crate::run::parse_duration)]
    pub power_interval: Duration,

    /// CPU TDP in watts for `--power estimate` (CPU power ≈ idle + utilisation × (TDP − idle)).
    #[arg(long, value_name = "WATTS")]
    pub tdp: Option<f64>,

    /// Meters that make the system total, instead of the default rule (`joulebench power list`
    /// prints it). E.g. --total ipmi, or --total nvml-gpu0,rapl-package-0.
    #[arg(long, value_name = "METER", value_delimiter = ',')]
    pub total: Vec<String>,

    /// Measure idle power for this many seconds first, and report energy above idle.
    #[arg(long, value_name = "SECONDS")]
    pub idle: Option<f64>,

    /// File with the IPMI password (else the IPMI_PASSWORD environment variable).
    #[arg(long, value_name = "FILE")]
    pub ipmi_password_file: Option<PathBuf>,

    /// File with Redfish credentials, USER:PASSWORD (else REDFISH_USER / REDFISH_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub redfish_credentials: Option<PathBuf>,

    /// Accept a Redfish BMC's self-signed certificate.
    #[arg(long)]
    pub redfish_insecure: bool,

    /// Root of sysfs (for testing against a fake tree).
    #[arg(long, value_name = "DIR", default_value = "/sys", hide = true)]
    pub sysfs_root: PathBuf,

    /// Root of procfs (for testing against a fake tree).
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub procfs_root: PathBuf,
}

/// The meters chosen, and what was looked for but could not be used.
pub struct Selection {
    pub meters: Vec<Box<dyn Meter>>,
    pub unusable: Vec<Unusable>,
    /// The PTDaemon connection when one is used (for ranging and testing).
    pub ptd: Option<(SharedPtdClient, String)>,
}

pub struct Unusable {
    pub source: String,
    pub domain: String,
    pub error: MeterError,
}

impl PowerArgs {
    fn roots(&self) -> Roots {
        Roots {
            sysfs: self.sysfs_root.clone(),
            procfs: self.procfs_root.clone(),
        }
    }

    fn estimate_config(&self) -> Result<Option<EstimateConfig>> {
        match self.tdp {
            Some(tdp) if tdp.is_finite() && tdp > 0.0 => Ok(Some(EstimateConfig::new(tdp))),
            Some(tdp) => bail!("--tdp {tdp}: must be a positive number of watts"),
            None => Ok(None),
        }
    }

    /// Every probe this machine answers, for `power list` (remote meters only
    /// when named in --power).
    pub fn probe_all(&self) -> Result<Vec<Probe>> {
        let mut probes = discover::discover(&self.roots(), self.estimate_config()?);
        probes.extend(nvml::probe());
        probes.extend(ipmi::probe());
        for spec in &self.power {
            if spec.starts_with("redfish")
                || spec.starts_with("ptd://")
                || spec.starts_with("replay:")
                || spec.starts_with("ipmi://")
            {
                probes.extend(self.probe_spec(spec)?);
            }
        }
        Ok(probes)
    }

    fn probe_spec(&self, spec: &str) -> Result<Vec<Probe>> {
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
                None => {
                    bail!("--power estimate needs --tdp WATTS (the CPU's thermal design power)")
                }
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
            other => bail!(
                "--power {other}: unknown meter (auto, none, nvml, rapl, hwmon, estimate, ipmi, \
                 ipmi://USER@HOST, redfish://HOST, ptd://HOST:PORT, replay:FILE)"
            ),
        })
    }

    /// The meters to sample, resolved before the run starts.
    pub fn select(&self) -> Result<Selection> {
        let mut selection = Selection {
            meters: Vec::new(),
            unusable: Vec::new(),
            ptd: None,
        };
        if self.power.iter().any(|s| s == "none") {
            if self.power.len() > 1 {
                bail!("--power none cannot be combined with other meters");
            }
            return Ok(selection);
        }
        for spec in &self.power {
            if spec.starts_with("ptd://") {
                // Kept apart: the run needs its connection for ranging and testing.
                let meter = PtdMeter::connect(spec, PtdTimeouts::default())
                    .map_err(|e| anyhow::anyhow!("--power {spec}: {e}"))?;
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
                        if selection
                            .meters
                            .iter()
                            .any(|m| m.info().id == meter.info().id)
                        {
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
                let why: Vec<String> = selection
                    .unusable
                    .iter()
                    .map(|u| format!("  {}", u.error))
                    .collect();
                bail!("--power {spec}: no usable meter:\n{}\n(`joulebench power list` shows every meter and what to do)", why.join("\n"));
            }
        }
        Ok(selection)
    }

    /// Checks `--total` names meters that were selected.
    pub fn check_total(&self, selection: &Selection) -> Result<()> {
        for id in &self.total {
            if !selection.meters.iter().any(|m| &m.info().id == id) {
                let ids: Vec<String> = selection
                    .meters
                    .iter()
                    .map(|m| m.info().id.clone())
                    .collect();
                bail!(
                    "--total {id}: not among the selected meters ({})",
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                );
            }
        }
        Ok(())
    }

    pub fn plans(&self, meters: Vec<Box<dyn Meter>>) -> Vec<MeterPlan> {
        let rate_hz = 1.0 / self.power_interval.as_secs_f64();
        meters
            .into_iter()
            .map(|m| MeterPlan::with_rate(m, rate_hz))
            .collect()
    }
}
