//! The blocked, threaded GEMM driver shared by the SIMD micro-kernels.
//!
//! Loop order after GotoBLAS/BLIS: C is cut into tasks of (≤ `MC` rows) × (≤ `NC` columns);
//! a task walks K in blocks of ≤ `KC`, and for each 16-column B panel (its KC×16 slice stays in
//! L1) runs the micro-kernel down the rows, 6 at a time, over the A block (rows × KC, which
//! stays in L2). Sizes are for Zen 3 (L1d 32 KiB, L2 512 KiB): a KC×16 B slice is 16 KiB, an
//! MC×KC A block 144 KiB. The first K block stores into C, later ones add to it, the last one
//! adds the bias and applies the activation.
//!
//! A is read in place, not packed: the micro-kernel broadcasts from 6 row streams. Measured on
//! Zen 3 (`examples/f32_gemm_rounds.rs`, ratio to the FMA peak), packing A per MC×KC block into
//! a scratch buffer cost more than it saved on every shape tried: MNIST conv2 (196×64×288) 63%
//! packed vs 91% in place, 512³ 80–83% vs 80–88%, conv1 (784×32×9) 27% vs 39%. Nothing is
//! allocated per call.
//!
//! `m <= 6` does not block K: each panel is streamed once over the whole K (for `m == 1`, GEMV,
//! by the 1-row micro-kernel with four interleaved accumulator sets).
//!
//! Tasks run on rayon when [`crate::kernels::threads`] is more than 1; the plan then makes at least as
//! many tasks as threads, cutting M when it is tall enough and N panels otherwise.

use super::packed::{Panels, NR};
use super::{panel_bias, Activation, Epilogue};
use rayon::prelude::*;

/// Rows of C one micro-kernel call produces at most.
pub(super) const MR: usize = 6;
/// K block: a KC×16 B slice plus 6 rows of KC A values fit in L1.
const KC: usize = 256;
/// Longest K left unblocked: a 320×16 B slice (20 KiB) and 6 A rows (7.5 KiB) still fit in
/// Zen 3's 32 KiB L1d.
const KC_MAX: usize = 320;
/// M block (a multiple of `MR`): an MC×KC A block fits in half of L2.
const MC: usize = 144;
/// N block (a multiple of `NR`): a KC×NC B block is 4 MiB, in L3.
const NC: usize = 4096;

/// Below this many multiply-adds (about 10 µs of one core) a call runs serially: handing tasks
/// to rayon workers would cost more than it saves. Tests split every call, so the random shapes
/// exercise the parallel plans too.
#[cfg(not(test))]
const PARALLEL_MIN_MACS: usize = 1 << 18;
#[cfg(test)]
const PARALLEL_MIN_MACS: usize = 1;

/// One micro-kernel call: `C[R×cols] (+)= A[R×kc] · B_panel[kc×16]`, then on the last K block
/// `C = act(C + bias)`.
pub(super) struct MicroTile<'a> {
    /// Length of the K block.
    pub kc: usize,
    /// A at the tile's first row and K step, read in place: row `i`, step `kk` at
    /// `a[i * lda + kk]`.
    pub a: *const f32,
    /// Row stride of A.
    pub lda: usize,
    /// Packed B panel slice: `kc × 16` values (64-byte aligned when the storage is, not relied on).
    pub b: *const f32,
    /// Top-left of the C tile.
    pub c: *mut f32,
    /// Row stride of C.
    pub ldc: usize,
    /// Valid columns of the tile, 1..=16; lanes beyond are neither read nor written in C.
    pub cols: usize,
    /// Add the tile's current contents of C (not the first K block).
    pub accumulate: bool,
    /// Present on the last K block: what to apply at the store.
    pub finish: Option<Finish<'a>>,
}

/// The epilogue of one tile: its `cols` bias values and the activation.
#[derive(Clone, Copy)]
pub(super) struct Finish<'a> {
    /// Bias for the tile's columns (`cols` values), when there is one.
    pub bias: Option<&'a [f32]>,
    /// Activation applied after the bias.
    pub act: Activation,
}

