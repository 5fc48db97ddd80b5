//! Trade-off scatter charts: accuracy against latency (with the Pareto front), model size and
//! energy per inference. Colour is the weight precision, shape the runtime, fill the device.

use std::collections::BTreeSet;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{self, Drawn, Entry, Key, FONT, GREY};
use super::{Chart, Kind};
use crate::report::pareto;
use crate::report::view::{self, Labeler, Metric};
use crate::runtime::RuntimeKind;
use crate::sweep::record::{Precision, Record};

/// One point of a scatter chart.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    x: f64,
    /// Percent.
    y: f64,
    precision: Precision,
    runtime: RuntimeKind,
    device: String,
    label: String,
}

/// The marks of a chart of `kind`: finished cells that have both figures.
pub(super) fn marks(cells: &[&Record], metric: Metric, kind: Kind) -> Vec<Mark> {
    let ok: Vec<&Record> = cells.iter().copied().filter(|r| view::is_ok(r)).collect();
    let labeler = Labeler {
        device: false,
        ..Labeler::for_records(ok.iter().copied())
    };
    ok.iter()
        .filter_map(|r| {
            let x = match kind {
                Kind::QualityLatency => view::p50_ms(r),
                Kind::SizeQuality => Some(r.sizes.model_file_bytes as f64 / 1024.0),
                Kind::EnergyQuality => view::energy(r).map(|e| e.joules_per_inference * 1e6),
                _ => None,
            }?;
            let y = metric.of(r)? * 100.0;
            (x.is_finite() && x > 0.0 && y.is_finite()).then(|| Mark {
                x,
                y,
                precision: r.key.precision,
                runtime: r.key.runtime,
                device: view::device(r),
                label: labeler.label(r),
            })
        })
        .collect()
}

/// Draws a scatter chart of `chart.kind`.
pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    cells: &[&Record],
    metric: Metric,
) -> Drawn<DB> {
    let marks = marks(cells, metric, chart.kind);
    let devices: Vec<String> = marks
        .iter()
        .map(|m| m.device.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let filled = |device: &str| devices.first().is_none_or(|d| d == device);
    let plot = style::with_legend(root, &entries(chart, cells, &marks, &devices))?;

    let x_desc = match chart.kind {
        Kind::QualityLatency => "median latency per run (ms, log scale)",
        Kind::SizeQuality => "model file (KiB, log scale)",
        _ => "energy per inference (µJ, log scale)",
    };
    let x_range = style::log_range(marks.iter().map(|m| m.x));
    let ticks = style::log_ticks(&x_range);
    let y_range = style::linear_range(marks.iter().map(|m| m.y), 0.0, 100.0);
    let mut c = ChartBuilder::on(&plot)
        .caption(&chart.title, (FONT, 21).into_font())
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.log_scale().with_key_points(ticks), y_range)?;
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(format!("{} (%)", metric.title()))
        .x_label_formatter(&|v| style::short_number(*v))
        .y_label_formatter(&|v| style::short_number(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;

    if chart.kind == Kind::QualityLatency {
        for (d, device) in devices.iter().enumerate() {
            let of_device: Vec<&Mark> = marks.iter().filter(|m| &m.device == device).collect();
            let pts: Vec<(f64, f64)> = of_device.iter().map(|m| (m.x, m.y)).collect();
            let front: Vec<&Mark> = pareto::front(&pts)
                .into_iter()
                .map(|i| of_device[i])
                .collect();
            c.draw_series(LineSeries::new(
                front.iter().map(|m| (m.x, m.y)),
                front_style(d),
            ))?;
            // Along the front accuracy rises with latency, so labels alternate from the last
            // (highest) point down: it takes the label above, the one before it the label below,
            // and neighbours never read as each other's.
            for (i, m) in front.iter().enumerate() {
                let dy = if (front.len() - 1 - i).is_multiple_of(2) {
                    -20
                } else {
                    9
                };
                let name = if devices.len() > 1 {
                    format!("{} @ {}", m.label, m.device)
                } else {
                    m.label.clone()
                };
                c.draw_series(std::iter::once(
                    EmptyElement::at((m.x, m.y))
                        + Text::new(name, (8, dy), (FONT, 13).into_font().color(&BLACK)),
                ))?;
            }
        }
    }
    for m in &marks {
        let colour = style::precision_colour(m.precision);
        // A hollow mark is the mark with a white one inside (plotters fills triangles always).
        let layers: &[(RGBColor, i32)] = if filled(&m.device) {
            &[(colour, 0)]
        } else {
            &[(colour, 0), (WHITE, 3)]
        };
        for &(col, inset) in layers {
            match m.runtime {
                RuntimeKind::Native => {
                    c.draw_series(std::iter::once(Circle::new(
                        (m.x, m.y),
                        6 - inset,
                        col.filled(),
                    )))?;
                }
                RuntimeKind::Ort => {
                    c.draw_series(std::iter::once(TriangleMarker::new(
                        (m.x, m.y),
                        8 - inset * 2,
                        col.filled(),
                    )))?;
                }
            }
        }
    }
    Ok(())
}

fn front_style(device_index: usize) -> ShapeStyle {
    BLACK
        .mix(if device_index == 0 { 0.6 } else { 0.35 })
        .stroke_width(if device_index == 0 { 2 } else { 1 })
}

fn entries(chart: &Chart, cells: &[&Record], marks: &[Mark], devices: &[String]) -> Vec<Entry> {
    let mut out = Vec::new();
    if chart.kind == Kind::QualityLatency {
        for (d, device) in devices.iter().enumerate() {
            let text = if devices.len() > 1 {
                format!("Pareto front @ {device}")
            } else {
                "Pareto front".to_string()
            };
            out.push(Entry::new(Key::Line(front_style(d)), text));
        }
    }
    let precisions: BTreeSet<Precision> = marks.iter().map(|m| m.precision).collect();
    for p in precisions {
        out.push(Entry::new(
            Key::Square(style::precision_colour(p)),
            p.name(),
        ));
    }
    let runtimes: BTreeSet<&str> = marks.iter().map(|m| m.runtime.name()).collect();
    if runtimes.contains("native") {
        out.push(Entry::new(Key::Circle(GREY, true), "native"));
    }
    if runtimes.contains("ort") {
        out.push(Entry::new(Key::Triangle(GREY, true), "ONNX Runtime"));
    }
    if devices.len() > 1 {
        out.push(Entry::new(
            Key::Circle(GREY, true),
            format!("filled: {}", devices[0]),
        ));
        out.push(Entry::new(
            Key::Circle(GREY, false),
            format!("hollow: {}", devices[1..].join(", ")),
        ));
    }
    if chart.kind == Kind::EnergyQuality {
        let notes: BTreeSet<String> = cells
            .iter()
            .filter(|r| view::is_ok(r))
            .filter_map(|r| view::energy(r))
            .map(|e| format!("energy {}", crate::report::table::energy_source_note(e)))
            .collect();
        out.extend(notes.into_iter().map(|n| Entry::new(Key::Note, n)));
    }
    out
}
