//! What sensitivity analysis and search share: the FP32 graph and its quantizable layers,
//! activation ranges calibrated ONCE on the calibration split (every per-layer variant reuses
//! them, so two variants differ only in which layers are quantized), the held-out samples
//! decisions are made on, and FP32's outputs on those samples.
//!
//! Held-out samples come from the manifest's validation split; a manifest without one gives
//! the calibration-split samples after those used to calibrate. The test split is never read
//! here: it is for the final report only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::manifest::{InputSpec, Split};
use crate::eval::{evaluate, metrics, output_index, Dataset, Manifest};
use crate::explore::{ExploreError, Level};
use crate::graph::Graph;
use crate::measure::rng::SplitMix64;
use crate::quant::layer::{is_quantizable, quantized_output, Layer};
use crate::quant::layer_error::{layer_error, LayerError};
use crate::quant::pipeline::{calibrate, session, CalibratorKind, PipelineError};
use crate::quant::probe::expose;
use crate::quant::scheme::{LayerMatch, Override};
use crate::quant::{CalibratedRange, Calibration, Precision, Scheme};
use crate::runtime::Runtime;
use crate::tensor::Tensor;

/// Batch size of the ORT evaluation passes.
pub const BATCH: usize = 100;
/// Held-out samples used when none are asked for (at most the split's size).
pub const DEFAULT_SAMPLES: usize = 2000;
/// Held-out samples each layer's SQNR is measured on.
pub const PROBE_SAMPLES: usize = 100;

/// How to prepare an exploration.
#[derive(Debug, Clone)]
pub struct SetupConfig {
    /// The FP32 model.
    pub model: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Rule for the activation ranges of static INT8 and binary layers.
    pub calibrator: CalibratorKind,
    /// Calibration-split samples the ranges are found on.
    pub calib_samples: usize,
    /// Held-out samples decisions are made on (`None`: [`DEFAULT_SAMPLES`]).
    pub samples: Option<usize>,
    /// Seed of the choice of held-out samples when fewer than the split holds are used.
    pub seed: u64,
}

/// A quantizable layer of the model.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// Node name.
    pub name: String,
    /// Operator.
    pub op_type: String,
    /// The compared tensor (its output as the next layer reads it, after a sole Relu).
    pub tensor: String,
    /// Weight elements.
    pub params: usize,
}

/// How a variant did on the held-out samples, against FP32.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Top-1 accuracy, with labels.
    pub accuracy: Option<f64>,
    /// Fraction of samples whose top-1 class is FP32's.
    pub agreement: f64,
    /// Mean KL(FP32 ‖ variant) of the output distributions, nats.
    pub kl: f64,
    /// FP32 accuracy minus this accuracy with labels, else the disagreement `1 − agreement`:
    /// the figure a budget is checked against.
    pub drop: f64,
}

/// The shared state of an exploration (see the module doc).
#[derive(Debug)]
pub struct Setup {
    /// The FP32 model file.
    pub model: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The FP32 graph.
    pub graph: Graph,
    /// The calibration rule every quantized level uses.
    pub calibration: Calibration,
    /// Calibrated ranges of every site any level needs.
    pub ranges: BTreeMap<String, CalibratedRange>,
    /// How the ranges were found, in words.
    pub ranges_note: String,
    /// Quantizable layers, in graph order.
    pub layers: Vec<LayerInfo>,
    /// The held-out samples, preprocessed.
    pub data: Dataset,
    /// Where they came from, in words.
    pub split: String,
    /// FP32's scored output on them.
    pub reference: Tensor,
    /// FP32's score (accuracy; agreement 1, KL 0, drop 0).
    pub fp32: Score,
    /// FP32 values of every layer's compared tensor on the first [`PROBE_SAMPLES`] samples.
    probe_refs: BTreeMap<String, Tensor>,
}

