//! The right-hand operand in 16-column panels: packed once at plan time ([`PackedB`]), or
//! written per call into caller scratch ([`PanelsMut`], the im2col matrix of a convolution).

/// Width of a packed-B panel: the columns one micro-kernel call produces.
pub(super) const NR: usize = 16;

/// `NR` for writers outside the kernels: the columns of B one panel holds.
pub const PANEL_COLS: usize = NR;

/// Floats in 64 bytes: panel storage starts on a cache line so a panel row never splits one.
const LINE: usize = 16;

/// The first index of `buf` that is 64-byte aligned (0 when none is, the kernels' loads do not
/// depend on it for correctness, only for speed).
fn line_start(buf: &[f32]) -> usize {
    let off = buf.as_ptr().align_offset(64);
    if off < LINE {
        off
    } else {
        0
    }
}

/// Floats holding `k` rows of every panel of an N-column B.
fn panels_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// A borrowed B (K×N) in the kernel's layout: columns grouped into panels of 16 (the last
/// padded), panel `p` holding its K rows of 16 values contiguously, so a micro-kernel streams one
/// panel front to back. The layout is the same for every instruction set, so one packing serves
/// the SIMD kernels and their scalar twin. Padding lanes may hold anything: they only reach
/// output columns that are never stored.
#[derive(Debug, Clone, Copy)]
pub struct Panels<'a> {
    k: usize,
    n: usize,
    data: &'a [f32],
}

impl<'a> Panels<'a> {
    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of 16-column panels.
    pub(super) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// The K rows of panel `p`, 16 values each.
    pub(super) fn panel(&self, p: usize) -> &'a [f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }

    /// Valid (unpadded) columns of panel `p`.
    pub(super) fn panel_cols(&self, p: usize) -> usize {
        NR.min(self.n - p * NR)
    }
}

/// The right-hand operand B (K×N) packed once into [`Panels`] layout, on a 64-byte boundary.
#[derive(Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    buf: Vec<f32>,
    /// Where the panels start in `buf` (its first cache-line boundary).
    off: usize,
}

impl Clone for PackedB {
    fn clone(&self) -> PackedB {
        // A copied Vec may land on another alignment: lay the panels out afresh.
        let src = self.panels();
        PackedB::pack(self.k, self.n, |kk, j| src.panel(j / NR)[kk * NR + j % NR])
    }
}

impl PackedB {
    /// Packs B given row-major as K×N (`b[kk * n + j]`).
    pub fn from_k_by_n(k: usize, n: usize, b: &[f32]) -> PackedB {
        assert_eq!(b.len(), k * n, "B must hold k*n elements");
        PackedB::pack(k, n, |kk, j| b[kk * n + j])
    }

    /// Packs B given as its transpose, row-major N×K (`w[j * k + kk]`): the layout of ONNX Gemm
    /// with `transB=1` and of Conv weights.
    pub fn from_n_by_k(n: usize, k: usize, w: &[f32]) -> PackedB {
        assert_eq!(w.len(), k * n, "W must hold n*k elements");
        PackedB::pack(k, n, |kk, j| w[j * k + kk])
    }

    /// [`PackedB::from_n_by_k`] with W's rows `ldw` apart (`w[j * ldw + kk]`), e.g. the rows of
    /// an activation matrix that is used as the right-hand operand.
    ///
    /// # Panics
    /// When `ldw < k` or `w` is shorter than `(n - 1) · ldw + k` (a caller bug).
    pub fn from_n_by_k_strided(n: usize, k: usize, w: &[f32], ldw: usize) -> PackedB {
        assert!(ldw >= k, "ldw {ldw} < K {k}");
        assert!(
            n == 0 || w.len() >= (n - 1) * ldw + k,
            "W must hold (n-1)*ldw+k elements"
        );
        PackedB::pack(k, n, |kk, j| w[j * ldw + kk])
    }

