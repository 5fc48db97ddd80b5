//! 2-D convolution: a direct kernel for depthwise convolution, im2col + packed GEMM for the rest,
//! with bias and a Relu/Clip fused into the GEMM.
//!
//! The GEMM runs with the weights as A and the patch matrix as B: `out[Cout × H·W] =
//! W[Cout × K] · patches[K × H·W]`, which is NCHW as it stands, so no transpose follows. The
//! patch rows (one per input channel and tap: a shifted copy of the input plane) are written
//! straight into the GEMM's 16-column panels (`engine::ops::patches`), so the patch matrix is never
//! materialised row-major and turned around. The bias rides along as one more K step: a column
//! of A holding the bias and a row of B holding ones.

use rayon::prelude::*;

use super::patches::Patches;
use crate::graph::shape::{ConvParams, Window2d};
use crate::kernels::f32::{gemm_kernel_name, gemm_panels, Activation, Epilogue, PanelsMut};

/// Name reported for the direct depthwise kernel.
pub const DEPTHWISE_KERNEL: &str = "depthwise-f32-direct";

/// A convolution with its weights prepared for the kernel that runs it.
#[derive(Debug, Clone)]
pub struct Conv {
    p: ConvParams,
    bias: Option<Vec<f32>>,
    act: Activation,
    kind: ConvKind,
}

#[derive(Debug, Clone)]
enum ConvKind {
    /// One input channel per group: each output channel is a single-plane filter.
    Depthwise { weights: Vec<f32> },
    /// Patches into GEMM panels, then one GEMM per group with the weights as A.
    Gemm {
        /// Row-major [Cout × kb]: each output channel's K weights, then its bias when there is
        /// one (`kb` = K + 1).
        weights: Vec<f32>,
        /// Row length of `weights` (the GEMM's K).
        kb: usize,
        /// How the patch operand is written.
        patches: Patches,
    },
}

impl Conv {
    /// Prepares a convolution: `weights` is the ONNX [Cout, Cin/g, kh, kw] tensor's data.
    pub fn new(p: ConvParams, weights: &[f32], bias: Option<&[f32]>, act: Activation) -> Conv {
        let [kh, kw] = p.window.kernel;
        let cin_g = p.cin / p.group;
        let k = cin_g * kh * kw;
        let kind = if cin_g == 1 && p.group > 1 {
            ConvKind::Depthwise {
                weights: weights.to_vec(),
            }
        } else {
            let kb = k + usize::from(bias.is_some());
            let mut folded = Vec::with_capacity(p.cout * kb);
            for co in 0..p.cout {
                folded.extend_from_slice(&weights[co * k..(co + 1) * k]);
                folded.extend(bias.map(|b| b[co]));
            }
            ConvKind::Gemm {
                weights: folded,
                kb,
                patches: Patches::new(&p.window),
            }
        };
        Conv {
            p,
            bias: bias.map(<[f32]>::to_vec),
            act,
            kind,
        }
    }

    /// Floats of scratch the kernel needs: the patch panels, then what their writer needs.
    pub fn scratch_len(&self) -> usize {
        match &self.kind {
            ConvKind::Depthwise { .. } => 0,
            ConvKind::Gemm { kb, patches, .. } => {
                let w = &self.p.window;
                PanelsMut::scratch_len(*kb, w.output[0] * w.output[1]) + patches.scratch_len(w)
            }
        }
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        match &self.kind {
            ConvKind::Depthwise { weights } | ConvKind::Gemm { weights, .. } => weights.len() * 4,
        }
    }

    /// Name of the kernel this convolution runs on.
    pub fn kernel_name(&self) -> String {
        match &self.kind {
            ConvKind::Depthwise { .. } => DEPTHWISE_KERNEL.to_string(),
            ConvKind::Gemm { .. } => gemm_kernel_name(),
        }
    }

