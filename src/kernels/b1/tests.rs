//! Binary kernel tests: SIMD against the scalar twin (bit-exact), the twin against naive ±1
//! math, padding bits that must not count, and the byte-counter block boundary.

use super::*;
use proptest::prelude::*;

fn sign(x: f32) -> i64 {
    if x < 0.0 {
        -1
    } else {
        1
    }
}

fn kernels() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut v = vec![Kernel::Scalar];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        v.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_vpopcntdq() && is_x86_feature_detected!("avx2") {
        v.push(Kernel::Vpopcnt);
    }
    #[cfg(target_arch = "aarch64")]
    v.push(Kernel::Neon);
    v
}

fn k_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=140,
        Just(255usize),
        Just(256),
        Just(257),
        Just(1000),
        Just(8000)
    ]
}

fn dots_binary(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    w: &[f32],
) -> (Vec<i32>, Vec<f32>) {
    let b = PackedBinary::from_n_by_k(n, k, w, None).unwrap();
    let ap = BinaryActivations::pack(m, k, a, k, true).unwrap();
    let mut d = vec![0i32; m * n];
    gemm_binary_with(kernel, &ap, &b, Output::Dots(&mut d), n).unwrap();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
    let mut f = vec![0f32; m * n];
    gemm_binary_with(
        kernel,
        &ap,
        &b,
        Output::F32 {
            out: &mut f,
            bias: Some(&bias),
            relu: true,
        },
        n,
    )
    .unwrap();
    (d, f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// XNOR-popcount: every kernel equals the naive ±1 dot product, and f32 outputs are
    /// bit-identical to the scalar twin's.
    #[test]
    fn binary_gemm_matches_naive(m in prop_oneof![1usize..=9, 15usize..=18, Just(33usize)], n in prop_oneof![1usize..=13, Just(24usize)], k in k_dim(), seed: u64) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5 };
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
        let (want_d, want_f) = dots_binary(Kernel::Scalar, m, n, k, &a, &w);
        for i in 0..m {
            for j in 0..n {
                let naive: i64 = (0..k).map(|kk| sign(a[i * k + kk]) * sign(w[j * k + kk])).sum();
                prop_assert_eq!(want_d[i * n + j] as i64, naive);
            }
        }
        for kernel in kernels() {
            let (d, f) = dots_binary(kernel, m, n, k, &a, &w);
            prop_assert_eq!(&d, &want_d, "{:?}", kernel);
            prop_assert_eq!(f.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want_f.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }

    /// Ternary activations (ONNX `Sign`, many zeros, −0.0 among them) × binary weights: every
    /// kernel's exact dot product equals naive `Σ sign(a)·sign(w)` and the scalar twin's, and
    /// f32 outputs are bit-identical to the twin's; rows filled through `ternary_rows` from the
    /// same bits give the same result.
    #[test]
    fn ternary_gemm_matches_naive(m in prop_oneof![1usize..=9, 15usize..=18, Just(33usize)], n in prop_oneof![1usize..=13, Just(24usize)], k in k_dim(), zeros in 0u32..=4, seed: u64) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); s >> 33 };
        let a: Vec<f32> = (0..m * k).map(|_| {
            let r = next();
            match r % 8 {
                x if (x as u32) < zeros => if r & 8 == 0 { 0.0 } else { -0.0 },
                _ => (r % 2001) as f32 / 1000.0 - 1.0,
            }
        }).collect();
        let w: Vec<f32> = (0..n * k).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
        let b = PackedBinary::from_n_by_k(n, k, &w, None).unwrap();
        let ap = BinaryActivations::pack_ternary(m, k, &a, k).unwrap();
        let via_rows = BinaryActivations::ternary_rows(m, k, |i, sg, nz| {
            pack::pack_ternary_row(&a[i * k..(i + 1) * k], sg, nz)
        }).unwrap();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
        let run = |kernel: Kernel, acts: &BinaryActivations| {
            let mut d = vec![0i32; m * n];
            gemm_binary_with(kernel, acts, &b, Output::Dots(&mut d), n).unwrap();
            let mut f = vec![0f32; m * n];
            let out = Output::F32 { out: &mut f, bias: Some(&bias), relu: false };
            gemm_binary_with(kernel, acts, &b, out, n).unwrap();
            (d, f.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        let want = run(Kernel::Scalar, &ap);
        for i in 0..m {
            for j in 0..n {
                let naive: i64 = (0..k).map(|kk| onnx_sign(a[i * k + kk]) * sign(w[j * k + kk])).sum();
                prop_assert_eq!(want.0[i * n + j] as i64, naive);
            }
        }
        for kernel in kernels() {
            prop_assert_eq!(&run(kernel, &ap), &want, "{:?}", kernel);
            prop_assert_eq!(&run(kernel, &via_rows), &want, "{:?} rows", kernel);
        }
    }

    /// Binary weights × int8 activations equals naive `Σ sign(w)(a - za)`, for u8 and s8 with
    /// any zero point, including all-255 / all -128 rows.
    #[test]
    fn binary_i8_matches_naive(m in 1usize..=9, n in 1usize..=11, k in k_dim(), seed: u64, za: u8, extreme: bool, unsigned: bool) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 33) as u32 };
        let a8: Vec<u8> = (0..m * k).map(|_| if extreme { 255 } else { next() as u8 }).collect();
        let s8: Vec<i8> = (0..m * k).map(|_| if extreme { -128 } else { next() as u8 as i8 }).collect();
        let w: Vec<f32> = (0..n * k).map(|_| next() as f32 / u32::MAX as f32 - 0.5).collect();
        let b = PackedBinary::from_n_by_k(n, k, &w, None).unwrap();
        let acts = if unsigned { Activations::U8 { data: &a8, zero_point: za } } else { Activations::S8 { data: &s8, zero_point: za as i8 } };
        let centred = |idx: usize| if unsigned { a8[idx] as i64 - za as i64 } else { s8[idx] as i64 - za as i8 as i64 };
        let mut want = vec![0i32; m * n];
        gemm_i8_with(Kernel::Scalar, m, acts, k, 0.5, &b, Output::Dots(&mut want), n).unwrap();
        for i in 0..m {
            for j in 0..n {
                let naive: i64 = (0..k).map(|kk| sign(w[j * k + kk]) * centred(i * k + kk)).sum();
                prop_assert_eq!(want[i * n + j] as i64, naive);
            }
        }
        for kernel in kernels() {
            let mut got = vec![0i32; m * n];
            gemm_i8_with(kernel, m, acts, k, 0.5, &b, Output::Dots(&mut got), n).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", kernel);
        }
    }
}

