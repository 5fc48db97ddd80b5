//! The patch operand of a convolution run as a GEMM (im2col), written straight into the GEMM's
//! 16-column panels ([`PanelsMut`]).
//!
//! Row `(c·kh + ky)·kw + kx` of the K × Hout·Wout operand holds, for every output position, the
//! input value under tap (ky, kx) of channel c, or 0 where the tap falls in the padding. Three
//! ways to write it, chosen once per convolution ([`Patches::new`]):
//! * pointwise (1×1, stride 1, no padding): the rows are the input planes, copied in;
//! * same width (stride 1, output as wide as the input, the usual "same" 3×3/5×5 layer): output
//!   position `j` reads input index `j + d(ky, kx)`, so each panel row is 16 consecutive input
//!   values with the columns that wrapped around the row edge masked to zero; panels are written
//!   one after the other, each row of a panel with two vector loads, ands and stores;
//! * anything else (strides, narrower outputs): each patch row is built in a scratch row, then
//!   copied into the panels.

use crate::graph::shape::Window2d;
use crate::kernels::f32::{PanelsMut, PANEL_COLS};

/// How a convolution's patch operand is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Patches {
    /// 1×1, stride 1, unpadded: the patch rows are the input planes.
    Pointwise,
    /// Stride 1 with the output as wide as the input, kernel at most [`MAX_K`] wide.
    SameWidth(ColumnMasks),
    /// Any other window: row by row through a scratch row.
    General,
}

/// Widest kernel the same-width writer takes: its per-panel column masks live on the stack.
const MAX_K: usize = 16;

/// Per panel and kernel column kx of a same-width window, the lanes whose input column
/// `ox + kx·dx − pad_left` is inside the input. Lane `l` of panel `p` is output column
/// `(16p + l) mod W`, so the masks repeat every `W / gcd(W, 16)` panels: one period is kept,
/// made once at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ColumnMasks {
    /// Panels in one period.
    period: usize,
    /// `masks[q * kw + kx]` for phase `q` of the period.
    masks: Vec<[u32; PANEL_COLS]>,
}

impl ColumnMasks {
    fn new(w: &Window2d) -> ColumnMasks {
        let (iw, kw, dx, pl) = (w.input[1], w.kernel[1], w.dilations[1], w.pads[1]);
        let period = iw.max(1) / gcd(iw.max(1), PANEL_COLS);
        let mut masks = vec![[0u32; PANEL_COLS]; period * kw];
        for (i, m) in masks.iter_mut().enumerate() {
            let (q, kx) = (i / kw, i % kw);
            for (l, v) in m.iter_mut().enumerate() {
                let ox = (q * PANEL_COLS + l) % iw.max(1);
                *v = if (ox + kx * dx).wrapping_sub(pl) < iw {
                    u32::MAX
                } else {
                    0
                };
            }
        }
        ColumnMasks { period, masks }
    }

