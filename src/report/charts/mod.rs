//! The report's charts, drawn with plotters once for two backends: PNG files (bitmap) and the
//! inline SVG of the HTML report. Every chart is a pure function of the records.
//!
//! Text in PNGs is rendered from DejaVu Sans carried inside the binary by the `dejavu` crate
//! (2.37, MIT/Apache-2.0 crate; the fonts under the Bitstream Vera / DejaVu licence) through
//! plotters' `ab_glyph` feature, so charts render on a headless board with no fonts and no
//! fontconfig. SVG text names `sans-serif` and is drawn by whatever views it.

pub mod front;
mod rows;
mod scatter;
mod style;

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::view::{self, Metric};
use crate::sweep::record::Record;

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
                Kind::QualityLatency | Kind::SizeQuality | Kind::EnergyQuality => {
                    !scatter::marks(&cells, metric, kind).is_empty()
                }
                Kind::LatencyDistribution => cells.iter().any(|r| r.latency.is_some()),
                Kind::Speedup => !rows::speedups(&cells).is_empty(),
                Kind::LayerError => !rows::layer_rows(&cells).1.is_empty(),
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
            "Each mark is one cell: colour is the weight precision, shape the runtime. The line joins the Pareto front (no other cell is both faster and better), labelled by variant. Latency axis is logarithmic.".to_string(),
        ),
        Kind::SizeQuality => (
            format!("{model}: model file size vs {m}"),
            "Colour is the weight precision, shape the runtime. Size axis is logarithmic.".to_string(),
        ),
        Kind::EnergyQuality => {
            let sources: std::collections::BTreeSet<&str> = cells
                .iter()
                .filter_map(|r| view::energy(r))
                .map(|e| view::energy_source_word(e.source))
                .collect();
            (
                format!("{model}: energy per inference vs {m}"),
                format!(
                    "Colour is the weight precision, shape the runtime; the legend says where the energy figures come from ({}). Energy axis is logarithmic.",
                    sources.into_iter().collect::<Vec<_>>().join(", ")
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
    render_png(&chart.file_stem, |root| draw(root, chart, records))
}

/// The chart as an SVG document of [`WIDTH`] × [`HEIGHT`] user units.
pub fn svg(chart: &Chart, records: &[Record]) -> Result<String, ChartError> {
    render_svg(&chart.file_stem, |root| draw(root, chart, records))
}

/// What `paint` draws, as a PNG of [`WIDTH`] × [`HEIGHT`] pixels; `stem` names it in errors.
fn render_png(
    stem: &str,
    paint: impl for<'a> FnOnce(
        &DrawingArea<BitMapBackend<'a>, Shift>,
    ) -> style::Drawn<BitMapBackend<'a>>,
) -> Result<Vec<u8>, ChartError> {
    fonts()?;
    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        paint(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(stem, e))?;
    }
    let png_error = |source| ChartError::Png {
        chart: stem.to_string(),
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

/// What `paint` draws, as an SVG document of [`WIDTH`] × [`HEIGHT`] user units.
fn render_svg(
    stem: &str,
    paint: impl for<'a> FnOnce(&DrawingArea<SVGBackend<'a>, Shift>) -> style::Drawn<SVGBackend<'a>>,
) -> Result<String, ChartError> {
    fonts()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        paint(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(stem, e))?;
    }
    Ok(out)
}

fn draw_error<E: std::error::Error + Send + Sync>(
    stem: &str,
    e: DrawingAreaErrorKind<E>,
) -> ChartError {
    ChartError::Draw {
        chart: stem.to_string(),
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

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    records: &[Record],
) -> style::Drawn<DB> {
    root.fill(&WHITE)?;
    let cells = model_cells(records, &chart.model);
    let metric = Metric::for_records(cells.iter().copied());
    match chart.kind {
        Kind::QualityLatency | Kind::SizeQuality | Kind::EnergyQuality => {
            scatter::draw(root, chart, &cells, metric)
        }
        Kind::LatencyDistribution => rows::distribution(root, chart, &cells),
        Kind::Speedup => rows::speedup(root, chart, &cells),
        Kind::LayerError => rows::layer_error(root, chart, &cells),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::record::Precision;

    #[test]
    fn layer_rows_put_the_worst_layer_first() {
        let records = crate::report::fixture::records();
        let cells: Vec<&Record> = records
            .iter()
            .filter(|r| r.key.model == "mnist-cnn")
            .collect();
        let (variants, layers) = rows::layer_rows(&cells);
        assert!(variants.len() >= 4 && layers.len() >= 2, "{variants:?}");
        for w in layers.windows(2) {
            assert!(rows::worst(&w[0].2) <= rows::worst(&w[1].2));
        }
    }

    #[test]
    fn speedups_compare_with_fp32_on_the_same_runtime_and_device() {
        let records = crate::report::fixture::records();
        let cells: Vec<&Record> = records
            .iter()
            .filter(|r| r.key.model == "mnist-cnn")
            .collect();
        let s = rows::speedups(&cells);
        assert!(!s.is_empty());
        for (r, ratio) in s {
            let base = cells
                .iter()
                .find(|f| {
                    f.key.precision == Precision::Fp32
                        && f.key.runtime == r.key.runtime
                        && view::device(f) == view::device(r)
                        && f.key.threads == r.key.threads
                        && view::is_ok(f)
                })
                .unwrap();
            let expected = view::p50_ms(base).unwrap() / view::p50_ms(r).unwrap();
            assert!((ratio - expected).abs() < 1e-12);
        }
    }

    #[test]
    fn every_model_gets_every_chart_its_records_can_fill() {
        let records = crate::report::fixture::records();
        let plan = plan(&records);
        let stems: Vec<&str> = plan.iter().map(|c| c.file_stem.as_str()).collect();
        assert!(stems.contains(&"quality-latency-mnist-cnn"), "{stems:?}");
        assert!(stems.contains(&"layer-sqnr-mnist-mlp"), "{stems:?}");
        // Each stem is unique, so no chart overwrites another.
        let unique: std::collections::BTreeSet<&str> = stems.iter().copied().collect();
        assert_eq!(unique.len(), stems.len());
        // Only FP32 cells: no speed-up or layer chart.
        let fp32: Vec<Record> = records
            .iter()
            .filter(|r| r.key.precision == Precision::Fp32)
            .cloned()
            .collect();
        assert!(plan_kinds(&fp32)
            .iter()
            .all(|k| *k != Kind::Speedup && *k != Kind::LayerError));
    }

    fn plan_kinds(records: &[Record]) -> Vec<Kind> {
        plan(records).into_iter().map(|c| c.kind).collect()
    }
}