    /// `out = act(conv(x) + bias)` for NCHW `x` and `out`.
    pub fn run(&self, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
        match &self.kind {
            ConvKind::Depthwise { weights } => self.depthwise(x, weights, out),
            ConvKind::Gemm {
                weights,
                kb,
                patches,
            } => self.im2col_gemm(x, weights, *kb, patches, out, scratch),
        }
    }

    fn depthwise(&self, x: &[f32], weights: &[f32], out: &mut [f32]) {
        let w = &self.p.window;
        let (ih, iw) = (w.input[0], w.input[1]);
        let plane_out = w.output[0] * w.output[1];
        let ksz = w.kernel[0] * w.kernel[1];
        let mult = self.p.cout / self.p.group;
        let cout = self.p.cout;
        let one = |idx: usize, o: &mut [f32]| {
            let (n, co) = (idx / cout, idx % cout);
            let ci = co / mult;
            let xp = &x[(n * self.p.cin + ci) * ih * iw..][..ih * iw];
            let b = self.bias.as_ref().map_or(0.0, |b| b[co]);
            depthwise_plane(w, xp, &weights[co * ksz..(co + 1) * ksz], b, self.act, o);
        };
        for_each_plane(out, plane_out, one);
    }

    fn im2col_gemm(
        &self,
        x: &[f32],
        weights: &[f32],
        kb: usize,
        patches: &Patches,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let w = &self.p.window;
        let hw = w.output[0] * w.output[1];
        let cin_g = self.p.cin / self.p.group;
        let cout_g = self.p.cout / self.p.group;
        let k = cin_g * w.kernel[0] * w.kernel[1];
        let in_plane = w.input[0] * w.input[1];
        let (panels, row) = scratch.split_at_mut(PanelsMut::scratch_len(kb, hw));
        for n in 0..self.p.batch {
            for g in 0..self.p.group {
                let xg = &x[(n * self.p.cin + g * cin_g) * in_plane..][..cin_g * in_plane];
                let mut b = PanelsMut::new(kb, hw, panels);
                patches.write(w, xg, cin_g, row, &mut b);
                if kb > k {
                    b.fill_row(k, 1.0);
                }
                gemm_panels(
                    cout_g,
                    &weights[g * cout_g * kb..(g + 1) * cout_g * kb],
                    kb,
                    b.panels(),
                    Epilogue {
                        bias: None,
                        act: self.act,
                    },
                    &mut out[(n * self.p.cout + g * cout_g) * hw..][..cout_g * hw],
                    hw,
                );
            }
        }
    }
}

/// Runs `f(plane_index, plane)` over the `plane`-sized chunks of `out`, in parallel when the
/// kernels may use more than one thread ([`crate::kernels::threads`]).
pub fn for_each_plane<T: Send>(out: &mut [T], plane: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if plane == 0 {
        return;
    }
    if crate::kernels::threads() > 1 && out.len() / plane > 1 {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(i, o)| f(i, o));
    }
}

/// `dst[c × r] = src[r × c]ᵀ`, with an AVX2 8×8 register transpose when the CPU has it.
pub fn transpose2d(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa().has_avx2() {
        // SAFETY: `isa()` reports AVX2 only after detecting AVX2 and FMA on this CPU.
        unsafe { transpose2d_avx2(src, rows, cols, dst) };
        return;
    }
    transpose2d_portable(src, rows, cols, dst);
}

/// Tile edge of the transposes: rows and columns past the last whole 8×8 tile.
#[inline(always)]
fn transpose_edges<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
    for r in 0..rb {
        for c in cb..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
    for r in rb..rows {
        for (c, &v) in src[r * cols..(r + 1) * cols].iter().enumerate() {
            dst[c * rows + r] = v;
        }
    }
}

