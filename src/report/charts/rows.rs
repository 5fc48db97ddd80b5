//! Row charts, one labelled row per item with values along x: latency percentiles per cell,
//! speed-up over FP32 per cell, and per-layer SQNR per variant (worst layers first).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{self, Drawn, Entry, Key, FONT, PALETTE};
use super::{Chart, MAX_ROWS};
use crate::report::view::{self, Labeler};
use crate::runtime::RuntimeKind;
use crate::sweep::record::{Precision, Record};

type RowChart<'a, DB, XR> =
    ChartContext<'a, DB, Cartesian2d<<XR as AsRangedCoord>::CoordDescType, RangedCoordf64>>;

/// Sets up a row chart on `plot`: the title, the x axis (`x`, a linear or log range starting at
/// `x_start`), and the row labels, the first row at the top.
fn frame<'a, DB, XR>(
    plot: &'a DrawingArea<DB, Shift>,
    chart: &Chart,
    labels: &[String],
    x: XR,
    x_start: f64,
    x_desc: &str,
) -> Result<RowChart<'a, DB, XR>, DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    XR: AsRangedCoord<Value = f64>,
    XR::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let label_px = (longest as u32 * 7 + 24).clamp(80, 360);
    let n = slots(labels.len()) as f64;
    let mut c = ChartBuilder::on(plot)
        .caption(&chart.title, (FONT, 21).into_font())
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(label_px)
        .build_cartesian_2d(x, -0.5..n - 0.5)?;
    c.configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(10)
        .x_desc(x_desc)
        .x_label_formatter(&|v| style::short_number(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    let text = (FONT, 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, label) in labels.iter().enumerate() {
        let (px, py) = c.backend_coord(&(x_start, row_y(i, labels.len())));
        plot.draw(&Text::new(label.clone(), (px - 8, py), text.clone()))?;
    }
    Ok(c)
}

/// Rows a chart of `n` rows makes room for: a few rows are drawn at the top at the height they
/// would have in a fuller chart, not stretched over the whole plot.
fn slots(n: usize) -> usize {
    n.max(8)
}

/// The y of row `i` of a chart of `n` rows, the first row at the top.
fn row_y(i: usize, n: usize) -> f64 {
    (slots(n) - 1 - i) as f64
}

fn runtime_entries(runtimes: impl IntoIterator<Item = RuntimeKind>) -> Vec<Entry> {
    let set: BTreeSet<&str> = runtimes.into_iter().map(|r| r.name()).collect();
    RuntimeKind::ALL
        .into_iter()
        .filter(|r| set.contains(r.name()))
        .map(|r| {
            Entry::new(
                Key::Square(style::runtime_colour(r)),
                style::runtime_title(r),
            )
        })
        .collect()
}

/// Cells in report order: precision, variant, runtime, device, threads, batch.
pub(super) fn ordered<'a>(cells: &[&'a Record]) -> Vec<&'a Record> {
    let mut v: Vec<&Record> = cells.to_vec();
    v.sort_by_cached_key(|r| {
        (
            r.key.precision,
            view::variant(r),
            r.key.runtime.name(),
            view::device(r),
            r.key.threads,
            r.key.batch,
        )
    });
    v
}

/// Latency percentiles per cell: box p50–p90, whisker min–p99, tick at the median.
pub(super) fn distribution<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    cells: &[&Record],
) -> Drawn<DB> {
    let shown: Vec<&Record> = ordered(cells)
        .into_iter()
        .filter(|r| r.latency.is_some())
        .take(MAX_ROWS)
        .collect();
    let labeler = Labeler::for_records(shown.iter().copied());
    let labels: Vec<String> = shown.iter().map(|r| labeler.label(r)).collect();
    let mut entries = runtime_entries(shown.iter().map(|r| r.key.runtime));
    entries.push(Entry::new(Key::Note, "box: median (p50) to p90"));
    entries.push(Entry::new(Key::Note, "whisker: fastest run to p99"));
    entries.push(Entry::new(Key::Note, "black tick: median"));
    let plot = style::with_legend(root, &entries)?;
    let x: Range<f64> = style::log_range(
        shown
            .iter()
            .filter_map(|r| r.latency.as_ref())
            .flat_map(|l| [l.latency_ms.min, l.latency_ms.p99]),
    );
    let (start, ticks) = (x.start, style::log_ticks(&x));
    let mut c = frame(
        &plot,
        chart,
        &labels,
        x.log_scale().with_key_points(ticks),
        start,
        "latency per run (ms, log scale)",
    )?;
    let n = shown.len();
    for (i, r) in shown.iter().enumerate() {
        let Some(l) = r.latency.as_ref() else {
            continue;
        };
        let s = &l.latency_ms;
        let y = row_y(i, n);
        let colour = style::runtime_colour(r.key.runtime);
        let mut lines = vec![vec![(s.min, y), (s.p99, y)]];
        lines.extend([s.min, s.p99].map(|x| vec![(x, y - 0.15), (x, y + 0.15)]));
        for line in lines {
            c.draw_series(std::iter::once(PathElement::new(
                line,
                colour.stroke_width(2),
            )))?;
        }
        c.draw_series(std::iter::once(Rectangle::new(
            [(s.p50, y - 0.3), (s.p90.max(s.p50), y + 0.3)],
            colour.mix(0.5).filled(),
        )))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(s.p50, y - 0.36), (s.p50, y + 0.36)],
            BLACK.stroke_width(2),
        )))?;
    }
    Ok(())
}

