//! Elementwise work on quantized values without an f32 round trip through the arena: the nodes
//! [`crate::engine::fuse_qelem`] folds `DequantizeLinear → f32 op → QuantizeLinear` chains into.
//!
//! Every kernel here computes the same f32 operations, in the same order, as the unfused steps
//! it replaces, so its results are the same bits; it only keeps the intermediate values in
//! registers instead of writing a 4-byte f32 per element between steps:
//! * [`QElem::Lookup`]: a table of the 256 results the unfused chain gives (built at plan time
//!   by running the engine's own kernels on the 256 possible inputs), [`crate::kernels::lut`];
//! * [`QElem::Binary`]: `Q(DQ(a) + DQ(b))`, `Q(DQ(a) · DQ(b))`, or with an f32 operand;
//! * [`QElem::GlobalAverage`]: the plane means of `DQ(x)`, dequantizing inside the sums.

use bytemuck::cast_slice;

use super::integer::{low_byte, quantize_value};
use super::pool::global_average_by;
use super::quantized::{bytes, bytes_mut, QType};
use crate::graph::qdq::{self, QBinaryInputs};
use crate::graph::shape::ValueType;
use crate::graph::{GraphError, Node};
use crate::tensor::{DataType, Tensor, TensorData};

/// One compiled elementwise quantized node.
#[derive(Debug, Clone)]
pub enum QElem {
    /// `out[i] = table[x[i]]` over `len` bytes ([`qdq::QLOOKUP`]).
    Lookup {
        /// Result for each input byte.
        table: Box<[u8; 256]>,
        /// Elements.
        len: usize,
        /// The input type (for the kernel name; the table is indexed by the byte either way).
        input: QType,
    },
    /// [`qdq::QADD`] / [`qdq::QMUL`].
    Binary(Box<QBinary>),
    /// [`qdq::QGLOBAL_AVERAGE_POOL`]: planes of `size` elements of a per-tensor quantized value.
    GlobalAverage {
        /// Elements per plane.
        size: usize,
        /// Input elements.
        len: usize,
        /// How the input is read (never [`Operand::F32`]).
        x: Operand,
    },
}

/// How an operand is read: quantized per tensor (dequantized as `DequantizeLinear` does), a
/// byte mapped through a table of the f32 values it stands for, or f32.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// An f32 value.
    F32,
    /// A u8/i8 value with its scale and zero point.
    Quantized {
        /// Element type.
        ty: QType,
        /// Scale.
        scale: f32,
        /// Zero point.
        zero: i32,
    },
    /// A u8/i8 value whose byte `b` stands for `table[b]` (a dequantization followed by
    /// single-input f32 ops, evaluated at plan time).
    Table(Box<[f32; 256]>),
    /// A u8/i8 value dequantized and mapped through `f`, computed inline (vectorized) because
    /// it gave exactly the bits of the operand's table on all 256 bytes.
    Mapped {
        /// Element type.
        ty: QType,
        /// Scale.
        scale: f32,
        /// Zero point.
        zero: i32,
        /// The function.
        f: Mapped,
        /// The same values as a table, for loops that read this operand through one.
        table: Box<[f32; 256]>,
    },
}

/// The single-input f32 functions an operand can apply inline: the expressions of the engine's
/// own elementwise kernels ([`super::elementwise::Unary`]), checked bit for bit at plan time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mapped {
    /// `x · clamp(x/6 + 1/2, 0, 1)`.
    HardSwish,
    /// `clamp(alpha·x + beta, 0, 1)`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
}

impl Mapped {
    /// Attribute of a fused node giving the inline form of its first operand:
    /// `[scale, zero point, kind, alpha, beta]`, kind 0 HardSwish, 1 HardSigmoid.
    pub const ATTR: &'static str = "quench_inline";

