//! `quench kernels`: quench's FP32, INT8, 4-bit and binary kernels against ONNX Runtime on
//! single-operator models of the same shapes, in one process and one run.
//!
//! The machine's speed drifts (it is shared and its clock moves minute to minute), so cases are
//! interleaved: every round times each case of a shape once (best of a few calls), alternating
//! the order, and a ratio is the median over rounds of that round's ratio. Peaks come from probe
//! loops measured in the same run ([`probes`]).

mod cases;
mod models;
pub mod probes;
mod table;

use std::time::Instant;

pub use probes::{Peak, Peaks};
pub use table::render;

use crate::kernels::isa;
use crate::onnx::OnnxError;
use crate::runtime::RuntimeError;
use crate::tensor::TensorError;

/// An error that stops the benchmark: a kernel, model or runtime that refused its inputs.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// ONNX Runtime failed to load or run a model.
    #[error("benchmark {case}: {source}")]
    Runtime {
        /// The case, e.g. `MatMulInteger 512×512×512`.
        case: String,
        /// The runtime's error.
        source: RuntimeError,
    },
    /// A model could not be serialised.
    #[error("benchmark model {case}: {source}")]
    Onnx {
        /// The case.
        case: String,
        /// The serialiser's error.
        source: OnnxError,
    },
    /// A tensor could not be built.
    #[error("benchmark tensor: {0}")]
    Tensor(#[from] TensorError),
    /// A quench kernel rejected its inputs.
    #[error("benchmark kernel {case}: {message}")]
    Kernel {
        /// The case.
        case: String,
        /// The kernel's error.
        message: String,
    },
    /// Invalid settings.
    #[error("benchmark settings: {0}")]
    Settings(String),
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Threads for quench (a rayon pool) and ONNX Runtime (intra-op).
    pub threads: usize,
    /// Interleaved rounds per shape.
    pub rounds: usize,
    /// Small shapes and short timings (seconds in all), for tests.
    pub quick: bool,
    /// Run only this shape instead of the default (or quick) list.
    pub shape: Option<Shape>,
}

/// A GEMM shape: `C[m×n] = A[m×k] · B[k×n]`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Shape {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Where the shape comes from.
    pub label: &'static str,
}

impl Shape {
    const fn new(m: usize, n: usize, k: usize, label: &'static str) -> Shape {
        Shape { m, n, k, label }
    }

    /// A shape given as `MxNxK` (or `M×N×K`), every dimension at least 1, labelled "custom".
    pub fn parse(text: &str) -> Result<Shape, BenchError> {
        let dims: Vec<usize> = text
            .split(['x', '×'])
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| BenchError::Settings(format!("shape {text:?}: {e}")))?;
        match dims[..] {
            [m, n, k] if m > 0 && n > 0 && k > 0 => Ok(Shape::new(m, n, k, "custom")),
            _ => Err(BenchError::Settings(format!(
                "shape {text:?}: expected MxNxK with three dimensions of at least 1"
            ))),
        }
    }

    /// `M×N×K`.
    pub fn text(&self) -> String {
        format!("{}×{}×{}", self.m, self.n, self.k)
    }

    /// Operations of one call: 2 per multiply-add.
    pub fn ops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// The shapes of a default run: square GEMMs, the bundled MNIST CNN's layers (conv2 as an
/// im2col GEMM, fc1) and single-row GEMVs over LLM-sized weights.
pub const SHAPES: [Shape; 7] = [
    Shape::new(256, 256, 256, "square"),
    Shape::new(512, 512, 512, "square"),
    Shape::new(1024, 1024, 1024, "square"),
    Shape::new(196, 64, 288, "mnist-cnn conv2 (im2col)"),
    Shape::new(1, 128, 3136, "mnist-cnn fc1"),
    Shape::new(1, 4096, 4096, "gemv 4096²"),
    Shape::new(1, 8192, 8192, "gemv 8192²"),
];

