//! Which layer breaks accuracy: for each quantizable layer, the held-out score when ONLY that
//! layer is quantized (its own damage) and when EVERY quantizable layer BUT it is (how much
//! keeping it in FP32 recovers), ranked by the first, with the layer's output SQNR in the
//! only-this-layer model beside it.
//!
//! The per-layer metric follows ZeroQ (Cai et al., "ZeroQ: A Novel Zero Shot Quantization
//! Framework", CVPR 2020, §3.3): the sensitivity of layer i at a precision is the mean KL
//! divergence between the FP32 model's output distribution and that of the model with only
//! layer i quantized. quench measures it on held-out real samples (ZeroQ used distilled data)
//! and ranks by the top-1 accuracy drop first when there are labels (KL breaks ties and orders
//! label-free models), so the ranking speaks the unit of the search budget.
//!
//! The variants are independent and run in parallel on a rayon pool whose size is capped by the
//! memory available (see [`jobs_for`]); results come back in layer order whatever the
//! completion order, and the held-out samples are chosen by a seed, so equal seeds give equal
//! rankings.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::explore::setup::{Score, Setup};
use crate::explore::{ExploreError, ExploreEvent, Level};
use crate::quant::layer_error::LayerError;
use crate::quant::pipeline::{Method, Target};
use crate::quant::Precision;
use crate::quant::{Calibration, Scheme};

/// Memory one parallel variant is assumed to need beyond the model: an ORT session, its arena
/// and a batch of outputs (a rough figure; only the pool size depends on it).
const JOB_OVERHEAD_BYTES: u64 = 96 << 20;

/// What to analyse.
#[derive(Debug, Clone)]
pub struct SensitivityConfig {
    /// The precision each layer is tried at.
    pub precision: Precision,
    /// Its name for reports, e.g. `int8 static`.
    pub label: String,
    /// Also score the every-layer-but-this-one variants.
    pub all_but: bool,
    /// Parallel variants (`None`: rayon's thread count); capped by memory.
    pub jobs: Option<usize>,
}

/// One layer's sensitivity.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSensitivity {
    /// 1 = most sensitive.
    pub rank: usize,
    /// Node name.
    pub layer: String,
    /// Operator.
    pub op_type: String,
    /// Weight elements.
    pub params: usize,
    /// Held-out score with only this layer quantized.
    pub only: Score,
    /// Held-out score with every analysed layer but this one quantized.
    pub all_but: Option<Score>,
    /// SQNR (dB) of the layer's output in the only-this-layer model against FP32.
    pub sqnr_db: f64,
    /// Cosine of the same.
    pub cosine: f64,
}

/// What `quench sensitivity` found.
#[derive(Debug, Clone, Serialize)]
pub struct SensitivityReport {
    /// The FP32 model.
    pub model: String,
    /// The precision tried, in words.
    pub precision: String,
    /// The held-out samples, in words.
    pub split: String,
    /// Held-out samples scored per variant.
    pub samples: usize,
    /// How the activation ranges were found (once, for every variant).
    pub ranges: String,
    /// FP32 on the held-out samples.
    pub fp32: Score,
    /// Every analysed layer quantized.
    pub all_quantized: Score,
    /// Analysed layers, most sensitive first.
    pub layers: Vec<LayerSensitivity>,
    /// Layers left out, each with the reason.
    pub skipped: Vec<(String, String)>,
    /// Variants run in parallel.
    pub jobs: usize,
}