    /// Lowercase name, for kernel names.
    pub fn name(self) -> &'static str {
        match self {
            Mapped::HardSwish => "hardswish",
            Mapped::HardSigmoid { .. } => "hardsigmoid",
        }
    }

    /// Applies the function.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Mapped::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Mapped::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        }
    }

    /// The attribute value ([`Mapped::ATTR`]) for this function after a dequantization.
    pub fn encode(self, scale: f32, zero: i32) -> Vec<f32> {
        let (kind, alpha, beta) = match self {
            Mapped::HardSwish => (0.0, 0.0, 0.0),
            Mapped::HardSigmoid { alpha, beta } => (1.0, alpha, beta),
        };
        vec![scale, zero as f32, kind, alpha, beta]
    }

    /// The inline operand `node`'s [`Mapped::ATTR`] describes for a value of type `ty` read
    /// through `table`, when it gives the table's bits on every byte; `None` otherwise.
    fn operand(node: &Node, ty: QType, table: &[f32; 256]) -> Option<Operand> {
        let Some(crate::graph::Attr::Floats(v)) = node.attrs.get(Mapped::ATTR) else {
            return None;
        };
        let [scale, zero, kind, alpha, beta] = v[..] else {
            return None;
        };
        let f = match kind {
            0.0 => Mapped::HardSwish,
            1.0 => Mapped::HardSigmoid { alpha, beta },
            _ => return None,
        };
        let zero = zero as i32;
        let deq = |b: u8| {
            let q = match ty {
                QType::U8 => i32::from(b),
                QType::S8 => i32::from(b as i8),
            };
            (q - zero) as f32 * scale
        };
        let exact =
            (0..=255u8).all(|b| f.apply(deq(b)).to_bits() == table[usize::from(b)].to_bits());
        exact.then(|| Operand::Mapped {
            ty,
            scale,
            zero,
            f,
            table: Box::new(*table),
        })
    }
}

/// Binds `$x` to operand `$op`'s elements (the first `$n` of arena slice `$data`) and `$f` to
/// the function reading one as f32, then evaluates `$body` (monomorphized per operand form).
/// With `inline`, an [`Operand::Mapped`] operand is computed inline; without, through its table.
macro_rules! with_operand {
    (inline $op:expr, $data:expr, $n:expr, |$x:ident, $f:ident| $body:expr) => {
        match $op {
            Operand::Mapped {
                ty: QType::U8,
                scale,
                zero,
                f: Mapped::HardSwish,
                ..
            } => {
                let (s, z) = (*scale, *zero);
                let $x: &[u8] = &bytes($data)[..$n];
                let $f = move |v: u8| Mapped::HardSwish.apply((i32::from(v) - z) as f32 * s);
                $body
            }
            Operand::Mapped {
                ty: QType::U8,
                scale,
                zero,
                f: Mapped::HardSigmoid { alpha, beta },
                ..
            } => {
                let (s, z, alpha, beta) = (*scale, *zero, *alpha, *beta);
                let $x: &[u8] = &bytes($data)[..$n];
                let $f = move |v: u8| {
                    Mapped::HardSigmoid { alpha, beta }.apply((i32::from(v) - z) as f32 * s)
                };
                $body
            }
            Operand::Mapped {
                ty: QType::S8,
                scale,
                zero,
                f: Mapped::HardSwish,
                ..
            } => {
                let (s, z) = (*scale, *zero);
                let $x: &[i8] = cast_slice(&bytes($data)[..$n]);
                let $f = move |v: i8| Mapped::HardSwish.apply((i32::from(v) - z) as f32 * s);
                $body
            }
            Operand::Mapped {
                ty: QType::S8,
                scale,
                zero,
                f: Mapped::HardSigmoid { alpha, beta },
                ..
            } => {
                let (s, z, alpha, beta) = (*scale, *zero, *alpha, *beta);
                let $x: &[i8] = cast_slice(&bytes($data)[..$n]);
                let $f = move |v: i8| {
                    Mapped::HardSigmoid { alpha, beta }.apply((i32::from(v) - z) as f32 * s)
                };
                $body
            }
            other => with_operand!(other, $data, $n, |$x, $f| $body),
        }
    };
    ($op:expr, $data:expr, $n:expr, |$x:ident, $f:ident| $body:expr) => {
        match $op {
            Operand::F32 => {
                let $x: &[f32] = &$data[..$n];
                let $f = |v: f32| v;
                $body
            }
            Operand::Quantized {
                ty: QType::U8,
                scale,
                zero,
            } => {
                let (s, z) = (*scale, *zero);
                let $x: &[u8] = &bytes($data)[..$n];
                let $f = move |v: u8| (i32::from(v) - z) as f32 * s;
                $body
            }
            Operand::Quantized {
                ty: QType::S8,
                scale,
                zero,
            } => {
                let (s, z) = (*scale, *zero);
                let $x: &[i8] = cast_slice(&bytes($data)[..$n]);
                let $f = move |v: i8| (i32::from(v) - z) as f32 * s;
                $body
            }
            Operand::Table(t) | Operand::Mapped { table: t, .. } => {
                let t: &[f32; 256] = t;
                let $x: &[u8] = &bytes($data)[..$n];
                let $f = move |v: u8| t[usize::from(v)];
                $body
            }
        }
    };
}

