//! A serving sweep (`joulebench sweep --concurrency 1,2,4,…`): one run per
//! concurrency level, as MLPerf Endpoints' Pareto curve (system tokens/s
//! against tokens/s per user) with the energy per token at each point.

use super::{num, opt};
use crate::chart;
use crate::document::{Block, Document, Section, Table};
use crate::schema::RunResult;
use crate::serving::{ServingRecord, TokenEnergy};

/// One level of the sweep: its concurrency, folder and result.
pub struct SweepPoint {
    pub concurrency: u64,
    pub dir: String,
    pub result: RunResult,
}

/// The energy figure a point is judged by: the measured total, else the
/// estimated total (labelled so by its provenance).
pub fn headline_energy(s: &ServingRecord) -> Option<&TokenEnergy> {
    s.energy
        .iter()
        .find(|e| e.basis == "measured total")
        .or_else(|| s.energy.iter().find(|e| e.basis == "estimated total"))
}

/// Whether point `i` is on the Pareto front: no other point has at least
/// its per-user speed and its system throughput, and more of either.
pub fn on_front(points: &[(f64, f64)], i: usize) -> bool {
    let (x, y) = points[i];
    !points
        .iter()
        .enumerate()
        .any(|(j, &(a, b))| j != i && a >= x && b >= y && (a > x || b > y))
}

/// The table rows and, per point, (tokens/s per user, system tokens/s).
pub fn table(points: &[SweepPoint]) -> (Table, Vec<(f64, f64)>) {
    let mut t = Table::new(&[
        "concurrency",
        "requests",
        "failed",
        "system tok/s",
        "tok/s per user",
        "TTFT p90 ms",
        "TPOT p90 ms",
        "tokens/J",
        "J/token",
        "energy",
        "Pareto",
        "valid",
        "folder",
    ])
    .numeric(&[0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| {
            p.result.serving.as_ref().map_or((0.0, 0.0), |s| {
                (
                    s.tokens_per_s_per_user.unwrap_or(0.0),
                    s.system_tokens_per_s,
                )
            })
        })
        .collect();
    for (i, p) in points.iter().enumerate() {
        let Some(s) = &p.result.serving else {
            continue;
        };
        let energy = headline_energy(s);
        t.row(vec![
            p.concurrency.to_string(),
            s.requests.issued.to_string(),
            s.requests.failed.to_string(),
            num(s.system_tokens_per_s),
            opt(s.tokens_per_s_per_user),
            opt(s.ttft_ms.as_ref().map(|x| x.p90)),
            opt(s
                .tpot_endpoints_ms
                .as_ref()
                .or(s.tpot_ms.as_ref())
                .map(|x| x.p90)),
            opt(energy.and_then(|e| e.output_tokens_per_j)),
            opt(energy.and_then(|e| e.j_per_output_token)),
            energy.map_or("not measured".into(), |e| {
                format!("{} ({})", e.basis, e.scope)
            }),
            if on_front(&xy, i) { "yes" } else { "" }.into(),
            p.result
                .performance
                .as_ref()
                .map_or("-", |x| if x.valid { "VALID" } else { "INVALID" })
                .into(),
            p.dir.clone(),
        ]);
    }
    (t, xy)
}

pub fn page(points: &[SweepPoint], command: &str) -> Document {
    let mut doc = Document {
        title: "joulebench sweep: serving endpoint at fixed concurrency".into(),
        subtitle: vec![format!("$ {command}")],
        sections: Vec::new(),
    };
    if let Some(s) = points.iter().find_map(|p| p.result.serving.as_ref()) {
        doc.subtitle.push(format!(
            "{} ({}{}), model {}",
            s.endpoint,
            s.api,
            if s.streaming { ", streaming" } else { "" },
            s.model.as_deref().unwrap_or("-")
        ));
    }
    let (t, xy) = table(points);
    let mut section = Section::new("Pareto curve");
    let labels: Vec<String> = points
        .iter()
        .map(|p| format!("c={}", p.concurrency))
        .collect();
    match chart::pareto("pareto", &xy, &labels) {
        Ok(c) => section.blocks.push(Block::Chart(c)),
        Err(e) => section.blocks.push(Block::Warning(e.to_string())),
    }
    section.blocks.push(Block::Table(t));
    section.blocks.push(Block::Note(
        "Each level is a closed loop: that many requests always in flight (MLPerf Endpoints' \
         load pattern). tokens/s per user is 1000 / p90 time per output token (MLPerf \
         Endpoints' definition when the first chunk's tokens are known, else LoadGen's); \
         energy per token is over every output token, failed requests' included."
            .into(),
    ));
    doc.sections.push(section);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_points_nothing_beats_on_both_axes() {
        let pts = [(100.0, 50.0), (60.0, 90.0), (50.0, 80.0), (30.0, 120.0)];
        let front: Vec<bool> = (0..pts.len()).map(|i| on_front(&pts, i)).collect();
        assert_eq!(front, [true, true, false, true]);
    }
}
