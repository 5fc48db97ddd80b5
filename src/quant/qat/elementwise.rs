//! Element-wise training ops: pointwise activations, the sum and product of two values with
//! NumPy broadcasting (a squeeze-and-excite block multiplies `[C,H,W]` by `[C,1,1]`), and global
//! average pooling. Each comes with the derivative its backward pass needs.

use crate::engine::ops::elementwise::Unary;

/// A pointwise function a training step applies: an activation, computed by the engine's own
/// [`Unary`] (so training sees the numerics inference runs), or a fixed affine map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pointwise {
    /// Relu, Sigmoid, HardSigmoid, HardSwish or Clip (the ones [`Pointwise::slope`] knows).
    Act(Unary),
    /// `x · mul + add` with fixed scalars (an Add, Mul or Div by a scalar constant).
    Affine { mul: f32, add: f32 },
}

impl Pointwise {
    /// `f(x)`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Pointwise::Act(u) => u.apply(x),
            Pointwise::Affine { mul, add } => x * mul + add,
        }
    }

    /// `f'(x)`, given also `y = f(x)`. At a kink the flat side's slope is used.
    pub fn slope(self, x: f32, y: f32) -> f32 {
        let inside = |lo: f32, v: f32, hi: f32| f32::from(u8::from(lo < v && v < hi));
        match self {
            Pointwise::Affine { mul, .. } => mul,
            Pointwise::Act(u) => match u {
                Unary::Relu => f32::from(u8::from(x > 0.0)),
                Unary::Sigmoid => y * (1.0 - y),
                Unary::HardSigmoid { alpha, beta } => alpha * inside(0.0, alpha * x + beta, 1.0),
                Unary::HardSwish => {
                    if x >= 3.0 {
                        1.0
                    } else if x > -3.0 {
                        (2.0 * x + 3.0) / 6.0
                    } else {
                        0.0
                    }
                }
                Unary::Clip { lo, hi } => inside(lo, x, hi),
                Unary::Tanh | Unary::Erf | Unary::Gelu { .. } | Unary::Sqrt | Unary::Sign => {
                    unreachable!("the QAT compiler builds no {u:?} step")
                }
            },
        }
    }
}

/// Which binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    Add,
    Mul,
}

/// Where each output element of a broadcast binary op reads its operands, per sample: `None`
/// when an operand has the output's shape (element `i` reads element `i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broadcast {
    /// Elements per output sample.
    pub out_len: usize,
    /// Elements per sample of each operand.
    pub lens: [usize; 2],
    /// Operand index read by each output element, per operand.
    pub maps: [Option<Vec<u32>>; 2],
}

impl Broadcast {
    /// How per-sample shapes `a` and `b` broadcast (NumPy rules: aligned at the right, a
    /// dimension of 1 stretches), with the output's shape; `None` when they do not.
    pub fn new(a: &[usize], b: &[usize]) -> Option<(Broadcast, Vec<usize>)> {
        let rank = a.len().max(b.len());
        let pad = |s: &[usize]| -> Vec<usize> {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (pa, pb) = (pad(a), pad(b));
        let out: Vec<usize> = pa
            .iter()
            .zip(&pb)
            .map(|(&x, &y)| match (x, y) {
                _ if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let out_len: usize = out.iter().product();
        u32::try_from(out_len).ok()?;
        let map = |p: &[usize]| -> Option<Vec<u32>> {
            if p == out.as_slice() {
                return None;
            }
            // Strides of the operand, 0 along stretched dimensions.
            let mut strides = vec![0; rank];
            let mut s = 1;
            for d in (0..rank).rev() {
                strides[d] = if p[d] == 1 { 0 } else { s };
                s *= p[d];
            }
            let mut idx = vec![0u32; out_len];
            let mut pos = vec![0usize; rank];
            for slot in idx.iter_mut() {
                // The operand's offset fits u32: it is below the output's length.
                *slot = pos.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>() as u32;
                for d in (0..rank).rev() {
                    pos[d] += 1;
                    if pos[d] < out[d] {
                        break;
                    }
                    pos[d] = 0;
                }
            }
            Some(idx)
        };
        let b = Broadcast {
            out_len,
            lens: [a.iter().product(), b.iter().product()],
            maps: [map(&pa), map(&pb)],
        };
        Some((b, out))
    }

    /// Index into operand `side` (0 or 1) read by output element `i` of sample `n`.
    fn at(&self, side: usize, n: usize, i: usize) -> usize {
        n * self.lens[side]
            + match &self.maps[side] {
                Some(m) => m[i] as usize,
                None => i,
            }
    }

    /// `op(a, b)` for a batch.
    pub fn forward(&self, op: Binary, a: &[f32], b: &[f32], batch: usize) -> Vec<f32> {
        let mut y = Vec::with_capacity(batch * self.out_len);
        for n in 0..batch {
            for i in 0..self.out_len {
                let (x, z) = (a[self.at(0, n, i)], b[self.at(1, n, i)]);
                y.push(match op {
                    Binary::Add => x + z,
                    Binary::Mul => x * z,
                });
            }
        }
        y
    }

    /// The gradient of operand `side` given the output's: each output element's gradient,
    /// times the other operand for a product, summed where the operand was stretched.
    pub fn backward(
        &self,
        op: Binary,
        side: usize,
        operands: [&[f32]; 2],
        dy: &[f32],
        batch: usize,
    ) -> Vec<f32> {
        let mut d = vec![0.0; batch * self.lens[side]];
        for n in 0..batch {
            for i in 0..self.out_len {
                let g = dy[n * self.out_len + i];
                let factor = match op {
                    Binary::Add => 1.0,
                    Binary::Mul => operands[1 - side][self.at(1 - side, n, i)],
                };
                d[self.at(side, n, i)] += g * factor;
            }
        }
        d
    }
}

/// Mean of each of the `channels` planes of `plane` elements, for a batch.
pub(crate) fn global_average_pool(x: &[f32], plane: usize) -> Vec<f32> {
    x.chunks(plane)
        .map(|p| p.iter().sum::<f32>() / plane as f32)
        .collect()
}

/// Gradient of [`global_average_pool`]: each plane's gradient spread evenly over it.
pub(crate) fn global_average_pool_backward(dy: &[f32], plane: usize) -> Vec<f32> {
    dy.iter()
        .flat_map(|&d| std::iter::repeat_n(d / plane as f32, plane))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy_rules() {
        let (b, out) = Broadcast::new(&[2, 3, 2], &[2, 1, 1]).unwrap();
        assert_eq!(out, vec![2, 3, 2]);
        assert!(b.maps[0].is_none());
        assert_eq!(
            b.maps[1].as_deref(),
            Some(&[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1][..])
        );
        let (b, out) = Broadcast::new(&[3], &[2, 1]).unwrap();
        assert_eq!(out, vec![2, 3]);
        assert_eq!(b.maps[0].as_deref(), Some(&[0, 1, 2, 0, 1, 2][..]));
        assert_eq!(b.maps[1].as_deref(), Some(&[0, 0, 0, 1, 1, 1][..]));
        assert!(Broadcast::new(&[2, 3], &[3, 2]).is_none());
        let y = b.forward(Binary::Mul, &[1.0, 2.0, 3.0], &[10.0, 100.0], 1);
        assert_eq!(y, vec![10.0, 20.0, 30.0, 100.0, 200.0, 300.0]);
    }
}
