//! Energy over a window, per meter and for the whole system.
//!
//! This module knows nothing about sampling threads: it takes timestamped
//! samples (from the sampler or read back from a power log) and a window
//! `[begin_ns, end_ns]` on the run's clock, and says how much energy was spent,
//! how sure it is, and why not when it is not (DESIGN.md "Energy, honestly").
//!
//! # Per meter
//!
//! The samples define a piecewise-linear function of time: the watts of a
//! power meter, or the unwrapped cumulative microjoules of a counter. The
//! window edges are linearly interpolated on that function, so a window that
//! starts or ends between two samples gets exactly its share.
//!
//! - **Counters** give energy by difference: `cum(end) - cum(begin)`. A counter
//!   that steps backwards has wrapped if it has a `wrap_uj` and the implied
//!   step (`wrap_uj - prev + cur`) is at most half the range; otherwise it
//!   was reset (driver reload, device reset). The energy of a reset interval
//!   is unknown: it is not counted, it is reported, and the result is marked
//!   incomplete. It is never negative.
//! - **Power samples** give energy by trapezoidal integration.
//!
//! Two consecutive samples further apart than `max_gap_ns` form a *gap*: its
//! energy is still counted (interpolated for power, exact for counters), but
//! the gap is reported, does not count as covered time, and marks the result
//! incomplete. Window time before the first or after the last sample is not
//! extrapolated: it is uncovered and marks the result incomplete.
//!
//! # System total
//!
//! See [`TOTAL_RULE`]: measured and estimated totals are kept apart, a node
//! meter is never summed with what it contains, and sub-domains never count.

use crate::log::Sample;
use crate::meter::{MeterInfo, Provenance, Reading, ReadingKind, Scope};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnergyError {
    #[error("empty window: end {end_ns} ns is not after begin {begin_ns} ns")]
    EmptyWindow { begin_ns: u64, end_ns: u64 },
    #[error(
        "{meter}: sample {index} at {t_ns} ns is earlier than the one before it ({prev_ns} ns)"
    )]
    TimeWentBackwards {
        meter: String,
        index: usize,
        t_ns: u64,
        prev_ns: u64,
    },
    #[error("{meter}: sample {index} is a {found:?} reading, the meter yields {expected:?}")]
    KindMismatch {
        meter: String,
        index: usize,
        expected: ReadingKind,
        found: ReadingKind,
    },
    #[error("{meter}: sample {index} has non-finite power {watts}")]
    NonFinite {
        meter: String,
        index: usize,
        watts: f64,
    },
    #[error("efficiency: unknown scenario `{given}` (SingleStream, MultiStream, Server, Offline)")]
    UnknownScenario { given: String },
    #[error("efficiency: energy must be positive and finite, got {energy_j} J")]
    NoEnergy { energy_j: f64 },
    #[error("efficiency: no queries completed: energy per query undefined")]
    NoQueries,
    #[error("total: no meter '{id}' (meters: {})", known.join(", "))]
    UnknownTotalMeter { id: String, known: Vec<String> },
}

/// A time window on the run's clock, in nanoseconds since the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub begin_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn new(begin_ns: u64, end_ns: u64) -> Result<Self, EnergyError> {
        if end_ns <= begin_ns {
            return Err(EnergyError::EmptyWindow { begin_ns, end_ns });
        }
        Ok(Self { begin_ns, end_ns })
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.begin_ns)
    }

    pub fn duration_s(&self) -> f64 {
        self.duration_ns() as f64 * 1e-9
    }
}

/// Two consecutive samples further apart than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Gap {
    pub fn duration_s(&self) -> f64 {
        self.to_ns.saturating_sub(self.from_ns) as f64 * 1e-9
    }
}

/// A counter that went backwards without a plausible wrap-around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterReset {
    /// Time of the sample before the reset.
    pub from_ns: u64,
    /// Time of the first sample after it.
    pub to_ns: u64,
    pub before_uj: u64,
    pub after_uj: u64,
}

/// How one counter step is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterStep {
    /// Moved forward by this many microjoules.
    Forward(u64),
    /// Wrapped through `wrap_uj`; the energy spent is this many microjoules.
    Wrapped(u64),
    /// Went backwards with no plausible wrap: the counter was reset.
    Reset,
}

/// Classifies the step of a counter from `prev_uj` to `cur_uj`.
///
/// A backward step is a wrap only when the counter has a `wrap_uj`, `prev_uj`
/// lies within it, and the implied energy is at most half the range; a bigger
/// one would mean the sampler missed most of a full range (hours of RAPL at
/// full load), so a reset is the likelier story.
pub fn counter_step(prev_uj: u64, cur_uj: u64, wrap_uj: Option<u64>) -> CounterStep {
    if cur_uj >= prev_uj {
        return CounterStep::Forward(cur_uj - prev_uj);
    }
    match wrap_uj {
        Some(w) if prev_uj <= w => {
            let d = (w - prev_uj).saturating_add(cur_uj);
            if d <= w / 2 {
                CounterStep::Wrapped(d)
            } else {
                CounterStep::Reset
            }
        }
        _ => CounterStep::Reset,
    }
}

