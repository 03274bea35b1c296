//! RAPL energy counters through Linux powercap (`/sys/class/powercap`).
//!
//! Intel (and AMD Zen, through the same driver) CPUs keep running energy
//! counters per RAPL domain; the kernel exposes each as a powercap *zone*:
//!
//! ```text
//! class/powercap/intel-rapl:0/        name = package-0, energy_uj, max_energy_range_uj
//! class/powercap/intel-rapl:0:0/      name = core      (inside package-0)
//! class/powercap/intel-rapl:0:1/      name = dram      (listed under package-0)
//! class/powercap/intel-rapl:1/        name = psys      (whole platform, client parts)
//! class/powercap/intel-rapl-mmio:0/   name = package-0 (same counter through MMIO)
//! ```
//!
//! One meter per zone; each reads `energy_uj` (an energy counter in
//! microjoules that wraps at `max_energy_range_uj`, tens of minutes at full
//! load, which the energy step undoes). The file is re-opened on every read:
//! it costs a few microseconds, survives a driver reload, and is how a fake
//! tree in tests is read exactly like the real one.
//!
//! Placement, for the system total: `core` and `uncore` are sub-domains of
//! their package (listed in its `contains`). `dram` is *not* inside the
//! package counter (Intel's PKG domain excludes DRAM) even though powercap
//! lists it under the package zone, so it is a top-level [`Scope::Dram`].
//! `psys` covers the platform including the packages: [`Scope::Other`],
//! containing every other RAPL meter. An `intel-rapl-mmio` zone that repeats
//! an MSR zone's name is the same counter and is skipped.
//!
//! Since Linux 5.10 (CVE-2020-8694, "PLATYPUS") `energy_uj` is readable by
//! root only; the probe then reports [`MeterError::Permission`] with the
//! commands that grant access.

use super::{Meter, MeterError, MeterInfo, Probe, Provenance, Reading, ReadingKind, Scope};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SOURCE: &str = "rapl";

/// RAPL counters refresh about every millisecond.
pub const UPDATE_PERIOD: Duration = Duration::from_millis(1);

/// One RAPL zone's energy counter.
#[derive(Debug)]
pub struct RaplMeter {
    info: MeterInfo,
    energy_path: PathBuf,
    wrap_uj: Option<u64>,
}

impl RaplMeter {
    /// The zone directory this meter reads.
    pub fn energy_path(&self) -> &Path {
        &self.energy_path
    }
}

impl Meter for RaplMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let counter_uj = read_u64(&self.energy_path)
            .map_err(|e| classify(&self.info.id, &self.energy_path, e))?;
        Ok(Reading::Energy {
            counter_uj,
            wrap_uj: self.wrap_uj,
        })
    }
}

/// A parsed zone directory name: `intel-rapl:0:1` → prefix `intel-rapl`, [0, 1].
#[derive(Debug, Clone)]
struct Zone {
    dir: PathBuf,
    dir_name: String,
    prefix: String,
    package: u32,
    sub: Option<u32>,
    name: String,
}

fn parse_zone_name(s: &str) -> Option<(String, u32, Option<u32>)> {
    let mut parts = s.split(':');
    let prefix = parts.next()?;
    if !(prefix.ends_with("rapl") || prefix.ends_with("rapl-mmio")) {
        return None;
    }
    let package = parts.next()?.parse().ok()?;
    let sub = match parts.next() {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((prefix.to_string(), package, sub))
}

fn read_u64(path: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; 32];
    let mut n = 0;
    loop {
        let got = f.read(&mut buf[n..])?;
        if got == 0 || n + got == buf.len() {
            n += got;
            break;
        }
        n += got;
    }
    let text = std::str::from_utf8(&buf[..n]).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not text: {e}"))
    })?;
    text.trim().parse::<u64>().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("`{}` is not a counter: {e}", text.trim()),
        )
    })
}

/// What to do when `energy_uj` is root-only. `powercap_dir` is the real
/// (or configured) `class/powercap` directory, `prefix` the zone family.
pub fn permission_remedy(powercap_dir: &Path, prefix: &str) -> String {
    let d = powercap_dir.display();
    format!(
        "since Linux 5.10 (CVE-2020-8694) energy_uj is readable by root only. \
         Run as root, or grant read access until the next reboot with \
         `sudo chmod o+r {d}/{prefix}:*/energy_uj {d}/{prefix}:*:*/energy_uj`, \
         or for every boot with a systemd-tmpfiles rule in /etc/tmpfiles.d/rapl.conf: \
         `z {d}/{prefix}:*/energy_uj 0444 - - -` (and the same for `{prefix}:*:*`)"
    )
}

