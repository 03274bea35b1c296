//! Which series of a page joulebench reads, and the meters they become.
//!
//! - joulebench's own exporter ([`crate::prometheus`]): one meter per remote
//!   meter (its `meter` label), from `joulebench_energy_joules_total` (a
//!   counter in joules since the exporter started), or from
//!   `joulebench_power_watts` where only that is asked for. Scope and
//!   provenance come from its `domain` and `provenance` labels; a remote meter
//!   whose `joulebench_meter_up` is 0 fails its reads here too.
//! - NVIDIA's DCGM exporter: per GPU (its `gpu` label),
//!   `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (a counter in millijoules since
//!   boot) as the GPU's meter, and `DCGM_FI_DEV_POWER_USAGE` (watts) as a
//!   second meter inside it, as NVML's meters are; without the counter, the
//!   power series takes the GPU's id.
//!
//! Series are told apart by that one label only, since others come and go
//! (`job_id` on joulebench's, `pod`/`container` on DCGM's under Kubernetes);
//! where one page repeats a series, the first line counts.

use super::super::{MeterError, MeterInfo, Provenance, ReadingKind, Scope};
use super::text::{for_each_line, Line};
use super::{Filter, METER};
use std::collections::HashMap;
use std::time::Duration;

/// The metric families joulebench reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    JoulebenchEnergy,
    JoulebenchPower,
    DcgmEnergy,
    DcgmPower,
}

/// joulebench's gauge saying whether a remote meter's last read worked.
pub const JOULEBENCH_UP: &str = "joulebench_meter_up";

/// How often joulebench's exporter refreshes (its default `--power-interval`).
const JOULEBENCH_UPDATE: Duration = Duration::from_millis(100);
/// How often a DCGM exporter refreshes, assumed: its `--collect-interval`
/// (`-c`) is 30 s unless set; run it with `-c 1000` or less for energy.
const DCGM_UPDATE: Duration = Duration::from_secs(1);

impl Family {
    pub const ALL: [Family; 4] = [
        Family::JoulebenchEnergy,
        Family::JoulebenchPower,
        Family::DcgmEnergy,
        Family::DcgmPower,
    ];

    pub fn metric(self) -> &'static str {
        match self {
            Family::JoulebenchEnergy => "joulebench_energy_joules_total",
            Family::JoulebenchPower => "joulebench_power_watts",
            Family::DcgmEnergy => "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            Family::DcgmPower => "DCGM_FI_DEV_POWER_USAGE",
        }
    }

    pub fn from_metric(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.metric() == name)
    }

    /// The label that tells this family's series apart.
    pub fn identity_label(self) -> &'static str {
        match self {
            Family::JoulebenchEnergy | Family::JoulebenchPower => "meter",
            Family::DcgmEnergy | Family::DcgmPower => "gpu",
        }
    }

    pub fn kind(self) -> ReadingKind {
        match self {
            Family::JoulebenchEnergy | Family::DcgmEnergy => ReadingKind::EnergyCounter,
            Family::JoulebenchPower | Family::DcgmPower => ReadingKind::PowerSample,
        }
    }

    /// Microjoules per unit of a counter family.
    pub fn microjoules_per_unit(self) -> f64 {
        match self {
            Family::DcgmEnergy => 1e3,
            _ => 1e6,
        }
    }

    /// Whether `value` is one of DCGM's "no value" sentinels (blank, not
    /// found, not supported, no permission), which the exporter prints as
    /// numbers: from `DCGM_INT64_BLANK` (0x7ffffffffffffff0) up for the
    /// energy counter, from `DCGM_FP64_BLANK` (2^47) up for power.
    pub fn is_blank(self, value: f64) -> bool {
        match self {
            // 0x7ffffffffffffff0 is 2^63 - 16; as a float, 2^63.
            Family::DcgmEnergy => value >= 0x7fff_ffff_ffff_fff0_i64 as f64,
            Family::DcgmPower => value >= 140_737_488_355_328.0,
            _ => false,
        }
    }

    fn is_joulebench(self) -> bool {
        matches!(self, Family::JoulebenchEnergy | Family::JoulebenchPower)
    }
}

