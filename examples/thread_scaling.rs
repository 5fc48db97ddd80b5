//! 2-thread against 1-thread speed of quench's kernels at 1024³, measured by interleaving.
//!
//! Each round times every kernel on a 1-thread pool and then on a 2-thread pool (best of a few
//! calls each) and takes the ratio t(1 thread) / t(2 threads) inside the round, so a machine
//! whose load changes from minute to minute moves both sides alike. Prints per kernel the
//! median ratio over rounds, its spread (min–max) and the median 1-thread GOP/s (2 ops per
//! multiply-add). The target is ≥ 1.8× for every precision. On a shared machine the
//! second thread competes with other work: read the load average (`uptime`) beside the result.
//!
//! Run: `cargo run --release --example thread_scaling [ROUNDS] [SIZE]` (default 9 rounds, 1024).

use quench::kernels::{b1, f32 as kf32, i8 as ki8, q4};
use std::time::Instant;

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

/// One kernel call on operands it owns.
struct Case {
    name: String,
    call: Box<dyn FnMut() + Send>,
}

fn cases(s: usize) -> Vec<Case> {
    let (m, n, k) = (s, s, s);
    let a = values(m * k, 1);
    let w = values(n * k, 2);
    let mut out = Vec::new();

    let pb = kf32::PackedB::from_n_by_k(n, k, &w);
    let (a32, mut c32) = (a.clone(), vec![0f32; m * n]);
    out.push(Case {
        name: kf32::gemm_kernel_name(),
        call: Box::new(move || {
            let epi = kf32::Epilogue {
                bias: None,
                act: kf32::Activation::None,
            };
            kf32::gemm(m, &a32, k, &pb, epi, &mut c32, n);
        }),
    });

    let w8: Vec<i8> = w.iter().map(|&x| (x * 254.0) as i8).collect();
    let a8: Vec<u8> = a.iter().map(|&x| (x * 254.0 + 128.0) as u8).collect();
    let p8 =
        ki8::PackedI8::from_n_by_k(n, k, &w8, ki8::WeightZeroPoint::None).expect("i8 weights pack");
    let mut c8 = vec![0i32; m * n];
    out.push(Case {
        name: ki8::gemm_kernel_name(),
        call: Box::new(move || {
            let acts = ki8::Activations::U8 {
                data: &a8,
                zero_point: 131,
            };
            ki8::gemm(m, acts, k, &p8, ki8::Output::I32(&mut c8), n).expect("i8 gemm");
        }),
    });

    let pq = std::sync::Arc::new(q4::PackedQ4::quantize(n, k, 32, &w, false).expect("q4 pack"));
    for mode in [q4::Q4Mode::F32, q4::Q4Mode::Int8] {
        let (aq, p, mut cq) = (a.clone(), pq.clone(), vec![0f32; m * n]);
        out.push(Case {
            name: q4::kernel_name(m, mode),
            call: Box::new(move || {
                q4::gemm(m, &aq, k, &p, mode, None, &mut cq, n).expect("q4 gemm");
            }),
        });
    }

    let pbin = b1::PackedBinary::from_n_by_k(n, k, &w, None).expect("binary pack");
    let mut cb = vec![0i32; m * n];
    out.push(Case {
        name: b1::binary_kernel_name(),
        call: Box::new(move || {
            let acts = b1::BinaryActivations::pack(m, k, &a, k, true).expect("binary acts");
            b1::gemm_binary(&acts, &pbin, b1::Output::Dots(&mut cb), n).expect("binary gemm");
        }),
    });
    out
}

/// Best of `reps` calls, in seconds.
fn best(call: &mut dyn FnMut(), reps: usize) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            call();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(9);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let pools: Vec<rayon::ThreadPool> = [1, 2]
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("thread pool")
        })
        .collect();
    let mut cases = cases(size);
    let mut ratios = vec![Vec::new(); cases.len()];
    let mut one = vec![Vec::new(); cases.len()];
    for case in cases.iter_mut() {
        for pool in &pools {
            pool.install(|| (case.call)()); // warm-up
        }
    }
    for _ in 0..rounds {
        for (c, case) in cases.iter_mut().enumerate() {
            let t1 = pools[0].install(|| best(&mut case.call, 3));
            let t2 = pools[1].install(|| best(&mut case.call, 3));
            ratios[c].push(t1 / t2);
            one[c].push(t1);
        }
    }
    let ops = 2.0 * (size as f64).powi(3);
    println!("{size}³, {rounds} rounds: t(1 thread) / t(2 threads), median (min–max)");
    for (c, case) in cases.iter().enumerate() {
        let lo = ratios[c].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios[c].iter().copied().fold(0.0, f64::max);
        println!(
            "{:<36} {:>5.2}× ({lo:.2}–{hi:.2})   1 thread {:>7.1} GOP/s",
            case.name,
            median(ratios[c].clone()),
            ops / median(one[c].clone()) / 1e9
        );
    }
}
