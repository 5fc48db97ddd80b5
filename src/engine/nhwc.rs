//! Keeps u8/i8 activations pixel-major (NHWC) between fused integer layers.
//!
//! The INT8 convolution computes one output pixel's channels per GEMM row, so its natural result
//! is NHWC, and its patches are cheapest to gather from an NHWC image. ONNX values are NCHW, so
//! each integer Conv would transpose its input to NHWC and its output back. This pass finds the
//! quantized values that only integer layers read and marks their producers and consumers to
//! keep them NHWC in the arena instead:
//!
//! * a fused integer Conv ([`qdq::QCONV`], group 1, requantized output) writes NHWC
//!   ([`NHWC_OUT`]); a group-1 integer Conv with unit width dilation reads NHWC ([`NHWC_IN`]);
//! * an integer MaxPool reads and writes NHWC ([`NHWC_POOL`]);
//! * a Flatten/Reshape to `[N, C·H·W]` feeding only fused integer Gemms passes the NHWC bytes
//!   through, and each Gemm takes its weight rows in HWC order ([`HWC_GEMM`] holds `[C, H, W]`).
//!
//! A value stays NCHW when anything else reads it (a DequantizeLinear, a depthwise Conv, a graph
//! output or a calibration tap), so every value the caller can see keeps the ONNX layout and the
//! results are the same bits as without the pass.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::graph::qdq::{self, QInputs};
use crate::graph::shape::ValueType;
use crate::graph::{Attr, Graph, Node};

use super::ops::quantized::QType;

/// What a kernel name carries when the kernel works on NHWC values this pass chose: the same
/// arithmetic as the kernel of the name before it, in the other layout.
pub const LAYOUT_SUFFIX: &str = " (nhwc)";

/// `kernel` without [`LAYOUT_SUFFIX`]: two plans whose kernels differ only in activation layout
/// compute the same bits (e.g. when exposing values as outputs keeps them NCHW).
pub fn without_layout(kernel: &str) -> &str {
    kernel.strip_suffix(LAYOUT_SUFFIX).unwrap_or(kernel)
}

/// Attribute of a fused integer Conv whose input 0 is stored NHWC.
pub const NHWC_IN: &str = "quench_nhwc_in";
/// Attribute of a fused integer Conv that writes its output NHWC.
pub const NHWC_OUT: &str = "quench_nhwc_out";
/// Attribute of an integer MaxPool that reads and writes NHWC.
pub const NHWC_POOL: &str = "quench_nhwc";
/// Attribute of a fused integer Gemm whose input rows are NHWC images: `[C, H, W]`.
pub const HWC_GEMM: &str = "quench_hwc";

fn standard(n: &Node) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

fn is_qconv(n: &Node) -> bool {
    n.domain == qdq::DOMAIN && n.op_type == qdq::QCONV
}

/// A fused Conv of group 1 (the patches + GEMM path).
fn group1(n: &Node) -> bool {
    is_qconv(n) && n.attr_int("group", 1).is_ok_and(|g| g == 1)
}

/// A group-1 fused Conv that can gather its patches from an NHWC input (unit width dilation).
fn reads_nhwc(n: &Node) -> bool {
    group1(n)
        && n.attr_ints("dilations")
            .is_ok_and(|d| d.is_none_or(|d| d.get(1).is_none_or(|&v| v == 1)))
}

fn is_alias(n: &Node) -> bool {
    standard(n) && matches!(n.op_type.as_str(), "Flatten" | "Reshape")
}

