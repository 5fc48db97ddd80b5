//! The graph rewrites that export a quantized model ONNX Runtime runs, one layer at a time by
//! the precision the [`Scheme`] gives it:
//!
//! * INT8 static: QuantizeLinear→DequantizeLinear on the activation input (scale and zero point
//!   from its calibrated range) and, when its range is given, on the output (after a Relu that
//!   is its only reader: ORT folds that Relu into the quantization), the weight as an s8 constant through DequantizeLinear (with
//!   `axis` when per-channel), a folded bias as i32 with scale `s_x·s_w` through
//!   DequantizeLinear: ORT's QDQ format, which it fuses into integer kernels.
//! * INT8 dynamic: Gemm/MatMul as ORT's `quantize_dynamic` writes them,
//!   `DynamicQuantizeLinear` → `MatMulInteger` → `Cast` → `Mul` by `s_x·s_w` → `Add` bias (Gemm
//!   becomes a MatMul on the transposed weight), which ORT's optimizer fuses into its
//!   `DynamicQuantizeMatMul` kernel (u8×s8 MLAS GEMM). Conv is NOT written as ORT's
//!   `ConvInteger` form: ORT has no fused kernel for it, and mnist-cnn ran about 5x slower than
//!   FP32 that way (ORT 1.32, 1 thread, batch 100: 40 ms vs 7.9 ms in a quiet run). Instead the
//!   activation goes `DynamicQuantizeLinear` → `DequantizeLinear` and the s8 weight through
//!   `DequantizeLinear` into the FP32 Conv: the same integer values, about 3x faster than
//!   `ConvInteger` (12.8 ms in that run), though still slower than FP32.
//! * 4-bit: Gemm/MatMul → `com.microsoft::MatMulNBits` (+ `Add` for a Gemm bias). Conv has no
//!   4-bit operator in ORT, so under a 4-bit default it stays FP32 (as ORT's
//!   `MatMulNBitsQuantizer` leaves it); an override that explicitly asks a Conv for 4-bit is
//!   refused. Give Convs an INT8 override for a mixed model.
//! * Binary: the weight as s8 ±1 through a per-channel DequantizeLinear of scale α (ORT runs it
//!   unpacked, as int8), activations through `Sign` or an INT8 QDQ pair.
//!
//! Per-channel DequantizeLinear needs opset 13: a graph with a lower opset is raised to 13 only
//! when it holds no operator whose meaning changed between its opset and 13 (e.g. Softmax's
//! axis, Squeeze/Unsqueeze/Split/ReduceSum moving attributes to inputs, Dropout's ratio, Clip
//! and Pad in 11); otherwise the export fails naming the operator. A Softmax-family node whose
//! axis is its input's last one means the same at every opset (the old 2-D coercion then covers
//! exactly that axis), so it does not stop the raise.
//!
//! Every exported graph carries `quench.version` and `quench.scheme` (the scheme's JSON) in its
//! metadata, and binary exports a `quench.binary` note.

use std::collections::BTreeMap;

use crate::graph::fold::prune_initializers;
use crate::graph::shape::ValueType;
use crate::graph::{Attr, Graph, Node};
use crate::quant::blockwise::quantize_q4;
use crate::quant::builder::Builder;
use crate::quant::calibrate::CalibratedRange;
use crate::quant::layer::{is_quantizable, quantized_output, Layer};
use crate::quant::numerics::{
    binarize_weight, compute_scale_zp, quantize_bias, quantize_weight, QParams, QRange,
    QuantizedWeight,
};
use crate::quant::scheme::{ActQuant, ActType, BinaryActs, Int8Mode, Precision, WeightQuant};
use crate::quant::{QuantError, Scheme};
use crate::tensor::{DataType, Tensor, TensorData};

/// Metadata key holding quench's version.
pub const META_VERSION: &str = "quench.version";
/// Metadata key holding the scheme as JSON.
pub const META_SCHEME: &str = "quench.scheme";
/// Metadata key of the note on how binary weights are stored.
pub const META_BINARY: &str = "quench.binary";
/// The note stored under [`META_BINARY`].
pub const BINARY_NOTE: &str = "binary weights sign(W)*alpha: ORT runs them unpacked, as int8 +/-1 with a per-output-channel DequantizeLinear scale alpha = mean|W|";
pub use crate::graph::shape_int::MS_DOMAIN;

