//! Convolution tests: im2col + GEMM and the depthwise kernel against a naive convolution whose
//! padding holds the activation zero point; depthwise SIMD against its scalar twin; the GEMM on
//! patches read in place from a padded HWC image against the scalar GEMM on the same patches
//! written out, and against naive math.

use super::depthwise::{depthwise_with, DwKernel};
use super::hwc::gemm_hwc_with;
use super::tests::all_kernels;
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

/// Upper bounds of a generated convolution geometry: channels, height and width from 1, kernel
/// sides, strides and dilations (height, width) from 1, each padding from 0.
struct Space {
    channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    dilation: [usize; 2],
    pad: usize,
}

/// im2col + GEMM: small images, kernels up to 3×3, strides and dilations up to 2.
const IM2COL: Space = Space {
    channels: 4,
    height: 9,
    width: 30,
    kernel: 3,
    stride: 2,
    dilation: [2, 2],
    pad: 2,
};

/// Depthwise: odd channel counts and sizes, rows wider than one SIMD block, kernels up to 5×5,
/// strides 1–3 (3 runs the scalar definition) and dilations 1–2 in each direction.
const DEPTHWISE: Space = Space {
    channels: 5,
    height: 7,
    width: 70,
    kernel: 5,
    stride: 3,
    dilation: [2, 2],
    pad: 3,
};

/// Patches read in place from a padded HWC image: unit width dilation, up to 9 channels.
const HWC: Space = Space {
    channels: 9,
    height: 8,
    width: 30,
    kernel: 3,
    stride: 2,
    dilation: [2, 1],
    pad: 2,
};