/// One series found on a page.
#[derive(Debug, Clone)]
pub struct Found {
    pub family: Family,
    pub identity: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub line: usize,
}

impl Found {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What joulebench reads from one page.
#[derive(Debug, Default)]
pub struct Page {
    /// Series of the known families, first appearance only, in page order.
    pub found: Vec<Found>,
    /// `joulebench_meter_up` per remote meter.
    pub up: HashMap<String, bool>,
    /// Families with series that lack the label telling them apart: (first
    /// such line, metric, label).
    pub unlabelled: Vec<(usize, &'static str, &'static str)>,
    index: HashMap<(Family, String), usize>,
}

impl Page {
    /// Reads a page; a line that is not the text format is an error naming
    /// `url` and the line.
    pub fn scan(text: &str, url: &str) -> Result<Page, MeterError> {
        let mut page = Page::default();
        for_each_line(text, |line, read| {
            let Line::Sample(s) = read else { return };
            if s.name == JOULEBENCH_UP {
                if let Some(m) = s.label("meter") {
                    page.up.entry(m.to_string()).or_insert(s.value == 1.0);
                }
                return;
            }
            let Some(family) = Family::from_metric(s.name) else {
                return;
            };
            let Some(identity) = s.label(family.identity_label()) else {
                if !page.unlabelled.iter().any(|u| u.1 == family.metric()) {
                    page.unlabelled
                        .push((line, family.metric(), family.identity_label()));
                }
                return;
            };
            let key = (family, identity.to_string());
            if page.index.contains_key(&key) {
                return;
            }
            page.index.insert(key, page.found.len());
            page.found.push(Found {
                family,
                identity: identity.to_string(),
                labels: s
                    .labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                value: s.value,
                line,
            });
        })
        .map_err(|e| {
            super::http::read_error(format!("GET {url}: not a Prometheus text page: {e}"))
        })?;
        Ok(page)
    }

