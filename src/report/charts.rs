//! The report's charts, drawn with plotters once for two backends: PNG files (bitmap) and the
//! inline SVG of the HTML report. Every chart is a pure function of the records.
//!
//! Text in PNGs is rendered from DejaVu Sans carried inside the binary by the `dejavu` crate
//! (2.37, MIT/Apache-2.0 crate; the fonts under the Bitstream Vera / DejaVu licence) through
//! plotters' `ab_glyph` feature, so charts render on a headless board with no fonts and no
//! fontconfig. SVG text names `sans-serif` and is drawn by whatever views it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::pareto;
use crate::report::view::{self, Labeler, Metric};
use crate::runtime::RuntimeKind;
use crate::sweep::record::{Precision, Record};

/// Width of every chart, pixels.
pub const WIDTH: u32 = 960;
/// Height of every chart, pixels.
pub const HEIGHT: u32 = 600;

/// Most rows a row chart shows (the worst layers, the first cells).
pub const MAX_ROWS: usize = 24;

/// Why a chart could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The embedded font did not load (a broken build, not bad input).
    #[error("the embedded DejaVu Sans font did not load: {0}")]
    Font(String),
    /// plotters failed while drawing.
    #[error("drawing the chart {chart}: {message}")]
    Draw {
        /// The chart's file stem.
        chart: String,
        /// plotters' error.
        message: String,
    },
    /// The PNG encoder failed.
    #[error("encoding the chart {chart} as PNG: {source}")]
    Png {
        /// The chart's file stem.
        chart: String,
        /// The encoder's error.
        source: png::EncodingError,
    },
}

/// What a chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Accuracy (or agreement) against median latency, with the Pareto front.
    QualityLatency,
    /// Model file size against accuracy.
    SizeQuality,
    /// Energy per inference against accuracy, with the energy source.
    EnergyQuality,
    /// Latency percentiles per cell, native and ORT side by side.
    LatencyDistribution,
    /// Speed-up over FP32 per variant, runtime and device.
    Speedup,
    /// Per-layer SQNR per variant, worst layers first.
    LayerError,
}

impl Kind {
    /// Every kind, in the order a report shows them.
    pub const ALL: [Kind; 6] = [
        Kind::QualityLatency,
        Kind::SizeQuality,
        Kind::EnergyQuality,
        Kind::LatencyDistribution,
        Kind::Speedup,
        Kind::LayerError,
    ];

    fn stem(self) -> &'static str {
        match self {
            Kind::QualityLatency => "quality-latency",
            Kind::SizeQuality => "size-quality",
            Kind::EnergyQuality => "energy-quality",
            Kind::LatencyDistribution => "latency-distribution",
            Kind::Speedup => "speedup",
            Kind::LayerError => "layer-sqnr",
        }
    }
}

/// One chart of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// What it shows.
    pub kind: Kind,
    /// The model.
    pub model: String,
    /// Title drawn on the chart.
    pub title: String,
    /// File name without extension, unique in a report: `<kind>-<model>`.
    pub file_stem: String,
    /// What the marks mean, for a caption or alt text.
    pub caption: String,
}

/// The charts the records have data for: each kind for each model, skipping a kind when no
/// finished cell of the model has its figures.
pub fn plan(records: &[Record]) -> Vec<Chart> {
    let mut out = Vec::new();
    for model in view::distinct(records, |r| r.key.model.clone()) {
        let cells = model_cells(records, &model);
        let metric = Metric::for_records(cells.iter().copied());
        for kind in Kind::ALL {
            let has_data = match kind {
                Kind::QualityLatency => !scatter_marks(&cells, metric, kind).is_empty(),
                Kind::SizeQuality => !scatter_marks(&cells, metric, kind).is_empty(),
                Kind::EnergyQuality => !scatter_marks(&cells, metric, kind).is_empty(),
                Kind::LatencyDistribution => cells.iter().any(|r| r.latency.is_some()),
                Kind::Speedup => !speedups(&cells).is_empty(),
                Kind::LayerError => !layer_rows(&cells).1.is_empty(),
            };
            if has_data {
                out.push(describe(kind, &model, metric, &cells));
            }
        }
    }
    out
}

