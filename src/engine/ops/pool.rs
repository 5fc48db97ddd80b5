//! Pooling: MaxPool, AveragePool (with or without the padding counted) and GlobalAveragePool.

use super::conv::{for_each_plane, taps};
use crate::graph::shape::Window2d;

/// Which reduction a window pool applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Mean over the window; `count_include_pad` divides by the full window size.
    Average {
        /// Count padded positions in the divisor.
        count_include_pad: bool,
    },
}

/// A windowed pool over NCHW planes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Window geometry.
    pub window: Window2d,
    /// Reduction.
    pub kind: PoolKind,
}

impl Pool {
    /// Pools every plane of `x` into `out`.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let w = &self.window;
        let (ih, iw) = (w.input[0], w.input[1]);
        let (oh, ow) = (w.output[0], w.output[1]);
        let (kh, kw) = (w.kernel[0], w.kernel[1]);
        let (dy, dx) = (w.dilations[0], w.dilations[1]);
        if self.kind == PoolKind::Max {
            max_pool(w, x, out);
            return;
        }
        for_each_plane(out, oh * ow, |p, o| {
            let xp = &x[p * ih * iw..(p + 1) * ih * iw];
            for oy in 0..oh {
                let y0 = (oy * w.strides[0]) as isize - w.pads[0] as isize;
                for ox in 0..ow {
                    let x0 = (ox * w.strides[1]) as isize - w.pads[1] as isize;
                    let (mut acc, mut n) = match self.kind {
                        PoolKind::Max => (f32::NEG_INFINITY, 0usize),
                        PoolKind::Average { .. } => (0.0, 0),
                    };
                    for ky in 0..kh {
                        let y = y0 + (ky * dy) as isize;
                        if y < 0 || y >= ih as isize {
                            continue;
                        }
                        let row = &xp[y as usize * iw..][..iw];
                        for kx in 0..kw {
                            let xx = x0 + (kx * dx) as isize;
                            if xx < 0 || xx >= iw as isize {
                                continue;
                            }
                            let v = row[xx as usize];
                            acc = match self.kind {
                                PoolKind::Max => acc.max(v),
                                PoolKind::Average { .. } => acc + v,
                            };
                            n += 1;
                        }
                    }
                    o[oy * ow + ox] = match self.kind {
                        PoolKind::Max => acc,
                        PoolKind::Average {
                            count_include_pad: true,
                        } => {
                            // The divisor counts padding but not the part of a ceil-mode window
                            // that hangs past the padded input.
                            let ylim = (ih + w.pads[0] + w.pads[2]) as isize;
                            let xlim = (iw + w.pads[1] + w.pads[3]) as isize;
                            let yn = (0..kh)
                                .filter(|&k| y0 + w.pads[0] as isize + ((k * dy) as isize) < ylim)
                                .count();
                            let xn = (0..kw)
                                .filter(|&k| x0 + w.pads[1] as isize + ((k * dx) as isize) < xlim)
                                .count();
                            acc / (yn * xn).max(1) as f32
                        }
                        PoolKind::Average {
                            count_include_pad: false,
                        } => acc / n.max(1) as f32,
                    };
                }
            }
        });
    }
}

/// An element type max pooling runs on: f32, and the u8/i8 of quantized tensors (max commutes
/// with dequantization at a positive scale, so a quantized max pool is exact).
pub trait PoolMax: Copy + Send + Sync {
    /// The value padding holds: it never wins.
    const LOWEST: Self;
    /// The larger of two values.
    fn max_of(self, other: Self) -> Self;
}

impl PoolMax for f32 {
    const LOWEST: f32 = f32::NEG_INFINITY;
    #[inline(always)]
    fn max_of(self, other: f32) -> f32 {
        self.max(other)
    }
}

impl PoolMax for u8 {
    const LOWEST: u8 = u8::MIN;
    #[inline(always)]
    fn max_of(self, other: u8) -> u8 {
        self.max(other)
    }
}

impl PoolMax for i8 {
    const LOWEST: i8 = i8::MIN;
    #[inline(always)]
    fn max_of(self, other: i8) -> i8 {
        self.max(other)
    }
}

/// Max pool of every NCHW plane of `x` into `out` over window `w`.
pub fn max_pool<T: PoolMax>(w: &Window2d, x: &[T], out: &mut [T]) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    // The common case takes a loop with no tap arithmetic at all.
    let plain_2x2 = w.is_plain_2x2();
    for_each_plane(out, oh * ow, |p, o| {
        let xp = &x[p * ih * iw..(p + 1) * ih * iw];
        if plain_2x2 {
            max_plane_2x2(iw, xp, ow, o);
        } else {
            max_plane(w, xp, o);
        }
    });
}

/// One plane of a 2×2, stride-2 max pool whose windows all lie inside the `iw`-wide input.
fn max_plane_2x2<T: PoolMax>(iw: usize, x: &[T], ow: usize, out: &mut [T]) {
    for (oy, orow) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &x[2 * oy * iw..][..2 * ow];
        let r1 = &x[(2 * oy + 1) * iw..][..2 * ow];
        for ((o, a), b) in orow
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            *o = a[0].max_of(a[1]).max_of(b[0].max_of(b[1]));
        }
    }
}

