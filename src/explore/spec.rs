//! What a search is asked to do, apart from which model: the one value both `quench search`'s
//! flags and a profile's `[search]` table turn into, and the one place it becomes the
//! [`SetupConfig`] and [`SearchConfig`] the search runs with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::eval::Manifest;
use crate::explore::objective::Objective;
use crate::explore::search::{RuntimeChoice, SearchConfig};
use crate::explore::{Level, SetupConfig};
use crate::quant::pipeline::{CalibratorKind, DEFAULT_CALIB_SAMPLES};

/// A search request (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    /// Largest held-out accuracy drop, as a fraction (0.005 = 0.5 percentage points).
    pub budget: f64,
    /// What to minimise.
    pub objective: Objective,
    /// Stop after this long.
    pub time_budget: Option<Duration>,
    /// Levels a layer may take (FP32 is always allowed).
    pub levels: Vec<Level>,
    /// Runtime latency/energy are timed on.
    pub runtime: RuntimeChoice,
    /// Compute threads of the timed runtime.
    pub threads: usize,
    /// Batch size of the timed runs.
    pub batch: usize,
    /// Interleaved timing rounds per candidate.
    pub rounds: usize,
    /// Parallel sensitivity variants (`None`: one per core, capped by memory).
    pub jobs: Option<usize>,
    /// Test-split samples of the final check (`None`: all).
    pub test_limit: Option<usize>,
    /// Calibration and held-out samples.
    pub setup: SetupSpec,
}

/// How an exploration (sensitivity or search) prepares, apart from which model.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupSpec {
    /// Range rule of the static levels.
    pub calibrator: CalibratorKind,
    /// Calibration samples the ranges are found on.
    pub calib_samples: usize,
    /// Held-out samples decisions are made on (`None`: the setup's default).
    pub samples: Option<usize>,
    /// Seed choosing the held-out samples.
    pub seed: u64,
}

impl Default for SetupSpec {
    fn default() -> Self {
        SetupSpec {
            calibrator: CalibratorKind::MinMax,
            calib_samples: DEFAULT_CALIB_SAMPLES,
            samples: None,
            seed: 0,
        }
    }
}

impl SetupSpec {
    /// The exploration setup of `model` (described by `manifest`).
    pub fn config(&self, model: &Path, manifest: Manifest) -> SetupConfig {
        SetupConfig {
            model: model.to_path_buf(),
            manifest,
            calibrator: self.calibrator,
            calib_samples: self.calib_samples,
            samples: self.samples,
            seed: self.seed,
        }
    }
}

impl SearchSpec {
    /// The defaults of `quench search` with `budget` (a fraction).
    pub fn new(budget: f64) -> SearchSpec {
        SearchSpec {
            budget,
            objective: Objective::Size,
            time_budget: None,
            levels: vec![Level::Int8, Level::Int4, Level::Binary],
            runtime: RuntimeChoice::Auto,
            threads: 1,
            batch: 1,
            rounds: 5,
            jobs: None,
            test_limit: None,
            setup: SetupSpec::default(),
        }
    }

    /// The search configuration writing the chosen model to `out`.
    pub fn config(&self, out: PathBuf) -> SearchConfig {
        SearchConfig {
            spec: self.clone(),
            out,
            cancel: None,
        }
    }

    /// Where the chosen model of `model` goes in `dir` when no path is given:
    /// `<model stem>.search-<objective>.onnx`.
    pub fn default_out(&self, dir: &Path, model: &Path) -> PathBuf {
        let stem = model
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
        dir.join(format!("{stem}.search-{}.onnx", self.objective.name()))
    }
}

/// Parses an accuracy budget in percentage points (`0.5%` or `0.5`) into a fraction.
pub fn parse_budget(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..100.0).contains(&v) => Ok(v / 100.0),
        _ => Err(format!(
            "`{text}` is not a budget in percentage points, e.g. 0.5%"
        )),
    }
}

/// Parses a duration such as `90s`, `10m`, `1.5h` or `30` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_alphabetic()).unwrap_or(t.len()));
    let scale = match unit {
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}`: use s, m or h, e.g. 10m")),
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale < 1e9 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!("`{text}` is not a duration, e.g. 90s or 10m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_and_durations_parse_or_say_why() {
        assert_eq!(parse_budget("0.5%"), Ok(0.005));
        assert_eq!(parse_budget("2"), Ok(0.02));
        assert!(parse_budget("100%").is_err());
        assert!(parse_budget("-1").is_err());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn default_out_names_the_objective() {
        let s = SearchSpec::new(0.01);
        assert_eq!(
            s.default_out(Path::new("out"), Path::new("a/mnist-cnn.onnx")),
            Path::new("out/mnist-cnn.search-size.onnx")
        );
    }
}
