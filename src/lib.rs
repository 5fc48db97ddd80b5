//! # quench
//!
//! A workbench for seeing what quantization does to a model: it loads an ONNX model, makes its
//! FP32, INT8, 4-bit and binary variants, runs each on quench's own integer kernels and on ONNX
//! Runtime side by side, and measures accuracy, latency, memory and power.
//!
//! ## Overview
//!
//! * [`onnx`] reads and writes `.onnx` files, treating them as untrusted input, and converts them
//!   to and from the IR in [`graph`].
//! * [`graph`] is the model IR: named values, typed nodes and constant [`tensor::Tensor`]s, plus
//!   the passes that rewrite it (shape inference, constant folding, BatchNorm folding).
//! * [`bench`](mod@bench) times the kernels against ONNX Runtime on single-op models (`quench kernels`).
//! * [`kernels`] holds the compute kernels, each with a scalar twin, dispatched at run time by
//!   CPU features.
//! * [`engine`] plans a graph once (shapes fixed, weights packed, buffers allocated) and runs it
//!   many times on the kernels.
//! * [`runtime`] puts the native engine and ONNX Runtime behind one `Runtime` trait.
//! * [`eval`] reads datasets (IDX, NPY/NPZ) and model manifests and computes accuracy and
//!   agreement metrics.
//! * [`explore`] answers "which layer breaks accuracy?" (per-layer sensitivity), finds the
//!   best mixed-precision model within an accuracy budget (search), and compares the native
//!   engine with ONNX Runtime tensor by tensor (drift).
//! * [`measure`] times runtimes and reads memory, power and the machine description.
//! * [`quant`] quantizes models: schemes, calibrators, exports ONNX Runtime runs, and
//!   quantization-aware training ([`quant::qat`]).
//! * [`sweep`] measures cells (a model variant on a runtime) into [`sweep::record::Record`]s,
//!   the one source of truth that every view reads.
//! * [`hash`] is the stable content hash behind profile hashes and cache keys.
//! * [`remote`] runs sweeps on other machines over ssh and brings their results back.
//! * [`report`] turns records into tables (and reports) for people.
//! * [`tui`] is the terminal UI: the live matrix, detail, trade-off plot and per-layer views of
//!   the same records.

pub mod bench;
pub mod engine;
pub mod eval;
pub mod explore;
pub mod graph;
pub mod hash;
pub mod kernels;
pub mod measure;
pub mod onnx;
pub mod quant;
pub mod remote;
pub mod report;
pub mod runtime;
pub mod sweep;
pub mod tensor;
pub mod tui;
