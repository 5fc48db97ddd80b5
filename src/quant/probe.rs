//! Calibration plumbing: which activation tensors a scheme needs ranges for, a graph rewrite
//! that exposes them as extra outputs (so any runtime, ORT included, yields the FP32 values of
//! intermediate tensors; useful for cross-runtime drift too), and a set of calibrators fed
//! batch by batch that checks every batch has the shape the first one had.

use std::collections::BTreeMap;

use crate::graph::{Graph, ValueInfo};
use crate::quant::calibrate::{CalibratedRange, Calibrator};
use crate::quant::layer::{is_quantizable, quantized_output};
use crate::quant::scheme::{ActQuant, Calibration, Int8Mode, Precision};
use crate::quant::{QuantError, Scheme};
use crate::tensor::{DataType, Tensor};

/// An activation tensor that needs a calibrated range: the input of every layer with static
/// INT8 (or binary with INT8) activations, and the output of every static INT8 layer (after
/// its Relu, see [`quantized_output`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSite {
    /// The tensor.
    pub tensor: String,
    /// Layers reading it as their quantized input.
    pub layers: Vec<String>,
    /// The grid its range is for.
    pub activations: ActQuant,
    /// How its range is found.
    pub calibration: Calibration,
}

/// The tensors `scheme` needs ranges for in `graph`, in first-use order. Fails naming the
/// tensor when two layers reading it ask for different calibrations.
pub fn calibration_sites(
    graph: &Graph,
    scheme: &Scheme,
) -> Result<Vec<CalibrationSite>, QuantError> {
    let mut sites: Vec<CalibrationSite> = Vec::new();
    for node in graph.nodes.iter().filter(|n| is_quantizable(n)) {
        let Some((activations, calibration)) = scheme
            .precision_for(&node.name, &node.op_type)
            .calibration()
        else {
            continue;
        };
        let Some(input) = node.input(0) else {
            continue;
        };
        // Static INT8 layers also quantize their output, so ORT can fuse DQ→op→Q into one
        // integer kernel.
        let output = match scheme.precision_for(&node.name, &node.op_type) {
            Precision::Int8 {
                mode: Int8Mode::Static { .. },
                ..
            } => quantized_output(graph, node),
            _ => None,
        };
        for tensor in std::iter::once(input).chain(output) {
            match sites.iter_mut().find(|s| s.tensor == tensor) {
                Some(s) if s.calibration != calibration || s.activations != activations => {
                    return Err(QuantError::Calibration {
                        name: tensor.to_string(),
                        message: format!(
                            "layers `{}` and `{}` read it with different calibrations",
                            s.layers[0], node.name
                        ),
                    })
                }
                Some(s) => s.layers.push(node.name.clone()),
                None => sites.push(CalibrationSite {
                    tensor: tensor.to_string(),
                    layers: vec![node.name.clone()],
                    activations,
                    calibration,
                }),
            }
        }
    }
    Ok(sites)
}

/// A copy of `graph` whose outputs also include `tensors` (f32, shape left to the runtime);
/// tensors already declared outputs are not repeated. Fails naming a tensor no node produces
/// and no graph input declares.
pub fn expose(graph: &Graph, tensors: &[String]) -> Result<Graph, QuantError> {
    let mut out = graph.clone();
    for t in tensors {
        if out.is_output(t) {
            continue;
        }
        let known = graph.inputs.iter().any(|i| &i.name == t)
            || graph.nodes.iter().any(|n| n.outputs.contains(t));
        if !known {
            return Err(QuantError::graph(
                t,
                "no node produces this value and it is not a graph input",
            ));
        }
        out.outputs.push(ValueInfo {
            name: t.clone(),
            dtype: DataType::F32,
            shape: None,
        });
    }
    Ok(out)
}

/// One calibrator per site, fed whole activation tensors `[batch, ...]`.
#[derive(Debug, Clone)]
pub struct Calibrators {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    calibrator: Calibrator,
    activations: ActQuant,
    sample_shape: Option<Vec<usize>>,
}

impl Calibrators {
    /// Calibrators for `sites`.
    pub fn new(sites: &[CalibrationSite]) -> Result<Calibrators, QuantError> {
        let mut entries = BTreeMap::new();
        for s in sites {
            entries.insert(
                s.tensor.clone(),
                Entry {
                    calibrator: Calibrator::new(&s.tensor, s.calibration)?,
                    activations: s.activations,
                    sample_shape: None,
                },
            );
        }
        Ok(Calibrators { entries })
    }

