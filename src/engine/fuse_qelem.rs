//! Folds the f32 round trips between quantized layers into integer nodes
//! ([`crate::engine::ops::qelem`]), after the QDQ layers are fused and hard-swish is one node.
//!
//! A QDQ model computes what lies between its integer layers in f32: `DequantizeLinear` (DQ),
//! the op, `QuantizeLinear` (Q), each step writing a 4-byte value per element. Three patterns
//! are rewritten, each into a node whose results are the same bits as the steps it replaces:
//! * `DQ(x) → single-input elementwise f32 ops → Q` on a per-tensor u8/i8 `x` (HardSwish,
//!   HardSigmoid, Relu, Clip, Sigmoid, Tanh, Erf, Gelu, Sqrt, arithmetic with a scalar
//!   constant; or none, a requantization) into a [`qdq::QLOOKUP`] whose 256-entry table is
//!   computed at plan time by the engine's own kernels on the 256 possible inputs;
//! * `Add/Mul(a, b) → Q` where each operand is a per-tensor DQ of a run-time value or an f32
//!   value, at least one quantized, and `b` has `a`'s shape or one value per leading plane (a
//!   residual add, a squeeze-excite scale) into [`qdq::QADD`]/[`qdq::QMUL`];
//! * `DQ(x) → GlobalAveragePool` into [`qdq::QGLOBAL_AVERAGE_POOL`].
//!
//! Values the caller can see (graph outputs, calibration taps) are never fused away: a chain
//! whose inner value is an output is left as it is. A DQ whose output other nodes still read
//! stays for them; one left unread is removed.

use std::collections::BTreeMap;

use crate::graph::qdq::{self, activation_dq, is_standard, per_tensor, QBinaryInputs};
use crate::graph::shape::ValueType;
use crate::graph::{Attr, Graph, Node};
use crate::tensor::{DataType, Tensor, TensorData};

use super::ops::eval_node;
use super::ops::qelem::{plane_outer, Mapped};

/// Single-input f32 operators a lookup table can absorb (with constant extra inputs).
const UNARY: [&str; 9] = [
    "Relu",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Sqrt",
    "HardSwish",
    "HardSigmoid",
    "Gelu",
    "Clip",
];
/// Arithmetic a lookup table can absorb when the other operand is a scalar constant.
const SCALAR_ARITH: [&str; 5] = ["Add", "Sub", "Mul", "Div", "Pow"];

/// Rewrites the patterns of the module docs in `g`, whose value types are `types`; returns how
/// many were rewritten. Types must be inferred again afterwards.
pub fn fuse_quantized_elementwise(g: &mut Graph, types: &BTreeMap<String, ValueType>) -> usize {
    let mut count = 0;
    let mut qi = 0;
    while qi < g.nodes.len() {
        if let Some(removed) = lookup(g, types, qi) {
            qi -= removed;
            count += 1;
        }
        qi += 1;
    }
    let mut i = 0;
    while i < g.nodes.len() {
        if global_average(g, types, i) || binary(g, types, i) {
            count += 1;
        }
        i += 1;
    }
    if count > 0 {
        remove_unread(g);
    }
    count
}

fn producer(g: &Graph, name: &str) -> Option<usize> {
    g.nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == name))
}

fn readers(g: &Graph, name: &str) -> usize {
    g.nodes
        .iter()
        .filter(|n| n.inputs.iter().any(|i| i == name))
        .count()
}

/// A value only one node reads and the caller cannot see.
fn inner_value(g: &Graph, name: &str) -> bool {
    !g.is_output(name) && readers(g, name) == 1
}

