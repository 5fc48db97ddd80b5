//! The trainable form of a graph and its reverse-mode automatic differentiation.
//!
//! A [`Program`] is a list of [`Step`]s in topological order over numbered values. The forward
//! pass records every value of a batch on a [`Tape`]; the backward pass walks the steps in
//! reverse, each step turning its output's gradient into its inputs' gradients, which add up
//! where a value feeds several steps. Weights of quantized layers are fake-quantized once per
//! pass, the ops see the quantized copy, and the weight STE maps their gradient back onto the
//! latent FP32 weights.

use crate::quant::qat::elementwise::{
    global_average_pool, global_average_pool_backward, Binary, Broadcast, Pointwise,
};
use crate::quant::qat::fake_quant::{
    fake_quant_weights, weight_ste, ActQuant, ChannelAxis, WeightBits,
};
use crate::quant::qat::linalg::{add_into, ConvGeom};
pub(crate) use crate::quant::qat::ops::PoolGeom;
use crate::quant::qat::ops::{
    conv_backward, conv_forward, dense_backward, dense_forward, max_pool_backward, max_pool_forward,
};
use crate::quant::qat::QatError;

/// A value: graph name and per-sample shape (the batch dimension excluded).
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    /// Elements per sample.
    pub len: usize,
    /// Whether the value's range is tracked (graph values, not fake-quant copies).
    pub observed: bool,
}

/// A trainable constant.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// Initializer name.
    pub name: String,
    pub shape: Vec<usize>,
    /// Latent FP32 values.
    pub data: Vec<f32>,
    /// For the weights of a quantized layer: the layer's node name, the index of the output
    /// channel axis, and where that axis is in the flat data.
    pub layer: Option<(String, usize, ChannelAxis)>,
}

/// An operator with its operands: `x`, `a`, `b` of value ops are value ids, `w`, `b`, `p` of
/// layers are parameter ids.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Conv {
        g: ConvGeom,
        x: usize,
        w: usize,
        b: Option<usize>,
    },
    /// Gemm or MatMul: `x[·×k] · op(w) + b`.
    Dense {
        x: usize,
        w: usize,
        b: Option<usize>,
        trans_b: bool,
        k: usize,
        n: usize,
    },
    AddParam {
        x: usize,
        p: usize,
    },
    /// `a + b` or `a · b` of two values, broadcast as `bcast` says.
    Binary {
        op: Binary,
        a: usize,
        b: usize,
        bcast: Broadcast,
    },
    Pointwise {
        f: Pointwise,
        x: usize,
    },
    MaxPool {
        g: PoolGeom,
        x: usize,
    },
    /// Mean over each channel's plane of `plane` elements.
    GlobalAveragePool {
        x: usize,
        plane: usize,
    },
    /// Flatten or Reshape: the same elements under another shape.
    Reshape {
        x: usize,
    },
    /// u8 fake quantization of value `x` over its tracked range.
    ActQuant {
        x: usize,
    },
}

impl Op {
    /// Value ids read.
    fn value_inputs(&self) -> Vec<usize> {
        match *self {
            Op::Conv { x, .. }
            | Op::Dense { x, .. }
            | Op::AddParam { x, .. }
            | Op::Pointwise { x, .. }
            | Op::MaxPool { x, .. }
            | Op::GlobalAveragePool { x, .. }
            | Op::Reshape { x }
            | Op::ActQuant { x } => vec![x],
            Op::Binary { a, b, .. } => vec![a, b],
        }
    }

    fn has_params(&self) -> bool {
        matches!(
            self,
            Op::Conv { .. } | Op::Dense { .. } | Op::AddParam { .. }
        )
    }
}

/// One node of the program.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub op: Op,
    /// Value id written.
    pub output: usize,
}

/// A trainable network: values, parameters, steps, the quantization state.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub values: Vec<Value>,
    pub params: Vec<Param>,
    pub steps: Vec<Step>,
    pub input: usize,
    pub output: usize,
    needs_grad: Vec<bool>,
    /// Tracked `(min, max)` per value, by EMA over training batches.
    pub ranges: Vec<Option<(f32, f32)>>,
    /// Weight precision of quantized layers; `None` runs the network in FP32 with no fake
    /// quantization at all.
    pub bits: Option<WeightBits>,
    /// Weight of the old range in the EMA update.
    pub ema_decay: f32,
}

/// Gradients of the latent parameters (by parameter id) and of the input when tracked.
pub(crate) type Gradients = (Vec<Vec<f32>>, Option<Vec<f32>>);

/// The values of one forward pass, kept for the backward.
#[derive(Debug)]
pub(crate) struct Tape {
    pub batch: usize,
    pub vals: Vec<Vec<f32>>,
    /// Winning input index per pooled output, by step.
    argmax: Vec<Vec<u32>>,
    /// Fake-quantized weights, by parameter (`None`: the latent values were used).
    weights: Vec<Option<Vec<f32>>>,
}