/// The precision a layer gets in `quench sensitivity --precision P --method M`, and its name.
/// QAT is refused (it trains the whole model, not one layer at a time).
pub fn precision_for(
    target: Target,
    method: Option<Method>,
    calibration: Calibration,
) -> Result<(Precision, String), ExploreError> {
    let method = method.unwrap_or(target.default_method());
    let precision = match (target, method) {
        (_, Method::Qat) => {
            return Err(ExploreError::Invalid(
                "sensitivity analysis quantizes one layer at a time after training-free \
                 calibration; --method qat trains the whole model and is not offered here"
                    .into(),
            ))
        }
        (Target::Int8, Method::Static) => Level::Int8.precision(calibration),
        (Target::Int8, Method::Dynamic) => Scheme::int8_dynamic().default,
        (Target::Int4, Method::WeightOnly) => Level::Int4.precision(calibration),
        (Target::Binary, Method::Static) => Level::Binary.precision(calibration),
        _ => {
            return Err(ExploreError::Invalid(format!(
                "--precision {} does not take --method {}",
                target.name(),
                method.name()
            )))
        }
    };
    Ok((precision, format!("{} {}", target.name(), method.name())))
}

/// Whether `precision` can be given to a layer of `op_type` (ORT has no 4-bit Conv).
pub fn applies(precision: &Precision, op_type: &str) -> bool {
    !(matches!(precision, Precision::Int4 { .. }) && op_type == "Conv")
}

/// Parallel variants for `setup`: `asked` (default rayon's thread count), at least 1, at most
/// what the available memory holds at `JOB_OVERHEAD_BYTES` plus four copies of the model.
pub fn jobs_for(setup: &Setup, asked: Option<usize>) -> usize {
    let model = std::fs::metadata(&setup.model).map_or(0, |m| m.len());
    let per_job = JOB_OVERHEAD_BYTES.saturating_add(model.saturating_mul(4));
    let fits = crate::measure::memory::system_memory().available_bytes / per_job.max(1);
    asked
        .unwrap_or_else(rayon::current_num_threads)
        .min(usize::try_from(fits).unwrap_or(usize::MAX))
        .max(1)
}

/// Runs `tasks` on a pool of `jobs` threads, results in task order.
pub(crate) fn parallel<T: Sync, R: Send>(
    jobs: usize,
    tasks: &[T],
    work: impl Fn(&T) -> Result<R, ExploreError> + Sync,
) -> Result<Vec<R>, ExploreError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| ExploreError::Pool(e.to_string()))?;
    pool.install(|| tasks.par_iter().map(&work).collect())
}

/// Score and layer error of the model quantizing only layer `layer` at `precision`.
pub fn only_layer(
    setup: &Setup,
    layer: usize,
    precision: Precision,
) -> Result<(Score, LayerError), ExploreError> {
    let scheme = setup.scheme_with(|i| {
        if i == layer {
            precision
        } else {
            Precision::Fp32
        }
    });
    let graph = setup.quantize(&scheme)?;
    Ok((setup.score(&graph)?, setup.layer_error(&graph, layer)?))
}

