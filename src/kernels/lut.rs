//! Byte-to-byte table lookup, `out[i] = table[x[i]]`: what a quantized value goes through when
//! a chain of single-input f32 ops between two quantizations is folded into a 256-entry table
//! ([`crate::engine::fuse_qelem`]).
//!
//! The scalar twin is one load per byte. With AVX-512 VBMI the 256-entry table sits in four
//! registers and 64 bytes are looked up at once: `vpermi2b` picks from the lower and from the
//! upper 128 entries by the low 7 bits of each index, and the index's top bit chooses between
//! the two.

/// Whether [`lookup`] runs the AVX-512 VBMI form on this CPU (AVX-512 kernels allowed by
/// [`super::isa`], and VBMI present).
pub fn vbmi() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::isa() == super::Isa::Avx512Vnni && is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Name of the lookup kernel [`lookup`] runs here, for kernel names and records.
pub fn kernel_name() -> &'static str {
    if vbmi() {
        "lut-avx512vbmi"
    } else {
        "lut"
    }
}

/// `out[i] = table[x[i]]` for `i < min(x.len(), out.len())`.
pub fn lookup(table: &[u8; 256], x: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if vbmi() {
        // SAFETY: `vbmi()` checked AVX-512 F/BW (implied by the VNNI ISA) and VBMI on this CPU.
        unsafe { lookup_vbmi(table, x, out) };
        return;
    }
    lookup_scalar(table, x, out);
}

/// The scalar twin of [`lookup`].
pub fn lookup_scalar(table: &[u8; 256], x: &[u8], out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = table[usize::from(v)];
    }
}

/// [`lookup`] on AVX-512 VBMI, 64 bytes at a time; the tail runs the scalar twin.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn lookup_vbmi(table: &[u8; 256], x: &[u8], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = x.len().min(out.len());
    let t = table.as_ptr();
    // SAFETY: the four 64-byte loads read `table[0..256]`, inside the array.
    let (t0, t1, t2, t3) = unsafe {
        (
            _mm512_loadu_si512(t.cast()),
            _mm512_loadu_si512(t.add(64).cast()),
            _mm512_loadu_si512(t.add(128).cast()),
            _mm512_loadu_si512(t.add(192).cast()),
        )
    };
    let full = n / 64 * 64;
    for i in (0..full).step_by(64) {
        // SAFETY: `i + 64 <= n`, inside both `x` and `out`.
        unsafe {
            let idx = _mm512_loadu_si512(x.as_ptr().add(i).cast());
            let lo = _mm512_permutex2var_epi8(t0, idx, t1);
            let hi = _mm512_permutex2var_epi8(t2, idx, t3);
            let upper = _mm512_movepi8_mask(idx);
            let r = _mm512_mask_blend_epi8(upper, lo, hi);
            _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), r);
        }
    }
    lookup_scalar(table, &x[full..n], &mut out[full..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The dispatched lookup equals the scalar twin on any table and any length (odd tails
        /// included), every byte value present.
        #[test]
        fn dispatched_lookup_matches_scalar_twin(
            table in proptest::collection::vec(any::<u8>(), 256),
            x in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let table: [u8; 256] = table.try_into().unwrap();
            let mut x = x;
            x.extend(0..=255u8);
            let third = x.len() / 3;
            x.rotate_left(third);
            let mut got = vec![0; x.len()];
            let mut want = vec![0; x.len()];
            lookup(&table, &x, &mut got);
            lookup_scalar(&table, &x, &mut want);
            prop_assert_eq!(&got, &want);
            for (w, &v) in want.iter().zip(&x) {
                prop_assert_eq!(*w, table[usize::from(v)]);
            }
        }
    }
}
