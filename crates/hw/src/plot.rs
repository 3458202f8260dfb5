//! SVG plots (plotters, SVG backend): per-policy curves against the task count, and the DSE
//! scatter with its Pareto front.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{HwError, Result};

/// One chart of several named series of (x, y) points.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn out_err(path: &Path, e: impl std::fmt::Display) -> HwError {
    HwError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn bounds(points: impl Iterator<Item = (f64, f64)>) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        return (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |a: f64, b: f64| {
        if b > a {
            (b - a) * 0.05
        } else {
            a.abs().max(1.0) * 0.05
        }
    };
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let y_low = if y0 >= 0.0 { 0.0 } else { y0 - py };
    (x0 - px, x1 + px, y_low, y1 + py)
}

/// Draw `panels` in a grid of `cols` columns into an SVG file.
pub fn line_panels(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (560 * cols as u32, 400 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| out_err(path, e))?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(path, panel, area)?;
    }
    root.present().map_err(|e| out_err(path, e))
}

fn draw_panel(
    path: &Path,
    panel: &Panel,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Result<()> {
    let (x0, x1, y0, y1) = bounds(panel.series.iter().flat_map(|(_, p)| p.iter().copied()));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| out_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .draw()
        .map_err(|e| out_err(path, e))?;
    for (i, (name, pts)) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| out_err(path, e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| out_err(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| out_err(path, e))
}

/// A design point as (energy, latency, area, on the Pareto front).
pub type ScatterPoint = (f64, f64, f64, bool);

/// Projects a design point onto (x, y) of one view.
type View = fn(&ScatterPoint) -> (f64, f64);

/// Most background (off-front) points drawn; beyond it an even sample is drawn, so that the SVG
/// stays small for spaces of hundreds of thousands of points.
pub const MAX_BACKGROUND_POINTS: usize = 4000;

/// Scatter of feasible design points (grey, sampled) with the Pareto front (red), two views:
/// energy vs area and energy vs latency. `points` = (energy, latency, area, on the front).
pub fn pareto_svg(path: &Path, points: &[ScatterPoint], title: &str) -> Result<()> {
    let background: Vec<ScatterPoint> = points.iter().copied().filter(|p| !p.3).collect();
    let step = background.len().div_ceil(MAX_BACKGROUND_POINTS).max(1);
    let root = SVGBackend::new(path, (1120, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| out_err(path, e))?;
    let areas = root.split_evenly((1, 2));
    let views: [(&str, View); 2] = [
        ("area (mm2)", |p| (p.2, p.0)),
        ("latency per request (ms)", |p| (p.1, p.0)),
    ];
    for ((x_label, view), area) in views.into_iter().zip(areas.iter()) {
        let (x0, x1, y0, y1) = bounds(points.iter().map(view));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| out_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("energy per request (uJ)")
            .draw()
            .map_err(|e| out_err(path, e))?;
        let grey = RGBColor(170, 170, 170);
        chart
            .draw_series(
                background
                    .iter()
                    .step_by(step)
                    .map(|p| Circle::new(view(p), 2, grey.filled())),
            )
            .map_err(|e| out_err(path, e))?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.3)
                    .map(|p| Circle::new(view(p), 4, RED.filled())),
            )
            .map_err(|e| out_err(path, e))?;
    }
    root.present().map_err(|e| out_err(path, e))
}
