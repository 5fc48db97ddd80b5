//! 4-bit kernel tests: the MatMulNBits layout, SIMD against the scalar twin (bit-exact: same
//! order of operations), and the scalar twin against naive f64 math.

use super::*;
use proptest::prelude::*;

fn kernels() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut v = vec![Kernel::Scalar, Kernel::Grouped];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        v.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx512_vnni() {
        v.push(Kernel::Vnni);
    }
    #[cfg(target_arch = "aarch64")]
    {
        v.push(Kernel::Neon);
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            v.push(Kernel::NeonDot);
        }
    }
    v
}

/// Nibble order and zero-point packing follow MatMulNBits: low nibble first, default zp 8.
#[test]
fn layout_is_matmul_nbits() {
    let (n, k, block) = (2, 40, 32);
    // Column 0 block 0: byte 0 = 0x21 → k0 = 1, k1 = 2. Block 1 (k 32..39, padded to 64).
    let mut b = vec![0u8; n * 2 * 16];
    b[0] = 0x21;
    b[16] = 0xf0; // column 0, block 1, k32 = 0, k33 = 15
    let scales = [0.5, 2.0, 1.0, 1.0];
    let w = PackedQ4::from_matmul_nbits(n, k, block, &b, &scales, None).unwrap();
    assert_eq!(w.weight(0, 0), (1.0 - 8.0) * 0.5);
    assert_eq!(w.weight(0, 1), (2.0 - 8.0) * 0.5);
    assert_eq!(w.weight(0, 32), (0.0 - 8.0) * 2.0);
    assert_eq!(w.weight(0, 33), (15.0 - 8.0) * 2.0);
    // Zero points: column 0 blocks (3, 12) packed as 0xc3; column 1 as 0x00.
    let z = [0xc3, 0x00];
    let w = PackedQ4::from_matmul_nbits(n, k, block, &b, &scales, Some(&z)).unwrap();
    assert_eq!(w.weight(0, 1), (2.0 - 3.0) * 0.5);
    assert_eq!(w.weight(0, 33), (15.0 - 12.0) * 2.0);
    assert_eq!(w.weight(1, 0), 0.0);
    assert!(matches!(
        PackedQ4::from_matmul_nbits(n, k, 48, &b, &scales, None),
        Err(Q4Error::BlockSize { block: 48 })
    ));
    assert!(matches!(
        PackedQ4::from_matmul_nbits(n, k, block, &b[1..], &scales, None),
        Err(Q4Error::Length { what: "B", .. })
    ));
}

/// Round-to-nearest quantization stays within half a step of every weight, and a packed
/// group-32 matrix is at most 0.16× its f32 bytes without zero points (0.1602× with them).
#[test]
fn quantize_round_trips_and_is_small() {
    let (n, k) = (64, 512);
    let w: Vec<f32> = (0..n * k)
        .map(|x| ((x * 7919 % 1000) as f32 - 500.0) / 250.0)
        .collect();
    for zp in [false, true] {
        let q = PackedQ4::quantize(n, k, 32, &w, zp).unwrap();
        for j in 0..n {
            for kk in 0..k {
                let step = q.scales()[j * q.blocks() + kk / 32];
                assert!(
                    (q.weight(j, kk) - w[j * k + kk]).abs() <= step * 0.5001,
                    "{j} {kk}"
                );
            }
        }
        let ratio = q.size_bytes() as f64 / (n * k * 4) as f64;
        assert!(ratio <= if zp { 0.1603 } else { 0.16 }, "{ratio}");
    }
}

fn run(kernel: Kernel, mode: Q4Mode, m: usize, a: &[f32], b: &PackedQ4, bias: &[f32]) -> Vec<f32> {
    let ldc = b.n() + 2;
    let mut out = vec![0f32; (m - 1) * ldc + b.n()];
    gemm_with(kernel, m, a, b.k() + 1, b, mode, Some(bias), &mut out, ldc).unwrap();
    out
}

