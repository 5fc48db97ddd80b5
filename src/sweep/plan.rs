//! The plan of a sweep: the profile's matrix expanded into cells, combinations that make no
//! sense left out with their reason, and the cells ordered so that each quantized variant is
//! built once and then run on every runtime, thread count and batch size.

use crate::quant::pipeline::{self, CalibratorKind, Target};
use crate::runtime::RuntimeKind;
use crate::sweep::event::Dropped;
use crate::sweep::profile::Profile;
use crate::sweep::record::{CellKey, Method, Precision};

/// One model variant to build: a model at a precision by a method.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSpec {
    /// Index of the model in [`Profile::models`].
    pub model: usize,
    /// Weight precision.
    pub precision: Precision,
    /// Method (`None` for FP32).
    pub method: Method,
    /// Range rule, for static variants.
    pub calibrator: Option<CalibratorKind>,
    /// Group size, for 4-bit variants.
    pub group: Option<usize>,
}

impl VariantSpec {
    /// The quantizer's target precision, `None` for FP32.
    pub fn target(&self) -> Option<Target> {
        match self.precision {
            Precision::Fp32 => None,
            Precision::Int8 => Some(Target::Int8),
            Precision::Int4 => Some(Target::Int4),
            Precision::Binary => Some(Target::Binary),
        }
    }

    /// The quantizer's method, `None` for FP32.
    pub fn pipeline_method(&self) -> Option<pipeline::Method> {
        pipeline_method(self.method)
    }

    /// A file name for the variant: `mnist-cnn.int8-static-minmax.onnx`.
    pub fn file_name(&self, model: &str) -> String {
        let mut name = format!("{model}.{}-{}", self.precision.name(), self.method.name());
        if let Some(c) = self.calibrator {
            name.push_str(&format!("-{}", c.name()));
        }
        if let Some(g) = self.group {
            name.push_str(&format!("-g{g}"));
        }
        name + ".onnx"
    }
}

fn pipeline_method(method: Method) -> Option<pipeline::Method> {
    match method {
        Method::None => None,
        Method::Dynamic => Some(pipeline::Method::Dynamic),
        Method::Static => Some(pipeline::Method::Static),
        Method::WeightOnly => Some(pipeline::Method::WeightOnly),
        Method::Qat => Some(pipeline::Method::Qat),
    }
}

/// A cell of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCell {
    /// What it measures.
    pub key: CellKey,
    /// Index of its variant in [`Plan::variants`].
    pub variant: usize,
}

/// The expanded, ordered matrix.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Variants, in build order.
    pub variants: Vec<VariantSpec>,
    /// Cells, grouped by variant.
    pub cells: Vec<PlannedCell>,
    /// Combinations left out, with reasons.
    pub dropped: Vec<Dropped>,
}

/// Why the plan has no cell.
#[derive(Debug, thiserror::Error)]
#[error("{profile}: every combination of the matrix was left out: {reasons}")]
pub struct EmptyPlan {
    /// The profile file.
    pub profile: String,
    /// The reasons, joined.
    pub reasons: String,
}

/// Why `precision` does not take `method`, or `None` when it does.
fn why_not(precision: Precision, method: Method) -> Option<String> {
    let target = match precision {
        Precision::Fp32 => return None,
        Precision::Int8 => Target::Int8,
        Precision::Int4 => Target::Int4,
        Precision::Binary => Target::Binary,
    };
    let m = pipeline_method(method)?;
    if target.methods().contains(&m) {
        return None;
    }
    let takes = target
        .methods()
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ");
    let why = match (precision, method) {
        (Precision::Int4, Method::Dynamic | Method::Static) => {
            "4-bit is weight-only (ONNX Runtime's MatMulNBits): activations stay FP32, so \
             there are no activation scales to compute at run time or to calibrate"
        }
        (Precision::Int8, Method::WeightOnly) => {
            "INT8 quantizes activations too; 8-bit weight-only is not a quench variant"
        }
        (Precision::Binary, Method::Dynamic) => {
            "binary weights run with calibrated INT8 activations; there is no dynamic form"
        }
        (Precision::Binary, Method::WeightOnly) => {
            "binary weights are exported with INT8 activations; there is no weight-only form"
        }
        _ => "not a combination the quantizer makes",
    };
    Some(format!("{why} ({} takes {takes})", precision.name()))
}

