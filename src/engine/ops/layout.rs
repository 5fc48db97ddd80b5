//! Data movement: Transpose, Concat, Slice and Gather, generic over the element type so constant
//! folding runs them on shape tensors too.

use crate::graph::shape::SliceAxis;

/// A transpose: output axis `i` walks input axis `perm[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transpose {
    out_dims: Vec<usize>,
    in_strides: Vec<usize>,
}

impl Transpose {
    /// A transpose of an input of `shape` by `perm`.
    pub fn new(shape: &[usize], perm: &[usize]) -> Transpose {
        let mut strides = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        Transpose {
            out_dims: perm.iter().map(|&p| shape[p]).collect(),
            in_strides: perm.iter().map(|&p| strides[p]).collect(),
        }
    }

    /// `out = transpose(x)`.
    pub fn run<T: Copy>(&self, x: &[T], out: &mut [T]) {
        if self.out_dims.is_empty() {
            out[0] = x[0];
            return;
        }
        strided_copy(&self.out_dims, &self.in_strides, 0, 0, x, out);
    }
}

/// Copies the strided view (`dims`, `strides` from `base`) of `x` into contiguous `out`.
fn strided_copy<T: Copy>(
    dims: &[usize],
    strides: &[usize],
    base: usize,
    axis: usize,
    x: &[T],
    out: &mut [T],
) {
    let n = dims[axis];
    let s = strides[axis];
    if axis + 1 == dims.len() {
        if s == 1 {
            out[..n].copy_from_slice(&x[base..base + n]);
        } else {
            out[..n]
                .iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = x[base + i * s]);
        }
        return;
    }
    let inner: usize = dims[axis + 1..].iter().product();
    for i in 0..n {
        strided_copy(
            dims,
            strides,
            base + i * s,
            axis + 1,
            x,
            &mut out[i * inner..],
        );
    }
}

/// Concatenation along one axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Concat {
    outer: usize,
    /// Elements each input contributes per outer index.
    chunks: Vec<usize>,
}

impl Concat {
    /// Concatenation of inputs of `shapes` along `axis`.
    pub fn new(shapes: &[&[usize]], axis: usize) -> Concat {
        let outer = shapes.first().map_or(1, |s| s[..axis].iter().product());
        Concat {
            outer,
            chunks: shapes.iter().map(|s| s[axis..].iter().product()).collect(),
        }
    }

    /// `out = concat(inputs)`.
    pub fn run<T: Copy>(&self, inputs: &[&[T]], out: &mut [T]) {
        let row: usize = self.chunks.iter().sum();
        for o in 0..self.outer {
            let mut at = o * row;
            for (x, &c) in inputs.iter().zip(&self.chunks) {
                out[at..at + c].copy_from_slice(&x[o * c..(o + 1) * c]);
                at += c;
            }
        }
    }
}

/// A slice: a strided view copied out.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    base: usize,
    dims: Vec<usize>,
    strides: Vec<isize>,
}

impl Slice {
    /// A slice of an input of `shape` by resolved per-axis ranges.
    pub fn new(shape: &[usize], axes: &[SliceAxis]) -> Slice {
        let mut stride = 1isize;
        let mut base = 0usize;
        let mut strides = vec![0; shape.len()];
        for i in (0..shape.len()).rev() {
            strides[i] = stride * axes[i].step;
            if axes[i].len > 0 {
                base += axes[i].start * stride as usize;
            }
            stride *= shape[i] as isize;
        }
        Slice {
            base,
            dims: axes.iter().map(|a| a.len).collect(),
            strides,
        }
    }

    /// `out = x[slice]`.
    pub fn run<T: Copy>(&self, x: &[T], out: &mut [T]) {
        if self.dims.contains(&0) {
            return;
        }
        if self.dims.is_empty() {
            out[0] = x[self.base];
            return;
        }
        self.walk(0, self.base as isize, x, out);
    }

    fn walk<T: Copy>(&self, axis: usize, base: isize, x: &[T], out: &mut [T]) {
        let n = self.dims[axis];
        let s = self.strides[axis];
        if axis + 1 == self.dims.len() {
            if s == 1 {
                let b = base as usize;
                out[..n].copy_from_slice(&x[b..b + n]);
            } else {
                out[..n]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, o)| *o = x[(base + i as isize * s) as usize]);
            }
            return;
        }
        let inner: usize = self.dims[axis + 1..].iter().product();
        for i in 0..n {
            self.walk(axis + 1, base + i as isize * s, x, &mut out[i * inner..]);
        }
    }
}

/// Gather along one axis with constant, validated indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Gather {
    outer: usize,
    axis_len: usize,
    inner: usize,
    indices: Vec<usize>,
}

impl Gather {
    /// A gather from data of `shape` along `axis`; `indices` must already be in range.
    pub fn new(shape: &[usize], axis: usize, indices: Vec<usize>) -> Gather {
        Gather {
            outer: shape[..axis].iter().product(),
            axis_len: shape[axis],
            inner: shape[axis + 1..].iter().product(),
            indices,
        }
    }

    /// `out = x.take(indices, axis)`.
    pub fn run<T: Copy>(&self, x: &[T], out: &mut [T]) {
        let mut at = 0;
        for o in 0..self.outer {
            for &i in &self.indices {
                let src = (o * self.axis_len + i) * self.inner;
                out[at..at + self.inner].copy_from_slice(&x[src..src + self.inner]);
                at += self.inner;
            }
        }
    }
}