fn describe(kind: Kind, model: &str, metric: Metric, cells: &[&Record]) -> Chart {
    let m = metric.title();
    let (title, caption) = match kind {
        Kind::QualityLatency => (
            format!("{model}: {m} vs median latency"),
            format!("Each mark is one cell: colour is the weight precision, shape the runtime. The line joins the Pareto front (no other cell is both faster and better), labelled by variant. Latency axis is logarithmic."),
        ),
        Kind::SizeQuality => (
            format!("{model}: model file size vs {m}"),
            "Colour is the weight precision, shape the runtime. Size axis is logarithmic.".to_string(),
        ),
        Kind::EnergyQuality => {
            let sources = view::distinct(
                &cells.iter().map(|r| (*r).clone()).collect::<Vec<_>>(),
                |r| view::energy(r).map_or(String::new(), |e| view::energy_source_word(e.source).to_string()),
            );
            (
                format!("{model}: energy per inference vs {m}"),
                format!(
                    "Colour is the weight precision, shape the runtime; the legend says where the energy figures come from ({}). Energy axis is logarithmic.",
                    sources.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", ")
                ),
            )
        }
        Kind::LatencyDistribution => (
            format!("{model}: latency per run, by cell"),
            "Box from the median (p50) to p90, whisker from the fastest run to p99, tick at the median; colour is the runtime.".to_string(),
        ),
        Kind::Speedup => (
            format!("{model}: speed-up over FP32 (median latency)"),
            "FP32 median latency divided by the variant's, on the same runtime, threads, batch and device; colour is the runtime. The dashed line at 1× is FP32.".to_string(),
        ),
        Kind::LayerError => (
            format!("{model}: per-layer SQNR against FP32, worst layers first"),
            format!("Signal-to-quantization-noise ratio of each quantized layer's output (higher is better), one colour per variant; at most {MAX_ROWS} layers, the worst at the top."),
        ),
    };
    Chart {
        kind,
        model: model.to_string(),
        title,
        file_stem: format!("{}-{}", kind.stem(), file_safe(model)),
        caption,
    }
}

/// `name` with anything but ASCII letters, digits, `-` and `_` replaced by `_`.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn model_cells<'a>(records: &'a [Record], model: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.key.model == model).collect()
}

/// The chart as a PNG file of [`WIDTH`] × [`HEIGHT`] pixels.
pub fn png(chart: &Chart, records: &[Record]) -> Result<Vec<u8>, ChartError> {
    fonts()?;
    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart, records)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(chart, e))?;
    }
    let png_error = |source| ChartError::Png {
        chart: chart.file_stem.clone(),
        source,
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}

/// The chart as an SVG document of [`WIDTH`] × [`HEIGHT`] user units.
pub fn svg(chart: &Chart, records: &[Record]) -> Result<String, ChartError> {
    fonts()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart, records)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(chart, e))?;
    }
    Ok(out)
}

fn draw_error<E: std::error::Error + Send + Sync>(
    chart: &Chart,
    e: DrawingAreaErrorKind<E>,
) -> ChartError {
    ChartError::Draw {
        chart: chart.file_stem.clone(),
        message: e.to_string(),
    }
}

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once per process).
fn fonts() -> Result<(), ChartError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let family = "sans-serif";
        plotters::style::register_font(family, FontStyle::Normal, dejavu::sans::regular())
            .and_then(|()| {
                plotters::style::register_font(family, FontStyle::Bold, dejavu::sans::bold())
            })
            .map_err(|_| "DejaVu Sans is not a valid font".to_string())
    })
    .clone()
    .map_err(ChartError::Font)
}

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

const FONT: &str = "sans-serif";
const GREY: RGBColor = RGBColor(110, 110, 110);

fn precision_colour(p: Precision) -> RGBColor {
    match p {
        Precision::Fp32 => RGBColor(80, 80, 80),
        Precision::Int8 => RGBColor(31, 119, 180),
        Precision::Int4 => RGBColor(230, 120, 0),
        Precision::Binary => RGBColor(200, 30, 40),
    }
}

fn runtime_colour(r: RuntimeKind) -> RGBColor {
    match r {
        RuntimeKind::Native => RGBColor(0, 128, 120),
        RuntimeKind::Ort => RGBColor(130, 80, 180),
    }
}

/// Colours for series that have no meaning of their own (variants in the layer chart).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 120, 0),
    RGBColor(44, 160, 44),
    RGBColor(200, 30, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    records: &[Record],
) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let cells = model_cells(records, &chart.model);
    let metric = Metric::for_records(cells.iter().copied());
    match chart.kind {
        Kind::QualityLatency | Kind::SizeQuality | Kind::EnergyQuality => {
            scatter(root, chart, &cells, metric)
        }
        Kind::LatencyDistribution => distribution(root, chart, &cells),
        Kind::Speedup => speedup(root, chart, &cells),
        Kind::LayerError => layer_error(root, chart, &cells),
    }
}

