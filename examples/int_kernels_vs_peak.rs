//! Interleaved measurement of the integer kernels against this core's own peak, so the figure
//! survives a shared machine whose speed changes from minute to minute: each round times a
//! peak probe and the kernel back to back (A B A B …) and reports kernel/probe ratios (median and
//! spread over rounds). One thread.
//!
//! Probes (AVX2): int8 `vpmaddubsw`+`vpmaddwd`+`vpaddd` on 12 independent accumulators (32 MACs
//! per `vpmaddubsw`), f32 `vfmadd` on 12 accumulators (8 MACs each), and a streaming read of a
//! buffer the size of the 4-bit weights. Probes and kernels both take their best of several
//! runs, so a preempted run does not count.
//!
//! Run: `cargo run --release --example int_kernels_vs_peak`

// The probes are x86_64-only; elsewhere `main` only reports that.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_imports, dead_code))]

use quench::kernels::{b1, i8, q4};
use std::hint::black_box;
use std::time::Instant;

#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::x86_64::*;

    /// MACs per second of the int8 multiply pipeline over `iters` iterations.
    pub fn int8(iters: usize) -> f64 {
        assert!(is_x86_feature_detected!("avx2"));
        let t = std::time::Instant::now();
        // SAFETY: AVX2 was checked just above.
        let v = unsafe { int8_loop(iters) };
        std::hint::black_box(v);
        (iters * 12 * 32) as f64 / t.elapsed().as_secs_f64()
    }

    #[target_feature(enable = "avx2")]
    fn int8_loop(iters: usize) -> i32 {
        let b = _mm256_set1_epi8(5);
        let ones = _mm256_set1_epi16(1);
        let mut acc: [__m256i; 12] = std::array::from_fn(|i| _mm256_set1_epi32(i as i32));
        for _ in 0..iters {
            // Each product reads its own accumulator, so nothing can be hoisted out of the loop.
            for x in acc.iter_mut() {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(*x, b), ones));
            }
        }
        acc.iter().map(|x| _mm256_extract_epi32::<0>(*x)).sum()
    }

    /// f32 MACs per second of the FMA pipeline.
    pub fn fma(iters: usize) -> f64 {
        assert!(is_x86_feature_detected!("fma"));
        let t = std::time::Instant::now();
        // SAFETY: FMA (and AVX) were checked just above.
        let v = unsafe { fma_loop(iters) };
        std::hint::black_box(v);
        (iters * 12 * 8) as f64 / t.elapsed().as_secs_f64()
    }

    #[target_feature(enable = "avx2,fma")]
    fn fma_loop(iters: usize) -> f32 {
        let a = _mm256_set1_ps(1.0000001);
        let mut acc = [_mm256_set1_ps(0.5); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, a);
            }
        }
        acc.iter().map(|x| _mm256_cvtss_f32(*x)).sum()
    }

    /// Bytes per second reading `buf` once with 32-byte loads.
    pub fn read(buf: &[u8]) -> f64 {
        let t = std::time::Instant::now();
        // SAFETY: AVX2 is checked by `int8`, which runs first; every load is inside `buf`.
        let v = unsafe { read_loop(buf) };
        std::hint::black_box(v);
        buf.len() as f64 / t.elapsed().as_secs_f64()
    }

    #[target_feature(enable = "avx2")]
    fn read_loop(buf: &[u8]) -> i64 {
        let mut acc = [_mm256_setzero_si256(); 4];
        for ch in buf.chunks_exact(128) {
            for (i, x) in acc.iter_mut().enumerate() {
                // SAFETY: `ch` holds 128 bytes, so bytes 32i .. 32i+32 are inside it.
                let v = unsafe { _mm256_loadu_si256(ch.as_ptr().add(32 * i) as *const __m256i) };
                *x = _mm256_add_epi64(*x, _mm256_sad_epu8(v, _mm256_setzero_si256()));
            }
        }
        acc.iter().map(|x| _mm256_extract_epi64::<0>(*x)).sum()
    }
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// Median, min and max of ratios.
fn summary(mut r: Vec<f64>) -> (f64, f64, f64) {
    r.sort_by(f64::total_cmp);
    (r[r.len() / 2], r[0], r[r.len() - 1])
}

/// Seconds for one call of `f` (best of `reps`).
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(run);
}

