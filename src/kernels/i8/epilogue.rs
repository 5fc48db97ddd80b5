//! What happens to each i32 accumulator as it is stored: kept, dequantized to f32, or requantized
//! to u8/s8 with the ONNX `QuantizeLinear` rounding.

use super::I8Error;

/// A scale per tensor or per output column.
#[derive(Debug, Clone, Copy)]
pub enum Scale<'a> {
    /// One scale for every column.
    PerTensor(f32),
    /// One scale per output column (N values).
    PerChannel(&'a [f32]),
}

impl Scale<'_> {
    #[inline(always)]
    fn at(&self, j: usize) -> f32 {
        match *self {
            Scale::PerTensor(s) => s,
            Scale::PerChannel(s) => s[j],
        }
    }

    fn check(&self, what: &'static str, n: usize) -> Result<(), I8Error> {
        match *self {
            Scale::PerChannel(s) if s.len() != n => Err(I8Error::Length {
                what,
                expected: n,
                got: s.len(),
            }),
            _ => Ok(()),
        }
    }
}

/// Dequantization to f32: `y = act(acc · scale[j] + bias[j])`, where `scale` is the product of
/// the activation and weight scales. Multiply then add, in that order, never fused.
#[derive(Debug, Clone, Copy)]
pub struct Dequantize<'a> {
    /// `scale_a · scale_b[j]`.
    pub scale: Scale<'a>,
    /// f32 bias per column, added after scaling.
    pub bias: Option<&'a [f32]>,
    /// Fused ReLU.
    pub relu: bool,
}

/// Requantization to u8/s8 as ONNX `QLinearConv`/`QLinearMatMul` do it:
/// `y = saturate(round_half_even((acc + bias[j]) · multiplier[j]) + zero_point)`, where
/// `multiplier = scale_a · scale_b[j] / scale_y`. A fused ReLU clamps at `zero_point`.
#[derive(Debug, Clone, Copy)]
pub struct Requantize<'a> {
    /// `scale_a · scale_b[j] / scale_y`.
    pub multiplier: Scale<'a>,
    /// i32 bias per column (ONNX QLinearConv's `B`, quantized with scale `scale_a · scale_b`).
    pub bias: Option<&'a [i32]>,
    /// Output zero point: in [0, 255] for u8, [-128, 127] for s8.
    pub zero_point: i32,
    /// Fused ReLU.
    pub relu: bool,
}

/// Where the GEMM stores its result and how.
#[derive(Debug)]
pub enum Output<'a> {
    /// The exact i32 accumulators.
    I32(&'a mut [i32]),
    /// Dequantized f32.
    F32(&'a mut [f32], Dequantize<'a>),
    /// Requantized u8.
    U8(&'a mut [u8], Requantize<'a>),
    /// Requantized s8.
    S8(&'a mut [i8], Requantize<'a>),
}

impl Output<'_> {
    /// Checks buffer lengths and parameters against an `m × n` result with row stride `ldc`.
    pub(super) fn check(&self, m: usize, n: usize, ldc: usize) -> Result<(), I8Error> {
        let got = match self {
            Output::I32(c) => c.len(),
            Output::F32(c, d) => {
                d.scale.check("dequantize scale", n)?;
                check_bias(d.bias.map(|b| b.len()), n)?;
                c.len()
            }
            Output::U8(c, r) => {
                r.check(n, 0, 255)?;
                c.len()
            }
            Output::S8(c, r) => {
                r.check(n, -128, 127)?;
                c.len()
            }
        };
        super::check_len("output", m, ldc, n, got)
    }
}

fn check_bias(len: Option<usize>, n: usize) -> Result<(), I8Error> {
    match len {
        Some(got) if got != n => Err(I8Error::Length {
            what: "bias",
            expected: n,
            got,
        }),
        _ => Ok(()),
    }
}

impl<'a> Requantize<'a> {
    fn check(&self, n: usize, lo: i32, hi: i32) -> Result<(), I8Error> {
        self.multiplier.check("requantize multiplier", n)?;
        check_bias(self.bias.map(|b| b.len()), n)?;
        if !(lo..=hi).contains(&self.zero_point) {
            return Err(I8Error::ZeroPoint {
                zp: self.zero_point,
                lo,
                hi,
            });
        }
        Ok(())
    }

    pub(super) fn for_u8(self) -> Requant<'a, u8> {
        self.bounded(0, 255)
    }

    pub(super) fn for_s8(self) -> Requant<'a, i8> {
        self.bounded(-128, 127)
    }

    fn bounded<T>(self, lo: i32, hi: i32) -> Requant<'a, T> {
        let lo = if self.relu {
            self.zero_point.max(lo)
        } else {
            lo
        };
        Requant {
            r: self,
            lo,
            hi,
            _t: std::marker::PhantomData,
        }
    }
}

/// Turns a finished accumulator of column `j` into an output value.
pub(super) trait Finish<T>: Sync {
    fn finish(&self, acc: i32, j: usize) -> T;
}

/// Keeps the i32 accumulator.
pub(super) struct Raw;

impl Finish<i32> for Raw {
    #[inline(always)]
    fn finish(&self, acc: i32, _j: usize) -> i32 {
        acc
    }
}

impl Finish<f32> for Dequantize<'_> {
    #[inline(always)]
    fn finish(&self, acc: i32, j: usize) -> f32 {
        let y = acc as f32 * self.scale.at(j) + self.bias.map_or(0.0, |b| b[j]);
        if self.relu {
            y.max(0.0)
        } else {
            y
        }
    }
}

/// A [`Requantize`] with its clamp bounds for one output type.
pub(super) struct Requant<'a, T> {
    r: Requantize<'a>,
    lo: i32,
    hi: i32,
    _t: std::marker::PhantomData<T>,
}

impl<T> Requant<'_, T> {
    /// The ONNX QuantizeLinear step on one value, clamped to `[lo, hi]`.
    #[inline(always)]
    fn quantize(&self, acc: i32, j: usize) -> i32 {
        let v = acc.wrapping_add(self.r.bias.map_or(0, |b| b[j]));
        // `as i32` saturates (NaN → 0), then the zero point is added without wrapping.
        let q = (v as f32 * self.r.multiplier.at(j)).round_ties_even() as i32;
        q.saturating_add(self.r.zero_point).clamp(self.lo, self.hi)
    }
}

impl Finish<u8> for Requant<'_, u8> {
    #[inline(always)]
    fn finish(&self, acc: i32, j: usize) -> u8 {
        self.quantize(acc, j) as u8
    }
}

impl Finish<i8> for Requant<'_, i8> {
    #[inline(always)]
    fn finish(&self, acc: i32, j: usize) -> i8 {
        self.quantize(acc, j) as i8
    }
}