/// Convolution geometries inside `space` that have an output.
fn geometry(space: Space) -> impl Strategy<Value = Conv2d> {
    let sides = |max: usize| [1..=max, 1..=max];
    (
        1..=space.channels,
        1..=space.height,
        1..=space.width,
        sides(space.kernel),
        sides(space.stride),
        [1..=space.dilation[0], 1..=space.dilation[1]],
        prop::array::uniform4(0..=space.pad),
    )
        .prop_map(
            |(channels, height, width, kernel, stride, dilation, pads)| Conv2d {
                channels,
                height,
                width,
                kernel,
                stride,
                dilation,
                pads,
            },
        )
        .prop_filter("has output", |g| g.output_size().is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// im2col (padding = zero point) followed by the INT8 GEMM equals a naive convolution.
    #[test]
    fn im2col_gemm_matches_naive(g in geometry(IM2COL), oc in 1usize..=5, zx: u8, zw: i8, seed: u64) {
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
    fn depthwise_matches_naive_and_scalar(g in geometry(DEPTHWISE), zx: u8, zw: i8, seed: u64, extreme in 0u8..3) {
        check_depthwise(&g, zx, zw, seed, extreme)?;
    }
}

/// The depthwise kernel on `g` with zero points `zx`, `zw` and pseudo-random values from `seed`
/// (`extreme` 1: all saturating, 2: a mix of extremes): the scalar twin equals the naive
/// convolution (u8 and s8 activations), every SIMD kernel equals the scalar twin for i32,
/// requantized u8/s8 and f32 outputs.
fn check_depthwise(
    g: &Conv2d,
    zx: u8,
    zw: i8,
    seed: u64,
    extreme: u8,
) -> Result<(), TestCaseError> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 56) as u8
    };
    // Saturating values: all 255 / -128 (the largest products), or a random mix of extremes.
    let mut pick = |lo: u8, hi: u8| match extreme {
        0 => next(),
        1 => lo,
        _ => {
            if next() & 1 == 0 {
                lo
            } else {
                hi
            }
        }
    };
    let x: Vec<u8> = (0..g.channels * g.height * g.width)
        .map(|_| pick(255, 0))
        .collect();
    let taps = g.kernel[0] * g.kernel[1];
    let w: Vec<i8> = (0..g.channels * taps)
        .map(|_| pick(0x80, 0x7f) as i8)
        .collect();
    let pw =
        PackedDepthwise::new(g.channels, g.kernel, &w, WeightZeroPoint::PerTensor(zw)).unwrap();
    let [oh, ow] = g.output_size().unwrap();
    let len = g.channels * oh * ow;
    // The same bytes read as s8 with the zero point moved by 128 are the same centred values.
    let xs: Vec<i8> = x.iter().map(|&v| (v ^ 0x80) as i8).collect();
    let acts = [
        Activations::U8 {
            data: &x,
            zero_point: zx,
        },
        Activations::S8 {
            data: &xs,
            zero_point: (zx ^ 0x80) as i8,
        },
    ];
    let scales: Vec<f32> = (0..g.channels).map(|c| 1e-3 * (c + 1) as f32).collect();
    let bias: Vec<i32> = (0..g.channels as i32).map(|c| c * 37 - 50).collect();
    let fbias: Vec<f32> = (0..g.channels).map(|c| c as f32 * 0.25 - 0.5).collect();
    let run = |kernel: DwKernel, a: Activations<'_>| {
        let mut i = vec![0i32; len];
        depthwise_with(kernel, g, a, &pw, Output::I32(&mut i)).unwrap();
        let mut u = vec![0u8; len];
        let r = Requantize {
            multiplier: Scale::PerChannel(&scales),
            bias: Some(&bias),
            zero_point: 7,
            relu: true,
        };
        depthwise_with(kernel, g, a, &pw, Output::U8(&mut u, r)).unwrap();
        let mut v = vec![0i8; len];
        let r = Requantize {
            multiplier: Scale::PerTensor(3e-3),
            bias: None,
            zero_point: -5,
            relu: false,
        };
        depthwise_with(kernel, g, a, &pw, Output::S8(&mut v, r)).unwrap();
        let mut f = vec![0f32; len];
        let d = Dequantize {
            scale: Scale::PerChannel(&scales),
            bias: Some(&fbias),
            relu: false,
        };
        depthwise_with(kernel, g, a, &pw, Output::F32(&mut f, d)).unwrap();
        (i, u, v, f.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    let want = run(DwKernel::Scalar, acts[0]);
    prop_assert_eq!(&run(DwKernel::Scalar, acts[1]), &want);
    for c in 0..g.channels {
        for p in 0..oh * ow {
            let n = naive(g, &x, zx, &w, zw, c..c + 1, c * taps, p / ow, p % ow);
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
    Ok(())
}

/// The case proptest once saved for `depthwise_matches_naive_and_scalar`: a one-pixel image with
/// width dilation 2, whose row is narrower than the dilation, so it has no interior pairs (the
/// SIMD row loop once sliced past such a row).
#[test]
fn depthwise_on_a_row_narrower_than_the_width_dilation() {
    let g = Conv2d {
        channels: 1,
        height: 1,
        width: 1,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 2],
        pads: [0; 4],
    };
    check_depthwise(&g, 0, 0, 0, 0).unwrap();
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

/// A padded HWC convolution problem: the geometry (unit width dilation), the padded image's
/// bytes (padding = zero point), weights `[OC][kh][kw][C]` and per-channel output parameters.
#[derive(Debug, Clone)]
struct HwcCase {
    g: Conv2d,
    oc: usize,
    image: Vec<u8>,
    zx: u8,
    w: Vec<i8>,
    zw: Option<Vec<i8>>,
    scales: Vec<f32>,
    bias_i: Vec<i32>,
    bias_f: Vec<f32>,
}

impl HwcCase {
    /// The patches written out as an `OH·OW × K` matrix (kernel row, kernel column, channel).
    fn patches(&self) -> Vec<u8> {
        let g = &self.g;
        let [oh, ow] = g.output_size().unwrap();
        let [_, wp] = g.padded();
        let mut out = Vec::new();
        for p in 0..oh * ow {
            let (oy, ox) = (p / ow, p % ow);
            for ky in 0..g.kernel[0] {
                for kx in 0..g.kernel[1] {
                    let (iy, ix) = (oy * g.stride[0] + ky * g.dilation[0], ox * g.stride[1] + kx);
                    let at = (iy * wp + ix) * g.channels;
                    out.extend_from_slice(&self.image[at..at + g.channels]);
                }
            }
        }
        out
    }
}

fn hwc_case() -> impl Strategy<Value = HwcCase> {
    (geometry(HWC), 1usize..=37).prop_flat_map(|(g, oc)| {
        let [hp, wp] = g.padded();
        let k = g.patch_len();
        let extremes = prop::sample::select(vec![0u8, 255, 128, 127]);
        (
            prop_oneof![
                prop::collection::vec(any::<u8>(), hp * wp * g.channels),
                extremes.prop_map(move |v| vec![v; hp * wp * g.channels]),
            ],
            prop_oneof![Just(0u8), Just(128), Just(255), any::<u8>()],
            prop_oneof![
                prop::collection::vec(any::<i8>(), oc * k),
                prop::sample::select(vec![-128i8, 127]).prop_map(move |v| vec![v; oc * k]),
            ],
            prop::option::of(prop::collection::vec(any::<i8>(), oc)),
            prop::collection::vec(1e-6f32..1e-2, oc),
            prop::collection::vec(-100_000i32..100_000, oc),
            prop::collection::vec(-10f32..10.0, oc),
        )
            .prop_map(move |(mut image, zx, w, zw, scales, bias_i, bias_f)| {
                // The padding holds the zero point, as the engine writes it.
                let [h, wd, c] = [g.height, g.width, g.channels];
                for (i, v) in image.iter_mut().enumerate() {
                    let (y, x) = (i / c / wp, i / c % wp);
                    if y < g.pads[0] || y >= g.pads[0] + h || x < g.pads[1] || x >= g.pads[1] + wd {
                        *v = zx;
                    }
                }
                HwcCase {
                    g,
                    oc,
                    image,
                    zx,
                    w,
                    zw,
                    scales,
                    bias_i,
                    bias_f,
                }
            })
    })
}

/// Every output kind of `case` with u8 or s8 activations: through [`gemm_hwc_with`] when
/// `kernel` is given, else through the scalar GEMM on the written-out patches.
fn hwc_outputs(
    case: &HwcCase,
    signed: bool,
    relu: bool,
    kernel: Option<Kernel>,
) -> (Vec<i32>, Vec<u32>, Vec<u8>, Vec<i8>) {
    let g = &case.g;
    let [oh, ow] = g.output_size().unwrap();
    let (m, n, k) = (oh * ow, case.oc, g.patch_len());
    let ldc = n + 3;
    let len = (m - 1) * ldc + n;
    let zp = match &case.zw {
        Some(z) => WeightZeroPoint::PerChannel(z),
        None => WeightZeroPoint::None,
    };
    let b = PackedI8::from_n_by_k(n, k, &case.w, zp).unwrap();
    let patches = case.patches();
    fn acts(data: &[u8], signed: bool, zx: u8) -> Activations<'_> {
        if signed {
            Activations::S8 {
                data: bytemuck::cast_slice(data),
                zero_point: zx as i8,
            }
        } else {
            Activations::U8 {
                data,
                zero_point: zx,
            }
        }
    }
    let go = |out: Output<'_>| match kernel {
        Some(kernel) => {
            let a = acts(&case.image, signed, case.zx);
            gemm_hwc_with(kernel, g, a, &b, out, ldc).unwrap()
        }
        None => {
            let a = acts(&patches, signed, case.zx);
            gemm_with(Kernel::Scalar, m, a, k, &b, out, ldc).unwrap()
        }
    };
    let mut i = vec![0i32; len];
    go(Output::I32(&mut i));
    let mut f = vec![0f32; len];
    let d = Dequantize {
        scale: Scale::PerChannel(&case.scales),
        bias: Some(&case.bias_f),
        relu,
    };
    go(Output::F32(&mut f, d));
    let mut u = vec![0u8; len];
    let r = Requantize {
        multiplier: Scale::PerChannel(&case.scales),
        bias: Some(&case.bias_i),
        zero_point: case.zx as i32,
        relu,
    };
    go(Output::U8(&mut u, r));
    let mut s = vec![0i8; len];
    let r = Requantize {
        multiplier: Scale::PerTensor(case.scales[0]),
        bias: None,
        zero_point: case.zx as i8 as i32,
        relu,
    };
    go(Output::S8(&mut s, r));
    (i, f.iter().map(|x| x.to_bits()).collect(), u, s)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Patches read in place from a padded HWC image give, on every kernel, the same bits as the
    /// scalar GEMM on the patches written out; its i32 sums equal naive math.
    #[test]
    fn hwc_gemm_matches_scalar_and_naive(c in hwc_case(), signed: bool, relu: bool) {
        let want = hwc_outputs(&c, signed, relu, None);
        let g = &c.g;
        let [oh, ow] = g.output_size().unwrap();
        let [hp, wp] = g.padded();
        let k = g.patch_len();
        let value = |x: u8| if signed { x as i8 as i64 } else { x as i64 };
        let zx = value(c.zx);
        for p in 0..oh * ow {
            let (oy, ox) = (p / ow, p % ow);
            for o in 0..c.oc {
                let zw = c.zw.as_ref().map_or(0, |z| z[o] as i64);
                let mut s = 0i64;
                for ky in 0..g.kernel[0] {
                    for kx in 0..g.kernel[1] {
                        let (iy, ix) = (oy * g.stride[0] + ky * g.dilation[0], ox * g.stride[1] + kx);
                        prop_assert!(iy < hp && ix < wp);
                        for ch in 0..g.channels {
                            let x = value(c.image[(iy * wp + ix) * g.channels + ch]);
                            let w = c.w[o * k + (ky * g.kernel[1] + kx) * g.channels + ch] as i64;
                            s += (x - zx) * (w - zw);
                        }
                    }
                }
                prop_assert_eq!(want.0[p * (c.oc + 3) + o] as i64, s);
            }
        }
        for kernel in all_kernels() {
            let got = hwc_outputs(&c, signed, relu, Some(kernel));
            prop_assert_eq!(&got.0, &want.0, "{:?} i32", kernel);
            prop_assert_eq!(&got.1, &want.1, "{:?} f32", kernel);
            prop_assert_eq!(&got.2, &want.2, "{:?} u8", kernel);
            prop_assert_eq!(&got.3, &want.3, "{:?} s8", kernel);
        }
    }
}

