//! Binary kernels: XNOR-popcount GEMM for binary weights × binary activations, and binary
//! weights × int8 activations (a sum of ±a), both scaled per output channel by α.
//!
//! # Encoding
//! A value's sign becomes one bit: 1 for negative (`x < 0`), 0 otherwise (so `sign(0) = +1`), 64
//! values to a `u64` word along K, value `k` at bit `k % 64` of word `k / 64`. K is padded to
//! whole words with 0 bits in weights *and* activations, so padding never differs and never
//! counts: `dot = K - 2 · popcount(a XOR w)` over the real K.
//!
//! For int8 activations the kernel sums the activations (as u8, s8 shifted by 128) where the
//! weight is negative, `S`, and the result is
//! `Σ_k sign(w_k)(a_k - za) = (T - za·K) - 2(S - za·P)` with `T` the row sum and `P` the number
//! of negative weights in the column: exact in i32.

mod pack;
mod patches;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod wide;

#[cfg(test)]
mod tests;

pub use pack::{BinaryActivations, PackedBinary};
pub use patches::{gemm_i8_hwc, padded_len, TernaryImage};

use super::i8::Activations;
use super::par;
use super::{isa, Isa};

/// Rows per register tile.
const MR: usize = 2;
/// Columns per register tile.
const NR: usize = 4;
/// Largest K accepted: keeps every i32 sum of ±255 exact.
pub const K_MAX: usize = 1 << 22;

/// Errors from the binary kernels.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum B1Error {
    /// A buffer does not match its shape.
    #[error("binary kernel: {what} holds {got} elements, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Elements required.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// Activations and weights disagree on K.
    #[error("binary kernel: activations have K = {a}, weights K = {b}")]
    InnerDim {
        /// Activations' K.
        a: usize,
        /// Weights' K.
        b: usize,
    },
    /// K beyond [`K_MAX`].
    #[error("binary kernel: K = {k} exceeds {max}")]
    KTooLarge {
        /// K given.
        k: usize,
        /// [`K_MAX`].
        max: usize,
    },
    /// A padded convolution image beyond [`patches::MAX_IMAGE_LEN`] (or overflowing).
    #[error("binary kernel: the padded convolution image exceeds {max} values")]
    ImageTooLarge {
        /// The limit.
        max: usize,
    },
    /// A convolution geometry that gives no output or overflows.
    #[error("binary kernel: {0}")]
    Conv(#[from] super::i8::I8Error),
    /// A row stride smaller than the row.
    #[error("binary kernel: {what} = {got} is smaller than the row length {min}")]
    Stride {
        /// Which stride.
        what: &'static str,
        /// Stride given.
        got: usize,
        /// Row length.
        min: usize,
    },
}

/// Where the result goes.
#[derive(Debug)]
pub enum Output<'a> {
    /// The exact integer dot products (`Σ ±1·±1` or `Σ ±(a - za)`).
    Dots(&'a mut [i32]),
    /// `act(dot · (α[j] · row_scale[i]) + bias[j])`, multiply then add, never fused.
    F32 {
        /// Row-major output.
        out: &'a mut [f32],
        /// f32 bias per column.
        bias: Option<&'a [f32]>,
        /// Fused ReLU.
        relu: bool,
    },
}

/// Which inner kernel runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 plus `vpopcntq` (AVX-512 VPOPCNTDQ) for the XNOR count.
    #[cfg(target_arch = "x86_64")]
    Vpopcnt,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    fn for_isa(isa: Isa) -> Kernel {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni if super::has_vpopcntdq() => Kernel::Vpopcnt,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Kernel::Avx2,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::NeonDot => Kernel::Neon,
            _ => Kernel::Scalar,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Vpopcnt => "avx512",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => "neon",
        }
    }
}

/// Name of the XNOR-popcount kernel that [`gemm_binary`] runs in this process.
pub fn binary_kernel_name() -> String {
    let k = Kernel::for_isa(isa());
    let how = match k {
        Kernel::Scalar => "",
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => "-pshufb",
        #[cfg(target_arch = "x86_64")]
        Kernel::Vpopcnt => "-vpopcntq",
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => "-cnt",
    };
    format!("b1-xnor-gemm-{}{how}", k.suffix())
}

/// Name of the binary-weight × int8 kernel that [`gemm_i8`] runs in this process.
pub fn i8_kernel_name() -> String {
    format!("b1-i8-gemm-{}", Kernel::for_isa(isa()).suffix())
}

