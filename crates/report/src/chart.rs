//! Charts, drawn with plotters to SVG text that the HTML report embeds.
//!
//! Each chart comes back as a [`Chart`]: the SVG plus what it is expected to
//! show — each series' name (its legend label), the colour it was drawn in and
//! the SVG element it is drawn as. The HTML page carries that list next to
//! the SVG, and a script in the page checks the drawn SVG against it (a
//! polyline of that colour with at least two points and a real size, a legend
//! with that name), so a test can ask the browser, not our own code, whether
//! each chart drew.
//!
//! Fonts: plotters is built without a font engine; SVG text is laid out by the
//! browser that shows it, and plotters only estimates label sizes. That keeps
//! the build free of system font libraries.

use crate::run_dir::MeterSeries;
use loadgen::stats::LatencyStats;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

const WIDTH: u32 = 860;
const HEIGHT: u32 = 320;

/// The palette, in series order (Tableau 10).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1F, 0x77, 0xB4),
    RGBColor(0xFF, 0x7F, 0x0E),
    RGBColor(0x2C, 0xA0, 0x2C),
    RGBColor(0xD6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xBD),
    RGBColor(0x8C, 0x56, 0x4B),
];
const SHADE: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const MARK: RGBColor = RGBColor(0x55, 0x55, 0x55);

#[derive(Debug, thiserror::Error)]
#[error("drawing chart `{chart}`: {reason}")]
pub struct ChartError {
    pub chart: String,
    pub reason: String,
}

/// What a series should look like once drawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesSpec {
    /// Legend label.
    pub name: String,
    /// `#RRGGBB`, as plotters writes it.
    pub color: String,
    /// `polyline` (lines) or `rect` (bars).
    pub element: String,
    /// Fewest elements (bars) or points (a line) expected.
    pub min_count: usize,
}

/// One drawn chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Unique within a page; used as the figure's id.
    pub id: String,
    pub title: String,
    pub svg: String,
    pub series: Vec<SeriesSpec>,
    /// Phase or event marks drawn (vertical lines).
    pub marks: usize,
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn err<E: std::fmt::Display>(chart: &str) -> impl Fn(E) -> ChartError + '_ {
    move |e| ChartError {
        chart: chart.to_string(),
        reason: e.to_string(),
    }
}

/// Nice upper bound for an axis from its largest value.
fn top(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    max * 1.12
}

/// `v` on an axis from 0 to `max`: a value outside it (a negative latency or
/// rate in a damaged result) is drawn at its edge, since plotters turns
/// far-off values into pixel offsets that overflow (a latency of -2.4e10 ms
/// panicked with an overflow in its f64 coordinates). Tables keep the numbers.
fn on_axis(v: f64, max: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, max)
    }
}

/// A vertical event mark: position (seconds) and label.
#[derive(Debug, Clone)]
pub struct EventMark {
    pub at_s: f64,
    pub label: String,
}

