//! Planning (passes, shapes, packing, fusion, arena layout) and running.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::ThreadPool;

use super::ops::quantized::{bytes, storage_len, QType};
use super::ops::{eval_node, fusable_activation, Kernel};
use crate::graph::fold::fold_constants;
use crate::graph::qdq::{fold_constant_quantize, fuse_qdq};
use crate::graph::shape::{infer_shapes, ValueType};
use crate::graph::simplify::{
    fold_batchnorm, fold_conv_bias_add, fuse_hardswish, remove_passthrough,
};
use crate::graph::{Graph, GraphError};
use crate::kernels::f32::Activation;
use crate::tensor::{DataType, Tensor, TensorData};

/// An error from planning or running a graph on the native engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A graph pass or kernel refused the graph.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A run input is missing or does not match the planned input.
    #[error("input `{name}`: {message}")]
    Input {
        /// Input name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A value asked to be observed cannot be.
    #[error("tap `{name}`: {message}")]
    Tap {
        /// The value.
        name: String,
        /// Why.
        message: String,
    },
    /// The thread pool could not be built.
    #[error("cannot start a pool of {threads} threads: {message}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// Why it failed.
        message: String,
    },
}

/// Where a value's elements live while a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// An omitted optional input, or a constant the kernel already captured.
    Absent,
    /// Graph input by index.
    Input(usize),
    /// Constant by index.
    Const(usize),
    /// A region of the arena.
    Arena { off: usize, len: usize },
}

/// Where a value lives while planning: a runtime value is numbered until the arena is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Absent,
    Input(usize),
    Const(usize),
    Val(usize),
}

#[derive(Debug)]
struct Step {
    kernel: Kernel,
    /// `op_type name` of the node, for the step profile.
    label: String,
    ins: Vec<Src>,
    out_off: usize,
    out_len: usize,
}

/// What [`Plan::run_observed`] calls with each tapped value: its name, shape and elements.
pub type Observer<'a> = dyn FnMut(&str, &[usize], &[f32]) + Send + 'a;

/// An intermediate value handed to the observer of [`Plan::run_observed`] as soon as the step
/// that computes it has run (borrowed from the arena, not copied).
#[derive(Debug)]
struct Tap {
    name: String,
    src: Src,
    shape: Vec<usize>,
    /// The step after which the value is complete; `None`: before the first step (an input or
    /// a constant).
    after: Option<usize>,
}

#[derive(Debug)]
struct Output {
    src: Src,
    shape: Vec<usize>,
    dtype: DataType,
}

/// Arena regions are aligned to 64 bytes.
const ALIGN: usize = 16;
/// Nodes with more inputs than this gather their input slices in a heap vector.
const INLINE_INPUTS: usize = 16;

/// A graph planned for fixed input shapes and a thread count, ready to run many times.
pub struct Plan {
    pool: Arc<ThreadPool>,
    inputs: Vec<(String, Vec<usize>)>,
    /// Position in the caller's input list of each planned input (rewritten on every run).
    input_order: Vec<usize>,
    steps: Vec<Step>,
    consts: Vec<Tensor>,
    arena: Vec<f32>,
    scratch: Vec<f32>,
    outputs: Vec<Output>,
    /// Values observed by [`Plan::run_observed`], ordered by the step that completes them.
    taps: Vec<Tap>,
    kernel_names: Vec<String>,
    packed_bytes: usize,
    /// Per-step time summed over runs, when `QUENCH_PROFILE_OPS=1`.
    profile: Option<Profile>,
}

/// Time spent in each step over all runs of a plan.
#[derive(Debug, Clone)]
struct Profile {
    runs: usize,
    step_time: Vec<Duration>,
}

