//! Elementwise kernels: unary activations and numpy-broadcast binary arithmetic.

use crate::graph::shape::broadcast_shape;

/// A unary f32 function applied to every element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `clamp(alpha·x + beta, 0, 1)`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x · clamp(x/6 + 1/2, 0, 1)`.
    HardSwish,
    /// `clamp(x, lo, hi)`.
    Clip {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// Hyperbolic tangent.
    Tanh,
    /// The error function.
    Erf,
    /// GELU, exact (`erf`) or with the tanh approximation.
    Gelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// Square root.
    Sqrt,
    /// ONNX `Sign`: −1, 0 or +1 (NaN stays NaN).
    Sign,
}

impl Unary {
    /// Applies the function to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Relu => x.max(0.0),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Unary::Clip { lo, hi } => x.max(lo).min(hi),
            Unary::Tanh => x.tanh(),
            Unary::Erf => erf(x),
            Unary::Gelu { tanh: false } => {
                0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
            }
            Unary::Gelu { tanh: true } => {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Unary::Sqrt => x.sqrt(),
            Unary::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x * 0.0
                }
            }
        }
    }

    /// `out[i] = f(x[i])`.
    pub fn run(self, x: &[f32], out: &mut [f32]) {
        unary(self, x, out);
    }
}

avx2_twin! {
    /// `out[i] = f(x[i])`.
    fn unary(f: Unary, x: &[f32], out: &mut [f32]) => unary_portable
}

/// [`Unary::run`] as portable code.
#[inline(always)]
pub fn unary_portable(f: Unary, x: &[f32], out: &mut [f32]) {
    {
        // One monomorphic loop per function so each vectorises on its own.
        macro_rules! each {
            ($f:expr) => {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = $f(v);
                }
            };
        }
        match f {
            Unary::Relu => each!(|v: f32| v.max(0.0)),
            Unary::Clip { lo, hi } => each!(|v: f32| v.max(lo).min(hi)),
            Unary::HardSigmoid { alpha, beta } => {
                each!(|v: f32| (alpha * v + beta).clamp(0.0, 1.0))
            }
            Unary::HardSwish => each!(|v: f32| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
            other => each!(|v: f32| other.apply(v)),
        }
    }
}

/// The error function, Abramowitz & Stegun 7.1.26 evaluated in f64 (absolute error < 1.5e-7).
pub fn erf(x: f32) -> f32 {
    let xd = f64::from(x);
    let t = 1.0 / (1.0 + 0.327_591_1 * xd.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-xd * xd).exp();
    (if x < 0.0 { -y } else { y }) as f32
}

/// Element types binary arithmetic runs on (f32 for activations, integers for shape constants).
pub trait Arith: Copy + Default + Send + Sync + 'static {
    /// `a + b` (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// `a - b` (wrapping for integers).
    fn sub(a: Self, b: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(a: Self, b: Self) -> Self;
    /// `a / b` (integers: truncating, 0 when dividing by 0).
    fn div(a: Self, b: Self) -> Self;
    /// `a ^ b`.
    fn pow(a: Self, b: Self) -> Self;
}

impl Arith for f32 {
    fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    fn pow(a: f32, b: f32) -> f32 {
        if b == 2.0 {
            a * a
        } else {
            a.powf(b)
        }
    }
}