/// Rewrites `graph` by `scheme`. `ranges` maps activation tensors to their calibrated ranges
/// (needed by static INT8 and by binary layers with INT8 activations; see
/// [`crate::quant::probe::calibration_sites`]). Fails naming the layer on anything it cannot
/// rewrite faithfully.
pub fn quantize(
    graph: &Graph,
    scheme: &Scheme,
    ranges: &BTreeMap<String, CalibratedRange>,
) -> Result<Graph, QuantError> {
    quantize_for(graph, scheme, ranges, &[])
}

/// [`quantize`] with the shapes of inputs whose dimensions the model leaves free (e.g. a
/// manifest's input at batch 1): with every shape known, a Softmax of an opset-11 model can be
/// shown to keep its meaning when the export raises the opset to 13.
pub fn quantize_for(
    graph: &Graph,
    scheme: &Scheme,
    ranges: &BTreeMap<String, CalibratedRange>,
    known: &[(String, Vec<usize>)],
) -> Result<Graph, QuantError> {
    scheme.validate()?;
    let mut ex = Exporter {
        b: Builder::new(graph),
        ranges,
        acts: BTreeMap::new(),
        opset: graph.opset,
        pending: BTreeMap::new(),
        uses_ms: false,
        binary: false,
    };
    for node in &graph.nodes {
        if !is_quantizable(node) {
            ex.b.nodes.push(node.clone());
            ex.quantize_pending_output()?;
            continue;
        }
        let (precision, explicit) = scheme.resolve(&node.name, &node.op_type);
        match *precision {
            Precision::Fp32 => ex.b.nodes.push(node.clone()),
            Precision::Int4 { .. } if node.op_type == "Conv" && !explicit => {
                ex.b.nodes.push(node.clone())
            }
            Precision::Int4 {
                group_size,
                symmetric,
                accuracy_level,
            } => {
                let layer = Layer::resolve(graph, node)?;
                ex.nbits(&layer, group_size, symmetric, accuracy_level)?
            }
            Precision::Int8 {
                weights,
                activations,
                mode: Int8Mode::Static { .. },
            } => {
                let layer = Layer::resolve(graph, node)?;
                ex.static_int8(&layer, weights, activations)?;
                if let Some(out) = quantized_output(graph, node) {
                    ex.pending.insert(out.to_string(), activations);
                }
                ex.quantize_pending_output()?;
            }
            Precision::Int8 {
                weights,
                mode: Int8Mode::Dynamic,
                ..
            } => ex.dynamic_int8(&Layer::resolve(graph, node)?, weights)?,
            Precision::Binary { activations } => {
                ex.binary(&Layer::resolve(graph, node)?, activations)?
            }
        }
    }
    let mut out = graph.clone();
    out.nodes = ex.b.nodes;
    out.initializers = ex.b.initializers;
    raise_opset(&mut out, ex.opset, value_types(graph, known).as_ref())?;
    if ex.uses_ms {
        out.extra_opsets.entry(MS_DOMAIN.to_string()).or_insert(1);
    }
    out.metadata.insert(
        META_VERSION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    out.metadata
        .insert(META_SCHEME.to_string(), scheme.to_json());
    if ex.binary {
        out.metadata
            .insert(META_BINARY.to_string(), BINARY_NOTE.to_string());
    }
    prune_initializers(&mut out);
    Ok(out)
}

/// Key of an activation rewrite already inserted: tensor, kind, scale bits, zero point.
type ActKey = (String, &'static str, u32, i32);

struct Exporter<'r> {
    b: Builder,
    ranges: &'r BTreeMap<String, CalibratedRange>,
    /// Activation rewrites already inserted, reused by later consumers.
    acts: BTreeMap<ActKey, Vec<String>>,
    /// Smallest default-domain opset the rewritten graph needs.
    opset: i64,
    /// Static layer outputs (or their Relu's) to quantize once their producer is pushed.
    pending: BTreeMap<String, ActQuant>,
    uses_ms: bool,
    binary: bool,
}

fn scalar(data: TensorData) -> Result<Tensor, QuantError> {
    Ok(Tensor::new(vec![], data)?)
}

impl Exporter<'_> {
    fn need_opset(&mut self, v: i64) {
        self.opset = self.opset.max(v);
    }

    /// Q→DQ on `layer`'s input from its calibrated range; returns the DQ output.
    fn qdq_activation(&mut self, layer: &Layer, act: ActQuant) -> Result<String, QuantError> {
        let x = layer.input;
        let r = *self.ranges.get(x).ok_or_else(|| QuantError::MissingRange {
            layer: layer.node.name.clone(),
            tensor: x.to_string(),
        })?;
        let p = act_params(x, r, act)?;
        let kind = match act.dtype {
            ActType::U8 => "u8",
            ActType::S8 => "s8",
        };
        let key = (x.to_string(), kind, p.scale.to_bits(), p.zero_point);
        if let Some(names) = self.acts.get(&key) {
            return Ok(names[0].clone());
        }
        let dq = self.b.fresh(&format!("{x}_dequantized"));
        self.qdq(x, p, act, dq.clone())?;
        self.acts.insert(key, vec![dq.clone()]);
        Ok(dq)
    }

    /// QuantizeLinear(`x`) → DequantizeLinear → `dq`.
    fn qdq(&mut self, x: &str, p: QParams, act: ActQuant, dq: String) -> Result<(), QuantError> {
        self.need_opset(10);
        let scale = self.b.constant(
            &format!("{x}_scale"),
            scalar(TensorData::F32(vec![p.scale]))?,
        );
        let zp_data = match act.dtype {
            ActType::U8 => TensorData::U8(vec![p.zero_point as u8]),
            ActType::S8 => TensorData::I8(vec![p.zero_point as i8]),
        };
        let zp = self
            .b
            .constant(&format!("{x}_zero_point"), scalar(zp_data)?);
        let q = self.b.fresh(&format!("{x}_quantized"));
        let (s2, z2) = (scale.clone(), zp.clone());
        self.b.node(
            &format!("{x}_QuantizeLinear"),
            "QuantizeLinear",
            "",
            vec![x.to_string(), scale, zp],
            vec![q.clone()],
            vec![],
        );
        self.b.node(
            &format!("{x}_DequantizeLinear"),
            "DequantizeLinear",
            "",
            vec![q, s2, z2],
            vec![dq],
            vec![],
        );
        Ok(())
    }

    /// An s8 weight constant through DequantizeLinear (per-channel along `axis` when there is
    /// more than one set of parameters); returns the DQ output.
    fn dq_weight(
        &mut self,
        layer: &Layer,
        qw: QuantizedWeight,
        per_channel: bool,
    ) -> Result<String, QuantError> {
        let w = layer.weight_name;
        let shape = layer.weight.shape().to_vec();
        let q = self
            .b
            .constant_of(&format!("{w}_quantized"), shape, TensorData::I8(qw.values))?;
        let (scales, zps) = split_params(&qw.params);
        let pshape = if per_channel {
            vec![scales.len()]
        } else {
            vec![]
        };
        let scale = self.b.constant_of(
            &format!("{w}_scale"),
            pshape.clone(),
            TensorData::F32(scales),
        )?;
        let zps = zps.iter().map(|&z| z as i8).collect();
        let zp = self
            .b
            .constant_of(&format!("{w}_zero_point"), pshape, TensorData::I8(zps))?;
        let out = self.b.fresh(&format!("{w}_dequantized"));
        let mut attrs = vec![];
        if per_channel {
            self.need_opset(13);
            attrs.push(("axis", Attr::Int(layer.channel_axis as i64)));
        } else {
            self.need_opset(10);
        }
        self.b.node(
            &format!("{w}_DequantizeLinear"),
            "DequantizeLinear",
            "",
            vec![q, scale, zp],
            vec![out.clone()],
            attrs,
        );
        Ok(out)
    }

    /// A folded bias as i32 (scale `s_x·s_w`) through DequantizeLinear.
    fn dq_bias(
        &mut self,
        layer: &Layer,
        input_scale: f32,
        weight: &[QParams],
    ) -> Result<Option<String>, QuantError> {
        let Some((name, bias)) = layer.bias else {
            return Ok(None);
        };
        let values = bias.as_f32()?;
        let (q, scales) = quantize_bias(&layer.node.name, values, input_scale, weight)?;
        let per_channel = weight.len() > 1;
        let (pshape, scales, zps) = if per_channel {
            (vec![scales.len()], scales, vec![0i32; values.len()])
        } else {
            (
                vec![],
                vec![scales.first().copied().unwrap_or(1.0)],
                vec![0],
            )
        };
        let qn = self.b.constant_of(
            &format!("{name}_quantized"),
            vec![values.len()],
            TensorData::I32(q),
        )?;
        let s = self.b.constant_of(
            &format!("{name}_scale"),
            pshape.clone(),
            TensorData::F32(scales),
        )?;
        let z = self
            .b
            .constant_of(&format!("{name}_zero_point"), pshape, TensorData::I32(zps))?;
        let out = self.b.fresh(&format!("{name}_dequantized"));
        let attrs = if per_channel {
            vec![("axis", Attr::Int(0))]
        } else {
            vec![]
        };
        self.b.node(
            &format!("{name}_DequantizeLinear"),
            "DequantizeLinear",
            "",
            vec![qn, s, z],
            vec![out.clone()],
            attrs,
        );
        Ok(Some(out))
    }

    /// The layer's node with inputs 0..=2 replaced where given.
    fn push_rewired(&mut self, node: &Node, replace: [Option<String>; 3]) {
        let mut n = node.clone();
        for (i, r) in replace.into_iter().enumerate() {
            if let (Some(r), Some(slot)) = (r, n.inputs.get_mut(i)) {
                *slot = r;
            }
        }
        self.b.nodes.push(n);
    }

    fn static_int8(
        &mut self,
        layer: &Layer,
        wq: WeightQuant,
        act: ActQuant,
    ) -> Result<(), QuantError> {
        let x = self.qdq_activation(layer, act)?;
        let sx = act_params(layer.input, self.ranges[layer.input], act)?.scale;
        let axis = wq.per_channel.then_some(layer.channel_axis);
        let qw = quantize_weight(
            layer.weight_name,
            layer.weight_values(),
            layer.weight.shape(),
            axis,
            wq.symmetric,
        )?;
        let params = qw.params.clone();
        let w = self.dq_weight(layer, qw, wq.per_channel)?;
        let bias = self.dq_bias(layer, sx, &params)?;
        self.push_rewired(layer.node, [Some(x), Some(w), bias]);
        Ok(())
    }

    /// When the node just pushed produces a pending static layer output that has a range, Q→DQ
    /// it (renaming the node's output), so that ORT sees DQ→op→Q and runs one integer kernel.
    fn quantize_pending_output(&mut self) -> Result<(), QuantError> {
        let Some(out) = self.b.nodes.last().and_then(|n| n.outputs.first()).cloned() else {
            return Ok(());
        };
        let (Some(act), Some(&r)) = (self.pending.remove(&out), self.ranges.get(&out)) else {
            return Ok(());
        };
        let p = act_params(&out, r, act)?;
        let float = self.b.fresh(&format!("{out}_float"));
        if let Some(n) = self.b.nodes.last_mut() {
            n.outputs[0] = float.clone();
        }
        self.qdq(&float, p, act, out)
    }

    fn binary(&mut self, layer: &Layer, acts: BinaryActs) -> Result<(), QuantError> {
        let x = match acts {
            BinaryActs::Int8 { activations, .. } => self.qdq_activation(layer, activations)?,
            BinaryActs::Binary => self.sign(layer.input),
        };
        let qw = binarize_weight(
            layer.weight_name,
            layer.weight_values(),
            layer.weight.shape(),
            layer.channel_axis,
        )?;
        let w = self.dq_weight(layer, qw, true)?;
        self.binary = true;
        self.push_rewired(layer.node, [Some(x), Some(w), None]);
        Ok(())
    }

    fn sign(&mut self, x: &str) -> String {
        let key = (x.to_string(), "sign", 0, 0);
        if let Some(names) = self.acts.get(&key) {
            return names[0].clone();
        }
        self.need_opset(9);
        let out = self.b.fresh(&format!("{x}_sign"));
        self.b.node(
            &format!("{x}_Sign"),
            "Sign",
            "",
            vec![x.to_string()],
            vec![out.clone()],
            vec![],
        );
        self.acts.insert(key, vec![out.clone()]);
        out
    }

    /// `DynamicQuantizeLinear(x)` → `[x_q, x_scale, x_zero_point]`, shared by consumers.
    fn dynamic_quantize(&mut self, x: &str) -> Vec<String> {
        let key = (x.to_string(), "dynamic", 0, 0);
        if let Some(names) = self.acts.get(&key) {
            return names.clone();
        }
        self.need_opset(11);
        let outs = vec![
            self.b.fresh(&format!("{x}_quantized")),
            self.b.fresh(&format!("{x}_scale")),
            self.b.fresh(&format!("{x}_zero_point")),
        ];
        self.b.node(
            &format!("{x}_DynamicQuantizeLinear"),
            "DynamicQuantizeLinear",
            "",
            vec![x.to_string()],
            outs.clone(),
            vec![],
        );
        self.acts.insert(key, outs.clone());
        outs
    }

    /// Dynamic INT8 Conv as DynamicQuantizeLinear → DequantizeLinear on the activation and an
    /// s8 DequantizeLinear weight into the FP32 Conv: the same integer values as ConvInteger,
    /// which ORT runs several times slower (no fused kernel).
    fn dynamic_conv(&mut self, layer: &Layer, wq: WeightQuant) -> Result<(), QuantError> {
        let axis = wq.per_channel.then_some(layer.channel_axis);
        let qw = quantize_weight(
            layer.weight_name,
            layer.weight_values(),
            layer.weight.shape(),
            axis,
            wq.symmetric,
        )?;
        let w = self.dq_weight(layer, qw, wq.per_channel)?;
        let x = layer.input;
        let key = (x.to_string(), "dynamic-dq", 0, 0);
        let dq = match self.acts.get(&key) {
            Some(names) => names[0].clone(),
            None => {
                let dql = self.dynamic_quantize(x);
                let dq = self.b.fresh(&format!("{x}_dequantized"));
                self.b.node(
                    &format!("{x}_DequantizeLinear"),
                    "DequantizeLinear",
                    "",
                    dql,
                    vec![dq.clone()],
                    vec![],
                );
                self.acts.insert(key, vec![dq.clone()]);
                dq
            }
        };
        self.push_rewired(layer.node, [Some(dq), Some(w), None]);
        Ok(())
    }

    /// Dynamic INT8 Gemm/MatMul: `DynamicQuantizeLinear` → `MatMulInteger` on the s8 `[K, N]`
    /// weight → `Cast` → `Mul` by `s_x·s_w` → `Add` of Gemm's C; ORT fuses the chain into
    /// `DynamicQuantizeMatMul`.
    fn dynamic_int8(&mut self, layer: &Layer, wq: WeightQuant) -> Result<(), QuantError> {
        if layer.node.op_type == "Conv" {
            return self.dynamic_conv(layer, wq);
        }
        let (b, k, n) = layer.matmul_weight()?;
        let qw = quantize_weight(
            layer.weight_name,
            &b,
            &[k, n],
            wq.per_channel.then_some(1),
            wq.symmetric,
        )?;
        let [xq, xs, xzp] = <[String; 3]>::try_from(self.dynamic_quantize(layer.input))
            .map_err(|_| layer.unsupported("internal: DynamicQuantizeLinear outputs"))?;
        let (scales, zps) = split_params(&qw.params);
        let pshape = if wq.per_channel { vec![n] } else { vec![] };
        let wname = layer.weight_name;
        let wq_name = self.b.constant_of(
            &format!("{wname}_quantized"),
            vec![k, n],
            TensorData::I8(qw.values),
        )?;
        let wzp = self.b.constant_of(
            &format!("{wname}_zero_point"),
            pshape.clone(),
            TensorData::I8(zps.iter().map(|&z| z as i8).collect()),
        )?;
        let ws = self
            .b
            .constant_of(&format!("{wname}_scale"), pshape, TensorData::F32(scales))?;
        let name = &layer.node.name;
        let acc = self.b.fresh(&format!("{name}_int32"));
        self.b.node(
            &format!("{name}_MatMulInteger"),
            "MatMulInteger",
            "",
            vec![xq, wq_name, xzp, wzp],
            vec![acc.clone()],
            vec![],
        );
        let accf = self.b.fresh(&format!("{name}_int32_float"));
        self.b.node(
            &format!("{name}_Cast"),
            "Cast",
            "",
            vec![acc],
            vec![accf.clone()],
            vec![("to", Attr::Int(i64::from(DataType::F32.onnx_code())))],
        );
        let s = self.b.fresh(&format!("{name}_scales"));
        self.b.node(
            &format!("{name}_scales_Mul"),
            "Mul",
            "",
            vec![xs, ws],
            vec![s.clone()],
            vec![],
        );
        self.mul_add_bias(layer, accf, s)
    }

    /// `Mul(x, y)`, then `Add` of the Gemm's C when it has one, into the layer's output.
    fn mul_add_bias(&mut self, layer: &Layer, x: String, y: String) -> Result<(), QuantError> {
        self.emit_with_bias(layer, "Mul", "", vec![x, y], vec![]);
        Ok(())
    }

    /// Emits the layer's computation as one `op_type` node on `inputs`, then `Add` of the Gemm's
    /// C when it has one, so that the result lands in the layer's original output name.
    fn emit_with_bias(
        &mut self,
        layer: &Layer,
        op_type: &str,
        domain: &str,
        inputs: Vec<String>,
        attrs: Vec<(&str, Attr)>,
    ) {
        let name = &layer.node.name;
        let out = layer.node.outputs.first().cloned().unwrap_or_default();
        let bias = layer.node.input(2).map(str::to_string);
        let result = match bias {
            Some(_) => self.b.fresh(&format!("{name}_{op_type}_out")),
            None => out.clone(),
        };
        self.b.node(
            &format!("{name}_{op_type}"),
            op_type,
            domain,
            inputs,
            vec![result.clone()],
            attrs,
        );
        if let Some(bias) = bias {
            self.b.node(
                &format!("{name}_bias_Add"),
                "Add",
                "",
                vec![result, bias],
                vec![out],
                vec![],
            );
        }
    }

    fn nbits(
        &mut self,
        layer: &Layer,
        group: usize,
        symmetric: bool,
        accuracy_level: Option<i64>,
    ) -> Result<(), QuantError> {
        if layer.node.op_type == "Conv" {
            return Err(layer.unsupported(
                "ORT has no 4-bit convolution (MatMulNBits is a MatMul): give Convs FP32 or INT8",
            ));
        }
        let (b, k, n) = layer.matmul_weight()?;
        let q = quantize_q4(layer.weight_name, &b, k, n, group, symmetric)?;
        let nb = q.n_blocks();
        let wname = layer.weight_name;
        let data = self.b.constant_of(
            &format!("{wname}_Q4"),
            vec![n, nb, group / 2],
            TensorData::U8(q.data),
        )?;
        let scales = self.b.constant_of(
            &format!("{wname}_scales"),
            vec![n * nb],
            TensorData::F32(q.scales),
        )?;
        let mut inputs = vec![layer.input.to_string(), data, scales];
        if let Some(z) = q.zero_points {
            let len = z.len();
            inputs.push(self.b.constant_of(
                &format!("{wname}_zero_points"),
                vec![len],
                TensorData::U8(z),
            )?);
        }
        let mut attrs = vec![
            ("K", Attr::Int(k as i64)),
            ("N", Attr::Int(n as i64)),
            ("bits", Attr::Int(4)),
            ("block_size", Attr::Int(group as i64)),
        ];
        if let Some(l) = accuracy_level {
            attrs.push(("accuracy_level", Attr::Int(l)));
        }
        self.emit_with_bias(layer, "MatMulNBits", MS_DOMAIN, inputs, attrs);
        self.uses_ms = true;
        Ok(())
    }
}

