//! hwmon power and energy sensors (`/sys/class/hwmon/hwmon*`).
//!
//! Many drivers publish power through the hwmon ABI
//! (Documentation/hwmon/sysfs-interface): `power<N>_input` (instantaneous,
//! microwatts), `power<N>_average` (averaged, microwatts; used only when the
//! channel has no `_input`), `energy<N>_input` (cumulative microjoules, not
//! specified to wrap). The chip's `name` and the channel's `power<N>_label` /
//! `energy<N>_label` name the domain. One meter per channel.
//!
//! Placement by chip name, for the system total: `power_meter` (the ACPI
//! power meter, usually the BMC's view of the whole server) is
//! [`Scope::Node`]; `amdgpu` is [`Scope::Gpu`]; everything else (k10temp,
//! zenpower, amd_energy, platform sensors) is [`Scope::Other`], because it may
//! repeat what RAPL already counts.
//!
//! The update period is the channel's `power<N>_average_interval` or the
//! chip's `update_interval` (milliseconds) when present, else 100 ms.
//! Attribute files are re-opened on every read, like RAPL.

use super::rapl::file_safe;
use super::{Meter, MeterError, MeterInfo, Probe, Provenance, Reading, ReadingKind, Scope};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SOURCE: &str = "hwmon";

/// Update period assumed when the driver does not say.
pub const DEFAULT_UPDATE_PERIOD: Duration = Duration::from_millis(100);

/// One hwmon channel.
#[derive(Debug)]
pub struct HwmonMeter {
    info: MeterInfo,
    path: PathBuf,
}

impl HwmonMeter {
    /// The attribute file this meter reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Meter for HwmonMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| classify(&self.info.id, &self.path, e))?;
        let text = text.trim();
        let bad = |what: &str| MeterError::Read {
            meter: self.info.id.clone(),
            reason: format!("{}: `{text}` is not {what}", self.path.display()),
        };
        match self.info.kind {
            ReadingKind::PowerSample => {
                let uw: i64 = text.parse().map_err(|_| bad("microwatts"))?;
                Ok(Reading::watts(uw as f64 * 1e-6))
            }
            ReadingKind::EnergyCounter => {
                let uj: u64 = text.parse().map_err(|_| bad("microjoules"))?;
                Ok(Reading::Energy {
                    counter_uj: uj,
                    wrap_uj: None,
                })
            }
        }
    }
}

fn classify(meter: &str, path: &Path, e: std::io::Error) -> MeterError {
    let reason = format!("cannot read {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => MeterError::Permission {
            meter: meter.to_string(),
            reason,
            remedy: format!(
                "run as root, or grant read access with `sudo chmod o+r {}`",
                path.display()
            ),
        },
        std::io::ErrorKind::NotFound => MeterError::NotPresent {
            meter: meter.to_string(),
            reason,
        },
        _ => MeterError::Read {
            meter: meter.to_string(),
            reason,
        },
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_ms(path: &Path) -> Option<Duration> {
    read_trimmed(path)?
        .parse::<u64>()
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

/// Scope of a chip by its hwmon `name`.
pub fn scope_of_chip(name: &str) -> Scope {
    match name {
        "power_meter" => Scope::Node,
        "amdgpu" => Scope::Gpu,
        _ => Scope::Other,
    }
}

/// `power3_input` → ("power", 3, "input").
fn parse_attr(file: &str) -> Option<(&str, u32, &str)> {
    let (head, suffix) = file.split_once('_')?;
    let digits = head.find(|c: char| c.is_ascii_digit())?;
    let (kind, num) = head.split_at(digits);
    Some((kind, num.parse().ok()?, suffix))
}

/// Finds every hwmon power and energy channel under
/// `<sysfs_root>/class/hwmon` and opens a meter for each, or says why not.
pub fn probe(sysfs_root: &Path) -> Vec<Probe> {
    let class = sysfs_root.join("class").join("hwmon");
    let unusable = |domain: &str, error| Probe::Unusable {
        source: SOURCE.into(),
        domain: domain.into(),
        error,
    };
    let entries = match std::fs::read_dir(&class) {
        Ok(e) => e,
        Err(e) => {
            return vec![unusable(
                "sensors",
                MeterError::NotPresent {
                    meter: SOURCE.into(),
                    reason: format!("cannot list {}: {e}", class.display()),
                },
            )]
        }
    };
    let mut chips: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("hwmon")?.parse().ok()?;
            Some((n, class.join(name)))
        })
        .collect();
    chips.sort();

    let mut probes = Vec::new();
    for (n, dir) in chips {
        let chip = read_trimmed(&dir.join("name")).unwrap_or_else(|| "unknown".into());
        let chip_period = read_ms(&dir.join("update_interval"));
        // channel key → attribute suffixes found
        let mut channels: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for f in files.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            if let Some((kind, ch, suffix)) = parse_attr(&file) {
                if matches!(
                    (kind, suffix),
                    ("power", "input") | ("power", "average") | ("energy", "input")
                ) {
                    channels
                        .entry((kind.to_string(), ch))
                        .or_default()
                        .push(suffix.to_string());
                }
            }
        }
        for ((kind, ch), suffixes) in channels {
            let suffix = if suffixes.iter().any(|s| s == "input") {
                "input"
            } else {
                "average"
            };
            let path = dir.join(format!("{kind}{ch}_{suffix}"));
            let label = read_trimmed(&dir.join(format!("{kind}{ch}_label")));
            let domain = match &label {
                Some(l) => format!("{chip}/{l}"),
                None => chip.clone(),
            };
            let update_period = read_ms(&dir.join(format!("{kind}{ch}_average_interval")))
                .filter(|_| suffix == "average")
                .or(chip_period)
                .unwrap_or(DEFAULT_UPDATE_PERIOD);
            let reading_kind = if kind == "power" {
                ReadingKind::PowerSample
            } else {
                ReadingKind::EnergyCounter
            };
            let info = MeterInfo {
                id: file_safe(&format!("hwmon{n}-{chip}-{kind}{ch}")),
                source: SOURCE.into(),
                domain: domain.clone(),
                scope: scope_of_chip(&chip),
                kind: reading_kind,
                provenance: Provenance::Measured,
                resolution: 1e-6,
                update_period,
                contains: Vec::new(),
            };
            let mut meter = HwmonMeter { info, path };
            probes.push(match meter.read() {
                Ok(_) => Probe::Usable(Box::new(meter)),
                Err(error) => unusable(&domain, error),
            });
        }
    }
    if probes.is_empty() {
        probes.push(unusable(
            "sensors",
            MeterError::NotPresent {
                meter: SOURCE.into(),
                reason: format!(
                    "no hwmon chip under {} reports power or energy \
                     (power*_input, power*_average, energy*_input)",
                    class.display()
                ),
            },
        ));
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_parse() {
        assert_eq!(parse_attr("power1_input"), Some(("power", 1, "input")));
        assert_eq!(parse_attr("energy12_input"), Some(("energy", 12, "input")));
        assert_eq!(
            parse_attr("power1_average_interval"),
            Some(("power", 1, "average_interval"))
        );
        assert_eq!(parse_attr("name"), None);
        assert_eq!(parse_attr("update_interval"), None);
    }

    #[test]
    fn chip_scopes() {
        assert_eq!(scope_of_chip("power_meter"), Scope::Node);
        assert_eq!(scope_of_chip("amdgpu"), Scope::Gpu);
        assert_eq!(scope_of_chip("k10temp"), Scope::Other);
    }
}