/// [`transpose2d`] as portable code for any element type (the INT8 convolutions transpose
/// bytes with it): 8×8 tiles through a local array, then the edges.
pub fn transpose2d_portable<T: Copy + Default>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const B: usize = 8;
    let (rb, cb) = (rows / B * B, cols / B * B);
    for r0 in (0..rb).step_by(B) {
        for c0 in (0..cb).step_by(B) {
            let mut tile = [[T::default(); B]; B];
            for (i, t) in tile.iter_mut().enumerate() {
                t.copy_from_slice(&src[(r0 + i) * cols + c0..][..B]);
            }
            for j in 0..B {
                let d = &mut dst[(c0 + j) * rows + r0..][..B];
                for (i, v) in d.iter_mut().enumerate() {
                    *v = tile[i][j];
                }
            }
        }
    }
    transpose_edges(src, rows, cols, dst);
}

/// `dst[c × r] = src[r × c]ᵀ` for bytes (the INT8 convolutions' pixel-major results), with an
/// SSE2 8×8 register transpose on x86_64 (SSE2 is part of its baseline), else
/// [`transpose2d_portable`].
pub fn transpose2d_u8(src: &[u8], rows: usize, cols: usize, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of every x86_64 CPU (the target's baseline).
        unsafe { transpose2d_u8_sse2(src, rows, cols, dst) };
        return;
    }
    #[cfg_attr(target_arch = "x86_64", allow(unreachable_code))]
    transpose2d_portable(src, rows, cols, dst);
}

/// [`transpose2d_u8`] with each 8×8 tile transposed by three rounds of SSE2 unpacks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn transpose2d_u8_sse2(src: &[u8], rows: usize, cols: usize, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
    for r0 in (0..rb).step_by(8) {
        for c0 in (0..cb).step_by(8) {
            let row = |i: usize| {
                let s = &src[(r0 + i) * cols + c0..][..8];
                // SAFETY: `s` holds exactly 8 bytes, which `_mm_loadl_epi64` reads (unaligned).
                unsafe { _mm_loadl_epi64(s.as_ptr() as *const __m128i) }
            };
            // Bytes of rows (0,1), (2,3), …, interleaved; then pairs of those; then quads: each
            // 64-bit half of `v*` is then one column of the tile.
            let t0 = _mm_unpacklo_epi8(row(0), row(1));
            let t1 = _mm_unpacklo_epi8(row(2), row(3));
            let t2 = _mm_unpacklo_epi8(row(4), row(5));
            let t3 = _mm_unpacklo_epi8(row(6), row(7));
            let (u0, u1) = (_mm_unpacklo_epi16(t0, t1), _mm_unpackhi_epi16(t0, t1));
            let (u2, u3) = (_mm_unpacklo_epi16(t2, t3), _mm_unpackhi_epi16(t2, t3));
            let cols4 = [
                _mm_unpacklo_epi32(u0, u2),
                _mm_unpackhi_epi32(u0, u2),
                _mm_unpacklo_epi32(u1, u3),
                _mm_unpackhi_epi32(u1, u3),
            ];
            for (j, v) in cols4.into_iter().enumerate() {
                for (h, half) in [v, _mm_unpackhi_epi64(v, v)].into_iter().enumerate() {
                    let d = &mut dst[(c0 + 2 * j + h) * rows + r0..][..8];
                    // SAFETY: `d` holds exactly 8 bytes, which `_mm_storel_epi64` writes.
                    unsafe { _mm_storel_epi64(d.as_mut_ptr() as *mut __m128i, half) };
                }
            }
        }
    }
    transpose_edges(src, rows, cols, dst);
}