impl Tape {
    /// The network's output for the batch.
    pub fn output<'a>(&'a self, program: &Program) -> &'a [f32] {
        &self.vals[program.output]
    }
}

impl Program {
    pub(crate) fn new(
        values: Vec<Value>,
        params: Vec<Param>,
        steps: Vec<Step>,
        input: usize,
        output: usize,
    ) -> Program {
        let mut needs_grad = vec![false; values.len()];
        for s in &steps {
            needs_grad[s.output] =
                s.op.has_params() || s.op.value_inputs().iter().any(|&v| needs_grad[v]);
        }
        let ranges = vec![None; values.len()];
        Program {
            values,
            params,
            steps,
            input,
            output,
            needs_grad,
            ranges,
            bits: None,
            ema_decay: 0.9,
        }
    }

    /// Makes the backward pass also compute the gradient of the input (for gradient checks).
    #[cfg(test)]
    pub(crate) fn track_input_grad(&mut self) {
        self.needs_grad[self.input] = true;
        for i in 0..self.steps.len() {
            let s = &self.steps[i];
            self.needs_grad[s.output] |= s.op.value_inputs().iter().any(|&v| self.needs_grad[v]);
        }
    }

    /// Elements per output sample (the number of classes).
    pub fn output_len(&self) -> usize {
        self.values[self.output].len
    }

    fn observe(&mut self, v: usize, data: &[f32]) {
        if !self.values[v].observed || data.is_empty() {
            return;
        }
        let (lo, hi) = data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let d = self.ema_decay;
        self.ranges[v] = Some(match self.ranges[v] {
            None => (lo, hi),
            Some((l, h)) => (d * l + (1.0 - d) * lo, d * h + (1.0 - d) * hi),
        });
    }

    /// Runs a batch (`batch` samples, contiguous) forward. With `observe`, the ranges of graph
    /// values are updated from this batch before they are used.
    pub fn forward(&mut self, x: Vec<f32>, batch: usize, observe: bool) -> Result<Tape, QatError> {
        let want = batch * self.values[self.input].len;
        if x.len() != want {
            return Err(QatError::Graph(format!(
                "input `{}`: {} values for a batch of {batch} samples of shape {:?}",
                self.values[self.input].name,
                x.len(),
                self.values[self.input].shape
            )));
        }
        let weights: Vec<Option<Vec<f32>>> = self
            .params
            .iter()
            .map(|p| match (&p.layer, self.bits) {
                (Some((_, _, axis)), Some(bits)) => {
                    Some(fake_quant_weights(&p.data, *axis, bits).0)
                }
                _ => None,
            })
            .collect();
        let mut tape = Tape {
            batch,
            vals: vec![Vec::new(); self.values.len()],
            argmax: vec![Vec::new(); self.steps.len()],
            weights,
        };
        if observe {
            self.observe(self.input, &x);
        }
        tape.vals[self.input] = x;
        for si in 0..self.steps.len() {
            let out = self.step_forward(si, &mut tape)?;
            let o = self.steps[si].output;
            if observe {
                self.observe(o, &out);
            }
            tape.vals[o] = out;
        }
        Ok(tape)
    }

    fn weight<'a>(&'a self, tape: &'a Tape, p: usize) -> &'a [f32] {
        tape.weights[p].as_deref().unwrap_or(&self.params[p].data)
    }

    fn step_forward(&self, si: usize, tape: &mut Tape) -> Result<Vec<f32>, QatError> {
        let batch = tape.batch;
        let v = &tape.vals;
        Ok(match &self.steps[si].op {
            &Op::Conv { g, x, w, b } => conv_forward(
                &g,
                &v[x],
                self.weight(tape, w),
                b.map(|b| self.weight(tape, b)),
                batch,
            ),
            &Op::Dense {
                x,
                w,
                b,
                trans_b,
                k,
                n,
            } => dense_forward(
                &v[x],
                self.weight(tape, w),
                b.map(|b| self.weight(tape, b)),
                trans_b,
                (batch, k, n),
            ),
            &Op::AddParam { x, p } => {
                let p = self.weight(tape, p);
                v[x].iter()
                    .enumerate()
                    .map(|(i, &a)| a + p[i % p.len()])
                    .collect()
            }
            Op::Binary { op, a, b, bcast } => bcast.forward(*op, &v[*a], &v[*b], batch),
            &Op::Pointwise { f, x } => v[x].iter().map(|&a| f.apply(a)).collect(),
            &Op::MaxPool { g, x } => {
                let (y, arg) = max_pool_forward(&g, &v[x], batch);
                tape.argmax[si] = arg;
                y
            }
            &Op::GlobalAveragePool { x, plane } => global_average_pool(&v[x], plane),
            &Op::Reshape { x } => v[x].clone(),
            &Op::ActQuant { x } => match self.act_quant(x)? {
                Some(q) => v[x].iter().map(|&a| q.apply(a)).collect(),
                None => v[x].clone(),
            },
        })
    }

