//! Folds the dynamic INT8 chains of a graph into the engine's fused integer nodes
//! ([`crate::engine::ops::integer`]), before constant folding.
//!
//! Two forms are recognised, both with an optional per-channel bias `Add` and `Relu` after them:
//! * ORT's `quantize_dynamic` form (also quench's for Gemm/MatMul):
//!   `DynamicQuantizeLinear(x) → MatMulInteger | ConvInteger(x_q, W, x_zp, W_zp) → Cast(f32) →
//!   Mul(·, Mul(x_scale, W_scale))`;
//! * quench's Conv form: `DynamicQuantizeLinear(x) → DequantizeLinear → Conv` with the weight
//!   `DequantizeLinear(W, W_scale, W_zp)` of constants.
//!
//! The nodes a chain consumed disappear; a `DynamicQuantizeLinear` or weight
//! `DequantizeLinear` disappears once nothing reads it. A `MatMulInteger`/`ConvInteger` that is
//! not in such a chain, or a `DynamicQuantizeLinear` left with readers, is an error naming the
//! node: the engine computes f32 values only, so integer values cannot flow between its steps.

use std::collections::HashSet;

use crate::graph::shape_int::{DYNAMIC_CONV, DYNAMIC_MATMUL, INTERNAL_DOMAIN};
use crate::graph::{Attr, Graph, GraphError, Node};
use crate::tensor::{Tensor, TensorData};

/// A matched chain: the fused node replacing node `at`, the other nodes it replaces, the
/// producers that may now be unread, and the constants the fused node reads.
struct Chain {
    fused: Node,
    at: usize,
    remove: Vec<usize>,
    maybe_dead: Vec<usize>,
    consts: Vec<(String, Tensor)>,
}

/// Rewrites every dynamic INT8 chain of `g` into one fused node; returns how many.
pub fn fuse_integer(g: &mut Graph) -> Result<usize, GraphError> {
    let mut count = 0;
    let mut candidates: HashSet<String> = HashSet::new();
    while let Some(chain) = next_chain(g)? {
        for &i in &chain.maybe_dead {
            candidates.extend(g.nodes[i].outputs.iter().cloned());
        }
        apply(g, chain);
        count += 1;
    }
    remove_unread(g, &candidates);
    if let Some(n) = g
        .nodes
        .iter()
        .find(|n| n.domain.is_empty() && n.op_type == "DynamicQuantizeLinear")
    {
        return Err(n.error(
            "the native engine runs DynamicQuantizeLinear only folded with its readers \
             (MatMulInteger/ConvInteger → Cast → Mul, or DequantizeLinear → Conv on a constant \
             DequantizeLinear weight); this one has other readers",
        ));
    }
    Ok(count)
}

fn next_chain(g: &Graph) -> Result<Option<Chain>, GraphError> {
    for (i, n) in g.nodes.iter().enumerate() {
        if !n.domain.is_empty() {
            continue;
        }
        let chain = match n.op_type.as_str() {
            "MatMulInteger" | "ConvInteger" => Some(integer_chain(g, i)?),
            "Conv" => dequantized_conv(g, i)?,
            _ => None,
        };
        if chain.is_some() {
            return Ok(chain);
        }
    }
    Ok(None)
}

fn apply(g: &mut Graph, chain: Chain) {
    let Chain {
        fused,
        at,
        remove,
        consts,
        ..
    } = chain;
    g.initializers.extend(consts);
    let mut fused = Some(fused);
    let nodes = std::mem::take(&mut g.nodes);
    g.nodes = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| {
            if i == at {
                fused.take()
            } else if remove.contains(&i) {
                None
            } else {
                Some(n)
            }
        })
        .collect();
}

/// Removes the nodes whose outputs are all in `candidates`, unread and not graph outputs,
/// until none is left.
fn remove_unread(g: &mut Graph, candidates: &HashSet<String>) {
    loop {
        let read: HashSet<&str> = g
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().map(String::as_str))
            .collect();
        let dead = g.nodes.iter().position(|n| {
            n.outputs.iter().all(|o| {
                o.is_empty()
                    || (candidates.contains(o) && !read.contains(o.as_str()) && !g.is_output(o))
            })
        });
        match dead {
            Some(i) => {
                g.nodes.remove(i);
            }
            None => return,
        }
    }
}

fn producer(g: &Graph, name: &str) -> Option<usize> {
    g.nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == name))
}