/// Binary activations × binary weights: `dot[i][j] = K - 2·popcount(a_i XOR w_j)`, stored as
/// [`Output`] with row scale β (the activations' per-row scale). Rows split over rayon's pool.
pub fn gemm_binary(
    a: &BinaryActivations,
    b: &PackedBinary,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), B1Error> {
    gemm_binary_with(Kernel::for_isa(isa()), a, b, out, ldc)
}

fn gemm_binary_with(
    kernel: Kernel,
    a: &BinaryActivations,
    b: &PackedBinary,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), B1Error> {
    if a.k() != b.k() {
        return Err(B1Error::InnerDim { a: a.k(), b: b.k() });
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vpopcnt {
        let group = |bits: &[u64]| wide::RowGroups::new(a.m(), b.words(), bits);
        let wide = Wide {
            rows: group(a.rows_from(0, a.m())),
            masks: a.mask_from(0, a.m()).map(group),
            a,
            b,
        };
        return drive(a.m(), b, a.scales(), out, ldc, &wide);
    }
    let tiled = Tiled {
        kernel,
        tile: &Xnor { kernel, a, b },
        b,
    };
    drive(a.m(), b, a.scales(), out, ldc, &tiled)
}

/// Int8 activations × binary weights: `dot[i][j] = Σ_k sign(w_jk)·(a_ik - za)`, stored as
/// [`Output`] with row scale `scale_a` (the activations' quantization scale).
pub fn gemm_i8(
    m: usize,
    a: Activations<'_>,
    lda: usize,
    scale_a: f32,
    b: &PackedBinary,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), B1Error> {
    gemm_i8_with(Kernel::for_isa(isa()), m, a, lda, scale_a, b, out, ldc)
}

#[allow(clippy::too_many_arguments)]
fn gemm_i8_with(
    kernel: Kernel,
    m: usize,
    a: Activations<'_>,
    lda: usize,
    scale_a: f32,
    b: &PackedBinary,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), B1Error> {
    let k = b.k();
    if lda < k {
        return Err(B1Error::Stride {
            what: "lda",
            got: lda,
            min: k,
        });
    }
    let p = pack::Unsigned::new(m, a, lda, k, b.words() * 64, MR)?;
    run_i8(kernel, m, &p, scale_a, b, out, ldc)
}

/// The int8 × binary product of `m` prepared rows `p`.
fn run_i8(
    kernel: Kernel,
    m: usize,
    p: &pack::Unsigned,
    scale_a: f32,
    b: &PackedBinary,
    out: Output<'_>,
    ldc: usize,
) -> Result<(), B1Error> {
    let scales = vec![scale_a; m];
    let tiled = Tiled {
        kernel,
        tile: &Int8 { kernel, p, b },
        b,
    };
    drive(m, b, &scales, out, ldc, &tiled)
}

/// One MR×NR tile of exact integer dot products starting at row `i0`, column `j0`.
trait Tile: Sync {
    fn tile(&self, i0: usize, j0: usize) -> [[i32; NR]; MR];
}

/// XNOR-popcount tiles: `K - 2·popcount(a XOR w)`, or for ternary activations
/// `nz - 2·popcount(nz AND (a XOR w))`.
struct Xnor<'a> {
    kernel: Kernel,
    a: &'a BinaryActivations,
    b: &'a PackedBinary,
}

impl Tile for Xnor<'_> {
    #[inline(always)]
    fn tile(&self, i0: usize, j0: usize) -> [[i32; NR]; MR] {
        let (a, b) = (self.a, self.b);
        let rows = a.rows_from(i0, MR);
        let cols = b.cols_from(j0, NR);
        let pop = match a.mask_from(i0, MR) {
            Some(m) => xor_popcount::<true>(self.kernel, rows, m, cols, b.words()),
            None => xor_popcount::<false>(self.kernel, rows, rows, cols, b.words()),
        };
        std::array::from_fn(|r| pop[r].map(|p| a.count(i0 + r) - 2 * p as i32))
    }
}

