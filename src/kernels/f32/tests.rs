//! The SIMD kernel against its scalar twin, and the twin against the plain definition.
//!
//! Tolerance (SIMD vs twin): per output, `(K+1)·2⁻²³·S` with `S = |bias| + Σ_k |a_ik·b_kj|`
//! (computed in f64). Both results are sums of K+1 rounded terms, each within `γ_{K+1}·S` of the
//! exact value with unit roundoff 2⁻²⁴; ReLU and Clip are 1-Lipschitz so the bound survives
//! them. For K = 97 that is 1.2e-5 relative to S, for K = 517 6.2e-5.

use super::*;
use proptest::prelude::*;
use std::sync::OnceLock;

/// Deterministic values in [-2, 2) (xorshift64*), so cases are reproducible from a seed.
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            r as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

/// One GEMM problem with padded strides; C starts filled with a sentinel.
struct Case {
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldc: usize,
    a: Vec<f32>,
    /// B unpacked, K×N row-major.
    b: Vec<f32>,
    packed: PackedB,
    bias: Option<Vec<f32>>,
    act: Activation,
}

const SENTINEL: f32 = 1234.5;

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn new(
        m: usize,
        n: usize,
        k: usize,
        pad: (usize, usize),
        bias: bool,
        act: Activation,
        transposed: bool,
        seed: u64,
    ) -> Case {
        let (lda, ldc) = (k + pad.0, n + pad.1);
        let a = values(seed, (m - 1) * lda + k);
        let b = values(seed ^ 0x9e37, k * n);
        let packed = if transposed {
            let mut w = vec![0.0; n * k];
            for kk in 0..k {
                for j in 0..n {
                    w[j * k + kk] = b[kk * n + j];
                }
            }
            PackedB::from_n_by_k(n, k, &w)
        } else {
            PackedB::from_k_by_n(k, n, &b)
        };
        let bias = bias.then(|| values(seed ^ 0x51ed, n));
        Case {
            m,
            n,
            k,
            lda,
            ldc,
            a,
            b,
            packed,
            bias,
            act,
        }
    }

    fn run(&self, kernel: Kernel) -> Vec<f32> {
        let mut c = vec![SENTINEL; (self.m - 1) * self.ldc + self.n];
        let epi = Epilogue {
            bias: self.bias.as_deref(),
            act: self.act,
        };
        run(
            kernel,
            self.m,
            &self.a,
            self.lda,
            self.packed.panels(),
            epi,
            &mut c,
            self.ldc,
        );
        c
    }

    /// The pre-SIMD definition, summed in the same order as the twin.
    fn naive(&self) -> Vec<f32> {
        let mut c = vec![SENTINEL; (self.m - 1) * self.ldc + self.n];
        for i in 0..self.m {
            for j in 0..self.n {
                let mut s = self.bias.as_ref().map_or(0.0, |b| b[j]);
                for kk in 0..self.k {
                    s += self.a[i * self.lda + kk] * self.b[kk * self.n + j];
                }
                c[i * self.ldc + j] = self.act.apply(s);
            }
        }
        c
    }

    /// Asserts `got` is within the error bound of `want` and the padding of C is untouched.
    fn assert_close(&self, got: &[f32], want: &[f32]) {
        let gamma = (self.k + 1) as f64 * f64::from(f32::EPSILON);
        for i in 0..self.m {
            for j in 0..self.ldc.min(got.len() - i * self.ldc) {
                let (g, w) = (got[i * self.ldc + j], want[i * self.ldc + j]);
                if j >= self.n {
                    assert_eq!(
                        g.to_bits(),
                        SENTINEL.to_bits(),
                        "padding C[{i},{j}] written"
                    );
                    continue;
                }
                let mut s = self.bias.as_ref().map_or(0.0, |b| f64::from(b[j]).abs());
                for kk in 0..self.k {
                    s += f64::from(self.a[i * self.lda + kk] * self.b[kk * self.n + j]).abs();
                }
                let tol = gamma * s + 1e-30;
                let ok = g == w || (g.is_nan() && w.is_nan()) || f64::from(g - w).abs() <= tol;
                assert!(ok, "C[{i},{j}] = {g}, twin {w}, tol {tol:e}");
            }
        }
    }

    /// The SIMD kernel (when this CPU has one) against the twin, serially and on 3 threads.
    fn check_simd(&self) {
        let want = self.run(Kernel::Scalar);
        let Some(simd) = Kernel::simd() else { return };
        self.assert_close(&self.run(simd), &want);
        self.assert_close(&pool3().install(|| self.run(simd)), &want);
    }
}

/// A 3-thread pool: an odd count, so splits are uneven.
fn pool3() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
    })
}

fn act_of(i: u8) -> Activation {
    match i % 4 {
        0 => Activation::None,
        1 => Activation::Relu,
        2 => Activation::Clip(-0.5, 0.75),
        _ => Activation::Clip(0.0, 6.0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn simd_matches_twin_on_random_shapes(
        m in 1usize..=97, n in 1usize..=97, k in 1usize..=97,
        pad in (0usize..5, 0usize..5), bias: bool, act in 0u8..4, transposed: bool, seed: u64,
    ) {
        Case::new(m, n, k, pad, bias, act_of(act), transposed, seed).check_simd();
    }

    #[test]
    fn twin_is_the_plain_definition_bit_for_bit(
        m in 1usize..=20, n in 1usize..=40, k in 1usize..=40,
        pad in (0usize..3, 0usize..3), bias: bool, act in 0u8..4, transposed: bool, seed: u64,
    ) {
        let case = Case::new(m, n, k, pad, bias, act_of(act), transposed, seed);
        let (got, want) = (case.run(Kernel::Scalar), case.naive());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&got), bits(&want));
    }
}