/// A padded HWC image of the wrong length, weights of the wrong K and a width dilation are
/// errors naming the problem.
#[test]
fn hwc_gemm_rejects_bad_inputs() {
    let g = Conv2d {
        channels: 2,
        height: 3,
        width: 3,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [1; 4],
    };
    let b = PackedI8::from_n_by_k(4, 18, &[1; 72], WeightZeroPoint::None).unwrap();
    let image = vec![0u8; 5 * 5 * 2];
    fn acts(data: &[u8]) -> Activations<'_> {
        Activations::U8 {
            data,
            zero_point: 0,
        }
    }
    let mut out = vec![0i32; 9 * 4];
    assert!(gemm_hwc(&g, acts(&image), &b, Output::I32(&mut out), 4).is_ok());
    assert!(matches!(
        gemm_hwc(&g, acts(&image[1..]), &b, Output::I32(&mut out), 4),
        Err(I8Error::Length {
            what: "padded HWC image",
            ..
        })
    ));
    let b17 = PackedI8::from_n_by_k(4, 17, &[1; 68], WeightZeroPoint::None).unwrap();
    assert!(matches!(
        gemm_hwc(&g, acts(&image), &b17, Output::I32(&mut out), 4),
        Err(I8Error::Length { .. })
    ));
    let dilated = Conv2d {
        dilation: [1, 2],
        pads: [2; 4],
        ..g
    };
    let image = vec![0u8; 7 * 7 * 2];
    assert!(matches!(
        gemm_hwc(&dilated, acts(&image), &b, Output::I32(&mut out), 4),
        Err(I8Error::Geometry { .. })
    ));
    assert!(matches!(
        gemm_hwc(&g, acts(&image[..50]), &b, Output::I32(&mut out[..35]), 4),
        Err(I8Error::Length { what: "output", .. })
    ));
}