/// The run-time input of an elementwise node a table can absorb, when `node` is one and its
/// output has the shape of that input.
fn table_step<'g>(
    g: &'g Graph,
    types: &BTreeMap<String, ValueType>,
    node: &'g Node,
) -> Option<&'g str> {
    let standard = node.domain.is_empty() || node.domain == "ai.onnx";
    if !standard || node.outputs.len() != 1 {
        return None;
    }
    let runtime: Vec<&str> = node
        .inputs
        .iter()
        .map(String::as_str)
        .filter(|i| !i.is_empty() && !g.initializers.contains_key(*i))
        .collect();
    let [x] = runtime[..] else { return None };
    let op = node.op_type.as_str();
    let ok = if UNARY.contains(&op) {
        node.input(0) == Some(x)
    } else if SCALAR_ARITH.contains(&op) {
        node.inputs.len() == 2
            && node.inputs.iter().all(|i| {
                i == x
                    || g.initializers
                        .get(i)
                        .is_some_and(|t| t.len() == 1 && t.dtype() == DataType::F32)
            })
    } else {
        false
    };
    let same = types.get(x).zip(types.get(&node.outputs[0]));
    (ok && same.is_some_and(|(a, b)| a.dtype == DataType::F32 && a == b)).then_some(x)
}

/// `DQ → table steps → Q` ending at the Q node `qi`: rewrites it into a lookup. Returns the
/// number of nodes removed before `qi` (the lookup's new index is `qi` minus that), or `None`
/// when there is no such chain.
fn lookup(g: &mut Graph, types: &BTreeMap<String, ValueType>, qi: usize) -> Option<usize> {
    let q = &g.nodes[qi];
    if !is_standard(q, "QuantizeLinear") || q.outputs.len() != 1 {
        return None;
    }
    per_tensor(g, q)?;
    let (dq, chain) = chain_from_dq(g, types, q.input(0)?, false)?;
    let table = table_of(g, dq, &chain, Some(qi))?;
    let q = &g.nodes[qi];
    let out = q.outputs[0].clone();
    let mut table_name = format!("{out}::lut");
    while g.initializers.contains_key(&table_name) {
        table_name.push('_');
    }
    let name = chain
        .first()
        .map_or_else(|| q.name.clone(), |&c| g.nodes[c].name.clone());
    let node = Node {
        name,
        op_type: qdq::QLOOKUP.into(),
        domain: qdq::DOMAIN.into(),
        inputs: vec![g.nodes[dq].inputs[0].clone(), table_name.clone()],
        outputs: vec![out],
        attrs: Default::default(),
    };
    g.initializers.insert(table_name, table);
    g.nodes[qi] = node;
    let mut chain = chain;
    chain.sort_unstable();
    let removed = chain.len();
    for c in chain.into_iter().rev() {
        g.nodes.remove(c);
    }
    Some(removed)
}

/// The DQ (per tensor, of a run-time value) and the table steps (listed from `v` back) that
/// compute `v`. Every f32 value on the way is read by the next step alone; `v` itself too
/// unless `shared`. The DQ output may have other readers (they keep the DQ).
fn chain_from_dq<'g>(
    g: &'g Graph,
    types: &BTreeMap<String, ValueType>,
    mut v: &'g str,
    shared: bool,
) -> Option<(usize, Vec<usize>)> {
    let mut chain = Vec::new();
    loop {
        if let Some((d, _)) = activation_dq(g, v) {
            return Some((d, chain));
        }
        let may_share = shared && chain.is_empty();
        if !may_share && !inner_value(g, v) {
            return None;
        }
        let p = producer(g, v)?;
        v = table_step(g, types, &g.nodes[p])?;
        chain.push(p);
    }
}

/// The 256 results of `DQ → chain` (chain listed from its end back), then of the Q node `q` if
/// given, computed by the engine's own kernels: u8/i8 after a Q, f32 without. `None` when a
/// node does not evaluate.
fn table_of(g: &Graph, dq: usize, chain: &[usize], q: Option<usize>) -> Option<Tensor> {
    let d = &g.nodes[dq];
    let x = g.initializers.get(d.input(0)?);
    if x.is_some() {
        return None;
    }
    let dtype = per_tensor(g, d)?.dtype;
    let data = match dtype {
        DataType::U8 => TensorData::U8((0..=255).collect()),
        _ => TensorData::I8((0..=255u8).map(|b| b as i8).collect()),
    };
    let codes = Tensor::new(vec![1, 256], data).ok()?;
    let eval = |node: &Node, value: &str, cur: &Tensor| -> Option<Tensor> {
        let ins: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|i| {
                if i == value {
                    Some(cur)
                } else {
                    g.initializers.get(i)
                }
            })
            .collect();
        eval_node(node, g.opset, &ins).ok()?.into_iter().next()
    };
    let mut cur = eval(d, d.input(0)?, &codes)?;
    let mut value = d.outputs[0].as_str();
    for &c in chain.iter().rev() {
        let n = &g.nodes[c];
        cur = eval(n, value, &cur)?;
        value = n.outputs[0].as_str();
    }
    let t = match q {
        Some(qi) => eval(&g.nodes[qi], value, &cur)?,
        None => cur,
    };
    let data = t.data().clone();
    (data.len() == 256).then(|| Tensor::new(vec![256], data).ok())?
}

