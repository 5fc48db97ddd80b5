//! Convolution tests: im2col + GEMM and the depthwise kernel against a naive convolution whose
//! padding holds the activation zero point; depthwise SIMD against its scalar twin.

use super::depthwise::{depthwise_with, DwKernel};
use super::*;
use proptest::prelude::*;

/// Naive `Σ (x - zx)(w - zw)` for output channel `oc` reading input channels `chans`.
#[allow(clippy::too_many_arguments)]
fn naive(
    g: &Conv2d,
    x: &[u8],
    zx: u8,
    w: &[i8],
    zw: i8,
    chans: std::ops::Range<usize>,
    wbase: usize,
    oy: usize,
    ox: usize,
) -> i64 {
    let [kh, kw] = g.kernel;
    let mut s = 0i64;
    for (ci, c) in chans.enumerate() {
        for ky in 0..kh {
            for kx in 0..kw {
                let iy = (oy * g.stride[0] + ky * g.dilation[0]) as i64 - g.pads[0] as i64;
                let ix = (ox * g.stride[1] + kx * g.dilation[1]) as i64 - g.pads[1] as i64;
                let inside =
                    iy >= 0 && ix >= 0 && (iy as usize) < g.height && (ix as usize) < g.width;
                let xv = if inside {
                    x[c * g.height * g.width + iy as usize * g.width + ix as usize]
                } else {
                    zx
                };
                let wv = w[wbase + (ci * kh + ky) * kw + kx];
                s += (xv as i64 - zx as i64) * (wv as i64 - zw as i64);
            }
        }
    }
    s
}

fn geometry() -> impl Strategy<Value = Conv2d> {
    (
        1usize..=4,
        1usize..=9,
        1usize..=30,
        1usize..=3,
        1usize..=3,
        1usize..=2,
        1usize..=2,
        1usize..=2,
        prop::array::uniform4(0usize..=2),
    )
        .prop_map(
            |(channels, height, width, kh, kw, sh, sw, d, pads)| Conv2d {
                channels,
                height,
                width,
                kernel: [kh, kw],
                stride: [sh, sw],
                dilation: [d, d],
                pads,
            },
        )
        .prop_filter("has output", |g| g.output_size().is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// im2col (padding = zero point) followed by the INT8 GEMM equals a naive convolution.
    #[test]
    fn im2col_gemm_matches_naive(g in geometry(), oc in 1usize..=5, zx: u8, zw: i8, seed: u64) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 56) as u8 };
        let x: Vec<u8> = (0..g.channels * g.height * g.width).map(|_| next()).collect();
        let k = g.patch_len();
        let w: Vec<i8> = (0..oc * k).map(|_| next() as i8).collect();
        let [oh, ow] = g.output_size().unwrap();
        let mut cols = vec![0u8; oh * ow * k];
        im2col(&g, &x, zx, &mut cols).unwrap();
        let b = PackedI8::from_n_by_k(oc, k, &w, WeightZeroPoint::PerTensor(zw)).unwrap();
        let mut out = vec![0i32; oh * ow * oc];
        gemm(oh * ow, Activations::U8 { data: &cols, zero_point: zx }, k, &b, Output::I32(&mut out), oc).unwrap();
        for p in 0..oh * ow {
            for o in 0..oc {
                let want = naive(&g, &x, zx, &w, zw, 0..g.channels, o * k, p / ow, p % ow);
                prop_assert_eq!(out[p * oc + o] as i64, want);
            }
        }
    }

    /// The depthwise kernel: scalar twin equals the naive convolution (u8 and s8 activations),
    /// every SIMD kernel equals the scalar twin for i32, requantized u8/s8 and f32 outputs.
    #[test]
    fn depthwise_matches_naive_and_scalar(g in dw_geometry(), zx: u8, zw: i8, seed: u64, extreme in 0u8..3) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 56) as u8 };
        // Saturating values: all 255 / -128 (the largest products), or a random mix of extremes.
        let mut pick = |lo: u8, hi: u8| match extreme {
            0 => next(),
            1 => lo,
            _ => if next() & 1 == 0 { lo } else { hi },
        };
        let x: Vec<u8> = (0..g.channels * g.height * g.width).map(|_| pick(255, 0)).collect();
        let taps = g.kernel[0] * g.kernel[1];
        let w: Vec<i8> = (0..g.channels * taps).map(|_| pick(0x80, 0x7f) as i8).collect();
        let pw = PackedDepthwise::new(g.channels, g.kernel, &w, WeightZeroPoint::PerTensor(zw)).unwrap();
        let [oh, ow] = g.output_size().unwrap();
        let len = g.channels * oh * ow;
        // The same bytes read as s8 with the zero point moved by 128 are the same centred values.
        let xs: Vec<i8> = x.iter().map(|&v| (v ^ 0x80) as i8).collect();
        let acts = [
            Activations::U8 { data: &x, zero_point: zx },
            Activations::S8 { data: &xs, zero_point: (zx ^ 0x80) as i8 },
        ];
        let scales: Vec<f32> = (0..g.channels).map(|c| 1e-3 * (c + 1) as f32).collect();
        let bias: Vec<i32> = (0..g.channels as i32).map(|c| c * 37 - 50).collect();
        let fbias: Vec<f32> = (0..g.channels).map(|c| c as f32 * 0.25 - 0.5).collect();
        let run = |kernel: DwKernel, a: Activations<'_>| {
            let mut i = vec![0i32; len];
            depthwise_with(kernel, &g, a, &pw, Output::I32(&mut i)).unwrap();
            let mut u = vec![0u8; len];
            let r = Requantize { multiplier: Scale::PerChannel(&scales), bias: Some(&bias), zero_point: 7, relu: true };
            depthwise_with(kernel, &g, a, &pw, Output::U8(&mut u, r)).unwrap();
            let mut v = vec![0i8; len];
            let r = Requantize { multiplier: Scale::PerTensor(3e-3), bias: None, zero_point: -5, relu: false };
            depthwise_with(kernel, &g, a, &pw, Output::S8(&mut v, r)).unwrap();
            let mut f = vec![0f32; len];
            let d = Dequantize { scale: Scale::PerChannel(&scales), bias: Some(&fbias), relu: false };
            depthwise_with(kernel, &g, a, &pw, Output::F32(&mut f, d)).unwrap();
            (i, u, v, f.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        let want = run(DwKernel::Scalar, acts[0]);
        prop_assert_eq!(&run(DwKernel::Scalar, acts[1]), &want);
        for c in 0..g.channels {
            for p in 0..oh * ow {
                let n = naive(&g, &x, zx, &w, zw, c..c + 1, c * taps, p / ow, p % ow);
                prop_assert_eq!(want.0[c * oh * ow + p] as i64, n);
            }
        }
        #[allow(unused_mut)]
        let mut simd = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                simd.push(DwKernel::Avx2);
            }
            if crate::kernels::has_avx512_vnni() {
                simd.push(DwKernel::Avx512Vnni);
            }
        }
        #[cfg(target_arch = "aarch64")]
        simd.push(DwKernel::Neon);
        for kernel in simd {
            for a in acts {
                prop_assert_eq!(&run(kernel, a), &want, "{:?}", kernel);
            }
        }
    }
}

