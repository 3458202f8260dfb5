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

type Area<'b> = DrawingArea<SVGBackend<'b>, plotters::coord::Shift>;
type XyChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// A white SVG of `n` panels of `cell` pixels in a grid of at most `cols` columns: the root
/// (to present) and one area per panel.
fn grid<'b>(
    path: &'b Path,
    n: usize,
    cols: usize,
    cell: (u32, u32),
) -> Result<(Area<'b>, Vec<Area<'b>>)> {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let root =
        SVGBackend::new(path, (cell.0 * cols as u32, cell.1 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| out_err(path, e))?;
    let areas = root.split_evenly((rows, cols));
    Ok((root, areas))
}

/// A titled x-y chart over `(x0, x1, y0, y1)` with its mesh and axis names drawn.
fn xy_chart<'a, 'b>(
    path: &Path,
    area: &'a Area<'b>,
    title: &str,
    (x_label, y_label): (&str, &str),
    (x0, x1, y0, y1): (f64, f64, f64, f64),
) -> Result<XyChart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| out_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| out_err(path, e))?;
    Ok(chart)
}

/// Draw `panels` in a grid of `cols` columns into an SVG file.
pub fn line_panels(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    let (root, areas) = grid(path, panels.len(), cols, (560, 400))?;
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(path, panel, area)?;
    }
    root.present().map_err(|e| out_err(path, e))
}

fn draw_panel(path: &Path, panel: &Panel, area: &Area<'_>) -> Result<()> {
    let xy = bounds(panel.series.iter().flat_map(|(_, p)| p.iter().copied()));
    let labels = (panel.x_label.as_str(), panel.y_label.as_str());
    let mut chart = xy_chart(path, area, &panel.title, labels, xy)?;
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
    let (root, areas) = grid(path, 2, 2, (560, 440))?;
    let views: [(&str, View); 2] = [
        ("area (mm2)", |p| (p.2, p.0)),
        ("latency per request (ms)", |p| (p.1, p.0)),
    ];
    for ((x_label, view), area) in views.into_iter().zip(areas.iter()) {
        let xy = bounds(points.iter().map(view));
        let labels = (x_label, "energy per request (uJ)");
        let mut chart = xy_chart(path, area, title, labels, xy)?;
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

/// One bar of a tornado: a knob's name and the ratio at its low and high end.
pub struct TornadoBar {
    pub label: String,
    pub low: f64,
    pub high: f64,
}

/// One tornado chart: bars around the default value, largest swing first.
pub struct Tornado {
    pub title: String,
    pub x_label: String,
    pub default: f64,
    pub bars: Vec<TornadoBar>,
}

/// Tornado charts in a grid of `cols` columns: each knob's bar spans from the default to the
/// value at its low end (blue) and at its high end (orange); the black line is the default, the
/// red line a ratio of 1 (where the conclusion flips).
pub fn tornado_svg(path: &Path, panels: &[Tornado], cols: usize) -> Result<()> {
    let (root, areas) = grid(path, panels.len(), cols, (640, 520))?;
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_tornado(path, panel, area)?;
    }
    root.present().map_err(|e| out_err(path, e))
}

fn draw_tornado(path: &Path, t: &Tornado, area: &Area<'_>) -> Result<()> {
    let k = t.bars.len().max(1) as i32;
    let xs = t
        .bars
        .iter()
        .flat_map(|b| [b.low, b.high])
        .chain([t.default, 1.0])
        .filter(|x| x.is_finite());
    let (x0, x1, _, _) = bounds(xs.map(|x| (x, 0.0)));
    let labels: Vec<String> = t.bars.iter().map(|b| b.label.clone()).collect();
    // Bar i (0 = largest swing, drawn on top) occupies y in [10 (k-1-i) + 2, 10 (k-1-i) + 8];
    // its label sits at 10 (k-1-i) + 5.
    let label_of = move |y: &i32| -> String {
        let slot = y / 10;
        if y % 10 == 5 && slot >= 0 && slot < k {
            labels[(k - 1 - slot) as usize].clone()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&t.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(190)
        .build_cartesian_2d(x0..x1, 0..10 * k)
        .map_err(|e| out_err(path, e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .set_tick_mark_size(LabelAreaPosition::Left, 0)
        .y_labels((10 * k + 1) as usize)
        .y_label_formatter(&label_of)
        .x_desc(t.x_label.as_str())
        .draw()
        .map_err(|e| out_err(path, e))?;
    let (low_c, high_c) = (COLORS[0], COLORS[1]);
    for (i, b) in t.bars.iter().enumerate() {
        let y = 10 * (k - 1 - i as i32);
        for (v, c) in [(b.low, low_c), (b.high, high_c)] {
            if v.is_finite() {
                let (a, z) = (t.default.min(v), t.default.max(v));
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a, y + 2), (z, y + 8)],
                        c.mix(0.8).filled(),
                    )))
                    .map_err(|e| out_err(path, e))?;
            }
        }
    }
    for (x, c) in [(t.default, BLACK), (1.0, RED)] {
        chart
            .draw_series(LineSeries::new([(x, 0), (x, 10 * k)], c.stroke_width(1)))
            .map_err(|e| out_err(path, e))?;
    }
    Ok(())
}

/// A labelled scatter: (x, y, highlighted, label); highlighted points are drawn red with
/// their label, the others grey.
pub struct Scatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<(f64, f64, bool, String)>,
}

/// Labelled scatters in a grid of `cols` columns (fewer when there are fewer panels). Labels
/// of highlighted points are stacked below the plot's top edge, left to right, each joined to
/// its point by a thin line, so that close points stay readable.
pub fn scatter_svg(path: &Path, panels: &[Scatter], cols: usize) -> Result<()> {
    let (root, areas) = grid(path, panels.len(), cols, (720, 480))?;
    for (s, area) in panels.iter().zip(areas.iter()) {
        let (x0, x1, y0, y1) = bounds(s.points.iter().map(|p| (p.0, p.1)));
        let labels = (s.x_label.as_str(), s.y_label.as_str());
        let mut chart = xy_chart(path, area, &s.title, labels, (x0, x1, y0, y1))?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(
                s.points
                    .iter()
                    .filter(|p| !p.2)
                    .map(|p| Circle::new((p.0, p.1), 3, grey.filled())),
            )
            .map_err(|e| out_err(path, e))?;
        let mut front: Vec<&(f64, f64, bool, String)> = s.points.iter().filter(|p| p.2).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (i, p) in front.iter().enumerate() {
            let label_y = y0 + (y1 - y0) * (0.45 - 0.07 * i as f64);
            let label_x = p.0 + (x1 - x0) * 0.03;
            let pale = RED.mix(0.4);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(p.0, p.1), (label_x, label_y)],
                    pale.stroke_width(1),
                )))
                .map_err(|e| out_err(path, e))?;
            chart
                .draw_series(std::iter::once(Circle::new((p.0, p.1), 4, RED.filled())))
                .map_err(|e| out_err(path, e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    p.3.clone(),
                    (label_x, label_y),
                    ("sans-serif", 11),
                )))
                .map_err(|e| out_err(path, e))?;
        }
    }
    root.present().map_err(|e| out_err(path, e))
}