/// One meter's power over time, the timed window shaded, marks drawn as
/// labelled vertical lines. Time is shown from the first sample.
pub fn power_over_time(
    id: &str,
    series: &MeterSeries,
    color_index: usize,
    marks: &[EventMark],
) -> Result<Chart, ChartError> {
    let e = err(id);
    let color = PALETTE[color_index % PALETTE.len()];
    // Bounds from every point, not the first and last: a damaged log may be
    // out of time order or hold negative power, and a point outside the
    // chart's range overflows plotters' pixel arithmetic (a panic).
    let finite: Vec<(f64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let first = finite.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let first = if first.is_finite() { first } else { 0.0 };
    let origin = series.window_s.map_or(first, |w| first.min(w.0));
    let pts: Vec<(f64, f64)> = finite.iter().map(|p| (p.0 - origin, p.1)).collect();
    let x_max = pts
        .iter()
        .map(|p| p.0)
        .fold(0.0, f64::max)
        .max(series.window_s.map_or(0.0, |w| w.1 - origin))
        .max(1e-3);
    let y_min = pts.iter().map(|p| p.1).fold(0.0, f64::min);
    let y_max = top(pts.iter().map(|p| p.1).fold(0.0, f64::max));
    let mut svg = String::new();
    let mut drawn_marks = 0;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{} power", series.meter_id), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("time since the first sample (s)")
            .y_desc("power (W)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(&e)?;
        if let Some((a, b)) = series.window_s {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a - origin, 0.0), (b - origin, y_max)],
                    SHADE.mix(0.12).filled(),
                )))
                .map_err(&e)?
                .label("timed window")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], SHADE.mix(0.3).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(&e)?
            .label(series.meter_id.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        for m in marks {
            let x = m.at_s - origin;
            if !(0.0..=x_max).contains(&x) {
                continue;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    MARK.stroke_width(1),
                )))
                .map_err(&e)?;
            // Labels near the right edge are written leftwards of their line.
            let h = if x > 0.85 * x_max {
                HPos::Right
            } else {
                HPos::Left
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    m.label.clone(),
                    (x, y_max * 0.97),
                    ("sans-serif", 13)
                        .into_font()
                        .color(&MARK)
                        .pos(Pos::new(h, VPos::Top)),
                )))
                .map_err(&e)?;
            drawn_marks += 1;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xBB, 0xBB, 0xBB))
            .draw()
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(Chart {
        id: id.to_string(),
        title: format!("{} power over time", series.meter_id),
        svg,
        series: vec![SeriesSpec {
            name: series.meter_id.clone(),
            color: hex(color),
            element: "polyline".into(),
            // The whole line: the legend's swatch, a two-point line of the
            // same colour, must not pass for it.
            min_count: pts.len(),
        }],
        marks: drawn_marks,
    })
}

/// Latency by percentile (the distribution as LoadGen reports it: min, the
/// reported percentiles, max), one line per population, in milliseconds.
pub fn latency_distribution(
    id: &str,
    populations: &[(&str, &LatencyStats)],
) -> Result<Chart, ChartError> {
    let e = err(id);
    // x positions: 0 = min, 1..=n percentiles, n+1 = max.
    let mut labels: Vec<String> = vec!["min".into()];
    if let Some((_, first)) = populations.first() {
        for p in &first.percentiles {
            labels.push(format!("p{}", trim(p.percentile * 100.0)));
        }
    }
    labels.push("max".into());
    let y_max = top(populations
        .iter()
        .map(|(_, s)| s.max_ns as f64 / 1e6)
        .fold(0.0, f64::max));
    let n = labels.len();
    let mut svg = String::new();
    let mut specs = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("latency distribution", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.3..(n as f64 - 0.7), 0.0..y_max)
            .map_err(&e)?;
        let fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt)
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(&e)?;
        for (k, (name, stats)) in populations.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let ms = |ns| on_axis(ns as f64 / 1e6, y_max);
            let mut pts = vec![(0.0, ms(stats.min_ns))];
            for (i, p) in stats.percentiles.iter().enumerate() {
                pts.push(((i + 1) as f64, ms(p.latency_ns)));
            }
            pts.push(((stats.percentiles.len() + 1) as f64, ms(stats.max_ns)));
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(&e)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(&e)?;
            specs.push(SeriesSpec {
                name: name.to_string(),
                color: hex(color),
                element: "polyline".into(),
                min_count: pts.len(),
            });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xBB, 0xBB, 0xBB))
            .draw()
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(Chart {
        id: id.to_string(),
        title: "latency distribution".into(),
        svg,
        series: specs,
        marks: 0,
    })
}

/// One bar per run (`#1`, `#2`, … on the axis); a run without the value
/// gets no bar.
pub fn bars(
    id: &str,
    title: &str,
    unit: &str,
    values: &[Option<f64>],
    color_index: usize,
) -> Result<Chart, ChartError> {
    let e = err(id);
    let color = PALETTE[color_index % PALETTE.len()];
    let n = values.len().max(1);
    let y_max = top(values.iter().flatten().copied().fold(0.0, f64::max));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH / 2, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
            .map_err(&e)?;
        let fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                format!("#{}", i as usize + 1)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt)
            .y_desc(unit)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(&e)?;
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                v.filter(|v| v.is_finite()).map(|v| {
                    let v = on_axis(v, y_max);
                    Rectangle::new([(i as f64 - 0.3, 0.0), (i as f64 + 0.3, v)], color.filled())
                })
            }))
            .map_err(&e)?;
        // No legend: the caption names the one series.
        root.present().map_err(&e)?;
    }
    Ok(Chart {
        id: id.to_string(),
        title: title.to_string(),
        svg,
        series: vec![SeriesSpec {
            name: title.to_string(),
            color: hex(color),
            element: "rect".into(),
            min_count: values.iter().flatten().count(),
        }],
        marks: 0,
    })
}