/// Whether a figure can be trusted as the whole story, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Completeness {
    Complete,
    Incomplete { reasons: Vec<String> },
}

impl Completeness {
    fn from_reasons(reasons: Vec<String>) -> Self {
        if reasons.is_empty() {
            Completeness::Complete
        } else {
            Completeness::Incomplete { reasons }
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self, Completeness::Complete)
    }

    pub fn reasons(&self) -> &[String] {
        match self {
            Completeness::Complete => &[],
            Completeness::Incomplete { reasons } => reasons,
        }
    }
}

/// Energy of one meter over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterEnergy {
    pub meter_id: String,
    pub source: String,
    pub domain: String,
    pub scope: Scope,
    pub kind: ReadingKind,
    pub provenance: Provenance,
    /// Ids of meters inside this one (copied from [`MeterInfo::contains`]).
    pub contains: Vec<String>,
    pub window: Window,
    pub energy_j: f64,
    /// `energy_j` over the time it was counted over (window time outside
    /// the samples and counter resets excluded).
    pub avg_w: f64,
    /// Samples with a timestamp inside the window (edges included).
    pub samples_in_window: usize,
    /// Window time between two samples no further apart than the gap limit
    /// (and, for counters, not across a reset).
    pub covered_s: f64,
    /// `covered_s` over the window duration, 0 to 1.
    pub coverage: f64,
    /// Gaps overlapping the window.
    pub gaps: Vec<Gap>,
    /// Counter resets overlapping the window (their energy is not counted).
    pub counter_resets: Vec<CounterReset>,
    pub completeness: Completeness,
}

impl MeterEnergy {
    pub fn is_complete(&self) -> bool {
        self.completeness.is_complete()
    }
}

/// Gap limit for a meter: `periods` sampling periods, or `periods` of the
/// meter's own update period when that is slower (sampling a 1 Hz BMC at
/// 10 Hz must not make every second a gap).
pub fn gap_limit_ns(sampling_period_ns: u64, update_period_ns: u64, periods: u32) -> u64 {
    sampling_period_ns
        .max(update_period_ns)
        .saturating_mul(u64::from(periods.max(1)))
}

/// Energy of one meter over `window`.
///
/// `samples` must be in time order (equal timestamps are allowed) and of the
/// meter's kind. Consecutive samples more than `max_gap_ns` apart form a gap.
pub fn energy_over_window(
    info: &MeterInfo,
    samples: &[Sample],
    window: Window,
    max_gap_ns: u64,
) -> Result<MeterEnergy, EnergyError> {
    let window = Window::new(window.begin_ns, window.end_ns)?;
    let points = to_points(info, samples)?;
    let (begin, end) = (window.begin_ns, window.end_ns);

    let mut energy_j = 0.0;
    let mut covered_ns: u64 = 0;
    let mut counted_ns: u64 = 0;
    let mut gaps = Vec::new();
    let mut counter_resets = Vec::new();
    let mut reasons = Vec::new();

    for pair in points.windows(2) {
        let (p0, p1) = (&pair[0], &pair[1]);
        let (t0, t1) = (p0.t_ns, p1.t_ns);
        if t1 <= t0 {
            continue;
        }
        let a = t0.max(begin);
        let b = t1.min(end);
        if a >= b {
            continue;
        }
        if let Some(reset) = p1.reset_before {
            counter_resets.push(reset);
            reasons.push(format!(
                "counter went backwards between {:.3} s and {:.3} s ({} -> {} uJ): energy in that {:.3} s unknown, not counted",
                ns_to_s(t0),
                ns_to_s(t1),
                reset.before_uj,
                reset.after_uj,
                ns_to_s(t1 - t0)
            ));
            continue;
        }
        let va = lerp(p0, p1, a);
        let vb = lerp(p0, p1, b);
        let part_j = match info.kind {
            ReadingKind::PowerSample => 0.5 * (va + vb) * (b - a) as f64 * 1e-9,
            ReadingKind::EnergyCounter => (vb - va) * 1e-6,
        };
        energy_j += part_j;
        counted_ns += b - a;
        if t1 - t0 > max_gap_ns {
            let gap = Gap {
                from_ns: t0,
                to_ns: t1,
            };
            gaps.push(gap);
            reasons.push(format!(
                "gap of {:.3} s without samples from {:.3} s to {:.3} s (limit {:.3} s); energy across it {}",
                gap.duration_s(),
                ns_to_s(t0),
                ns_to_s(t1),
                ns_to_s(max_gap_ns),
                match info.kind {
                    ReadingKind::PowerSample => "interpolated",
                    ReadingKind::EnergyCounter => "taken from the counter",
                }
            ));
        } else {
            covered_ns += b - a;
        }
    }

    let first = points.first().map(|p| p.t_ns);
    let last = points.last().map(|p| p.t_ns);
    match (first, last) {
        (Some(f), Some(l)) if f < end && l > begin => {
            if f > begin {
                reasons.insert(
                    0,
                    format!(
                        "first sample {:.3} s after the window begins: that time is not covered",
                        ns_to_s(f - begin)
                    ),
                );
            }
            if l < end {
                reasons.push(format!(
                    "last sample {:.3} s before the window ends: that time is not covered",
                    ns_to_s(end - l)
                ));
            }
        }
        _ => reasons.insert(
            0,
            format!(
                "no samples span the window {:.3} s .. {:.3} s ({} samples in all)",
                ns_to_s(begin),
                ns_to_s(end),
                samples.len()
            ),
        ),
    }

    let samples_in_window = samples
        .iter()
        .filter(|s| s.t_ns >= begin && s.t_ns <= end)
        .count();
    let avg_w = if counted_ns > 0 {
        energy_j / (counted_ns as f64 * 1e-9)
    } else {
        0.0
    };
    Ok(MeterEnergy {
        meter_id: info.id.clone(),
        source: info.source.clone(),
        domain: info.domain.clone(),
        scope: info.scope,
        kind: info.kind,
        provenance: info.provenance,
        contains: info.contains.clone(),
        window,
        energy_j,
        avg_w,
        samples_in_window,
        covered_s: covered_ns as f64 * 1e-9,
        coverage: covered_ns as f64 / window.duration_ns() as f64,
        gaps,
        counter_resets,
        completeness: Completeness::from_reasons(reasons),
    })
}

