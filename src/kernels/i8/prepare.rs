//! Activations made ready for the inner kernels one row block at a time.
//!
//! The GEMM reads its activation rows from a [`Source`]: a row-major matrix ([`Matrix`]), or the
//! patches of a padded H×W×C image read in place (`conv::HwcPatches`), so that a convolution
//! needs no im2col matrix. Each row block (one register tile of rows) is written once, in the
//! form its kernel reads (centred i16, shifted s8 for `sdot`, or u8 for `vpdpbusd`), row after
//! row, into per-thread scratch grown on demand: a warm run allocates nothing, and the block is small
//! enough to stay in L1 while every weight panel passes it.

use std::cell::RefCell;

use super::{copy_short, Activations, Kernel};

/// How the activation bytes are read: their type and zero point.
#[derive(Debug, Clone, Copy)]
pub(super) struct Act {
    /// Bytes are s8 (else u8).
    signed: bool,
    /// The zero point `za`.
    zero_point: i32,
}

impl Act {
    /// The bytes of `a` and how to read them.
    pub(super) fn of<'a>(a: &Activations<'a>) -> (Act, &'a [u8]) {
        match *a {
            Activations::U8 { data, zero_point } => (
                Act {
                    signed: false,
                    zero_point: zero_point.into(),
                },
                data,
            ),
            Activations::S8 { data, zero_point } => (
                Act {
                    signed: true,
                    zero_point: zero_point.into(),
                },
                bytemuck::cast_slice(data),
            ),
        }
    }

    /// The constant with `a - za = stored + offset` for what `kernel` stores: 0 for centred
    /// i16; for `sdot` the value moved to s8 (u8 XOR 0x80, s8 as is); for `vpdpbusd` the same
    /// value + 128 read as u8 (the s8 bits XOR 0x80), so 128 less.
    fn offset(self, kernel: Kernel) -> i32 {
        if !kernel.narrow() {
            return 0;
        }
        let to_s8 = if self.signed {
            -self.zero_point
        } else {
            128 - self.zero_point
        };
        if kernel.unsigned_bytes() {
            to_s8 - 128
        } else {
            to_s8
        }
    }

    /// The XOR that turns a raw byte into its narrow stored form (see [`Act::offset`]).
    fn xor(self, kernel: Kernel) -> u8 {
        if self.signed == kernel.unsigned_bytes() {
            0x80
        } else {
            0
        }
    }

    /// `Σ (x - za)` over `bytes`.
    #[inline(always)]
    fn centred_sum(self, bytes: &[u8]) -> i32 {
        let raw: i32 = if self.signed {
            bytes.iter().map(|&x| i32::from(x as i8)).sum()
        } else {
            bytes.iter().map(|&x| i32::from(x)).sum()
        };
        raw - bytes.len() as i32 * self.zero_point
    }

    /// `x - za` of raw bytes `src` into `dst`.
    #[inline(always)]
    fn widen(self, dst: &mut [i16], src: &[u8]) {
        // Only called with i32 zero points of u8/s8 activations.
        let z = self.zero_point as i16;
        if self.signed {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = i16::from(x as i8) - z;
            }
        } else {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = i16::from(x) - z;
            }
        }
    }
}

/// Activation rows of K values each, given as contiguous runs of raw bytes.
pub(super) trait Source: Sync {
    /// Calls `put(k0, bytes)` for the runs of row `i`, which cover K positions `0 .. K` once
    /// each (`bytes` is K positions `k0 .. k0 + bytes.len()`).
    fn runs(&self, i: usize, put: impl FnMut(usize, &[u8]));
}

/// A row-major `M × K` matrix with row stride `lda`: one run per row.
pub(super) struct Matrix<'a> {
    /// The bytes, at least `(M - 1) · lda + K` of them.
    pub data: &'a [u8],
    /// Row stride.
    pub lda: usize,
    /// Values per row.
    pub k: usize,
}