    /// The u8 parameters of value `x` when fake quantization is on.
    fn act_quant(&self, x: usize) -> Result<Option<ActQuant>, QatError> {
        if self.bits.is_none() {
            return Ok(None);
        }
        let (lo, hi) = self.ranges[x].ok_or_else(|| {
            QatError::Graph(format!(
                "value `{}` has no activation range: run calibration or training batches first",
                self.values[x].name
            ))
        })?;
        Ok(Some(ActQuant::from_range(lo, hi)))
    }

    /// Gradients of the latent parameters given the gradient of the output, plus the input's
    /// gradient when tracked.
    pub fn backward(&self, tape: &Tape, d_output: Vec<f32>) -> Result<Gradients, QatError> {
        let batch = tape.batch;
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; self.values.len()];
        let mut pgrads: Vec<Vec<f32>> = self
            .params
            .iter()
            .map(|p| vec![0.0; p.data.len()])
            .collect();
        grads[self.output] = Some(d_output);
        let v = &tape.vals;
        for (si, step) in self.steps.iter().enumerate().rev() {
            let Some(dy) = grads[step.output].take() else {
                continue;
            };
            let give = |grads: &mut Vec<Option<Vec<f32>>>, to: usize, g: Vec<f32>| {
                if !self.needs_grad[to] {
                    return;
                }
                match &mut grads[to] {
                    Some(acc) => add_into(acc, &g),
                    slot => *slot = Some(g),
                }
            };
            match &step.op {
                &Op::Conv { g, x, w, b } => {
                    let (dx, dw, db) = conv_backward(
                        &g,
                        &v[x],
                        self.weight(tape, w),
                        &dy,
                        batch,
                        self.needs_grad[x],
                    );
                    add_into(&mut pgrads[w], &dw);
                    if let Some(b) = b {
                        add_into(&mut pgrads[b], &db);
                    }
                    if let Some(dx) = dx {
                        give(&mut grads, x, dx);
                    }
                }
                &Op::Dense {
                    x,
                    w,
                    b,
                    trans_b,
                    k,
                    n,
                } => {
                    let (dx, dw, db) = dense_backward(
                        &v[x],
                        self.weight(tape, w),
                        &dy,
                        trans_b,
                        (batch, k, n),
                        self.needs_grad[x],
                    );
                    add_into(&mut pgrads[w], &dw);
                    if let Some(b) = b {
                        add_into(&mut pgrads[b], &db);
                    }
                    if let Some(dx) = dx {
                        give(&mut grads, x, dx);
                    }
                }
                &Op::AddParam { x, p } => {
                    let pg = &mut pgrads[p];
                    let len = pg.len();
                    for (i, &d) in dy.iter().enumerate() {
                        pg[i % len] += d;
                    }
                    give(&mut grads, x, dy);
                }
                Op::Binary { op, a, b, bcast } => {
                    let operands = [v[*a].as_slice(), v[*b].as_slice()];
                    for (side, to) in [(0, *a), (1, *b)] {
                        if self.needs_grad[to] {
                            let d = bcast.backward(*op, side, operands, &dy, batch);
                            give(&mut grads, to, d);
                        }
                    }
                }
                &Op::Pointwise { f, x } => {
                    let y = &v[step.output];
                    let dx = dy
                        .iter()
                        .zip(&v[x])
                        .zip(y)
                        .map(|((&d, &a), &b)| d * f.slope(a, b));
                    give(&mut grads, x, dx.collect());
                }
                &Op::MaxPool { g, x } => {
                    give(
                        &mut grads,
                        x,
                        max_pool_backward(&g, &dy, &tape.argmax[si], batch),
                    );
                }
                &Op::GlobalAveragePool { x, plane } => {
                    give(&mut grads, x, global_average_pool_backward(&dy, plane));
                }
                &Op::Reshape { x } => give(&mut grads, x, dy),
                &Op::ActQuant { x } => {
                    let dx = match self.act_quant(x)? {
                        Some(q) => dy
                            .iter()
                            .zip(&v[x])
                            .map(|(&d, &a)| if q.passes(a) { d } else { 0.0 })
                            .collect(),
                        None => dy,
                    };
                    give(&mut grads, x, dx);
                }
            }
        }
        if let Some(bits) = self.bits {
            for (p, g) in self.params.iter().zip(&mut pgrads) {
                if p.layer.is_some() {
                    weight_ste(&p.data, bits, g);
                }
            }
        }
        Ok((pgrads, grads[self.input].take()))
    }
}