fn ns_to_s(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// A vertex of the piecewise-linear function: watts, or cumulative uJ.
struct Point {
    t_ns: u64,
    value: f64,
    /// Set when the counter reset between the previous point and this one.
    reset_before: Option<CounterReset>,
}

fn lerp(p0: &Point, p1: &Point, t: u64) -> f64 {
    let span = (p1.t_ns - p0.t_ns) as f64;
    let frac = (t - p0.t_ns) as f64 / span;
    p0.value + (p1.value - p0.value) * frac
}

fn to_points(info: &MeterInfo, samples: &[Sample]) -> Result<Vec<Point>, EnergyError> {
    let mut points = Vec::with_capacity(samples.len());
    let mut cumulative_uj: u64 = 0;
    let mut prev: Option<(u64, u64)> = None; // (t_ns, raw counter)
    for (index, s) in samples.iter().enumerate() {
        if let Some(p) = points.last() {
            let p: &Point = p;
            if s.t_ns < p.t_ns {
                return Err(EnergyError::TimeWentBackwards {
                    meter: info.id.clone(),
                    index,
                    t_ns: s.t_ns,
                    prev_ns: p.t_ns,
                });
            }
        }
        if s.kind() != info.kind {
            return Err(EnergyError::KindMismatch {
                meter: info.id.clone(),
                index,
                expected: info.kind,
                found: s.kind(),
            });
        }
        match s.reading {
            Reading::Power { watts, .. } => {
                if !watts.is_finite() {
                    return Err(EnergyError::NonFinite {
                        meter: info.id.clone(),
                        index,
                        watts,
                    });
                }
                points.push(Point {
                    t_ns: s.t_ns,
                    value: watts,
                    reset_before: None,
                });
            }
            Reading::Energy {
                counter_uj,
                wrap_uj,
            } => {
                let mut reset_before = None;
                if let Some((prev_t, prev_uj)) = prev {
                    match counter_step(prev_uj, counter_uj, wrap_uj) {
                        CounterStep::Forward(d) | CounterStep::Wrapped(d) => {
                            cumulative_uj = cumulative_uj.saturating_add(d);
                        }
                        CounterStep::Reset => {
                            reset_before = Some(CounterReset {
                                from_ns: prev_t,
                                to_ns: s.t_ns,
                                before_uj: prev_uj,
                                after_uj: counter_uj,
                            });
                        }
                    }
                }
                prev = Some((s.t_ns, counter_uj));
                points.push(Point {
                    t_ns: s.t_ns,
                    value: cumulative_uj as f64,
                    reset_before,
                });
            }
        }
    }
    Ok(points)
}

/// The default rule for the system total, printable as is.
pub const TOTAL_RULE: &str = "\
System total (measured and estimated figures are totalled separately, never mixed):
  1. If a node meter exists (scope `node`: wall analyzer, BMC, PSU), the total is that
     meter alone (the first listed if several); everything else is inside it.
  2. Otherwise the total is the sum of the top-level domains: CPU packages, DRAM and GPUs.
     Sub-domains (RAPL core, uncore) are never added: their package already holds them.
     RAPL DRAM counts as top-level even where powercap lists it under a package,
     because the package counter does not include DRAM.
  3. Meters of unknown placement (scope `other`: RAPL psys, most hwmon sensors) are
     not added: they may overlap what is already counted.
  4. A meter listed in the `contains` of a counted meter is never added again.";

/// One of the two totals (measured or estimated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalPart {
    pub provenance: Provenance,
    pub energy_j: f64,
    /// Sum of the counted meters' average power.
    pub avg_w: f64,
    /// The meters added up, in order.
    pub meter_ids: Vec<String>,
    pub completeness: Completeness,
}