#[test]
fn prime_and_block_edge_shapes() {
    let shapes = [
        (1, 1, 1),
        (2, 17, 3),
        (5, 15, 256),
        (6, 16, 257),
        (7, 33, 511),
        (13, 31, 97),
        (143, 16, 5),
        (145, 49, 41),
        (61, 89, 300),
        (3, 1000, 100),
        (1, 700, 400),
        (4, 40, 700),
    ];
    for (idx, &(m, n, k)) in shapes.iter().enumerate() {
        let act = act_of(idx as u8);
        Case::new(m, n, k, (3, 5), idx % 2 == 0, act, idx % 3 == 0, idx as u64).check_simd();
    }
}

#[test]
fn model_shapes() {
    // The MNIST CNN as im2col GEMMs (conv1, conv2) and its fc layer (GEMV).
    for (i, &(m, n, k)) in [(784, 32, 9), (196, 64, 288), (1, 128, 3136), (1, 10, 128)]
        .iter()
        .enumerate()
    {
        Case::new(m, n, k, (0, 0), true, Activation::Relu, true, i as u64).check_simd();
    }
}

#[test]
fn large_with_strides_and_k_blocks() {
    Case::new(256, 300, 517, (7, 9), true, Activation::Relu, false, 42).check_simd();
}

#[test]
fn empty_k_stores_the_activated_bias() {
    for kernel in [Some(Kernel::Scalar), Kernel::simd()].into_iter().flatten() {
        let packed = PackedB::from_k_by_n(0, 3, &[]);
        let mut c = [9.0; 6];
        let epi = Epilogue {
            bias: Some(&[1.0, -2.0, 3.0]),
            act: Activation::Relu,
        };
        run(kernel, 2, &[], 0, packed.panels(), epi, &mut c, 3);
        assert_eq!(c, [1.0, 0.0, 3.0, 1.0, 0.0, 3.0], "{}", kernel.name());
    }
}

#[test]
fn panels_written_row_by_row_match_the_packed_operand() {
    // Scratch starts as NaN and one float off a cache line, so padding lanes hold garbage and
    // the operand's start has to be aligned by `PanelsMut::new`.
    for &(m, n, k) in &[(7, 37, 11), (1, 5, 3), (13, 16, 40)] {
        let case = Case::new(m, n, k, (2, 3), true, Activation::Relu, false, 99);
        let mut scratch = vec![f32::NAN; PanelsMut::scratch_len(k, n) + 1];
        let mut pm = PanelsMut::new(k, n, &mut scratch[1..]);
        for kk in 0..k {
            pm.set_row(kk, &case.b[kk * n..(kk + 1) * n]);
        }
        let epi = Epilogue {
            bias: case.bias.as_deref(),
            act: case.act,
        };
        let mut c = vec![SENTINEL; (m - 1) * case.ldc + n];
        gemm_panels(m, &case.a, case.lda, pm.panels(), epi, &mut c, case.ldc);
        assert_eq!(c, case.run(Kernel::selected()), "{m}×{n}×{k}");
        pm.fill_row(0, 1.5);
        assert!(pm.panels().panel(0)[..NR].iter().all(|&v| v == 1.5));
    }
}

#[test]
fn nan_and_infinity_propagate_like_the_twin() {
    let mut case = Case::new(9, 21, 13, (1, 2), true, Activation::None, false, 7);
    case.a[3] = f32::NAN;
    case.a[case.lda + 5] = f32::INFINITY;
    case.check_simd();
    case.act = Activation::Relu;
    case.check_simd();
    case.act = Activation::Clip(-1.0, 1.0);
    case.check_simd();
}

#[test]
#[should_panic(expected = "lda")]
fn short_lda_is_refused() {
    let packed = PackedB::from_k_by_n(4, 2, &[0.0; 8]);
    gemm(
        3,
        &[0.0; 12],
        3,
        &packed,
        Epilogue {
            bias: None,
            act: Activation::None,
        },
        &mut [0.0; 6],
        2,
    );
}

#[test]
#[should_panic(expected = "C holds")]
fn short_c_is_refused() {
    let packed = PackedB::from_k_by_n(4, 2, &[0.0; 8]);
    gemm(
        3,
        &[0.0; 12],
        4,
        &packed,
        Epilogue {
            bias: None,
            act: Activation::None,
        },
        &mut [0.0; 5],
        2,
    );
}

#[test]
#[should_panic(expected = "A holds")]
fn short_a_is_refused() {
    let packed = PackedB::from_k_by_n(4, 2, &[0.0; 8]);
    gemm(
        3,
        &[0.0; 11],
        4,
        &packed,
        Epilogue {
            bias: None,
            act: Activation::None,
        },
        &mut [0.0; 6],
        2,
    );
}

#[test]
fn kernel_follows_the_detected_isa() {
    let name = gemm_kernel_name();
    println!("isa {:?}, f32 kernel {name}", isa());
    let expected = match isa() {
        Isa::Scalar => "f32-gemm-scalar",
        Isa::Avx2 | Isa::Avx512Vnni => "f32-gemm-avx2-6x16",
        Isa::Neon | Isa::NeonDot => "f32-gemm-neon-6x16",
    };
    assert_eq!(name, expected);
    if std::env::var_os("QUENCH_KERNELS").is_none() {
        #[cfg(target_arch = "aarch64")]
        assert!(
            matches!(isa(), Isa::Neon | Isa::NeonDot),
            "NEON not detected"
        );
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(isa().has_avx2());
        }
    }
}