/// One MR×NR tile of XOR popcounts on `kernel` (masked by `m` when `MASK`).
#[inline(always)]
fn xor_popcount<const MASK: bool>(
    kernel: Kernel,
    rows: &[u64],
    m: &[u64],
    cols: &[u64],
    words: usize,
) -> [[u32; NR]; MR] {
    match kernel {
        Kernel::Scalar => scalar::xor_popcount::<MR, NR, MASK>(rows, m, cols, words),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: chosen only when AVX2 was detected (AVX-512 implies it); `rows` (and `m`)
        // hold MR rows and `cols` NR columns of `words`. (`gemm_binary` runs `Kernel::Vpopcnt`
        // on the wide kernel.)
        Kernel::Avx2 | Kernel::Vpopcnt => unsafe {
            avx2::xor_popcount::<MR, NR, MASK>(rows, m, cols, words)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON was detected; lengths as above.
        Kernel::Neon => unsafe { neon::xor_popcount::<MR, NR, MASK>(rows, m, cols, words) },
    }
}

/// Binary weights × int8 activations: `(T - za·K) - 2(S - za·P)`.
struct Int8<'a> {
    kernel: Kernel,
    p: &'a pack::Unsigned,
    b: &'a PackedBinary,
}

impl Tile for Int8<'_> {
    #[inline(always)]
    fn tile(&self, i0: usize, j0: usize) -> [[i32; NR]; MR] {
        let (p, b) = (self.p, self.b);
        let rows = p.rows_from(i0, MR);
        let cols = b.cols_from(j0, NR);
        let s = match self.kernel {
            Kernel::Scalar => scalar::masked_sums::<MR, NR>(rows, p.stride, cols, b.words()),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 detected; `rows` holds MR rows of `stride = words·64` bytes.
            Kernel::Avx2 => unsafe { avx2::masked_sums::<MR, NR>(rows, p.stride, cols, b.words()) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 implies the AVX2 this kernel needs; lengths as above.
            Kernel::Vpopcnt => unsafe {
                avx2::masked_sums::<MR, NR>(rows, p.stride, cols, b.words())
            },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON detected; `rows` holds MR rows of `stride = words·64` bytes.
            Kernel::Neon => unsafe { neon::masked_sums::<MR, NR>(rows, p.stride, cols, b.words()) },
        };
        let (kk, za) = (b.k() as i32, p.zero_point);
        std::array::from_fn(|r| {
            let t = p.row_sums[i0 + r];
            std::array::from_fn(|c| {
                let neg = b.neg_count(j0 + c) as i32;
                (t - za * kk) - 2 * (s[r][c] as i32 - za * neg)
            })
        })
    }
}

/// Computes and stores whole blocks of rows: the unit [`drive`] splits over threads.
trait RowBlocks: Sync {
    /// Rows per block.
    fn rows(&self) -> usize;
    /// Every output of the block starting at row `i0` into `chunk` (its rows, `ldc` apart),
    /// each exact dot product stored as `fin(dot, row, column)`.
    fn block<T, Fi: Fn(i32, usize, usize) -> T>(
        &self,
        i0: usize,
        m: usize,
        chunk: &mut [T],
        ldc: usize,
        fin: &Fi,
    );
}

/// MR×NR tiles from a [`Tile`].
struct Tiled<'a, Tl> {
    kernel: Kernel,
    tile: &'a Tl,
    b: &'a PackedBinary,
}

impl<Tl: Tile> RowBlocks for Tiled<'_, Tl> {
    fn rows(&self) -> usize {
        MR
    }

    fn block<T, Fi: Fn(i32, usize, usize) -> T>(
        &self,
        i0: usize,
        m: usize,
        chunk: &mut [T],
        ldc: usize,
        fin: &Fi,
    ) {
        row_block(self.kernel, self.tile, self.b, i0, m, chunk, ldc, fin);
    }
}

/// The wide AVX-512 XNOR kernel ([`wide`]) over regrouped activations (and nonzero masks).
#[cfg(target_arch = "x86_64")]
struct Wide<'a> {
    rows: wide::RowGroups,
    masks: Option<wide::RowGroups>,
    a: &'a BinaryActivations,
    b: &'a PackedBinary,
}

