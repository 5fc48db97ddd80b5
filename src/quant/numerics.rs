//! The arithmetic every quantized path agrees on: ONNX `QuantizeLinear` rounding (round half to
//! even, saturate), scales and zero points from ranges exactly as ONNX Runtime's
//! `quant_utils.compute_scale_zp` computes them (`reduce_range` off), per-tensor and per-channel
//! INT8 weights, INT32 biases, and binary `sign(W)·α` weights.

use crate::quant::scheme::ActType;
use crate::quant::QuantError;

/// An integer grid a value is quantized onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QRange {
    /// Smallest integer.
    pub qmin: i32,
    /// Largest integer.
    pub qmax: i32,
}

impl QRange {
    /// ORT's `get_qmin_qmax_for_qType(reduce_range=False, symmetric)`: s8 symmetric is
    /// `[-127, 127]`, otherwise the full type range.
    pub fn for_type(dtype: ActType, symmetric: bool) -> QRange {
        match (dtype, symmetric) {
            (ActType::U8, _) => QRange { qmin: 0, qmax: 255 },
            (ActType::S8, true) => QRange {
                qmin: -127,
                qmax: 127,
            },
            (ActType::S8, false) => QRange {
                qmin: -128,
                qmax: 127,
            },
        }
    }
}

/// A scale and zero point: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// Step between neighbouring integers, finite and positive.
    pub scale: f32,
    /// Integer that represents real 0.
    pub zero_point: i32,
}

/// Fails unless `scale` is finite and positive.
pub fn check_scale(name: &str, scale: f32) -> Result<f32, QuantError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(scale)
    } else {
        Err(QuantError::BadScale {
            name: name.to_string(),
            value: scale,
        })
    }
}

/// Scale and zero point covering `[rmin, rmax]` on `range`, as ORT's `compute_scale_zp`: the
/// range is widened to hold 0, made `[-m, m]` when symmetric, the scale is computed in f64 as
/// `(rmax − rmin) / (qmax − qmin)` and stored as f32, the zero point is `round(qmin − rmin/scale)`
/// (half to even), or the grid's midpoint when symmetric; an empty range gives scale 1, zero
/// point 0. `name` labels errors (non-finite or inverted ranges).
pub fn compute_scale_zp(
    name: &str,
    rmin: f32,
    rmax: f32,
    range: QRange,
    symmetric: bool,
) -> Result<QParams, QuantError> {
    if !rmin.is_finite() || !rmax.is_finite() || rmin > rmax {
        return Err(QuantError::BadRange {
            name: name.to_string(),
            min: rmin,
            max: rmax,
        });
    }
    let (mut lo, mut hi) = (rmin.min(0.0), rmax.max(0.0));
    if symmetric {
        let m = lo.abs().max(hi.abs());
        (lo, hi) = (-m, m);
    }
    let scale = (f64::from(hi) - f64::from(lo)) / f64::from(range.qmax - range.qmin);
    if scale < f64::from(f32::MIN_POSITIVE) {
        return Ok(QParams {
            scale: 1.0,
            zero_point: 0,
        });
    }
    let zero_point = if symmetric {
        (f64::from(range.qmin + range.qmax) / 2.0).round_ties_even() as i32
    } else {
        (f64::from(range.qmin) - f64::from(lo) / scale).round_ties_even() as i32
    };
    Ok(QParams {
        scale: check_scale(name, scale as f32)?,
        zero_point: zero_point.clamp(range.qmin, range.qmax),
    })
}

/// ONNX `QuantizeLinear` of one value: `saturate(round_half_even(x / scale) + zero_point)`.
pub fn quantize(x: f32, p: QParams, range: QRange) -> i32 {
    let q = (x / p.scale).round_ties_even() + p.zero_point as f32;
    // NaN saturates to 0 through `as`, as ORT's float-to-int conversion does on x86.
    (q.clamp(range.qmin as f32, range.qmax as f32)) as i32
}

/// ONNX `DequantizeLinear` of one value.
pub fn dequantize(q: i32, p: QParams) -> f32 {
    (q - p.zero_point) as f32 * p.scale
}

/// Quantize-then-dequantize of one value (fake quantization).
pub fn fake_quantize(x: f32, p: QParams, range: QRange) -> f32 {
    dequantize(quantize(x, p, range), p)
}

/// INT8 weights with their scales and zero points.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    /// Quantized values, same layout as the float weight.
    pub values: Vec<i8>,
    /// One entry per channel (per-channel) or a single one (per-tensor).
    pub params: Vec<QParams>,
}

