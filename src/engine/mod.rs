//! The native executor: plan a graph once, then run it many times on quench's kernels.
//!
//! [`Plan::new`] simplifies the graph (Identity/Dropout removal, constant folding, BatchNorm
//! and per-channel Add folding into Conv, hard-swish fusion), fixes every shape for the given inputs, packs weights, fuses Relu/Clip into the GEMM
//! store, and lays every intermediate value out in one arena whose regions are reused once their
//! values are dead. [`Plan::run`] then allocates nothing but the returned outputs.

pub mod ops;
pub mod plan;

pub use plan::{EngineError, Plan};
