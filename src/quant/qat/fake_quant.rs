//! Fake quantization: the forward rounds a value onto the grid it will have after quantization
//! and returns it as f32; the backward is the straight-through estimator (STE, Bengio, Léonard &
//! Courville 2013, "Estimating or propagating gradients through stochastic neurons"): the
//! gradient passes the rounding unchanged and is zeroed where the forward clamped.
//!
//! * Weights: per output channel, symmetric. `k`-bit: `s = max|w| / (2^(k-1) - 1)`,
//!   `q = clamp(round(w / s)) · s`, i.e. 127 for int8 and 7 for int4; the scale comes from the
//!   maximum so nothing clamps and every gradient passes. Binary: `q = sign(w) · α` with
//!   `α = mean|w|` per channel (XNOR-Net's BWN: Rastegari et al., ECCV 2016), and the STE of
//!   BinaryConnect / BNN (Courbariaux et al., NeurIPS 2015; Hubara et al., NeurIPS 2016): the
//!   gradient passes where `|w| ≤ 1` and is zeroed elsewhere. The gradient through `α` is not
//!   propagated (as in BinaryConnect).
//! * Activations: per tensor, asymmetric u8 over a range `[lo, hi]` widened to hold 0 (so that
//!   zero padding and ReLU zeros are exact): `s = (hi - lo) / 255`, `zp = round(-lo / s)`,
//!   `q = (clamp(round(x / s) + zp, 0, 255) - zp) · s`; the gradient is zeroed outside the
//!   representable interval. Rounding is half to even, as ONNX `QuantizeLinear` does.

use serde::{Deserialize, Serialize};

/// The precision fake-quantized weights have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightBits {
    /// Symmetric signed 8-bit, per output channel.
    Int8,
    /// Symmetric signed 4-bit (−7..7), per output channel.
    Int4,
    /// `±α` per output channel (1 bit plus one f32 scale per channel).
    Binary,
}

impl WeightBits {
    /// Bits per weight: 8, 4 or 1.
    pub fn bits(self) -> u8 {
        match self {
            WeightBits::Int8 => 8,
            WeightBits::Int4 => 4,
            WeightBits::Binary => 1,
        }
    }

    /// The largest quantized magnitude of a `k`-bit symmetric grid (1 for binary).
    fn qmax(self) -> f32 {
        match self {
            WeightBits::Int8 => 127.0,
            WeightBits::Int4 => 7.0,
            WeightBits::Binary => 1.0,
        }
    }
}

impl std::fmt::Display for WeightBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightBits::Int8 => "int8",
            WeightBits::Int4 => "int4",
            WeightBits::Binary => "binary",
        })
    }
}

/// Where the output channel of a weight element is: element `i` belongs to channel
/// `(i / inner) % channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelAxis {
    /// Number of output channels.
    pub channels: usize,
    /// Product of the dimensions after the channel axis.
    pub inner: usize,
}

impl ChannelAxis {
    fn of(&self, i: usize) -> usize {
        (i / self.inner) % self.channels
    }
}

/// Per-channel scales of `w` at `bits`: the grid step for `k`-bit, `α` for binary.
pub(crate) fn weight_scales(w: &[f32], axis: ChannelAxis, bits: WeightBits) -> Vec<f32> {
    let mut acc = vec![0.0f32; axis.channels];
    let mut count = vec![0usize; axis.channels];
    for (i, &v) in w.iter().enumerate() {
        let c = axis.of(i);
        match bits {
            WeightBits::Binary => acc[c] += v.abs(),
            _ => acc[c] = acc[c].max(v.abs()),
        }
        count[c] += 1;
    }
    acc.iter()
        .zip(&count)
        .map(|(&a, &n)| match bits {
            WeightBits::Binary => a / n.max(1) as f32,
            _ if a > 0.0 => a / bits.qmax(),
            // An all-zero channel: any scale represents it exactly.
            _ => 1.0,
        })
        .collect()
}

/// The fake-quantized weights and the per-channel scales used.
pub(crate) fn fake_quant_weights(
    w: &[f32],
    axis: ChannelAxis,
    bits: WeightBits,
) -> (Vec<f32>, Vec<f32>) {
    let scales = weight_scales(w, axis, bits);
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = scales[axis.of(i)];
            match bits {
                WeightBits::Binary => {
                    if v >= 0.0 {
                        s
                    } else {
                        -s
                    }
                }
                _ => (v / s).round_ties_even().clamp(-bits.qmax(), bits.qmax()) * s,
            }
        })
        .collect();
    (q, scales)
}

