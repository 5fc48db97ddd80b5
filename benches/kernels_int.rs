//! Integer kernel benchmarks on one thread: INT8 GEMM 512³ and GEMV 4096², binary XNOR GEMM
//! 1024³ and binary × int8 GEMM, 4-bit GEMV 4096² (group 32). Throughput is reported in MACs per
//! second (criterion "elements"); GOP/s = 2 × MAC/s.
//!
//! Run: `cargo bench --bench kernels_int` (optionally `-- i8` to filter).

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use quench::kernels::{b1, i8, q4};
use std::hint::black_box;
use std::time::Duration;

/// Deterministic pseudo-random bytes.
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

/// A short-running group on rayon's global pool made single-threaded, so the kernels run
/// serially as in a 1-thread session.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    // Fails only when the pool was already built, which is the state wanted.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g
}

fn bench_i8(c: &mut Criterion) {
    let mut g = group(c, "i8");
    for (m, n, k) in [(512usize, 512usize, 512usize), (1, 4096, 4096)] {
        let a = bytes(m * k, 1);
        let w: Vec<i8> = bytes(n * k, 2).into_iter().map(|x| x as i8).collect();
        let b = i8::PackedI8::from_n_by_k(n, k, &w, i8::WeightZeroPoint::None).unwrap();
        let acts = i8::Activations::U8 {
            data: &a,
            zero_point: 128,
        };
        let mut out = vec![0u8; m * n];
        let scale = vec![1e-4f32; n];
        g.throughput(Throughput::Elements((m * n * k) as u64));
        let name = if m == 1 {
            i8::gemv_kernel_name()
        } else {
            i8::gemm_kernel_name()
        };
        g.bench_function(format!("{name}/u8-out/{m}x{n}x{k}"), |bch| {
            bch.iter(|| {
                let r = i8::Requantize {
                    multiplier: i8::Scale::PerChannel(&scale),
                    bias: None,
                    zero_point: 128,
                    relu: false,
                };
                i8::gemm(m, acts, k, &b, i8::Output::U8(&mut out, r), n).unwrap();
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn bench_b1(c: &mut Criterion) {
    let mut g = group(c, "b1");
    let (m, n, k) = (1024usize, 1024usize, 1024usize);
    let af: Vec<f32> = bytes(m * k, 3)
        .into_iter()
        .map(|x| x as f32 - 127.5)
        .collect();
    let wf: Vec<f32> = bytes(n * k, 4)
        .into_iter()
        .map(|x| x as f32 - 127.5)
        .collect();
    let b = b1::PackedBinary::from_n_by_k(n, k, &wf, None).unwrap();
    let a = b1::BinaryActivations::pack(m, k, &af, k, true).unwrap();
    let mut out = vec![0f32; m * n];
    g.throughput(Throughput::Elements((m * n * k) as u64));
    g.bench_function(
        format!("{}/f32-out/{m}x{n}x{k}", b1::binary_kernel_name()),
        |bch| {
            bch.iter(|| {
                let o = b1::Output::F32 {
                    out: &mut out,
                    bias: None,
                    relu: false,
                };
                b1::gemm_binary(&a, &b, o, n).unwrap();
                black_box(&out);
            })
        },
    );
    let m = 256usize;
    let a8 = bytes(m * k, 5);
    g.throughput(Throughput::Elements((m * n * k) as u64));
    g.bench_function(
        format!("{}/f32-out/{m}x{n}x{k}", b1::i8_kernel_name()),
        |bch| {
            bch.iter(|| {
                let acts = i8::Activations::U8 {
                    data: &a8,
                    zero_point: 3,
                };
                let o = b1::Output::F32 {
                    out: &mut out,
                    bias: None,
                    relu: false,
                };
                b1::gemm_i8(m, acts, k, 0.1, &b, o, n).unwrap();
                black_box(&out);
            })
        },
    );
    g.finish();
}

fn bench_q4(c: &mut Criterion) {
    let mut g = group(c, "q4");
    let (n, k) = (4096usize, 4096usize);
    let w: Vec<f32> = bytes(n * k, 6)
        .into_iter()
        .map(|x| x as f32 / 128.0 - 1.0)
        .collect();
    let b = q4::PackedQ4::quantize(n, k, 32, &w, true).unwrap();
    let a: Vec<f32> = bytes(k, 7)
        .into_iter()
        .map(|x| x as f32 / 64.0 - 2.0)
        .collect();
    let mut out = vec![0f32; n];
    g.throughput(Throughput::Elements((n * k) as u64));
    for mode in [q4::Q4Mode::F32, q4::Q4Mode::Int8] {
        g.bench_function(
            format!("{}/g32-zp/1x{n}x{k}", q4::kernel_name(1, mode)),
            |bch| {
                bch.iter(|| {
                    q4::gemm(1, &a, k, &b, mode, None, &mut out, n).unwrap();
                    black_box(&out);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_i8, bench_b1, bench_q4);
criterion_main!(benches);