/// A serving sweep's curve: one point per concurrency level (`labels`),
/// joined in order, x = tokens/s per user, y = system tokens/s (MLPerf
/// Endpoints' Pareto axes).
pub fn pareto(id: &str, points: &[(f64, f64)], labels: &[String]) -> Result<Chart, ChartError> {
    let e = err(id);
    let title = "system tokens/s against tokens/s per user";
    let color = PALETTE[0];
    let x_max = top(points.iter().map(|p| p.0).fold(0.0, f64::max));
    let y_max = top(points.iter().map(|p| p.1).fold(0.0, f64::max));
    let points: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| (on_axis(x, x_max), on_axis(y, y_max)))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT + 80)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("tokens/s per user (1000 / p90 TPOT)")
            .y_desc("system output tokens/s")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(&e)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(&e)?
            .label("concurrency levels")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(&e)?;
        chart
            .draw_series(points.iter().zip(labels).map(|(&p, label)| {
                Text::new(
                    label.clone(),
                    p,
                    ("sans-serif", 13)
                        .into_font()
                        .color(&MARK)
                        .pos(Pos::new(HPos::Left, VPos::Bottom)),
                )
            }))
            .map_err(&e)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xBB, 0xBB, 0xBB))
            .draw()
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(Chart {
        id: id.to_string(),
        title: title.into(),
        svg,
        series: vec![SeriesSpec {
            name: "concurrency levels".into(),
            color: hex(color),
            element: "polyline".into(),
            min_count: points.len(),
        }],
        marks: 0,
    })
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use power::meter::Provenance;

    fn series(n: usize) -> MeterSeries {
        MeterSeries {
            meter_id: "rapl-package-0".into(),
            provenance: Provenance::Measured,
            points: (0..n).map(|i| (10.0 + i as f64 * 0.1, 40.0)).collect(),
            window_s: Some((10.5, 12.0)),
            peak_w: Some(40.0),
        }
    }

    /// plotters writes each text on its own line inside `<text>`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    #[test]
    fn a_power_chart_has_its_line_window_and_marks_in_the_svg() {
        let marks = [
            EventMark {
                at_s: 11.0,
                label: "train".into(),
            },
            EventMark {
                at_s: 99.0,
                label: "outside".into(),
            },
        ];
        let c = power_over_time("p", &series(30), 0, &marks).unwrap();
        assert!(c.svg.starts_with("<svg"), "{:.80}", c.svg);
        assert!(c.svg.contains("<polyline"), "line drawn");
        assert!(c.svg.contains("stroke=\"#1F77B4\""), "in the series colour");
        assert!(has_text(&c.svg, "rapl-package-0"), "legend");
        assert!(has_text(&c.svg, "timed window"), "window legend");
        assert!(has_text(&c.svg, "train"), "phase label");
        assert!(
            !has_text(&c.svg, "outside"),
            "a mark off the chart is not drawn"
        );
        assert_eq!(c.marks, 1);
        assert_eq!(c.series[0].color, "#1F77B4");
    }

    #[test]
    fn bars_skip_runs_without_a_value() {
        let c = bars(
            "b",
            "throughput",
            "samples/s",
            &[Some(10.0), None, Some(5.0)],
            1,
        )
        .unwrap();
        let colored = c.svg.matches("fill=\"#FF7F0E\"").count();
        assert_eq!(colored, 2, "two bars, no legend");
        assert!(has_text(&c.svg, "#3"), "{}", c.svg);
    }
}