/// Scale and zero point of an activation with calibrated range `r` on `act`'s grid.
fn act_params(name: &str, r: CalibratedRange, act: ActQuant) -> Result<QParams, QuantError> {
    let grid = QRange::for_type(act.dtype, act.symmetric);
    compute_scale_zp(name, r.min, r.max, grid, act.symmetric)
}

fn split_params(params: &[QParams]) -> (Vec<f32>, Vec<i32>) {
    params.iter().map(|p| (p.scale, p.zero_point)).unzip()
}

/// Operators whose meaning changed at the given opset (so a graph below it cannot simply be
/// declared at or above it).
const CHANGED: [(i64, &[&str]); 4] = [
    (10, &["Upsample", "Slice", "Dropout"]),
    (11, &["Clip", "Pad", "Resize", "Scatter"]),
    (12, &["Dropout"]),
    (
        13,
        &[
            "Softmax",
            "LogSoftmax",
            "Hardmax",
            "Squeeze",
            "Unsqueeze",
            "Split",
            "ReduceSum",
        ],
    ),
];

/// Raises `graph`'s opset to `needed` when the graph's operators keep their meaning.
/// `types` are the FP32 graph's value types (the rewrite keeps the names of the nodes that
/// matter here, none of which it touches).
fn raise_opset(
    graph: &mut Graph,
    needed: i64,
    types: Option<&BTreeMap<String, ValueType>>,
) -> Result<(), QuantError> {
    let from = graph.opset;
    if needed <= from {
        return Ok(());
    }
    if from < 9 {
        return Err(QuantError::graph(
            &graph.name,
            format!("opset {from} is too old to raise to {needed} safely; convert the model to opset 13 first"),
        ));
    }
    for (at, ops) in CHANGED {
        if from < at && at <= needed {
            if let Some(n) = graph.nodes.iter().find(|n| {
                n.domain.is_empty()
                    && ops.contains(&n.op_type.as_str())
                    && !(at == 13 && reduces_last_axis(n, from, types))
            }) {
                return Err(QuantError::Unsupported {
                    layer: n.name.clone(),
                    op_type: n.op_type.clone(),
                    message: format!(
                        "the export needs opset {needed} but the model is opset {from}, and {} changed meaning in opset {at}; convert the model first",
                        n.op_type
                    ),
                });
            }
        }
    }
    graph.opset = needed;
    Ok(())
}