#[cfg(target_arch = "x86_64")]
impl RowBlocks for Wide<'_> {
    fn rows(&self) -> usize {
        wide::ROWS
    }

    fn block<T, Fi: Fn(i32, usize, usize) -> T>(
        &self,
        i0: usize,
        m: usize,
        chunk: &mut [T],
        ldc: usize,
        fin: &Fi,
    ) {
        /// [`wide_block`] with the AVX-512 tile inlined.
        ///
        /// # Safety
        /// The CPU must support AVX-512 F and VPOPCNTDQ.
        #[target_feature(enable = "avx512f,avx512vpopcntdq")]
        unsafe fn simd<T, Fi: Fn(i32, usize, usize) -> T>(
            w: &Wide<'_>,
            i0: usize,
            m: usize,
            chunk: &mut [T],
            ldc: usize,
            fin: &Fi,
        ) {
            if w.masks.is_some() {
                wide_block(
                    w,
                    i0,
                    m,
                    chunk,
                    ldc,
                    fin,
                    |r, k, c, words| {
                        // SAFETY: the features are enabled here; `wide_block` passes a tile's
                        // row groups, their masks and `C` columns of `words` words.
                        unsafe { wide::tile_avx512::<1, true>(r, k, c, words) }
                    },
                    |r, k, c, words| {
                        // SAFETY: as above, for `NC` columns.
                        unsafe { wide::tile_avx512::<{ wide::NC }, true>(r, k, c, words) }
                    },
                );
                return;
            }
            wide_block(
                w,
                i0,
                m,
                chunk,
                ldc,
                fin,
                |r, k, c, words| {
                    // SAFETY: as above; the masks are not read.
                    unsafe { wide::tile_avx512::<1, false>(r, k, c, words) }
                },
                |r, k, c, words| {
                    // SAFETY: as above, for `NC` columns.
                    unsafe { wide::tile_avx512::<{ wide::NC }, false>(r, k, c, words) }
                },
            );
        }
        if super::has_vpopcntdq() {
            // SAFETY: AVX-512 F and VPOPCNTDQ were just detected.
            unsafe { simd(self, i0, m, chunk, ldc, fin) };
            return;
        }
        if self.masks.is_some() {
            wide_block(
                self,
                i0,
                m,
                chunk,
                ldc,
                fin,
                wide::tile_portable::<1, true>,
                wide::tile_portable::<{ wide::NC }, true>,
            );
        } else {
            wide_block(
                self,
                i0,
                m,
                chunk,
                ldc,
                fin,
                wide::tile_portable::<1, false>,
                wide::tile_portable::<{ wide::NC }, false>,
            );
        }
    }
}

/// One [`wide::ROWS`]-row block: full [`wide::NC`]-column tiles by `full`, the last columns one
/// at a time by `one`, each called with the tile's row groups, their nonzero masks (the rows
/// again for ±1 activations, then unread), the columns and the word count.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn wide_block<T, Fi: Fn(i32, usize, usize) -> T>(
    w: &Wide<'_>,
    i0: usize,
    m: usize,
    chunk: &mut [T],
    ldc: usize,
    fin: &Fi,
    one: impl Fn(&[u64], &[u64], &[u64], usize) -> [[u64; wide::ROWS]; 1],
    full: impl Fn(&[u64], &[u64], &[u64], usize) -> [[u64; wide::ROWS]; wide::NC],
) {
    let (b, words) = (w.b, w.b.words());
    let n = b.n();
    let rows = wide::ROWS.min(m - i0);
    let ar = w.rows.tile_rows(i0);
    let am = w.masks.as_ref().map_or(ar, |g| g.tile_rows(i0));
    let counts: [i32; wide::ROWS] = std::array::from_fn(|r| w.a.count(i0 + r.min(rows - 1)));
    // Row by row, so each row's stores are contiguous.
    let mut store = |j0: usize, pop: &[[u64; wide::ROWS]]| {
        for (r, &count) in counts.iter().enumerate().take(rows) {
            let out = &mut chunk[r * ldc + j0..r * ldc + j0 + pop.len()];
            for (c, (o, pc)) in out.iter_mut().zip(pop).enumerate() {
                *o = fin(count - 2 * pc[r] as i32, i0 + r, j0 + c);
            }
        }
    };
    let full_end = n / wide::NC * wide::NC;
    for j0 in (0..full_end).step_by(wide::NC) {
        store(j0, &full(ar, am, b.cols_from(j0, wide::NC), words));
    }
    for j in full_end..n {
        store(j, &one(ar, am, b.cols_from(j, 1), words));
    }
}

