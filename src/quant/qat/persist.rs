//! Saving a [`QatResult`] as one ONNX file: the trained graph, with the quantization parameters
//! and the training history as JSON in its `metadata_props` under [`METADATA_KEY`], so that a
//! later export or evaluation reads everything back from the same file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::onnx;
use crate::quant::qat::{QatError, QatResult, StepRecord, WeightBits, WeightQuant};

/// The `metadata_props` key holding the quantization parameters.
pub const METADATA_KEY: &str = "quench.qat";

/// What the metadata entry holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    input: String,
    output: String,
    bits: WeightBits,
    activation_ranges: BTreeMap<String, (f32, f32)>,
    weights: BTreeMap<String, WeightQuant>,
    history: Vec<StepRecord>,
}

impl QatResult {
    /// Writes the trained graph to `path` with the quantization parameters in its metadata.
    pub fn save(&self, path: &Path) -> Result<(), QatError> {
        let stored = Stored {
            input: self.input.clone(),
            output: self.output.clone(),
            bits: self.bits,
            activation_ranges: self.activation_ranges.clone(),
            weights: self.weights.clone(),
            history: self.history.clone(),
        };
        let json = serde_json::to_string(&stored).map_err(|e| QatError::Metadata {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut graph = self.graph.clone();
        graph.metadata.insert(METADATA_KEY.into(), json);
        onnx::save(&graph, path)?;
        Ok(())
    }

    /// Reads a file written by [`QatResult::save`].
    pub fn load(path: &Path) -> Result<QatResult, QatError> {
        let mut graph = onnx::load(path)?;
        let json = graph
            .metadata
            .remove(METADATA_KEY)
            .ok_or_else(|| QatError::Metadata {
                path: path.to_path_buf(),
                message: format!("no `{METADATA_KEY}` metadata: not saved by QAT"),
            })?;
        let s: Stored = serde_json::from_str(&json).map_err(|e| QatError::Metadata {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(QatResult {
            graph,
            input: s.input,
            output: s.output,
            activation_ranges: s.activation_ranges,
            weights: s.weights,
            bits: s.bits,
            history: s.history,
        })
    }
}