/// The type of every value of `graph` at batch 1 with the `known` input shapes, when its shapes
/// can be worked out.
fn value_types(
    graph: &Graph,
    known: &[(String, Vec<usize>)],
) -> Option<BTreeMap<String, ValueType>> {
    crate::engine::fold_and_infer(graph, 1, known)
        .ok()
        .map(|(_, types)| types)
}

/// Whether `node`, a Softmax/LogSoftmax/Hardmax of a graph at `opset` below 13, works on its
/// input's last axis, where the opset-13 meaning (one axis) and the older one (everything from
/// the axis on) agree. Unknown shapes answer no.
fn reduces_last_axis(node: &Node, opset: i64, types: Option<&BTreeMap<String, ValueType>>) -> bool {
    if !matches!(node.op_type.as_str(), "Softmax" | "LogSoftmax" | "Hardmax") {
        return false;
    }
    let Some(rank) = node
        .input(0)
        .and_then(|x| types?.get(x))
        .map(|t| t.shape.len() as i64)
    else {
        return false;
    };
    let default = if opset >= 13 { -1 } else { 1 };
    match node.attr_int("axis", default) {
        Ok(axis) => rank > 0 && (axis == -1 || axis == rank - 1),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testing::{graph, node};
    use crate::graph::Dim;
    use crate::quant::scheme::{LayerMatch, Override};
    use crate::quant::Calibration;

    /// x [1, 64] → Gemm(W [3, 64], b [3], transB) → h → Softmax → y.
    fn gemm_graph(opset: i64) -> Graph {
        let mut gemm = node("Gemm", "fc", &["x", "w", "b"], &["h"]);
        gemm.attrs.insert("transB".into(), Attr::Int(1));
        let w: Vec<f32> = (0..192)
            .map(|i| ((i * 37) % 19) as f32 / 10.0 - 0.9)
            .collect();
        graph(
            opset,
            vec![gemm, node("Softmax", "sm", &["h"], &["y"])],
            vec![
                ("w", Tensor::from_f32(vec![3, 64], w).unwrap()),
                (
                    "b",
                    Tensor::from_f32(vec![3], vec![0.5, -0.25, 0.0]).unwrap(),
                ),
            ],
        )
    }

    fn ranges() -> BTreeMap<String, CalibratedRange> {
        [(
            "x".to_string(),
            CalibratedRange {
                min: -1.0,
                max: 3.0,
            },
        )]
        .into()
    }

    #[test]
    fn static_qdq_structure_bias_and_metadata() {
        let scheme = Scheme::int8_static(true, Calibration::MinMax);
        let q = quantize(&gemm_graph(13), &scheme, &ranges()).unwrap();
        let ops: Vec<&str> = q.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "QuantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "Gemm",
                "Softmax"
            ]
        );
        assert_eq!(q.nodes[2].attrs.get("axis"), Some(&Attr::Int(0)));
        // x scale 4/255; bias 0.5 / (4/255 · s_w[0]).
        let sx = q.initializers["x_scale"].as_f32().unwrap()[0];
        let sw = q.initializers["w_scale"].as_f32().unwrap()[0];
        let TensorData::I32(b) = q.initializers["b_quantized"].data() else {
            panic!()
        };
        assert_eq!(b[0], (0.5 / (sx * sw)).round_ties_even() as i32);
        assert_eq!(q.metadata[META_SCHEME], scheme.to_json());
        assert!(!q.initializers.contains_key("w"), "float weight pruned");
        assert_eq!(q.opset, 13);
    }

    #[test]
    fn missing_range_and_explicit_unsupported_are_errors_naming_the_layer() {
        let scheme = Scheme::int8_static(false, Calibration::MinMax);
        let err = quantize(&gemm_graph(13), &scheme, &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(&err, QuantError::MissingRange { layer, tensor } if layer == "fc" && tensor == "x")
        );
        let mut g = gemm_graph(13);
        g.initializers.remove("w");
        let err = quantize(&g, &Scheme::int4(32, true), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("`fc`") && err.to_string().contains("not a constant"));
        let mut bad = ranges();
        bad.insert(
            "x".into(),
            CalibratedRange {
                min: f32::NAN,
                max: 1.0,
            },
        );
        let err = quantize(&gemm_graph(13), &scheme, &bad).unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
    }

    #[test]
    fn opset_is_raised_only_when_meanings_stay() {
        let scheme = Scheme::int8_static(true, Calibration::MinMax);
        let err = quantize(&gemm_graph(11), &scheme, &ranges()).unwrap_err();
        assert!(err.to_string().contains("`sm`") && err.to_string().contains("Softmax"));
        let mut g = gemm_graph(11);
        g.nodes[1] = node("Relu", "r", &["h"], &["y"]);
        assert_eq!(quantize(&g, &scheme, &ranges()).unwrap().opset, 13);
        // With shapes known, a Softmax over its input's last axis means the same at 13; over an
        // earlier axis it does not.
        let mut shaped = gemm_graph(11);
        shaped.inputs[0].shape = Some(vec![Dim::Symbolic("n".into()), Dim::Fixed(64)]);
        assert_eq!(quantize(&shaped, &scheme, &ranges()).unwrap().opset, 13);
        shaped.nodes[1].attrs.insert("axis".into(), Attr::Int(0));
        let err = quantize(&shaped, &scheme, &ranges()).unwrap_err();
        assert!(err.to_string().contains("`sm`"), "{err}");
        // Per-tensor needs only opset 10: nothing to raise.
        let per_tensor = Scheme::int8_static(false, Calibration::MinMax);
        assert_eq!(
            quantize(&gemm_graph(11), &per_tensor, &ranges())
                .unwrap()
                .opset,
            11
        );
    }

    #[test]
    fn int4_gemm_becomes_matmulnbits_plus_add() {
        let q = quantize(&gemm_graph(13), &Scheme::int4(32, false), &BTreeMap::new()).unwrap();
        let mm = &q.nodes[0];
        assert_eq!(
            (mm.op_type.as_str(), mm.domain.as_str()),
            ("MatMulNBits", MS_DOMAIN)
        );
        assert_eq!(mm.attrs["K"], Attr::Int(64));
        assert_eq!(mm.attrs["N"], Attr::Int(3));
        assert_eq!(mm.attrs["block_size"], Attr::Int(32));
        assert_eq!(mm.inputs.len(), 4);
        assert_eq!(q.initializers[&mm.inputs[1]].shape(), &[3, 2, 16]);
        assert_eq!(q.nodes[1].op_type, "Add");
        assert_eq!(q.nodes[1].outputs, vec!["h".to_string()]);
        assert_eq!(q.extra_opsets[MS_DOMAIN], 1);
    }

    #[test]
    fn int4_on_conv_stays_fp32_by_default_and_is_refused_when_asked() {
        let mut g = gemm_graph(13);
        g.initializers.insert(
            "k".into(),
            Tensor::from_f32(vec![2, 1, 1, 1], vec![1.0, -1.0]).unwrap(),
        );
        g.nodes
            .insert(0, node("Conv", "conv", &["img", "k"], &["x"]));
        let q = quantize(&g, &Scheme::int4(32, true), &BTreeMap::new()).unwrap();
        assert_eq!(q.nodes[0].op_type, "Conv");
        let mut scheme = Scheme::int4(32, true);
        scheme.overrides.push(Override {
            layers: LayerMatch {
                node: Some("conv".into()),
                op_type: None,
            },
            precision: scheme.default,
        });
        let err = quantize(&g, &scheme, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("`conv` (Conv): ORT has no 4-bit"),
            "{err}"
        );
    }

    #[test]
    fn dynamic_gemm_is_matmulinteger_on_the_transposed_weight() {
        let q = quantize(&gemm_graph(13), &Scheme::int8_dynamic(), &BTreeMap::new()).unwrap();
        let ops: Vec<&str> = q.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "DynamicQuantizeLinear",
                "MatMulInteger",
                "Cast",
                "Mul",
                "Mul",
                "Add",
                "Softmax"
            ]
        );
        assert_eq!(q.initializers[&q.nodes[1].inputs[1]].shape(), &[64, 3]);
    }

    #[test]
    fn binary_weights_are_sign_with_alpha_and_noted() {
        let scheme = Scheme::uniform(Precision::Binary {
            activations: BinaryActs::Binary,
        });
        let q = quantize(&gemm_graph(13), &scheme, &BTreeMap::new()).unwrap();
        assert_eq!(q.nodes[0].op_type, "Sign");
        let TensorData::I8(w) = q.initializers["w_quantized"].data() else {
            panic!()
        };
        assert!(w.iter().all(|&v| v == 1 || v == -1));
        assert_eq!(q.metadata[META_BINARY], BINARY_NOTE);
    }
}