/// How a fused node reads a run-time operand: its value, and the scale and zero point of a
/// quantized one (or a table of the f32 values each byte stands for, which `tables` holds
/// until the rewrite; empty names for an f32 operand), with the operand's type.
struct Read<'t> {
    inputs: [String; 3],
    table: Option<(String, Tensor)>,
    /// The [`Mapped::ATTR`] of a table that is one HardSwish/HardSigmoid of the DQ.
    inline: Option<Vec<f32>>,
    ty: &'t ValueType,
}

/// How a fused node can read value `x` (see [`Read`]); `None` for a constant or a value that
/// is neither f32 nor computed from a per-tensor DQ.
fn read<'g, 't>(
    g: &'g Graph,
    types: &'t BTreeMap<String, ValueType>,
    x: &'g str,
) -> Option<Read<'t>> {
    if g.initializers.contains_key(x) {
        return None;
    }
    let t = types.get(x)?;
    let Some((dq, chain)) = chain_from_dq(g, types, x, true) else {
        return (t.dtype == DataType::F32).then(|| Read {
            inputs: [x.into(), String::new(), String::new()],
            table: None,
            inline: None,
            ty: t,
        });
    };
    let d = &g.nodes[dq];
    let q = &d.inputs[0];
    let ty = types.get(q)?;
    if chain.is_empty() {
        return Some(Read {
            inputs: [
                q.clone(),
                d.inputs[1].clone(),
                d.input(2).unwrap_or("").to_string(),
            ],
            table: None,
            inline: None,
            ty,
        });
    }
    let table = table_of(g, dq, &chain, None)?;
    let mut name = format!("{x}::values");
    while g.initializers.contains_key(&name) {
        name.push('_');
    }
    let inline = match chain[..] {
        [c] => {
            let n = &g.nodes[c];
            let p = per_tensor(g, d)?;
            let f = if is_standard(n, "HardSwish") {
                Some(Mapped::HardSwish)
            } else if is_standard(n, "HardSigmoid") {
                let alpha = n.attr_float("alpha", 0.2).ok()?;
                let beta = n.attr_float("beta", 0.5).ok()?;
                Some(Mapped::HardSigmoid { alpha, beta })
            } else {
                None
            };
            f.map(|f| f.encode(p.scale, p.zero))
        }
        _ => None,
    };
    Some(Read {
        inputs: [q.clone(), name.clone(), String::new()],
        table: Some((name, table)),
        inline,
        ty,
    })
}

/// `DQ(x) [→ table steps] → GlobalAveragePool` at node `i`.
fn global_average(g: &mut Graph, types: &BTreeMap<String, ValueType>, i: usize) -> bool {
    let n = &g.nodes[i];
    if !is_standard(n, "GlobalAveragePool") || n.outputs.len() != 1 {
        return false;
    }
    let Some(r) = n.input(0).and_then(|x| read(g, types, x)) else {
        return false;
    };
    if r.inputs[1].is_empty() {
        return false;
    }
    g.initializers.extend(r.table);
    let n = &mut g.nodes[i];
    if let Some(v) = r.inline {
        n.attrs.insert(Mapped::ATTR.into(), Attr::Floats(v));
    }
    n.op_type = qdq::QGLOBAL_AVERAGE_POOL.into();
    n.domain = qdq::DOMAIN.into();
    n.inputs = r.inputs.to_vec();
    true
}

