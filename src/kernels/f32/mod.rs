//! f32 GEMM: `C = act(A · B + bias)` with B packed once at plan time.
//!
//! This is the baseline every quantized speed-up is measured against, so it has to be a real
//! GEMM: B is packed once into 16-column panels ([`PackedB`]) or written per call into scratch
//! in that layout ([`PanelsMut`], a convolution's im2col matrix), A is read in place, and a
//! register-blocked micro-kernel computes 6×16 tiles of C with the bias and activation fused
//! into the store (GotoBLAS/BLIS loop order and cache blocking; sizes and measurements in
//! `driver`). `m == 1` takes a GEMV path that streams each B panel once over the whole K.
//!
//! Kernels, chosen at run time by [`crate::kernels::isa`]:
//! * `f32-gemm-scalar`: the reference twin (`scalar`), also what `QUENCH_KERNELS=scalar` runs;
//! * `f32-gemm-avx2-6x16`: x86_64 AVX2 + FMA (`avx2`);
//! * `f32-gemm-neon-6x16`: aarch64 NEON (`neon`).
//!
//! The SIMD kernels differ from the twin only by rounding: they fuse multiply-add, add the bias
//! last and split K into blocks. Tests bound the difference by `(K+1)·2⁻²³·(|bias| + Σ|a·b|)` per
//! output (twice the unit roundoff times the length of the dot product, the standard forward
//! error bound of a sum of K+1 terms, taken for both results).

#[cfg(target_arch = "x86_64")]
mod avx2;
mod driver;
#[cfg(target_arch = "aarch64")]
mod neon;
mod packed;
mod scalar;
#[cfg(test)]
mod tests;

pub use packed::{PackedB, Panels, PanelsMut, PANEL_COLS};

use crate::kernels::{isa, Isa};
use packed::NR;

/// Activation fused into the GEMM's store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// Store as computed.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
}

impl Activation {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Clip(lo, hi) => x.max(lo).min(hi),
        }
    }
}

/// What is done to each output value as it is stored: bias added per column, then activation.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// N values added to every row, when given.
    pub bias: Option<&'a [f32]>,
    /// Activation applied after the bias.
    pub act: Activation,
}

/// `C[m×N] = act(A[m×K] · B + bias)`, A row-major with row stride `lda`, C with row stride `ldc`.
///
/// Runs the kernel [`gemm_kernel_name`] names, splitting the work over
/// [`crate::kernels::threads`] workers when that is more than one.
///
/// # Panics
/// On caller bugs, checked up front before any kernel runs so that the unsafe SIMD code never
/// reads or writes out of bounds: `a` shorter than `(m-1)·lda + K`, `c` shorter than
/// `(m-1)·ldc + N`, `lda < K` or `ldc < N` when `m > 1`, or a bias shorter than N (only its
/// first N values are used). Callers are internal and size these from a checked plan.
pub fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    epi: Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    run(Kernel::selected(), m, a, lda, b.panels(), epi, c, ldc);
}

/// [`gemm`] with B given as borrowed [`Panels`] (for instance written per call through
/// [`PanelsMut`]); same kernel, same checks and panics.
pub fn gemm_panels(
    m: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    epi: Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    run(Kernel::selected(), m, a, lda, b, epi, c, ldc);
}

/// Name of the f32 GEMM kernel that [`gemm`] runs in this process.
pub fn gemm_kernel_name() -> String {
    Kernel::selected().name().to_string()
}

/// A kernel family [`gemm`] can run.
#[derive(Clone, Copy)]
enum Kernel {
    /// The scalar reference twin.
    Scalar,
    /// A SIMD micro-kernel set behind the blocked driver.
    Simd(&'static driver::Simd),
}

impl Kernel {
    /// The kernel for [`isa`] in this process.
    fn selected() -> Kernel {
        match isa() {
            Isa::Scalar => Kernel::Scalar,
            Isa::Avx2 | Isa::Avx512Vnni | Isa::Neon | Isa::NeonDot => {
                Kernel::simd().unwrap_or(Kernel::Scalar)
            }
        }
    }

    /// The SIMD kernel this CPU can run, whatever `QUENCH_KERNELS` says (tests compare it with
    /// the twin), or `None` when there is none.
    fn simd() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        let simd = avx2::kernel();
        #[cfg(target_arch = "aarch64")]
        let simd = neon::kernel();
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let simd = None;
        simd.map(Kernel::Simd)
    }

    fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "f32-gemm-scalar",
            Kernel::Simd(s) => s.name,
        }
    }
}

/// Checks the operands against the shapes (see [`gemm`]'s panics) and runs `kernel`.
#[allow(clippy::too_many_arguments)]
fn run(
    kernel: Kernel,
    m: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    epi: Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let (k, n) = (b.k(), b.n());
    if m == 0 || n == 0 {
        return;
    }
    if m > 1 {
        assert!(lda >= k, "gemm: lda {lda} < K {k}");
        assert!(ldc >= n, "gemm: ldc {ldc} < N {n}");
    }
    let need = |ld: usize, cols: usize| (m - 1).checked_mul(ld).and_then(|x| x.checked_add(cols));
    assert!(
        need(lda, k).is_some_and(|x| a.len() >= x),
        "gemm: A holds {} values, m={m} lda={lda} K={k} needs more",
        a.len()
    );
    assert!(
        need(ldc, n).is_some_and(|x| c.len() >= x),
        "gemm: C holds {} values, m={m} ldc={ldc} N={n} needs more",
        c.len()
    );
    if let Some(bias) = epi.bias {
        assert!(
            bias.len() >= n,
            "gemm: bias holds {} values, N={n}",
            bias.len()
        );
    }
    match kernel {
        Kernel::Scalar => scalar::gemm(m, a, lda, b, epi, c, ldc),
        Kernel::Simd(simd) => driver::gemm(simd, m, a, lda, b, epi, c, ldc),
    }
}

/// The bias values of panel `p` (its valid columns only), when there is a bias.
fn panel_bias<'a>(epi: &Epilogue<'a>, p: usize, cols: usize) -> Option<&'a [f32]> {
    epi.bias.map(|bias| &bias[p * NR..p * NR + cols])
}