/// Ranks the layers of `setup` by their sensitivity to `config.precision`.
pub fn run(
    setup: &Setup,
    config: &SensitivityConfig,
    on_event: &(dyn Fn(&ExploreEvent) + Sync),
) -> Result<SensitivityReport, ExploreError> {
    let (analysed, skipped): (Vec<usize>, Vec<usize>) = (0..setup.layers.len())
        .partition(|&i| applies(&config.precision, &setup.layers[i].op_type));
    if analysed.is_empty() {
        return Err(ExploreError::Invalid(format!(
            "no layer of {} can take {} (ORT has no 4-bit Conv)",
            setup.model.display(),
            config.label
        )));
    }
    let in_set = |i: usize| analysed.contains(&i);
    let precision = config.precision;
    let jobs = jobs_for(setup, config.jobs);
    let total = analysed.len() * if config.all_but { 2 } else { 1 } + 1;
    on_event(&ExploreEvent::LayersStarted {
        total,
        layers: analysed.len(),
        samples: setup.data.len(),
    });
    let done = AtomicUsize::new(0);
    let report = |layer: &str, variant: String, drop: f64| {
        on_event(&ExploreEvent::LayerScored {
            done: done.fetch_add(1, Ordering::Relaxed) + 1,
            total,
            layer: layer.to_string(),
            variant,
            drop,
        })
    };
    // Task (layer, only?) plus the all-quantized model as layer None.
    let mut tasks: Vec<(Option<usize>, bool)> = vec![(None, false)];
    for &i in &analysed {
        tasks.push((Some(i), true));
        if config.all_but {
            tasks.push((Some(i), false));
        }
    }
    let results = parallel(jobs, &tasks, |&(layer, only)| {
        let name = layer.map_or("(all)", |i| setup.layers[i].name.as_str());
        match (layer, only) {
            (Some(i), true) => {
                let (score, err) = only_layer(setup, i, precision)?;
                report(name, format!("only {}", config.label), score.drop);
                Ok((score, Some(err)))
            }
            (layer, _) => {
                let scheme = setup.scheme_with(|j| {
                    if in_set(j) && Some(j) != layer {
                        precision
                    } else {
                        Precision::Fp32
                    }
                });
                let score = setup.score(&setup.quantize(&scheme)?)?;
                let variant = if layer.is_some() { "all but" } else { "all" };
                report(name, format!("{variant} {}", config.label), score.drop);
                Ok((score, None))
            }
        }
    })?;
    let all_quantized = results[0].0;
    let mut layers: Vec<LayerSensitivity> = Vec::new();
    let mut rest = tasks.iter().zip(&results).skip(1).peekable();
    while let Some((&(Some(i), _), &(only, err))) = rest.next() {
        let all_but = match rest.peek() {
            Some(((Some(j), false), _)) if *j == i => rest.next().map(|(_, r)| r.0),
            _ => None,
        };
        let l = &setup.layers[i];
        let err = err.unwrap_or(LayerError {
            sqnr_db: f64::NAN,
            cosine: f64::NAN,
        });
        layers.push(LayerSensitivity {
            rank: 0,
            layer: l.name.clone(),
            op_type: l.op_type.clone(),
            params: l.params,
            only,
            all_but,
            sqnr_db: err.sqnr_db,
            cosine: err.cosine,
        });
    }
    rank(&mut layers);
    Ok(SensitivityReport {
        model: setup.model.display().to_string(),
        precision: config.label.clone(),
        split: setup.split.clone(),
        samples: setup.data.len(),
        ranges: setup.ranges_note.clone(),
        fp32: setup.fp32,
        all_quantized,
        layers,
        skipped: skipped
            .into_iter()
            .map(|i| {
                (
                    setup.layers[i].name.clone(),
                    format!(
                        "{} has no {} form ORT runs",
                        setup.layers[i].op_type, config.label
                    ),
                )
            })
            .collect(),
        jobs,
    })
}

/// Orders most sensitive first (larger drop, then larger KL; graph order on ties) and numbers
/// the ranks from 1.
pub fn rank(layers: &mut [LayerSensitivity]) {
    // A stable sort keeps graph order for exact ties.
    layers.sort_by(|a, b| {
        b.only
            .drop
            .total_cmp(&a.only.drop)
            .then(b.only.kl.total_cmp(&a.only.kl))
    });
    for (r, l) in layers.iter_mut().enumerate() {
        l.rank = r + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, drop: f64, kl: f64) -> LayerSensitivity {
        LayerSensitivity {
            rank: 0,
            layer: name.into(),
            op_type: "Gemm".into(),
            params: 1,
            only: Score {
                accuracy: None,
                agreement: 1.0 - drop,
                kl,
                drop,
            },
            all_but: None,
            sqnr_db: 30.0,
            cosine: 1.0,
        }
    }

    #[test]
    fn rank_orders_by_drop_then_kl_then_graph_order() {
        let mut l = vec![
            layer("a", 0.0, 0.1),
            layer("b", 0.01, 0.0),
            layer("c", 0.0, 0.2),
            layer("d", 0.0, 0.1),
        ];
        rank(&mut l);
        let names: Vec<&str> = l.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["b", "c", "a", "d"]);
        assert_eq!(l[3].rank, 4);
    }
}