/// The only node reading `name`, when exactly one does and it is not a graph output.
fn single_reader(g: &Graph, name: &str) -> Option<usize> {
    if g.is_output(name) {
        return None;
    }
    let mut readers = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.iter().any(|i| i == name));
    match (readers.next(), readers.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

fn is_op(n: &Node, op: &str) -> bool {
    n.domain.is_empty() && n.op_type == op
}

/// A constant's shape and tensor: an initializer, or a `Reshape` of one by a constant shape
/// (ORT reshapes Conv biases to `[1, C, 1, 1]` this way).
fn constant<'g>(g: &'g Graph, name: &str) -> Option<(Vec<usize>, &'g Tensor)> {
    if let Some(t) = g.initializers.get(name) {
        return Some((t.shape().to_vec(), t));
    }
    let n = &g.nodes[producer(g, name)?];
    if !is_op(n, "Reshape") {
        return None;
    }
    let t = g.initializers.get(n.input(0)?)?;
    let want = g.initializers.get(n.input(1)?)?.to_i64_vec().ok()?;
    let mut shape: Vec<usize> = Vec::with_capacity(want.len());
    let mut infer = None;
    for (i, &d) in want.iter().enumerate() {
        match d {
            0 => shape.push(*t.shape().get(i)?),
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            d if d > 0 => shape.push(usize::try_from(d).ok()?),
            _ => return None,
        }
    }
    let known: usize = shape.iter().product();
    if let Some(i) = infer {
        if known == 0 || t.len() % known != 0 {
            return None;
        }
        shape[i] = t.len() / known;
    }
    (shape.iter().product::<usize>() == t.len()).then_some((shape, t))
}

/// The values of a constant that broadcasts along one channel of `n` (`from_end` axes from the
/// last, in an output of rank at most `max_rank`): `n` values, or one repeated.
fn channel_values(
    g: &Graph,
    name: &str,
    n: usize,
    from_end: usize,
    max_rank: usize,
) -> Option<Vec<f32>> {
    let (shape, t) = constant(g, name)?;
    let v = t.as_f32().ok()?;
    if shape.len() > max_rank {
        return None;
    }
    if v.len() == 1 {
        return Some(vec![v[0]; n]);
    }
    let axis = shape.len().checked_sub(from_end)?;
    let fits = shape
        .iter()
        .enumerate()
        .all(|(i, &d)| if i == axis { d == n } else { d == 1 });
    fits.then(|| v.to_vec())
}

/// The Add of a per-channel constant and the Relu that may follow node `last`: returns the
/// bias, the nodes absorbed and the new last node.
fn bias_and_relu(
    g: &Graph,
    mut last: usize,
    n: usize,
    conv: bool,
) -> (Option<Vec<f32>>, bool, Vec<usize>) {
    let (from_end, max_rank) = if conv { (3, 4) } else { (1, 1) };
    let mut absorbed = Vec::new();
    let mut bias = None;
    if let Some(a) = single_reader(g, &g.nodes[last].outputs[0]) {
        let add = &g.nodes[a];
        let out = &g.nodes[last].outputs[0];
        if is_op(add, "Add") && add.inputs.len() == 2 {
            let other = if &add.inputs[0] == out {
                &add.inputs[1]
            } else {
                &add.inputs[0]
            };
            if let Some(b) = channel_values(g, other, n, from_end, max_rank) {
                bias = Some(b);
                absorbed.push(a);
                last = a;
            }
        }
    }
    let mut relu = false;
    if let Some(r) = single_reader(g, &g.nodes[last].outputs[0]) {
        if is_op(&g.nodes[r], "Relu") {
            relu = true;
            absorbed.push(r);
        }
    }
    (bias, relu, absorbed)
}