/// A micro-kernel for R rows (R fixed per function). Callers guarantee that every pointer in
/// the tile covers what its doc says and that the CPU has the kernel's features.
pub(super) type MicroKernel = unsafe fn(&MicroTile<'_>);

/// A SIMD kernel family: its name and its micro-kernels for 1..=MR rows.
pub(super) struct Simd {
    /// Kernel name reported by `gemm_kernel_name`.
    pub name: &'static str,
    /// `micro[r - 1]` computes tiles of `r` rows.
    pub micro: [MicroKernel; MR],
}

/// Base of C, shared by the tasks of one call.
struct OutPtr(*mut f32);

// SAFETY: the pointer is only dereferenced by micro-kernels inside `Job::task`, and the tasks of
// one call write disjoint tiles of C (distinct row blocks or panel chunks), all inside the slice
// whose length `super::run` checked; the slice stays mutably borrowed for the whole call.
unsafe impl Sync for OutPtr {}

/// How one call is cut into tasks and K blocks.
#[derive(Debug)]
struct Plan {
    m: usize,
    k: usize,
    panels: usize,
    /// Rows per task (a multiple of MR, or 1 for GEMV).
    rows: usize,
    m_blocks: usize,
    /// Panels per task.
    chunk: usize,
    n_chunks: usize,
    /// K block length and count.
    kc: usize,
    k_blocks: usize,
}

impl Plan {
    fn new(m: usize, k: usize, panels: usize, threads: usize) -> Plan {
        // K blocking keeps a B slice in L1 while several row groups reuse it; with a single
        // row group (m <= MR, GEMV included) nothing reuses it and blocking only adds C reloads.
        // K up to KC_MAX stays whole: splitting it (MNIST conv2's K = 289 into two halves of
        // 145) would store and reload every C tile for no gain in L1 reuse.
        let (kc, k_blocks) = if m <= MR || k <= KC_MAX {
            (k, 1)
        } else {
            let blocks = k.div_ceil(KC);
            (k.div_ceil(blocks), blocks)
        };
        let mut m_blocks = m.div_ceil(MC);
        if threads > 1 {
            m_blocks = m_blocks.max(threads.min(m.div_ceil(MR)));
        }
        let rows = if m == 1 {
            1
        } else {
            m.div_ceil(m_blocks).next_multiple_of(MR)
        };
        let m_blocks = m.div_ceil(rows);
        let mut n_chunks = panels.div_ceil(NC / NR);
        if threads > 1 && m_blocks < threads {
            n_chunks = n_chunks.max(threads.div_ceil(m_blocks)).min(panels);
        }
        let chunk = panels.div_ceil(n_chunks);
        Plan {
            m,
            k,
            panels,
            rows,
            m_blocks,
            chunk,
            n_chunks: panels.div_ceil(chunk),
            kc,
            k_blocks,
        }
    }

    fn tasks(&self) -> usize {
        self.m_blocks * self.n_chunks
    }
}

/// Everything one call's tasks share.
struct Job<'a> {
    simd: &'a Simd,
    plan: Plan,
    a: &'a [f32],
    lda: usize,
    b: Panels<'a>,
    epi: Epilogue<'a>,
    c: OutPtr,
    ldc: usize,
}

impl Job<'_> {
    /// Computes task `t`: row block `t % m_blocks`, panel chunk `t / m_blocks`, all of K.
    fn task(&self, t: usize) {
        let plan = &self.plan;
        let r0 = (t % plan.m_blocks) * plan.rows;
        let r1 = (r0 + plan.rows).min(plan.m);
        let p0 = (t / plan.m_blocks) * plan.chunk;
        let p1 = (p0 + plan.chunk).min(plan.panels);
        for kb in 0..plan.k_blocks {
            let k0 = kb * plan.kc;
            let kc = plan.kc.min(plan.k - k0);
            let last = kb + 1 == plan.k_blocks;
            for p in p0..p1 {
                let cols = self.b.panel_cols(p);
                let b_slice = &self.b.panel(p)[k0 * NR..(k0 + kc) * NR];
                let finish = last.then(|| Finish {
                    bias: panel_bias(&self.epi, p, cols),
                    act: self.epi.act,
                });
                for i0 in (r0..r1).step_by(MR) {
                    let r = MR.min(r1 - i0);
                    let tile = MicroTile {
                        kc,
                        a: self.a[i0 * self.lda + k0..].as_ptr(),
                        lda: self.lda,
                        b: b_slice.as_ptr(),
                        c: self.c.0.wrapping_add(i0 * self.ldc + p * NR),
                        ldc: self.ldc,
                        cols,
                        accumulate: kb > 0,
                        finish,
                    };
                    // SAFETY: rows i0..i0+r, columns k0..k0+kc of A and rows i0..i0+r, columns
                    // p·16..p·16+cols of C lie inside `a` and C, whose lengths `super::run`
                    // checked against m, K, N, lda and ldc; no other task writes that tile of C;
                    // `b_slice` holds kc panel rows and `finish.bias` `cols` values; `simd` was
                    // handed out only after detecting its CPU features.
                    unsafe { (self.simd.micro[r - 1])(&tile) };
                }
            }
        }
    }
}

/// `C = act(A·B + bias)` on `simd`'s micro-kernels; operands already checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    simd: &Simd,
    m: usize,
    a: &[f32],
    lda: usize,
    b: Panels<'_>,
    epi: Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let threads = if m.saturating_mul(b.n()).saturating_mul(b.k()) >= PARALLEL_MIN_MACS {
        crate::kernels::threads()
    } else {
        1
    };
    let job = Job {
        simd,
        plan: Plan::new(m, b.k(), b.panels(), threads),
        a,
        lda,
        b,
        epi,
        c: OutPtr(c.as_mut_ptr()),
        ldc,
    };
    let tasks = job.plan.tasks();
    let run = |t| job.task(t);
    if threads > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        (0..tasks).for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_row_and_panel_once() {
        for &(m, k, panels, threads) in &[
            (1, 3136, 8, 1),
            (1, 4096, 256, 2),
            (196, 288, 4, 2),
            (784, 9, 2, 2),
            (512, 512, 32, 1),
            (512, 512, 32, 3),
            (7, 600, 300, 4),
            (5, 0, 1, 2),
        ] {
            let plan = Plan::new(m, k, panels, threads);
            assert!(plan.rows == 1 || plan.rows.is_multiple_of(MR), "{plan:?}");
            assert!(plan.rows * plan.m_blocks >= m && plan.rows * (plan.m_blocks - 1) < m);
            assert!(plan.chunk * plan.n_chunks >= panels);
            assert!(plan.chunk * (plan.n_chunks - 1) < panels);
            assert!(plan.kc * plan.k_blocks >= k);
            assert!(
                plan.kc <= KC_MAX || (m <= MR && plan.k_blocks == 1),
                "{plan:?}"
            );
            if threads > 1 && m.div_ceil(MR).max(panels) >= threads {
                assert!(plan.tasks() >= threads, "{plan:?}");
            }
        }
    }
}