/// Quantizes an f32 weight of `shape` to s8, per tensor or per channel along `axis`, symmetric
/// (`[-127, 127]`, zero point 0) or asymmetric (`[-128, 127]`), with ranges from the data as
/// ORT's `quantize_data`. `name` labels errors (non-finite weights).
pub fn quantize_weight(
    name: &str,
    data: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    symmetric: bool,
) -> Result<QuantizedWeight, QuantError> {
    let range = QRange::for_type(ActType::S8, symmetric);
    let groups = channel_groups(name, shape, axis, data.len())?;
    let mut values = vec![0i8; data.len()];
    let mut params = Vec::with_capacity(groups.channels);
    for c in 0..groups.channels {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        groups.for_each(c, |i| {
            lo = lo.min(data[i]);
            hi = hi.max(data[i]);
        });
        if groups.len_per_channel == 0 {
            (lo, hi) = (0.0, 0.0);
        }
        let p = compute_scale_zp(&format!("{name}[channel {c}]"), lo, hi, range, symmetric)?;
        groups.for_each(c, |i| values[i] = quantize(data[i], p, range) as i8);
        params.push(p);
    }
    Ok(QuantizedWeight { values, params })
}

/// Binary weights `sign(W)` (`+1` for 0) as s8 with `α` = mean |W| of each channel along
/// `axis`. Fails naming the channel when it is all zero (α = 0 is no usable scale).
pub fn binarize_weight(
    name: &str,
    data: &[f32],
    shape: &[usize],
    axis: usize,
) -> Result<QuantizedWeight, QuantError> {
    let groups = channel_groups(name, shape, Some(axis), data.len())?;
    let mut values = vec![0i8; data.len()];
    let mut params = Vec::with_capacity(groups.channels);
    for c in 0..groups.channels {
        let mut sum = 0.0f64;
        groups.for_each(c, |i| {
            sum += f64::from(data[i].abs());
            values[i] = if data[i] < 0.0 { -1 } else { 1 };
        });
        let alpha = (sum / groups.len_per_channel.max(1) as f64) as f32;
        params.push(QParams {
            scale: check_scale(&format!("{name}[channel {c}] (binary α = mean |W|)"), alpha)?,
            zero_point: 0,
        });
    }
    Ok(QuantizedWeight { values, params })
}

/// Quantizes a bias to i32 with scale `input_scale · weight_scale[c]` and zero point 0, as ORT's
/// `quantize_bias_static`; returns the values and the per-channel scales. Fails naming the
/// channel when a value does not fit i32.
pub fn quantize_bias(
    name: &str,
    bias: &[f32],
    input_scale: f32,
    weight_params: &[QParams],
) -> Result<(Vec<i32>, Vec<f32>), QuantError> {
    let scales: Vec<f32> = if weight_params.len() == 1 {
        vec![input_scale * weight_params[0].scale; bias.len()]
    } else if weight_params.len() == bias.len() {
        weight_params
            .iter()
            .map(|p| input_scale * p.scale)
            .collect()
    } else {
        return Err(QuantError::graph(
            name,
            format!(
                "bias has {} values but the weight {} channels",
                bias.len(),
                weight_params.len()
            ),
        ));
    };
    let mut values = Vec::with_capacity(bias.len());
    for (c, (&b, &s)) in bias.iter().zip(&scales).enumerate() {
        let s = check_scale(&format!("{name}[channel {c}] (bias scale)"), s)?;
        let q = (f64::from(b) / f64::from(s)).round_ties_even();
        if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&q) {
            return Err(QuantError::graph(
                name,
                format!("bias channel {c}: {b} / scale {s} does not fit i32"),
            ));
        }
        values.push(q as i32);
    }
    Ok((values, scales))
}

/// How a tensor splits into channels along an axis: element `i` belongs to channel
/// `(i / inner) % channels`.
struct ChannelGroups {
    channels: usize,
    inner: usize,
    outer: usize,
    len_per_channel: usize,
}

impl ChannelGroups {
    fn for_each(&self, c: usize, mut f: impl FnMut(usize)) {
        for o in 0..self.outer {
            let base = (o * self.channels + c) * self.inner;
            (base..base + self.inner).for_each(&mut f);
        }
    }
}