/// A meter left out of the total, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub meter_id: String,
    pub reason: String,
}

/// The system total under [`TOTAL_RULE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemTotal {
    pub measured: Option<TotalPart>,
    pub estimated: Option<TotalPart>,
    pub excluded: Vec<Excluded>,
    pub rule: String,
}

/// The total the user chose: exactly the meters in `ids` (measured and
/// estimated still kept apart). For machines where the default rule does not
/// know the layout, e.g. a PDU outlet meter that feeds only the GPUs.
pub fn chosen_total(meters: &[MeterEnergy], ids: &[String]) -> Result<SystemTotal, EnergyError> {
    for id in ids {
        if !meters.iter().any(|m| &m.meter_id == id) {
            return Err(EnergyError::UnknownTotalMeter {
                id: id.clone(),
                known: meters.iter().map(|m| m.meter_id.clone()).collect(),
            });
        }
    }
    let part = |provenance: Provenance| {
        let chosen: Vec<&MeterEnergy> = meters
            .iter()
            .filter(|m| m.provenance == provenance && ids.contains(&m.meter_id))
            .collect();
        if chosen.is_empty() {
            return None;
        }
        let reasons: Vec<String> = chosen
            .iter()
            .flat_map(|m| {
                m.completeness
                    .reasons()
                    .iter()
                    .map(move |r| format!("{}: {r}", m.meter_id))
            })
            .collect();
        Some(TotalPart {
            provenance,
            energy_j: chosen.iter().map(|m| m.energy_j).sum(),
            avg_w: chosen.iter().map(|m| m.avg_w).sum(),
            meter_ids: chosen.iter().map(|m| m.meter_id.clone()).collect(),
            completeness: Completeness::from_reasons(reasons),
        })
    };
    Ok(SystemTotal {
        measured: part(Provenance::Measured),
        estimated: part(Provenance::Estimated),
        excluded: meters
            .iter()
            .filter(|m| !ids.contains(&m.meter_id))
            .map(|m| Excluded {
                meter_id: m.meter_id.clone(),
                reason: "not named in --total".into(),
            })
            .collect(),
        rule: format!("chosen by the user (--total): {}", ids.join(" + ")),
    })
}

/// Totals `meters` under [`TOTAL_RULE`].
pub fn system_total(meters: &[MeterEnergy]) -> SystemTotal {
    let mut excluded = Vec::new();
    let measured = total_for(meters, Provenance::Measured, &mut excluded);
    let estimated = total_for(meters, Provenance::Estimated, &mut excluded);
    SystemTotal {
        measured,
        estimated,
        excluded,
        rule: TOTAL_RULE.to_string(),
    }
}

fn total_for(
    meters: &[MeterEnergy],
    provenance: Provenance,
    excluded: &mut Vec<Excluded>,
) -> Option<TotalPart> {
    let mine: Vec<&MeterEnergy> = meters
        .iter()
        .filter(|m| m.provenance == provenance)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut counted: Vec<&MeterEnergy> = Vec::new();
    if let Some(node) = mine.iter().find(|m| m.scope == Scope::Node) {
        counted.push(node);
        for m in &mine {
            if m.meter_id != node.meter_id {
                let why = if m.scope == Scope::Node {
                    format!("another node meter ({}) is already counted", node.meter_id)
                } else {
                    format!("inside the node meter {}", node.meter_id)
                };
                excluded.push(Excluded {
                    meter_id: m.meter_id.clone(),
                    reason: why,
                });
            }
        }
    } else {
        let top_level =
            |m: &&MeterEnergy| matches!(m.scope, Scope::CpuPackage | Scope::Dram | Scope::Gpu);
        let candidates: Vec<&MeterEnergy> = mine.iter().copied().filter(top_level).collect();
        for m in &mine {
            match m.scope {
                Scope::CpuPackage | Scope::Dram | Scope::Gpu => {
                    if let Some(holder) = candidates
                        .iter()
                        .find(|c| c.meter_id != m.meter_id && c.contains.contains(&m.meter_id))
                    {
                        excluded.push(Excluded {
                            meter_id: m.meter_id.clone(),
                            reason: format!("contained in {}", holder.meter_id),
                        });
                    } else {
                        counted.push(m);
                    }
                }
                Scope::CpuSubdomain => excluded.push(Excluded {
                    meter_id: m.meter_id.clone(),
                    reason: "sub-domain: its package already holds it".into(),
                }),
                Scope::Other => excluded.push(Excluded {
                    meter_id: m.meter_id.clone(),
                    reason: "unknown placement (scope other): may overlap counted meters".into(),
                }),
                Scope::Node => {}
            }
        }
    }
    let mut reasons = Vec::new();
    for m in &counted {
        for r in m.completeness.reasons() {
            reasons.push(format!("{}: {r}", m.meter_id));
        }
    }
    if counted.is_empty() {
        reasons.push("no meter qualifies for the total".into());
    }
    Some(TotalPart {
        provenance,
        energy_j: counted.iter().map(|m| m.energy_j).sum(),
        avg_w: counted.iter().map(|m| m.avg_w).sum(),
        meter_ids: counted.iter().map(|m| m.meter_id.clone()).collect(),
        completeness: Completeness::from_reasons(reasons),
    })
}