/// [`transpose2d`] with each 8×8 tile transposed in AVX registers (unpack, shuffle, lane swap).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose2d_avx2(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
    for r0 in (0..rb).step_by(8) {
        for c0 in (0..cb).step_by(8) {
            let row = |i: usize| {
                let s = &src[(r0 + i) * cols + c0..][..8];
                // SAFETY: `s` holds exactly 8 floats; the load is unaligned.
                unsafe { _mm256_loadu_ps(s.as_ptr()) }
            };
            let (a0, a1, a2, a3) = (row(0), row(1), row(2), row(3));
            let (a4, a5, a6, a7) = (row(4), row(5), row(6), row(7));
            let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
            let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
            let (t4, t5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
            let (t6, t7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
            let (s0, s1) = (
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
            );
            let (s2, s3) = (
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            );
            let (s4, s5) = (
                _mm256_shuffle_ps::<0x44>(t4, t6),
                _mm256_shuffle_ps::<0xEE>(t4, t6),
            );
            let (s6, s7) = (
                _mm256_shuffle_ps::<0x44>(t5, t7),
                _mm256_shuffle_ps::<0xEE>(t5, t7),
            );
            let cols_out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (j, v) in cols_out.into_iter().enumerate() {
                let d = &mut dst[(c0 + j) * rows + r0..][..8];
                // SAFETY: `d` holds exactly 8 floats; the store is unaligned.
                unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) };
            }
        }
    }
    transpose_edges(src, rows, cols, dst);
}

/// Range of kernel taps `[lo, hi)` that land inside `[0, size)` for output position `o`.
#[inline(always)]
pub(super) fn taps(
    o: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    k: usize,
    size: usize,
) -> (usize, usize, isize) {
    let start = (o * stride) as isize - pad as isize;
    let d = dil as isize;
    // First tap with start + lo·d ≥ 0, and one past the last with start + (hi−1)·d < size.
    let lo = if start >= 0 {
        0
    } else {
        ((-start + d - 1) / d) as usize
    }
    .min(k);
    let room = size as isize - start;
    let hi = if room <= 0 {
        0
    } else {
        ((room + d - 1) / d) as usize
    }
    .min(k)
    .max(lo);
    (lo, hi, start)
}

avx2_twin! {
    /// One output plane of a depthwise convolution.
    pub fn depthwise_plane(w: &Window2d, x: &[f32], k: &[f32], bias: f32, act: Activation, out: &mut [f32]) => depthwise_plane_portable
}