/// The shapes of a `--quick` run.
pub const QUICK_SHAPES: [Shape; 2] = [
    Shape::new(24, 40, 96, "small"),
    Shape::new(1, 128, 3136, "mnist-cnn fc1"),
];

/// Operand precision of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 × f32.
    Fp32,
    /// u8 activations × s8 weights, i32 accumulation.
    Int8,
    /// f32 activations × 4-bit block-quantized weights.
    Q4,
    /// 1-bit activations × 1-bit weights.
    Binary,
}

/// One timed case of one shape.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// ONNX op (or quench's equivalent), e.g. `MatMulInteger`.
    pub op: String,
    /// The shape.
    pub shape: Shape,
    /// Operand precision.
    pub precision: Precision,
    /// `quench` or `ort`.
    pub runtime: String,
    /// Kernel that ran (quench's dispatched name, or the ORT op and its settings).
    pub kernel: String,
    /// Median over rounds of the round's best time, seconds.
    pub seconds: Option<f64>,
    /// `2·M·N·K / seconds`, in 10⁹ per second.
    pub gops: Option<f64>,
    /// Median per-round speed-up over ONNX Runtime's fastest case of the same precision.
    pub vs_ort: Option<f64>,
    /// Median per-round speed-up over quench's FP32 kernel on the same shape.
    pub vs_fp32: Option<f64>,
    /// `gops` as a percentage of the compute peak that applies ([`Peaks`]).
    pub pct_peak: Option<f64>,
    /// Weight bytes read per second as a percentage of the DRAM bandwidth peak (what bounds a
    /// GEMV whose weights do not fit in cache).
    pub pct_dram: Option<f64>,
    /// Why a figure is missing, e.g. `ORT has no 1-bit kernel`.
    pub note: Option<String>,
}

/// A whole benchmark run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The instruction set quench's kernels dispatched to.
    pub isa: String,
    /// Threads of both runtimes.
    pub threads: usize,
    /// Rounds per shape.
    pub rounds: usize,
    /// ONNX Runtime's version.
    pub ort_version: String,
    /// The peaks the percentages use.
    pub peaks: Peaks,
    /// One row per case and shape.
    pub rows: Vec<Row>,
}

/// A case ready to time: its row fields and one call of the operation.
pub(crate) struct Case<'a> {
    op: String,
    precision: Precision,
    runtime: &'static str,
    kernel: String,
    /// Bytes of weights one call reads.
    weight_bytes: usize,
    /// Which peak the percentage uses.
    peak: PeakKind,
    call: Box<dyn FnMut() -> Result<(), BenchError> + Send + 'a>,
}

/// Which of [`Peaks`] a case is measured against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PeakKind {
    Fp32,
    Int8Quench,
    Int8Best,
    Binary,
}

impl PeakKind {
    fn of(self, peaks: &Peaks) -> Option<f64> {
        match self {
            PeakKind::Fp32 => peaks.fp32.as_ref(),
            PeakKind::Int8Quench => peaks.int8_quench.as_ref(),
            PeakKind::Int8Best => peaks.int8_best.as_ref(),
            PeakKind::Binary => peaks.binary.as_ref(),
        }
        .map(|p| p.rate)
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    })
}