    /// Builds the panels from `at(kk, j)`, the value of B at row `kk`, column `j`.
    fn pack(k: usize, n: usize, at: impl Fn(usize, usize) -> f32) -> PackedB {
        let len = panels_len(k, n);
        let mut buf = vec![0.0; len + LINE];
        let off = line_start(&buf);
        let data = &mut buf[off..off + len];
        for (p, panel) in data.chunks_exact_mut((k * NR).max(1)).enumerate() {
            // K outer, columns inner: both source layouts are then read as (at most 16)
            // sequential streams.
            let cols = NR.min(n - p * NR);
            for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, v) in row[..cols].iter_mut().enumerate() {
                    *v = at(kk, p * NR + j);
                }
            }
        }
        PackedB { k, n, buf, off }
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of the packed panels (the up to 64 bytes of alignment slack before them are not
    /// counted).
    pub fn size_bytes(&self) -> usize {
        panels_len(self.k, self.n) * std::mem::size_of::<f32>()
    }

    /// The packed panels.
    pub fn panels(&self) -> Panels<'_> {
        Panels {
            k: self.k,
            n: self.n,
            data: &self.buf[self.off..self.off + panels_len(self.k, self.n)],
        }
    }
}

/// A B (K×N) written row by row into caller scratch in [`Panels`] layout: the per-call right-hand
/// operand of a convolution, whose im2col rows are scattered straight into panels.
#[derive(Debug)]
pub struct PanelsMut<'a> {
    k: usize,
    n: usize,
    data: &'a mut [f32],
}

impl<'a> PanelsMut<'a> {
    /// Floats of scratch [`PanelsMut::new`] needs for a K×N operand (alignment slack included).
    pub fn scratch_len(k: usize, n: usize) -> usize {
        panels_len(k, n) + LINE
    }

    /// A K×N operand over `scratch`, whose earlier contents are left as they are.
    ///
    /// # Panics
    /// When `scratch` is shorter than [`PanelsMut::scratch_len`] (a caller bug: plans size
    /// scratch from it).
    pub fn new(k: usize, n: usize, scratch: &'a mut [f32]) -> PanelsMut<'a> {
        let need = PanelsMut::scratch_len(k, n);
        assert!(
            scratch.len() >= need,
            "PanelsMut: scratch holds {} floats, {k}×{n} needs {need}",
            scratch.len()
        );
        let off = line_start(scratch);
        PanelsMut {
            k,
            n,
            data: &mut scratch[off..off + panels_len(k, n)],
        }
    }

    /// Sets row `kk` of B to `row` (N values).
    ///
    /// # Panics
    /// When `kk >= K` or `row` does not hold N values.
    pub fn set_row(&mut self, kk: usize, row: &[f32]) {
        assert!(kk < self.k && row.len() == self.n, "PanelsMut::set_row");
        // Whole panels as fixed-size array copies (a few vector moves each: a `memcpy` call per
        // 64 bytes would cost more than the copy), then the last partial panel.
        let panel_rows = self.data[kk * NR..].chunks_mut(self.k * NR);
        for (src, dst) in row.chunks(NR).zip(panel_rows) {
            match (src.first_chunk::<NR>(), dst.first_chunk_mut::<NR>()) {
                (Some(s), Some(d)) => *d = *s,
                _ => dst[..src.len()].copy_from_slice(src),
            }
        }
    }

    /// The K rows of panel `p` (columns `16p..16p+16` of B), each of [`PANEL_COLS`] values,
    /// for a writer that fills the operand panel by panel. Lanes past N are padding.
    ///
    /// # Panics
    /// When `p` is not below `N.div_ceil(16)`.
    pub fn panel_mut(&mut self, p: usize) -> &mut [[f32; NR]] {
        let len = self.k * NR;
        self.data[p * len..(p + 1) * len].as_chunks_mut().0
    }

    /// Sets every value of row `kk` to `v`.
    ///
    /// # Panics
    /// When `kk >= K`.
    pub fn fill_row(&mut self, kk: usize, v: f32) {
        assert!(kk < self.k, "PanelsMut::fill_row");
        for p in 0..self.n.div_ceil(NR) {
            let at = (p * self.k + kk) * NR;
            self.data[at..at + NR].fill(v);
        }
    }

    /// The operand as written so far, for [`super::gemm_panels`].
    pub fn panels(&self) -> Panels<'_> {
        Panels {
            k: self.k,
            n: self.n,
            data: self.data,
        }
    }
}