/// One plane of a max pool: per output row and valid window row, each tap column is folded
/// into the row with `max` (the interior without bounds arithmetic), padding never wins.
fn max_plane<T: PoolMax>(w: &Window2d, x: &[T], out: &mut [T]) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sx, dx, px) = (w.strides[1], w.dilations[1], w.pads[1]);
    for oy in 0..oh {
        let (ylo, yhi, ys) = taps(oy, w.strides[0], w.pads[0], w.dilations[0], kh, ih);
        let orow = &mut out[oy * ow..(oy + 1) * ow];
        orow.fill(T::LOWEST);
        for ky in ylo..yhi {
            let y = (ys + (ky * w.dilations[0]) as isize) as usize;
            let src = &x[y * iw..(y + 1) * iw];
            for kx in 0..kw {
                // Output columns whose tap kx lands inside the row: ox·sx + kx·dx − px ∈ [0, iw).
                let off = kx * dx;
                let lo = px.saturating_sub(off).div_ceil(sx).min(ow);
                let hi = if iw + px > off {
                    ((iw + px - off - 1) / sx + 1).min(ow).max(lo)
                } else {
                    lo
                };
                if lo == hi {
                    continue;
                }
                let taps = src[lo * sx + off - px..].iter().step_by(sx);
                orow[lo..hi]
                    .iter_mut()
                    .zip(taps)
                    .for_each(|(o, &v)| *o = o.max_of(v));
            }
        }
    }
}

/// Mean of each `size`-element plane of `x`.
pub fn global_average(x: &[f32], size: usize, out: &mut [f32]) {
    global_average_by(x, size, out, |v| v);
}

/// Mean of each `size`-element plane of `x` read as f32 through `value`: the same sums, in the
/// same order, as [`global_average`] on the values `value` gives (a quantized input
/// dequantized inside the sum gives the bits of dequantizing first).
#[inline(always)]
pub fn global_average_by<T: Copy>(
    x: &[T],
    size: usize,
    out: &mut [f32],
    value: impl Fn(T) -> f32 + Copy,
) {
    for (o, plane) in out.iter_mut().zip(x.chunks(size.max(1))) {
        *o = plane_sum(plane, value) / size.max(1) as f32;
    }
}

/// Elements of a plane converted to f32 at a time by [`plane_sum`].
const BLOCK: usize = 256;

/// Sum of a plane in eight interleaved partial sums (one SIMD register's worth), so the adds
/// do not wait on each other: a single running sum would take one add latency per element.
/// The values are converted a block at a time (multiples of 8, so the partial sums see them in
/// the same order) and summed from the block, so a conversion that does not vectorize (a table
/// lookup) leaves the sums vectorized.
#[inline(always)]
fn plane_sum<T: Copy>(plane: &[T], value: impl Fn(T) -> f32 + Copy) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut block = [0.0f32; BLOCK];
    let full = plane.len() / 8 * 8;
    let tail: f32 = plane[full..].iter().map(|&v| value(v)).sum();
    for piece in plane[..full].chunks(BLOCK) {
        for (b, &v) in block.iter_mut().zip(piece) {
            *b = value(v);
        }
        for c in block[..piece.len()].chunks_exact(8) {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v;
            }
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Pooling windows with odd sizes, strides above and below the kernel, asymmetric pads and a
/// dilation, for the pools' unit tests.
#[cfg(test)]
pub(super) fn odd_windows() -> [Window2d; 4] {
    let win = |input, kernel, strides, pads, dilations, output| Window2d {
        kernel,
        strides,
        dilations,
        pads,
        input,
        output,
    };
    [
        win([7, 9], [2, 2], [2, 2], [0; 4], [1, 1], [3, 4]),
        win([8, 6], [2, 2], [2, 2], [0; 4], [1, 1], [4, 3]),
        win([7, 9], [3, 2], [2, 1], [1, 0, 1, 1], [1, 2], [4, 8]),
        win([5, 5], [2, 2], [2, 2], [0, 0, 1, 1], [1, 1], [3, 3]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_max(w: &Window2d, x: &[f32]) -> Vec<f32> {
        let mut out = vec![f32::NEG_INFINITY; w.output[0] * w.output[1]];
        for (i, o) in out.iter_mut().enumerate() {
            let (oy, ox) = (i / w.output[1], i % w.output[1]);
            for ky in 0..w.kernel[0] {
                for kx in 0..w.kernel[1] {
                    let y = (oy * w.strides[0] + ky * w.dilations[0]) as isize - w.pads[0] as isize;
                    let xx =
                        (ox * w.strides[1] + kx * w.dilations[1]) as isize - w.pads[1] as isize;
                    if (0..w.input[0] as isize).contains(&y)
                        && (0..w.input[1] as isize).contains(&xx)
                    {
                        *o = o.max(x[y as usize * w.input[1] + xx as usize]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn max_pool_paths_match_the_window_definition_on_odd_shapes() {
        let cases = odd_windows();
        for w in cases {
            let (input, output) = (w.input, w.output);
            let planes = 3;
            let x: Vec<f32> = (0..planes * input[0] * input[1])
                .map(|i| ((i * 53) % 17) as f32 - 8.0)
                .collect();
            let pool = Pool {
                window: w.clone(),
                kind: PoolKind::Max,
            };
            let mut out = vec![0.0; planes * output[0] * output[1]];
            pool.run(&x, &mut out);
            let plane = input[0] * input[1];
            for p in 0..planes {
                let want = reference_max(&w, &x[p * plane..(p + 1) * plane]);
                assert_eq!(
                    &out[p * want.len()..(p + 1) * want.len()],
                    &want[..],
                    "{w:?}"
                );
            }
        }
    }

    #[test]
    fn global_average_matches_a_plain_mean_on_odd_planes() {
        for size in [1, 7, 8, 9, 31, 288] {
            let x: Vec<f32> = (0..3 * size)
                .map(|i| ((i * 37) % 11) as f32 - 5.0)
                .collect();
            let mut out = vec![0.0; 3];
            global_average(&x, size, &mut out);
            for (c, &o) in out.iter().enumerate() {
                let want = x[c * size..(c + 1) * size]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum::<f64>()
                    / size as f64;
                assert!((f64::from(o) - want).abs() <= 1e-5, "{size}: {o} vs {want}");
            }
        }
    }
}