/// Runs the benchmark: peaks first, then every shape's cases interleaved over `rounds`.
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    if config.threads == 0 || config.rounds == 0 {
        return Err(BenchError::Settings(format!(
            "threads = {} and rounds = {} must both be at least 1",
            config.threads, config.rounds
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| BenchError::Settings(format!("thread pool: {e}")))?;
    let peaks = probes::measure(config.threads, config.quick);
    let one;
    let shapes: &[Shape] = match config.shape {
        Some(shape) => {
            one = [shape];
            &one
        }
        None if config.quick => &QUICK_SHAPES,
        None => &SHAPES,
    };
    let mut rows = Vec::new();
    let mut ort_version = String::new();
    for &shape in shapes {
        let (mut cases, version) = cases::build(shape, config.threads)?;
        ort_version = version;
        let times = pool.install(|| time_cases(&mut cases, config))?;
        rows.extend(summarise(shape, &cases, &times, &peaks));
    }
    Ok(BenchReport {
        isa: isa().name().to_string(),
        threads: config.threads,
        rounds: config.rounds,
        ort_version,
        peaks,
        rows,
    })
}

/// Seconds each case is timed for per round (as best-of-k calls).
fn target_seconds(quick: bool) -> f64 {
    if quick {
        0.002
    } else {
        0.025
    }
}

/// `times[case][round]`: the best of k calls, cases interleaved round by round.
fn time_cases(cases: &mut [Case<'_>], config: &BenchConfig) -> Result<Vec<Vec<f64>>, BenchError> {
    let mut reps = Vec::with_capacity(cases.len());
    for case in cases.iter_mut() {
        (case.call)()?; // warm-up: first-call allocations, page faults, ORT's lazy init
        let t = Instant::now();
        (case.call)()?;
        let once = t.elapsed().as_secs_f64().max(1e-7);
        reps.push(((target_seconds(config.quick) / once).ceil() as usize).clamp(1, 64));
    }
    let mut times = vec![Vec::with_capacity(config.rounds); cases.len()];
    for round in 0..config.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..cases.len()).collect()
        } else {
            (0..cases.len()).rev().collect()
        };
        for c in order {
            let mut best = f64::INFINITY;
            for _ in 0..reps[c] {
                let t = Instant::now();
                (cases[c].call)()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            times[c].push(best);
        }
    }
    Ok(times)
}

/// Rows of one shape from its per-round times.
fn summarise(shape: Shape, cases: &[Case<'_>], times: &[Vec<f64>], peaks: &Peaks) -> Vec<Row> {
    let rounds = times.first().map_or(0, Vec::len);
    let fp32 = cases
        .iter()
        .position(|c| c.runtime == "quench" && c.precision == Precision::Fp32);
    // Per round, ORT's fastest case of each precision.
    let ort_best = |p: Precision, r: usize| {
        cases
            .iter()
            .zip(times)
            .filter(|(c, _)| c.runtime == "ort" && c.precision == p)
            .map(|(_, t)| t[r])
            .reduce(f64::min)
    };
    cases
        .iter()
        .zip(times)
        .map(|(case, t)| {
            let seconds = median(t.clone());
            let gops = seconds.map(|s| shape.ops() / s / 1e9);
            let ratio = |reference: &dyn Fn(usize) -> Option<f64>| {
                median(
                    (0..rounds)
                        .filter_map(|r| Some(reference(r)? / t[r]))
                        .collect(),
                )
            };
            let vs_ort = if case.runtime == "quench" {
                ratio(&|r| ort_best(case.precision, r))
            } else {
                None
            };
            let vs_fp32 = match fp32 {
                Some(f) if case.precision != Precision::Fp32 || case.runtime != "quench" => {
                    ratio(&|r| Some(times[f][r]))
                }
                _ => None,
            };
            let note = (case.precision == Precision::Binary)
                .then(|| "ORT has no 1-bit kernel".to_string());
            Row {
                op: case.op.clone(),
                shape,
                precision: case.precision,
                runtime: case.runtime.to_string(),
                kernel: case.kernel.clone(),
                seconds,
                gops,
                vs_ort,
                vs_fp32,
                pct_peak: gops.zip(case.peak.of(peaks)).map(|(g, p)| 100.0 * g / p),
                pct_dram: seconds
                    .map(|s| 100.0 * case.weight_bytes as f64 / s / 1e9 / peaks.dram.rate),
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Shape;

    #[test]
    fn shapes_parse_from_the_command_line() {
        let s = Shape::parse("64x4096×128").unwrap();
        assert_eq!((s.m, s.n, s.k, s.label), (64, 4096, 128, "custom"));
        for bad in ["", "64x4096", "0x1x1", "1x2x3x4", "ax1x1", "1x-1x1"] {
            assert!(Shape::parse(bad).is_err(), "{bad}");
        }
    }
}