impl Setup {
    /// Loads the model, calibrates once, picks the held-out samples and scores FP32 on them.
    /// `step` hears what is being done.
    pub fn prepare(config: &SetupConfig, step: &dyn Fn(&str)) -> Result<Setup, ExploreError> {
        if config.calib_samples == 0 || config.samples == Some(0) {
            return Err(ExploreError::Invalid(
                "--calib-samples and --samples must be at least 1".into(),
            ));
        }
        // The folded graph post-training quantization works on (BatchNorm in the Convs).
        let graph = crate::quant::prepare::prepare(&crate::onnx::load(&config.model)?)
            .map_err(PipelineError::from)?;
        let layers = quantizable_layers(&graph)?;
        if layers.is_empty() {
            return Err(ExploreError::Invalid(format!(
                "{}: no Conv, Gemm or MatMul layer with a constant weight to quantize",
                config.model.display()
            )));
        }
        let manifest = &config.manifest;
        let calib_split = manifest
            .data
            .calibration
            .as_ref()
            .ok_or_else(|| PipelineError::NoCalibration(manifest.model.name.clone()))?;
        step("calibrating activation ranges");
        let calib = Dataset::load(calib_split, &manifest.input, Some(config.calib_samples))?;
        let calibration = config.calibrator.calibration();
        // Static INT8 everywhere needs a range at every site any level can need (binary layers
        // read the same input sites with the same grid).
        let all_int8 = Scheme::uniform(Level::Int8.precision(calibration));
        let ranges = calibrate(&graph, &all_int8, &calib, calib.len())?;
        let ranges_note = format!(
            "{} calibration on {} calibration samples",
            config.calibrator.name(),
            calib.len()
        );
        let (data, split) = held_out(manifest, config)?;
        step("scoring FP32 on the held-out samples");
        let mut rt = session(&graph)?;
        let out = output_index(&manifest.output, rt.output_names())?;
        let fp32_eval = evaluate(&mut rt, &data, BATCH, out)?;
        let tensors: Vec<String> = layers.iter().map(|l| l.tensor.clone()).collect();
        let probe_refs = probe(&graph, &tensors, &data)?;
        Ok(Setup {
            model: config.model.clone(),
            manifest: manifest.clone(),
            graph,
            calibration,
            ranges,
            ranges_note,
            layers,
            data,
            split,
            reference: fp32_eval.outputs,
            fp32: Score {
                accuracy: fp32_eval.accuracy,
                agreement: 1.0,
                kl: 0.0,
                drop: 0.0,
            },
            probe_refs,
        })
    }

    /// The scheme giving layer `i` the level `levels[i]` (FP32 where `levels` is shorter).
    pub fn scheme(&self, levels: &[Level]) -> Scheme {
        self.scheme_with(|i| {
            levels
                .get(i)
                .map_or(Precision::Fp32, |l| l.precision(self.calibration))
        })
    }

    /// The scheme giving layer `i` the precision `precision(i)`, as per-node overrides of an
    /// FP32 default.
    pub fn scheme_with(&self, precision: impl Fn(usize) -> Precision) -> Scheme {
        Scheme {
            default: Precision::Fp32,
            overrides: self
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| (l, precision(i)))
                .filter(|(_, p)| *p != Precision::Fp32)
                .map(|(l, precision)| Override {
                    layers: LayerMatch {
                        node: Some(l.name.clone()),
                        op_type: None,
                    },
                    precision,
                })
                .collect(),
        }
    }

    /// The model `scheme` exports, with the shared ranges.
    pub fn quantize(&self, scheme: &Scheme) -> Result<Graph, ExploreError> {
        let known = [self.manifest.input.at_batch(1)];
        Ok(crate::quant::quantize_for(
            &self.graph,
            scheme,
            &self.ranges,
            &known,
        )?)
    }

    /// Scores `graph` (a variant of the FP32 model) on the held-out samples on ONNX Runtime.
    pub fn score(&self, graph: &Graph) -> Result<Score, ExploreError> {
        let mut rt = session(graph)?;
        let out = output_index(&self.manifest.output, rt.output_names())?;
        let eval = evaluate(&mut rt, &self.data, BATCH, out)?;
        self.score_outputs(&eval.outputs, eval.accuracy)
    }

    fn score_outputs(
        &self,
        outputs: &Tensor,
        accuracy: Option<f64>,
    ) -> Result<Score, ExploreError> {
        let agreement = metrics::agreement(&self.reference, outputs)?;
        let drop = match (self.fp32.accuracy, accuracy) {
            (Some(f), Some(a)) => f - a,
            _ => 1.0 - agreement,
        };
        Ok(Score {
            accuracy,
            agreement,
            kl: metrics::mean_kl(&self.reference, outputs, self.manifest.output.kind)?,
            drop,
        })
    }

    /// SQNR and cosine of layer `layer`'s compared tensor in `graph` against FP32, on the first
    /// [`PROBE_SAMPLES`] held-out samples.
    pub fn layer_error(&self, graph: &Graph, layer: usize) -> Result<LayerError, ExploreError> {
        let info = self
            .layers
            .get(layer)
            .ok_or_else(|| ExploreError::Invalid(format!("no layer number {layer}")))?;
        let tensor = std::slice::from_ref(&info.tensor);
        let got = probe(graph, tensor, &self.data)?;
        let lost = || PipelineError::LostTensor {
            layer: info.name.clone(),
            tensor: info.tensor.clone(),
        };
        let (a, b) = (
            self.probe_refs.get(&info.tensor).ok_or_else(lost)?,
            got.get(&info.tensor).ok_or_else(lost)?,
        );
        Ok(layer_error(a, b)?)
    }

    /// Index of the layer named `name`.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }
}