fn channel_groups(
    name: &str,
    shape: &[usize],
    axis: Option<usize>,
    len: usize,
) -> Result<ChannelGroups, QuantError> {
    if crate::tensor::checked_numel(shape) != Some(len) {
        return Err(QuantError::graph(
            name,
            format!("shape {shape:?} does not hold {len} values"),
        ));
    }
    let Some(axis) = axis else {
        return Ok(ChannelGroups {
            channels: 1,
            inner: len,
            outer: 1,
            len_per_channel: len,
        });
    };
    if axis >= shape.len() {
        return Err(QuantError::graph(
            name,
            format!("channel axis {axis} is outside shape {shape:?}"),
        ));
    }
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    Ok(ChannelGroups {
        channels,
        inner,
        outer,
        len_per_channel: inner * outer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U8: QRange = QRange { qmin: 0, qmax: 255 };
    const S8S: QRange = QRange {
        qmin: -127,
        qmax: 127,
    };

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let p = QParams {
            scale: 1.0,
            zero_point: 0,
        };
        assert_eq!(quantize(2.5, p, S8S), 2);
        assert_eq!(quantize(3.5, p, S8S), 4);
        assert_eq!(quantize(-2.5, p, S8S), -2);
        assert_eq!(quantize(1000.0, p, S8S), 127);
        assert_eq!(quantize(-1000.0, p, U8), 0);
        let p = QParams {
            scale: 0.5,
            zero_point: 10,
        };
        assert_eq!(quantize(0.25, p, U8), 10); // 0.5 -> 0 (even)
        assert_eq!(quantize(0.75, p, U8), 12); // 1.5 -> 2
        assert_eq!(dequantize(12, p), 1.0);
    }

    #[test]
    fn scales_match_ort_compute_scale_zp() {
        // Values from onnxruntime.quantization.quant_utils.compute_scale_zp (ORT 1.32).
        // u8 asymmetric [-1.0, 3.0]: scale 4/255, zp round(0 + 1/(4/255)) = round(63.75) = 64.
        let p = compute_scale_zp("x", -1.0, 3.0, U8, false).unwrap();
        assert_eq!(p.scale, 0.015_686_275);
        assert_eq!(p.zero_point, 64);
        // min > 0 is widened to 0: [0.5, 2.0] -> [0, 2.0], zp 0.
        let p = compute_scale_zp("x", 0.5, 2.0, U8, false).unwrap();
        assert_eq!((p.scale, p.zero_point), (2.0 / 255.0, 0));
        // s8 symmetric: max|x| / 127, zp 0.
        let p = compute_scale_zp("w", -0.3, 0.2, S8S, true).unwrap();
        assert_eq!((p.scale, p.zero_point), (0.3 / 127.0, 0));
        // u8 symmetric: zp round(127.5) = 128 (half to even).
        let p = compute_scale_zp("x", -1.0, 0.5, U8, true).unwrap();
        assert_eq!((p.scale, p.zero_point), (2.0 / 255.0, 128));
        // empty range: scale 1, zp 0.
        let p = compute_scale_zp("x", 0.0, 0.0, U8, false).unwrap();
        assert_eq!((p.scale, p.zero_point), (1.0, 0));
        let err = compute_scale_zp("act", f32::NAN, 1.0, U8, false).unwrap_err();
        assert!(err.to_string().contains("act"), "{err}");
        assert!(compute_scale_zp("act", 2.0, 1.0, U8, false).is_err());
    }

    #[test]
    fn zero_point_ties_round_to_even_like_numpy() {
        // rmin = -0.5, rmax = 0.5 * 254/1 ... choose a range where -rmin/scale is exactly x.5:
        // [-1.5, 253.5] on u8: scale 1, zp round(1.5) = 2.
        let p = compute_scale_zp("x", -1.5, 253.5, U8, false).unwrap();
        assert_eq!((p.scale, p.zero_point), (1.0, 2));
        // [-2.5, 252.5]: zp round(2.5) = 2.
        let p = compute_scale_zp("x", -2.5, 252.5, U8, false).unwrap();
        assert_eq!(p.zero_point, 2);
    }

    #[test]
    fn per_channel_weights_and_bias() {
        // W [2, 3]: channel 0 max|w| 1.27 -> scale 0.01, channel 1 max|w| 0.254 -> scale 0.002.
        let w = [1.27, -0.635, 0.0, 0.1, -0.254, 0.003];
        let q = quantize_weight("w", &w, &[2, 3], Some(0), true).unwrap();
        assert_eq!(q.values, vec![127, -64, 0, 50, -127, 2]); // -63.5 -> -64, 1.5 -> 2
        assert!((q.params[0].scale - 0.01).abs() < 1e-9);
        assert!((q.params[1].scale - 0.002).abs() < 1e-9);
        let t = quantize_weight("w", &w, &[2, 3], None, true).unwrap();
        assert_eq!(t.params.len(), 1);
        assert_eq!(t.values[4], -25); // -0.254 / 0.01 = -25.4
        let (b, s) = quantize_bias("b", &[0.5, -0.5], 0.1, &q.params).unwrap();
        assert_eq!(b, vec![500, -2500]);
        assert!((s[1] - 0.0002).abs() < 1e-9);
        assert!(quantize_bias("b", &[0.5], 0.1, &q.params).is_err());
        assert!(quantize_bias("b", &[1e30, 0.0], 0.1, &q.params).is_err());
    }

    #[test]
    fn per_channel_on_a_middle_axis() {
        // shape [2, 2, 1], axis 1: channel 0 = elements 0, 2; channel 1 = 1, 3.
        let w = [1.0, 2.0, -0.5, -4.0];
        let q = quantize_weight("w", &w, &[2, 2, 1], Some(1), true).unwrap();
        assert_eq!(q.values, vec![127, 64, -64, -127]);
    }

    #[test]
    fn binary_weights_are_sign_times_mean_abs() {
        let w = [0.5, -1.5, 0.0, 2.0, -2.0, 2.0];
        let q = binarize_weight("w", &w, &[2, 3], 0).unwrap();
        assert_eq!(q.values, vec![1, -1, 1, 1, -1, 1]);
        assert!((q.params[0].scale - 2.0 / 3.0).abs() < 1e-7);
        assert_eq!(q.params[1].scale, 2.0);
        let err = binarize_weight("conv.w", &[0.0, 0.0, 1.0, 1.0], &[2, 2], 0).unwrap_err();
        assert!(err.to_string().contains("conv.w[channel 0]"), "{err}");
    }
}