/// The arithmetic of a [`QBinary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QOp {
    /// `a + b`.
    Add,
    /// `a · b`.
    Mul,
}

/// `Q(a op b)`: `a` of `outer · inner` elements; `b` the same size, or `outer` values each
/// broadcast over an `inner`-element plane of `a`.
#[derive(Debug, Clone)]
pub struct QBinary {
    op: QOp,
    a: Operand,
    b: Operand,
    outer: usize,
    inner: usize,
    /// `b` holds one value per plane.
    per_plane: bool,
    /// Output scale, zero point and type.
    y_scale: f32,
    y_zero: i32,
    y: QType,
}

/// Operands and output parameters of one binary loop.
#[derive(Clone, Copy)]
struct BinArgs {
    op: QOp,
    sy: f32,
    zy: f32,
    lo: f32,
    hi: f32,
    inner: usize,
    per_plane: bool,
}

/// Elements converted to f32 at a time: an operand read through a table is loaded element by
/// element into a block, and the arithmetic and quantization then run vectorized over it.
const BLOCK: usize = 64;

#[inline(always)]
fn binary_body<A: Copy, B: Copy>(
    p: BinArgs,
    a: &[A],
    fa: impl Fn(A) -> f32 + Copy,
    b: &[B],
    fb: impl Fn(B) -> f32 + Copy,
    out: &mut [u8],
) {
    let q = |v: f32| low_byte(quantize_value(v, p.sy, p.zy, p.lo, p.hi));
    let mut va = [0.0f32; BLOCK];
    let mut vb = [0.0f32; BLOCK];
    macro_rules! each {
        ($f:expr) => {
            if p.per_plane {
                for ((o, a), &b) in out
                    .chunks_mut(p.inner.max(1))
                    .zip(a.chunks(p.inner.max(1)))
                    .zip(b)
                {
                    let y = fb(b);
                    for (o, a) in o.chunks_mut(BLOCK).zip(a.chunks(BLOCK)) {
                        for (v, &x) in va.iter_mut().zip(a) {
                            *v = fa(x);
                        }
                        for (o, &x) in o.iter_mut().zip(&va) {
                            *o = q($f(x, y));
                        }
                    }
                }
            } else {
                for ((o, a), b) in out
                    .chunks_mut(BLOCK)
                    .zip(a.chunks(BLOCK))
                    .zip(b.chunks(BLOCK))
                {
                    for (v, &x) in va.iter_mut().zip(a) {
                        *v = fa(x);
                    }
                    for (v, &x) in vb.iter_mut().zip(b) {
                        *v = fb(x);
                    }
                    for ((o, &x), &y) in o.iter_mut().zip(&va).zip(&vb) {
                        *o = q($f(x, y));
                    }
                }
            }
        };
    }
    match p.op {
        QOp::Add => each!(|x: f32, y: f32| x + y),
        QOp::Mul => each!(|x: f32, y: f32| x * y),
    }
}

/// [`binary_body`] compiled for AVX2 where the CPU has it (rounding is then one instruction),
/// portable otherwise.
fn binary_loop<A: Copy, B: Copy>(
    p: BinArgs,
    a: &[A],
    fa: impl Fn(A) -> f32 + Copy,
    b: &[B],
    fb: impl Fn(B) -> f32 + Copy,
    out: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<A: Copy, B: Copy>(
            p: BinArgs,
            a: &[A],
            fa: impl Fn(A) -> f32 + Copy,
            b: &[B],
            fb: impl Fn(B) -> f32 + Copy,
            out: &mut [u8],
        ) {
            binary_body(p, a, fa, b, fb, out)
        }
        if crate::kernels::isa().has_avx2() {
            // SAFETY: `isa()` reports AVX2 only after detecting AVX2 and FMA on this CPU.
            unsafe { avx2(p, a, fa, b, fb, out) };
            return;
        }
    }
    binary_body(p, a, fa, b, fb, out)
}