/// One point of a scatter chart.
#[derive(Debug, Clone)]
struct Mark {
    x: f64,
    /// Percent.
    y: f64,
    precision: Precision,
    runtime: RuntimeKind,
    device: String,
    label: String,
}

fn scatter_marks(cells: &[&Record], metric: Metric, kind: Kind) -> Vec<Mark> {
    let labeler = Labeler {
        device: false,
        ..Labeler::for_records(cells.iter().copied())
    };
    cells
        .iter()
        .filter(|r| view::is_ok(r))
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

/// A log axis range around `values` that holds at least one power of ten (plotters puts its
/// log-axis ticks at powers of ten and their multiples).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let lo = if lo.is_finite() && lo > 0.0 { lo } else { 1.0 };
    let hi = hi.max(lo);
    let start = 10f64.powf(lo.log10().floor()) * 0.98;
    start..(hi * 1.3).max(start * 10.5)
}

fn linear_range(values: impl Iterator<Item = f64>, floor: f64, ceil: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return floor..ceil;
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad).max(floor)..(hi + pad).min(ceil)
}

/// A tick label with at most three significant digits and no trailing zeros.
fn short_number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    cells: &[&Record],
    metric: Metric,
) -> Drawn<DB> {
    let marks = scatter_marks(cells, metric, chart.kind);
    let x_desc = match chart.kind {
        Kind::QualityLatency => "median latency per run (ms, log scale)",
        Kind::SizeQuality => "model file (KiB, log scale)",
        _ => "energy per inference (µJ, log scale)",
    };
    let y_desc = format!("{} (%)", metric.title());
    let x_range = log_range(marks.iter().map(|m| m.x));
    let y_range = linear_range(marks.iter().map(|m| m.y), 0.0, 100.0);
    let mut c = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, 22).into_font())
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.log_scale(), y_range)?;
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(20)
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;

    if chart.kind == Kind::QualityLatency {
        let devices: Vec<String> = marks
            .iter()
            .map(|m| m.device.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for (d, device) in devices.iter().enumerate() {
            let of_device: Vec<&Mark> = marks.iter().filter(|m| &m.device == device).collect();
            let pts: Vec<(f64, f64)> = of_device.iter().map(|m| (m.x, m.y)).collect();
            let front: Vec<&Mark> = pareto::front(&pts)
                .into_iter()
                .map(|i| of_device[i])
                .collect();
            let name = if devices.len() > 1 {
                format!("Pareto front @ {device}")
            } else {
                "Pareto front".to_string()
            };
            let line = BLACK.mix(0.55).stroke_width(if d == 0 { 2 } else { 1 });
            c.draw_series(LineSeries::new(front.iter().map(|m| (m.x, m.y)), line))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], line));
            for (i, m) in front.iter().enumerate() {
                let dy = if i % 2 == 0 { -18 } else { 8 };
                c.draw_series(std::iter::once(
                    EmptyElement::at((m.x, m.y))
                        + Text::new(
                            m.label.clone(),
                            (8, dy),
                            (FONT, 13).into_font().color(&BLACK),
                        ),
                ))?;
            }
        }
    }
    for m in &marks {
        let colour = precision_colour(m.precision).filled();
        match m.runtime {
            RuntimeKind::Native => {
                c.draw_series(std::iter::once(Circle::new((m.x, m.y), 6, colour)))?
            }
            RuntimeKind::Ort => {
                c.draw_series(std::iter::once(TriangleMarker::new((m.x, m.y), 8, colour)))?
            }
        };
    }
    let precisions: std::collections::BTreeSet<Precision> =
        marks.iter().map(|m| m.precision).collect();
    for p in precisions {
        let colour = precision_colour(p);
        c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label(view::precision_name(p))
            .legend(move |(x, y)| {
                Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], colour.filled())
            });
    }
    let runtimes: std::collections::BTreeSet<&str> =
        marks.iter().map(|m| m.runtime.name()).collect();
    if runtimes.contains("native") {
        c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("native (circle)")
            .legend(|(x, y)| Circle::new((x, y), 6, GREY.filled()));
    }
    if runtimes.contains("ort") {
        c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("ONNX Runtime (triangle)")
            .legend(|(x, y)| TriangleMarker::new((x, y), 8, GREY.filled()));
    }
    if chart.kind == Kind::EnergyQuality {
        let notes: std::collections::BTreeSet<String> = cells
            .iter()
            .filter(|r| view::is_ok(r))
            .filter_map(|r| view::energy(r))
            .map(|e| format!("energy {}", crate::report::table::energy_source_note(e)))
            .collect();
        for note in notes {
            c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label(note)
                .legend(|(x, y)| EmptyElement::at((x, y)));
        }
    }
    legend(&mut c)?;
    Ok(())
}