fn problem() -> impl Strategy<Value = (usize, usize, usize, usize, bool, Vec<f32>, Vec<f32>, bool)>
{
    (
        1usize..=9,
        // Past 32 columns the grouped GEMV runs two 16-column groups at once, plus a lone tail.
        prop_oneof![1usize..=13, 33usize..=50],
        prop_oneof![1usize..=70, Just(127usize), Just(256usize), Just(300usize)],
        prop::sample::select(vec![32usize, 64, 128]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(m, n, k, block, zp, extreme)| {
            let big = if extreme { 1e4f32 } else { 1.0 };
            (
                Just(m),
                Just(n),
                Just(k),
                Just(block),
                Just(zp),
                prop::collection::vec(-big..big, (m - 1) * (k + 1) + k),
                prop::collection::vec(-1f32..1.0, n * k),
                Just(extreme),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every SIMD kernel gives the scalar twin's bits, in both modes.
    #[test]
    fn simd_matches_scalar((m, n, k, block, zp, a, w, _x) in problem()) {
        let b = PackedQ4::quantize(n, k, block, &w, zp).unwrap();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 - 3.0).collect();
        for mode in [Q4Mode::F32, Q4Mode::Int8] {
            for kernel in kernels() {
                // The dequantizing path has its own test (`dequant_path_matches_scalar`).
                if kernel.dequantizes(m, mode) {
                    continue;
                }
                // The grouped kernels have their own twin (and order of operations).
                let twin = if kernel.in_mode(mode).grouped() { Kernel::Grouped } else { Kernel::Scalar };
                let want = run(twin, mode, m, &a, &b, &bias);
                let got = run(kernel, mode, m, &a, &b, &bias);
                prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{:?} {:?}", kernel, mode);
            }
        }
    }

    /// The scalar twin against naive f64 math on the dequantized weights: F32 within f32
    /// rounding of `Σ|a·w|`; Int8 within the activation quantization error
    /// (`Σ_blocks max|a|/254 · Σ|w|`) plus rounding.
    #[test]
    fn scalar_matches_naive((m, n, k, block, zp, a, w, _x) in problem()) {
        let b = PackedQ4::quantize(n, k, block, &w, zp).unwrap();
        let bias = vec![0f32; n];
        let f = run(Kernel::Scalar, Q4Mode::F32, m, &a, &b, &bias);
        let q = run(Kernel::Scalar, Q4Mode::Int8, m, &a, &b, &bias);
        let g = run(Kernel::Grouped, Q4Mode::Int8, m, &a, &b, &bias);
        let (lda, ldc) = (k + 1, n + 2);
        for i in 0..m {
            for j in 0..n {
                let (mut y, mut mag, mut qerr) = (0f64, 0f64, 0f64);
                for bl in 0..k.div_ceil(block) {
                    let ks = bl * block..((bl + 1) * block).min(k);
                    let amax = ks.clone().map(|kk| a[i * lda + kk].abs() as f64).fold(0.0, f64::max);
                    for kk in ks {
                        let (av, wv) = (a[i * lda + kk] as f64, b.weight(j, kk) as f64);
                        y += av * wv;
                        mag += (av * wv).abs();
                        qerr += amax / 254.0 * wv.abs();
                    }
                }
                let tol = 1e-5 * mag + 1e-30;
                prop_assert!((f[i * ldc + j] as f64 - y).abs() <= tol, "f32 {} vs {}", f[i * ldc + j], y);
                for q in [&q, &g] {
                    prop_assert!((q[i * ldc + j] as f64 - y).abs() <= qerr * 1.001 + 2.0 * tol, "i8 {} vs {} (err bound {})", q[i * ldc + j], y, qerr);
                }
            }
        }
    }
}

/// Weight extremes (q = 0 and 15 with zero points 0 and 15) stay exact in the Int8 path:
/// `|q - zp| ≤ 15` times `|a| ≤ 127` cannot saturate `vpmaddubsw`.
#[test]
fn int8_extremes_are_exact() {
    let (n, k, block) = (4, 64, 32);
    let b = vec![0xf0u8; n * 2 * 16]; // alternating 0, 15
    let scales = vec![1.0f32; n * 2];
    let z = vec![0x0fu8, 0x0f, 0xf0, 0xf0]; // zp 15/0 and 0/15 per block
    let w = PackedQ4::from_matmul_nbits(n, k, block, &b, &scales, Some(&z)).unwrap();
    let a: Vec<f32> = (0..k)
        .map(|x| if x % 2 == 0 { -127.0 } else { 127.0 })
        .collect();
    for kernel in kernels() {
        let mut out = vec![0f32; n];
        gemm_with(kernel, 1, &a, k, &w, Q4Mode::Int8, None, &mut out, n).unwrap();
        for (j, &y) in out.iter().enumerate() {
            let want: f64 = (0..k).map(|kk| a[kk] as f64 * w.weight(j, kk) as f64).sum();
            assert_eq!(y as f64, want, "{kernel:?} column {j}");
        }
    }
}

/// Columns (GEMV) and rows (GEMM) split over a 2-thread pool give the same bits.
#[test]
fn threads_do_not_change_results() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for m in [1usize, 11] {
        let (n, k) = (37, 96);
        let w: Vec<f32> = (0..n * k)
            .map(|x| ((x * 31 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let b = PackedQ4::quantize(n, k, 32, &w, true).unwrap();
        let a: Vec<f32> = (0..m * k)
            .map(|x| ((x * 13 % 29) as f32 - 14.0) / 7.0)
            .collect();
        for mode in [Q4Mode::F32, Q4Mode::Int8] {
            let mut one = vec![0f32; m * n];
            gemm(m, &a, k, &b, mode, None, &mut one, n).unwrap();
            let mut two = vec![0f32; m * n];
            pool.install(|| gemm(m, &a, k, &b, mode, None, &mut two, n))
                .unwrap();
            assert_eq!(one, two);
        }
    }
}

/// The dequantized strips hold exactly the weights [`PackedQ4::weight`] defines.
#[test]
fn dequantized_columns_are_the_weights() {
    let (n, k) = (5, 200);
    let w: Vec<f32> = (0..n * k)
        .map(|x| ((x * 7919 % 1000) as f32 - 500.0) / 250.0)
        .collect();
    for (block, zp) in [(32, false), (64, true), (128, true)] {
        let b = PackedQ4::quantize(n, k, block, &w, zp).unwrap();
        let mut dst = vec![f32::NAN; b.blocks() * block];
        for j in 0..n {
            dequant::dequantize_portable(&b, j, &mut dst);
            for (kk, v) in dst.iter().enumerate().take(k) {
                assert_eq!(v.to_bits(), b.weight(j, kk).to_bits(), "{j} {kk}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// From `DEQUANT_MIN_M` rows the SIMD kernels' F32 mode (dequantized strips on the f32
    /// GEMM) agrees with the scalar twin within twice the f32 rounding bound of the dot
    /// product, `2·(K+2)·2⁻²³·(Σ|a·w| + |bias|)`, over strips with ragged tails.
    #[test]
    fn dequant_path_matches_scalar(
        m in dequant::DEQUANT_MIN_M..dequant::DEQUANT_MIN_M + 14,
        n in prop_oneof![1usize..=20, Just(100usize), 143usize..=146, Just(290usize)],
        k in prop_oneof![1usize..=70, Just(127usize), Just(300usize)],
        block in prop::sample::select(vec![32usize, 64, 128]),
        zp in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = crate::measure::rng::SplitMix64::new(seed);
        let mut uni = |len: usize, big: f32| -> Vec<f32> {
            (0..len).map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * big).collect()
        };
        let a = uni((m - 1) * (k + 1) + k, 1e3);
        let w = uni(n * k, 1.0);
        let b = PackedQ4::quantize(n, k, block, &w, zp).unwrap();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 - 3.0).collect();
        let want = run(Kernel::Scalar, Q4Mode::F32, m, &a, &b, &bias);
        let ldc = n + 2;
        for kernel in kernels().into_iter().filter(|kr| kr.dequantizes(m, Q4Mode::F32)) {
            let got = run(kernel, Q4Mode::F32, m, &a, &b, &bias);
            for i in 0..m {
                for j in 0..n {
                    let mag: f64 = (0..k).map(|kk| (a[i * (k + 1) + kk] as f64 * b.weight(j, kk) as f64).abs()).sum();
                    let tol = 2.0 * (k + 2) as f64 * (-23f64).exp2() * (mag + bias[j].abs() as f64);
                    let (g, w) = (got[i * ldc + j] as f64, want[i * ldc + j] as f64);
                    prop_assert!((g - w).abs() <= tol, "{:?} row {} col {}: {} vs {} (tol {})", kernel, i, j, g, w, tol);
                }
            }
        }
    }
}
