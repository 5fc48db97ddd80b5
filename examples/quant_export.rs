//! Quantizes a model by a scheme given as JSON, calibrating on the first 1,000 samples of its
//! manifest's calibration split with ONNX Runtime (intermediate tensors exposed as outputs),
//! and writes the exported `.onnx` (for inspecting or timing it in other tools).
//!
//! Run: `cargo run --release --example quant_export -- MANIFEST.toml 'SCHEME_JSON' OUT.onnx`
//! e.g. scheme `{"default":{"precision":"int4","group_size":32,"symmetric":false,"accuracy_level":null}}`

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use quench::eval::dataset::Dataset;
use quench::eval::manifest::Manifest;
use quench::quant::probe::{calibration_sites, expose, Calibrators};
use quench::quant::{quantize, Scheme};
use quench::runtime::ort::{OrtOptions, OrtRuntime};
use quench::runtime::Runtime;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [manifest, scheme, out] = args.as_slice() else {
        return Err(anyhow!(
            "usage: quant_export MANIFEST.toml SCHEME_JSON OUT.onnx"
        ));
    };
    let m = Manifest::load(Path::new(manifest))?;
    let scheme = Scheme::from_json(scheme)?;
    let graph = quench::onnx::load(&m.model.file)?;
    let sites = calibration_sites(&graph, &scheme)?;
    let mut cals = Calibrators::new(&sites)?;
    if !sites.is_empty() {
        let tensors: Vec<String> = sites.iter().map(|s| s.tensor.clone()).collect();
        let probe = quench::onnx::to_bytes(&expose(&graph, &tensors)?)?;
        let mut rt = OrtRuntime::from_bytes(&probe, &OrtOptions::new(1))?;
        let names = rt.output_names().to_vec();
        let split = m
            .data
            .calibration
            .as_ref()
            .context("the manifest has no calibration split")?;
        let data = Dataset::load(split, &m.input, Some(1000))?;
        for batch in data.batches(100) {
            let outs = rt.run(&[(data.input_name(), &batch?)])?;
            for (name, value) in names.iter().zip(&outs) {
                if tensors.contains(name) {
                    cals.observe(name, value)?;
                }
            }
        }
    }
    let q = quantize(&graph, &scheme, &cals.ranges()?)?;
    quench::onnx::save(&q, out)?;
    println!("wrote {out} ({} nodes)", q.nodes.len());
    Ok(())
}
