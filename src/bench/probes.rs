//! Peak probes: tight loops of the instruction each kernel family is built on, timed in the same
//! run as the kernels so that "% of peak" uses this machine's speed at this moment.
//!
//! Compute probes run on one core (independent accumulator chains, enough to cover latency) and
//! are scaled by the thread count; the DRAM probe streams a buffer much larger than the last-level
//! cache with the requested threads.

use std::hint::black_box;
use std::time::Instant;

use crate::kernels::{isa, Isa};

/// One measured peak: what was run and the rate it reached.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peak {
    /// The loop that was timed, e.g. `vfmadd231ps ymm ×10 chains`.
    pub probe: String,
    /// Ops (2 per multiply-add) or bytes per second, in units of 10⁹, for all threads.
    pub rate: f64,
}

/// The peaks of this machine, measured now. A field is `None` when this CPU has no such loop.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peaks {
    /// FP32 FMA GFLOP/s.
    pub fp32: Option<Peak>,
    /// INT8 GOP/s of the dot instruction quench's INT8 kernel dispatches to.
    pub int8_quench: Option<Peak>,
    /// INT8 GOP/s of this machine's fastest int8 dot instruction (what ONNX Runtime can use).
    pub int8_best: Option<Peak>,
    /// Binary GOP/s (2 per 1-bit multiply-add) of the XOR + popcount loop the binary kernel uses
    /// (`vpopcntq` or the AVX2 nibble table).
    pub binary: Option<Peak>,
    /// DRAM read bandwidth, GB/s.
    pub dram: Peak,
}