/// Depthwise geometries: odd channel counts and sizes, rows wider than one SIMD block, kernels
/// up to 5×5, strides 1–3 (3 runs the scalar definition) and dilations 1–2 in each direction.
fn dw_geometry() -> impl Strategy<Value = Conv2d> {
    (
        1usize..=5,
        1usize..=7,
        1usize..=70,
        1usize..=5,
        1usize..=5,
        1usize..=3,
        1usize..=3,
        1usize..=2,
        1usize..=2,
        prop::array::uniform4(0usize..=3),
    )
        .prop_map(
            |(channels, height, width, kh, kw, sh, sw, dh, dw, pads)| Conv2d {
                channels,
                height,
                width,
                kernel: [kh, kw],
                stride: [sh, sw],
                dilation: [dh, dw],
                pads,
            },
        )
        .prop_filter("has output", |g| g.output_size().is_ok())
}

/// Geometries without output and mismatched buffers are errors.
#[test]
fn rejects_bad_geometry() {
    let g = Conv2d {
        channels: 1,
        height: 2,
        width: 2,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [0; 4],
    };
    assert!(matches!(g.output_size(), Err(I8Error::Geometry { .. })));
    let g = Conv2d {
        stride: [0, 1],
        ..g
    };
    assert!(matches!(g.output_size(), Err(I8Error::Geometry { .. })));
    let g = Conv2d {
        channels: 1,
        height: 3,
        width: 3,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [0; 4],
    };
    assert!(matches!(
        im2col(&g, &[0u8; 8], 0, &mut [0u8; 9]),
        Err(I8Error::Length { .. })
    ));
    let pw = PackedDepthwise::new(2, [3, 3], &[0; 18], WeightZeroPoint::None).unwrap();
    let x = [0u8; 9];
    let r = depthwise(
        &g,
        Activations::U8 {
            data: &x,
            zero_point: 0,
        },
        &pw,
        Output::I32(&mut [0; 1]),
    );
    assert!(matches!(r, Err(I8Error::Geometry { .. })));
}
