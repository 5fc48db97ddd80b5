//! Normalisations and reductions: Softmax, LayerNormalization, BatchNormalization (when not
//! folded into a Conv) and ReduceMean.

/// Softmax over the middle extent of an (outer, len, inner) split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Softmax {
    /// Product of the leading axes.
    pub outer: usize,
    /// Extent normalised over.
    pub len: usize,
    /// Product of the trailing axes.
    pub inner: usize,
}

impl Softmax {
    /// `out = softmax(x)`.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (len, inner) = (self.len, self.inner);
        for o in 0..self.outer {
            for i in 0..inner {
                let base = o * len * inner + i;
                let at = |j: usize| base + j * inner;
                let max = (0..len).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for j in 0..len {
                    let e = (x[at(j)] - max).exp();
                    out[at(j)] = e;
                    sum += e;
                }
                let inv = 1.0 / sum;
                (0..len).for_each(|j| out[at(j)] *= inv);
            }
        }
    }
}

/// LayerNormalization over the trailing `inner` elements of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    /// Elements normalised together.
    pub inner: usize,
    /// Added to the variance.
    pub epsilon: f32,
    /// Per-element scale (`inner` values).
    pub scale: Vec<f32>,
    /// Per-element shift (`inner` values), when given.
    pub bias: Option<Vec<f32>>,
}

impl LayerNorm {
    /// `out = (x − mean)/√(var + ε)·scale + bias`, row by row.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let n = self.inner.max(1);
        for (xr, or) in x.chunks(n).zip(out.chunks_mut(n)) {
            let mean = xr.iter().sum::<f32>() / n as f32;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
            let inv = 1.0 / (var + self.epsilon).sqrt();
            for (j, (o, &v)) in or.iter_mut().zip(xr).enumerate() {
                *o = (v - mean) * inv * self.scale[j] + self.bias.as_ref().map_or(0.0, |b| b[j]);
            }
        }
    }
}

/// Inference BatchNormalization as a per-channel affine map `x·scale[c] + shift[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAffine {
    /// Elements per channel plane (product of the spatial axes).
    pub plane: usize,
    /// Per-channel scale γ/√(σ²+ε).
    pub scale: Vec<f32>,
    /// Per-channel shift β − μ·scale.
    pub shift: Vec<f32>,
}

impl ChannelAffine {
    /// Builds the affine map from BN parameters.
    pub fn from_bn(
        plane: usize,
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f32,
    ) -> ChannelAffine {
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        ChannelAffine {
            plane,
            scale,
            shift,
        }
    }

    /// `out = x·scale + shift` per channel of NC… data.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let c = self.scale.len().max(1);
        for (p, (xp, op)) in x
            .chunks(self.plane.max(1))
            .zip(out.chunks_mut(self.plane.max(1)))
            .enumerate()
        {
            let (s, t) = (self.scale[p % c], self.shift[p % c]);
            op.iter_mut().zip(xp).for_each(|(o, &v)| *o = v * s + t);
        }
    }
}

/// Mean over a set of axes: each input element adds into the output element its reduced-away
/// coordinates collapse to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceMean {
    dims: Vec<usize>,
    out_strides: Vec<usize>,
    count: usize,
}

impl ReduceMean {
    /// Reduction of an input of `shape` over `axes`.
    pub fn new(shape: &[usize], axes: &[usize]) -> ReduceMean {
        let mut out_strides = vec![0; shape.len()];
        let mut acc = 1;
        for i in (0..shape.len()).rev() {
            if !axes.contains(&i) {
                out_strides[i] = acc;
                acc *= shape[i];
            }
        }
        ReduceMean {
            dims: shape.to_vec(),
            out_strides,
            count: axes.iter().map(|&a| shape[a]).product(),
        }
    }

    /// `out = mean(x, axes)`.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        if self.dims.is_empty() {
            out[0] = x[0];
            return;
        }
        self.walk(0, 0, 0, x, out);
        let inv = 1.0 / self.count.max(1) as f32;
        out.iter_mut().for_each(|v| *v *= inv);
    }

    fn walk(&self, axis: usize, xo: usize, oo: usize, x: &[f32], out: &mut [f32]) {
        let n = self.dims[axis];
        let s = self.out_strides[axis];
        let inner: usize = self.dims[axis + 1..].iter().product();
        if axis + 1 == self.dims.len() {
            let xr = &x[xo..xo + n];
            if s == 0 {
                out[oo] += xr.iter().sum::<f32>();
            } else {
                out[oo..oo + n]
                    .iter_mut()
                    .zip(xr)
                    .for_each(|(o, &v)| *o += v);
            }
            return;
        }
        for i in 0..n {
            self.walk(axis + 1, xo + i * inner, oo + i * s, x, out);
        }
    }
}