/// Marks the NHWC values of `g` (see the module docs); `types` are the inferred value types.
pub fn mark_nhwc(g: &mut Graph, types: &BTreeMap<String, ValueType>) {
    let quantized = |v: &str| types.get(v).is_some_and(|t| QType::of(t.dtype).is_some());
    let four_d = |v: &str| types.get(v).is_some_and(|t| t.shape.len() == 4);
    let mut consumers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (j, n) in g.nodes.iter().enumerate() {
        for (p, v) in n.inputs.iter().enumerate() {
            consumers.entry(v.as_str()).or_default().push((j, p));
        }
    }
    let pool_of = |n: &Node| {
        standard(n) && n.op_type == "MaxPool" && n.outputs.len() == 1 && quantized(&n.inputs[0])
    };
    // Candidates: NHWC-capable producers of 4-D quantized values, with the producing node.
    let mut cand: HashMap<String, usize> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let Some(out) = n.outputs.first() else {
            continue;
        };
        let requantized = group1(n) && n.input(QInputs::LAYOUT.y_scale).is_some();
        if (requantized || pool_of(n)) && quantized(out) && four_d(out) {
            cand.insert(out.clone(), i);
        }
    }
    // The Gemms reading value `v` through a Flatten/Reshape to `[N, C·H·W]`, or None when
    // something else reads the reshaped value.
    let gemm_readers = |v: &str| -> Option<Vec<usize>> {
        let shape = &types.get(v)?.shape;
        let mut gemms = Vec::new();
        for &(j, p) in consumers.get(v).map_or(&[][..], Vec::as_slice) {
            let a = &g.nodes[j];
            let o = a.outputs.first()?;
            let flat = &types.get(o)?.shape;
            if !is_alias(a) || p != 0 || g.is_output(o) {
                return None;
            }
            if flat.len() != 2
                || flat[0] != shape[0]
                || flat[1] != shape[1..].iter().product::<usize>()
            {
                return None;
            }
            for &(k, q) in consumers.get(o.as_str()).map_or(&[][..], Vec::as_slice) {
                let n = &g.nodes[k];
                if !(n.domain == qdq::DOMAIN && n.op_type == qdq::QGEMM && q == 0) {
                    return None;
                }
                gemms.push(k);
            }
        }
        Some(gemms)
    };
    loop {
        let names: HashSet<String> = cand.keys().cloned().collect();
        let mut drop = Vec::new();
        for (v, &i) in &cand {
            let producer = &g.nodes[i];
            let mut ok =
                !g.is_output(v) && (is_qconv(producer) || names.contains(&producer.inputs[0]));
            let mut via_alias = false;
            for &(j, p) in consumers.get(v.as_str()).map_or(&[][..], Vec::as_slice) {
                let n = &g.nodes[j];
                ok &= match () {
                    _ if reads_nhwc(n) => p == 0,
                    _ if pool_of(n) => p == 0 && names.contains(&n.outputs[0]),
                    _ if is_alias(n) => {
                        via_alias = true;
                        true
                    }
                    _ => false,
                };
            }
            if via_alias {
                ok &= gemm_readers(v).is_some();
            }
            if !ok {
                drop.push(v.clone());
            }
        }
        if drop.is_empty() {
            break;
        }
        for v in drop {
            cand.remove(&v);
        }
    }
    let mut gemm_attrs = Vec::new();
    for v in cand.keys() {
        let shape = &types[v].shape;
        let chw: Vec<i64> = shape[1..].iter().map(|&d| d as i64).collect();
        for k in gemm_readers(v).unwrap_or_default() {
            gemm_attrs.push((k, chw.clone()));
        }
    }
    let mark = |n: &mut Node, key: &str| {
        n.attrs.insert(key.into(), Attr::Int(1));
    };
    for n in &mut g.nodes {
        let ins = n.inputs.first().is_some_and(|x| cand.contains_key(x));
        let outs = n.outputs.first().is_some_and(|x| cand.contains_key(x));
        if is_qconv(n) {
            if ins {
                mark(n, NHWC_IN);
            }
            if outs {
                mark(n, NHWC_OUT);
            }
        } else if outs {
            mark(n, NHWC_POOL);
        }
    }
    for (k, chw) in gemm_attrs {
        g.nodes[k].attrs.insert(HWC_GEMM.into(), Attr::Ints(chw));
    }
}
