//! Quantization schemes as serde data: what precision each layer gets and how its scales are
//! found. A [`Scheme`] is a default [`Precision`] plus ordered per-layer [`Override`]s, which is
//! how mixed precision (keep a layer in FP32, give it INT8 while the rest is 4-bit) is written.

use serde::{Deserialize, Serialize};

use crate::quant::QuantError;

/// Integer type of quantized activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActType {
    /// Unsigned 8-bit, `[0, 255]`.
    U8,
    /// Signed 8-bit, `[-128, 127]` (`[-127, 127]` when symmetric, as ORT does).
    S8,
}

/// How INT8 weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightQuant {
    /// One scale per output channel (`true`) or one per tensor.
    pub per_channel: bool,
    /// Symmetric s8 in `[-127, 127]` with zero point 0 (`true`, ORT's default), or asymmetric s8
    /// with a zero point.
    pub symmetric: bool,
}

/// How INT8 activations are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActQuant {
    /// Integer type.
    pub dtype: ActType,
    /// Range made symmetric around 0 (zero point 0 for s8, 128 for u8).
    pub symmetric: bool,
}

/// How activation ranges are found from calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum Calibration {
    /// Smallest and largest value seen.
    MinMax,
    /// The central `percentile`% of a histogram of the values (e.g. 99.99).
    Percentile {
        /// Percent of the mass kept, in `(0, 100]`.
        percentile: f64,
        /// Histogram bins before any growth.
        num_bins: usize,
    },
    /// The clipping threshold minimising the KL divergence between the histogram and its
    /// quantized version (TensorRT's method, as ORT's `EntropyCalibrater` computes it).
    Entropy {
        /// Histogram bins before any growth.
        num_bins: usize,
        /// Levels the quantized distribution is merged into (ORT: 128).
        num_quantized_bins: usize,
    },
    /// The symmetric clipping threshold minimising the expected squared quantization error
    /// over the histogram.
    Mse {
        /// Histogram bins before any growth.
        num_bins: usize,
    },
}

/// When activation scales are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Int8Mode {
    /// Scales from calibration, stored in the model (QDQ).
    Static {
        /// How ranges are calibrated.
        calibration: Calibration,
        /// Each layer's float bias corrected for the mean shift quantization causes in its
        /// output channels, measured on calibration data (see [`crate::quant::bias`]; done by
        /// [`crate::quant::pipeline`], which needs the data). Absent in JSON: `false`, as
        /// models exported before it existed were made.
        #[serde(default)]
        bias_correction: bool,
    },
    /// Scales computed per run from each activation's min/max (u8 activations only, as ONNX's
    /// `DynamicQuantizeLinear` defines).
    Dynamic,
}

/// What a layer is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "precision", rename_all = "lowercase", deny_unknown_fields)]
pub enum Precision {
    /// Left as it is.
    Fp32,
    /// 8-bit weights and activations.
    Int8 {
        /// Weight quantization.
        weights: WeightQuant,
        /// Activation quantization.
        activations: ActQuant,
        /// Static (calibrated) or dynamic activation scales.
        mode: Int8Mode,
    },
    /// 4-bit weights in groups along K, FP32 activations (ORT `MatMulNBits`).
    Int4 {
        /// Weights per group: 32, 64 or 128.
        group_size: usize,
        /// Symmetric (implicit zero point 8) or with a zero point per group.
        symmetric: bool,
        /// `MatMulNBits`' `accuracy_level` (0-4; `None` leaves it out, ORT's default).
        accuracy_level: Option<i64>,
    },
    /// Weights `sign(W)·α` with `α` = mean |W| per output channel.
    Binary {
        /// Activations fed to the layer.
        activations: BinaryActs,
    },
}

/// Activations of a binary layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BinaryActs {
    /// `sign(x)` (ONNX `Sign`: 0 stays 0).
    Binary,
    /// INT8 through a calibrated QuantizeLinear/DequantizeLinear pair.
    Int8 {
        /// Activation quantization.
        activations: ActQuant,
        /// How ranges are calibrated.
        calibration: Calibration,
    },
}

/// Which layers an override applies to; every field given must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LayerMatch {
    /// Exact node name.
    pub node: Option<String>,
    /// Exact operator type (e.g. `Conv`).
    pub op_type: Option<String>,
}

impl LayerMatch {
    /// True when the node satisfies every field given (a match with no field matches nothing).
    pub fn matches(&self, node: &str, op_type: &str) -> bool {
        let given = self.node.is_some() || self.op_type.is_some();
        given
            && self.node.as_deref().is_none_or(|n| n == node)
            && self.op_type.as_deref().is_none_or(|o| o == op_type)
    }
}

/// A per-layer exception to the default precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Layers it applies to.
    #[serde(rename = "match")]
    pub layers: LayerMatch,
    /// Their precision instead of the default.
    pub precision: Precision,
}