macro_rules! int_arith {
    ($t:ty) => {
        impl Arith for $t {
            fn add(a: $t, b: $t) -> $t {
                a.wrapping_add(b)
            }
            fn sub(a: $t, b: $t) -> $t {
                a.wrapping_sub(b)
            }
            fn mul(a: $t, b: $t) -> $t {
                a.wrapping_mul(b)
            }
            fn div(a: $t, b: $t) -> $t {
                a.checked_div(b).unwrap_or(0)
            }
            fn pow(a: $t, b: $t) -> $t {
                u32::try_from(b).map_or(0, |e| a.wrapping_pow(e))
            }
        }
    };
}
int_arith!(i64);
int_arith!(i32);

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a ^ b`.
    Pow,
}

impl BinOp {
    /// The operator for an ONNX op type.
    pub fn from_op(op: &str) -> Option<BinOp> {
        Some(match op {
            "Add" => BinOp::Add,
            "Sub" => BinOp::Sub,
            "Mul" => BinOp::Mul,
            "Div" => BinOp::Div,
            "Pow" => BinOp::Pow,
            _ => return None,
        })
    }
}

/// A numpy broadcast of two operands, with runs of axes that broadcast alike merged so the inner
/// loop is as long as possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    dims: Vec<usize>,
    a_strides: Vec<usize>,
    b_strides: Vec<usize>,
}

impl Broadcast {
    /// The broadcast of shapes `a` and `b`, or `None` when they do not broadcast.
    pub fn new(a: &[usize], b: &[usize]) -> Option<Broadcast> {
        let out = broadcast_shape(a, b)?;
        let strides = |s: &[usize]| -> Vec<usize> {
            let pad = out.len() - s.len();
            let mut st = vec![0; out.len()];
            let mut acc = 1;
            for i in (0..s.len()).rev() {
                st[i + pad] = if s[i] == 1 { 0 } else { acc };
                acc *= s[i];
            }
            st
        };
        let (sa, sb) = (strides(a), strides(b));
        let mut bc = Broadcast {
            dims: vec![],
            a_strides: vec![],
            b_strides: vec![],
        };
        for i in (0..out.len()).filter(|&i| out[i] != 1) {
            let last = bc.dims.len().wrapping_sub(1);
            // Merge with the previous axis when both operands step through the pair contiguously.
            let merge = !bc.dims.is_empty()
                && bc.a_strides[last] == sa[i] * out[i]
                && bc.b_strides[last] == sb[i] * out[i];
            if merge {
                bc.dims[last] *= out[i];
                bc.a_strides[last] = sa[i];
                bc.b_strides[last] = sb[i];
            } else {
                bc.dims.push(out[i]);
                bc.a_strides.push(sa[i]);
                bc.b_strides.push(sb[i]);
            }
        }
        Some(bc)
    }

    /// `out = op(a, b)` over the broadcast.
    pub fn run<T: Arith>(&self, op: BinOp, a: &[T], b: &[T], out: &mut [T]) {
        match op {
            BinOp::Add => self.walk(a, b, out, T::add),
            BinOp::Sub => self.walk(a, b, out, T::sub),
            BinOp::Mul => self.walk(a, b, out, T::mul),
            BinOp::Div => self.walk(a, b, out, T::div),
            BinOp::Pow => self.walk(a, b, out, T::pow),
        }
    }

    /// Walks the output row by row (the innermost merged axis), locating each operand row from
    /// the row index.
    #[inline(always)]
    fn walk<T: Copy>(&self, a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T + Copy) {
        let Some(last) = self.dims.len().checked_sub(1) else {
            if let (Some(o), Some(&x), Some(&y)) = (out.first_mut(), a.first(), b.first()) {
                *o = f(x, y);
            }
            return;
        };
        let n = self.dims[last];
        let (sa, sb) = (self.a_strides[last], self.b_strides[last]);
        for (row, o) in out.chunks_exact_mut(n.max(1)).enumerate() {
            let (mut ao, mut bo, mut rem) = (0, 0, row);
            for d in (0..last).rev() {
                let i = rem % self.dims[d];
                rem /= self.dims[d];
                ao += i * self.a_strides[d];
                bo += i * self.b_strides[d];
            }
            match (sa, sb) {
                (1, 1) => o
                    .iter_mut()
                    .zip(&a[ao..ao + n])
                    .zip(&b[bo..bo + n])
                    .for_each(|((o, &x), &y)| *o = f(x, y)),
                (1, 0) => {
                    let y = b[bo];
                    o.iter_mut()
                        .zip(&a[ao..ao + n])
                        .for_each(|(o, &x)| *o = f(x, y));
                }
                (0, 1) => {
                    let x = a[ao];
                    o.iter_mut()
                        .zip(&b[bo..bo + n])
                        .for_each(|(o, &y)| *o = f(x, y));
                }
                _ => o
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, o)| *o = f(a[ao + i * sa], b[bo + i * sb])),
            }
        }
    }
}

avx2_twin! {
    /// `out = op(a, b)` on f32 operands.
    pub fn binary_f32(bc: &Broadcast, op: BinOp, a: &[f32], b: &[f32], out: &mut [f32]) => binary_f32_portable
}

/// [`binary_f32`] as portable code.
#[inline(always)]
pub fn binary_f32_portable(bc: &Broadcast, op: BinOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    bc.run(op, a, b, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatched_binary_matches_portable_twin() {
        let cases: [(&[usize], &[usize]); 4] = [
            (&[3, 1, 5], &[1, 4, 1]),
            (&[2, 3, 4, 5], &[3, 1, 5]),
            (&[7], &[]),
            (&[2, 9], &[2, 9]),
        ];
        for (sa, sb) in cases {
            let bc = Broadcast::new(sa, sb).unwrap();
            let a: Vec<f32> = (0..sa.iter().product::<usize>())
                .map(|i| i as f32 * 0.7 - 3.0)
                .collect();
            let b: Vec<f32> = (0..sb.iter().product::<usize>())
                .map(|i| i as f32 * 0.3 + 0.5)
                .collect();
            let n = crate::graph::shape::broadcast_shape(sa, sb)
                .unwrap()
                .iter()
                .product();
            for op in [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div, BinOp::Pow] {
                let (mut x, mut y) = (vec![0.0; n], vec![1.0; n]);
                binary_f32(&bc, op, &a, &b, &mut x);
                binary_f32_portable(&bc, op, &a, &b, &mut y);
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(&y) {
                    assert!(p == q || (p.is_nan() && q.is_nan()), "{op:?}: {p} vs {q}");
                }
            }
        }
    }

    #[test]
    fn dispatched_unary_matches_portable_twin_and_definition() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
        let fs = [
            Unary::Relu,
            Unary::Sigmoid,
            Unary::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Unary::HardSwish,
            Unary::Clip { lo: -1.0, hi: 2.0 },
            Unary::Tanh,
            Unary::Erf,
            Unary::Gelu { tanh: false },
            Unary::Gelu { tanh: true },
            Unary::Sign,
        ];
        for f in fs {
            let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            f.run(&x, &mut a);
            unary_portable(f, &x, &mut b);
            for ((p, q), &v) in a.iter().zip(&b).zip(&x) {
                assert!(
                    (p - q).abs() <= 1e-6 && (p - f.apply(v)).abs() <= 1e-6,
                    "{f:?}({v}): {p} {q}"
                );
            }
        }
        assert!((erf(0.5) - 0.520_499_9).abs() < 2e-7);
        assert!((erf(-2.0) + 0.995_322_3).abs() < 2e-7);
    }
}
