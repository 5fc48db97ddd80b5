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
            for_each_plane(out, oh * ow, |p, o| {
                max_plane(w, &x[p * ih * iw..(p + 1) * ih * iw], o)
            });
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

/// One plane of a max pool: per output row and valid window row, each tap column is folded
/// into the row with `max` (the interior without bounds arithmetic), padding never wins.
fn max_plane(w: &Window2d, x: &[f32], out: &mut [f32]) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sx, dx, px) = (w.strides[1], w.dilations[1], w.pads[1]);
    for oy in 0..oh {
        let (ylo, yhi, ys) = taps(oy, w.strides[0], w.pads[0], w.dilations[0], kh, ih);
        let orow = &mut out[oy * ow..(oy + 1) * ow];
        orow.fill(f32::NEG_INFINITY);
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
                    .for_each(|(o, &v)| *o = o.max(v));
            }
        }
    }
}

/// Mean of each `size`-element plane of `x`.
pub fn global_average(x: &[f32], size: usize, out: &mut [f32]) {
    for (o, plane) in out.iter_mut().zip(x.chunks(size.max(1))) {
        *o = plane_sum(plane) / size.max(1) as f32;
    }
}

/// Sum of a plane in eight interleaved partial sums (one SIMD register's worth), so the adds
/// do not wait on each other: a single running sum would take one add latency per element.
fn plane_sum(plane: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = plane.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

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