/// Builds the fused node and its constants.
#[allow(clippy::too_many_arguments)]
fn fused_node(
    g: &Graph,
    anchor: &Node,
    op: &str,
    x: &str,
    w: &str,
    w_zp: Option<&str>,
    w_scale: Vec<f32>,
    bias: Option<Vec<f32>>,
    relu: bool,
    out: &str,
) -> (Node, Vec<(String, Tensor)>) {
    let fresh = |what: &str| {
        let mut name = format!("{out}::{what}");
        while g.initializers.contains_key(&name) {
            name.push('_');
        }
        name
    };
    let vector = |v: Vec<f32>| {
        let len = v.len();
        Tensor::new(vec![len], TensorData::F32(v))
    };
    let mut consts = Vec::new();
    let ws_name = fresh("w_scale");
    if let Ok(t) = vector(w_scale) {
        consts.push((ws_name.clone(), t));
    }
    let bias_name = match bias.map(vector) {
        Some(Ok(t)) => {
            let name = fresh("bias");
            consts.push((name.clone(), t));
            name
        }
        _ => String::new(),
    };
    let mut attrs = if op == DYNAMIC_CONV {
        anchor.attrs.clone()
    } else {
        Default::default()
    };
    attrs.insert("relu".into(), Attr::Int(i64::from(relu)));
    let node = Node {
        name: anchor.name.clone(),
        op_type: op.into(),
        domain: INTERNAL_DOMAIN.into(),
        inputs: vec![
            x.into(),
            w.into(),
            w_zp.unwrap_or_default().into(),
            ws_name,
            bias_name,
        ],
        outputs: vec![out.into()],
        attrs,
    };
    (node, consts)
}

/// `DynamicQuantizeLinear → MatMulInteger | ConvInteger → Cast → Mul (→ Add) (→ Relu)`.
fn integer_chain(g: &Graph, ci: usize) -> Result<Chain, GraphError> {
    let c = &g.nodes[ci];
    let conv = c.op_type == "ConvInteger";
    let form = "the native engine runs it as DynamicQuantizeLinear → MatMulInteger/ConvInteger → \
                Cast(float) → Mul(x_scale · w_scale), the form of ORT's quantize_dynamic";
    let bad = |what: &str| c.error(format!("{what}: {form}"));
    let a = c.input(0).ok_or_else(|| bad("input A is missing"))?;
    let di = producer(g, a)
        .filter(|&d| is_op(&g.nodes[d], "DynamicQuantizeLinear"))
        .ok_or_else(|| bad("input A does not come from DynamicQuantizeLinear"))?;
    let d = &g.nodes[di];
    if d.outputs.first().map(String::as_str) != Some(a)
        || c.input(2) != d.outputs.get(2).map(String::as_str)
    {
        return Err(bad(
            "A's zero point is not the DynamicQuantizeLinear zero point of A",
        ));
    }
    let w_name = c.input(1).ok_or_else(|| bad("the weight is missing"))?;
    let w = g
        .initializers
        .get(w_name)
        .ok_or_else(|| bad("the weight is not a constant"))?;
    let n = match (conv, w.shape()) {
        (false, [_, n]) => *n,
        (true, [oc, _, _, _]) => *oc,
        (_, s) => return Err(bad(&format!("weight shape {s:?} is not supported"))),
    };
    let w_zp = c.input(3);
    if w_zp.is_some_and(|z| !g.initializers.contains_key(z)) {
        return Err(bad("the weight zero point is not a constant"));
    }
    let cast = single_reader(g, &c.outputs[0])
        .filter(|&i| is_op(&g.nodes[i], "Cast") && g.nodes[i].attr_int("to", 0).ok() == Some(1))
        .ok_or_else(|| bad("its int32 output is not read by one Cast to float alone"))?;
    let mul = single_reader(g, &g.nodes[cast].outputs[0])
        .filter(|&i| is_op(&g.nodes[i], "Mul") && g.nodes[i].inputs.len() == 2)
        .ok_or_else(|| bad("the Cast output is not read by one Mul alone"))?;
    let m = &g.nodes[mul];
    let scale = if m.inputs[0] == g.nodes[cast].outputs[0] {
        &m.inputs[1]
    } else {
        &m.inputs[0]
    };
    let x_scale = &d.outputs[1];
    let (from_end, max_rank) = if conv { (3, 4) } else { (1, 1) };
    let mut maybe_dead = vec![di];
    let w_scale = if scale == x_scale {
        vec![1.0; n]
    } else {
        let si = producer(g, scale)
            .filter(|&s| is_op(&g.nodes[s], "Mul") && g.nodes[s].inputs.contains(x_scale))
            .ok_or_else(|| bad("the Mul's scale is not x_scale or Mul(x_scale, w_scale)"))?;
        let s = &g.nodes[si];
        let ws = if &s.inputs[0] == x_scale {
            &s.inputs[1]
        } else {
            &s.inputs[0]
        };
        maybe_dead.push(si);
        channel_values(g, ws, n, from_end, max_rank).ok_or_else(|| {
            bad(&format!(
                "the weight scale `{ws}` is not a constant of one or {n} (per output channel) values"
            ))
        })?
    };
    let (bias, relu, absorbed) = bias_and_relu(g, mul, n, conv);
    let mut remove = vec![ci, cast, mul];
    remove.extend(&absorbed);
    let at = *remove.iter().max().unwrap_or(&mul);
    let out = g.nodes[at].outputs[0].clone();
    let op = if conv { DYNAMIC_CONV } else { DYNAMIC_MATMUL };
    let x = d.inputs.first().map(String::as_str).unwrap_or_default();
    let (fused, consts) = fused_node(g, c, op, x, w_name, w_zp, w_scale, bias, relu, &out);
    Ok(Chain {
        fused,
        at,
        remove,
        maybe_dead,
        consts,
    })
}