/// Padding bits never count: all-negative weights and activations at K = 65 give +65, not more.
#[test]
fn padding_bits_do_not_count() {
    for kernel in kernels() {
        let (d, _) = dots_binary(kernel, 3, 5, 65, &[-1.0; 3 * 65], &[-1.0; 5 * 65]);
        assert!(d.iter().all(|&v| v == 65), "{kernel:?}: {d:?}");
        let (d, _) = dots_binary(kernel, 3, 5, 65, &[1.0; 3 * 65], &[-1.0; 5 * 65]);
        assert!(d.iter().all(|&v| v == -65), "{kernel:?}: {d:?}");
    }
}

/// α and β scale the f32 output: `dot · α[j] · β[i] + bias`.
#[test]
fn f32_output_is_scaled_dot() {
    let (m, n, k) = (2, 3, 70);
    let a: Vec<f32> = (0..m * k)
        .map(|x| if x % 3 == 0 { -2.0 } else { 2.0 })
        .collect();
    let w: Vec<f32> = (0..n * k)
        .map(|x| if x % 5 == 0 { -0.5 } else { 0.5 })
        .collect();
    let b = PackedBinary::from_n_by_k(n, k, &w, None).unwrap();
    let ap = BinaryActivations::pack(m, k, &a, k, true).unwrap();
    let mut d = vec![0i32; m * n];
    gemm_binary(&ap, &b, Output::Dots(&mut d), n).unwrap();
    let mut f = vec![0f32; m * n];
    gemm_binary(
        &ap,
        &b,
        Output::F32 {
            out: &mut f,
            bias: None,
            relu: false,
        },
        n,
    )
    .unwrap();
    for (x, y) in d.iter().zip(&f) {
        assert_eq!(*x as f32 * (0.5 * 2.0), *y);
    }
}