impl Source for Matrix<'_> {
    #[inline(always)]
    fn runs(&self, i: usize, mut put: impl FnMut(usize, &[u8])) {
        put(0, &self.data[i * self.lda..i * self.lda + self.k]);
    }
}

/// One prepared row block of `R` rows (rows past the block's last row hold stale values; their
/// results are never stored), as the tile kernels read it.
pub(super) struct Block<'s, const R: usize> {
    /// Centred i16 values (`a - za`), `R × kp`, for the widening kernels.
    pub wide: &'s [i16],
    /// Shifted s8 values (`sdot`) or their u8 bits (`vpdpbusd`), `R × kp`.
    pub narrow: &'s [i8],
    /// `Σ_k (a - za)` per row when the weights have zero points (else 0), for their term.
    pub row_sums: [i32; R],
    /// `a - za = stored + offset` (0 for the widening kernels).
    pub offset: i32,
    /// K padded to a multiple of [`KQ`](super::KQ).
    pub kp: usize,
}

/// The per-thread buffers a block is written to.
#[derive(Default)]
struct Scratch {
    wide: Vec<i16>,
    narrow: Vec<i8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What to prepare: rows `row0 .. row0 + rows` (at most `R`) of a source of K-value rows for
/// `kernel`, padded to `kp`, with row sums when `sums`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rows {
    pub kernel: Kernel,
    pub act: Act,
    pub row0: usize,
    pub rows: usize,
    pub kp: usize,
    pub sums: bool,
}

/// Prepares the block `rows` describes from `src` and calls `f` with it.
pub(super) fn with_block<const R: usize, O>(
    src: &impl Source,
    rows: Rows,
    f: impl FnOnce(&Block<'_, R>) -> O,
) -> O {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => prepare(src, rows, &mut s, f),
        // This thread's scratch is in use by a GEMM further up its stack (a rayon worker that
        // took another job while it waited): this block gets buffers of its own.
        Err(_) => prepare(src, rows, &mut Scratch::default(), f),
    })
}

fn prepare<const R: usize, O>(
    src: &impl Source,
    rows: Rows,
    s: &mut Scratch,
    f: impl FnOnce(&Block<'_, R>) -> O,
) -> O {
    let Rows {
        kernel,
        act,
        row0,
        kp,
        ..
    } = rows;
    let len = R * kp;
    let mut row_sums = [0i32; R];
    if kernel.narrow() {
        if s.narrow.len() < len {
            s.narrow.resize(len, 0);
        }
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut s.narrow[..len]);
        let xor = act.xor(kernel);
        for (r, sum) in row_sums.iter_mut().enumerate().take(rows.rows) {
            let row = &mut dst[r * kp..(r + 1) * kp];
            src.runs(row0 + r, |k0, x| {
                let d = &mut row[k0..k0 + x.len()];
                if xor == 0 {
                    copy_short(d, x);
                } else {
                    for (d, &v) in d.iter_mut().zip(x) {
                        *d = v ^ xor;
                    }
                }
                if rows.sums {
                    *sum += act.centred_sum(x);
                }
            });
        }
    } else {
        if s.wide.len() < len {
            s.wide.resize(len, 0);
        }
        let dst = &mut s.wide[..len];
        for (r, sum) in row_sums.iter_mut().enumerate().take(rows.rows) {
            let row = &mut dst[r * kp..(r + 1) * kp];
            src.runs(row0 + r, |k0, x| {
                act.widen(&mut row[k0..k0 + x.len()], x);
                if rows.sums {
                    *sum += act.centred_sum(x);
                }
            });
        }
    }
    // Padding K positions (and stale rows) may hold anything: the weights' padding is 0, so
    // they add nothing to a stored sum.
    let block = Block {
        wide: &s.wide[..if kernel.narrow() { 0 } else { len }],
        narrow: &s.narrow[..if kernel.narrow() { len } else { 0 }],
        row_sums,
        offset: act.offset(kernel),
        kp,
    };
    f(&block)
}