/// [`depthwise_plane`] as portable code.
#[inline(always)]
pub fn depthwise_plane_portable(
    w: &Window2d,
    x: &[f32],
    k: &[f32],
    bias: f32,
    act: Activation,
    out: &mut [f32],
) {
    let (ih, iw) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let (sx, dx) = (w.strides[1], w.dilations[1]);
    // Output columns whose whole window is inside the input need no bounds checks.
    let x_first = w.pads[1].div_ceil(sx).min(ow);
    let x_end = if iw + w.pads[1] > dx * (kw - 1) {
        ((iw + w.pads[1] - dx * (kw - 1) - 1) / sx + 1)
            .min(ow)
            .max(x_first)
    } else {
        x_first
    };
    for oy in 0..oh {
        let (ylo, yhi, ys) = taps(oy, w.strides[0], w.pads[0], w.dilations[0], kh, ih);
        let orow = &mut out[oy * ow..(oy + 1) * ow];
        orow.fill(bias);
        for ky in ylo..yhi {
            let y = (ys + (ky * w.dilations[0]) as isize) as usize;
            let srow = &x[y * iw..(y + 1) * iw];
            let krow = &k[ky * kw..(ky + 1) * kw];
            #[inline(always)]
            fn edge(w: &Window2d, krow: &[f32], srow: &[f32], ox: usize, o: &mut f32) {
                let (xlo, xhi, xs) = taps(
                    ox,
                    w.strides[1],
                    w.pads[1],
                    w.dilations[1],
                    krow.len(),
                    srow.len(),
                );
                for (kx, &kv) in krow.iter().enumerate().take(xhi).skip(xlo) {
                    *o += kv * srow[(xs + (kx * w.dilations[1]) as isize) as usize];
                }
            }
            for (ox, o) in orow.iter_mut().enumerate().take(x_first) {
                edge(w, krow, srow, ox, o);
            }
            // (Skipped when no column is interior: the source offsets below would underflow.)
            for (kx, &kv) in krow.iter().enumerate().filter(|_| x_first < x_end) {
                let base = kx * dx;
                let dst = &mut orow[x_first..x_end];
                if sx == 1 {
                    let src = &srow[x_first + base - w.pads[1]..][..dst.len()];
                    dst.iter_mut().zip(src).for_each(|(o, &v)| *o += kv * v);
                } else {
                    let src = srow[x_first * sx + base - w.pads[1]..].iter().step_by(sx);
                    dst.iter_mut().zip(src).for_each(|(o, &v)| *o += kv * v);
                }
            }
            for (ox, o) in orow.iter_mut().enumerate().skip(x_end) {
                edge(w, krow, srow, ox, o);
            }
        }
        if act != Activation::None {
            orow.iter_mut().for_each(|v| *v = act.apply(*v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;

    use crate::engine::ops::test_values as rand;

    fn window(
        input: [usize; 2],
        kernel: [usize; 2],
        strides: [i64; 2],
        pads: [i64; 4],
        dil: [i64; 2],
    ) -> Window2d {
        let mut node = Node {
            name: "w".into(),
            op_type: "Conv".into(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec![],
            attrs: Default::default(),
        };
        node.attrs
            .insert("strides".into(), crate::graph::Attr::Ints(strides.to_vec()));
        node.attrs
            .insert("pads".into(), crate::graph::Attr::Ints(pads.to_vec()));
        node.attrs
            .insert("dilations".into(), crate::graph::Attr::Ints(dil.to_vec()));
        Window2d::resolve(&node, input, kernel).unwrap()
    }

    #[test]
    fn dispatched_kernels_match_their_portable_twins() {
        let shapes = [
            ([7, 9], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([4, 5], [3, 3], [3, 3], [2, 2, 2, 2], [1, 1]),
            ([5, 6], [1, 4], [1, 1], [0, 1, 0, 2], [1, 1]),
            ([4, 7], [2, 3], [1, 1], [1, 0, 0, 2], [2, 1]),
            ([3, 5], [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
            ([2, 3], [5, 3], [1, 1], [3, 1, 3, 1], [1, 1]),
            ([6, 3], [2, 5], [1, 2], [0, 3, 1, 0], [1, 1]),
            ([13, 17], [5, 5], [2, 2], [2, 2, 2, 2], [1, 1]),
            ([11, 23], [3, 3], [2, 1], [1, 0, 1, 2], [1, 2]),
            ([5, 6], [3, 1], [1, 3], [0, 0, 0, 0], [2, 1]),
        ];
        for (i, (input, kernel, strides, pads, dil)) in shapes.into_iter().enumerate() {
            let w = window(input, kernel, strides, pads, dil);
            let x = rand(input[0] * input[1], i as u64 + 1);
            let k = rand(kernel[0] * kernel[1], i as u64 + 7);
            let n = w.output[0] * w.output[1];
            for act in [
                Activation::None,
                Activation::Relu,
                Activation::Clip(-0.5, 0.5),
            ] {
                let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                depthwise_plane(&w, &x, &k, 0.25, act, &mut a);
                depthwise_plane_portable(&w, &x, &k, 0.25, act, &mut b);
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= 1e-6, "{p} vs {q}");
                }
            }
        }
        for (rows, cols) in [(1, 1), (8, 8), (9, 17), (16, 3), (31, 40)] {
            let src = rand(rows * cols, (rows * cols) as u64);
            let (mut a, mut b) = (vec![0.0; rows * cols], vec![1.0; rows * cols]);
            transpose2d(&src, rows, cols, &mut a);
            transpose2d_portable(&src, rows, cols, &mut b);
            assert_eq!(a, b);
            let bytes: Vec<u8> = (0..rows * cols).map(|i| (i * 97 % 256) as u8).collect();
            let (mut a8, mut b8) = (vec![0u8; rows * cols], vec![1u8; rows * cols]);
            transpose2d_u8(&bytes, rows, cols, &mut a8);
            transpose2d_portable(&bytes, rows, cols, &mut b8);
            assert_eq!(a8, b8, "{rows}x{cols}");
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(a[c * rows + r], src[r * cols + c]);
                }
            }
        }
    }
}