/// True when `QUENCH_PROFILE_OPS=1`: plans then time every step and print the table on drop.
fn profiling_wanted() -> bool {
    std::env::var("QUENCH_PROFILE_OPS").is_ok_and(|v| v == "1")
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("inputs", &self.inputs)
            .field("steps", &self.steps.len())
            .field("arena_bytes", &self.arena_bytes())
            .field("packed_weight_bytes", &self.packed_bytes)
            .finish()
    }
}

/// Builds a rayon pool of exactly `threads` threads.
pub fn thread_pool(threads: usize) -> Result<Arc<ThreadPool>, EngineError> {
    if threads == 0 {
        return Err(EngineError::Threads {
            threads,
            message: "at least one thread is needed".into(),
        });
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("quench-engine-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| EngineError::Threads {
            threads,
            message: e.to_string(),
        })
}

impl Plan {
    /// Plans `graph` for the given concrete input shapes (every graph input by name) on a new
    /// pool of `threads` threads.
    pub fn new(
        graph: &Graph,
        inputs: &[(&str, Vec<usize>)],
        threads: usize,
    ) -> Result<Plan, EngineError> {
        Plan::with_pool(graph, inputs, thread_pool(threads)?)
    }

    /// Plans `graph` to run on an existing pool (plans for several batch sizes can share one).
    pub fn with_pool(
        graph: &Graph,
        inputs: &[(&str, Vec<usize>)],
        pool: Arc<ThreadPool>,
    ) -> Result<Plan, EngineError> {
        Plan::with_taps(graph, inputs, pool, &[])
    }

    /// Plans `graph` so that [`Plan::run_observed`] also hands the f32 values named in `taps`
    /// (graph inputs or node outputs) to an observer on every run: what calibration needs to
    /// collect activation ranges on the engine itself. Tapped values are kept from being fused
    /// away (a Conv output tapped before its Relu stays a value of its own) but live in the
    /// arena only as long as the plan needs them: each is observed right after the step that
    /// computes it, so nothing is copied. Fails naming a tap no node produces or that is not
    /// f32 at run time.
    pub fn with_taps(
        graph: &Graph,
        inputs: &[(&str, Vec<usize>)],
        pool: Arc<ThreadPool>,
        taps: &[String],
    ) -> Result<Plan, EngineError> {
        let mut g = graph.clone();
        let outputs = g.outputs.len();
        for t in taps {
            let known = g.inputs.iter().any(|i| &i.name == t)
                || g.nodes.iter().any(|n| n.outputs.contains(t));
            if !known {
                return Err(EngineError::Tap {
                    name: t.clone(),
                    message: "no node produces this value and it is not a graph input".into(),
                });
            }
            if !g.is_output(t) {
                // Declared as an output while planning, so no pass removes or fuses it away.
                g.outputs.push(crate::graph::ValueInfo {
                    name: t.clone(),
                    dtype: DataType::F32,
                    shape: None,
                });
            }
        }
        remove_passthrough(&mut g);
        // The dynamic and QOperator forms first: their DequantizeLinear/QuantizeLinear nodes
        // belong to those chains, not to QDQ pairs.
        super::fuse_int::fuse_integer(&mut g)?;
        super::fuse_qop::unfold_qoperator(&mut g)?;
        // Weights quantized in the graph (PyTorch's QAT export) become integer constants first.
        fold_constant_quantize(&mut g, &eval_node)?;
        fuse_qdq(&mut g)?;
        fold_constants(&mut g, inputs, &eval_node)?;
        fold_batchnorm(&mut g)?;
        fold_conv_bias_add(&mut g)?;
        fuse_hardswish(&mut g)?;
        let mut types = infer_shapes(&g, inputs)?;
        super::fuse_b1::fuse_sign(&mut g, &types);
        if super::fuse_qelem::fuse_quantized_elementwise(&mut g, &types) > 0 {
            types = infer_shapes(&g, inputs)?;
        }
        super::nhwc::mark_nhwc(&mut g, &types);
        let mut plan = Builder::new(&g, &types, pool)?.finish(outputs)?;
        for t in taps {
            if !plan.taps.iter().any(|x| &x.name == t) {
                // Also a real output: observed from where the output lives.
                let i = g.outputs.iter().position(|o| &o.name == t).unwrap_or(0);
                let o = &plan.outputs[i];
                if o.dtype != DataType::F32 {
                    return Err(EngineError::Tap {
                        name: t.clone(),
                        message: format!(
                            "is {} at run time, only f32 values are observed",
                            o.dtype
                        ),
                    });
                }
                let tap = Tap {
                    name: t.clone(),
                    src: o.src,
                    shape: o.shape.clone(),
                    after: plan.steps.len().checked_sub(1),
                };
                plan.taps.push(tap);
                plan.taps.sort_by_key(|t| t.after.map_or(0, |s| s + 1));
            }
        }
        Ok(plan)
    }