/// `Add/Mul(a, b) → Q` at node `i` (see the module docs).
fn binary(g: &mut Graph, types: &BTreeMap<String, ValueType>, i: usize) -> bool {
    let n = &g.nodes[i];
    let op = if is_standard(n, "Add") {
        qdq::QADD
    } else if is_standard(n, "Mul") {
        qdq::QMUL
    } else {
        return false;
    };
    if n.inputs.len() != 2 || n.outputs.len() != 1 || !inner_value(g, &n.outputs[0]) {
        return false;
    }
    let Some(qi) = g
        .nodes
        .iter()
        .position(|m| m.inputs.first() == Some(&n.outputs[0]))
        .filter(|&q| {
            is_standard(&g.nodes[q], "QuantizeLinear")
                && g.nodes[q].outputs.len() == 1
                && per_tensor(g, &g.nodes[q]).is_some()
        })
    else {
        return false;
    };
    let (Some(a), Some(b)) = (read(g, types, &n.inputs[0]), read(g, types, &n.inputs[1])) else {
        return false;
    };
    if a.inputs[1].is_empty() && b.inputs[1].is_empty() {
        return false;
    }
    let Some(out) = types.get(&n.outputs[0]) else {
        return false;
    };
    // `a` is the full-shape operand; Add and Mul commute exactly in f32.
    let (a, b) = if a.ty.shape == out.shape {
        (a, b)
    } else {
        (b, a)
    };
    if a.ty.shape != out.shape || plane_outer(&b.ty.shape, &a.ty.shape).is_none() {
        return false;
    }
    let q = &g.nodes[qi];
    let l = QBinaryInputs::LAYOUT;
    let mut inputs = vec![String::new(); 8];
    [inputs[l.a], inputs[l.a_scale], inputs[l.a_zero]] = a.inputs;
    [inputs[l.b], inputs[l.b_scale], inputs[l.b_zero]] = b.inputs;
    inputs[l.y_scale] = q.inputs[1].clone();
    inputs[l.y_zero] = q.input(2).unwrap_or("").to_string();
    while inputs.last().is_some_and(String::is_empty) {
        inputs.pop();
    }
    let mut attrs = BTreeMap::new();
    if let Some(v) = a.inline {
        attrs.insert(Mapped::ATTR.to_string(), Attr::Floats(v));
    }
    let fused = Node {
        name: n.name.clone(),
        op_type: op.into(),
        domain: qdq::DOMAIN.into(),
        inputs,
        outputs: q.outputs.clone(),
        attrs,
    };
    g.initializers.extend(a.table.into_iter().chain(b.table));
    g.nodes[i] = fused;
    g.nodes.remove(qi);
    true
}