/// Draws the legend of the series that have labels, in the lower right corner.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Drawn<DB> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
}

/// A chart with one labelled row per item, values along x (`x`: a linear or log range starting
/// at `x_start`), the first item at the top.
fn rows<'a, DB, XR>(
    root: &'a DrawingArea<DB, Shift>,
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
    let label_px = (longest as u32 * 8 + 20).clamp(80, 380);
    let n = labels.len().max(1) as f64;
    let mut c = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, 22).into_font())
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(label_px)
        .build_cartesian_2d(x, -0.5..n - 0.5)?;
    c.configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(20)
        .x_desc(x_desc)
        .x_label_formatter(&|v| short_number(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    let style = (FONT, 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, label) in labels.iter().enumerate() {
        let (px, py) = c.backend_coord(&(x_start, row_y(i, labels.len())));
        root.draw(&Text::new(label.clone(), (px - 8, py), style.clone()))?;
    }
    Ok(c)
}

type RowChart<'a, DB, XR> = ChartContext<
    'a,
    DB,
    Cartesian2d<<XR as AsRangedCoord>::CoordDescType, plotters::coord::types::RangedCoordf64>,
>;

/// The y of row `i` of `n`, the first row at the top.
fn row_y(i: usize, n: usize) -> f64 {
    (n - 1 - i) as f64
}

fn runtime_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
    runtimes: impl IntoIterator<Item = RuntimeKind>,
) -> Drawn<DB> {
    let set: std::collections::BTreeSet<&str> = runtimes.into_iter().map(|r| r.name()).collect();
    for r in RuntimeKind::ALL {
        if set.contains(r.name()) {
            let colour = runtime_colour(r);
            let name = match r {
                RuntimeKind::Native => "native",
                RuntimeKind::Ort => "ONNX Runtime",
            };
            c.draw_series(std::iter::empty::<Circle<CT::From, i32>>())?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], colour.filled())
                });
        }
    }
    legend(c)?;
    Ok(())
}

/// Cells in report order: precision, variant, runtime, device, threads, batch.
fn ordered<'a>(cells: &[&'a Record]) -> Vec<&'a Record> {
    let mut v: Vec<&Record> = cells.to_vec();
    v.sort_by(|a, b| {
        (
            a.key.precision,
            view::variant(a),
            a.key.runtime.name(),
            view::device(a),
            a.key.threads,
            a.key.batch,
        )
            .cmp(&(
                b.key.precision,
                view::variant(b),
                b.key.runtime.name(),
                view::device(b),
                b.key.threads,
                b.key.batch,
            ))
    });
    v
}

fn distribution<DB: DrawingBackend>(
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
    let x = log_range(
        shown
            .iter()
            .filter_map(|r| r.latency.as_ref())
            .flat_map(|l| {
                let s = &l.latency_ms;
                [s.min, s.p99]
            })
            .filter(|v| *v > 0.0),
    );
    let start = x.start;
    let mut c = rows(
        root,
        chart,
        &labels,
        x.log_scale(),
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
        let colour = runtime_colour(r.key.runtime);
        c.draw_series(std::iter::once(PathElement::new(
            vec![(s.min, y), (s.p99, y)],
            colour.stroke_width(2),
        )))?;
        c.draw_series(std::iter::once(Rectangle::new(
            [(s.p50, y - 0.28), (s.p90.max(s.p50), y + 0.28)],
            colour.mix(0.45).filled(),
        )))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(s.p50, y - 0.34), (s.p50, y + 0.34)],
            BLACK.stroke_width(2),
        )))?;
        for x in [s.min, s.p99] {
            c.draw_series(std::iter::once(PathElement::new(
                vec![(x, y - 0.15), (x, y + 0.15)],
                colour.stroke_width(2),
            )))?;
        }
    }
    runtime_legend(&mut c, shown.iter().map(|r| r.key.runtime))
}