impl fmt::Display for SystemTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (label, part) in [("measured", &self.measured), ("estimated", &self.estimated)] {
            if let Some(p) = part {
                write!(
                    f,
                    "{label} total: {:.3} J, {:.3} W avg = {}",
                    p.energy_j,
                    p.avg_w,
                    if p.meter_ids.is_empty() {
                        "(none)".to_string()
                    } else {
                        p.meter_ids.join(" + ")
                    }
                )?;
                match &p.completeness {
                    Completeness::Complete => writeln!(f)?,
                    Completeness::Incomplete { reasons } => {
                        writeln!(f, "  [incomplete]")?;
                        for r in reasons {
                            writeln!(f, "    - {r}")?;
                        }
                    }
                }
            }
        }
        for e in &self.excluded {
            writeln!(f, "not added: {} ({})", e.meter_id, e.reason)?;
        }
        Ok(())
    }
}

/// An MLPerf scenario, as far as the power metric cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scenario {
    SingleStream,
    MultiStream,
    Server,
    Offline,
}

impl std::str::FromStr for Scenario {
    type Err = EnergyError;
    /// Accepts MLPerf's spelling (`SingleStream`) and snake/kebab case,
    /// case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            "singlestream" => Ok(Scenario::SingleStream),
            "multistream" => Ok(Scenario::MultiStream),
            "server" => Ok(Scenario::Server),
            "offline" => Ok(Scenario::Offline),
            _ => Err(EnergyError::UnknownScenario { given: s.into() }),
        }
    }
}

/// The MLPerf Power efficiency metric of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Efficiency {
    /// Offline and Server: samples per joule (= samples/s per watt).
    SamplesPerJoule(f64),
    /// SingleStream and MultiStream: energy per query.
    JoulesPerQuery(f64),
}

impl fmt::Display for Efficiency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Efficiency::SamplesPerJoule(v) => write!(f, "{v:.4} samples/J"),
            Efficiency::JoulesPerQuery(v) => write!(f, "{:.4} mJ/query", v * 1e3),
        }
    }
}