    /// Runs the plan: `inputs` by graph input name, outputs in the graph's declared order.
    pub fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, EngineError> {
        self.run_observed(inputs, &mut |_, _, _| {})
    }

    /// Runs the plan like [`Plan::run`], handing every value tapped at planning
    /// ([`Plan::with_taps`]) to `observe(name, shape, values)` as soon as it is computed.
    pub fn run_observed(
        &mut self,
        inputs: &[(&str, &Tensor)],
        observe: &mut Observer<'_>,
    ) -> Result<Vec<Tensor>, EngineError> {
        for (i, (name, shape)) in self.inputs.iter().enumerate() {
            let pos =
                inputs
                    .iter()
                    .position(|(n, _)| n == name)
                    .ok_or_else(|| EngineError::Input {
                        name: name.clone(),
                        message: "not given".into(),
                    })?;
            let t = inputs[pos].1;
            if t.shape() != shape.as_slice() || t.dtype() != DataType::F32 {
                return Err(EngineError::Input {
                    name: name.clone(),
                    message: format!("expected f32 {shape:?}, got {} {:?}", t.dtype(), t.shape()),
                });
            }
            self.input_order[i] = pos;
        }
        let Plan {
            pool,
            input_order,
            steps,
            consts,
            arena,
            scratch,
            profile,
            taps,
            ..
        } = self;
        let order: &[usize] = input_order;
        let input = |i: usize| inputs[order[i]].1.as_f32().unwrap_or(&[]);
        let body = || {
            if let Some(p) = profile.as_mut() {
                p.runs += 1;
            }
            let mut next_tap = 0;
            let mut observe_through = |done: Option<usize>, arena: &[f32]| {
                while let Some(t) = taps.get(next_tap).filter(|t| t.after <= done) {
                    let data = match t.src {
                        Src::Input(i) => input(i),
                        Src::Const(c) => consts[c].as_f32().unwrap_or(&[]),
                        Src::Arena { off, len } => &arena[off..off + len],
                        Src::Absent => &[],
                    };
                    observe(&t.name, &t.shape, data);
                    next_tap += 1;
                }
            };
            observe_through(None, arena.as_slice());
            for (si, step) in steps.iter().enumerate() {
                let started = profile.is_some().then(Instant::now);
                let (lo, rest) = arena.split_at_mut(step.out_off);
                let (out, hi) = rest.split_at_mut(step.out_len);
                let hi_start = step.out_off + step.out_len;
                let resolve = |s: &Src| -> &[f32] {
                    match *s {
                        Src::Absent => &[],
                        Src::Input(i) => input(i),
                        Src::Const(c) => consts[c].as_f32().unwrap_or(&[]),
                        Src::Arena { off, len } if off + len <= step.out_off => &lo[off..off + len],
                        Src::Arena { off, len } => &hi[off - hi_start..off - hi_start + len],
                    }
                };
                if step.ins.len() <= INLINE_INPUTS {
                    let mut ins: [&[f32]; INLINE_INPUTS] = [&[]; INLINE_INPUTS];
                    for (slot, s) in ins.iter_mut().zip(&step.ins) {
                        *slot = resolve(s);
                    }
                    step.kernel.run(&ins[..step.ins.len()], out, scratch);
                } else {
                    let ins: Vec<&[f32]> = step.ins.iter().map(resolve).collect();
                    step.kernel.run(&ins, out, scratch);
                }
                if let (Some(p), Some(t)) = (profile.as_mut(), started) {
                    p.step_time[si] += t.elapsed();
                }
                observe_through(Some(si), arena.as_slice());
            }
        };
        // A one-thread plan runs on the calling thread with the kernels kept serial: handing it
        // to its one-thread pool would cost a thread wake-up (tens of µs) per run, and running
        // it inline in the caller's pool would let the kernels split over that pool's threads.
        if pool.current_num_threads() == 1 {
            crate::kernels::serial(body);
        } else {
            pool.install(body);
        }
        let arena = &self.arena;
        self.outputs
            .iter()
            .map(|o| {
                let data = match o.src {
                    Src::Const(c) => return Ok(self.consts[c].clone()),
                    Src::Input(i) => input(i),
                    Src::Arena { off, len } => &arena[off..off + len],
                    Src::Absent => &[],
                };
                let n = o.shape.iter().product::<usize>();
                let data = match QType::of(o.dtype) {
                    None => TensorData::F32(data.to_vec()),
                    Some(QType::U8) => TensorData::U8(bytes(data)[..n].to_vec()),
                    Some(QType::S8) => {
                        TensorData::I8(bytes(data)[..n].iter().map(|&b| b as i8).collect())
                    }
                };
                Tensor::new(o.shape.clone(), data).map_err(|e| EngineError::Input {
                    name: "output".into(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Bytes of the activation arena (intermediate values, regions reused by liveness) plus the
    /// im2col/transpose scratch buffer.
    pub fn arena_bytes(&self) -> usize {
        (self.arena.len() + self.scratch.len()) * std::mem::size_of::<f32>()
    }

    /// Bytes of weights held packed in kernel layouts.
    pub fn packed_weight_bytes(&self) -> usize {
        self.packed_bytes
    }

    /// Distinct kernel names the plan runs on: those doing the multiply-accumulates (GEMM,
    /// convolution) first, then the rest, each group in first-use order, so that the first name
    /// is the one a record's reader wants (not a QDQ model's input `quantize-linear`).
    pub fn kernel_names(&self) -> &[String] {
        &self.kernel_names
    }

    /// The input names and shapes the plan was made for.
    pub fn input_shapes(&self) -> &[(String, Vec<usize>)] {
        &self.inputs
    }

    /// Number of kernel launches per run (aliasing and fused nodes excluded).
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// The per-step time table (`QUENCH_PROFILE_OPS=1` only): mean time per run of every step,
    /// its share of the total, and a total per operator type, slowest first.
    pub fn profile_report(&self) -> Option<String> {
        let p = self.profile.as_ref().filter(|p| p.runs > 0)?;
        let total: Duration = p.step_time.iter().sum();
        let per_run = |d: Duration| d.as_secs_f64() * 1e6 / p.runs as f64;
        let share = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12);
        let mut out = format!(
            "step profile over {} runs: {:.1} µs per run\n",
            p.runs,
            per_run(total)
        );
        let mut by_op: Vec<(&str, Duration)> = Vec::new();
        for (step, &t) in self.steps.iter().zip(&p.step_time) {
            let op = step.label.split(' ').next().unwrap_or("");
            match by_op.iter_mut().find(|(o, _)| *o == op) {
                Some((_, d)) => *d += t,
                None => by_op.push((op, t)),
            }
        }
        by_op.sort_by_key(|b| std::cmp::Reverse(b.1));
        for (op, t) in by_op {
            out += &format!("  {:>9.1} µs {:>5.1}%  {op} (all)\n", per_run(t), share(t));
        }
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(p.step_time[i]));
        for i in order {
            let t = p.step_time[i];
            out += &format!(
                "  {:>9.1} µs {:>5.1}%  #{i} {} [{}]\n",
                per_run(t),
                share(t),
                self.steps[i].label,
                self.steps[i].kernel.kernel_name()
            );
        }
        Some(out)
    }

    /// Threads of the pool the plan runs on.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}

impl Drop for Plan {
    /// Prints the step profile to stderr when `QUENCH_PROFILE_OPS=1` asked for it.
    fn drop(&mut self) {
        if let Some(report) = self.profile_report() {
            eprintln!("{report}");
        }
    }
}

struct PendingStep {
    kernel: Kernel,
    label: String,
    ins: Vec<Loc>,
    out: usize,
}

struct Builder<'g> {
    graph: &'g Graph,
    types: &'g BTreeMap<String, ValueType>,
    pool: Arc<ThreadPool>,
    loc: BTreeMap<&'g str, Loc>,
    consts: Vec<Tensor>,
    /// Element count, defining step and last reading step of each runtime value.
    vals: Vec<(usize, usize, usize)>,
    steps: Vec<PendingStep>,
}

impl<'g> Builder<'g> {
    fn new(
        graph: &'g Graph,
        types: &'g BTreeMap<String, ValueType>,
        pool: Arc<ThreadPool>,
    ) -> Result<Builder<'g>, EngineError> {
        let mut loc = BTreeMap::new();
        for (i, vi) in graph.inputs.iter().enumerate() {
            if vi.dtype != DataType::F32 {
                return Err(EngineError::Input {
                    name: vi.name.clone(),
                    message: format!(
                        "the native engine takes f32 inputs, this one is {}",
                        vi.dtype
                    ),
                });
            }
            loc.insert(vi.name.as_str(), Loc::Input(i));
        }
        Ok(Builder {
            graph,
            types,
            pool,
            loc,
            consts: Vec::new(),
            vals: Vec::new(),
            steps: Vec::new(),
        })
    }

    fn locate(&mut self, name: &'g str) -> Loc {
        if name.is_empty() {
            return Loc::Absent;
        }
        if let Some(&l) = self.loc.get(name) {
            return l;
        }
        match self.graph.initializers.get(name) {
            Some(t) => {
                self.consts.push(t.clone());
                let l = Loc::Const(self.consts.len() - 1);
                self.loc.insert(name, l);
                l
            }
            None => Loc::Absent,
        }
    }

    /// The plan; graph outputs from index `outputs` on are taps, not outputs.
    fn finish(mut self, outputs: usize) -> Result<Plan, EngineError> {
        let g = self.graph;
        let opset = g.opset;
        let counts = g.consumer_counts();
        let mut fused: HashSet<usize> = HashSet::new();
        let mut kernel_names: Vec<(bool, String)> = Vec::new();
        for (i, node) in g.nodes.iter().enumerate() {
            if fused.contains(&i) {
                continue;
            }
            let ins: Vec<Option<&ValueType>> =
                node.inputs.iter().map(|n| self.types.get(n)).collect();
            let consts: Vec<Option<&Tensor>> =
                node.inputs.iter().map(|n| g.initializers.get(n)).collect();
            let mut out_name = node
                .outputs
                .first()
                .map(String::as_str)
                .ok_or_else(|| node.error("no output"))?;
            // Fuse a Relu/Clip that is the only reader of a Conv/Gemm/MatMul output.
            let mut act = Activation::None;
            if matches!(node.op_type.as_str(), "Conv" | "Gemm" | "MatMul")
                && counts.get(out_name) == Some(&1)
                && !g.is_output(out_name)
            {
                if let Some(j) = g.nodes[i + 1..]
                    .iter()
                    .position(|n| n.inputs.iter().any(|x| x == out_name))
                    .map(|p| p + i + 1)
                {
                    let next = &g.nodes[j];
                    let nconsts: Vec<Option<&Tensor>> =
                        next.inputs.iter().map(|n| g.initializers.get(n)).collect();
                    if let (Some(a), Some(o)) = (
                        fusable_activation(next, opset, &nconsts)?,
                        next.outputs.first(),
                    ) {
                        if next.input(0) == Some(out_name) && next.outputs.len() == 1 {
                            act = a;
                            out_name = o;
                            fused.insert(j);
                        }
                    }
                }
            }
            let kernel = match Kernel::compile(node, opset, &ins, &consts, act) {
                Ok(k) => k,
                Err(e) if act == Activation::None => return Err(e.into()),
                Err(_) => {
                    // The activation could not be fused (e.g. a MatMul with run-time B): run
                    // the fused-away node on its own after all.
                    act = Activation::None;
                    out_name = &node.outputs[0];
                    fused.retain(|&j| j <= i);
                    Kernel::compile(node, opset, &ins, &consts, act)?
                }
            };
            let out_type = self
                .types
                .get(out_name)
                .ok_or_else(|| node.error(format!("no type for output `{out_name}`")))?;
            let int_ok = matches!(
                kernel,
                Kernel::Quantized(_) | Kernel::QElem(_) | Kernel::B1(_) | Kernel::Alias
            );
            if out_type.dtype != DataType::F32 && !(int_ok && QType::of(out_type.dtype).is_some()) {
                return Err(node.error(format!(
                    "output `{out_name}` is {} at run time; the native engine computes f32 values, and u8/i8 only in quantized ops (other types must fold to constants)",
                    out_type.dtype
                ))
                .into());
            }
            for (name, t) in node.inputs.iter().zip(&ins) {
                let runtime = !g.initializers.contains_key(name);
                if let Some(t) = t.filter(|t| runtime && QType::of(t.dtype).is_some()) {
                    if !int_ok {
                        return Err(node.error(format!(
                            "input `{name}` is {} at run time; the native engine runs u8/i8 values only through DequantizeLinear, MaxPool, Reshape/Flatten and fused quantized layers",
                            t.dtype
                        ))
                        .into());
                    }
                }
            }
            let in_locs: Vec<Loc> = node.inputs.iter().map(|n| self.locate(n)).collect();
            if matches!(kernel, Kernel::Alias) {
                let src = in_locs.first().copied().unwrap_or(Loc::Absent);
                if src == Loc::Absent {
                    return Err(node.error("input 0 is missing").into());
                }
                self.loc.insert(out_name, src);
                continue;
            }
            let name = kernel.kernel_name();
            if !kernel_names.iter().any(|(_, n)| *n == name) {
                kernel_names.push((kernel.multiplies(), name));
            }
            let step = self.steps.len();
            for l in &in_locs {
                if let Loc::Val(v) = l {
                    self.vals[*v].2 = step;
                }
            }
            self.vals.push((storage_len(out_type), step, step));
            let out = self.vals.len() - 1;
            self.loc.insert(out_name, Loc::Val(out));
            self.steps.push(PendingStep {
                label: format!("{} {}", node.op_type, node.name),
                kernel,
                ins: in_locs,
                out,
            });
        }
        let real_outputs = outputs;
        let mut outputs = Vec::new();
        let mut taps = Vec::new();
        for (oi, o) in g.outputs.iter().enumerate() {
            let l = self.locate(&o.name);
            if oi >= real_outputs {
                let ty = self.types.get(&o.name);
                match ty {
                    Some(t) if t.dtype == DataType::F32 => {}
                    _ => {
                        return Err(EngineError::Tap {
                            name: o.name.clone(),
                            message: format!(
                                "is {} at run time, only f32 values are observed",
                                ty.map_or("of unknown type".to_string(), |t| t.dtype.to_string())
                            ),
                        })
                    }
                }
                let after = match l {
                    Loc::Val(v) => Some(self.vals[v].1),
                    _ => None,
                };
                taps.push((
                    l,
                    ty.map(|t| t.shape.clone()).unwrap_or_default(),
                    o.name.clone(),
                    after,
                ));
                continue;
            }
            if let Loc::Val(v) = l {
                self.vals[v].2 = usize::MAX;
            }
            let (shape, dtype) = self
                .types
                .get(&o.name)
                .map(|t| (t.shape.clone(), t.dtype))
                .unwrap_or((Vec::new(), DataType::F32));
            if l == Loc::Absent {
                return Err(GraphError::Input {
                    name: o.name.clone(),
                    message: "graph output is not produced by any node".into(),
                }
                .into());
            }
            outputs.push((l, shape, dtype));
        }
        let (offsets, arena_len) = layout(&self.vals);
        let src = |l: Loc| match l {
            Loc::Absent => Src::Absent,
            Loc::Input(i) => Src::Input(i),
            Loc::Const(c) => Src::Const(c),
            Loc::Val(v) => Src::Arena {
                off: offsets[v],
                len: self.vals[v].0,
            },
        };
        let scratch_len = self
            .steps
            .iter()
            .map(|s| s.kernel.scratch_len())
            .max()
            .unwrap_or(0);
        let packed_bytes = self.steps.iter().map(|s| s.kernel.packed_bytes()).sum();
        let steps: Vec<Step> = self
            .steps
            .into_iter()
            .map(|s| Step {
                label: s.label,
                ins: s.ins.iter().map(|&l| src(l)).collect(),
                out_off: offsets[s.out],
                out_len: self.vals[s.out].0,
                kernel: s.kernel,
            })
            .collect();
        let outputs = outputs
            .into_iter()
            .map(|(l, shape, dtype)| Output {
                src: src(l),
                shape,
                dtype,
            })
            .collect();
        let mut taps: Vec<Tap> = taps
            .into_iter()
            .map(|(l, shape, name, after)| Tap {
                name,
                src: src(l),
                shape,
                after,
            })
            .collect();
        taps.sort_by_key(|t| t.after.map_or(0, |s| s + 1));
        let step_count = steps.len();
        let inputs: Vec<(String, Vec<usize>)> = g
            .inputs
            .iter()
            .map(|vi| {
                (
                    vi.name.clone(),
                    self.types
                        .get(&vi.name)
                        .map(|t| t.shape.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        Ok(Plan {
            pool: self.pool,
            input_order: vec![0; inputs.len()],
            inputs,
            steps,
            consts: self.consts,
            arena: vec![0.0; arena_len],
            scratch: vec![0.0; scratch_len],
            outputs,
            taps,
            kernel_names: {
                kernel_names.sort_by_key(|(multiplies, _)| !multiplies);
                kernel_names.into_iter().map(|(_, n)| n).collect()
            },
            packed_bytes,
            profile: profiling_wanted().then(|| Profile {
                runs: 0,
                step_time: vec![Duration::ZERO; step_count],
            }),
        })
    }
}

/// Places each value (size, first step, last step) at the lowest aligned offset that overlaps no
/// value alive at the same time. Returns the offsets and the arena length.
fn layout(vals: &[(usize, usize, usize)]) -> (Vec<usize>, usize) {
    let mut offsets = vec![0; vals.len()];
    let mut placed: Vec<(usize, usize, usize)> = Vec::new(); // (offset, end, value)
    let mut total = 0;
    for (v, &(len, def, last)) in vals.iter().enumerate() {
        let size = len.div_ceil(ALIGN) * ALIGN;
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&(_, _, w)| vals[w].1 <= last && def <= vals[w].2)
            .map(|&(o, e, _)| (o, e))
            .collect();
        busy.sort_unstable();
        let mut off = 0;
        for (o, e) in busy {
            if off + size <= o {
                break;
            }
            off = off.max(e);
        }
        offsets[v] = off;
        placed.push((off, off + size, v));
        total = total.max(off + size);
    }
    (offsets, total)
}