/// A quantized cell's speed-up over the FP32 cell of the same model, runtime, threads, batch and
/// device.
fn speedups<'a>(cells: &[&'a Record]) -> Vec<(&'a Record, f64)> {
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

fn speedup<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    cells: &[&Record],
) -> Drawn<DB> {
    let bars: Vec<(&Record, f64)> = speedups(cells).into_iter().take(MAX_ROWS).collect();
    let labeler = Labeler::for_records(bars.iter().map(|(r, _)| *r));
    let labels: Vec<String> = bars.iter().map(|(r, _)| labeler.label(r)).collect();
    let hi = bars.iter().map(|b| b.1).fold(1.0f64, f64::max);
    let mut c = rows(
        root,
        chart,
        &labels,
        0.0..hi * 1.18,
        0.0,
        "speed-up over FP32 (×)",
    )?;
    let n = bars.len();
    for (i, (r, v)) in bars.iter().enumerate() {
        let y = row_y(i, n);
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y - 0.32), (*v, y + 0.32)],
            runtime_colour(r.key.runtime).filled(),
        )))?;
        c.draw_series(std::iter::once(
            EmptyElement::at((*v, y))
                + Text::new(
                    format!("{v:.2}×"),
                    (6, 0),
                    (FONT, 13)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ),
        ))?;
    }
    c.draw_series(DashedLineSeries::new(
        vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
        6,
        4,
        BLACK.stroke_width(1),
    ))?;
    runtime_legend(&mut c, bars.iter().map(|(r, _)| r.key.runtime))
}

/// Per-layer SQNR by variant: the variants (one record each), and the layers (name, op, SQNR by
/// variant index) sorted worst first.
type LayerRows = (Vec<String>, Vec<(String, String, Vec<Option<f64>>)>);

fn layer_rows(cells: &[&Record]) -> LayerRows {
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
    let mut layers: Vec<(String, String, Vec<Option<f64>>)> = by_layer
        .into_iter()
        .map(|(name, (op, mut v))| {
            v.resize(variants.len(), None);
            (name, op, v)
        })
        .filter(|(_, _, v)| v.iter().any(Option::is_some))
        .collect();
    let worst = |v: &[Option<f64>]| v.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    layers.sort_by(|a, b| worst(&a.2).total_cmp(&worst(&b.2)).then(a.0.cmp(&b.0)));
    (variants, layers)
}

fn layer_error<DB: DrawingBackend>(
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
    let x_range = linear_range(
        layers.iter().flat_map(|l| l.2.iter().flatten().copied()),
        f64::NEG_INFINITY,
        f64::INFINITY,
    );
    let start = x_range.start;
    let mut c = rows(
        root,
        chart,
        &labels,
        x_range,
        start,
        "SQNR of the layer's output (dB, higher is better)",
    )?;
    let n = layers.len();
    for (k, v) in variants.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let pts: Vec<(f64, f64)> = layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.2[k].map(|db| (db, row_y(i, n))))
            .collect();
        c.draw_series(pts.into_iter().map(|p| Circle::new(p, 6, colour.filled())))?
            .label(v.clone())
            .legend(move |(x, y)| Circle::new((x, y), 6, colour.filled()));
    }
    legend(&mut c)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ranges_hold_a_power_of_ten() {
        let r = log_range([0.15, 0.6].into_iter());
        assert!(r.start <= 0.1 && r.end >= 1.0, "{r:?}");
        let r = log_range([12.0, 9000.0].into_iter());
        assert!(r.start <= 10.0 && r.end > 9000.0, "{r:?}");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(short_number(0.2), "0.2");
        assert_eq!(short_number(0.123456), "0.123");
        assert_eq!(short_number(1500.0), "1500");
        assert_eq!(short_number(99.5), "99.5");
    }

    #[test]
    fn layer_rows_put_the_worst_layer_first() {
        let records = crate::report::fixture::records();
        let cells: Vec<&Record> = records
            .iter()
            .filter(|r| r.key.model == "mnist-cnn")
            .collect();
        let (variants, layers) = layer_rows(&cells);
        assert!(!variants.is_empty() && !layers.is_empty());
        let worst = |v: &[Option<f64>]| v.iter().flatten().copied().fold(f64::INFINITY, f64::min);
        for w in layers.windows(2) {
            assert!(worst(&w[0].2) <= worst(&w[1].2));
        }
    }
}
