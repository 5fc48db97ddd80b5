//! Native FP32 engine against ONNX Runtime FP32 on the bundled models, batch 1, one thread.
//!
//! The machine this was written on is shared and its speed jumps about 1.5× from minute to
//! minute, so absolute times from one run say little. Each round therefore times the native
//! plan, then ORT with spinning on, then ORT with spinning off, back to back (`CALLS` runs each,
//! the round's time per run is their mean), and the ratio native/ORT is taken inside the round.
//! Printed per model: the median of the per-round ratios with its spread (min–max over rounds),
//! and the median per-run time (p50 over rounds) of each runtime.
//!
//! Before timing, the tool checks that native and ORT agree on the input: max |native − ORT|
//! divided by the max |ORT output| of the sample must be ≤ 1e-4, else it stops with an error.
//!
//! The input is the first test sample of each model's manifest (`assets/models/*.toml`),
//! preprocessed as the manifest says.
//!
//! A model may name a quantized variant as `MODEL:VARIANT`: `int8-dynamic`, `int4-g32`,
//! `int4-g64` (symmetric), `int4-g32-zp` (with zero points), all made by quench's exporter in
//! memory, or `qop` / `dyn-ort` (ORT's own QOperator / quantize_dynamic model from
//! `assets/quantized`). Native and ORT then run that same quantized model, and each round also
//! times the native FP32 plan of the model, so the extra column is native variant / native FP32
//! per round. Quantized outputs may differ from ORT's by a rounding step, so the agreement check
//! allows a max rel diff of 5e-2 for them.
//!
//! Run: `cargo run --release --example engine_vs_ort [ROUNDS] [MODEL[:VARIANT]...]` (default 30
//! rounds, all three models in FP32; `QUENCH_PROFILE_OPS=1` adds the native per-step time table
//! on exit). ONNX Runtime is found as `quench::runtime::ort` finds it: run from the project
//! folder (its `.venv`), or set `ORT_DYLIB_PATH`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quench::eval::{Dataset, Manifest};
use quench::graph::Graph;
use quench::measure::stats::percentile_sorted;
use quench::quant::{quantize, Scheme};
use quench::runtime::native::NativeRuntime;
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;
use quench::tensor::Tensor;

const MODELS: [&str; 3] = ["mnist-mlp", "mnist-cnn", "textdir-cls"];
/// Largest allowed max |native − ORT| / max |ORT| for FP32 models.
const TOLERANCE: f64 = 1e-4;
/// The same for quantized variants, whose outputs may differ by a rounding step.
const QUANTIZED_TOLERANCE: f64 = 5e-2;
/// Time budget of one runtime's share of a round.
const SHARE_SECONDS: f64 = 0.02;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models")
}

/// Seconds per run of `calls` back-to-back runs.
fn time(rt: &mut dyn Runtime, name: &str, x: &Tensor, calls: usize) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(rt.run(&[(name, x)])?);
    }
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

/// max |a − b| / max |b| over the first output.
fn rel_diff(native: &Tensor, ort: &Tensor) -> Result<f64> {
    let (a, b) = (native.as_f32()?, ort.as_f32()?);
    if native.shape() != ort.shape() {
        bail!("shapes differ: {:?} vs {:?}", native.shape(), ort.shape());
    }
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&p, &q)| m.max(f64::from(p - q).abs()));
    Ok(diff / scale.max(f64::MIN_POSITIVE))
}

struct Summary {
    median: f64,
    lo: f64,
    hi: f64,
}

fn summary(mut v: Vec<f64>) -> Summary {
    v.sort_by(f64::total_cmp);
    Summary {
        median: percentile_sorted(&v, 0.5),
        lo: v[0],
        hi: v[v.len() - 1],
    }
}

/// The graph of `variant` of the FP32 model `graph` (`None`: the FP32 model itself).
fn variant_graph(model: &str, graph: &Graph, variant: Option<&str>) -> Result<Graph> {
    let scheme = match variant {
        None => return Ok(graph.clone()),
        Some("int8-dynamic") => Scheme::int8_dynamic(),
        Some("int4-g32") => Scheme::int4(32, true),
        Some("int4-g64") => Scheme::int4(64, true),
        Some("int4-g32-zp") => Scheme::int4(32, false),
        Some(fixture @ ("qop" | "dyn-ort")) => {
            let path = models_dir()
                .join("../quantized")
                .join(format!("{model}.{fixture}.onnx"));
            return quench::onnx::load(&path).with_context(|| format!("{}", path.display()));
        }
        Some(other) => bail!("unknown variant `{other}`"),
    };
    Ok(quantize(graph, &scheme, &Default::default())?)
}

