//! INT8 GEMM tests: every kernel against the scalar twin (bit-exact), the scalar twin against
//! naive i64/f64 math, on random shapes with odd tails and saturating values.

use super::*;
use proptest::prelude::*;

/// A test problem: unpacked operands and quantization parameters.
#[derive(Debug, Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    a_u8: Vec<u8>,
    a_s8: Vec<i8>,
    za_u8: u8,
    za_s8: i8,
    /// N×K row-major.
    w: Vec<i8>,
    zb: Option<Vec<i8>>,
    per_channel_zb: bool,
    scales: Vec<f32>,
    bias_i: Vec<i32>,
    bias_f: Vec<f32>,
}

impl Case {
    fn acts(&self, unsigned: bool) -> Activations<'_> {
        if unsigned {
            Activations::U8 {
                data: &self.a_u8,
                zero_point: self.za_u8,
            }
        } else {
            Activations::S8 {
                data: &self.a_s8,
                zero_point: self.za_s8,
            }
        }
    }

    fn packed(&self) -> PackedI8 {
        let zp = match (&self.zb, self.per_channel_zb) {
            (None, _) => WeightZeroPoint::None,
            (Some(z), true) => WeightZeroPoint::PerChannel(z),
            (Some(z), false) => WeightZeroPoint::PerTensor(z[0]),
        };
        PackedI8::from_n_by_k(self.n, self.k, &self.w, zp).unwrap()
    }

    fn zb(&self, j: usize) -> i64 {
        match (&self.zb, self.per_channel_zb) {
            (None, _) => 0,
            (Some(z), true) => z[j] as i64,
            (Some(z), false) => z[0] as i64,
        }
    }

    /// Naive exact accumulators in i64.
    fn naive(&self, unsigned: bool) -> Vec<i64> {
        let mut c = vec![0i64; self.m * self.n];
        for i in 0..self.m {
            for j in 0..self.n {
                let mut s = 0i64;
                for kk in 0..self.k {
                    let a = if unsigned {
                        self.a_u8[i * self.lda + kk] as i64 - self.za_u8 as i64
                    } else {
                        self.a_s8[i * self.lda + kk] as i64 - self.za_s8 as i64
                    };
                    s += a * (self.w[j * self.k + kk] as i64 - self.zb(j));
                }
                c[i * self.n + j] = s;
            }
        }
        c
    }
}

