//! FP32 convolution speed next to the bare GEMM of the same shape, measured by interleaving.
//!
//! The convolutions of the bundled models that run on the GEMM path (plus a max pool), each
//! timed with [`quench::engine::ops::conv::Conv::run`] as the engine calls it (bias and Relu
//! fused), and next to each the bare GEMM of its shape (`Cout × K` weights times an already
//! packed `K × H·W` operand): the difference is the convolution's own overhead (building the
//! patch operand). Each round times every case back to back on one thread; per case it prints
//! the median time, and the median (min–max) per-round ratio to the bare GEMM of its shape.
//!
//! Run: `cargo run --release --example f32_conv_rounds [ROUNDS]` (default 30). With
//! `QUENCH_BENCH_CLOCK=cpu` times are this thread's CPU time rather than wall time.

use std::hint::black_box;
use std::time::Instant;

use quench::engine::ops::conv::Conv;
use quench::engine::ops::pool::max_pool;
use quench::graph::shape::{ConvParams, Window2d};
use quench::kernels::f32::{gemm, Activation, Epilogue, PackedB};
use quench::measure::power::cpu_time::{cpu_seconds, Scope};

/// (label, Cin, Cout, input H, W, kernel, stride, pad)
type Case = (&'static str, usize, usize, [usize; 2], usize, usize, usize);

const CASES: [Case; 4] = [
    ("mnist conv1 1->32 3x3 28x28", 1, 32, [28, 28], 3, 1, 1),
    ("mnist conv2 32->64 3x3 14x14", 32, 64, [14, 14], 3, 1, 1),
    ("textdir conv0 3->8 3x3 s2", 3, 8, [48, 192], 3, 2, 1),
    ("textdir pw 16->88 1x1", 16, 88, [3, 96], 1, 1, 0),
];

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

fn window(input: [usize; 2], k: usize, s: usize, p: usize) -> Window2d {
    let out = |i: usize| (i + 2 * p - k) / s + 1;
    Window2d {
        kernel: [k, k],
        strides: [s, s],
        dilations: [1, 1],
        pads: [p; 4],
        input,
        output: [out(input[0]), out(input[1])],
    }
}

fn cpu_clock() -> bool {
    std::env::var("QUENCH_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// Seconds per call of `f`, over enough calls to last about 2 ms.
fn time(mut f: impl FnMut()) -> f64 {
    let clock = || {
        if cpu_clock() {
            cpu_seconds(Scope::Thread).unwrap_or(0.0)
        } else {
            0.0
        }
    };
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let calls = ((2e-3 / once) as usize).clamp(3, 10_000);
    let (t, c0) = (Instant::now(), clock());
    for _ in 0..calls {
        f();
    }
    let spent = if cpu_clock() {
        clock() - c0
    } else {
        t.elapsed().as_secs_f64()
    };
    spent / calls as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Bench {
    label: &'static str,
    conv: Conv,
    x: Vec<f32>,
    out: Vec<f32>,
    scratch: Vec<f32>,
    /// The bare GEMM: Cout × K weights times K × H·W packed patches.
    a: Vec<f32>,
    k: usize,
    m: usize,
    b: PackedB,
    c: Vec<f32>,
}

impl Bench {
    fn new((label, cin, cout, input, k, s, p): Case) -> Bench {
        let w = window(input, k, s, p);
        let hw = w.output[0] * w.output[1];
        let kk = cin * k * k;
        let params = ConvParams {
            batch: 1,
            cin,
            cout,
            group: 1,
            window: w,
        };
        let weights = values(cout * kk, 1);
        let bias = values(cout, 2);
        let conv = Conv::new(params, &weights, Some(&bias), Activation::Relu);
        Bench {
            label,
            x: values(cin * input[0] * input[1], 3),
            out: vec![0.0; cout * hw],
            scratch: vec![0.0; conv.scratch_len()],
            conv,
            a: weights,
            k: kk,
            m: cout,
            b: PackedB::from_k_by_n(kk, hw, &values(kk * hw, 4)),
            c: vec![0.0; cout * hw],
        }
    }

    fn conv(&mut self) -> f64 {
        time(|| {
            self.conv
                .run(black_box(&self.x), &mut self.out, &mut self.scratch);
            black_box(&self.out);
        })
    }

    fn gemm(&mut self) -> f64 {
        let n = self.b.n();
        time(|| {
            let epi = Epilogue {
                bias: None,
                act: Activation::Relu,
            };
            gemm(
                self.m,
                black_box(&self.a),
                self.k,
                &self.b,
                epi,
                &mut self.c,
                n,
            );
            black_box(&self.c);
        })
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let mut benches: Vec<Bench> = CASES.into_iter().map(Bench::new).collect();
    let pool_w = window([28, 28], 2, 2, 0);
    let pool_x = values(32 * 28 * 28, 5);
    let mut pool_out = vec![0.0; 32 * 14 * 14];
    let mut conv_t = vec![Vec::new(); benches.len()];
    let mut gemm_t = vec![Vec::new(); benches.len()];
    let mut ratio = vec![Vec::new(); benches.len()];
    let mut pool_t = Vec::new();
    quench::kernels::serial(|| {
        for _ in 0..rounds {
            for (i, b) in benches.iter_mut().enumerate() {
                let (c, g) = (b.conv(), b.gemm());
                conv_t[i].push(c);
                gemm_t[i].push(g);
                ratio[i].push(c / g);
            }
            pool_t.push(time(|| {
                max_pool(&pool_w, black_box(&pool_x), &mut pool_out);
                black_box(&pool_out);
            }));
        }
    });
    println!(
        "kernel {}, 1 thread, {rounds} rounds{}",
        quench::kernels::f32::gemm_kernel_name(),
        if cpu_clock() { ", CPU time" } else { "" }
    );
    for (i, b) in benches.iter().enumerate() {
        let r = &mut ratio[i];
        let med = median(r);
        println!(
            "{:<30} conv {:7.1} µs  bare GEMM {:7.1} µs  conv/GEMM {med:.2} ({:.2}–{:.2})",
            b.label,
            median(&mut conv_t[i]) * 1e6,
            median(&mut gemm_t[i]) * 1e6,
            r[0],
            r[r.len() - 1]
        );
    }
    println!(
        "{:<30} {:7.1} µs",
        "maxpool 2x2 32x28x28",
        median(&mut pool_t) * 1e6
    );
}