    /// The `kw` masks of panel `p`.
    fn of_panel(&self, p: usize, kw: usize) -> &[[u32; PANEL_COLS]] {
        &self.masks[(p % self.period) * kw..][..kw]
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Patches {
    /// The writer for window `w`.
    pub(super) fn new(w: &Window2d) -> Patches {
        if w.kernel == [1, 1] && w.strides == [1, 1] && w.pads == [0; 4] {
            Patches::Pointwise
        } else if w.strides == [1, 1] && w.output[1] == w.input[1] && w.kernel[1] <= MAX_K {
            Patches::SameWidth(ColumnMasks::new(w))
        } else {
            Patches::General
        }
    }

    /// Floats of scratch [`Patches::write`] needs beside the panels.
    pub(super) fn scratch_len(&self, w: &Window2d) -> usize {
        match self {
            Patches::General => w.output[0] * w.output[1],
            Patches::Pointwise | Patches::SameWidth(_) => 0,
        }
    }

    /// Writes the first `c·kh·kw` rows of `b` (N = Hout·Wout columns) from the `c` planes of `x`;
    /// `row` is the scratch of [`Patches::scratch_len`].
    pub(super) fn write(
        &self,
        w: &Window2d,
        x: &[f32],
        c: usize,
        row: &mut [f32],
        b: &mut PanelsMut<'_>,
    ) {
        let plane = w.input[0] * w.input[1];
        match self {
            Patches::Pointwise => {
                for (ch, p) in x[..c * plane].chunks_exact(plane).enumerate() {
                    b.set_row(ch, p);
                }
            }
            Patches::SameWidth(cols) => same_width(w, cols, x, c, b),
            Patches::General => {
                let row = &mut row[..w.output[0] * w.output[1]];
                im2col_rows(w, x, c, row, |kk, r| b.set_row(kk, r));
            }
        }
    }
}

/// The patch rows of a stride-1 window whose output is as wide as its input, panel by panel:
/// output position `j = oy·W + ox` under tap (ky, kx) of channel c reads input index
/// `c·H·W + j + d` with `d = (ky·dy − pad_top)·W + kx·dx − pad_left`, inside the input when its
/// row `oy + ky·dy − pad_top` is in `[0, H)` (a band of positions per ky) and its column
/// `ox + kx·dx − pad_left` is in `[0, W)` (a lane mask per panel and kx). A panel row is then 16
/// consecutive input values anded with the two masks. Lanes outside the input are masked, so
/// they may read a neighbouring channel's plane; only a row whose 16 values would run off the
/// ends of `x` is read lane by lane.
fn same_width(w: &Window2d, cols: &ColumnMasks, x: &[f32], c: usize, b: &mut PanelsMut<'_>) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa().has_avx2() {
        // SAFETY: `isa()` reports AVX2 only after detecting AVX2 and FMA on this CPU.
        unsafe { same_width_avx2(w, cols, x, c, b) };
        return;
    }
    same_width_portable(w, cols, x, c, b);
}

/// [`same_width`] with each panel row moved by two AVX2 loads, ands and stores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn same_width_avx2(w: &Window2d, cols: &ColumnMasks, x: &[f32], c: usize, b: &mut PanelsMut<'_>) {
    use std::arch::x86_64::*;
    same_width_with(w, cols, x, c, b, |src, m, dst| {
        // SAFETY: `src`, `m` and `dst` each hold 16 values: two unaligned 8-lane loads or
        // stores at offsets 0 and 8 stay inside them.
        unsafe {
            for h in [0, 8] {
                let v = _mm256_loadu_ps(src.as_ptr().add(h));
                let k = _mm256_loadu_si256(m.as_ptr().add(h) as *const __m256i);
                let v = _mm256_and_ps(v, _mm256_castsi256_ps(k));
                _mm256_storeu_ps(dst.as_mut_ptr().add(h), v);
            }
        }
    });
}

/// [`same_width`] as portable code: the twin the AVX2 version is tested against.
fn same_width_portable(
    w: &Window2d,
    cols: &ColumnMasks,
    x: &[f32],
    c: usize,
    b: &mut PanelsMut<'_>,
) {
    same_width_with(w, cols, x, c, b, |src, m, dst| {
        for ((o, &v), &k) in dst.iter_mut().zip(src).zip(m) {
            *o = f32::from_bits(v.to_bits() & k);
        }
    });
}

/// One panel row: `dst = src` where the lane mask is all ones, `+0.0` where it is zero.
type MaskedCopy = [f32; PANEL_COLS];