/// Values drawn either uniformly or from the saturating extremes.
fn values<T: Copy + std::fmt::Debug + 'static>(
    len: usize,
    extremes: &'static [T],
    uniform: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Vec<T>> {
    prop_oneof![
        prop::collection::vec(uniform, len),
        prop::sample::select(extremes).prop_flat_map(move |v| Just(vec![v; len])),
        prop::collection::vec(prop::sample::select(extremes), len),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    case_in(1..=20, 1..=37)
}

/// A [`Case`] with `m` and `n` drawn from the given ranges.
fn case_in(
    ms: std::ops::RangeInclusive<usize>,
    ns: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Case> {
    let dims = (
        ms,
        ns,
        prop_oneof![1usize..=70, Just(127usize), Just(256usize)],
        0usize..3,
    );
    dims.prop_flat_map(|(m, n, k, pad)| {
        let lda = k + pad;
        let len = (m - 1) * lda + k;
        (
            values(len, &[0u8, 255, 1, 254], any::<u8>()),
            values(len, &[-128i8, 127, -127], any::<i8>()),
            prop_oneof![Just(0u8), Just(128u8), Just(255u8), any::<u8>()],
            prop_oneof![Just(0i8), Just(-128i8), Just(127i8), any::<i8>()],
            values(n * k, &[-128i8, 127, -127], any::<i8>()),
            prop::option::of(prop::collection::vec(any::<i8>(), n)),
            any::<bool>(),
            prop::collection::vec(1e-6f32..1e-2, n),
            prop::collection::vec(-100_000i32..100_000, n),
            prop::collection::vec(-10f32..10.0, n),
        )
            .prop_map(
                move |(a_u8, a_s8, za_u8, za_s8, w, zb, per_channel_zb, scales, bias_i, bias_f)| {
                    Case {
                        m,
                        n,
                        k,
                        lda,
                        a_u8,
                        a_s8,
                        za_u8,
                        za_s8,
                        w,
                        zb,
                        per_channel_zb,
                        scales,
                        bias_i,
                        bias_f,
                    }
                },
            )
    })
}

/// Runs every output kind through `kernel` and returns (i32, f32, u8, s8) results.
fn run_all(
    kernel: Kernel,
    c: &Case,
    unsigned: bool,
    per_channel: bool,
    relu: bool,
) -> (Vec<i32>, Vec<f32>, Vec<u8>, Vec<i8>) {
    let b = c.packed();
    let a = c.acts(unsigned);
    let (m, n) = (c.m, c.n);
    let ldc = n + 1;
    let len = (m - 1) * ldc + n;
    let scale = if per_channel {
        Scale::PerChannel(&c.scales)
    } else {
        Scale::PerTensor(c.scales[0])
    };
    let mut i = vec![0i32; len];
    gemm_with(kernel, m, a, c.lda, &b, Output::I32(&mut i), ldc).unwrap();
    let mut f = vec![0f32; len];
    let d = Dequantize {
        scale,
        bias: Some(&c.bias_f),
        relu,
    };
    gemm_with(kernel, m, a, c.lda, &b, Output::F32(&mut f, d), ldc).unwrap();
    let mut u = vec![0u8; len];
    let r = Requantize {
        multiplier: scale,
        bias: Some(&c.bias_i),
        zero_point: c.za_u8 as i32,
        relu,
    };
    gemm_with(kernel, m, a, c.lda, &b, Output::U8(&mut u, r), ldc).unwrap();
    let mut s = vec![0i8; len];
    let r = Requantize {
        multiplier: scale,
        bias: None,
        zero_point: c.za_s8 as i32,
        relu,
    };
    gemm_with(kernel, m, a, c.lda, &b, Output::S8(&mut s, r), ldc).unwrap();
    (i, f, u, s)
}

/// The scalar twin and every SIMD kernel this CPU runs.
pub(super) fn all_kernels() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut v = vec![Kernel::Scalar];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        v.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if super::super::has_avx512_vnni() {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every SIMD kernel gives bit-identical i32, f32, u8 and s8 outputs to the scalar twin.
    #[test]
    fn simd_matches_scalar(c in case(), unsigned: bool, per_channel: bool, relu: bool) {
        let want = run_all(Kernel::Scalar, &c, unsigned, per_channel, relu);
        for kernel in all_kernels() {
            let got = run_all(kernel, &c, unsigned, per_channel, relu);
            prop_assert_eq!(&got.0, &want.0, "{:?} i32", kernel);
            let fb: Vec<u32> = got.1.iter().map(|x| x.to_bits()).collect();
            let wb: Vec<u32> = want.1.iter().map(|x| x.to_bits()).collect();
            prop_assert_eq!(fb, wb, "{:?} f32", kernel);
            prop_assert_eq!(&got.2, &want.2, "{:?} u8", kernel);
            prop_assert_eq!(&got.3, &want.3, "{:?} s8", kernel);
        }
    }

    /// Wide GEMVs (the 64-column VNNI path, tails of 1–4 blocks) match the scalar twin too.
    #[test]
    fn wide_gemv_matches_scalar(c in case_in(1..=1, 49..=140), unsigned: bool, per_channel: bool, relu: bool) {
        let want = run_all(Kernel::Scalar, &c, unsigned, per_channel, relu);
        for kernel in all_kernels() {
            prop_assert_eq!(run_all(kernel, &c, unsigned, per_channel, relu), want.clone(), "{:?}", kernel);
        }
    }

    /// The scalar twin against naive math: i32 exact, requantized within one step of the f64
    /// result (f32 multiplication may round a value sitting next to a .5 tie the other way),
    /// dequantized within f32 rounding.
    #[test]
    fn scalar_matches_naive(c in case(), unsigned: bool, per_channel: bool) {
        let (i, f, u, _) = run_all(Kernel::Scalar, &c, unsigned, per_channel, false);
        let naive = c.naive(unsigned);
        let ldc = c.n + 1;
        for r in 0..c.m {
            for j in 0..c.n {
                let acc = naive[r * c.n + j];
                let o = r * ldc + j;
                prop_assert_eq!(i[o] as i64, acc);
                let s = if per_channel { c.scales[j] } else { c.scales[0] } as f64;
                let y = acc as f64 * s + c.bias_f[j] as f64;
                prop_assert!((f[o] as f64 - y).abs() <= 1e-5 * y.abs().max(1.0), "f32 {} vs {}", f[o], y);
                let q = (((acc + c.bias_i[j] as i64) as f64 * s).round_ties_even() + c.za_u8 as f64).clamp(0.0, 255.0);
                prop_assert!((u[o] as f64 - q).abs() <= 1.0, "u8 {} vs {}", u[o], q);
            }
        }
    }
}

/// The saturation extreme of `vpmaddubsw` (255 × -128 everywhere) at a large K is exact.
#[test]
fn extremes_are_exact_at_large_k() {
    let (m, n, k) = (7, 9, 4099);
    for kernel in all_kernels() {
        for (a, w) in [(255u8, -128i8), (255, 127), (0, -128)] {
            let av = vec![a; m * k];
            let wv = vec![w; n * k];
            let b = PackedI8::from_n_by_k(n, k, &wv, WeightZeroPoint::None).unwrap();
            let mut c = vec![0i32; m * n];
            let acts = Activations::U8 {
                data: &av,
                zero_point: 0,
            };
            gemm_with(kernel, m, acts, k, &b, Output::I32(&mut c), n).unwrap();
            let want = k as i32 * a as i32 * w as i32;
            assert!(
                c.iter().all(|&v| v == want),
                "{kernel:?} {a}×{w}: {} != {want}",
                c[0]
            );
        }
    }
}

/// Splitting rows (GEMM) and columns (GEMV) over a 2-thread pool changes nothing.
#[test]
fn threads_do_not_change_results() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (m, n, k) in [(1, 301, 67), (29, 45, 33)] {
        let a: Vec<u8> = (0..m * k).map(|x| (x * 37 % 256) as u8).collect();
        let w: Vec<i8> = (0..n * k).map(|x| (x * 91 % 256) as u8 as i8).collect();
        let b = PackedI8::from_n_by_k(n, k, &w, WeightZeroPoint::PerTensor(3)).unwrap();
        let acts = Activations::U8 {
            data: &a,
            zero_point: 9,
        };
        let mut one = vec![0i32; m * n];
        gemm(m, acts, k, &b, Output::I32(&mut one), n).unwrap();
        let mut two = vec![0i32; m * n];
        pool.install(|| gemm(m, acts, k, &b, Output::I32(&mut two), n))
            .unwrap();
        assert_eq!(one, two);
    }
}

/// Bad shapes and parameters are errors naming the value, not panics.
#[test]
fn rejects_bad_inputs() {
    let w = vec![1i8; 12];
    assert!(matches!(
        PackedI8::from_n_by_k(3, 5, &w, WeightZeroPoint::None),
        Err(I8Error::Length {
            what: "weights",
            ..
        })
    ));
    assert!(matches!(
        PackedI8::from_n_by_k(1, K_MAX + 1, &vec![0; K_MAX + 1], WeightZeroPoint::None),
        Err(I8Error::KTooLarge { .. })
    ));
    let b = PackedI8::from_n_by_k(3, 4, &w, WeightZeroPoint::None).unwrap();
    let a = [1u8; 8];
    let acts = Activations::U8 {
        data: &a,
        zero_point: 0,
    };
    let mut c = [0u8; 6];
    let r = Requantize {
        multiplier: Scale::PerTensor(1.0),
        bias: None,
        zero_point: 300,
        relu: false,
    };
    assert_eq!(
        gemm(2, acts, 4, &b, Output::U8(&mut c, r), 3),
        Err(I8Error::ZeroPoint {
            zp: 300,
            lo: 0,
            hi: 255
        })
    );
    let mut c = [0i32; 5];
    assert!(matches!(
        gemm(2, acts, 4, &b, Output::I32(&mut c), 3),
        Err(I8Error::Length { what: "output", .. })
    ));
    assert!(matches!(
        gemm(3, acts, 4, &b, Output::I32(&mut [0; 9]), 3),
        Err(I8Error::Length {
            what: "activations",
            ..
        })
    ));
}

/// Packed size stays within 0.26× of the f32 weights for a realistic layer.
#[test]
fn packed_size_is_about_a_quarter() {
    let (n, k) = (256, 512);
    let b = PackedI8::from_n_by_k(n, k, &vec![1; n * k], WeightZeroPoint::PerTensor(0)).unwrap();
    assert!(
        b.size_bytes() as f64 <= 0.26 * (n * k * 4) as f64,
        "{}",
        b.size_bytes()
    );
}

/// Requantization edge values (NaN, huge and tiny multipliers, ties) give the same bits in the
/// SIMD and scalar epilogues: NaN → lowest output, huge → saturated.
#[test]
fn requantize_edge_multipliers_match() {
    let (m, n, k) = (3, 8, 5);
    let a: Vec<u8> = (0..m * k).map(|x| (x * 61 % 256) as u8).collect();
    let w: Vec<i8> = (0..n * k).map(|x| (x * 17 % 256) as u8 as i8).collect();
    let b = PackedI8::from_n_by_k(n, k, &w, WeightZeroPoint::None).unwrap();
    let acts = Activations::U8 {
        data: &a,
        zero_point: 0,
    };
    let mult = [f32::NAN, 1e30, -1e30, 0.5, -0.5, 1e-30, f32::INFINITY, 0.0];
    for relu in [false, true] {
        let mut want = vec![0u8; m * n];
        let mut want_f = vec![0f32; m * n];
        for (i, kernel) in all_kernels().into_iter().enumerate() {
            let r = Requantize {
                multiplier: Scale::PerChannel(&mult),
                bias: None,
                zero_point: 100,
                relu,
            };
            let mut got = vec![0u8; m * n];
            gemm_with(kernel, m, acts, k, &b, Output::U8(&mut got, r), n).unwrap();
            let d = Dequantize {
                scale: Scale::PerChannel(&mult),
                bias: None,
                relu,
            };
            let mut got_f = vec![0f32; m * n];
            gemm_with(kernel, m, acts, k, &b, Output::F32(&mut got_f, d), n).unwrap();
            if i == 0 {
                assert_eq!(
                    got[0],
                    if relu { 100 } else { 0 },
                    "NaN gives the lowest output"
                );
                want = got;
                want_f = got_f;
            } else {
                assert_eq!(got, want, "{kernel:?}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got_f), bits(&want_f), "{kernel:?}");
            }
        }
    }
}
