//! f32 GEMM throughput on one thread: square shapes, a large GEMV, and the bundled MNIST CNN's
//! layers as GEMMs (conv as im2col: M = output positions, K = kernel taps × input channels).
//!
//! Run: `cargo bench --bench kernels_f32`. Criterion's throughput is in "elements" = FLOP
//! (2·M·N·K per call), so its "Melem/s" reads as MFLOP/s. Set `QUENCH_KERNELS=scalar` to time the
//! scalar twin instead.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quench::kernels::f32::{gemm, gemm_kernel_name, Activation, Epilogue, PackedB};
use std::hint::black_box;

/// (label, M, N, K)
const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("256^3", 256, 256, 256),
    ("512^3", 512, 512, 512),
    ("gemv-1x4096x4096", 1, 4096, 4096),
    ("mnist-conv1-784x32x9", 784, 32, 9),
    ("mnist-conv2-196x64x288", 196, 64, 288),
    ("mnist-fc-1x128x3136", 1, 128, 3136),
];

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a 1-thread rayon pool");
    let mut group = c.benchmark_group(format!("f32-gemm-1t/{}", gemm_kernel_name()));
    for (label, m, n, k) in SHAPES {
        let a = values(m * k, 1);
        let packed = PackedB::from_n_by_k(n, k, &values(n * k, 2));
        let bias = values(n, 3);
        let mut out = vec![0.0; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |bencher| {
            pool.install(|| {
                bencher.iter(|| {
                    let epi = Epilogue {
                        bias: Some(&bias),
                        act: Activation::Relu,
                    };
                    gemm(m, black_box(&a), k, &packed, epi, &mut out, n);
                    black_box(&out);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