impl Operand {
    /// The operand of input `x` with scale input `s` and zero point input `z` of `node`; with
    /// `inline`, a table operand the node's [`Mapped::ATTR`] describes exactly is computed
    /// inline instead.
    fn of(
        node: &Node,
        x: &ValueType,
        s: usize,
        z: usize,
        consts: &[Option<&Tensor>],
        inline: bool,
    ) -> Result<Operand, GraphError> {
        if node.input(s).is_none() {
            return match x.dtype {
                DataType::F32 => Ok(Operand::F32),
                t => Err(node.error(format!("an operand without a scale must be f32, not {t}"))),
            };
        }
        let ty = QType::of(x.dtype).ok_or_else(|| {
            node.error(format!("a quantized operand is u8 or i8, not {}", x.dtype))
        })?;
        let scale = match consts.get(s).copied().flatten().map(Tensor::as_f32) {
            Some(Ok([v])) if v.is_finite() && *v > 0.0 => *v,
            Some(Ok(t)) if t.len() == 256 => {
                let mut table = Box::new([0.0; 256]);
                table.copy_from_slice(t);
                let inline = inline.then(|| Mapped::operand(node, ty, &table)).flatten();
                return Ok(inline.unwrap_or(Operand::Table(table)));
            }
            _ => {
                return Err(node.error(
                    "an operand scale must be one finite positive f32, or a table of 256 f32",
                ))
            }
        };
        let zero = zero_point(node, z, consts)?.0;
        Ok(Operand::Quantized { ty, scale, zero })
    }
}

/// The zero point at input `i` (0 and u8 when omitted) and its type.
fn zero_point(
    node: &Node,
    i: usize,
    consts: &[Option<&Tensor>],
) -> Result<(i32, QType), GraphError> {
    if node.input(i).is_none() {
        return Ok((0, QType::U8));
    }
    match consts.get(i).copied().flatten().map(Tensor::data) {
        Some(TensorData::U8(v)) if v.len() == 1 => Ok((i32::from(v[0]), QType::U8)),
        Some(TensorData::I8(v)) if v.len() == 1 => Ok((i32::from(v[0]), QType::S8)),
        _ => Err(node.error(format!("zero point {i} must be one constant u8 or i8"))),
    }
}

