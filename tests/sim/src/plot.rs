//! SVG plots of a set of simulated days (plotters' SVG backend writes text as SVG `<text>`: no fonts needed).

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use sluice::config::DEFAULT_DRAIN_MAX_MESSAGES;
use sluice::ports::QuotaModel;

use crate::day::{DayResult, PolicyKind};

const SIZE: (u32, u32) = (960, 440);

fn colour(policy: PolicyKind) -> RGBColor {
    match policy {
        PolicyKind::Sluice {
            max_messages,
            quota_model: QuotaModel::Fixed,
        } if max_messages == DEFAULT_DRAIN_MAX_MESSAGES => RGBColor(31, 119, 180),
        PolicyKind::Sluice {
            quota_model: QuotaModel::Rolling,
            ..
        } => RGBColor(214, 39, 40),
        PolicyKind::Sluice { .. } => RGBColor(148, 103, 189),
        PolicyKind::ThresholdSweep => RGBColor(255, 127, 14),
        PolicyKind::FixedSpacing => RGBColor(44, 160, 44),
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Hours (from, until) the provider was down on an outage day.
fn outage_band(days: &[&DayResult]) -> Option<(f64, f64)> {
    days.iter()
        .find_map(|d| d.outage.as_ref())
        .map(|o| (o.from_h, o.until_h))
}

/// Shades the hours the provider was down.
fn shade<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    band: Option<(f64, f64)>,
    y_max: f64,
) -> anyhow::Result<()> {
    if let Some((from, until)) = band {
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from, 0.0), (until, y_max)],
                red.mix(0.12).filled(),
            )))
            .map_err(err)?
            .label("provider down")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], red.mix(0.3).filled())
            });
    }
    Ok(())
}

/// Messages on the queue over the day, one line per policy.
pub fn backlog(path: &Path, scenario: &str, days: &[&DayResult]) -> anyhow::Result<()> {
    let x_max = days
        .iter()
        .flat_map(|d| d.backlog_series.last().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = days
        .iter()
        .flat_map(|d| d.backlog_series.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(10) as f64
        * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: messages waiting on the queue"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hour of the simulated day")
        .y_desc("messages on the queue")
        .y_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(err)?;
    shade(&mut chart, outage_band(days), y_max)?;
    for d in days {
        let c = colour(d.policy);
        chart
            .draw_series(LineSeries::new(
                d.backlog_series.iter().map(|&(x, y)| (x, y as f64)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(d.policy.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Records delivered per provider window (hour), one line per policy, with the capacity.
pub fn delivered(
    path: &Path,
    scenario: &str,
    capacity: u64,
    days: &[&DayResult],
) -> anyhow::Result<()> {
    let hours = days.iter().map(|d| d.hourly.len()).max().unwrap_or(1);
    let y_max = days
        .iter()
        .flat_map(|d| d.hourly.iter().map(|h| h.delivered.records()))
        .max()
        .unwrap_or(0)
        .max(capacity) as f64
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: provider records delivered per window (hour)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..hours as f64, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("window (hour of the day)")
        .y_desc("records delivered")
        .y_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(err)?;
    shade(&mut chart, outage_band(days), y_max)?;
    let cap = capacity as f64;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, cap), (hours as f64, cap)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label(format!("capacity {}", crate::report::int(capacity)))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for d in days {
        let c = colour(d.policy);
        // Step line: each window's count drawn across the window.
        let points: Vec<(f64, f64)> = d
            .hourly
            .iter()
            .enumerate()
            .flat_map(|(h, row)| {
                let y = row.delivered.records() as f64;
                [(h as f64, y), (h as f64 + 1.0, y)]
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(err)?
            .label(d.policy.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Cumulative distribution of freshness (log time axis), one line per policy.
pub fn freshness(path: &Path, scenario: &str, days: &[&DayResult]) -> anyhow::Result<()> {
    let x_max = days.iter().map(|d| d.freshness.max_s).fold(100.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: freshness (occurred_at → provider), cumulative"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds (log scale)")
        .y_desc("share of changes")
        .x_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(err)?;
    for d in days {
        let c = colour(d.policy);
        chart
            .draw_series(LineSeries::new(
                d.freshness_cdf.iter().map(|&(s, f)| (s.max(1.0), f)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!(
                "{} (p50 {:.0} s, p99 {:.0} s)",
                d.policy.label(),
                d.freshness.p50_s,
                d.freshness.p99_s
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// 1234567 → "1.2M".
fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
