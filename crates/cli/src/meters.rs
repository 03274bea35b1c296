//! The `--power*` flags every measuring command shares; what they mean (the
//! meters chosen and checked) is `harness::meters`.

use clap::Args;
use harness::PowerOptions;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct PowerArgs {
    /// Meters, comma-separated or repeated: auto (every local meter found: NVML, RAPL, hwmon),
    /// none, nvml, rapl, hwmon, estimate (needs --tdp), ipmi, ipmi://USER@HOST,
    /// redfish://HOST[:PORT], ptd://HOST:PORT, replay:FILE.csv,
    /// prom://HOST:PORT[/PATH][?gpu=N&match=METRIC] (a remote `joulebench exporter` or NVIDIA
    /// DCGM exporter page; prom+https:// for TLS; repeat gpu= for several GPUs, no commas)
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

impl PowerArgs {
    /// The flags as the harness takes them.
    pub fn options(&self) -> PowerOptions {
        PowerOptions {
            specs: self.power.clone(),
            interval: self.power_interval,
            tdp_w: self.tdp,
            total: self.total.clone(),
            idle_s: self.idle,
            ipmi_password_file: self.ipmi_password_file.clone(),
            redfish_credentials: self.redfish_credentials.clone(),
            redfish_insecure: self.redfish_insecure,
            sysfs_root: self.sysfs_root.clone(),
            procfs_root: self.procfs_root.clone(),
        }
    }

    /// The meters to sample, chosen and checked before anything starts.
    pub fn select(&self) -> anyhow::Result<harness::Selection> {
        Ok(self.options().select()?)
    }
}