fn bench(spec: &str, rounds: usize) -> Result<()> {
    let (model, variant) = match spec.split_once(':') {
        Some((m, v)) => (m, Some(v)),
        None => (spec, None),
    };
    let manifest_path = models_dir().join(format!("{model}.toml"));
    let manifest = Manifest::load(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let data = Dataset::load(&manifest.data.test, &manifest.input, Some(1))?;
    let x = data.batch(0..1)?;
    let name = data.input_name().to_string();
    let fp32 = quench::onnx::load(&manifest.model.file)?;
    let graph = variant_graph(model, &fp32, variant)?;
    let bytes = quench::onnx::to_bytes(&graph)?;
    let mut native = NativeRuntime::new(graph, 1)?;
    let mut native_fp32 = NativeRuntime::new(fp32, 1)?;
    let mut spin = OrtRuntime::from_bytes(&bytes, &OrtOptions::new(1))?;
    let mut calm = OrtRuntime::from_bytes(
        &bytes,
        &OrtOptions {
            spin: false,
            ..OrtOptions::new(1)
        },
    )?;
    let n_out = native.run(&[(&name, &x)])?;
    let o_out = spin.run(&[(&name, &x)])?;
    let diff = rel_diff(&n_out[0], &o_out[0])?;
    let tolerance = if variant.is_some() {
        QUANTIZED_TOLERANCE
    } else {
        TOLERANCE
    };
    if diff > tolerance {
        bail!("{spec}: native and ORT disagree, max rel diff {diff:.2e} > {tolerance:.0e}");
    }
    // Warm up and size a round's share to about SHARE_SECONDS.
    let t = time(&mut spin, &name, &x, 20)?;
    time(&mut native, &name, &x, 20)?;
    time(&mut calm, &name, &x, 20)?;
    time(&mut native_fp32, &name, &x, 20)?;
    let calls = ((SHARE_SECONDS / t) as usize).clamp(5, 10_000);
    let (mut tn, mut ts, mut tc, mut tf) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rs, mut rc, mut rf) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let n = time(&mut native, &name, &x, calls)?;
        let s = time(&mut spin, &name, &x, calls)?;
        let c = time(&mut calm, &name, &x, calls)?;
        let f = time(&mut native_fp32, &name, &x, calls)?;
        tn.push(n * 1e6);
        ts.push(s * 1e6);
        tc.push(c * 1e6);
        tf.push(f * 1e6);
        rs.push(n / s);
        rc.push(n / c);
        rf.push(n / f);
    }
    let (rs, rc, rf) = (summary(rs), summary(rc), summary(rf));
    let (tn, ts, tc, tf) = (summary(tn), summary(ts), summary(tc), summary(tf));
    println!(
        "{spec:<22} {:>6.3} [{:.3}-{:.3}] {:>6.3} [{:.3}-{:.3}] {:>6.3} [{:.3}-{:.3}] {:>9.1} {:>9.1} {:>9.1} {:>9.1}   {diff:.1e}  {calls}",
        rs.median, rs.lo, rs.hi, rc.median, rc.lo, rc.hi, rf.median, rf.lo, rf.hi, tn.median, ts.median, tc.median, tf.median
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = match args.next() {
        Some(r) => r.parse().context("ROUNDS must be a number")?,
        None => 30,
    };
    let picked: Vec<String> = args.collect();
    let models: Vec<&str> = if picked.is_empty() {
        MODELS.to_vec()
    } else {
        picked.iter().map(String::as_str).collect()
    };
    println!(
        "batch 1, 1 thread, {rounds} rounds; ratio = native/ORT per round: median [min-max]; p50 µs per run"
    );
    println!(
        "{:<22} {:>22} {:>22} {:>22} {:>9} {:>9} {:>9} {:>9}   {:>7}  calls/round",
        "model",
        "vs ORT spin",
        "vs ORT no-spin",
        "vs native FP32",
        "native",
        "ort spin",
        "ort calm",
        "nat fp32",
        "rel diff"
    );
    for m in models {
        bench(m, rounds)?;
    }
    Ok(())
}