/// [`same_width`]'s loops around `copy`, the move of one in-bounds panel row.
#[inline(always)]
fn same_width_with(
    w: &Window2d,
    cols: &ColumnMasks,
    x: &[f32],
    c: usize,
    b: &mut PanelsMut<'_>,
    copy: impl Fn(&MaskedCopy, &[u32; PANEL_COLS], &mut MaskedCopy),
) {
    const L: usize = PANEL_COLS;
    let (ih, iw) = (w.input[0], w.input[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (dy, dx) = (w.dilations[0], w.dilations[1]);
    let (pt, pl) = (w.pads[0], w.pads[1]);
    let oh = w.output[0];
    let n = oh * iw;
    let plane = ih * iw;
    let x = &x[..c * plane];
    if n == 0 || kw > MAX_K {
        return;
    }
    let taps = kh * kw;
    for p in 0..n.div_ceil(L) {
        let j0 = p * L;
        let cols = cols.of_panel(p, kw);
        let panel = b.panel_mut(p);
        for ky in 0..kh {
            // Output positions [lo, hi) whose input row oy + ky·dy − pt lies in [0, ih), and
            // the real columns (lanes past N stay zero).
            let shift = ky * dy;
            let oy0 = pt.saturating_sub(shift).min(oh);
            let oy1 = (ih + pt).saturating_sub(shift).clamp(oy0, oh);
            let (lo, hi) = (oy0 * iw, oy1 * iw);
            if j0 + L <= lo || hi <= j0 {
                for rows in panel.chunks_exact_mut(taps).take(c) {
                    rows[ky * kw..(ky + 1) * kw].fill([0.0; L]);
                }
                continue;
            }
            // Lanes whose row is inside: all of them except near the band's ends.
            let mut row = [u32::MAX; L];
            if j0 < lo || hi < j0 + L {
                for (l, v) in row.iter_mut().enumerate() {
                    *v = if (lo..hi).contains(&(j0 + l)) {
                        u32::MAX
                    } else {
                        0
                    };
                }
            }
            let base = j0 as isize + (shift as isize - pt as isize) * iw as isize - pl as isize;
            for (kx, col) in cols.iter().enumerate() {
                let mut m = [0u32; L];
                for ((v, &r), &k) in m.iter_mut().zip(&row).zip(col) {
                    *v = r & k;
                }
                let mut s = base + (kx * dx) as isize;
                for dst in panel.iter_mut().skip(ky * kw + kx).step_by(taps).take(c) {
                    let src = usize::try_from(s)
                        .ok()
                        .and_then(|s| x.get(s..))
                        .and_then(<[f32]>::first_chunk::<L>);
                    match src {
                        Some(src) => copy(src, &m, dst),
                        None => masked_lanes(x, s, &m, dst),
                    }
                    s += plane as isize;
                }
            }
        }
    }
}

/// A panel row of [`same_width`] whose 16 values would run off an end of `x`, lane by lane:
/// `x[s + l]` where lane `l` of `m` is set (inside the input, so inside `x`), else 0. Kept out
/// of line: it runs for a few rows at the ends of the input only.
#[cold]
#[inline(never)]
fn masked_lanes(x: &[f32], s: isize, m: &[u32; PANEL_COLS], dst: &mut [f32; PANEL_COLS]) {
    for (l, (o, &k)) in dst.iter_mut().zip(m).enumerate() {
        *o = if k != 0 {
            x[(s + l as isize) as usize]
        } else {
            0.0
        };
    }
}

/// Hands each row of the patch matrix [C·kh·kw × Hout·Wout] of the `c`-channel input `x` to
/// `emit(row_index, row)`, built in `row` (Hout·Wout values): a row is one tap of one channel, a
/// run of shifted copies of input rows with zeros where the tap falls in the padding.
fn im2col_rows(
    w: &Window2d,
    x: &[f32],
    c: usize,
    row: &mut [f32],
    mut emit: impl FnMut(usize, &[f32]),
) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sx, dx) = (w.strides[1], w.dilations[1]);
    let hw = oh * ow;
    for ch in 0..c {
        let plane = &x[ch * ih * iw..][..ih * iw];
        for ky in 0..kh {
            for kx in 0..kw {
                let kk = (ch * kh + ky) * kw + kx;
                let dst = &mut row[..hw];
                // Output columns whose tap kx lands inside the input: ox·sx + kx·dx − pad ∈ [0, iw).
                let off = kx * dx;
                let lo = w.pads[1].saturating_sub(off).div_ceil(sx).min(ow);
                let hi = if iw + w.pads[1] > off {
                    ((iw + w.pads[1] - off - 1) / sx + 1).min(ow).max(lo)
                } else {
                    lo
                };
                for oy in 0..oh {
                    let drow = &mut dst[oy * ow..][..ow];
                    let y = (oy * w.strides[0] + ky * w.dilations[0]).wrapping_sub(w.pads[0]);
                    if y >= ih || lo == hi {
                        drow.fill(0.0);
                        continue;
                    }
                    drow[..lo].fill(0.0);
                    drow[hi..].fill(0.0);
                    let start = lo * sx + off - w.pads[1];
                    let src = &plane[y * iw..][..iw];
                    if sx == 1 {
                        drow[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                    } else {
                        let taps = src[start..].iter().step_by(sx);
                        drow[lo..hi].iter_mut().zip(taps).for_each(|(d, &v)| *d = v);
                    }
                }
                emit(kk, dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::ops::test_values as rand;

    /// Window `kernel` over `input` with the output size the ONNX formula gives (floor mode).
    fn window(
        input: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        pads: [usize; 4],
        dilations: [usize; 2],
    ) -> Window2d {
        let out = |i: usize| {
            let span = dilations[i] * (kernel[i] - 1) + 1;
            (input[i] + pads[i] + pads[i + 2]).saturating_sub(span) / strides[i] + 1
        };
        Window2d {
            kernel,
            strides,
            dilations,
            pads,
            input,
            output: [out(0), out(1)],
        }
    }

    /// The patch matrix [C·kh·kw × Hout·Wout] computed element by element from the definition.
    fn reference(w: &Window2d, x: &[f32], c: usize) -> Vec<f32> {
        let (ih, iw) = (w.input[0], w.input[1]);
        let (oh, ow) = (w.output[0], w.output[1]);
        let (kh, kw) = (w.kernel[0], w.kernel[1]);
        let mut col = vec![0.0; c * kh * kw * oh * ow];
        for ch in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let kk = (ch * kh + ky) * kw + kx;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let y = (oy * w.strides[0] + ky * w.dilations[0]) as isize
                                - w.pads[0] as isize;
                            let xx = (ox * w.strides[1] + kx * w.dilations[1]) as isize
                                - w.pads[1] as isize;
                            if (0..ih as isize).contains(&y) && (0..iw as isize).contains(&xx) {
                                col[kk * oh * ow + oy * ow + ox] =
                                    x[(ch * ih + y as usize) * iw + xx as usize];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    /// Writes the patches with `write` into NaN-filled panels and reads B back element by
    /// element (K × N row-major).
    fn written(
        w: &Window2d,
        c: usize,
        write: impl FnOnce(&mut PanelsMut<'_>, &mut [f32]),
    ) -> Vec<f32> {
        let (k, n) = (c * w.kernel[0] * w.kernel[1], w.output[0] * w.output[1]);
        let mut scratch = vec![f32::NAN; PanelsMut::scratch_len(k, n)];
        let mut row = vec![f32::NAN; n];
        let mut b = PanelsMut::new(k, n, &mut scratch);
        write(&mut b, &mut row);
        let mut out = vec![0.0; k * n];
        for p in 0..n.div_ceil(PANEL_COLS) {
            for (kk, r) in b.panel_mut(p).iter().enumerate() {
                for (l, &v) in r.iter().enumerate() {
                    if let Some(o) = out.get_mut(kk * n + p * PANEL_COLS + l) {
                        if p * PANEL_COLS + l < n {
                            *o = v;
                        }
                    }
                }
            }
        }
        out
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn every_writer_matches_the_definition_on_odd_windows() {
        // (input, kernel, strides, pads [t, l, b, r], dilations)
        let cases = [
            ([14, 14], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([28, 28], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([7, 9], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([5, 3], [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
            ([6, 5], [3, 3], [1, 1], [2, 2, 2, 2], [2, 2]),
            ([4, 17], [2, 3], [1, 1], [0, 1, 1, 1], [1, 1]),
            ([3, 2], [7, 1], [1, 1], [3, 0, 3, 0], [1, 1]),
            ([9, 11], [3, 3], [1, 1], [4, 1, 0, 1], [1, 1]),
            ([2, 4], [3, 5], [1, 1], [1, 2, 1, 2], [1, 1]),
            ([5, 6], [1, 1], [1, 1], [0; 4], [1, 1]),
            ([1, 33], [1, 1], [1, 1], [0; 4], [1, 1]),
            ([48, 19], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1]),
            ([11, 23], [3, 3], [2, 1], [1, 0, 1, 2], [1, 2]),
            ([7, 9], [3, 3], [1, 1], [0; 4], [1, 1]),
            ([5, 6], [3, 1], [1, 3], [0; 4], [2, 1]),
            ([6, 8], [2, 2], [1, 1], [1, 0, 0, 1], [1, 1]),
        ];
        for (i, (input, kernel, strides, pads, dil)) in cases.into_iter().enumerate() {
            let w = window(input, kernel, strides, pads, dil);
            for c in [1, 3] {
                let mut x = rand(c * input[0] * input[1], i as u64 + 11 * c as u64);
                // Values whose bits must survive the copy exactly.
                x[0] = f32::NAN;
                x[c * input[0] * input[1] - 1] = -0.0;
                let want = bits(&reference(&w, &x, c));
                let kind = Patches::new(&w);
                let got = written(&w, c, |b, row| kind.write(&w, &x, c, row, b));
                assert_eq!(bits(&got), want, "{kind:?} {w:?}");
                let general = written(&w, c, |b, row| Patches::General.write(&w, &x, c, row, b));
                assert_eq!(bits(&general), want, "general {w:?}");
                if let Patches::SameWidth(cols) = &kind {
                    let portable = written(&w, c, |b, _| same_width_portable(&w, cols, &x, c, b));
                    assert_eq!(bits(&portable), want, "portable {w:?}");
                }
            }
        }
    }

    #[test]
    fn writers_are_chosen_by_window() {
        let same = window([14, 14], [3, 3], [1, 1], [1; 4], [1, 1]);
        assert!(matches!(Patches::new(&same), Patches::SameWidth(_)));
        let pw = window([5, 5], [1, 1], [1, 1], [0; 4], [1, 1]);
        assert_eq!(Patches::new(&pw), Patches::Pointwise);
        let strided = window([48, 192], [3, 3], [2, 2], [1; 4], [1, 1]);
        assert_eq!(Patches::new(&strided), Patches::General);
        let valid = window([7, 9], [3, 3], [1, 1], [0; 4], [1, 1]);
        assert_eq!(Patches::new(&valid), Patches::General);
        let wide = window([4, 40], [1, 17], [1, 1], [0, 8, 0, 8], [1, 1]);
        assert_eq!(Patches::new(&wide), Patches::General);
    }
}
