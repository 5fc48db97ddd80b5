//! The integration tests, one binary: each module is one area (CLI, engine, reports, TUI...), so
//! the suite links once instead of once per file.

mod cli;
#[allow(dead_code)]
mod common;
mod engine_binary;
mod engine_cnn;
mod engine_graph;
mod engine_integer;
mod engine_ops_ref;
mod engine_qdq;
mod explore;
mod explore_cli;
mod kernels_cli;
mod onnx_roundtrip_ort;
mod ort_runtime;
mod parity_fp32;
mod profiles;
mod qat_import;
mod quant_native;
mod quant_ort;
mod quantize_cli;
mod remote_ssh;
mod report;
mod report_browser;
mod sweep_cli;
mod tui_live;
mod tui_screens;
mod tui_tmux;
