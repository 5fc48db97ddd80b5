//! f32 GEMM speed as a fraction of this core's FMA peak, measured by interleaving.
//!
//! On a shared machine whose speed jumps from minute to minute an absolute time says little, so
//! each round times a register-only FMA loop (the core's peak: 2 FMA pipes × 8 lanes × 2 FLOP)
//! and then each GEMM shape, on one thread; the per-round ratio GEMM/peak is robust to the jumps.
//! Prints, per shape, the median GFLOP/s, the median ratio to peak and its spread (min–max over
//! rounds), and the ratio times the nominal 96 GFLOP/s peak of the reference Zen 3 core.
//!
//! Run: `cargo run --release --example f32_gemm_rounds [ROUNDS] [THREADS]` (default 30 rounds,
//! 1 thread; the ratio is always to one core's peak). On x86_64 without AVX2+FMA, or elsewhere,
//! it prints the GEMM rates only.

use quench::kernels::f32::{gemm, gemm_kernel_name, Activation, Epilogue, PackedB};
use std::hint::black_box;
use std::time::Instant;

/// (label, M, N, K)
const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("256^3", 256, 256, 256),
    ("512^3", 512, 512, 512),
    ("gemv 1x4096x4096", 1, 4096, 4096),
    ("mnist conv1 784x32x9", 784, 32, 9),
    ("mnist conv2 196x64x288", 196, 64, 288),
    ("mnist fc 1x128x3136", 1, 128, 3136),
];

/// Nominal fp32 peak of one Zen 3 core at 3 GHz (16 MAC/cycle).
const NOMINAL_PEAK: f64 = 96.0;

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

/// GFLOP/s of one run (about 0.3 ms) of a register-only loop of 10 independent FMA chains (enough to fill two 4-cycle
/// FMA pipes), or `None` without AVX2+FMA.
#[cfg(target_arch = "x86_64")]
fn peak_gflops() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2,fma")]
    fn chains(iters: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); 10];
        let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        // SAFETY: `out` holds 8 values.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return None;
    }
    let iters = 200_000;
    let t = Instant::now();
    // SAFETY: AVX2 and FMA were detected above.
    black_box(unsafe { chains(black_box(iters)) });
    Some((iters * 10 * 16) as f64 / t.elapsed().as_secs_f64() / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
fn peak_gflops() -> Option<f64> {
    None
}

struct Shape {
    label: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>,
    packed: PackedB,
    bias: Vec<f32>,
    out: Vec<f32>,
}

impl Shape {
    fn new((label, m, n, k): (&'static str, usize, usize, usize)) -> Shape {
        Shape {
            label,
            m,
            n,
            k,
            a: values(m * k, 1),
            packed: PackedB::from_n_by_k(n, k, &values(n * k, 2)),
            bias: values(n, 3),
            out: vec![0.0; m * n],
        }
    }

    /// GFLOP/s of the best of a few calls lasting about 2 ms in all.
    fn gflops(&mut self) -> f64 {
        let flop = (2 * self.m * self.n * self.k) as f64;
        let reps = (4e6 / flop).ceil().max(1.0) as usize;
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(3) {
            let t = Instant::now();
            let epi = Epilogue {
                bias: Some(&self.bias),
                act: Activation::Relu,
            };
            gemm(
                self.m,
                black_box(&self.a),
                self.k,
                &self.packed,
                epi,
                &mut self.out,
                self.n,
            );
            black_box(&self.out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        flop / best / 1e9
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let threads: usize = std::env::args()
        .nth(2)
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool");
    let mut shapes: Vec<Shape> = SHAPES.into_iter().map(Shape::new).collect();
    let mut rates = vec![Vec::new(); shapes.len()];
    let mut ratios = vec![Vec::new(); shapes.len()];
    let mut peaks = Vec::new();
    pool.install(|| {
        for _ in 0..rounds {
            let peak = (0..3).filter_map(|_| peak_gflops()).reduce(f64::max);
            peaks.extend(peak);
            for (i, shape) in shapes.iter_mut().enumerate() {
                let r = shape.gflops();
                rates[i].push(r);
                ratios[i].extend(peak.map(|p| r / p));
            }
        }
    });
    println!(
        "kernel {}, {threads} thread(s), {rounds} rounds",
        gemm_kernel_name()
    );
    if !peaks.is_empty() {
        println!("FMA peak loop: median {:.1} GFLOP/s", median(&mut peaks));
    }
    for (i, shape) in shapes.iter().enumerate() {
        let rate = median(&mut rates[i]);
        if ratios[i].is_empty() {
            println!("{:<24} {rate:6.1} GFLOP/s", shape.label);
            continue;
        }
        let r = &mut ratios[i];
        let med = median(r);
        println!(
            "{:<24} {rate:6.1} GFLOP/s  {:5.1}% of peak (spread {:.1}–{:.1}%)  = {:.1} GFLOP/s at {NOMINAL_PEAK} peak",
            shape.label,
            med * 100.0,
            r[0] * 100.0,
            r[r.len() - 1] * 100.0,
            med * NOMINAL_PEAK
        );
    }
}