/// MLPerf's efficiency for `scenario`: `samples / energy_j` for Offline and
/// Server, `energy_j / queries` for SingleStream and MultiStream, where
/// `energy_j` is the system energy over the timed window and `samples` and
/// `queries` are those completed in it.
pub fn efficiency(
    scenario: Scenario,
    energy_j: f64,
    samples: u64,
    queries: u64,
) -> Result<Efficiency, EnergyError> {
    if !(energy_j.is_finite() && energy_j > 0.0) {
        return Err(EnergyError::NoEnergy { energy_j });
    }
    match scenario {
        Scenario::Offline | Scenario::Server => {
            Ok(Efficiency::SamplesPerJoule(samples as f64 / energy_j))
        }
        Scenario::SingleStream | Scenario::MultiStream => {
            if queries == 0 {
                return Err(EnergyError::NoQueries);
            }
            Ok(Efficiency::JoulesPerQuery(energy_j / queries as f64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(kind: ReadingKind) -> MeterInfo {
        MeterInfo {
            id: "m".into(),
            source: "test".into(),
            domain: "d".into(),
            scope: Scope::CpuPackage,
            kind,
            provenance: Provenance::Measured,
            resolution: 1e-6,
            update_period: Duration::from_millis(1),
            contains: vec![],
        }
    }

    fn power(points: &[(u64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(t_ns, w)| Sample {
                t_ns,
                reading: Reading::watts(w),
            })
            .collect()
    }

    fn counter(points: &[(u64, u64)], wrap: Option<u64>) -> Vec<Sample> {
        points
            .iter()
            .map(|&(t_ns, c)| Sample {
                t_ns,
                reading: Reading::Energy {
                    counter_uj: c,
                    wrap_uj: wrap,
                },
            })
            .collect()
    }

    const S: u64 = 1_000_000_000;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-12)
    }

    #[test]
    fn constant_power_integrates_exactly() {
        let s: Vec<Sample> = power(&(0..=100).map(|i| (i * S / 10, 50.0)).collect::<Vec<_>>());
        let e = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(0, 10 * S).unwrap(),
            S,
        )
        .unwrap();
        assert!(close(e.energy_j, 500.0, 1e-12), "{}", e.energy_j);
        assert!(close(e.avg_w, 50.0, 1e-12));
        assert_eq!(e.samples_in_window, 101);
        assert!(e.is_complete(), "{:?}", e.completeness);
        assert!(close(e.coverage, 1.0, 1e-12));
    }

    #[test]
    fn linear_ramp_with_interpolated_edges_is_exact() {
        // P(t) = 10 + 2 t (W, t in s), sampled every second from 0 to 10 s.
        let s = power(
            &(0..=10)
                .map(|i| (i * S, 10.0 + 2.0 * i as f64))
                .collect::<Vec<_>>(),
        );
        // Window 2.5 s .. 7.25 s: both edges fall between samples.
        let w = Window::new(2 * S + S / 2, 7 * S + S / 4).unwrap();
        let e = energy_over_window(&info(ReadingKind::PowerSample), &s, w, 2 * S).unwrap();
        let exact = |t: f64| 10.0 * t + t * t;
        let want = exact(7.25) - exact(2.5);
        assert!(close(e.energy_j, want, 1e-9), "{} vs {want}", e.energy_j);
        assert_eq!(e.samples_in_window, 5); // 3,4,5,6,7 s
        assert!(e.is_complete());
    }

    #[test]
    fn sine_power_within_a_tenth_of_a_percent() {
        // P(t) = 100 + 40 sin(2 pi t / 0.7 s) over 5 s at 1 kHz, window 0.3..4.6 s.
        let period = 0.7;
        let p = |t: f64| 100.0 + 40.0 * (2.0 * std::f64::consts::PI * t / period).sin();
        let s = power(
            &(0..=5000)
                .map(|i| (i * S / 1000, p(i as f64 / 1000.0)))
                .collect::<Vec<_>>(),
        );
        let (a, b) = (0.3, 4.6);
        let prim = |t: f64| {
            100.0 * t
                - 40.0 * period / (2.0 * std::f64::consts::PI)
                    * (2.0 * std::f64::consts::PI * t / period).cos()
        };
        let want = prim(b) - prim(a);
        let w = Window::new((a * 1e9) as u64, (b * 1e9) as u64).unwrap();
        let e = energy_over_window(&info(ReadingKind::PowerSample), &s, w, S / 100).unwrap();
        assert!(close(e.energy_j, want, 1e-3), "{} vs {want}", e.energy_j);
        assert!(e.is_complete());
    }

    #[test]
    fn counter_difference_with_interpolated_edges() {
        // 100 W as a counter: 100_000 uJ per ms... sampled every 100 ms.
        let s = counter(
            &(0..=10)
                .map(|i| (i * S / 10, 5_000 + i * 10_000_000))
                .collect::<Vec<_>>(),
            None,
        );
        let w = Window::new(S / 20, S - S / 20).unwrap(); // 0.05 .. 0.95 s
        let e = energy_over_window(&info(ReadingKind::EnergyCounter), &s, w, S).unwrap();
        assert!(close(e.energy_j, 90.0, 1e-12), "{}", e.energy_j);
        assert!(close(e.avg_w, 100.0, 1e-12));
        assert!(e.is_complete());
    }

    #[test]
    fn counter_wraps_through_wrap_uj() {
        let wrap = 1_000_000; // 1 J range
        let s = counter(
            &[
                (0, 900_000),
                (S, 950_000),
                (2 * S, 50_000),
                (3 * S, 100_000),
            ],
            Some(wrap),
        );
        let e = energy_over_window(
            &info(ReadingKind::EnergyCounter),
            &s,
            Window::new(0, 3 * S).unwrap(),
            2 * S,
        )
        .unwrap();
        assert!(close(e.energy_j, 0.2, 1e-12), "{}", e.energy_j);
        assert!(e.counter_resets.is_empty());
        assert!(e.is_complete());
    }

    #[test]
    fn counter_reset_is_reported_not_negative() {
        let wrap = 1_000_000_000;
        // 0..1 s: +0.5 J; 1..2 s: reset (900_000 -> 1_000); 2..3 s: +0.2 J.
        let s = counter(
            &[(0, 400_000), (S, 900_000), (2 * S, 1_000), (3 * S, 201_000)],
            Some(wrap),
        );
        let e = energy_over_window(
            &info(ReadingKind::EnergyCounter),
            &s,
            Window::new(0, 3 * S).unwrap(),
            2 * S,
        )
        .unwrap();
        assert!(close(e.energy_j, 0.7, 1e-12), "{}", e.energy_j);
        assert_eq!(e.counter_resets.len(), 1);
        assert_eq!(e.counter_resets[0].before_uj, 900_000);
        assert!(!e.is_complete());
        assert!(e.completeness.reasons()[0].contains("backwards"));
        assert!(close(e.coverage, 2.0 / 3.0, 1e-12));
        // Without a wrap value every backward step is a reset.
        assert_eq!(counter_step(10, 5, None), CounterStep::Reset);
        assert_eq!(counter_step(990, 10, Some(1000)), CounterStep::Wrapped(20));
        assert_eq!(counter_step(5, 7, Some(1000)), CounterStep::Forward(2));
    }

    #[test]
    fn gaps_are_reported_and_make_the_result_incomplete() {
        let s = power(&[(0, 10.0), (S, 10.0), (5 * S, 10.0), (6 * S, 10.0)]);
        let e = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(0, 6 * S).unwrap(),
            2 * S,
        )
        .unwrap();
        assert_eq!(
            e.gaps,
            vec![Gap {
                from_ns: S,
                to_ns: 5 * S
            }]
        );
        assert!(close(e.energy_j, 60.0, 1e-12)); // interpolated across the gap
        assert!(close(e.coverage, 2.0 / 6.0, 1e-12));
        assert!(!e.is_complete());
        assert!(e.completeness.reasons()[0].contains("gap of 4.000 s"));
    }

    #[test]
    fn window_outside_the_samples_is_not_extrapolated() {
        let s = power(&[(2 * S, 10.0), (4 * S, 10.0)]);
        let e = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(S, 5 * S).unwrap(),
            10 * S,
        )
        .unwrap();
        assert!(close(e.energy_j, 20.0, 1e-12));
        assert!(close(e.avg_w, 10.0, 1e-12));
        assert!(close(e.coverage, 0.5, 1e-12));
        let r = e.completeness.reasons();
        assert!(r[0].contains("first sample 1.000 s after"), "{r:?}");
        assert!(r[1].contains("last sample 1.000 s before"), "{r:?}");

        let none = energy_over_window(
            &info(ReadingKind::PowerSample),
            &s,
            Window::new(10 * S, 11 * S).unwrap(),
            10 * S,
        )
        .unwrap();
        assert_eq!(none.energy_j, 0.0);
        assert!(none.completeness.reasons()[0].contains("no samples span"));
    }

    #[test]
    fn bad_input_is_an_error() {
        let i = info(ReadingKind::PowerSample);
        assert!(Window::new(5, 5).is_err());
        let back = power(&[(2, 1.0), (1, 1.0)]);
        assert!(matches!(
            energy_over_window(
                &i,
                &back,
                Window {
                    begin_ns: 0,
                    end_ns: 3
                },
                10
            ),
            Err(EnergyError::TimeWentBackwards { index: 1, .. })
        ));
        let mixed = counter(&[(0, 1)], None);
        assert!(matches!(
            energy_over_window(
                &i,
                &mixed,
                Window {
                    begin_ns: 0,
                    end_ns: 3
                },
                10
            ),
            Err(EnergyError::KindMismatch { .. })
        ));
    }

    fn me(id: &str, scope: Scope, prov: Provenance, j: f64, contains: &[&str]) -> MeterEnergy {
        MeterEnergy {
            meter_id: id.into(),
            source: "t".into(),
            domain: id.into(),
            scope,
            kind: ReadingKind::PowerSample,
            provenance: prov,
            contains: contains.iter().map(|s| s.to_string()).collect(),
            window: Window {
                begin_ns: 0,
                end_ns: S,
            },
            energy_j: j,
            avg_w: j,
            samples_in_window: 2,
            covered_s: 1.0,
            coverage: 1.0,
            gaps: vec![],
            counter_resets: vec![],
            completeness: Completeness::Complete,
        }
    }

    #[test]
    fn a_chosen_total_sums_exactly_the_named_meters() {
        use Provenance::*;
        let meters = [
            me("ipmi", Scope::Node, Measured, 1000.0, &[]),
            me("nvml-gpu0", Scope::Gpu, Measured, 300.0, &[]),
            me("rapl-package-0", Scope::CpuPackage, Measured, 100.0, &[]),
        ];
        let ids = vec!["nvml-gpu0".to_string(), "rapl-package-0".to_string()];
        let t = chosen_total(&meters, &ids).unwrap();
        let m = t.measured.unwrap();
        assert_eq!(m.meter_ids, ids);
        assert!((m.energy_j - 400.0).abs() < 1e-9);
        assert_eq!(t.excluded.len(), 1);
        assert!(t.rule.contains("--total"));
        let err = chosen_total(&meters, &["gpu9".to_string()]).unwrap_err();
        assert!(err.to_string().contains("no meter 'gpu9'"), "{err}");
    }

    #[test]
    fn several_readings_of_one_gpu_count_once() {
        // NVML's shape on an H100: the counter meter lists the other
        // whole-GPU readings and the memory meter as inside it. Figures are
        // those measured on the device machine (bench/gpu_energy_check.sh).
        use Provenance::*;
        let t = system_total(&[
            me(
                "nvml-gpu0",
                Scope::Gpu,
                Measured,
                9740.1,
                &[
                    "nvml-gpu0-memory-power",
                    "nvml-gpu0-power",
                    "nvml-gpu0-power-instant",
                    "nvml-gpu0-power-average",
                ],
            ),
            me(
                "nvml-gpu0-power",
                Scope::Gpu,
                Measured,
                9745.0,
                &["nvml-gpu0-memory-power"],
            ),
            me(
                "nvml-gpu0-power-instant",
                Scope::Gpu,
                Measured,
                9713.0,
                &["nvml-gpu0-memory-power"],
            ),
            me(
                "nvml-gpu0-power-average",
                Scope::Gpu,
                Measured,
                9744.9,
                &["nvml-gpu0-memory-power"],
            ),
            me("nvml-gpu0-memory-power", Scope::Gpu, Measured, 2080.0, &[]),
        ]);
        let measured = t.measured.unwrap();
        assert_eq!(measured.meter_ids, vec!["nvml-gpu0".to_string()]);
        assert!((measured.energy_j - 9740.1).abs() < 1e-9);
        assert_eq!(t.excluded.len(), 4);
    }

    #[test]
    fn total_sums_top_level_domains_only() {
        use Provenance::*;
        let t = system_total(&[
            me(
                "rapl-package-0",
                Scope::CpuPackage,
                Measured,
                100.0,
                &["rapl-core-0"],
            ),
            me("rapl-core-0", Scope::CpuSubdomain, Measured, 60.0, &[]),
            me("rapl-dram-0", Scope::Dram, Measured, 10.0, &[]),
            me("nvml-gpu0", Scope::Gpu, Measured, 300.0, &[]),
            me(
                "rapl-psys",
                Scope::Other,
                Measured,
                500.0,
                &["rapl-package-0"],
            ),
            me("estimate-cpu", Scope::CpuPackage, Estimated, 90.0, &[]),
        ]);
        let m = t.measured.as_ref().unwrap();
        assert_eq!(m.energy_j, 410.0);
        assert_eq!(m.meter_ids, ["rapl-package-0", "rapl-dram-0", "nvml-gpu0"]);
        let est = t.estimated.as_ref().unwrap();
        assert_eq!(est.energy_j, 90.0);
        assert_eq!(t.excluded.len(), 2);
        let text = t.to_string();
        assert!(text.contains("measured total: 410.000 J"), "{text}");
        assert!(text.contains("not added: rapl-core-0"), "{text}");
        assert!(t.rule.contains("node meter"));
    }

    #[test]
    fn node_meter_is_the_total_and_nothing_is_double_counted() {
        use Provenance::*;
        let mut gpu = me("nvml-gpu0", Scope::Gpu, Measured, 300.0, &[]);
        gpu.completeness = Completeness::Incomplete {
            reasons: vec!["gap".into()],
        };
        let t = system_total(&[
            gpu,
            me("ptd", Scope::Node, Measured, 700.0, &[]),
            me("ipmi", Scope::Node, Measured, 710.0, &[]),
        ]);
        let m = t.measured.unwrap();
        assert_eq!(m.energy_j, 700.0);
        assert_eq!(m.meter_ids, ["ptd"]);
        assert!(m.completeness.is_complete()); // the gpu's gap is not in the node total
        assert!(t.estimated.is_none());
        assert_eq!(t.excluded.len(), 2);
    }

    #[test]
    fn efficiency_metric_follows_the_scenario() {
        let off: Scenario = "Offline".parse().unwrap();
        assert_eq!(
            efficiency(off, 200.0, 1000, 1).unwrap(),
            Efficiency::SamplesPerJoule(5.0)
        );
        let ss: Scenario = "single_stream".parse().unwrap();
        assert_eq!(
            efficiency(ss, 200.0, 1000, 1000).unwrap(),
            Efficiency::JoulesPerQuery(0.2)
        );
        assert!(efficiency(ss, 200.0, 0, 0).is_err());
        assert!(efficiency(off, 0.0, 10, 10).is_err());
        assert!("warp".parse::<Scenario>().is_err());
        assert_eq!(
            Efficiency::JoulesPerQuery(0.2).to_string(),
            "200.0000 mJ/query"
        );
    }
}