/// A whole-model quantization scheme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheme {
    /// Precision of every quantizable layer no override names.
    pub default: Precision,
    /// Exceptions, first match wins.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// Default histogram size of the histogram calibrators.
pub const DEFAULT_BINS: usize = 2048;

impl Scheme {
    /// Asks for bias correction (or not) on every static INT8 layer, by default and in every
    /// override: how `--bias-correction` sets it, and how the export records that a correction
    /// was dropped.
    pub fn set_bias_correction(&mut self, on: bool) {
        let layers = std::iter::once(&mut self.default)
            .chain(self.overrides.iter_mut().map(|o| &mut o.precision));
        for precision in layers {
            if let Precision::Int8 {
                mode: Int8Mode::Static {
                    bias_correction, ..
                },
                ..
            } = precision
            {
                *bias_correction = on;
            }
        }
    }

    /// INT8 static QDQ: u8 asymmetric activations (the classic QDQ choice, which every ORT
    /// integer kernel takes; ORT 1.32's `quantize_static` now defaults to s8 asymmetric, set
    /// `activations.dtype` for that), symmetric s8 weights; `per_channel` and the calibration
    /// as asked; no bias correction (set `bias_correction` in [`Int8Mode::Static`] for it).
    pub fn int8_static(per_channel: bool, calibration: Calibration) -> Scheme {
        Scheme::uniform(Precision::Int8 {
            weights: WeightQuant {
                per_channel,
                symmetric: true,
            },
            activations: ActQuant {
                dtype: ActType::U8,
                symmetric: false,
            },
            mode: Int8Mode::Static {
                calibration,
                bias_correction: false,
            },
        })
    }

    /// INT8 dynamic as ORT's `quantize_dynamic` defaults it (u8 activations, symmetric
    /// per-tensor s8 weights).
    pub fn int8_dynamic() -> Scheme {
        Scheme::uniform(Precision::Int8 {
            weights: WeightQuant {
                per_channel: false,
                symmetric: true,
            },
            activations: ActQuant {
                dtype: ActType::U8,
                symmetric: false,
            },
            mode: Int8Mode::Dynamic,
        })
    }

    /// 4-bit weight-only with the given group size.
    pub fn int4(group_size: usize, symmetric: bool) -> Scheme {
        Scheme::uniform(Precision::Int4 {
            group_size,
            symmetric,
            accuracy_level: None,
        })
    }

    /// One precision for every layer, no overrides.
    pub fn uniform(default: Precision) -> Scheme {
        Scheme {
            default,
            overrides: Vec::new(),
        }
    }

    /// Parses a scheme from JSON and checks it ([`Scheme::validate`]).
    pub fn from_json(text: &str) -> Result<Scheme, QuantError> {
        let scheme: Scheme =
            serde_json::from_str(text).map_err(|e| QuantError::Scheme(e.to_string()))?;
        scheme.validate()?;
        Ok(scheme)
    }

    /// The scheme as compact JSON (what exported models carry in their metadata).
    pub fn to_json(&self) -> String {
        // A Scheme holds only strings, numbers, booleans and enums: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The precision of the layer `node` of type `op_type`: the first matching override's, else
    /// the default.
    pub fn precision_for(&self, node: &str, op_type: &str) -> &Precision {
        self.resolve(node, op_type).0
    }

    /// Like [`Scheme::precision_for`], also saying whether an override named the layer (an
    /// explicit request the layer cannot take is an error; the default is applied where it can).
    pub fn resolve(&self, node: &str, op_type: &str) -> (&Precision, bool) {
        match self
            .overrides
            .iter()
            .find(|o| o.layers.matches(node, op_type))
        {
            Some(o) => (&o.precision, true),
            None => (&self.default, false),
        }
    }

    /// Checks every precision's parameters (group sizes, percentiles, bin counts, dynamic u8).
    pub fn validate(&self) -> Result<(), QuantError> {
        for o in &self.overrides {
            if o.layers.node.is_none() && o.layers.op_type.is_none() {
                return Err(QuantError::Scheme(
                    "an override must name a node or an op_type".into(),
                ));
            }
        }
        std::iter::once(&self.default)
            .chain(self.overrides.iter().map(|o| &o.precision))
            .try_for_each(Precision::validate)
    }
}

impl Precision {
    /// Checks this precision's parameters.
    pub fn validate(&self) -> Result<(), QuantError> {
        let bad = |m: String| Err(QuantError::Scheme(m));
        match self {
            Precision::Fp32 => Ok(()),
            Precision::Int8 {
                activations, mode, ..
            } => match mode {
                Int8Mode::Dynamic if activations.dtype != ActType::U8 || activations.symmetric => {
                    bad("dynamic INT8 needs asymmetric u8 activations (DynamicQuantizeLinear produces only those)".into())
                }
                Int8Mode::Dynamic => Ok(()),
                Int8Mode::Static { calibration, .. } => calibration.validate(),
            },
            Precision::Int4 {
                group_size,
                accuracy_level,
                ..
            } => {
                if ![32, 64, 128].contains(group_size) {
                    return bad(format!("4-bit group size {group_size} is not 32, 64 or 128"));
                }
                match accuracy_level {
                    Some(l) if !(0..=4).contains(l) => {
                        bad(format!("accuracy_level {l} is not in 0..=4"))
                    }
                    _ => Ok(()),
                }
            }
            Precision::Binary { activations } => match activations {
                BinaryActs::Binary => Ok(()),
                BinaryActs::Int8 { calibration, .. } => calibration.validate(),
            },
        }
    }