    /// The series of `family` told apart by `identity`.
    pub fn get(&self, family: Family, identity: &str) -> Option<&Found> {
        self.index
            .get(&(family, identity.to_string()))
            .map(|&i| &self.found[i])
    }
}

/// A meter to be made: what it is, and which series it reads.
#[derive(Debug, Clone)]
pub struct Planned {
    pub info: MeterInfo,
    pub family: Family,
    pub identity: String,
}

/// Where the page lives, for ids and domains.
#[derive(Debug, Clone)]
pub struct Site {
    /// `prom-HOST[-PORT]`, file-name safe.
    pub id_prefix: String,
    /// The host as the spec names it.
    pub host: String,
}

/// A file-name-safe form of `text`.
pub fn file_safe(text: &str) -> String {
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

/// The GPU index of a joulebench device (`gpu3`, `gpu3-memory`).
fn joulebench_gpu(device: &str) -> Option<u32> {
    device.strip_prefix("gpu")?.split('-').next()?.parse().ok()
}

fn scope_of(label: Option<&str>) -> Scope {
    match label {
        Some("node") => Scope::Node,
        Some("cpu_package") => Scope::CpuPackage,
        Some("cpu_subdomain") => Scope::CpuSubdomain,
        Some("dram") => Scope::Dram,
        Some("gpu") => Scope::Gpu,
        // Unknown placement is never added to a total (TOTAL_RULE 3).
        _ => Scope::Other,
    }
}

/// The meters `page` offers under `filter`, and the series that cannot be
/// meters (why, per domain).
pub fn plan(
    page: &Page,
    filter: &Filter,
    site: &Site,
) -> (Vec<Planned>, Vec<(String, MeterError)>) {
    let mut planned = Vec::new();
    let mut bad = Vec::new();
    let allowed = |f: Family| filter.metrics.is_empty() || filter.metrics.contains(&f);
    let pick = |identity: &str, families: [Family; 2]| -> Vec<&Found> {
        families
            .into_iter()
            .filter(|f| allowed(*f))
            .filter_map(|f| page.get(f, identity))
            .collect()
    };
    let mut seen: Vec<(bool, &str)> = Vec::new();
    for f in &page.found {
        let dcgm = !f.family.is_joulebench();
        if seen.contains(&(dcgm, f.identity.as_str())) {
            continue;
        }
        seen.push((dcgm, f.identity.as_str()));
        if dcgm {
            plan_dcgm(f, &pick, filter, site, &mut planned, &mut bad);
        } else {
            // One meter per remote meter: its counter, else its gauge.
            let series = pick(
                &f.identity,
                [Family::JoulebenchEnergy, Family::JoulebenchPower],
            );
            if let Some(s) = series.first() {
                match joulebench_meter(s, site) {
                    Ok(p) if keep_joulebench(&p, s, filter) => planned.push(p),
                    Ok(_) => {}
                    Err(e) => bad.push((format!("{}:{}", site.host, s.identity), e)),
                }
            }
        }
    }
    contain_joulebench(&mut planned);
    (planned, bad)
}

fn keep_joulebench(p: &Planned, s: &Found, filter: &Filter) -> bool {
    if filter.gpus.is_empty() {
        return true;
    }
    p.info.scope == Scope::Gpu
        && s.label("device")
            .and_then(joulebench_gpu)
            .is_some_and(|g| filter.gpus.contains(&g))
}

fn joulebench_meter(s: &Found, site: &Site) -> Result<Planned, MeterError> {
    let provenance = match s.label("provenance") {
        None | Some("measured") => Provenance::Measured,
        Some("estimated") => Provenance::Estimated,
        Some(other) => {
            return Err(MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "line {}: {}{{meter=\"{}\"}} has provenance \"{other}\"; expected measured \
                     or estimated",
                    s.line,
                    s.family.metric(),
                    s.identity
                ),
            })
        }
    };
    let device = s.label("device").unwrap_or(&s.identity);
    let host = s.label("host").unwrap_or(&site.host);
    Ok(Planned {
        info: MeterInfo {
            id: format!("{}-{}", site.id_prefix, file_safe(&s.identity)),
            source: METER.into(),
            domain: format!("{host}:{device}"),
            scope: scope_of(s.label("domain")),
            kind: s.family.kind(),
            provenance,
            resolution: if s.family == Family::JoulebenchEnergy {
                1e-6
            } else {
                1e-3
            },
            update_period: JOULEBENCH_UPDATE,
            contains: Vec::new(),
        },
        family: s.family,
        identity: s.identity.clone(),
    })
}

/// A remote node meter holds everything else of its page; of the meters of
/// one remote device, scope and provenance (`nvml-gpu0`, `nvml-gpu0-power`, …) the one
/// with the shortest id (the device's main meter) holds the others and the
/// device's parts (`gpu0-memory`).
fn contain_joulebench(planned: &mut [Planned]) {
    let jb: Vec<usize> = (0..planned.len())
        .filter(|&i| planned[i].family.is_joulebench())
        .collect();
    let device = |p: &Planned| p.info.domain.clone();
    let mut contains: Vec<(usize, Vec<String>)> = Vec::new();
    for &i in &jb {
        let me = &planned[i];
        let inside: Vec<String> = if me.info.scope == Scope::Node {
            jb.iter()
                .filter(|&&j| j != i && planned[j].info.scope != Scope::Node)
                .map(|&j| planned[j].info.id.clone())
                .collect()
        } else {
            let alike = |j: usize| {
                planned[j].info.scope == me.info.scope
                    && planned[j].info.provenance == me.info.provenance
            };
            let same = |j: usize| alike(j) && device(&planned[j]) == device(me);
            let main = jb
                .iter()
                .copied()
                .filter(|&j| same(j))
                .min_by_key(|&j| (planned[j].identity.len(), j));
            if main != Some(i) {
                continue;
            }
            let part_prefix = format!("{}-", device(me));
            jb.iter()
                .filter(|&&j| j != i && alike(j))
                .filter(|&&j| same(j) || device(&planned[j]).starts_with(&part_prefix))
                .map(|&j| planned[j].info.id.clone())
                .collect()
        };
        contains.push((i, inside));
    }
    for (i, inside) in contains {
        planned[i].info.contains = inside;
    }
}

