//! Carries a QOperator graph (`QuantizeLinear → QLinearConv / QLinearMatMul / QGemm, MaxPool,
//! Flatten, … → DequantizeLinear`, as ORT's `quantize_static(quant_format=QOperator)` writes
//! it) on f32 values, before constant folding: every u8/s8 value on the integer path is held as
//! `(q - zp) · scale` (see [`crate::engine::ops::qlinear`] for why that is exact).
//!
//! * a `QuantizeLinear` whose output reaches a QOperator node becomes a carried quantize;
//! * `QLinearConv`, `QLinearMatMul` and `QGemm` become their carried forms;
//! * `MaxPool`, `Flatten`, `Reshape`, `Squeeze`, `Unsqueeze` and `Transpose` pass a carried value
//!   on unchanged (they commute with the carrying);
//! * a `DequantizeLinear` of a carried value on the same grid becomes an `Identity`.
//!
//! Every carried value must be read only by those nodes, on the grid it was made with, and must
//! not be a graph output: anything else is an error naming the node.

use std::collections::{HashMap, HashSet};

use crate::engine::ops::qlinear::Grid;
use crate::graph::shape_int::{
    FAKE_QUANT, INTERNAL_DOMAIN, MS_DOMAIN, QGEMM, QLINEAR_CONV, QLINEAR_MATMUL,
};
use crate::graph::{Graph, GraphError, Node};

const PASS_ON: [&str; 6] = [
    "MaxPool",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
];

/// The carried form of a QOperator node, if `n` is one.
fn carried_op(n: &Node) -> Option<&'static str> {
    match (n.domain.as_str(), n.op_type.as_str()) {
        ("", "QLinearConv") => Some(QLINEAR_CONV),
        ("", "QLinearMatMul") => Some(QLINEAR_MATMUL),
        (MS_DOMAIN, "QGemm") => Some(QGEMM),
        _ => None,
    }
}

fn grid_at(g: &Graph, n: &Node, scale: usize, zp: usize) -> Result<Grid, GraphError> {
    let get = |i: usize, what: &str| -> Result<Option<&crate::tensor::Tensor>, GraphError> {
        match n.input(i) {
            None => Ok(None),
            Some(name) => g
                .initializers
                .get(name)
                .map(Some)
                .ok_or_else(|| n.error(format!("{what} `{name}` must be a constant"))),
        }
    };
    let s = get(scale, "the scale")?.ok_or_else(|| n.error("the scale is missing"))?;
    Grid::of(n, s, get(zp, "the zero point")?)
}

/// Rewrites the QOperator part of `g` to run on carried f32 values; returns the number of
/// QOperator nodes rewritten.
pub fn carry_qoperator(g: &mut Graph) -> Result<usize, GraphError> {
    if !g.nodes.iter().any(|n| carried_op(n).is_some()) {
        return Ok(0);
    }
    // Values that must hold integers: QOperator inputs, and back through pass-on nodes.
    let mut needed: HashSet<String> = HashSet::new();
    for n in g.nodes.iter().filter(|n| carried_op(n).is_some()) {
        needed.extend(n.input(0).map(str::to_string));
        if n.op_type != "QLinearConv" {
            needed.extend(
                n.input(3)
                    .filter(|b| !g.initializers.contains_key(*b))
                    .map(str::to_string),
            );
        }
    }
    for n in g.nodes.iter().rev() {
        if n.domain.is_empty()
            && PASS_ON.contains(&n.op_type.as_str())
            && n.outputs.first().is_some_and(|o| needed.contains(o))
        {
            needed.extend(n.input(0).map(str::to_string));
        }
    }
    let mut grids: HashMap<String, Grid> = HashMap::new();
    let mut count = 0;
    for i in 0..g.nodes.len() {
        let n = &g.nodes[i];
        let carried_in: Vec<&String> = n.inputs.iter().filter(|x| grids.contains_key(*x)).collect();
        let out = n.outputs.first().cloned().unwrap_or_default();
        if let Some(op) = carried_op(n) {
            let x = n.input(0).unwrap_or_default();
            let have = grids.get(x).copied().ok_or_else(|| {
                n.error(format!(
                    "input `{x}` is not a quantized value the native engine can follow \
                     (it must come from QuantizeLinear or another QOperator node)"
                ))
            })?;
            if carried_in.iter().any(|v| v.as_str() != x) {
                return Err(n.error("a run-time quantized B operand is not supported natively"));
            }
            let declared = grid_at(g, n, 1, 2)?;
            if declared != have {
                return Err(n.error(format!(
                    "input `{x}` is declared on grid {declared:?} but was made on {have:?}"
                )));
            }
            let y_at = if op == QGEMM { 7 } else { 6 };
            if n.input(y_at).is_some() {
                let y = grid_at(g, n, y_at, y_at + 1)?;
                grids.insert(out, y);
            }
            let n = &mut g.nodes[i];
            n.op_type = op.into();
            n.domain = INTERNAL_DOMAIN.into();
            count += 1;
            continue;
        }
        if n.domain.is_empty() && n.op_type == "QuantizeLinear" && needed.contains(&out) {
            if n.attrs.contains_key("axis")
                && g.initializers
                    .get(n.input(1).unwrap_or_default())
                    .is_some_and(|s| s.len() > 1)
            {
                return Err(n.error("a per-axis activation QuantizeLinear is not supported"));
            }
            let grid = grid_at(g, n, 1, 2)?;
            grids.insert(out, grid);
            let n = &mut g.nodes[i];
            n.op_type = FAKE_QUANT.into();
            n.domain = INTERNAL_DOMAIN.into();
            continue;
        }
        let Some(&v) = carried_in.first() else {
            continue;
        };
        let grid = grids[v.as_str()];
        if n.domain.is_empty() && PASS_ON.contains(&n.op_type.as_str()) && n.input(0) == Some(v) {
            if n.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(
                    n.error("only the first output of a node on quantized values is supported")
                );
            }
            grids.insert(out, grid);
            continue;
        }
        if n.domain.is_empty() && n.op_type == "DequantizeLinear" && n.input(0) == Some(v) {
            let declared = grid_at(g, n, 1, 2)?;
            if declared != grid {
                return Err(n.error(format!(
                    "dequantizes `{v}` on grid {declared:?} but it was made on {grid:?}"
                )));
            }
            let n = &mut g.nodes[i];
            n.op_type = "Identity".into();
            n.inputs.truncate(1);
            n.attrs.clear();
            continue;
        }
        return Err(n.error(format!(
            "reads the quantized value `{v}`; the native engine follows quantized values only \
             through QLinearConv, QLinearMatMul, QGemm, DequantizeLinear and {}",
            PASS_ON.join("/")
        )));
    }
    if let Some(o) = g.outputs.iter().find(|o| grids.contains_key(&o.name)) {
        let message = format!(
            "graph output `{}` is quantized; the native engine needs it dequantized",
            o.name
        );
        return Err(match g.nodes.iter().find(|n| n.outputs.contains(&o.name)) {
            Some(n) => n.error(message),
            None => GraphError::Input {
                name: o.name.clone(),
                message,
            },
        });
    }
    Ok(count)
}