/// Maps an I/O error on `path` to the meter error a user can act on.
fn classify(meter: &str, path: &Path, e: std::io::Error) -> MeterError {
    let reason = format!("cannot read {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            let zone_dir = path.parent().unwrap_or(path);
            let powercap = zone_dir.parent().unwrap_or(zone_dir);
            let prefix = zone_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_zone_name)
                .map(|(p, _, _)| p)
                .unwrap_or_else(|| "intel-rapl".into());
            MeterError::Permission {
                meter: meter.to_string(),
                reason,
                remedy: permission_remedy(powercap, &prefix),
            }
        }
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

/// Replaces anything but `[A-Za-z0-9_-]` so an id is a safe file name.
pub(crate) fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Finds every RAPL zone under `<sysfs_root>/class/powercap` and opens a
/// meter for each, or says why it cannot.
pub fn probe(sysfs_root: &Path) -> Vec<Probe> {
    let powercap = sysfs_root.join("class").join("powercap");
    let unusable = |domain: &str, error| Probe::Unusable {
        source: SOURCE.into(),
        domain: domain.into(),
        error,
    };
    let entries = match std::fs::read_dir(&powercap) {
        Ok(e) => e,
        Err(e) => {
            return vec![unusable(
                "cpu",
                MeterError::NotPresent {
                    meter: SOURCE.into(),
                    reason: format!(
                        "cannot list {}: {e} (not Linux, or a kernel without powercap)",
                        powercap.display()
                    ),
                },
            )]
        }
    };
    let mut zones = Vec::new();
    let mut probes = Vec::new();
    for entry in entries.flatten() {
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        let Some((prefix, package, sub)) = parse_zone_name(&dir_name) else {
            continue;
        };
        let dir = powercap.join(&dir_name);
        match std::fs::read_to_string(dir.join("name")) {
            Ok(name) => zones.push(Zone {
                dir,
                dir_name,
                prefix,
                package,
                sub,
                name: name.trim().to_string(),
            }),
            Err(e) => probes.push(unusable(&dir_name, classify(SOURCE, &dir.join("name"), e))),
        }
    }
    if zones.is_empty() && probes.is_empty() {
        return vec![unusable(
            "cpu",
            MeterError::NotPresent {
                meter: SOURCE.into(),
                reason: format!(
                    "no intel-rapl zones in {}: a CPU without RAPL, a virtual machine, or the \
                     driver not loaded (try `sudo modprobe intel_rapl_msr`)",
                    powercap.display()
                ),
            },
        )];
    }
    zones.sort_by(|a, b| {
        (a.prefix.ends_with("-mmio"), a.package, a.sub, &a.prefix).cmp(&(
            b.prefix.ends_with("-mmio"),
            b.package,
            b.sub,
            &b.prefix,
        ))
    });

    // Drop MMIO zones that repeat an MSR zone (same counter, other interface).
    let msr_names: Vec<String> = zones
        .iter()
        .filter(|z| !z.prefix.ends_with("-mmio"))
        .map(|z| z.name.clone())
        .collect();
    zones.retain(|z| {
        let dup = z.prefix.ends_with("-mmio") && msr_names.contains(&z.name);
        if dup {
            tracing::debug!(zone = %z.dir_name, "skipping RAPL MMIO zone: same counter as the MSR zone");
        }
        !dup
    });

    // Placement of each zone.
    struct Planned {
        zone: Zone,
        id: String,
        domain: String,
        scope: Scope,
    }
    let mut planned: Vec<Planned> = Vec::new();
    for z in &zones {
        let mmio = if z.prefix.ends_with("-mmio") {
            "mmio-"
        } else {
            ""
        };
        let (domain, scope) = match z.sub {
            None => {
                let scope = if z.name.starts_with("package") {
                    Scope::CpuPackage
                } else if z.name == "dram" {
                    Scope::Dram
                } else {
                    Scope::Other
                };
                (z.name.clone(), scope)
            }
            Some(_) => {
                // Number the sub-domain after its package's `package-N`
                // name when there is one, else after the zone index.
                let pkg = zones
                    .iter()
                    .find(|p| p.sub.is_none() && p.prefix == z.prefix && p.package == z.package)
                    .and_then(|p| p.name.strip_prefix("package-"))
                    .map(str::to_string)
                    .unwrap_or_else(|| z.package.to_string());
                let scope = if z.name == "dram" {
                    Scope::Dram
                } else {
                    Scope::CpuSubdomain
                };
                (format!("{}-{pkg}", z.name), scope)
            }
        };
        let mut id = file_safe(&format!("rapl-{mmio}{domain}"));
        if planned.iter().any(|p| p.id == id) {
            id = file_safe(&format!("rapl-{}", z.dir_name));
        }
        planned.push(Planned {
            zone: z.clone(),
            id,
            domain,
            scope,
        });
    }

    for p in &planned {
        let contains: Vec<String> = match p.scope {
            Scope::CpuPackage => planned
                .iter()
                .filter(|c| {
                    c.scope == Scope::CpuSubdomain
                        && c.zone.prefix == p.zone.prefix
                        && c.zone.package == p.zone.package
                })
                .map(|c| c.id.clone())
                .collect(),
            Scope::Other if p.zone.name == "psys" => planned
                .iter()
                .filter(|c| c.id != p.id)
                .map(|c| c.id.clone())
                .collect(),
            _ => Vec::new(),
        };
        let info = MeterInfo {
            id: p.id.clone(),
            source: SOURCE.into(),
            domain: p.domain.clone(),
            scope: p.scope,
            kind: ReadingKind::EnergyCounter,
            provenance: Provenance::Measured,
            resolution: 1e-6,
            update_period: UPDATE_PERIOD,
            contains,
        };
        probes.push(match open(info, &p.zone.dir) {
            Ok(m) => Probe::Usable(Box::new(m)),
            Err(error) => unusable(&p.domain, error),
        });
    }
    probes
}