impl QElem {
    /// Compiles a node of [`qdq::QLOOKUP`], [`qdq::QADD`], [`qdq::QMUL`] or
    /// [`qdq::QGLOBAL_AVERAGE_POOL`]; `None` for any other node.
    pub fn compile(
        node: &Node,
        types: &[Option<&ValueType>],
        consts: &[Option<&Tensor>],
    ) -> Result<Option<QElem>, GraphError> {
        if node.domain != qdq::DOMAIN {
            return Ok(None);
        }
        let ty = |i: usize| crate::graph::shape::need(node, types, i);
        Ok(Some(match node.op_type.as_str() {
            qdq::QLOOKUP => {
                let x = ty(0)?;
                let input = QType::of(x.dtype).ok_or_else(|| {
                    node.error(format!("input is {}, expected u8 or i8", x.dtype))
                })?;
                let bytes: Vec<u8> = match consts.get(1).copied().flatten().map(Tensor::data) {
                    Some(TensorData::U8(v)) => v.clone(),
                    Some(TensorData::I8(v)) => v.iter().map(|&b| b as u8).collect(),
                    _ => return Err(node.error("the table must be a u8 or i8 constant")),
                };
                let table: Box<[u8; 256]> = bytes
                    .into_boxed_slice()
                    .try_into()
                    .map_err(|_| node.error("the table must hold 256 entries"))?;
                QElem::Lookup {
                    table,
                    len: x.numel(),
                    input,
                }
            }
            op @ (qdq::QADD | qdq::QMUL) => {
                let l = QBinaryInputs::LAYOUT;
                let (ta, tb) = (ty(l.a)?, ty(l.b)?);
                let a = Operand::of(node, ta, l.a_scale, l.a_zero, consts, true)?;
                let b = Operand::of(node, tb, l.b_scale, l.b_zero, consts, false)?;
                let outer = plane_outer(&tb.shape, &ta.shape).ok_or_else(|| {
                    node.error(format!(
                        "b {:?} must have a's shape {:?} or one value per leading plane",
                        tb.shape, ta.shape
                    ))
                })?;
                let per_plane = tb.shape != ta.shape;
                let (outer, inner) = if per_plane {
                    (outer, ta.numel() / outer.max(1))
                } else {
                    (1, ta.numel())
                };
                let y_scale = match consts.get(l.y_scale).copied().flatten().map(Tensor::as_f32) {
                    Some(Ok([v])) if v.is_finite() && *v > 0.0 => *v,
                    _ => return Err(node.error("the output scale must be one finite positive f32")),
                };
                let (y_zero, y) = zero_point(node, l.y_zero, consts)?;
                QElem::Binary(Box::new(QBinary {
                    op: if op == qdq::QADD { QOp::Add } else { QOp::Mul },
                    a,
                    b,
                    outer,
                    inner,
                    per_plane,
                    y_scale,
                    y_zero,
                    y,
                }))
            }
            qdq::QGLOBAL_AVERAGE_POOL => {
                let x = ty(0)?;
                let op = Operand::of(node, x, 1, 2, consts, true)?;
                if op == Operand::F32 {
                    return Err(node.error("the input must be quantized"));
                }
                QElem::GlobalAverage {
                    size: x.shape.get(2..).unwrap_or(&[]).iter().product(),
                    len: x.numel(),
                    x: op,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// Name of the compute kernel, for records and the step profile.
    pub fn kernel_name(&self) -> String {
        let prefix = |t: QType| match t {
            QType::U8 => "u8",
            QType::S8 => "i8",
        };
        match self {
            QElem::Lookup { input, .. } => {
                format!("{}-{}", prefix(*input), crate::kernels::lut::kernel_name())
            }
            QElem::Binary(b) => {
                let op = match b.op {
                    QOp::Add => "qlinear-add",
                    QOp::Mul => "qlinear-mul",
                };
                let mut notes = Vec::new();
                if let Operand::Mapped { f, .. } = &b.a {
                    notes.push(format!("{} a", f.name()));
                }
                if b.per_plane {
                    notes.push("per-plane b".into());
                }
                if notes.is_empty() {
                    op.into()
                } else {
                    format!("{op} ({})", notes.join(", "))
                }
            }
            QElem::GlobalAverage { x, .. } => match x {
                Operand::Quantized { ty, .. } => format!("{}-global-average", prefix(*ty)),
                Operand::Table(_) => "u8-lut-global-average".into(),
                Operand::Mapped { ty, f, .. } => {
                    format!("{}-{}-global-average", prefix(*ty), f.name())
                }
                Operand::F32 => "f32-pool-direct".into(),
            },
        }
    }

    /// Runs on arena slices: u8/i8 values packed, f32 values plain.
    pub fn run(&self, ins: &[&[f32]], out: &mut [f32]) {
        let x = ins.first().copied().unwrap_or(&[]);
        match self {
            QElem::Lookup { table, len, .. } => {
                crate::kernels::lut::lookup(table, &bytes(x)[..*len], &mut bytes_mut(out)[..*len])
            }
            QElem::Binary(b) => b.run(x, ins.get(3).copied().unwrap_or(&[]), out),
            QElem::GlobalAverage { size, len, x: op } => {
                with_operand!(inline op, x, *len, |xs, f| global_average_by(xs, *size, out, f))
            }
        }
    }
}

/// When `b` has `a`'s shape, or (aligned from the right) equals `a` on its leading axes and is
/// 1 on the others: the number of values of `b` (each over one trailing plane of `a`).
pub fn plane_outer(b: &[usize], a: &[usize]) -> Option<usize> {
    if b.len() > a.len() {
        return None;
    }
    let padded: Vec<usize> = std::iter::repeat_n(1, a.len() - b.len())
        .chain(b.iter().copied())
        .collect();
    let lead = padded.iter().zip(a).take_while(|(x, y)| x == y).count();
    padded[lead..]
        .iter()
        .all(|&d| d == 1)
        .then(|| a[..lead].iter().product())
}

impl QBinary {
    fn run(&self, a: &[f32], b: &[f32], out: &mut [f32]) {
        let n = self.outer * self.inner;
        let nb = if self.per_plane { self.outer } else { n };
        let (lo, hi) = match self.y {
            QType::U8 => (0.0, 255.0),
            QType::S8 => (-128.0, 127.0),
        };
        let p = BinArgs {
            op: self.op,
            sy: self.y_scale,
            zy: self.y_zero as f32,
            lo,
            hi,
            inner: self.inner,
            per_plane: self.per_plane,
        };
        let o = &mut bytes_mut(out)[..n];
        with_operand!(inline & self.a, a, n, |xa, fa| {
            with_operand!(&self.b, b, nb, |xb, fb| binary_loop(p, xa, fa, xb, fb, o))
        })
    }
}
