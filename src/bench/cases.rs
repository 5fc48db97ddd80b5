//! The cases of one shape: quench's kernels and the ONNX Runtime models they are compared with,
//! each owning its operands so that a call only computes.

use super::{models, BenchError, Case, PeakKind, Precision, Shape};
use crate::graph::Graph;
use crate::kernels::{b1, f32 as kf32, i8 as ki8, q4};
use crate::measure::rng::SplitMix64;
use crate::runtime::ort::{OrtOptions, OrtRuntime};
use crate::runtime::Runtime;
use crate::tensor::{Tensor, TensorData};

/// Activation zero point of the INT8 cases (not 0, so the zero-point folding is timed too).
const ZA: u8 = 131;
/// 4-bit block size, as the MatMulNBits comparison uses.
const BLOCK: usize = 32;

/// Uniform values in `[-1, 1)`.
fn uniform(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect()
}

fn bytes(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn kernel_error(case: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Kernel {
        case: case.to_string(),
        message: e.to_string(),
    }
}

/// An ONNX Runtime case: `graph` run on the one input `a`.
fn ort_case(
    name: &str,
    graph: &Graph,
    a: Tensor,
    threads: usize,
    precision: Precision,
    weight_bytes: usize,
    peak: PeakKind,
) -> Result<(Case<'static>, String), BenchError> {
    let case = name.to_string();
    let bytes = crate::onnx::to_bytes(graph).map_err(|source| BenchError::Onnx {
        case: case.clone(),
        source,
    })?;
    let mut rt = OrtRuntime::from_bytes(&bytes, &OrtOptions::new(threads)).map_err(|source| {
        BenchError::Runtime {
            case: case.clone(),
            source,
        }
    })?;
    let version = rt.version().to_string();
    let op = graph
        .nodes
        .first()
        .map_or(String::new(), |n| n.op_type.clone());
    let call = move || {
        rt.run(&[("A", &a)])
            .map(drop)
            .map_err(|source| BenchError::Runtime {
                case: case.clone(),
                source,
            })
    };
    Ok((
        Case {
            op,
            precision,
            runtime: "ort",
            kernel: format!("ort {name}"),
            weight_bytes,
            peak,
            call: Box::new(call),
        },
        version,
    ))
}

/// Every case of `shape`, and ONNX Runtime's version.
pub(super) fn build(
    shape: Shape,
    threads: usize,
) -> Result<(Vec<Case<'static>>, String), BenchError> {
    let Shape { m, n, k, .. } = shape;
    let mut rng = SplitMix64::new(0x5eed ^ (m * 31 + n * 7 + k) as u64);
    let mut cases = Vec::new();
    let a = uniform(&mut rng, m * k);
    let a_tensor = Tensor::from_f32(vec![m, k], a.clone())?;

    // FP32: MatMul.
    let w = uniform(&mut rng, k * n);
    let packed = kf32::PackedB::from_k_by_n(k, n, &w);
    let (a32, mut c32) = (a.clone(), vec![0f32; m * n]);
    cases.push(Case {
        op: "MatMul".into(),
        precision: Precision::Fp32,
        runtime: "quench",
        kernel: kf32::gemm_kernel_name(),
        weight_bytes: 4 * k * n,
        peak: PeakKind::Fp32,
        call: Box::new(move || {
            let epi = kf32::Epilogue {
                bias: None,
                act: kf32::Activation::None,
            };
            kf32::gemm(m, &a32, k, &packed, epi, &mut c32, n);
            Ok(())
        }),
    });
    let graph = models::matmul_f32(m, n, k, w)?;
    let (case, version) = ort_case(
        "MatMul",
        &graph,
        a_tensor.clone(),
        threads,
        Precision::Fp32,
        4 * k * n,
        PeakKind::Fp32,
    )?;
    drop(graph);
    cases.push(case);

    // INT8: MatMulInteger, u8 activations with a zero point × symmetric s8 weights.
    let a8 = bytes(&mut rng, m * k);
    let w8: Vec<i8> = bytes(&mut rng, k * n)
        .into_iter()
        .map(|b| b as i8)
        .collect();
    let packed = ki8::PackedI8::from_k_by_n(k, n, &w8, ki8::WeightZeroPoint::None)
        .map_err(|e| kernel_error("int8 pack", e))?;
    let mut c8 = vec![0i32; m * n];
    let a8_tensor = Tensor::new(vec![m, k], TensorData::U8(a8.clone()))?;
    cases.push(Case {
        op: "MatMulInteger".into(),
        precision: Precision::Int8,
        runtime: "quench",
        kernel: if m == 1 {
            ki8::gemv_kernel_name()
        } else {
            ki8::gemm_kernel_name()
        },
        weight_bytes: k * n,
        peak: PeakKind::Int8Quench,
        call: Box::new(move || {
            let acts = ki8::Activations::U8 {
                data: &a8,
                zero_point: ZA,
            };
            ki8::gemm(m, acts, k, &packed, ki8::Output::I32(&mut c8), n)
                .map_err(|e| kernel_error("int8 gemm", e))
        }),
    });
    let graph = models::matmul_integer(m, n, k, w8, ZA)?;
    cases.push(
        ort_case(
            "MatMulInteger",
            &graph,
            a8_tensor,
            threads,
            Precision::Int8,
            k * n,
            PeakKind::Int8Best,
        )?
        .0,
    );
    drop(graph);

    // 4-bit: MatMulNBits, symmetric blocks of 32, quench's two modes and ORT's two accuracy levels.
    let wq = uniform(&mut rng, n * k);
    let packed = q4::PackedQ4::quantize(n, k, BLOCK, &wq, false)
        .map_err(|e| kernel_error("4-bit quantize", e))?;
    drop(wq);
    let q4_bytes = packed.b().len() + 4 * packed.scales().len();
    let packed = std::sync::Arc::new(packed);
    for (mode, peak, tag) in [
        (q4::Q4Mode::F32, PeakKind::Fp32, "f32"),
        (q4::Q4Mode::Int8, PeakKind::Int8Quench, "int8"),
    ] {
        let (aq, p, mut cq) = (a.clone(), packed.clone(), vec![0f32; m * n]);
        cases.push(Case {
            op: format!("MatMulNBits ({tag} compute)"),
            precision: Precision::Q4,
            runtime: "quench",
            kernel: q4::kernel_name(m, mode),
            weight_bytes: q4_bytes,
            peak,
            call: Box::new(move || {
                q4::gemm(m, &aq, k, &p, mode, None, &mut cq, n)
                    .map_err(|e| kernel_error("4-bit gemm", e))
            }),
        });
    }
    for (level, peak) in [(0, PeakKind::Fp32), (4, PeakKind::Int8Best)] {
        let graph = models::matmul_nbits(
            m,
            n,
            k,
            BLOCK,
            packed.b().to_vec(),
            packed.scales().to_vec(),
            level,
        )?;
        let name = format!("MatMulNBits accuracy_level={level}");
        cases.push(
            ort_case(
                &name,
                &graph,
                a_tensor.clone(),
                threads,
                Precision::Q4,
                q4_bytes,
                peak,
            )?
            .0,
        );
    }

    // Binary: XNOR-popcount, activations binarized in the call (as a layer does).
    let wb = uniform(&mut rng, n * k);
    let packed =
        b1::PackedBinary::from_n_by_k(n, k, &wb, None).map_err(|e| kernel_error("b1 pack", e))?;
    drop(wb);
    let mut cb = vec![0i32; m * n];
    cases.push(Case {
        op: "binary GEMM (XNOR-popcount)".into(),
        precision: Precision::Binary,
        runtime: "quench",
        kernel: b1::binary_kernel_name(),
        weight_bytes: n * k.div_ceil(8),
        peak: PeakKind::Binary,
        call: Box::new(move || {
            let acts = b1::BinaryActivations::pack(m, k, &a, k, true)
                .map_err(|e| kernel_error("b1 activations", e))?;
            b1::gemm_binary(&acts, &packed, b1::Output::Dots(&mut cb), n)
                .map_err(|e| kernel_error("b1 gemm", e))
        }),
    });
    Ok((cases, version))
}
