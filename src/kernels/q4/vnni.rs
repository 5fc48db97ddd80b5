//! AVX-512 VNNI 4-bit kernel over the [`super::interleave`] layout: 16 columns per 512-bit
//! vector, `vpdpbusd` of the unpacked nibbles (u8) with four broadcast int8 activations, the
//! zero point taken off in exact i32, then one fused multiply-add per block by the combined
//! scale. Bit-identical with [`super::interleave::dot_group`].
//!
//! Per 64 weight bytes the loop spends one load, two ANDs and two `vpdpbusd`: the low nibbles
//! (`b & 0x0f`) and the high nibbles *in place* (`b & 0xf0`, 16 × the nibble) go to two
//! separate i32 sums, and the high sum is divided by 16 (an exact arithmetic shift) once per
//! block. `G` column groups run side by side, sharing the broadcast activations and giving
//! `2·R·G` independent `vpdpbusd` chains; the block size is a constant so the steps unroll.
//! Without stored zero points no zero-point bytes are read (the default 8 is a constant).

// Register tiles are indexed by row and group on purpose: the loops unroll over constants.
#![allow(clippy::needless_range_loop)]

use super::interleave::{Group, Rows, NG, STEP};
use std::arch::x86_64::*;

/// `R` rows × `G` groups of 16 columns, before the bias.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VNNI; `gs` must be groups of one
/// [`super::interleave::Interleaved`] and `a` hold `R` rows of `blocks · block` values with
/// `R · blocks` scales and sums.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn dot_groups<const R: usize, const G: usize>(
    gs: [Group<'_>; G],
    a: Rows<'_>,
) -> [[[f32; NG]; G]; R] {
    // SAFETY: the caller's contract, passed on; the block size is 32, 64 or 128.
    unsafe {
        match gs[0].block / STEP {
            4 => dot::<R, G, 4>(gs, a),
            8 => dot::<R, G, 8>(gs, a),
            _ => dot::<R, G, 16>(gs, a),
        }
    }
}

/// [`dot_groups`] for blocks of `STEPS · 8` values.
///
/// # Safety
/// As [`dot_groups`], with `gs[x].block == STEPS · STEP`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot<const R: usize, const G: usize, const STEPS: usize>(
    gs: [Group<'_>; G],
    a: Rows<'_>,
) -> [[[f32; NG]; G]; R] {
    let blocks = gs[0].blocks;
    for g in &gs {
        debug_assert!(g.block == STEPS * STEP && g.blocks == blocks);
        debug_assert!(g.bytes.len() >= blocks * STEPS * 64 && g.scales.len() >= blocks * NG);
        debug_assert!(g.zps.is_none_or(|z| z.len() >= blocks * NG));
    }
    debug_assert!(a.kp >= blocks * STEPS * STEP);
    debug_assert!(a.q.len() >= R * a.kp && a.qsum.len() >= R * blocks);
    debug_assert!(a.qscale.len() >= R * blocks);
    let lo = _mm512_set1_epi8(0x0f);
    let hi = _mm512_set1_epi8(0xf0u8 as i8);
    let default_zp = _mm512_set1_epi32(8);
    let qp = a.q.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); G]; R];
    for bl in 0..blocks {
        // SAFETY (whole block): block bl's 16 zero points and scales per group, its
        // STEPS · 64 bytes per group and its values per row all lie inside the slices (checked
        // above in debug builds, guaranteed by the caller).
        unsafe {
            let zp: [__m512i; G] = std::array::from_fn(|x| {
                gs[x].zps.map_or(default_zp, |z| {
                    _mm512_cvtepu8_epi32(_mm_loadu_si128(z.as_ptr().add(bl * NG) as *const _))
                })
            });
            // The low sums start at `−zp · Σq`: each lane of `zp` is a 16-bit zp over a zero
            // high half and `|Σq| ≤ 128 · 127` fits 16 bits, so `vpmaddwd` gives the exact
            // product.
            let mut dl = [[_mm512_setzero_si512(); G]; R];
            let mut dh = [[_mm512_setzero_si512(); G]; R];
            for r in 0..R {
                let nq = -*a.qsum.get_unchecked(r * blocks + bl);
                let nq = _mm512_set1_epi32(i32::from(nq as i16 as u16));
                for x in 0..G {
                    dl[r][x] = _mm512_madd_epi16(zp[x], nq);
                }
            }
            for st in 0..STEPS {
                let k0 = (bl * STEPS + st) * STEP;
                let w: [__m512i; G] = std::array::from_fn(|x| {
                    _mm512_loadu_si512(gs[x].bytes.as_ptr().add((bl * STEPS + st) * 64) as *const _)
                });
                let wl: [__m512i; G] = std::array::from_fn(|x| _mm512_and_si512(w[x], lo));
                let wh: [__m512i; G] = std::array::from_fn(|x| _mm512_and_si512(w[x], hi));
                for r in 0..R {
                    let q = qp.add(r * a.kp + k0);
                    let q0 = _mm512_set1_epi32((q as *const i32).read_unaligned());
                    let q1 = _mm512_set1_epi32((q.add(4) as *const i32).read_unaligned());
                    for x in 0..G {
                        dl[r][x] = _mm512_dpbusd_epi32(dl[r][x], wl[x], q0);
                        dh[r][x] = _mm512_dpbusd_epi32(dh[r][x], wh[x], q1);
                    }
                }
            }
            let sc: [__m512; G] =
                std::array::from_fn(|x| _mm512_loadu_ps(gs[x].scales.as_ptr().add(bl * NG)));
            for r in 0..R {
                let qs = _mm512_set1_ps(*a.qscale.get_unchecked(r * blocks + bl));
                for x in 0..G {
                    // `dh` is exactly 16 × the high nibbles' sum, so the shift divides exactly;
                    // `s = Σ q·(w − zp)` is the twin's integer, at most 128 · 127 · 15 < 2^24 in
                    // magnitude, so its conversion to f32 is exact.
                    let s = _mm512_add_epi32(dl[r][x], _mm512_srai_epi32::<4>(dh[r][x]));
                    let scale = _mm512_mul_ps(sc[x], qs);
                    acc[r][x] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r][x]);
                }
            }
        }
    }
    let mut out = [[[0f32; NG]; G]; R];
    for r in 0..R {
        for x in 0..G {
            // SAFETY: `out[r][x]` holds 16 f32; unaligned store.
            unsafe { _mm512_storeu_ps(out[r][x].as_mut_ptr(), acc[r][x]) };
        }
    }
    out
}