/// Removes, until none is left, the default-domain nodes whose outputs nothing reads and the
/// caller cannot see: the DQs and table steps the rewrites left unread.
fn remove_unread(g: &mut Graph) {
    loop {
        let read = g.consumer_counts();
        let dead = g.nodes.iter().position(|n| {
            (n.domain.is_empty() || n.domain == "ai.onnx")
                && n.outputs
                    .iter()
                    .all(|o| o.is_empty() || (!g.is_output(o) && !read.contains_key(o.as_str())))
        });
        match dead {
            Some(k) => {
                g.nodes.remove(k);
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::engine::ops::eval_node;
    use crate::engine::Plan;
    use crate::graph::testing::{graph, node};
    use crate::graph::{Graph, ValueInfo};
    use crate::tensor::{DataType, Tensor, TensorData};

    const SHAPE: [usize; 4] = [1, 3, 5, 7];

    fn scalar(v: f32) -> Tensor {
        Tensor::from_f32(vec![], vec![v]).unwrap()
    }

    fn zero(dtype: DataType, v: i32) -> Tensor {
        let data = match dtype {
            DataType::U8 => TensorData::U8(vec![v as u8]),
            _ => TensorData::I8(vec![v as i8]),
        };
        Tensor::new(vec![], data).unwrap()
    }

    /// Parameters `{p}_s`/`{p}_z` of a Q/DQ pair.
    fn params(p: &str, s: f32, dtype: DataType, z: i32) -> Vec<(String, Tensor)> {
        vec![
            (format!("{p}_s"), scalar(s)),
            (format!("{p}_z"), zero(dtype, z)),
        ]
    }

    /// `Q(x) → DQ` with parameters `p`, from `x` to `out`.
    fn qdq(p: &str, x: &str, out: &str) -> Vec<crate::graph::Node> {
        let (s, z) = (format!("{p}_s"), format!("{p}_z"));
        vec![
            node(
                "QuantizeLinear",
                &format!("{p}_q"),
                &[x, &s, &z],
                &[&format!("{p}_int")],
            ),
            node(
                "DequantizeLinear",
                &format!("{p}_dq"),
                &[&format!("{p}_int"), &s, &z],
                &[out],
            ),
        ]
    }

    fn build(nodes: Vec<crate::graph::Node>, inits: Vec<(String, Tensor)>, outs: &[&str]) -> Graph {
        let mut g = graph(17, nodes, vec![]);
        g.initializers.extend(inits);
        g.outputs = outs
            .iter()
            .map(|o| ValueInfo {
                name: (*o).into(),
                dtype: DataType::F32,
                shape: None,
            })
            .collect();
        g
    }

    /// Every value of `g` on input `x`, node by node with the engine's kernels: the unfused path.
    fn reference(g: &Graph, x: &Tensor) -> BTreeMap<String, Tensor> {
        let mut vals: BTreeMap<String, Tensor> = g.initializers.clone().into_iter().collect();
        vals.insert("x".into(), x.clone());
        for n in &g.nodes {
            let ins: Vec<Option<&Tensor>> = n.inputs.iter().map(|i| vals.get(i)).collect();
            let out = eval_node(n, g.opset, &ins).unwrap();
            for (name, t) in n.outputs.iter().zip(out) {
                vals.insert(name.clone(), t);
            }
        }
        vals
    }

    fn input(seed: u32) -> Tensor {
        let n: usize = SHAPE.iter().product();
        let mut s = seed;
        let v = (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 16.0 - 8.0
            })
            .collect();
        Tensor::from_f32(SHAPE.to_vec(), v).unwrap()
    }

    /// Runs `g` planned (fused) and node by node; asserts the outputs are the same bits and
    /// that the plan ran a kernel whose name starts with each of `kernels`.
    fn same_bits_as_unfused(g: &Graph, kernels: &[&str]) {
        let mut plan = Plan::new(g, &[("x", SHAPE.to_vec())], 1).unwrap();
        for k in kernels {
            assert!(
                plan.kernel_names().iter().any(|n| n.starts_with(k)),
                "{k} not in {:?}",
                plan.kernel_names()
            );
        }
        for seed in 0..4 {
            let x = input(seed);
            let got = plan.run(&[("x", &x)]).unwrap();
            let want = reference(g, &x);
            for (o, t) in g.outputs.iter().zip(&got) {
                let w = want[&o.name].as_f32().unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(t.as_f32().unwrap()), bits(w), "output {}", o.name);
            }
        }
    }

    #[test]
    fn a_dequantized_unary_chain_becomes_a_lookup_with_the_same_bits() {
        for dtype in [DataType::U8, DataType::I8] {
            let z = if dtype == DataType::U8 { 131 } else { -5 };
            let mut nodes = qdq("a", "x", "xd");
            nodes.push(node("HardSwish", "hs", &["xd"], &["h"]));
            nodes.push(node("Mul", "m", &["h", "k"], &["hk"]));
            nodes.push(node("Sigmoid", "sg", &["hk"], &["s"]));
            nodes.extend(qdq("b", "s", "y"));
            let mut inits = params("a", 0.061, dtype, z);
            inits.extend(params("b", 0.0043, dtype, z / 2));
            inits.push(("k".into(), scalar(1.7)));
            let g = build(nodes, inits, &["y"]);
            let name = if dtype == DataType::U8 {
                "u8-lut"
            } else {
                "i8-lut"
            };
            same_bits_as_unfused(&g, &[name]);
        }
    }

    #[test]
    fn a_lookup_keeps_the_f32_readers_of_its_dequantize_and_serves_every_reader_of_its_q() {
        let mut nodes = qdq("a", "x", "xd");
        nodes.push(node("HardSigmoid", "hsig", &["xd"], &["h"]));
        // The DQ output is also read in f32, and the lookup's output by two nodes.
        nodes.push(node("Relu", "r", &["xd"], &["y2"]));
        nodes.extend(qdq("b", "h", "hd"));
        nodes.push(node("Tanh", "t", &["hd"], &["y"]));
        nodes.push(node(
            "DequantizeLinear",
            "dq2",
            &["b_int", "b_s", "b_z"],
            &["y3"],
        ));
        let mut inits = params("a", 0.05, DataType::U8, 128);
        inits.extend(params("b", 0.004, DataType::U8, 0));
        let g = build(nodes, inits, &["y", "y2", "y3"]);
        same_bits_as_unfused(&g, &["u8-lut"]);
    }

    #[test]
    fn a_value_the_caller_sees_inside_a_chain_is_not_fused_away() {
        let mut nodes = qdq("a", "x", "xd");
        nodes.push(node("Relu", "r", &["xd"], &["h"]));
        nodes.push(node("Tanh", "t", &["h"], &["h2"]));
        nodes.extend(qdq("b", "h2", "y"));
        let mut inits = params("a", 0.05, DataType::U8, 128);
        inits.extend(params("b", 0.01, DataType::U8, 128));
        let g = build(nodes, inits, &["y", "h"]);
        let plan = Plan::new(&g, &[("x", SHAPE.to_vec())], 1).unwrap();
        assert!(!plan.kernel_names().iter().any(|n| n.contains("-lut")));
        same_bits_as_unfused(&g, &[]);
    }

    /// A squeeze-excite block after a hard-swish the quantizer left in f32, as textdir-cls
    /// has: `h = act(DQ(q))`, `s = HardSigmoid(DQ(Q(GlobalAveragePool(h))))`, `Q(h · s)`.
    /// A single HardSwish is computed inline; a longer chain goes through its table.
    #[test]
    fn squeeze_excite_reads_bytes_with_the_same_bits() {
        for (chain, kernels) in [
            (
                &["HardSwish"][..],
                [
                    "u8-hardswish-global-average",
                    "qlinear-mul (hardswish a, per-plane b)",
                ],
            ),
            (
                &["HardSwish", "Relu"][..],
                ["u8-lut-global-average", "qlinear-mul (per-plane b)"],
            ),
        ] {
            let mut nodes = qdq("a", "x", "xd");
            let mut v = "xd".to_string();
            for (i, op) in chain.iter().enumerate() {
                let out = format!("h{i}");
                nodes.push(node(op, &format!("act{i}"), &[&v], &[&out]));
                v = out;
            }
            nodes.push(node("GlobalAveragePool", "gap", &[&v], &["p"]));
            nodes.extend(qdq("p", "p", "pd"));
            nodes.push(node("HardSigmoid", "hsig", &["pd"], &["s"]));
            nodes.push(node("Mul", "se", &[&v, "s"], &["m"]));
            nodes.extend(qdq("m", "m", "y"));
            let mut inits = params("a", 0.047, DataType::U8, 140);
            inits.extend(params("p", 0.01, DataType::U8, 100));
            inits.extend(params("m", 0.02, DataType::U8, 20));
            let g = build(nodes, inits, &["y"]);
            same_bits_as_unfused(&g, &kernels);
        }
    }

    #[test]
    fn a_residual_add_and_a_quantized_mul_of_two_quantized_values_keep_their_bits() {
        for (op, kernel) in [("Add", "qlinear-add"), ("Mul", "qlinear-mul")] {
            for dtype in [DataType::U8, DataType::I8] {
                let mut nodes = qdq("a", "x", "xa");
                nodes.push(node("Relu", "r", &["x"], &["xr"]));
                nodes.extend(qdq("b", "xr", "xb"));
                nodes.push(node(op, "op", &["xa", "xb"], &["s"]));
                nodes.extend(qdq("c", "s", "y"));
                let mut inits = params("a", 0.07, dtype, 3);
                inits.extend(params("b", 0.035, dtype, 0));
                let zc = if dtype == DataType::U8 { 250 } else { -7 };
                inits.extend(params("c", 0.09, dtype, zc));
                let g = build(nodes, inits, &["y"]);
                same_bits_as_unfused(&g, &[kernel]);
            }
        }
    }
}
