//! The `quench` command line: a thin layer over the library that parses arguments, calls it, and
//! prints what it returns.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use quench::eval::{Manifest, ManifestFlags, OutputKind};
use quench::graph::Graph;
use quench::measure::latency::{Budget, LatencyConfig};
use quench::measure::machine::MachineInfo;
use quench::measure::power::PowerConfig;
use quench::quant::layer_error::LayerError;
use quench::quant::pipeline::LayerReport;
use quench::runtime::{self, RuntimeKind};
use quench::sweep::cell::{quick_latency, run_cell, CellConfig, Reference};
use quench::sweep::compare::{compare, manifests_in, CompareConfig};
use quench::sweep::model::PreparedModel;
use quench::sweep::record::{LayerRecord, Method, Precision, Record, Status};
use quench::tensor::Tensor;

/// quench: see what quantization does to a model.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// The profile a bare `quench` opens in the terminal UI.
const QUICKSTART: &str = "profiles/quickstart.toml";

#[derive(Subcommand)]
enum Command {
    /// Evaluate and time every model in a folder of manifests on each runtime, and print the
    /// comparison (the bundled default: assets/models).
    Compare(Box<CompareArgs>),
    /// Print a model's inputs, outputs, opset, and per-layer parameters, bytes and MACs.
    Inspect(InspectArgs),
    /// Evaluate one model on its test data and time it: one full record.
    Eval(Box<EvalArgs>),
    /// Run a model on inputs from .npy/.npz/IDX files and write every output as .npy.
    Run(RunArgs),
    /// Time the same cell several times in a row and print the ratio of the medians: how much
    /// two measurements of one thing differ on this machine right now.
    Repeat(RepeatArgs),
    /// Quantize a model (calibrating or training on its calibration split), write it, and print
    /// size, test accuracy on ONNX Runtime, agreement with FP32 and per-layer error.
    Quantize(Box<QuantizeArgs>),
    /// Run a sweep profile (profiles/*.toml): every model × precision × method × runtime ×
    /// threads cell quantized, evaluated and timed, each record appended to OUT/results.jsonl.
    Sweep(SweepArgs),
    /// Run a sweep profile on other machines over ssh at once, each host's results brought
    /// back into OUT/<host>/results.jsonl.
    Remote(RemoteArgs),
    /// Work with results files (results.jsonl).
    Results(ResultsArgs),
    /// Rank the quantizable layers by how much quantizing each alone costs (and how much
    /// keeping each alone in FP32 recovers), on held-out data, with per-layer SQNR.
    Sensitivity(Box<SensitivityArgs>),
    /// Find the per-layer FP32/INT8/4-bit/binary assignment that stays within an accuracy
    /// budget on held-out data and minimises measured size, latency or energy; write it as
    /// ONNX and print the Pareto front of what was tried.
    Search(Box<SearchArgs>),
    /// Run a model on the native engine and on ONNX Runtime with the same inputs, compare every
    /// intermediate tensor, and flag the first layer where the two part.
    Drift(DriftArgs),
    /// Time quench's FP32, INT8, 4-bit and binary kernels against ONNX Runtime on single-op
    /// models of the same shapes, with this machine's peaks measured in the same run.
    Kernels(KernelsArgs),
    /// Turn sweep records (results.jsonl files, from one machine or several) into a report
    /// folder: PNG charts, one self-contained HTML file, CSV and Markdown tables.
    Report(ReportArgs),
    /// Open the terminal UI: run a sweep profile (.toml) live, or browse past results (a
    /// results.jsonl). A bare `quench` opens it on profiles/quickstart.toml.
    Tui(TuiArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// Results files: JSON lines of records (`quench sweep`), or records printed by
    /// `quench eval --json` / `quench compare --json`.
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Folder to write the report into.
    #[arg(long, default_value = "reports/latest")]
    out: PathBuf,
    /// Accuracy budget of the advice: the largest drop below FP32 to accept, in percentage
    /// points.
    #[arg(long, default_value_t = 1.0)]
    budget: f64,
}

#[derive(Args)]
struct TuiArgs {
    /// A sweep profile (.toml; press s to run it), or a results.jsonl of past records.
    target: PathBuf,
    /// Output folder of a profile's sweep (default reports/<profile file name>); a
    /// results.jsonl already there is shown and resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder of trained QAT models shared between sweeps (default OUT/cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Folder the `e` key writes reports to.
    #[arg(long, default_value = "reports")]
    report_dir: PathBuf,
}

#[derive(Args)]
struct SweepArgs {
    /// The profile, e.g. profiles/quickstart.toml.
    profile: PathBuf,
    /// Output folder for results.jsonl, the built variants and the QAT cache (default
    /// reports/<profile file name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the cells an earlier run of the same profile recorded as ok, run the rest.
    #[arg(long)]
    resume: bool,
    /// Line-oriented progress for logs and SSH (also chosen when stdout is not a terminal; the
    /// only mode until the terminal UI lands).
    #[arg(long)]
    headless: bool,
    /// Progress as text lines or as one JSON event per line.
    #[arg(long, value_enum, default_value_t = ProgressArg::Text)]
    progress: ProgressArg,
    /// Folder of trained QAT models shared between sweeps (default OUT/cache).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args)]
struct RemoteArgs {
    /// The profile, e.g. profiles/edge-arm.toml (inside the project folder: the current one).
    profile: PathBuf,
    /// Hosts to run on at once: `host`, `user@host`, `user@host:port` or an ssh config alias.
    #[arg(required = true)]
    hosts: Vec<String>,
    /// Local output folder; each host's results go to OUT/<host>/results.jsonl (default
    /// reports/<profile file name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the sweep each host already started (its ok cells are kept).
    #[arg(long)]
    resume: bool,
    /// An ssh option for every connection, e.g. -o IdentityFile=~/.ssh/board (repeatable).
    #[arg(short = 'o', long = "ssh-option", value_name = "OPTION")]
    ssh_options: Vec<String>,
    /// The quench binary for aarch64 hosts (default: the cross build in the cargo target
    /// folder, target/aarch64-unknown-linux-gnu/release/quench).
    #[arg(long, value_name = "PATH")]
    aarch64_binary: Option<PathBuf>,
    /// An ONNX Runtime library to copy to hosts of its CPU (repeatable; this machine's own is
    /// added when found).
    #[arg(long, value_name = "PATH")]
    ort_lib: Vec<PathBuf>,
    /// Reconnections allowed per host after a dropped connection.
    #[arg(long, default_value_t = 5)]
    retries: usize,
    /// Work dir on each host, relative to its home or absolute (default
    /// .quench-remote/<profile name>-<profile hash>); `{host}` is replaced by the host's name,
    /// for hosts sharing a home folder.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    Text,
    Json,
}

#[derive(Args)]
struct ResultsArgs {
    #[command(subcommand)]
    command: ResultsCommand,
}

#[derive(Subcommand)]
enum ResultsCommand {
    /// Combine results files (e.g. of several machines) into one.
    Merge {
        /// The results files to combine, in order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The combined file.
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct KernelsArgs {
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Threads of quench and of ONNX Runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Interleaved rounds per shape; ratios are medians over rounds.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Small shapes and short timings (a few seconds), for tests and smoke runs.
    #[arg(long)]
    quick: bool,
    /// Run only this GEMM shape, given as MxNxK (e.g. 64x4096x4096).
    #[arg(long)]
    shape: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    Native,
    Ort,
}

impl From<RuntimeArg> for RuntimeKind {
    fn from(r: RuntimeArg) -> RuntimeKind {
        match r {
            RuntimeArg::Native => RuntimeKind::Native,
            RuntimeArg::Ort => RuntimeKind::Ort,
        }
    }
}

/// Timing options shared by the commands that measure.
#[derive(Args, Clone)]
struct TimingArgs {
    /// Compute threads of each runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Batch size of the latency loop.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Batch size of the accuracy pass.
    #[arg(long, default_value_t = 100)]
    eval_batch: usize,
    /// Evaluate only the first N test samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Seconds of timed runs per cell (after warm-up).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Print records as JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// Folder of model manifests (*.toml beside *.onnx).
    #[arg(default_value = "assets/models")]
    dir: PathBuf,
    /// Runtimes to compare (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [RuntimeArg::Native, RuntimeArg::Ort])]
    runtime: Vec<RuntimeArg>,
    #[command(flatten)]
    timing: TimingArgs,
}

#[derive(Args)]
struct InspectArgs {
    /// The .onnx model.
    model: PathBuf,
    /// Batch size for free leading dimensions.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Shape of an input whose dimensions the model leaves free, e.g. x=1x3x48x192.
    #[arg(long, value_parser = parse_shape)]
    shape: Vec<(String, Vec<usize>)>,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

/// Where a model's data is described, when it has no manifest beside it.
#[derive(Args)]
struct DataArgs {
    /// Manifest to use (default: the .toml beside the model, else the flags below).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Samples file (IDX, .npy) for a model without manifest.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Labels file (IDX, .npy); without labels, agreement with the reference is reported.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Graph input that receives the samples.
    #[arg(long)]
    input_name: Option<String>,
    /// Per-sample shape, e.g. 1x28x28.
    #[arg(long)]
    sample_shape: Option<String>,
    /// Multiplier applied to stored values.
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
    /// Per-channel means (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0])]
    mean: Vec<f32>,
    /// Per-channel standard deviations (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1.0])]
    std: Vec<f32>,
    /// The stored sample is grey; copy it into every channel.
    #[arg(long)]
    replicate_channels: bool,
    /// Output to score (default: the first).
    #[arg(long)]
    output_name: Option<String>,
    /// The scored output is already a probability distribution.
    #[arg(long)]
    probabilities: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// The .onnx model (the FP32 model of a manifest, or a variant of it).
    model: PathBuf,
    /// Runtime to run it on.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Native)]
    runtime: RuntimeArg,
    /// Reference model for top-1 agreement and KL (default: the manifest's FP32 model when the
    /// data has no labels or MODEL is not that model); it runs on ONNX Runtime when available.
    #[arg(long)]
    reference: Option<PathBuf>,
    #[command(flatten)]
    variant: VariantArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    timing: TimingArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The .onnx model.
    model: PathBuf,
    /// An input as NAME=FILE (a .npy or IDX file holding the whole tensor); repeat per input.
    #[arg(long, value_parser = parse_input, required = true)]
    input: Vec<(String, PathBuf)>,
    /// Runtime to run it on.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Native)]
    runtime: RuntimeArg,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Folder the outputs are written to, one NAME.npy per output.
    #[arg(short, long, default_value = ".")]
    out: PathBuf,
}

#[derive(Args)]
struct RepeatArgs {
    /// The .onnx model (with a manifest beside it, or --manifest).
    model: PathBuf,
    /// Manifest giving the model's data (default: the .toml beside the model).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Runtime to run it on.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Native)]
    runtime: RuntimeArg,
    /// Times to measure.
    #[arg(long, default_value_t = 2)]
    times: usize,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds of timed runs per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

#[derive(Args)]
struct QuantizeArgs {
    /// The FP32 .onnx model (with a manifest beside it, or --manifest).
    model: PathBuf,
    /// Manifest giving the model's data (default: the .toml beside the model).
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    variant: VariantArgs,
    /// Evaluate on the first N test samples only.
    #[arg(long)]
    limit: Option<usize>,
    /// Output model (default: <model stem>.<precision>-<method>.onnx here).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The quantized variant to make: the same options for `quench quantize` and `quench eval`.
#[derive(Args)]
struct VariantArgs {
    /// Target precision of Conv/Gemm/MatMul layers (required by quantize; with eval, the
    /// variant is made first and evaluated instead of MODEL itself).
    #[arg(long, value_enum)]
    precision: Option<QuantPrecisionArg>,
    /// int8: static (default), dynamic, qat; int4: weight-only (default), qat; binary: static
    /// (default, INT8 activations), qat.
    #[arg(long, value_enum)]
    method: Option<QuantMethodArg>,
    /// Activation range rule of --method static (default minmax).
    #[arg(long, value_enum)]
    calibrator: Option<CalibratorArg>,
    /// Share of the histogram --calibrator percentile keeps, in (0, 100] (default 99.999).
    #[arg(long)]
    percentile: Option<f64>,
    /// One INT8 weight scale per tensor instead of per output channel (int8 static).
    #[arg(long)]
    per_tensor: bool,
    /// 4-bit group size: 32 (default), 64 or 128.
    #[arg(long)]
    group: Option<usize>,
    /// Activations of binary layers: int8 (default; calibrated QDQ) or binary (Sign, run on
    /// the XNOR-popcount kernel; --method static only).
    #[arg(long, value_enum)]
    binary_acts: Option<BinaryActsArg>,
    /// Calibration samples (default 1000), or QAT training samples (default: the whole split).
    #[arg(long)]
    calib_samples: Option<usize>,
    /// Runtime that runs the FP32 model while --method static calibrates its ranges: quench's
    /// own engine (default; needs no ONNX Runtime) or ONNX Runtime.
    #[arg(long, value_enum, default_value = "native")]
    calibrate_on: CalibrateOnArg,
    /// QAT epochs (default 1).
    #[arg(long)]
    epochs: Option<usize>,
    /// int8 static: correct each layer's bias for the mean shift quantization causes in the
    /// layer's output, measured on the calibration samples layer after layer (off by default:
    /// it helps some model/calibrator pairs and hurts others; see the README).
    #[arg(long)]
    bias_correction: bool,
}

impl VariantArgs {
    /// The quantizer's settings for `model`, or `None` without `--precision`.
    fn config(
        &self,
        model: &Path,
        manifest: Manifest,
        limit: Option<usize>,
        out: Option<PathBuf>,
    ) -> Option<quench::quant::pipeline::QuantizeConfig> {
        use quench::quant::pipeline::{self as qp, Target};
        let precision: Target = self.precision?.into();
        let method = self.method.map(Into::into);
        let out = out.unwrap_or_else(|| {
            qp::default_output(
                model,
                precision,
                method.unwrap_or(precision.default_method()),
            )
        });
        Some(qp::QuantizeConfig {
            model: model.to_path_buf(),
            manifest,
            precision,
            method,
            calibrator: self.calibrator.map(Into::into),
            percentile: self.percentile,
            per_tensor: self.per_tensor,
            group: self.group,
            binary_acts: self.binary_acts.map(Into::into),
            calib_samples: self.calib_samples,
            calibrate_on: self.calibrate_on.into(),
            epochs: self.epochs,
            bias_correction: self.bias_correction,
            limit,
            out,
        })
    }
}

/// QAT progress on stderr.
fn print_qat(e: &quench::quant::qat::QatEvent) {
    use quench::quant::qat::QatEvent;
    match e {
        QatEvent::Started {
            total_steps,
            samples,
            parameters,
            ..
        } => eprintln!("qat: {samples} samples, {total_steps} steps, {parameters} parameters"),
        QatEvent::Step(r) if r.step % 50 == 0 => eprintln!(
            "qat: step {} epoch {} loss {:.4} lr {:.2e}",
            r.step, r.epoch, r.loss, r.lr
        ),
        QatEvent::Epoch {
            epoch,
            loss,
            accuracy,
            elapsed,
        } => eprintln!(
            "qat: epoch {epoch} done: loss {loss:.4}, train accuracy {}, {:.1} s",
            accuracy.map_or("-".into(), |a| format!("{:.2}%", a * 100.0)),
            elapsed.as_secs_f64()
        ),
        _ => {}
    }
}

/// What the exploration commands share: the model, its data, calibration and held-out samples.
#[derive(Args)]
struct ExploreArgs {
    /// The FP32 .onnx model (with a manifest beside it, or --manifest).
    model: PathBuf,
    /// Manifest giving the model's data (default: the .toml beside the model).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Activation range rule (default minmax); ranges are calibrated once for every variant.
    #[arg(long, value_enum)]
    calibrator: Option<CalibratorArg>,
    /// Calibration-split samples the ranges are found on.
    #[arg(long, default_value_t = quench::quant::pipeline::DEFAULT_CALIB_SAMPLES)]
    calib_samples: usize,
    /// Held-out (validation) samples each variant is scored on (default 2000, at most the split).
    #[arg(long)]
    samples: Option<usize>,
    /// Seed choosing the held-out samples when fewer than the split holds are used.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Variants scored in parallel (default: one per core; capped by available memory).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SensitivityArgs {
    #[command(flatten)]
    explore: ExploreArgs,
    /// Precision each layer is tried at.
    #[arg(long, value_enum)]
    precision: QuantPrecisionArg,
    /// int8: static (default) or dynamic; int4: weight-only; binary: static.
    #[arg(long, value_enum)]
    method: Option<QuantMethodArg>,
    /// Skip the every-layer-but-this-one variants (halves the work).
    #[arg(long)]
    no_all_but: bool,
}

#[derive(Args)]
struct SearchArgs {
    #[command(flatten)]
    explore: ExploreArgs,
    /// Largest held-out accuracy drop in percentage points, e.g. 0.5% (without labels: top-1
    /// disagreement with FP32).
    #[arg(long, value_parser = quench::explore::spec::parse_budget)]
    budget: f64,
    /// What to minimise, measured.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Size)]
    objective: ObjectiveArg,
    /// Stop after this long, e.g. 90s, 10m, 1h (the best model so far is already written).
    #[arg(long, value_parser = quench::explore::spec::parse_duration)]
    time_budget: Option<std::time::Duration>,
    /// Levels a layer may take (FP32 is always allowed).
    #[arg(long, value_delimiter = ',', value_parser = parse_level, default_value = "int8,int4,binary")]
    levels: Vec<quench::explore::Level>,
    /// Runtime latency/energy are timed on (auto: native when it runs every level, else ORT).
    #[arg(long, value_enum, default_value_t = SearchRuntimeArg::Auto)]
    runtime: SearchRuntimeArg,
    /// Compute threads of the timed runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Batch size of the timed runs.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Interleaved FP32/candidate timing rounds per candidate.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Score the chosen model on the first N test samples only.
    #[arg(long)]
    limit: Option<usize>,
    /// Output model (default: <model stem>.search-<objective>.onnx here); holds the best model
    /// so far while the search runs.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct DriftArgs {
    /// The .onnx model (FP32 or quantized).
    model: PathBuf,
    /// Manifest giving the data (default: the .toml beside the model); its validation split is
    /// used, else calibration, else test.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Samples in the compared batch.
    #[arg(long, default_value_t = 8)]
    samples: usize,
    /// SQNR (dB) of native against ORT below which a tensor counts as parted.
    #[arg(long, default_value_t = quench::explore::drift::DEFAULT_THRESHOLD_DB)]
    threshold_db: f64,
    /// Compute threads of both runtimes.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// In a quantized model, also compare the f32 tensors inside layers (this stops the
    /// runtimes fusing those layers into integer kernels).
    #[arg(long)]
    all_tensors: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ObjectiveArg {
    Size,
    Latency,
    Energy,
}

#[derive(Clone, Copy, ValueEnum)]
enum SearchRuntimeArg {
    Auto,
    Native,
    Ort,
}

fn parse_level(text: &str) -> Result<quench::explore::Level, String> {
    quench::explore::Level::parse(text)
        .ok_or_else(|| format!("`{text}` is not a level (fp32, int8, int4, binary)"))
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantPrecisionArg {
    Int8,
    Int4,
    Binary,
}

#[derive(Clone, Copy, ValueEnum)]
enum BinaryActsArg {
    Int8,
    Binary,
}

impl From<BinaryActsArg> for quench::quant::pipeline::BinaryInput {
    fn from(a: BinaryActsArg) -> Self {
        use quench::quant::pipeline::BinaryInput;
        match a {
            BinaryActsArg::Int8 => BinaryInput::Int8,
            BinaryActsArg::Binary => BinaryInput::Binary,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantMethodArg {
    Dynamic,
    Static,
    WeightOnly,
    Qat,
}

#[derive(Clone, Copy, ValueEnum)]
enum CalibrateOnArg {
    Native,
    Ort,
}

impl From<CalibrateOnArg> for quench::quant::pipeline::CalibrateOn {
    fn from(c: CalibrateOnArg) -> Self {
        match c {
            CalibrateOnArg::Native => Self::Native,
            CalibrateOnArg::Ort => Self::Ort,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum CalibratorArg {
    Minmax,
    Percentile,
    Entropy,
    Mse,
}

fn parse_dims(text: &str) -> Result<Vec<usize>, String> {
    text.split(['x', ','])
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{d}` in `{text}` is not a dimension"))
        })
        .collect()
}

fn parse_shape(text: &str) -> Result<(String, Vec<usize>), String> {
    let (name, dims) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=DxDxD"))?;
    Ok((name.to_string(), parse_dims(dims)?))
}

fn parse_input(text: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=FILE"))?;
    Ok((name.to_string(), PathBuf::from(file)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return bare();
    };
    let result = match command {
        Command::Compare(args) => cmd_compare(*args),
        Command::Inspect(args) => cmd_inspect(args),
        Command::Eval(args) => cmd_eval(*args),
        Command::Run(args) => cmd_run(args),
        Command::Repeat(args) => cmd_repeat(args),
        Command::Quantize(args) => cmd_quantize(*args),
        Command::Kernels(args) => cmd_kernels(args),
        Command::Sensitivity(args) => cmd_sensitivity(*args),
        Command::Search(args) => cmd_search(*args),
        Command::Drift(args) => cmd_drift(args),
        Command::Tui(args) => cmd_tui(args),
        Command::Sweep(args) => cmd_sweep(args),
        Command::Remote(args) => cmd_remote(args),
        Command::Results(args) => cmd_results(args),
        Command::Report(args) => cmd_report(args),
    };
    finish(result)
}

/// The exit code of a command, its error printed.
fn finish(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Timing rules with a timed loop of `seconds`.
fn latency_config(seconds: f64) -> Result<LatencyConfig> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be a positive number, not {seconds}");
    }
    let mut latency = quick_latency();
    if let Budget::Time { time, .. } = &mut latency.budget {
        *time = std::time::Duration::from_secs_f64(seconds);
    }
    Ok(latency)
}

/// Cell settings from the command line.
fn cell_config(runtime: RuntimeKind, t: &TimingArgs) -> Result<CellConfig> {
    if t.threads == 0 || t.batch == 0 || t.eval_batch == 0 {
        bail!("--threads, --batch and --eval-batch must be at least 1");
    }
    let latency = latency_config(t.seconds)?;
    Ok(CellConfig {
        runtime,
        threads: t.threads,
        batch: t.batch,
        eval_batch: t.eval_batch,
        latency,
        power: PowerConfig::new("/"),
    })
}

/// The machine description, with the ONNX Runtime version when its library loads.
fn machine(threads: usize) -> MachineInfo {
    let ort_version = runtime::ort::ort_library().ok().map(|l| l.version.clone());
    MachineInfo::collect(Path::new("/"), threads, ort_version)
}

/// This process's command line, shell-quoted, for the `command` field of the records it prints.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        // The program as a person types it, not the path it was started by.
        .map(|(i, a)| if i == 0 { "quench".to_string() } else { a })
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a record as it arrives: a JSON line (with this command line in it), or a one-line
/// progress note for the table view.
fn print_progress(record: &Record, json: bool) {
    if json {
        let record = Record {
            command: Some(command_line()),
            ..record.clone()
        };
        match serde_json::to_string(&record) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("quench: cannot serialise a record: {e}"),
        }
    } else {
        let state = match record.status.detail() {
            Some(detail) => format!("{}: {detail}", record.status.word()),
            None => record.status.word().to_string(),
        };
        eprintln!("  {} on {}: {state}", record.key.model, record.key.runtime);
    }
}

fn exit_for(records: &[Record]) -> ExitCode {
    if records
        .iter()
        .any(|r| matches!(r.status, Status::Failed { .. }))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn cmd_compare(args: CompareArgs) -> Result<ExitCode> {
    let manifests = manifests_in(&args.dir)?;
    let runtimes: Vec<RuntimeKind> = args.runtime.iter().map(|&r| r.into()).collect();
    let config = CompareConfig {
        runtimes,
        limit: args.timing.limit,
        cell: cell_config(RuntimeKind::Native, &args.timing)?,
    };
    let machine = machine(args.timing.threads);
    if !args.timing.json {
        eprintln!(
            "quench compare: {} model(s) in {} on {}, {} thread(s), CPU {} ({} kernels)",
            manifests.len(),
            args.dir.display(),
            config
                .runtimes
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(" and "),
            args.timing.threads,
            machine.cpu_model.as_deref().unwrap_or("unknown"),
            machine.kernel_isa.name(),
        );
    }
    let json = args.timing.json;
    let records = compare(&manifests, &config, &machine, &mut |r| {
        print_progress(r, json)
    });
    if !json {
        print!("{}", quench::report::table::records(&records));
    }
    Ok(exit_for(&records))
}

fn cmd_inspect(args: InspectArgs) -> Result<ExitCode> {
    let graph = quench::onnx::load(&args.model)?;
    let mut known = args.shape.clone();
    if let Some(manifest) = manifest_beside(&args.model)? {
        if !known.iter().any(|(n, _)| *n == manifest.input.name) {
            known.push(manifest.input.at_batch(args.batch));
        }
    }
    let (folded, types) = quench::engine::fold_and_infer(&graph, args.batch, &known)?;
    let stats = quench::graph::stats::stats(&folded, &types)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "model: {}  (graph `{}`, opset {})",
        args.model.display(),
        graph.name,
        graph.opset
    );
    for (domain, version) in &graph.extra_opsets {
        println!("opset {domain}: {version}");
    }
    for input in &graph.inputs {
        let shape = types.get(&input.name).map(|t| t.shape.as_slice());
        println!(
            "input  {}: {} {:?}",
            input.name,
            input.dtype,
            shape.unwrap_or_default()
        );
    }
    for out in &graph.outputs {
        let shape = types
            .get(&out.name)
            .map(|t| format!("{:?}", t.shape))
            .unwrap_or_default();
        println!("output {}: {} {shape}", out.name, out.dtype);
    }
    let mut ops: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &folded.nodes {
        *ops.entry(n.op_type.as_str()).or_default() += 1;
    }
    let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op}×{n}")).collect();
    println!("ops: {}\n", ops.join(", "));
    print!("{}", quench::report::table::layers(&stats));
    Ok(ExitCode::SUCCESS)
}

/// The manifest beside a model (`model.onnx` → `model.toml`), if there is one.
fn manifest_beside(model: &Path) -> Result<Option<Manifest>> {
    let path = model.with_extension("toml");
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(Manifest::load(&path)?))
}

/// The manifest for `eval`: `--manifest`, the one beside the model, or one built from flags.
fn eval_manifest(model: &Path, data: &DataArgs) -> Result<Manifest> {
    if let Some(path) = &data.manifest {
        return Ok(Manifest::load(path)?);
    }
    if data.samples.is_none() {
        return manifest_beside(model)?.ok_or_else(|| {
            anyhow!(
                "{}: no manifest beside the model; give --manifest FILE, or --samples FILE \
                 --input-name NAME --sample-shape DxD [--labels FILE --scale --mean --std]",
                model.display()
            )
        });
    }
    let need = |what: &str| anyhow!("--samples needs {what} too");
    Ok(Manifest::from_flags(ManifestFlags {
        model: model.to_path_buf(),
        input_name: data
            .input_name
            .clone()
            .ok_or_else(|| need("--input-name"))?,
        sample_shape: parse_dims(
            data.sample_shape
                .as_deref()
                .ok_or_else(|| need("--sample-shape"))?,
        )
        .map_err(|e| anyhow!("--sample-shape: {e}"))?,
        scale: data.scale,
        mean: data.mean.clone(),
        std: data.std.clone(),
        replicate_channels: data.replicate_channels,
        samples: data.samples.clone().ok_or_else(|| need("--samples"))?,
        labels: data.labels.clone(),
        output_name: data.output_name.clone(),
        output_kind: if data.probabilities {
            OutputKind::Probabilities
        } else {
            OutputKind::Logits
        },
    })?)
}

/// The variant `quench eval --precision …` makes and evaluates instead of MODEL.
struct EvalVariant {
    /// Temporary folder holding the variant (removed when dropped).
    dir: PathBuf,
    path: PathBuf,
    precision: Precision,
    method: Method,
    calibrator: Option<String>,
    group: Option<usize>,
    layers: Vec<quench::quant::pipeline::LayerReport>,
}

impl Drop for EvalVariant {
    fn drop(&mut self) {
        // Best effort: a leftover temporary file is harmless.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A quantization target as a record's precision.
fn record_precision(target: quench::quant::pipeline::Target) -> Precision {
    use quench::quant::pipeline::Target;
    match target {
        Target::Int8 => Precision::Int8,
        Target::Int4 => Precision::Int4,
        Target::Binary => Precision::Binary,
    }
}

/// A quantization method as a record's method.
fn record_method(method: quench::quant::pipeline::Method) -> Method {
    use quench::quant::pipeline::Method as Q;
    match method {
        Q::Dynamic => Method::Dynamic,
        Q::Static => Method::Static,
        Q::WeightOnly => Method::WeightOnly,
        Q::Qat => Method::Qat,
    }
}

/// The variant a model file given to `quench eval` already is (FP32 when it holds no quantized
/// operator), read from the graph the run parsed (`ran`, on the native engine) or else from the
/// file; an unreadable file is left for the run to report.
fn file_variant(ran: Option<&Graph>, model: &Path) -> (Precision, Method) {
    let loaded = ran
        .is_none()
        .then(|| quench::onnx::load(model).ok())
        .flatten();
    ran.or(loaded.as_ref())
        .and_then(quench::quant::detect::detect)
        .map_or((Precision::Fp32, Method::None), |d| {
            (record_precision(d.target), record_method(d.method))
        })
}

/// Builds the variant `args` asks for (into a temporary folder), or `None` without
/// `--precision`.
fn eval_variant(args: &EvalArgs, manifest: &Manifest) -> Result<Option<EvalVariant>> {
    use quench::quant::pipeline::{self as qp, CalibratorKind, Target};
    let dir = std::env::temp_dir().join(format!("quench-eval-{}", std::process::id()));
    let Some(mut config) = args
        .variant
        .config(&args.model, manifest.clone(), None, None)
    else {
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = config
        .out
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    config.out = dir.join(name);
    let mut variant = EvalVariant {
        dir,
        path: config.out.clone(),
        precision: record_precision(config.precision),
        method: Method::None,
        calibrator: None,
        group: None,
        layers: Vec::new(),
    };
    let built = qp::build(&config, None, &mut print_qat)?;
    variant.method = record_method(built.method);
    // Binary (Sign) activations are not calibrated: no calibrator in the label.
    let sign_acts = config.binary_acts == Some(qp::BinaryInput::Binary);
    if built.method == qp::Method::Static && !sign_acts {
        let c = config.calibrator.unwrap_or(CalibratorKind::MinMax);
        variant.calibrator = Some(c.name().to_string());
    }
    if config.precision == Target::Int4 {
        variant.group = Some(config.group.unwrap_or(32));
    }
    variant.layers = built.layers;
    Ok(Some(variant))
}

fn cmd_eval(args: EvalArgs) -> Result<ExitCode> {
    let manifest = eval_manifest(&args.model, &args.data)?;
    let variant = eval_variant(&args, &manifest)?;
    let model = variant
        .as_ref()
        .map_or(args.model.clone(), |v| v.path.clone());
    let fp32 = manifest.model.file.clone();
    let prepared = PreparedModel::load(manifest, args.timing.limit).map_err(|e| anyhow!(e))?;
    let runtime: RuntimeKind = args.runtime.into();
    let mut config = cell_config(runtime, &args.timing)?;
    config.power.op_counts = prepared.op_counts;
    let machine = machine(args.timing.threads);

    let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let reference_path = match &args.reference {
        Some(p) => Some(p.clone()),
        None if prepared.dataset.labels().is_none() || !same_file(&model, &fp32) => Some(fp32),
        None => None,
    };
    let reference_outputs = match &reference_path {
        Some(path) => Some(
            prepared
                .reference(path, &config, &machine)
                .map_err(|e| anyhow!(e))?,
        ),
        None => None,
    };
    let reference = reference_outputs
        .as_ref()
        .map(|(label, outputs)| Reference {
            label: label.clone(),
            outputs,
        });
    // A file's own variant is read after the run, from the graph the run parsed.
    let (precision, method) = variant
        .as_ref()
        .map_or((Precision::Fp32, Method::None), |v| (v.precision, v.method));
    let subject = prepared.subject(&model, precision, method);
    let outcome = run_cell(&subject, &config, reference.as_ref(), &machine);
    let mut record = Record {
        command: Some(command_line()),
        ..outcome.record
    };
    match &variant {
        Some(v) => {
            record.key.calibrator = v.calibrator.clone();
            record.key.group = v.group;
            record.layers = LayerRecord::all_measured_on(&v.layers, runtime);
        }
        None => {
            (record.key.precision, record.key.method) =
                file_variant(outcome.graph.as_ref(), &model);
        }
    }
    if args.timing.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print!(
            "{}",
            quench::report::table::records(std::slice::from_ref(&record))
        );
        if let Some(a) = record.quality.as_ref().and_then(|q| q.agreement.as_ref()) {
            println!(
                "agreement with {}: top-1 {:.2}%, KL {:.2e} nats, max |Δ| {:.3e}",
                a.reference,
                a.top1 * 100.0,
                a.kl,
                a.max_abs_diff
            );
        }
    }
    Ok(exit_for(std::slice::from_ref(&record)))
}

fn cmd_run(args: RunArgs) -> Result<ExitCode> {
    let mut inputs = Vec::new();
    for (name, file) in &args.input {
        let tensor =
            quench::eval::read::load_tensor(file).with_context(|| format!("input `{name}`"))?;
        inputs.push((name.clone(), tensor));
    }
    let mut rt = runtime::open(args.runtime.into(), &args.model, args.threads)?;
    let refs: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let outputs = rt.run(&refs)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, tensor) in rt.output_names().iter().zip(&outputs) {
        let file_name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = args.out.join(format!("{file_name}.npy"));
        quench::eval::npy::write_npy(&path, tensor)?;
        println!(
            "{} {:?} {} -> {}",
            name,
            tensor.shape(),
            tensor.dtype(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_repeat(args: RepeatArgs) -> Result<ExitCode> {
    if args.times < 2 || args.threads == 0 || args.batch == 0 {
        bail!("--times must be at least 2, --threads and --batch at least 1");
    }
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => manifest_beside(&args.model)?.ok_or_else(|| {
            anyhow!(
                "{}: no manifest beside the model; give --manifest FILE",
                args.model.display()
            )
        })?,
    };
    let latency = latency_config(args.seconds)?;
    let prepared = PreparedModel::load(manifest, Some(args.batch)).map_err(|e| anyhow!(e))?;
    let subject = prepared.subject(&args.model, Precision::Fp32, Method::None);
    let runtime: RuntimeKind = args.runtime.into();
    let runs = quench::sweep::repeat::repeat_latency(
        &subject,
        runtime,
        args.threads,
        args.batch,
        &latency,
        args.times,
    )
    .map_err(|e| anyhow!(e))?;
    let ratios = quench::sweep::repeat::median_ratios(&runs);
    let mut table = quench::report::table::Table::new([
        "run",
        "runs",
        "p50",
        "p90",
        "CI95",
        "CPU share",
        "noisy",
        "p50 / first",
    ]);
    for (i, (r, ratio)) in runs.iter().zip(&ratios).enumerate() {
        let s = &r.latency_ms;
        table.row([
            (i + 1).to_string(),
            r.runs.to_string(),
            quench::report::table::duration_ms(s.p50),
            quench::report::table::duration_ms(s.p90),
            format!("±{:.1}%", s.ci_half_width * 100.0),
            r.cpu_share
                .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
            if s.noisy { "yes".into() } else { "no".into() },
            format!("{ratio:.3}"),
        ]);
    }
    println!(
        "{} on {runtime}, {} thread(s), batch {}:",
        prepared.name(),
        args.threads,
        args.batch
    );
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// `--manifest`, else the manifest beside the model.
fn model_manifest(model: &Path, manifest: Option<&Path>) -> Result<Manifest> {
    match manifest {
        Some(path) => Ok(Manifest::load(path)?),
        None => manifest_beside(model)?.ok_or_else(|| {
            anyhow!(
                "{}: no manifest beside the model; give --manifest FILE",
                model.display()
            )
        }),
    }
}

impl From<QuantPrecisionArg> for quench::quant::pipeline::Target {
    fn from(p: QuantPrecisionArg) -> Self {
        use quench::quant::pipeline::Target;
        match p {
            QuantPrecisionArg::Int8 => Target::Int8,
            QuantPrecisionArg::Int4 => Target::Int4,
            QuantPrecisionArg::Binary => Target::Binary,
        }
    }
}

impl From<QuantMethodArg> for quench::quant::pipeline::Method {
    fn from(m: QuantMethodArg) -> Self {
        use quench::quant::pipeline::Method as M;
        match m {
            QuantMethodArg::Dynamic => M::Dynamic,
            QuantMethodArg::Static => M::Static,
            QuantMethodArg::WeightOnly => M::WeightOnly,
            QuantMethodArg::Qat => M::Qat,
        }
    }
}

impl From<CalibratorArg> for quench::quant::pipeline::CalibratorKind {
    fn from(c: CalibratorArg) -> Self {
        use quench::quant::pipeline::CalibratorKind;
        match c {
            CalibratorArg::Minmax => CalibratorKind::MinMax,
            CalibratorArg::Percentile => CalibratorKind::Percentile,
            CalibratorArg::Entropy => CalibratorKind::Entropy,
            CalibratorArg::Mse => CalibratorKind::Mse,
        }
    }
}

/// Prints exploration progress on stderr.
fn print_explore_event(e: &quench::explore::ExploreEvent) {
    use quench::explore::ExploreEvent as E;
    match e {
        E::Step { message } => eprintln!("{message}"),
        E::LayersStarted {
            total,
            layers,
            samples,
        } => eprintln!("{total} variants of {layers} layers, {samples} held-out samples each"),
        E::LayerScored {
            done,
            total,
            layer,
            variant,
            drop,
        } => eprintln!(
            "[{done}/{total}] {layer} {variant}: {} pts",
            quench::report::explore::drop_points(*drop)
        ),
        E::CandidateTried {
            index,
            assignment,
            drop,
            feasible,
            objective,
        } => eprintln!(
            "#{index} {assignment}: {} pts{}{}",
            quench::report::explore::drop_points(*drop),
            if *feasible { "" } else { " (over budget)" },
            objective.map_or(String::new(), |o| format!(", objective {o:.4}"))
        ),
        E::NewBest {
            index,
            path,
            objective,
        } => eprintln!("best so far: #{index} (objective {objective:.4}) written to {path}"),
        E::Warning { message } => eprintln!("warning: {message}"),
    }
}

impl ExploreArgs {
    /// How the exploration prepares, from these flags.
    fn setup_spec(&self) -> quench::explore::spec::SetupSpec {
        quench::explore::spec::SetupSpec {
            calibrator: self
                .calibrator
                .map_or(quench::quant::pipeline::CalibratorKind::MinMax, Into::into),
            calib_samples: self.calib_samples,
            samples: self.samples,
            seed: self.seed,
        }
    }

    /// The prepared setup of the model these flags name.
    fn setup(&self) -> Result<quench::explore::Setup> {
        let manifest = model_manifest(&self.model, self.manifest.as_deref())?;
        let config = self.setup_spec().config(&self.model, manifest);
        Ok(quench::explore::Setup::prepare(&config, &|m| {
            eprintln!("{m}")
        })?)
    }

    /// Prints `report` as JSON with `--json`, else as `text` renders it.
    fn print<R: serde::Serialize>(&self, report: &R, text: fn(&R) -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            print!("{}", text(report));
        }
        Ok(())
    }
}

impl SearchArgs {
    /// The search these flags ask for.
    fn spec(&self) -> quench::explore::spec::SearchSpec {
        use quench::explore::objective::Objective;
        use quench::explore::search::RuntimeChoice;
        quench::explore::spec::SearchSpec {
            budget: self.budget,
            objective: match self.objective {
                ObjectiveArg::Size => Objective::Size,
                ObjectiveArg::Latency => Objective::Latency,
                ObjectiveArg::Energy => Objective::Energy,
            },
            time_budget: self.time_budget,
            levels: self.levels.clone(),
            runtime: match self.runtime {
                SearchRuntimeArg::Auto => RuntimeChoice::Auto,
                SearchRuntimeArg::Native => RuntimeChoice::Fixed(RuntimeKind::Native),
                SearchRuntimeArg::Ort => RuntimeChoice::Fixed(RuntimeKind::Ort),
            },
            threads: self.threads,
            batch: self.batch,
            rounds: self.rounds,
            jobs: self.explore.jobs,
            test_limit: self.limit,
            setup: self.explore.setup_spec(),
        }
    }
}

fn cmd_sensitivity(args: SensitivityArgs) -> Result<ExitCode> {
    use quench::explore::sensitivity::{self, SensitivityConfig};
    let setup = args.explore.setup()?;
    let (precision, label) = sensitivity::precision_for(
        args.precision.into(),
        args.method.map(Into::into),
        setup.calibration,
    )?;
    let config = SensitivityConfig {
        precision,
        label,
        all_but: !args.no_all_but,
        jobs: args.explore.jobs,
    };
    let report = sensitivity::run(&setup, &config, &print_explore_event)?;
    args.explore
        .print(&report, quench::report::explore::sensitivity)?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_search(args: SearchArgs) -> Result<ExitCode> {
    let spec = args.spec();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| spec.default_out(Path::new(""), &args.explore.model));
    let setup = args.explore.setup()?;
    let report = quench::explore::search::run(&setup, &spec.config(out), &print_explore_event)?;
    args.explore
        .print(&report, quench::report::explore::search)?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_drift(args: DriftArgs) -> Result<ExitCode> {
    let manifest = model_manifest(&args.model, args.manifest.as_deref())?;
    let d = &manifest.data;
    let split = d
        .validation
        .as_ref()
        .or(d.calibration.as_ref())
        .unwrap_or(&d.test);
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let data = quench::eval::Dataset::load(split, &manifest.input, Some(args.samples))?;
    let batch = data.batch(0..data.len())?;
    let graph = quench::onnx::load(&args.model)?;
    let report = quench::explore::drift::drift(
        &graph,
        data.input_name(),
        &batch,
        args.threads,
        args.threshold_db,
        args.all_tensors,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", quench::report::explore::drift(&report));
    }
    Ok(if report.first_parting.is_some() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_quantize(args: QuantizeArgs) -> Result<ExitCode> {
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => manifest_beside(&args.model)?.ok_or_else(|| {
            anyhow!(
                "{}: no manifest beside the model; give --manifest FILE",
                args.model.display()
            )
        })?,
    };
    let config = args
        .variant
        .config(&args.model, manifest, args.limit, args.out.clone())
        .ok_or_else(|| anyhow!("--precision int8|int4|binary is required"))?;
    let s = quench::quant::pipeline::run(&config, &mut print_qat)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let pct = |a: Option<f64>| a.map_or("-".into(), |a| format!("{:.2}%", a * 100.0));
    println!(
        "{} -> {} ({} {})",
        s.model.display(),
        s.output.display(),
        s.precision.name(),
        s.method.name()
    );
    println!("ranges: {}", s.ranges);
    if let Some(q) = &s.qat {
        println!(
            "qat: {} samples, {} epoch(s), {} steps, {:.1} s",
            q.samples, q.epochs, q.steps, q.seconds
        );
    }
    println!(
        "size: {} -> {} bytes ({:.2}x smaller)",
        s.size.fp32_bytes,
        s.size.quantized_bytes,
        s.size.fp32_bytes as f64 / s.size.quantized_bytes.max(1) as f64
    );
    println!(
        "test ({} samples, ONNX Runtime): fp32 {}, quantized {}; top-1 agreement {:.2}%, KL {:.2e} nats",
        s.test.samples,
        pct(s.test.fp32_accuracy),
        pct(s.test.quantized_accuracy),
        s.test.top1_agreement * 100.0,
        s.test.kl
    );
    println!("native: {}", s.native);
    println!(
        "per-layer error vs FP32 ({} calibration samples, errors accumulate{}):",
        s.layer_samples,
        if s.qat.is_some() {
            "; includes the drift of the trained weights"
        } else {
            ""
        }
    );
    let mut table = quench::report::table::Table::new([
        "layer",
        "op",
        "precision",
        "tensor",
        "SQNR dB ort",
        "native",
        "cosine ort",
        "native",
    ]);
    let native =
        |l: &LayerReport, f: fn(&LayerError) -> String| l.native.as_ref().map_or("-".into(), f);
    for l in &s.layers {
        table.row([
            l.layer.clone(),
            l.op_type.clone(),
            l.precision.clone(),
            l.tensor.clone(),
            format!("{:.1}", l.ort.sqnr_db),
            native(l, |e| format!("{:.1}", e.sqnr_db)),
            format!("{:.5}", l.ort.cosine),
            native(l, |e| format!("{:.5}", e.cosine)),
        ]);
    }
    print!("{}", table.render());
    if let Some(why) = &s.native_layer_failure {
        println!("native per-layer error not measured: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_kernels(args: KernelsArgs) -> Result<ExitCode> {
    let config = quench::bench::BenchConfig {
        threads: args.threads,
        rounds: args.rounds,
        quick: args.quick,
        shape: args
            .shape
            .as_deref()
            .map(quench::bench::Shape::parse)
            .transpose()?,
    };
    let report = quench::bench::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", quench::bench::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_sweep(args: SweepArgs) -> Result<ExitCode> {
    use quench::sweep::event::Event;
    use quench::sweep::headless::{json_line, Printer};
    use quench::sweep::runner::{run_profile, RunOptions};
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    if !args.headless && std::io::stdout().is_terminal() {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| default_out(&args.profile));
        let live = LiveArgs {
            out,
            cache: args.cache,
            resume: args.resume,
            start: true,
            report_dir: PathBuf::from("reports"),
        };
        return tui_profile(&args.profile, live);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // A second signal exits at once; the first asks the runner to stop after its cell.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&cancel))?;
        signal_hook::flag::register(signal, Arc::clone(&cancel))?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.profile));
    let options = RunOptions {
        resume: args.resume,
        cancel: Arc::clone(&cancel),
        cache: args.cache.clone(),
        ..RunOptions::new(&out)
    };
    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    let profile = args.profile.clone();
    let worker = std::thread::spawn(move || {
        run_profile(&profile, &options, &mut |event| {
            // The listener only goes away when main is exiting; the records are on disk.
            let _ = tx.send(event);
        })
    });
    let json = args.progress == ProgressArg::Json;
    let mut printer = Printer::new();
    let mut stdout = std::io::stdout().lock();
    for event in rx {
        if json {
            writeln!(stdout, "{}", json_line(&event))?;
        } else {
            for line in printer.lines(&event) {
                writeln!(stdout, "{line}")?;
            }
        }
        stdout.flush()?;
    }
    let summary = worker
        .join()
        .map_err(|_| anyhow!("the sweep stopped on an internal error"))??;
    if !json {
        writeln!(stdout)?;
        write!(stdout, "{}", quench::report::table::sweep(&summary.records))?;
        writeln!(stdout, "results: {}", summary.results.display())?;
    }
    if summary.cancelled == 0 {
        // The profile's [search], after the cells; each finished search is saved at once.
        let profile = quench::sweep::profile::load(&args.profile)?;
        let saved = quench::explore::saved::run_profile(
            &profile,
            &out,
            args.resume,
            Some(Arc::clone(&cancel)),
            &print_explore_event,
        )?;
        for s in &saved {
            if !json {
                write!(stdout, "{}", quench::report::explore::search(&s.report))?;
            }
        }
    }
    Ok(if summary.cancelled > 0 {
        ExitCode::from(130)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_remote(args: RemoteArgs) -> Result<ExitCode> {
    use quench::remote::arch::Binaries;
    use quench::remote::host::Host;
    use quench::remote::{default_work_dir, run, Job, Printer};

    let hosts = args
        .hosts
        .iter()
        .map(|h| Host::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    let profile = quench::sweep::profile::load(&args.profile)?;
    let root = std::env::current_dir().context("reading the current folder")?;
    let mut ort_libs = args.ort_lib.clone();
    ort_libs
        .extend(runtime::ort::discover_library(&runtime::ort::SearchRoots::from_process()).ok());
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .profile
            .file_stem()
            .map_or_else(|| "sweep".into(), |s| s.to_string_lossy().into_owned());
        Path::new("reports").join(stem)
    });
    let job = Job {
        binaries: Binaries::of_process(&root, args.aarch64_binary.clone())?,
        root,
        profile: args.profile.clone(),
        manifests: profile
            .models
            .iter()
            .map(|m| m.manifest_path.clone())
            .collect(),
        work_dir: args
            .work_dir
            .clone()
            .unwrap_or_else(|| default_work_dir(&profile.name, &profile.hash)),
        out,
        resume: args.resume,
        ssh_options: args.ssh_options.clone(),
        ort_libs,
        retries: args.retries,
        retry_delay: std::time::Duration::from_secs(2),
    };
    let printer = Printer::default();
    let reports = run(&job, &hosts, &|host, p| printer.show(host, p))?;
    let mut all_ok = true;
    println!();
    for r in &reports {
        all_ok &= r.success();
        println!("{}", r.summary());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_results(args: ResultsArgs) -> Result<ExitCode> {
    match args.command {
        ResultsCommand::Merge { inputs, out } => {
            let merged = quench::sweep::store::merge(&inputs, &out)?;
            for w in &merged.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{} records from {} file(s) -> {}",
                merged.records.len(),
                inputs.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cmd_report(args: ReportArgs) -> Result<ExitCode> {
    use quench::report::files;
    let records = files::read_records(&args.results)?;
    let options = files::Options {
        out: args.out.clone(),
        budget_pp: args.budget,
        sources: args
            .results
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    };
    let (searches, warnings) = files::read_searches(&args.results)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let written = files::write_with_searches(&records, &searches, &options)?;
    println!(
        "quench report: {} record(s) -> {}",
        records.len(),
        args.out.display()
    );
    println!("  {}", written.html.display());
    println!("  {}", written.markdown.display());
    println!("  {}", written.csv.display());
    for s in &searches {
        println!("  search section: {}", s.name);
    }
    println!(
        "  {} chart(s) in {}",
        written.charts.len(),
        args.out.join(files::CHARTS_DIR).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `quench` alone: the terminal UI on the bundled quickstart profile when stdout is a terminal
/// and the profile is here, else the list of commands.
fn bare() -> ExitCode {
    use clap::CommandFactory;
    use std::io::IsTerminal;
    let profile = Path::new(QUICKSTART);
    if std::io::stdout().is_terminal() && profile.is_file() {
        let live = LiveArgs {
            out: default_out(profile),
            cache: None,
            resume: true,
            start: false,
            report_dir: PathBuf::from("reports"),
        };
        return finish(tui_profile(profile, live));
    }
    eprintln!("{}", Cli::command().render_help());
    ExitCode::from(2)
}

/// The output folder of a profile's sweep when none is given: reports/<profile file name>.
fn default_out(profile: &Path) -> PathBuf {
    let stem = profile
        .file_stem()
        .map_or_else(|| "sweep".into(), |s| s.to_string_lossy().into_owned());
    Path::new("reports").join(stem)
}

fn cmd_tui(args: TuiArgs) -> Result<ExitCode> {
    use quench::tui::{self, App, NoSweep, Options, Theme};
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        bail!(
            "quench tui needs a terminal on stdout (quench sweep --headless prints progress lines)"
        );
    }
    if args.target.extension().is_some_and(|e| e == "toml") {
        let live = LiveArgs {
            out: args.out.unwrap_or_else(|| default_out(&args.target)),
            cache: args.cache,
            resume: true,
            start: false,
            report_dir: args.report_dir,
        };
        return tui_profile(&args.target, live);
    }
    let loaded = quench::sweep::store::read(&args.target)?;
    if loaded.records.is_empty() {
        bail!(
            "{}: no records to show{}",
            args.target.display(),
            loaded
                .warnings
                .iter()
                .map(|w| format!("\n  {w}"))
                .collect::<String>()
        );
    }
    let mut app = App::with_records(
        args.target.display().to_string(),
        loaded.records,
        Theme::from_env(),
    );
    app.notice = warnings_notice(&loaded.warnings);
    let dir = args.target.parent().unwrap_or(Path::new(""));
    app.searches = quench::explore::saved::read(dir)?.0;
    let (tx, rx) = std::sync::mpsc::channel();
    let options = Options {
        report_dir: args.report_dir,
    };
    tui::run(app, tx, rx, &mut NoSweep, &options)?;
    Ok(ExitCode::SUCCESS)
}

/// The first warning of reading a results file, and how many more there are.
fn warnings_notice(warnings: &[String]) -> Option<String> {
    let first = warnings.first()?;
    Some(match warnings.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more warnings)", n - 1),
    })
}

/// How the terminal UI runs a profile.
struct LiveArgs {
    out: PathBuf,
    cache: Option<PathBuf>,
    resume: bool,
    /// Start the sweep at once (`quench sweep`) instead of waiting for `s`.
    start: bool,
    report_dir: PathBuf,
}

/// The terminal UI on a profile: its plan shown at once (with the records of an earlier run of
/// it when resuming), the sweep on a worker thread, stopped after its running cell on quit.
fn tui_profile(path: &Path, args: LiveArgs) -> Result<ExitCode> {
    use quench::sweep::runner::RunOptions;
    use quench::sweep::{plan, profile, store};
    use quench::tui::live::LiveSweep;
    use quench::tui::{self, App, Control, Msg, Options, Theme};
    let profile = profile::load(path)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = plan::plan(&profile, cores)?;
    let mut app = App::new(format!("profile {}", profile.name), true, Theme::from_env());
    app.plan(plan.cells.iter().map(|c| &c.key));
    app.dropped = plan.dropped.clone();
    let results = args.out.join(store::RESULTS_FILE);
    if args.resume && results.is_file() {
        let loaded = store::read(&results)?;
        let hash = Some(profile.hash.as_str());
        app.add_records(
            loaded
                .records
                .into_iter()
                .filter(|r| r.profile_hash.as_deref() == hash),
        );
        app.notice = warnings_notice(&loaded.warnings);
    }
    app.searches = quench::explore::saved::read(&args.out)?
        .0
        .into_iter()
        .filter(|s| s.profile_hash.as_deref() == Some(profile.hash.as_str()))
        .collect();
    let options = RunOptions {
        resume: args.resume,
        cache: args.cache,
        ..RunOptions::new(&args.out)
    };
    // The TUI's sweep runs the cells only; say so rather than leave a `[search]` silently unrun.
    let search_note = profile.search.is_some().then(|| {
        format!(
            "[search] runs in headless sweeps only (quench sweep {} --headless); saved searches show here",
            path.display()
        )
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let mut live = LiveSweep::new(profile, plan, options, tx.clone());
    if args.start {
        let answer = live.command(&quench::tui::Command::Start);
        let answer = answer.unwrap_or_else(|e| e);
        let note = match &search_note {
            Some(n) => format!("{answer} · {n}"),
            None => answer,
        };
        let _ = tx.send(Msg::Notice(note));
    } else if let Some(n) = search_note {
        app.notice = Some(match app.notice.take() {
            Some(w) => format!("{w} · {n}"),
            None => n,
        });
    }
    let options = Options {
        report_dir: args.report_dir,
    };
    let ended = tui::run(app, tx, rx, &mut live, &options);
    if live.busy() {
        eprintln!(
            "quench: stopping the sweep after its running cell (a second Ctrl-C stops at once)"
        );
    }
    live.shutdown();
    ended?;
    if results.is_file() {
        println!("results: {}", results.display());
    }
    Ok(ExitCode::SUCCESS)
}