/// Rows split over a 2-thread pool give the same result.
#[test]
fn threads_do_not_change_results() {
    let (m, n, k) = (17, 13, 300);
    let a: Vec<f32> = (0..m * k).map(|x| ((x * 7919) % 13) as f32 - 6.0).collect();
    let w: Vec<f32> = (0..n * k)
        .map(|x| ((x * 104729) % 11) as f32 - 5.0)
        .collect();
    let one = dots_binary(Kernel::for_isa(isa()), m, n, k, &a, &w).0;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let two = pool.install(|| dots_binary(Kernel::for_isa(isa()), m, n, k, &a, &w).0);
    assert_eq!(one, two);
}

/// Packed binary weights stay under 0.04× of their f32 bytes, α included.
#[test]
fn packed_size_is_tiny() {
    let (n, k) = (256, 1024);
    let b = PackedBinary::from_n_by_k(n, k, &vec![1.0; n * k], None).unwrap();
    assert!(
        b.size_bytes() as f64 <= 0.04 * (n * k * 4) as f64,
        "{}",
        b.size_bytes()
    );
}

/// Mismatched shapes are errors.
#[test]
fn rejects_bad_shapes() {
    assert!(matches!(
        PackedBinary::from_n_by_k(2, 3, &[0.0; 5], None),
        Err(B1Error::Length {
            what: "weights",
            ..
        })
    ));
    let b = PackedBinary::from_n_by_k(2, 3, &[0.0; 6], None).unwrap();
    let a = BinaryActivations::pack(1, 4, &[0.0; 4], 4, false).unwrap();
    assert_eq!(
        gemm_binary(&a, &b, Output::Dots(&mut [0; 2]), 2),
        Err(B1Error::InnerDim { a: 4, b: 3 })
    );
    let a = BinaryActivations::pack(2, 3, &[0.0; 6], 3, false).unwrap();
    assert!(matches!(
        gemm_binary(&a, &b, Output::Dots(&mut [0; 3]), 2),
        Err(B1Error::Length { what: "output", .. })
    ));
}

/// The wide AVX-512 tile gives its portable twin's popcounts on random words (odd word counts,
/// all-ones words), for full and single-column tiles.
#[cfg(target_arch = "x86_64")]
#[test]
fn wide_tile_matches_portable() {
    if !crate::kernels::has_vpopcntdq() {
        return;
    }
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if s >> 60 == 0 {
            u64::MAX
        } else {
            s
        }
    };
    for words in [1usize, 2, 3, 7, 16, 17] {
        let rows: Vec<u64> = (0..wide::RG * words * wide::LANES)
            .map(|_| next())
            .collect();
        let masks: Vec<u64> = (0..wide::RG * words * wide::LANES)
            .map(|_| next())
            .collect();
        let cols: Vec<u64> = (0..wide::NC * words).map(|_| next()).collect();
        let (r, m, c) = (&rows[..], &masks[..], &cols[..]);
        // SAFETY (each call): the features were detected above; lengths as the kernel requires.
        unsafe {
            assert_eq!(
                wide::tile_avx512::<{ wide::NC }, false>(r, m, c, words),
                wide::tile_portable::<{ wide::NC }, false>(r, m, c, words)
            );
            assert_eq!(
                wide::tile_avx512::<1, false>(r, m, c, words),
                wide::tile_portable::<1, false>(r, m, c, words)
            );
            assert_eq!(
                wide::tile_avx512::<{ wide::NC }, true>(r, m, c, words),
                wide::tile_portable::<{ wide::NC }, true>(r, m, c, words)
            );
            assert_eq!(
                wide::tile_avx512::<1, true>(r, m, c, words),
                wide::tile_portable::<1, true>(r, m, c, words)
            );
        }
    }
}

/// ONNX `Sign`: −1, 0 (for ±0.0) or +1.
fn onnx_sign(x: f32) -> i64 {
    if x < 0.0 {
        -1
    } else if x > 0.0 {
        1
    } else {
        0
    }
}