/// A quantized cell's speed-up over the FP32 cell of the same model, runtime, threads, batch
/// and device, in report order.
pub(super) fn speedups<'a>(cells: &[&'a Record]) -> Vec<(&'a Record, f64)> {
    let ok: Vec<&Record> = cells.iter().copied().filter(|r| view::is_ok(r)).collect();
    ordered(&ok)
        .into_iter()
        .filter(|r| r.key.precision != Precision::Fp32)
        .filter_map(|r| {
            let base = ok.iter().find(|f| {
                f.key.precision == Precision::Fp32
                    && f.key.runtime == r.key.runtime
                    && f.key.threads == r.key.threads
                    && f.key.batch == r.key.batch
                    && view::device(f) == view::device(r)
            })?;
            let ratio = view::p50_ms(base)? / view::p50_ms(r)?;
            ratio.is_finite().then_some((r, ratio))
        })
        .collect()
}

/// Speed-up bars, coloured by runtime, with FP32 (1×) dashed.
pub(super) fn speedup<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    cells: &[&Record],
) -> Drawn<DB> {
    let bars: Vec<(&Record, f64)> = speedups(cells).into_iter().take(MAX_ROWS).collect();
    let labeler = Labeler::for_records(bars.iter().map(|(r, _)| *r));
    let labels: Vec<String> = bars.iter().map(|(r, _)| labeler.label(r)).collect();
    let mut entries = runtime_entries(bars.iter().map(|(r, _)| r.key.runtime));
    entries.push(Entry::new(Key::Dashed(BLACK), "FP32 (1×)"));
    let plot = style::with_legend(root, &entries)?;
    let hi = bars.iter().map(|b| b.1).fold(1.0f64, f64::max);
    let mut c = frame(
        &plot,
        chart,
        &labels,
        0.0..hi * 1.18,
        0.0,
        "speed-up over FP32 (×)",
    )?;
    let n = bars.len();
    let value = (FONT, 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (r, v)) in bars.iter().enumerate() {
        let y = row_y(i, n);
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y - 0.32), (*v, y + 0.32)],
            style::runtime_colour(r.key.runtime).filled(),
        )))?;
        c.draw_series(std::iter::once(
            EmptyElement::at((*v, y)) + Text::new(format!("{v:.2}×"), (6, 0), value.clone()),
        ))?;
    }
    c.draw_series(DashedLineSeries::new(
        vec![(1.0, -0.5), (1.0, slots(n) as f64 - 0.5)],
        6,
        4,
        BLACK.stroke_width(1),
    ))?;
    Ok(())
}

/// A layer's row: name, operator, and its SQNR (dB) under each variant.
pub(super) type LayerRow = (String, String, Vec<Option<f64>>);

/// Per-layer SQNR by variant: the variants (one record each: layer errors do not depend on the
/// runtime), and every layer that has a figure, worst (lowest SQNR under any variant) first.
pub(super) fn layer_rows(cells: &[&Record]) -> (Vec<String>, Vec<LayerRow>) {
    let mut variants: Vec<String> = Vec::new();
    let mut by_layer: BTreeMap<String, (String, Vec<Option<f64>>)> = BTreeMap::new();
    for r in ordered(cells) {
        let v = view::variant(r);
        if r.layers.is_empty() || variants.contains(&v) {
            continue;
        }
        variants.push(v);
        let k = variants.len() - 1;
        for l in &r.layers {
            let entry = by_layer
                .entry(l.layer.clone())
                .or_insert_with(|| (l.op_type.clone(), Vec::new()));
            entry.1.resize(k + 1, None);
            entry.1[k] = l.sqnr_db.filter(|v| v.is_finite());
        }
    }
    let mut layers: Vec<LayerRow> = by_layer
        .into_iter()
        .map(|(name, (op, mut v))| {
            v.resize(variants.len(), None);
            (name, op, v)
        })
        .filter(|(_, _, v)| v.iter().any(Option::is_some))
        .collect();
    layers.sort_by(|a, b| worst(&a.2).total_cmp(&worst(&b.2)).then(a.0.cmp(&b.0)));
    (variants, layers)
}

/// The lowest SQNR of a layer under any variant.
pub(super) fn worst(v: &[Option<f64>]) -> f64 {
    v.iter().flatten().copied().fold(f64::INFINITY, f64::min)
}

/// Per-layer SQNR dots, one colour per variant.
pub(super) fn layer_error<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    cells: &[&Record],
) -> Drawn<DB> {
    let (variants, mut layers) = layer_rows(cells);
    layers.truncate(MAX_ROWS);
    let labels: Vec<String> = layers
        .iter()
        .map(|(name, op, _)| format!("{name} ({op})"))
        .collect();
    let colour = |k: usize| PALETTE[k % PALETTE.len()];
    let entries: Vec<Entry> = variants
        .iter()
        .enumerate()
        .map(|(k, v)| Entry::new(Key::Circle(colour(k), true), v.clone()))
        .collect();
    let plot = style::with_legend(root, &entries)?;
    let x = style::linear_range(
        layers.iter().flat_map(|l| l.2.iter().flatten().copied()),
        f64::NEG_INFINITY,
        f64::INFINITY,
    );
    let start = x.start;
    let mut c = frame(
        &plot,
        chart,
        &labels,
        x,
        start,
        "SQNR of the layer's output (dB, higher is better)",
    )?;
    let n = layers.len();
    let nv = variants.len();
    for k in 0..nv {
        // Variants side by side within the row, so that equal figures do not hide each other.
        let dy = (k as f64 - (nv - 1) as f64 / 2.0) * (0.6 / nv as f64);
        let pts: Vec<(f64, f64)> = layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.2[k].map(|db| (db, row_y(i, n) + dy)))
            .collect();
        c.draw_series(
            pts.into_iter()
                .map(|p| Circle::new(p, 6, colour(k).filled())),
        )?;
    }
    Ok(())
}