fn plan_dcgm<'p>(
    f: &Found,
    pick: &dyn Fn(&str, [Family; 2]) -> Vec<&'p Found>,
    filter: &Filter,
    site: &Site,
    planned: &mut Vec<Planned>,
    bad: &mut Vec<(String, MeterError)>,
) {
    let Ok(gpu) = f.identity.parse::<u32>() else {
        bad.push((
            format!("{}:gpu{}", site.host, f.identity),
            MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "line {}: {} has gpu=\"{}\"; expected a GPU index",
                    f.line,
                    f.family.metric(),
                    f.identity
                ),
            },
        ));
        return;
    };
    if !filter.gpus.is_empty() && !filter.gpus.contains(&gpu) {
        return;
    }
    // A field DCGM has no value for (no energy counter before Volta) is
    // left out, so that power takes the GPU's id.
    let (series, blank): (Vec<&Found>, Vec<&Found>) =
        pick(&f.identity, [Family::DcgmEnergy, Family::DcgmPower])
            .into_iter()
            .partition(|s| !s.family.is_blank(s.value));
    for s in blank {
        bad.push((
            format!("{}:gpu{gpu}", site.host),
            MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "line {}: {}{{gpu=\"{gpu}\"}} is DCGM's blank value {}: not measured on this GPU",
                    s.line,
                    s.family.metric(),
                    s.value
                ),
            },
        ));
    }
    let host = f.label("Hostname").unwrap_or(&site.host);
    let main_id = format!("{}-gpu{gpu}", site.id_prefix);
    let power_id = format!("{main_id}-power");
    for (n, s) in series.iter().enumerate() {
        let (id, contains) = if n == 0 {
            let inside = if series.len() > 1 {
                vec![power_id.clone()]
            } else {
                Vec::new()
            };
            (main_id.clone(), inside)
        } else {
            (power_id.clone(), Vec::new())
        };
        planned.push(Planned {
            info: MeterInfo {
                id,
                source: METER.into(),
                domain: format!("{host}:gpu{gpu}"),
                scope: Scope::Gpu,
                kind: s.family.kind(),
                provenance: Provenance::Measured,
                // 1 mJ for the counter, 1 mW for power.
                resolution: 1e-3,
                update_period: DCGM_UPDATE,
                contains,
            },
            family: s.family,
            identity: s.identity.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joulebench_devices_name_their_gpu() {
        assert_eq!(joulebench_gpu("gpu3"), Some(3));
        assert_eq!(joulebench_gpu("gpu12-memory"), Some(12));
        assert_eq!(joulebench_gpu("package-0"), None);
        assert_eq!(scope_of(Some("cpu_package")), Scope::CpuPackage);
        assert_eq!(scope_of(Some("wall")), Scope::Other);
        assert_eq!(scope_of(None), Scope::Other);
    }

    #[test]
    fn a_repeated_series_counts_once_and_unlabelled_ones_are_noted() {
        let text = "DCGM_FI_DEV_POWER_USAGE{gpu=\"0\"} 1\nDCGM_FI_DEV_POWER_USAGE{gpu=\"0\"} 2\n\
                    DCGM_FI_DEV_POWER_USAGE 3\nother{gpu=\"0\"} 4\n";
        let page = Page::scan(text, "http://h/metrics").unwrap();
        assert_eq!(page.found.len(), 1);
        assert_eq!(page.get(Family::DcgmPower, "0").unwrap().value, 1.0);
        assert_eq!(page.unlabelled, [(3, "DCGM_FI_DEV_POWER_USAGE", "gpu")]);
    }
}