/// Runs `blocks` over the output (row blocks split over rayon when it has threads), storing
/// through the epilogue.
fn drive<B: RowBlocks>(
    m: usize,
    b: &PackedBinary,
    row_scales: &[f32],
    out: Output<'_>,
    ldc: usize,
    blocks: &B,
) -> Result<(), B1Error> {
    let n = b.n();
    if ldc < n {
        return Err(B1Error::Stride {
            what: "ldc",
            got: ldc,
            min: n,
        });
    }
    let need = if m == 0 { 0 } else { (m - 1) * ldc + n };
    match out {
        Output::Dots(c) => {
            check(c.len(), need)?;
            rows_par(m, &mut c[..need], ldc, blocks.rows(), |i0, chunk| {
                blocks.block(i0, m, chunk, ldc, &|d, _, _| d)
            });
        }
        Output::F32 { out: c, bias, relu } => {
            check(c.len(), need)?;
            if let Some(bv) = bias {
                if bv.len() != n {
                    return Err(B1Error::Length {
                        what: "bias",
                        expected: n,
                        got: bv.len(),
                    });
                }
            }
            let fin = |d: i32, i: usize, j: usize| {
                let y = d as f32 * (b.alpha(j) * row_scales[i]) + bias.map_or(0.0, |bv| bv[j]);
                if relu {
                    y.max(0.0)
                } else {
                    y
                }
            };
            rows_par(m, &mut c[..need], ldc, blocks.rows(), |i0, chunk| {
                blocks.block(i0, m, chunk, ldc, &fin)
            });
        }
    }
    Ok(())
}

fn check(got: usize, expected: usize) -> Result<(), B1Error> {
    if got < expected {
        return Err(B1Error::Length {
            what: "output",
            expected,
            got,
        });
    }
    Ok(())
}

/// Splits `c` into blocks of `rows` rows, in parallel when rayon has more than one thread.
fn rows_par<T: Send>(
    m: usize,
    c: &mut [T],
    ldc: usize,
    rows: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if m > 0 {
        par::for_each_chunk(c, rows * ldc, |bi, ch| f(bi * rows, ch));
    }
}

/// Computes and stores every tile of one row block starting at row `i0`. For AVX2 the loop runs
/// inside one AVX2 function so the tile kernel inlines into it (its per-tile set-up and lane
/// reductions otherwise cost more than the popcounts at K = 1024).
#[allow(clippy::too_many_arguments)]
fn row_block<T, Tl: Tile, Fi: Fn(i32, usize, usize) -> T>(
    kernel: Kernel,
    tile: &Tl,
    b: &PackedBinary,
    i0: usize,
    m: usize,
    chunk: &mut [T],
    ldc: usize,
    fin: &Fi,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2 {
        // SAFETY: `Kernel::Avx2` is chosen only when AVX2 was detected.
        unsafe { row_block_avx2(tile, b, i0, m, chunk, ldc, fin) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vpopcnt {
        // SAFETY: `Kernel::Vpopcnt` is chosen only when AVX2 and AVX-512 F/VL/VPOPCNTDQ were
        // detected.
        unsafe { row_block_vpopcnt(tile, b, i0, m, chunk, ldc, fin) };
        return;
    }
    let _ = kernel;
    row_block_body(tile, b, i0, m, chunk, ldc, fin);
}

/// [`row_block_body`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_block_avx2<T, Tl: Tile, Fi: Fn(i32, usize, usize) -> T>(
    tile: &Tl,
    b: &PackedBinary,
    i0: usize,
    m: usize,
    chunk: &mut [T],
    ldc: usize,
    fin: &Fi,
) {
    row_block_body(tile, b, i0, m, chunk, ldc, fin);
}

/// [`row_block_body`] compiled with AVX2 and AVX-512 VPOPCNTDQ enabled.
///
/// # Safety
/// The CPU must support AVX2 and AVX-512 F/VL/VPOPCNTDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vpopcntdq")]
unsafe fn row_block_vpopcnt<T, Tl: Tile, Fi: Fn(i32, usize, usize) -> T>(
    tile: &Tl,
    b: &PackedBinary,
    i0: usize,
    m: usize,
    chunk: &mut [T],
    ldc: usize,
    fin: &Fi,
) {
    row_block_body(tile, b, i0, m, chunk, ldc, fin);
}

#[inline(always)]
fn row_block_body<T, Tl: Tile, Fi: Fn(i32, usize, usize) -> T>(
    tile: &Tl,
    b: &PackedBinary,
    i0: usize,
    m: usize,
    chunk: &mut [T],
    ldc: usize,
    fin: &Fi,
) {
    let n = b.n();
    let rows = MR.min(m - i0);
    for j0 in (0..n).step_by(NR) {
        let d = tile.tile(i0, j0);
        let cols = NR.min(n - j0);
        for (r, drow) in d.iter().enumerate().take(rows) {
            for (c, &v) in drow.iter().enumerate().take(cols) {
                chunk[r * ldc + j0 + c] = fin(v, i0 + r, j0 + c);
            }
        }
    }
}
