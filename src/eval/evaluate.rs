//! Running a dataset through a runtime: batches in, one output gathered, top-1 accuracy against
//! labels when the split has them.

use std::time::{Duration, Instant};

use crate::eval::dataset::Dataset;
use crate::eval::error::DataError;
use crate::eval::manifest::OutputSpec;
use crate::eval::metrics::{self, MetricError};
use crate::runtime::{Runtime, RuntimeError};
use crate::tensor::Tensor;

/// What one pass over a dataset gave.
#[derive(Debug, Clone)]
pub struct EvalResult {
    /// Samples run.
    pub samples: usize,
    /// Samples whose top-1 class equals the label (with labels only).
    pub correct: Option<usize>,
    /// `correct / samples` (with labels only).
    pub accuracy: Option<f64>,
    /// The chosen output of every sample, `[samples, ...]` f32, kept for agreement and KL.
    pub outputs: Tensor,
    /// Wall-clock time of the whole pass, preprocessing included.
    pub wall_time: Duration,
}

/// A pass over a dataset that failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A batch could not be built.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The outputs could not be scored.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// The manifest names an output the model does not have.
    #[error("output `{name}` is not among the model's outputs {outputs:?}")]
    NoSuchOutput {
        /// The name asked for.
        name: String,
        /// The model's outputs.
        outputs: Vec<String>,
    },
    /// The runtime's outputs are not what a classifier gives.
    #[error("{runtime} output {index}: {message}")]
    Output {
        /// The runtime's name.
        runtime: &'static str,
        /// Index of the output among the graph's outputs.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// Index of the output `spec` names among a model's `outputs` (the first when it names none).
pub fn output_index(spec: &OutputSpec, outputs: &[String]) -> Result<usize, EvalError> {
    match &spec.name {
        None if !outputs.is_empty() => Ok(0),
        None => Err(EvalError::NoSuchOutput {
            name: "(first)".into(),
            outputs: Vec::new(),
        }),
        Some(name) => {
            outputs
                .iter()
                .position(|o| o == name)
                .ok_or_else(|| EvalError::NoSuchOutput {
                    name: name.clone(),
                    outputs: outputs.to_vec(),
                })
        }
    }
}

/// Runs every sample of `dataset` through `runtime` in batches of `batch` (the last smaller),
/// keeps graph output number `output` (0 = first; a caller resolves a manifest's output name to
/// its index) and scores top-1 accuracy when the dataset has labels.
pub fn evaluate(
    runtime: &mut dyn Runtime,
    dataset: &Dataset,
    batch: usize,
    output: usize,
) -> Result<EvalResult, EvalError> {
    let start = Instant::now();
    let bad = |runtime: &dyn Runtime, message: String| EvalError::Output {
        runtime: runtime.name(),
        index: output,
        message,
    };
    let mut values: Vec<f32> = Vec::new();
    let mut sample_shape: Option<Vec<usize>> = None;
    for input in dataset.batches(batch) {
        let input = input?;
        let rows = input.shape()[0];
        let mut outs = runtime.run(&[(dataset.input_name(), &input)])?;
        let count = outs.len();
        if output >= count {
            return Err(bad(
                &*runtime,
                format!("the model has only {count} output(s)"),
            ));
        }
        let out = outs.swap_remove(output);
        let (shape, data) = (
            out.shape().to_vec(),
            out.as_f32().map_err(MetricError::from)?,
        );
        if shape.first() != Some(&rows) {
            return Err(bad(
                &*runtime,
                format!("shape {shape:?} does not start with the batch size {rows}"),
            ));
        }
        match &sample_shape {
            Some(s) if s[..] != shape[1..] => {
                return Err(bad(
                    &*runtime,
                    format!("per-sample shape changed from {s:?} to {:?}", &shape[1..]),
                ))
            }
            Some(_) => {}
            None => sample_shape = Some(shape[1..].to_vec()),
        }
        values.extend_from_slice(data);
    }
    let mut shape = vec![dataset.len()];
    shape.extend(sample_shape.unwrap_or_default());
    let outputs = Tensor::from_f32(shape, values).map_err(MetricError::from)?;
    let scored = match dataset.labels() {
        Some(labels) => Some(metrics::accuracy(&metrics::top1(&outputs)?, labels)?),
        None => None,
    };
    Ok(EvalResult {
        samples: dataset.len(),
        correct: scored.map(|a| a.correct),
        accuracy: scored.map(|a| a.fraction),
        outputs,
        wall_time: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_index_resolves_names_and_defaults_to_first() {
        let outs = vec!["probs".to_string(), "logits".to_string()];
        let mut spec = OutputSpec::default();
        assert_eq!(output_index(&spec, &outs).unwrap(), 0);
        spec.name = Some("logits".into());
        assert_eq!(output_index(&spec, &outs).unwrap(), 1);
        spec.name = Some("scores".into());
        let err = output_index(&spec, &outs).unwrap_err().to_string();
        assert!(err.contains("`scores`") && err.contains("logits"), "{err}");
        assert!(output_index(&OutputSpec::default(), &[]).is_err());
    }
}
