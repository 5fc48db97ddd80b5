//! The packed right-hand operand: B in 16-column panels, packed once at plan time.

/// Width of a packed-B panel: the columns one micro-kernel call produces.
pub(super) const NR: usize = 16;

/// One K-row of a B panel: 16 values, one cache line, aligned so SIMD loads never split lines.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub(super) struct PanelRow(pub(super) [f32; NR]);

/// The right-hand operand B (K×N) in the layout the kernel reads, packed once.
///
/// Columns are grouped into panels of 16 (the last zero-padded); panel `p` holds its K rows
/// contiguously, so a micro-kernel streams one panel front to back. The layout is the same for
/// every instruction set, so one packing serves the SIMD kernels and their scalar twin.
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    rows: Vec<PanelRow>,
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

    /// Builds the panels from `at(kk, j)`, the value of B at row `kk`, column `j`.
    fn pack(k: usize, n: usize, at: impl Fn(usize, usize) -> f32) -> PackedB {
        let panels = n.div_ceil(NR);
        let mut rows = vec![PanelRow([0.0; NR]); panels * k];
        for (p, panel) in rows.chunks_exact_mut(k.max(1)).enumerate().take(panels) {
            // K outer, columns inner: both source layouts are then read as (at most 16)
            // sequential streams.
            let cols = NR.min(n - p * NR);
            for (kk, row) in panel.iter_mut().enumerate() {
                for (j, v) in row.0[..cols].iter_mut().enumerate() {
                    *v = at(kk, p * NR + j);
                }
            }
        }
        PackedB { k, n, rows }
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held by the packed form.
    pub fn size_bytes(&self) -> usize {
        self.rows.len() * std::mem::size_of::<PanelRow>()
    }

    /// Number of 16-column panels.
    pub(super) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// The K rows of panel `p`.
    pub(super) fn panel(&self, p: usize) -> &[PanelRow] {
        &self.rows[p * self.k..(p + 1) * self.k]
    }

    /// Valid (unpadded) columns of panel `p`.
    pub(super) fn panel_cols(&self, p: usize) -> usize {
        NR.min(self.n - p * NR)
    }
}