/// Applies the weight STE in place: `grad` (with respect to the fake-quantized weights) becomes
/// the gradient with respect to the latent FP32 weights `w`.
pub(crate) fn weight_ste(w: &[f32], bits: WeightBits, grad: &mut [f32]) {
    // k-bit grids take their scale from the channel maximum, so nothing clamps and the
    // gradient passes everywhere; binary clips to |w| ≤ 1.
    if bits == WeightBits::Binary {
        for (g, &v) in grad.iter_mut().zip(w) {
            if v.abs() > 1.0 {
                *g = 0.0;
            }
        }
    }
}

/// Scale and zero point of u8 activations over a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ActQuant {
    /// Real value of one step.
    pub scale: f32,
    /// The u8 code of real 0.
    pub zero_point: f32,
}

impl ActQuant {
    /// Parameters for values in `[lo, hi]`, the range first widened to contain 0.
    pub fn from_range(lo: f32, hi: f32) -> ActQuant {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
        ActQuant { scale, zero_point }
    }

    /// The u8 code of `x`, as f32.
    fn code(&self, x: f32) -> f32 {
        ((x / self.scale).round_ties_even() + self.zero_point).clamp(0.0, 255.0)
    }

    /// `x` rounded onto the u8 grid and back.
    pub fn apply(&self, x: f32) -> f32 {
        (self.code(x) - self.zero_point) * self.scale
    }

    /// Whether the STE passes the gradient at `x`: inside the representable interval.
    pub fn passes(&self, x: f32) -> bool {
        let lo = -self.zero_point * self.scale;
        let hi = (255.0 - self.zero_point) * self.scale;
        x >= lo && x <= hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: ChannelAxis = ChannelAxis {
        channels: 2,
        inner: 3,
    };

    #[test]
    fn int8_and_int4_are_per_channel_symmetric() {
        let w = [0.5, -1.27, 0.01, 0.875, 0.0625, -0.1875];
        let (q, s) = fake_quant_weights(&w, ROWS, WeightBits::Int8);
        assert_eq!(s, vec![1.27 / 127.0, 0.875 / 127.0]);
        assert!((q[0] - 50.0 * s[0]).abs() < 1e-7);
        assert!((q[1] + 1.27).abs() < 1e-6);
        assert!((q[2] - 0.01).abs() < 1e-6);
        let (q4, s4) = fake_quant_weights(&w, ROWS, WeightBits::Int4);
        assert_eq!(s4, vec![1.27 / 7.0, 0.125]);
        // 0.5 / 0.1814 = 2.76 -> 3 steps; 0.01 -> 0; 0.0625 / 0.125 = 0.5 -> 0 and
        // -0.1875 / 0.125 = -1.5 -> -2 (half to even).
        assert!((q4[0] - 3.0 * s4[0]).abs() < 1e-6);
        assert_eq!(q4[2], 0.0);
        assert_eq!(&q4[3..], &[0.875, 0.0, -0.25]);
        let mut g = vec![1.0f32; 6];
        weight_ste(&w, WeightBits::Int4, &mut g);
        assert_eq!(g, vec![1.0; 6]);
    }

    #[test]
    fn binary_is_sign_times_mean_abs_with_clipped_ste() {
        let w = [0.5, -1.5, 0.0, 0.25, -0.25, 0.1];
        let (q, s) = fake_quant_weights(&w, ROWS, WeightBits::Binary);
        assert_eq!(s, vec![2.0 / 3.0, 0.2]);
        assert_eq!(q, vec![2.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0, 0.2, -0.2, 0.2]);
        let mut g = vec![1.0; 6];
        weight_ste(&w, WeightBits::Binary, &mut g);
        assert_eq!(g, vec![1.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn activations_round_to_u8_grid_and_ste_clips() {
        let a = ActQuant::from_range(-1.0, 3.0);
        assert!((a.scale - 4.0 / 255.0).abs() < 1e-9);
        assert_eq!(a.zero_point, 64.0);
        assert_eq!(a.apply(0.0), 0.0);
        // Values on the grid stay; others move by at most half a step.
        for x in [-0.9f32, -0.3, 0.01, 1.7, 2.99] {
            let y = a.apply(x);
            assert!((y - x).abs() <= a.scale / 2.0 + 1e-6, "{x} -> {y}");
            assert!(a.passes(x));
        }
        // Outside the range: clamped forward, no gradient.
        assert!((a.apply(10.0) - 191.0 * a.scale).abs() < 1e-6);
        assert!(!a.passes(10.0) && !a.passes(-1.1));
        // A range that excludes 0 is widened to hold it.
        let b = ActQuant::from_range(2.0, 4.0);
        assert_eq!(b.zero_point, 0.0);
        assert_eq!(b.apply(0.0), 0.0);
    }
}