/// Best rate over `tries` runs of `f(iters)`, which returns its ops count.
fn best_rate(tries: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..tries)
        .map(|_| {
            let t = Instant::now();
            let ops = f();
            ops / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Measures every peak; `threads` scales the compute probes and runs the DRAM probe.
pub fn measure(threads: usize, quick: bool) -> Peaks {
    let iters = if quick { 20_000 } else { 400_000 };
    let t = threads.max(1) as f64;
    let scaled = |p: Option<(String, f64)>| {
        p.map(|(probe, rate)| Peak {
            probe: format!("{probe} ×{threads} threads"),
            rate: rate * t,
        })
    };
    let vnni = scaled(x86::vnni(iters));
    let vnni_zmm = scaled(x86::vnni_zmm(iters));
    let widen = scaled(x86::widen(iters));
    // The GEMM tiles run the zmm form, so it is quench's peak; the best is the faster form.
    let int8_quench = if isa() == Isa::Avx512Vnni {
        vnni_zmm.clone()
    } else {
        widen.clone()
    };
    let vnni_best = match (vnni, vnni_zmm) {
        (Some(y), Some(z)) => Some(if z.rate > y.rate { z } else { y }),
        (y, z) => y.or(z),
    };
    Peaks {
        fp32: scaled(x86::fma(iters)),
        int8_best: vnni_best.or(widen),
        int8_quench,
        binary: scaled(x86::popcount(iters)),
        dram: dram(threads, quick),
    }
}

/// Streaming read of a buffer of 512 MiB (32 MiB when `quick`), summed by `threads` workers.
fn dram(threads: usize, quick: bool) -> Peak {
    let words: usize = if quick { 4 << 20 } else { 64 << 20 };
    let buf: Vec<u64> = (0..words as u64).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build();
    let chunk = words.div_ceil(threads.max(1));
    let pass = || {
        use rayon::prelude::*;
        let sum: u64 = buf
            .par_chunks(chunk)
            .map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
            .reduce(|| 0, u64::wrapping_add);
        black_box(sum);
        (words * 8) as f64
    };
    let rate = match pool {
        Ok(p) => p.install(|| best_rate(3, pass)),
        Err(_) => best_rate(3, pass),
    };
    Peak {
        probe: format!("sum of a {} MiB u64 buffer", (words * 8) >> 20),
        rate,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86_64 probe loops, each an intrinsic loop over independent accumulator chains.
    use super::best_rate;
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// Chains per probe: more than latency × ports for every instruction timed here.
    const CHAINS: usize = 12;

    fn lanes(v: __m256i) -> i64 {
        let mut out = [0i64; 4];
        // SAFETY: `out` is 32 bytes; unaligned store (AVX is implied by the callers' AVX2).
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v) };
        out.iter().fold(0i64, |s, &x| s.wrapping_add(x))
    }

    /// `vfmadd231ps ymm`: 16 FLOP per instruction.
    pub fn fma(iters: usize) -> Option<(String, f64)> {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        #[target_feature(enable = "avx2,fma")]
        fn run(iters: usize) -> f32 {
            let mut acc = [_mm256_set1_ps(0.5); CHAINS];
            let (x, y) = black_box((_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-4)));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm256_fmadd_ps(*a, x, y);
                }
            }
            let mut s = _mm256_setzero_ps();
            for a in acc {
                s = _mm256_add_ps(s, a);
            }
            _mm256_cvtss_f32(s)
        }
        let rate = best_rate(5, || {
            // SAFETY: AVX2 and FMA were detected above.
            black_box(unsafe { run(iters) });
            (iters * CHAINS * 16) as f64
        });
        Some((format!("vfmadd231ps ymm ×{CHAINS} chains"), rate))
    }

    /// `vpmaddwd ymm` + `vpaddd`: 16 i16 multiply-adds (32 ops) per pair, the AVX2 INT8 kernel's
    /// inner step (the accumulator feeds the multiply so nothing is loop-invariant).
    pub fn widen(iters: usize) -> Option<(String, f64)> {
        if !is_x86_feature_detected!("avx2") {
            return None;
        }
        #[target_feature(enable = "avx2")]
        fn run(iters: usize) -> i64 {
            let mut acc = [_mm256_set1_epi16(3); CHAINS];
            let y = black_box(_mm256_set1_epi16(-5));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*a, y));
                }
            }
            acc.iter().fold(0i64, |s, &a| s.wrapping_add(lanes(a)))
        }
        let rate = best_rate(5, || {
            // SAFETY: AVX2 was detected above.
            black_box(unsafe { run(iters) });
            (iters * CHAINS * 32) as f64
        });
        Some((format!("vpmaddwd+vpaddd ymm ×{CHAINS} chains"), rate))
    }

    /// `vpdpbusd ymm`: 32 u8×s8 multiply-adds (64 ops) per instruction.
    pub fn vnni(iters: usize) -> Option<(String, f64)> {
        if !crate::kernels::has_avx512_vnni() {
            return None;
        }
        #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn run(iters: usize) -> i64 {
            let mut acc = [_mm256_setzero_si256(); CHAINS];
            let (x, y) = black_box((_mm256_set1_epi8(3), _mm256_set1_epi8(-5)));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm256_dpbusd_epi32(*a, x, y);
                }
            }
            acc.iter().fold(0i64, |s, &a| s.wrapping_add(lanes(a)))
        }
        let rate = best_rate(5, || {
            // SAFETY: AVX-512 F/BW/VL/VNNI were detected above.
            black_box(unsafe { run(iters) });
            (iters * CHAINS * 64) as f64
        });
        Some((format!("vpdpbusd ymm ×{CHAINS} chains"), rate))
    }

    /// `vpdpbusd zmm`: 64 u8×s8 multiply-adds (128 ops) per instruction, what the AVX-512 VNNI
    /// GEMM tiles run. On cores that split 512-bit operations in two (Zen 4) it is no faster
    /// per op than the `ymm` form; it needs half the instructions.
    pub fn vnni_zmm(iters: usize) -> Option<(String, f64)> {
        if !crate::kernels::has_avx512_vnni() {
            return None;
        }
        #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn run(iters: usize) -> i64 {
            let mut acc = [_mm512_setzero_si512(); CHAINS];
            let (x, y) = black_box((_mm512_set1_epi8(3), _mm512_set1_epi8(-5)));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm512_dpbusd_epi32(*a, x, y);
                }
            }
            acc.iter().fold(0i64, |s, &a| {
                s.wrapping_add(lanes(_mm512_castsi512_si256(a)))
                    .wrapping_add(lanes(_mm512_extracti64x4_epi64::<1>(a)))
            })
        }
        let rate = best_rate(5, || {
            // SAFETY: AVX-512 F/BW/VL/VNNI were detected above.
            black_box(unsafe { run(iters) });
            (iters * CHAINS * 128) as f64
        });
        Some((format!("vpdpbusd zmm ×{CHAINS} chains"), rate))
    }

    /// `vpxor` + `vpopcntq ymm` + `vpaddq`: 256 one-bit multiply-adds (512 ops), the binary
    /// kernel's step when AVX-512 VPOPCNTDQ is present (and [`popcount`] otherwise).
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vpopcntdq")]
    fn vpopcnt_loop(iters: usize) -> i64 {
        let mut acc = [_mm256_set1_epi64x(1); CHAINS];
        let y = black_box(_mm256_set1_epi8(0x33));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_add_epi64(*a, _mm256_popcnt_epi64(_mm256_xor_si256(*a, y)));
            }
        }
        acc.iter().fold(0i64, |s, &a| s.wrapping_add(lanes(a)))
    }

    /// XOR + nibble-table popcount (`vpshufb` ×2, `vpsrlw`, `vpand` ×2, `vpaddb` ×2) on 256 bits:
    /// the AVX2 binary kernel's step, 256 one-bit multiply-adds (512 ops); the accumulator is
    /// the XOR's input so nothing is loop-invariant.
    pub fn popcount(iters: usize) -> Option<(String, f64)> {
        if !is_x86_feature_detected!("avx2") {
            return None;
        }
        if crate::kernels::isa() == crate::kernels::Isa::Avx512Vnni
            && crate::kernels::has_vpopcntdq()
        {
            let rate = best_rate(5, || {
                // SAFETY: AVX2 and AVX-512 F/VL/VPOPCNTDQ were detected above.
                black_box(unsafe { vpopcnt_loop(iters) });
                (iters * CHAINS * 512) as f64
            });
            return Some((format!("xor+vpopcntq ymm ×{CHAINS} chains"), rate));
        }
        const CH: usize = 6;
        #[target_feature(enable = "avx2")]
        fn run(iters: usize) -> i64 {
            let lut = _mm256_setr_epi8(
                0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3,
                2, 3, 3, 4,
            );
            let nib = _mm256_set1_epi8(0x0f);
            let mut acc = [_mm256_setzero_si256(); CH];
            let y = black_box(_mm256_set1_epi8(0x33));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    let v = _mm256_xor_si256(*a, y);
                    let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, nib));
                    let hi =
                        _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
                    *a = _mm256_add_epi8(*a, _mm256_add_epi8(lo, hi));
                }
            }
            acc.iter().fold(0i64, |s, &a| s.wrapping_add(lanes(a)))
        }
        let rate = best_rate(5, || {
            // SAFETY: AVX2 was detected above.
            black_box(unsafe { run(iters) });
            (iters * CH * 512) as f64
        });
        Some((format!("xor+vpshufb popcount ymm ×{CH} chains"), rate))
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    //! No probe loops off x86_64 yet: every compute peak is reported as unmeasured.
    pub fn fma(_: usize) -> Option<(String, f64)> {
        None
    }
    pub fn widen(_: usize) -> Option<(String, f64)> {
        None
    }
    pub fn vnni(_: usize) -> Option<(String, f64)> {
        None
    }
    pub fn vnni_zmm(_: usize) -> Option<(String, f64)> {
        None
    }
    pub fn popcount(_: usize) -> Option<(String, f64)> {
        None
    }
}