    /// Adds one batch of `tensor`'s values. Fails naming the tensor when it is not a site, not
    /// f32, or its per-sample shape differs from the first batch's.
    pub fn observe(&mut self, tensor: &str, value: &Tensor) -> Result<(), QuantError> {
        let data = value.as_f32().map_err(|_| QuantError::Calibration {
            name: tensor.to_string(),
            message: format!("values are {}, not f32", value.dtype()),
        })?;
        self.observe_values(tensor, value.shape(), data)
    }

    /// Adds one batch of `tensor`'s values given as a shape and borrowed f32 data (what the
    /// native engine's observer hands out). Fails like [`Calibrators::observe`].
    pub fn observe_values(
        &mut self,
        tensor: &str,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(), QuantError> {
        let bad = |m: String| QuantError::Calibration {
            name: tensor.to_string(),
            message: m,
        };
        let e = self
            .entries
            .get_mut(tensor)
            .ok_or_else(|| bad("is not a tensor being calibrated".into()))?;
        let sample = shape.get(1..).unwrap_or_default().to_vec();
        match &e.sample_shape {
            Some(s) if *s != sample => {
                return Err(bad(format!(
                    "batch of shape {shape:?} does not match the earlier per-sample shape {s:?}"
                )))
            }
            Some(_) => {}
            None => e.sample_shape = Some(sample),
        }
        e.calibrator.observe(data)
    }

    /// The tensors being calibrated.
    pub fn tensors(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every site's calibrated range.
    pub fn ranges(&self) -> Result<BTreeMap<String, CalibratedRange>, QuantError> {
        self.entries
            .iter()
            .map(|(k, e)| Ok((k.clone(), e.calibrator.range(e.activations)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testing::{self, node};
    use crate::quant::scheme::{LayerMatch, Override};

    fn graph() -> Graph {
        let n = |op: &str, name: &str, i: &[&str], o: &str| node(op, name, i, &[o]);
        testing::graph(
            13,
            vec![
                n("MatMul", "a", &["x", "w1"], "h"),
                n("Relu", "r", &["h"], "h2"),
                n("MatMul", "b", &["h2", "w2"], "y"),
            ],
            Vec::new(),
        )
    }

    #[test]
    fn sites_follow_the_scheme_and_expose_adds_outputs() {
        let mut scheme = Scheme::int8_static(false, Calibration::MinMax);
        scheme.overrides.push(Override {
            layers: LayerMatch {
                node: Some("b".into()),
                op_type: None,
            },
            precision: Precision::Fp32,
        });
        let sites = calibration_sites(&graph(), &scheme).unwrap();
        let tensors: Vec<&str> = sites.iter().map(|s| s.tensor.as_str()).collect();
        // a's input, and its output quantized after the Relu that is its only reader.
        assert_eq!(tensors, ["x", "h2"]);
        assert_eq!(sites[1].layers, ["a"]);
        let g = expose(&graph(), &["h2".into(), "y".into()]).unwrap();
        let outs: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, ["y", "h2"]);
        let err = expose(&graph(), &["nope".into()]).unwrap_err();
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn calibrators_refuse_a_batch_of_another_shape() {
        let scheme = Scheme::int8_static(false, Calibration::MinMax);
        let sites = calibration_sites(&graph(), &scheme).unwrap();
        let mut c = Calibrators::new(&sites).unwrap();
        let t = |shape: Vec<usize>| {
            let n = shape.iter().product();
            Tensor::from_f32(shape, (0..n).map(|i| i as f32).collect()).unwrap()
        };
        c.observe("h2", &t(vec![2, 3])).unwrap();
        c.observe("h2", &t(vec![5, 3])).unwrap();
        let err = c.observe("h2", &t(vec![2, 4])).unwrap_err().to_string();
        assert!(err.contains("`h2`") && err.contains("[2, 4]"), "{err}");
        assert!(c.observe("h", &t(vec![1])).is_err()); // not a site
        let err = c.ranges().unwrap_err().to_string();
        assert!(err.contains("`x`") && err.contains("no values"), "{err}");
        c.observe("x", &t(vec![1, 1])).unwrap();
        c.observe("y", &t(vec![1, 1])).unwrap(); // b's output: a graph output, no Relu
        let r = c.ranges().unwrap()["h2"];
        assert_eq!((r.min, r.max), (0.0, 14.0));
    }
}
