//! The same cell measured several times back to back: how far two measurements of one thing
//! differ on this machine, and whether the noise rule notices when something else is running.

use crate::measure::latency::{measure, LatencyConfig, LatencyReport};
use crate::runtime::{self, RuntimeKind};
use crate::sweep::cell::Subject;

/// One model loaded once on one runtime, its latency measured `times` times in a row (each with
/// its own warm-up) on the first `batch` test samples.
pub fn repeat_latency(
    subject: &Subject<'_>,
    runtime: RuntimeKind,
    threads: usize,
    batch: usize,
    latency: &LatencyConfig,
    times: usize,
) -> Result<Vec<LatencyReport>, String> {
    let dataset = subject.dataset;
    let input = dataset
        .batch(0..batch.min(dataset.len()).max(1))
        .map_err(|e| e.to_string())?;
    let name = dataset.input_name();
    let mut rt = runtime::open(runtime, &subject.path, threads).map_err(|e| e.to_string())?;
    let mut config = latency.clone();
    config.batch_size = input.shape()[0];
    config.threads = threads;
    (0..times)
        .map(|_| measure(&config, || rt.run(&[(name, &input)])).map_err(|e| e.to_string()))
        .collect()
}

/// `p50 of run i / p50 of the first run` for every run.
pub fn median_ratios(runs: &[LatencyReport]) -> Vec<f64> {
    let first = runs.first().map_or(f64::NAN, |r| r.latency_ms.p50);
    runs.iter().map(|r| r.latency_ms.p50 / first).collect()
}