/// Expands `profile` into a plan. `cores` is the machine's core count: thread counts above it
/// are left out (they would time the threads' contention, not the model).
pub fn plan(profile: &Profile, cores: usize) -> Result<Plan, EmptyPlan> {
    let mut dropped = Vec::new();
    let mut drop = |what: String, reason: String| {
        if !dropped.iter().any(|d: &Dropped| d.what == what) {
            dropped.push(Dropped { what, reason });
        }
    };
    let threads: Vec<usize> = profile
        .threads
        .iter()
        .copied()
        .filter(|&t| {
            let keep = t <= cores.max(1);
            if !keep {
                drop(
                    format!("threads {t}"),
                    format!("this machine has {cores} core(s)"),
                );
            }
            keep
        })
        .collect();
    if profile.precisions.contains(&Precision::Fp32) && !profile.methods.is_empty() {
        drop(
            format!(
                "fp32 × {}",
                profile
                    .methods
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            "FP32 is the model itself: one fp32 variant per model, no method".into(),
        );
    }
    let mut variants = Vec::new();
    for (mi, model) in profile.models.iter().enumerate() {
        let has_calibration = model.manifest.data.calibration.is_some();
        for &precision in &profile.precisions {
            if precision == Precision::Fp32 {
                variants.push(VariantSpec {
                    model: mi,
                    precision,
                    method: Method::None,
                    calibrator: None,
                    group: None,
                });
                continue;
            }
            for &method in &profile.methods {
                if let Some(reason) = why_not(precision, method) {
                    drop(format!("{} {}", precision.name(), method.name()), reason);
                    continue;
                }
                if !has_calibration {
                    drop(
                        format!("{} {} {}", model.name(), precision.name(), method.name()),
                        "the model's manifest has no [data.calibration] split to calibrate, \
                         train or measure the layer errors on"
                            .into(),
                    );
                    continue;
                }
                let calibrators: Vec<Option<CalibratorKind>> = if method == Method::Static {
                    profile.calibrators.iter().copied().map(Some).collect()
                } else {
                    vec![None]
                };
                let groups: Vec<Option<usize>> = if precision == Precision::Int4 {
                    profile.groups.iter().copied().map(Some).collect()
                } else {
                    vec![None]
                };
                for &calibrator in &calibrators {
                    for &group in &groups {
                        variants.push(VariantSpec {
                            model: mi,
                            precision,
                            method,
                            calibrator,
                            group,
                        });
                    }
                }
            }
        }
    }
    let mut cells = Vec::new();
    for (vi, v) in variants.iter().enumerate() {
        for &runtime in &ordered_runtimes(&profile.runtimes) {
            for &t in &threads {
                for &batch in &profile.batches {
                    cells.push(PlannedCell {
                        key: CellKey {
                            model: profile.models[v.model].name().to_string(),
                            precision: v.precision,
                            method: v.method,
                            runtime,
                            threads: t,
                            batch,
                            calibrator: v.calibrator.map(|c| c.name().to_string()),
                            group: v.group,
                        },
                        variant: vi,
                    });
                }
            }
        }
    }
    if cells.is_empty() {
        return Err(EmptyPlan {
            profile: profile.path.display().to_string(),
            reasons: dropped
                .iter()
                .map(|d| format!("{}: {}", d.what, d.reason))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(Plan {
        variants,
        cells,
        dropped,
    })
}

/// ONNX Runtime first (the reference the others are read against), then the rest as listed.
fn ordered_runtimes(runtimes: &[RuntimeKind]) -> Vec<RuntimeKind> {
    let mut order = runtimes.to_vec();
    order.sort_by_key(|r| *r != RuntimeKind::Ort);
    order
}