/// `DynamicQuantizeLinear → DequantizeLinear → Conv` with a constant `DequantizeLinear`
/// weight; `None` when `Conv` is not in that form.
fn dequantized_conv(g: &Graph, ci: usize) -> Result<Option<Chain>, GraphError> {
    let cv = &g.nodes[ci];
    let Some(qi) = cv
        .input(0)
        .and_then(|x| producer(g, x))
        .filter(|&q| is_op(&g.nodes[q], "DequantizeLinear"))
    else {
        return Ok(None);
    };
    let q = &g.nodes[qi];
    let Some(di) = q
        .input(0)
        .and_then(|x| producer(g, x))
        .filter(|&d| is_op(&g.nodes[d], "DynamicQuantizeLinear"))
    else {
        return Ok(None);
    };
    let d = &g.nodes[di];
    if q.inputs.get(..3) != d.outputs.get(..3) {
        return Ok(None);
    }
    let Some(wi) = cv
        .input(1)
        .and_then(|w| producer(g, w))
        .filter(|&w| is_op(&g.nodes[w], "DequantizeLinear"))
    else {
        return Ok(None);
    };
    let wq = &g.nodes[wi];
    let (Some(w_name), Some(s_name)) = (wq.input(0), wq.input(1)) else {
        return Ok(None);
    };
    let (Some(w), Some(s)) = (g.initializers.get(w_name), g.initializers.get(s_name)) else {
        return Ok(None);
    };
    let w_zp = wq.input(2);
    if w_zp.is_some_and(|z| !g.initializers.contains_key(z)) {
        return Ok(None);
    }
    let [n, _, _, _] = *w.shape() else {
        return Err(cv.error(format!("weight shape {:?} is not 4-D", w.shape())));
    };
    let s = s
        .as_f32()
        .map_err(|e| wq.error(format!("the weight scale: {e}")))?;
    let axis = wq.attr_int("axis", 1)?;
    if s.len() > 1 && axis != 0 && axis != -4 {
        return Err(wq.error(format!(
            "a per-channel Conv weight scale must be on axis 0, found axis {axis}"
        )));
    }
    let w_scale = match s.len() {
        1 => vec![s[0]; n],
        l if l == n => s.to_vec(),
        l => {
            return Err(wq.error(format!(
                "the weight scale holds {l} values; expected 1 or {n}"
            )))
        }
    };
    let conv_bias = match cv.input(2) {
        None => None,
        Some(b) => Some(
            g.initializers
                .get(b)
                .and_then(|t| t.as_f32().ok())
                .filter(|v| v.len() == n)
                .ok_or_else(|| cv.error(format!("the bias must be a constant of {n} f32 values")))?
                .to_vec(),
        ),
    };
    let mut remove = vec![ci];
    let mut relu = false;
    if let Some(r) = single_reader(g, &cv.outputs[0]).filter(|&r| is_op(&g.nodes[r], "Relu")) {
        relu = true;
        remove.push(r);
    }
    let at = *remove.iter().max().unwrap_or(&ci);
    let out = g.nodes[at].outputs[0].clone();
    let x = d.inputs.first().map(String::as_str).unwrap_or_default();
    let (fused, consts) = fused_node(
        g,
        cv,
        DYNAMIC_CONV,
        x,
        w_name,
        w_zp,
        w_scale,
        conv_bias,
        relu,
        &out,
    );
    Ok(Some(Chain {
        fused,
        at,
        remove,
        maybe_dead: vec![qi, di, wi],
        consts,
    }))
}