fn open(info: MeterInfo, zone_dir: &Path) -> Result<RaplMeter, MeterError> {
    let energy_path = zone_dir.join("energy_uj");
    let range_path = zone_dir.join("max_energy_range_uj");
    let wrap_uj = match read_u64(&range_path) {
        Ok(w) if w > 0 => Some(w),
        other => {
            tracing::warn!(
                meter = %info.id,
                "no usable {} ({:?}): a wrap-around will be reported as a counter reset",
                range_path.display(),
                other
            );
            None
        }
    };
    let mut meter = RaplMeter {
        info,
        energy_path,
        wrap_uj,
    };
    meter.read()?;
    Ok(meter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_parse() {
        assert_eq!(
            parse_zone_name("intel-rapl:0"),
            Some(("intel-rapl".into(), 0, None))
        );
        assert_eq!(
            parse_zone_name("intel-rapl:1:2"),
            Some(("intel-rapl".into(), 1, Some(2)))
        );
        assert_eq!(
            parse_zone_name("amd-rapl:0"),
            Some(("amd-rapl".into(), 0, None))
        );
        assert_eq!(
            parse_zone_name("intel-rapl-mmio:0"),
            Some(("intel-rapl-mmio".into(), 0, None))
        );
        assert_eq!(parse_zone_name("intel-rapl"), None);
        assert_eq!(parse_zone_name("dtpm:0"), None);
        assert_eq!(parse_zone_name("intel-rapl:x"), None);
        assert_eq!(parse_zone_name("intel-rapl:0:0:0"), None);
    }

    #[test]
    fn eacces_becomes_a_permission_error_with_a_remedy() {
        // The classification of a real EACCES, independent of who runs the test
        // (root reads mode-000 files, so the sysfs test cannot always provoke it).
        let path = Path::new("/sys/class/powercap/intel-rapl:0/energy_uj");
        let err = classify(
            "rapl-package-0",
            path,
            std::io::Error::from_raw_os_error(13),
        );
        let MeterError::Permission { remedy, .. } = &err else {
            panic!("expected a permission error, got {err:?}");
        };
        assert!(
            remedy.contains("sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj"),
            "{remedy}"
        );
        assert!(remedy.contains("tmpfiles"), "{remedy}");
        let err = classify("m", path, std::io::Error::from_raw_os_error(21)); // EISDIR
        assert!(matches!(err, MeterError::Read { .. }), "{err:?}");
    }
}