    /// The calibration this precision needs for its input activation, if any.
    pub fn calibration(&self) -> Option<(ActQuant, Calibration)> {
        match *self {
            Precision::Int8 {
                activations,
                mode: Int8Mode::Static { calibration, .. },
                ..
            }
            | Precision::Binary {
                activations:
                    BinaryActs::Int8 {
                        activations,
                        calibration,
                    },
            } => Some((activations, calibration)),
            _ => None,
        }
    }
}

impl Calibration {
    /// Checks the percentile and bin counts.
    pub fn validate(&self) -> Result<(), QuantError> {
        let bins_ok = |n: usize| (2..=1 << 16).contains(&n) && n.is_multiple_of(2);
        let ok = match *self {
            Calibration::MinMax => true,
            Calibration::Percentile {
                percentile,
                num_bins,
            } => percentile > 0.0 && percentile <= 100.0 && bins_ok(num_bins),
            Calibration::Entropy {
                num_bins,
                num_quantized_bins,
            } => bins_ok(num_bins) && num_quantized_bins >= 2 && num_quantized_bins <= num_bins,
            Calibration::Mse { num_bins } => bins_ok(num_bins),
        };
        if ok {
            Ok(())
        } else {
            Err(QuantError::Scheme(format!(
                "calibration {self:?}: percentile must be in (0, 100], bin counts even in 2..=65536, quantized bins in 2..=bins"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_unknown_fields_refused() {
        let s = Scheme {
            default: Precision::Int4 {
                group_size: 32,
                symmetric: true,
                accuracy_level: Some(4),
            },
            overrides: vec![Override {
                layers: LayerMatch {
                    node: None,
                    op_type: Some("Conv".into()),
                },
                precision: Scheme::int8_static(
                    true,
                    Calibration::Entropy {
                        num_bins: 2048,
                        num_quantized_bins: 128,
                    },
                )
                .default,
            }],
        };
        let text = s.to_json();
        assert_eq!(Scheme::from_json(&text).unwrap(), s);
        let extra = text.replacen("\"symmetric\":true", "\"symmetric\":true,\"sym\":1", 1);
        assert!(Scheme::from_json(&extra).is_err(), "{extra}");
        let err = Scheme::from_json(r#"{"default":{"precision":"int2"}}"#).unwrap_err();
        assert!(err.to_string().contains("int2"), "{err}");
    }

    #[test]
    fn bias_correction_is_set_on_every_static_int8_layer_only() {
        let mut s = Scheme::int4(32, true);
        let static_int8 = Scheme::int8_static(true, Calibration::MinMax).default;
        for (node, precision) in [("a", static_int8), ("b", Scheme::int8_dynamic().default)] {
            s.overrides.push(Override {
                layers: LayerMatch {
                    node: Some(node.into()),
                    op_type: None,
                },
                precision,
            });
        }
        let before = s.clone();
        s.set_bias_correction(true);
        let json = s.to_json();
        assert_eq!(
            json.matches("\"bias_correction\":true").count(),
            1,
            "{json}"
        );
        assert_eq!(s.overrides[1], before.overrides[1]);
        assert_eq!(s.default, before.default);
        s.set_bias_correction(false);
        assert_eq!(s, before);
    }

    #[test]
    fn overrides_pick_the_first_match_and_validate() {
        let mut s = Scheme::int4(64, false);
        s.overrides.push(Override {
            layers: LayerMatch {
                node: Some("fc2".into()),
                op_type: None,
            },
            precision: Precision::Fp32,
        });
        assert_eq!(s.precision_for("fc2", "Gemm"), &Precision::Fp32);
        assert!(matches!(
            s.precision_for("fc1", "Gemm"),
            Precision::Int4 { .. }
        ));
        assert!(Scheme::int4(48, true).validate().is_err());
        let mut dynamic_s8 = Scheme::int8_dynamic();
        if let Precision::Int8 { activations, .. } = &mut dynamic_s8.default {
            activations.dtype = ActType::S8;
        }
        assert!(dynamic_s8.validate().is_err());
        let pct = Scheme::int8_static(
            false,
            Calibration::Percentile {
                percentile: 101.0,
                num_bins: 2048,
            },
        );
        assert!(pct.validate().is_err());
        s.overrides.push(Override {
            layers: LayerMatch::default(),
            precision: Precision::Fp32,
        });
        assert!(s.validate().is_err());
    }
}
