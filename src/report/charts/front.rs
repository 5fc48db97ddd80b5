//! The search's front: every candidate a mixed-precision search tried, held-out accuracy drop
//! against the measured objective, the Pareto front joined by a line, the budget as a dashed
//! line and the chosen assignment ringed and labelled.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{self, Drawn, Entry, Key, FONT, GREY};
use super::{file_safe, render_png, render_svg, ChartError};
use crate::explore::objective::Objective;
use crate::explore::saved::SavedSearch;

/// Colour of the front and of feasible candidates.
const FRONT: RGBColor = RGBColor(31, 119, 180);
/// Colour of the chosen candidate.
const CHOSEN: RGBColor = RGBColor(200, 30, 40);

/// File name (no extension) of the front chart of `s`: `search-front-<model>`.
pub fn stem(s: &SavedSearch) -> String {
    format!("search-front-{}", file_safe(&s.name))
}

/// What the chart's marks mean, for a caption.
pub fn caption(s: &SavedSearch) -> String {
    format!(
        "Each mark is one per-layer assignment the search tried ({} in all): its held-out accuracy drop against FP32 (top-1 disagreement without labels) and its measured {}. Filled marks are within the {:.2}-point budget (dashed line); the line joins the Pareto front; the ringed mark is the chosen model.",
        s.report.candidates.len(),
        axis(s.report.objective),
        s.report.budget * 100.0
    )
}

fn axis(o: Objective) -> &'static str {
    match o {
        Objective::Size => "model file size (KiB)",
        Objective::Latency => "latency relative to FP32",
        Objective::Energy => "energy relative to FP32",
    }
}

/// The x value of an objective figure: KiB for sizes, the ratio otherwise.
fn x_of(o: Objective, value: f64) -> f64 {
    match o {
        Objective::Size => value / 1024.0,
        _ => value,
    }
}

/// The chart as PNG.
pub fn png(s: &SavedSearch) -> Result<Vec<u8>, ChartError> {
    render_png(&stem(s), |root| draw(root, s))
}

/// The chart as SVG.
pub fn svg(s: &SavedSearch) -> Result<String, ChartError> {
    render_svg(&stem(s), |root| draw(root, s))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &SavedSearch) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let r = &s.report;
    let o = r.objective;
    let pts: Vec<(f64, f64)> = r
        .candidates
        .iter()
        .map(|c| (x_of(o, c.objective), c.score.drop * 100.0))
        .collect();
    let entries = [
        Entry::new(Key::Circle(FRONT, true), "within the budget"),
        Entry::new(Key::Circle(GREY, true), "over the budget"),
        Entry::new(Key::Line(FRONT.stroke_width(2)), "Pareto front"),
        Entry::new(Key::Dashed(BLACK), "budget"),
        Entry::new(Key::Circle(CHOSEN, false), "chosen (written as ONNX)"),
    ];
    let plot = style::with_legend(root, &entries)?;
    let xs = pts.iter().map(|p| p.0).filter(|x| x.is_finite());
    let x_range = style::linear_range(xs, f64::NEG_INFINITY, f64::INFINITY);
    let ys = pts
        .iter()
        .map(|p| p.1)
        .chain(std::iter::once(r.budget * 100.0))
        .filter(|y| y.is_finite());
    let y_range = style::linear_range(ys, f64::NEG_INFINITY, f64::INFINITY);
    let mut c = ChartBuilder::on(&plot)
        .caption(
            format!("{}: mixed-precision search, {} objective", s.name, o.name()),
            (FONT, 21).into_font(),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.clone(), y_range)?;
    c.configure_mesh()
        .x_desc(axis(o))
        .y_desc("held-out accuracy drop (pts)")
        .x_label_formatter(&|v| style::short_number(*v))
        .y_label_formatter(&|v| style::short_number(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    let budget = r.budget * 100.0;
    c.draw_series(DashedLineSeries::new(
        [(x_range.start, budget), (x_range.end, budget)],
        6,
        4,
        BLACK.mix(0.5).stroke_width(1),
    ))?;
    let front: Vec<(f64, f64)> = r
        .front
        .iter()
        .filter_map(|&i| pts.get(i).copied())
        .collect();
    c.draw_series(LineSeries::new(front, FRONT.stroke_width(2)))?;
    for (p, cand) in pts.iter().zip(&r.candidates) {
        let colour = if cand.feasible { FRONT } else { GREY };
        c.draw_series(std::iter::once(Circle::new(*p, 4, colour.filled())))?;
    }
    if let (Some(p), Some(cand)) = (pts.get(r.chosen), r.candidates.get(r.chosen)) {
        c.draw_series(std::iter::once(Circle::new(*p, 9, CHOSEN.stroke_width(2))))?;
        c.draw_series(std::iter::once(
            EmptyElement::at(*p)
                + Text::new(
                    format!("#{} {}", cand.index, cand.assignment),
                    (10, -22),
                    (FONT, 13).into_font().color(&CHOSEN),
                ),
        ))?;
    }
    Ok(())
}
