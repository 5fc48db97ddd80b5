//! What the search minimises, measured: file size in bytes, or latency or energy per inference
//! timed on a runtime. Latency and energy are noisy on a shared machine, so each candidate is
//! timed in interleaved rounds against the FP32 model (FP32, candidate, FP32, candidate, ...)
//! and its figure is the median over rounds of its ratio to FP32 in the same round: ratios
//! measured together, never absolute times from different moments.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::explore::ExploreError;
use crate::measure::latency::{Budget, LatencyConfig, WarmupConfig};
use crate::measure::power::{measure_with_energy, PowerConfig};
use crate::runtime::{self, Runtime, RuntimeKind};
use crate::tensor::Tensor;

/// What the search minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Bytes of the exported model file.
    Size,
    /// Median latency of one batch, relative to FP32 on the same runtime.
    Latency,
    /// Energy per inference (the best figure the energy chain gives: a sensor, else an
    /// estimate, which the report names), relative to FP32.
    Energy,
}

impl Objective {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Size => "size",
            Objective::Latency => "latency",
            Objective::Energy => "energy",
        }
    }

    /// Relative improvement a candidate must show to count as better: 0 for exact sizes, 3%
    /// for timed figures (below that, rounds on a busy machine disagree).
    pub fn margin(self) -> f64 {
        match self {
            Objective::Size => 0.0,
            Objective::Latency | Objective::Energy => 0.03,
        }
    }
}

/// One candidate timed against FP32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    /// Median over rounds of candidate p50 / FP32 p50.
    pub latency_ratio: f64,
    /// Median over rounds of the candidate's p50 latency of one batch, ms.
    pub latency_ms: f64,
    /// Median over rounds of candidate / FP32 energy per inference (energy objective only).
    pub energy_ratio: Option<f64>,
    /// Median over rounds of the candidate's energy per inference, joules.
    pub joules: Option<f64>,
    /// Where the energy figure came from (sensor or estimate), in words.
    pub energy_source: Option<String>,
}

/// Times candidates against the FP32 model on one runtime.
pub struct Timer {
    kind: RuntimeKind,
    threads: usize,
    rounds: usize,
    energy: bool,
    input_name: String,
    input: Tensor,
    base: Box<dyn Runtime>,
    power: PowerConfig,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("runtime", &self.kind)
            .field("threads", &self.threads)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

/// The timing rule of one side of one round: a short warm-up, then about 0.15 s of runs.
fn round_config(batch: usize, threads: usize) -> LatencyConfig {
    LatencyConfig {
        warmup: WarmupConfig {
            min_runs: 3,
            window: 3,
            tolerance: 0.05,
            max_runs: 200,
            max_time: Duration::from_millis(300),
        },
        budget: Budget::Time {
            time: Duration::from_millis(150),
            min_runs: 5,
            max_runs: 100_000,
        },
        batch_size: batch,
        threads,
        ..LatencyConfig::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Opens `path` on `kind` and runs `input` once, so a runtime that cannot run the model fails
/// here rather than in the middle of a timing.
pub fn open_checked(
    kind: RuntimeKind,
    path: &Path,
    threads: usize,
    input_name: &str,
    input: &Tensor,
) -> Result<Box<dyn Runtime>, ExploreError> {
    let mut rt = runtime::open(kind, path, threads)?;
    rt.run(&[(input_name, input)])?;
    Ok(rt)
}

impl Timer {
    /// A timer on `kind` with the FP32 model at `fp32` as the base, `input` as the batch,
    /// `rounds` interleaved rounds per candidate, metering energy when `energy`.
    pub fn new(
        kind: RuntimeKind,
        fp32: &Path,
        threads: usize,
        rounds: usize,
        energy: bool,
        input_name: &str,
        input: Tensor,
    ) -> Result<Timer, ExploreError> {
        let base = open_checked(kind, fp32, threads, input_name, &input)?;
        Ok(Timer {
            kind,
            threads,
            rounds: rounds.max(1),
            energy,
            input_name: input_name.to_string(),
            input,
            base,
            power: PowerConfig::new("/"),
        })
    }

    /// The runtime timed on.
    pub fn runtime(&self) -> RuntimeKind {
        self.kind
    }

    /// Times the model at `path` against FP32.
    pub fn time(&mut self, path: &Path) -> Result<Timed, ExploreError> {
        let mut cand = open_checked(self.kind, path, self.threads, &self.input_name, &self.input)?;
        let config = round_config(
            self.input.shape().first().copied().unwrap_or(1),
            self.threads,
        );
        let (mut ratios, mut ms, mut e_ratios, mut joules) = (vec![], vec![], vec![], vec![]);
        let mut source = None;
        for _ in 0..self.rounds {
            let one = |rt: &mut Box<dyn Runtime>, what: &Path| {
                let input = [(self.input_name.as_str(), &self.input)];
                let timing = |e: String| ExploreError::Timing {
                    what: what.display().to_string(),
                    message: e,
                };
                if self.energy {
                    let (l, e) = measure_with_energy(&config, &self.power, || rt.run(&input))
                        .map_err(|e| timing(e.to_string()))?;
                    let h = e.headline.ok_or_else(|| {
                        timing(format!("no energy figure: {}", e.skipped.join("; ")))
                    })?;
                    Ok::<_, ExploreError>((
                        l.latency_ms.p50,
                        Some((h.joules_per_inference, h.label)),
                    ))
                } else {
                    let l = crate::measure::latency::measure(&config, || rt.run(&input))
                        .map_err(|e| timing(e.to_string()))?;
                    Ok((l.latency_ms.p50, None))
                }
            };
            let (b, be) = one(&mut self.base, Path::new("fp32"))?;
            let (c, ce) = one(&mut cand, path)?;
            ratios.push(c / b);
            ms.push(c);
            if let (Some((bj, _)), Some((cj, label))) = (be, ce) {
                e_ratios.push(cj / bj);
                joules.push(cj);
                source = Some(label);
            }
        }
        Ok(Timed {
            latency_ratio: median(ratios),
            latency_ms: median(ms),
            energy_ratio: (!e_ratios.is_empty()).then(|| median(e_ratios)),
            joules: (!joules.is_empty()).then(|| median(joules)),
            energy_source: source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