/// The quantizable layers of `graph` with a constant weight, in graph order.
fn quantizable_layers(graph: &Graph) -> Result<Vec<LayerInfo>, ExploreError> {
    let mut out = Vec::new();
    for node in graph.nodes.iter().filter(|n| is_quantizable(n)) {
        let (Ok(layer), Some(tensor)) =
            (Layer::resolve(graph, node), quantized_output(graph, node))
        else {
            continue;
        };
        out.push(LayerInfo {
            name: node.name.clone(),
            op_type: node.op_type.clone(),
            tensor: tensor.to_string(),
            params: layer.weight.len(),
        });
    }
    let mut names: Vec<&str> = out.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(ExploreError::Invalid(format!(
            "two quantizable layers are named `{}`; per-layer precision needs unique node names",
            w[0]
        )));
    }
    Ok(out)
}

/// The held-out samples, preprocessed, and where they came from.
fn held_out(manifest: &Manifest, config: &SetupConfig) -> Result<(Dataset, String), ExploreError> {
    let wanted = config.samples.unwrap_or(DEFAULT_SAMPLES);
    let (split, skip, name): (&Split, usize, &str) =
        match (&manifest.data.validation, &manifest.data.calibration) {
            (Some(v), _) => (v, 0, "validation"),
            (None, Some(c)) => (c, config.calib_samples, "calibration"),
            (None, None) => {
                return Err(PipelineError::NoCalibration(manifest.model.name.clone()).into())
            }
        };
    let all = Dataset::load(split, &manifest.input, None)?;
    if all.len() <= skip {
        return Err(ExploreError::Invalid(format!(
            "{}: no held-out samples: the manifest has no [data.validation] split and its \
             calibration split's {} samples are all used to calibrate (lower --calib-samples)",
            manifest.model.name,
            all.len()
        )));
    }
    let pool: Vec<usize> = (skip..all.len()).collect();
    let chosen = choose(&pool, wanted, config.seed);
    let data = gather(&all, &chosen, &split.samples)?;
    let what = if skip == 0 {
        format!("{name} split, {} of {} samples", chosen.len(), all.len())
    } else {
        format!(
            "calibration split samples not used to calibrate (no validation split), {} of {}",
            chosen.len(),
            pool.len()
        )
    };
    let seeded = if chosen.len() < pool.len() {
        format!(", chosen with seed {}", config.seed)
    } else {
        String::new()
    };
    Ok((data, format!("{what}{seeded}")))
}

/// `n` of `pool` chosen by a seeded partial Fisher-Yates shuffle, then sorted; all of `pool`
/// when `n` covers it.
fn choose(pool: &[usize], n: usize, seed: u64) -> Vec<usize> {
    if n >= pool.len() {
        return pool.to_vec();
    }
    let mut v = pool.to_vec();
    let mut rng = SplitMix64::new(seed);
    for i in 0..n {
        let j = i + rng.below(v.len() - i);
        v.swap(i, j);
    }
    v.truncate(n);
    v.sort_unstable();
    v
}

/// A dataset holding samples `indices` of `all` already preprocessed (identity preprocessing).
fn gather(all: &Dataset, indices: &[usize], origin: &Path) -> Result<Dataset, ExploreError> {
    let spec = all.input();
    let mut values = Vec::with_capacity(indices.len() * spec.sample_elements());
    for &i in indices {
        values.extend_from_slice(
            all.batch(i..i + 1)?
                .as_f32()
                .map_err(metrics::MetricError::from)?,
        );
    }
    let mut shape = vec![indices.len()];
    shape.extend_from_slice(&spec.sample_shape);
    let samples = Tensor::from_f32(shape, values).map_err(metrics::MetricError::from)?;
    let labels = match all.labels() {
        Some(l) => Some(
            Tensor::from_i64(vec![indices.len()], indices.iter().map(|&i| l[i]).collect())
                .map_err(metrics::MetricError::from)?,
        ),
        None => None,
    };
    let identity = InputSpec {
        name: spec.name.clone(),
        sample_shape: spec.sample_shape.clone(),
        scale: 1.0,
        mean: vec![0.0],
        std: vec![1.0],
        replicate_channels: false,
    };
    Ok(Dataset::from_tensors(
        samples,
        origin,
        labels.map(|l| (l, origin)),
        &identity,
        None,
    )?)
}

/// Values of `tensors` in `graph` on the first [`PROBE_SAMPLES`] samples of `data` (one batch).
fn probe(
    graph: &Graph,
    tensors: &[String],
    data: &Dataset,
) -> Result<BTreeMap<String, Tensor>, ExploreError> {
    let mut rt = session(&expose(graph, tensors)?)?;
    let names = rt.output_names().to_vec();
    let batch = data.batch(0..PROBE_SAMPLES.min(data.len()))?;
    let outs = rt.run(&[(data.input_name(), &batch)])?;
    Ok(names
        .into_iter()
        .zip(outs)
        .filter(|(n, _)| tensors.contains(n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_is_seeded_sorted_and_distinct() {
        let pool: Vec<usize> = (10..110).collect();
        let a = choose(&pool, 20, 7);
        assert_eq!(a, choose(&pool, 20, 7));
        assert_ne!(a, choose(&pool, 20, 8));
        assert_eq!(a.len(), 20);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|i| pool.contains(i)));
        assert_eq!(choose(&pool, 500, 7), pool);
    }
}