#[cfg(target_arch = "x86_64")]
fn run() {
    const ROUNDS: usize = 7;
    // INT8 GEMM 512³, u8 output.
    let (m, n, k) = (512usize, 512usize, 512usize);
    let a = bytes(m * k, 1);
    let w: Vec<i8> = bytes(n * k, 2).into_iter().map(|x| x as i8).collect();
    let b = i8::PackedI8::from_n_by_k(n, k, &w, i8::WeightZeroPoint::None).unwrap();
    let acts = i8::Activations::U8 {
        data: &a,
        zero_point: 128,
    };
    let mut out = vec![0u8; m * n];
    let scale = vec![1e-4f32; n];
    let mut r_i8 = Vec::new();
    let mut abs_i8 = Vec::new();
    for _ in 0..ROUNDS {
        let peak = (0..5).map(|_| probe::int8(1_000_000)).fold(0.0, f64::max);
        let s = time(5, || {
            let r = i8::Requantize {
                multiplier: i8::Scale::PerChannel(&scale),
                bias: None,
                zero_point: 128,
                relu: false,
            };
            i8::gemm(m, acts, k, &b, i8::Output::U8(&mut out, r), n).unwrap();
            black_box(&out);
        });
        let rate = (m * n * k) as f64 / s;
        r_i8.push(rate / peak);
        abs_i8.push(2.0 * rate / 1e9);
    }
    let (med, lo, hi) = summary(r_i8);
    let (gops, glo, ghi) = summary(abs_i8);
    println!("{} 512³ u8-out: {:.0}% of the int8 vpmaddubsw peak (rounds {:.0}–{:.0}%); {gops:.0} GOP/s ({glo:.0}–{ghi:.0})", i8::gemm_kernel_name(), med * 100.0, lo * 100.0, hi * 100.0);

    // Binary XNOR GEMM 1024³ vs the f32 FMA peak.
    let kb = 1024usize;
    let af: Vec<f32> = bytes(kb * kb, 3)
        .into_iter()
        .map(|x| x as f32 - 127.5)
        .collect();
    let wf: Vec<f32> = bytes(kb * kb, 4)
        .into_iter()
        .map(|x| x as f32 - 127.5)
        .collect();
    let bb = b1::PackedBinary::from_n_by_k(kb, kb, &wf, None).unwrap();
    let ab = b1::BinaryActivations::pack(kb, kb, &af, kb, true).unwrap();
    let mut outb = vec![0f32; kb * kb];
    let mut r_b1 = Vec::new();
    for _ in 0..ROUNDS {
        let peak = (0..5).map(|_| probe::fma(1_000_000)).fold(0.0, f64::max);
        let s = time(3, || {
            let o = b1::Output::F32 {
                out: &mut outb,
                bias: None,
                relu: false,
            };
            b1::gemm_binary(&ab, &bb, o, kb).unwrap();
            black_box(&outb);
        });
        r_b1.push((kb * kb * kb) as f64 / s / peak);
    }
    let (med, lo, hi) = summary(r_b1);
    println!(
        "{} 1024³: {:.1}× the f32 FMA peak in MACs/s (rounds {:.1}–{:.1}×) = {:.1}× an f32 GEMM at 73% of peak (~70 GFLOP/s)",
        b1::binary_kernel_name(),
        med,
        lo,
        hi,
        med / 0.73
    );

    // 4-bit GEMV 4096² g32 with zero points vs a streaming read of the same bytes.
    let (n4, k4) = (4096usize, 4096usize);
    let w4: Vec<f32> = bytes(n4 * k4, 6)
        .into_iter()
        .map(|x| x as f32 / 128.0 - 1.0)
        .collect();
    let b4 = q4::PackedQ4::quantize(n4, k4, 32, &w4, true).unwrap();
    let a4: Vec<f32> = bytes(k4, 7)
        .into_iter()
        .map(|x| x as f32 / 64.0 - 2.0)
        .collect();
    let buf = bytes(b4.size_bytes(), 8);
    let mut out4 = vec![0f32; n4];
    for mode in [q4::Q4Mode::F32, q4::Q4Mode::Int8] {
        let (mut ratio, mut ms) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let bw = (0..3).map(|_| probe::read(&buf)).fold(0.0, f64::max);
            let s = time(5, || {
                q4::gemm(1, &a4, k4, &b4, mode, None, &mut out4, n4).unwrap();
                black_box(&out4);
            });
            ratio.push(b4.size_bytes() as f64 / s / bw);
            ms.push(s * 1e3);
        }
        let (med, lo, hi) = summary(ratio);
        let (t, tlo, thi) = summary(ms);
        println!(
            "{} 4096² g32+zp ({:.1} MB): {t:.2} ms ({tlo:.2}–{thi:.2}); {:.0}% of the read bandwidth of the same bytes (rounds {:.0}–{:.0}%)",
            q4::kernel_name(1, mode),
            b4.size_bytes() as f64 / 1e6,
            med * 100.0,
            lo * 100.0,
            hi * 100.0
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("int_kernels_vs_peak: the peak probes are written for x86_64 AVX2 only");
    std::process::exit(1);
}
