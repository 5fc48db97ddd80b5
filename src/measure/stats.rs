//! Robust summary statistics of a set of timings: percentiles, mean and deviation, a bootstrap
//! confidence interval of the median, an outlier count and a "the machine was busy" flag.
//!
//! All functions take plain `f64` samples in whatever unit the caller uses; [`summarize`] returns
//! every figure in that same unit.

use super::rng::SplitMix64;
use super::MeasureError;
use serde::{Deserialize, Serialize};

/// How [`summarize`] computes its interval and judges noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsConfig {
    /// Bootstrap resamples for the confidence interval of the median (1 to
    /// [`MAX_RESAMPLES`]; 2,000 is usual for a 95% percentile interval).
    pub bootstrap_resamples: usize,
    /// Seed of the resampling generator: the same samples and seed give the same interval.
    pub seed: u64,
    /// The rule that marks a set of timings as noisy.
    pub noise: NoiseRule,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            bootstrap_resamples: 2_000,
            seed: 0x5EED_0F0E_7C4E_1100,
            noise: NoiseRule::default(),
        }
    }
}

/// When timings are called noisy: the tail spread `(p90 − p50) / p50` is above
/// `max_tail_spread`, or the half-width of the 95% interval of the median, divided by the median,
/// is above `max_ci_half_width`. Either says that something else was using the machine (or the
/// clock frequency moved) while the loop ran, so the median should not be compared closely.
/// The timed loop adds a third input ([`crate::measure::latency`]): the process got less than
/// `min_cpu_share` of a core over the loop's wall time, i.e. it was waiting for a CPU that
/// something else held, even when the runs it did get look steady.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseRule {
    /// Largest accepted `(p90 − p50) / p50`; default 0.10.
    pub max_tail_spread: f64,
    /// Largest accepted `CI half-width / median`; default 0.05.
    pub max_ci_half_width: f64,
    /// Smallest accepted share of one core used over the timed loop (CPU seconds / wall
    /// seconds, see [`crate::measure::latency::LatencyReport::cpu_share`]); default 0.9.
    #[serde(default = "default_min_cpu_share")]
    pub min_cpu_share: f64,
}

fn default_min_cpu_share() -> f64 {
    0.9
}

impl Default for NoiseRule {
    fn default() -> Self {
        Self {
            max_tail_spread: 0.10,
            max_ci_half_width: 0.05,
            min_cpu_share: default_min_cpu_share(),
        }
    }
}

/// A two-sided confidence interval and how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Coverage, e.g. 0.95.
    pub level: f64,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
    /// Seed of the resampling generator.
    pub seed: u64,
}

/// The summary of one set of samples. Percentiles use linear interpolation between order
/// statistics (Hyndman & Fan 1996, type 7; the default of R and NumPy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median (type 7).
    pub p50: f64,
    /// 90th percentile (type 7).
    pub p90: f64,
    /// 99th percentile (type 7).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator; 0 for a single sample).
    pub sd: f64,
    /// 95% percentile-bootstrap interval of the median.
    pub median_ci95: ConfidenceInterval,
    /// Samples whose modified z-score exceeds 3.5 (see [`count_outliers`]).
    pub outliers: usize,
    /// `(p90 − p50) / p50`, one of the two inputs of the noise rule.
    pub tail_spread: f64,
    /// `(ci.high − ci.low) / 2 / p50`, the other input of the noise rule.
    pub ci_half_width: f64,
    /// True when the noise rule in [`StatsConfig::noise`] fired (see [`NoiseRule`]).
    pub noisy: bool,
}

/// Most bootstrap resamples [`summarize`] accepts (it keeps one median per resample).
pub const MAX_RESAMPLES: usize = 1_000_000;

/// Summarises `samples` (any order, at least one, all finite).
pub fn summarize(samples: &[f64], config: &StatsConfig) -> Result<Summary, MeasureError> {
    check_samples(samples)?;
    if !(1..=MAX_RESAMPLES).contains(&config.bootstrap_resamples) {
        return Err(MeasureError::Config {
            field: "bootstrap_resamples",
            message: format!(
                "{} is not between 1 and {MAX_RESAMPLES}",
                config.bootstrap_resamples
            ),
        });
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let p50 = percentile_sorted(&sorted, 0.5);
    let p90 = percentile_sorted(&sorted, 0.9);
    let (mean, sd) = mean_sd(samples);
    let ci = bootstrap_median_ci(samples, 0.95, config.bootstrap_resamples, config.seed);
    let tail_spread = relative(p90 - p50, p50);
    let ci_half_width = relative((ci.high - ci.low) / 2.0, p50);
    Ok(Summary {
        n,
        min: sorted[0],
        p50,
        p90,
        p99: percentile_sorted(&sorted, 0.99),
        max: sorted[n - 1],
        mean,
        sd,
        median_ci95: ci,
        outliers: count_outliers(samples),
        tail_spread,
        ci_half_width,
        noisy: tail_spread > config.noise.max_tail_spread
            || ci_half_width > config.noise.max_ci_half_width,
    })
}

fn check_samples(samples: &[f64]) -> Result<(), MeasureError> {
    if samples.is_empty() {
        return Err(MeasureError::NoSamples);
    }
    match samples.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(MeasureError::NonFinite {
            index,
            value: samples[index],
        }),
        None => Ok(()),
    }
}

/// `part / whole`, or 0 when both are 0 and infinity when only `whole` is.
fn relative(part: f64, whole: f64) -> f64 {
    if part == 0.0 {
        0.0
    } else {
        part / whole
    }
}

/// The `p`-quantile (0 ≤ p ≤ 1, clamped) of ascending `sorted` by linear interpolation
/// (Hyndman & Fan type 7): with h = (n − 1)·p, x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋+1] − x[⌊h⌋]).
/// Returns NaN for an empty slice.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = last as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Mean and sample standard deviation (n − 1; 0 for fewer than two samples), by Welford's
/// update so that large, close values keep their precision. NaN mean for no samples.
pub fn mean_sd(samples: &[f64]) -> (f64, f64) {
    let mut mean = 0.0;
    let mut m2 = 0.0;
    for (i, &x) in samples.iter().enumerate() {
        let d = x - mean;
        mean += d / (i + 1) as f64;
        m2 += d * (x - mean);
    }
    match samples.len() {
        0 => (f64::NAN, 0.0),
        1 => (mean, 0.0),
        n => (mean, (m2 / (n - 1) as f64).sqrt()),
    }
}

/// The median (type 7) of `values`, reordering them. NaN for an empty slice.
fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let (below, &mut upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// Percentile-bootstrap interval of the median (Efron & Tibshirani, "An Introduction to the
/// Bootstrap", 1993, ch. 13): draw `resamples` samples of the same size with replacement, take
/// each one's median, and return the (1 − level)/2 and (1 + level)/2 type-7 quantiles of those
/// medians. Deterministic for a given `seed`. Empty input gives a NaN interval.
pub fn bootstrap_median_ci(
    samples: &[f64],
    level: f64,
    resamples: usize,
    seed: u64,
) -> ConfidenceInterval {
    let mut rng = SplitMix64::new(seed);
    let n = samples.len();
    let mut scratch = vec![0.0; n];
    let mut medians: Vec<f64> = (0..resamples)
        .map(|_| {
            for slot in scratch.iter_mut() {
                *slot = samples[rng.below(n)];
            }
            median_in_place(&mut scratch)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    ConfidenceInterval {
        low: percentile_sorted(&medians, tail),
        high: percentile_sorted(&medians, 1.0 - tail),
        level,
        resamples,
        seed,
    }
}

/// Modified z-score above which a sample is an outlier (Iglewicz & Hoaglin, "How to Detect and
/// Handle Outliers", ASQC Basic References in Quality Control vol. 16, 1993).
pub const OUTLIER_Z: f64 = 3.5;

/// Counts samples with |modified z-score| > 3.5, where M = 0.6745 (x − median) / MAD and MAD is
/// the median absolute deviation from the median (Iglewicz & Hoaglin 1993; 0.6745 is the 0.75
/// quantile of the standard normal, so M is comparable to a z-score for normal data).
///
/// When MAD is 0 (more than half the samples equal, as happens with a coarse clock) the
/// denominator becomes 1.2533 × the mean absolute deviation from the median (1.2533 = √(π/2),
/// the ratio of σ to the mean absolute deviation of a normal distribution); if that is 0 too,
/// every sample equals the median and none is an outlier.
pub fn count_outliers(samples: &[f64]) -> usize {
    let mut scratch = samples.to_vec();
    let median = median_in_place(&mut scratch);
    for (slot, &x) in scratch.iter_mut().zip(samples) {
        *slot = (x - median).abs();
    }
    let mean_abs_dev = scratch.iter().sum::<f64>() / samples.len().max(1) as f64;
    let mad = median_in_place(&mut scratch);
    let scale = if mad > 0.0 {
        mad / 0.6745
    } else {
        1.2533 * mean_abs_dev
    };
    if scale.is_nan() || scale <= 0.0 {
        return 0;
    }
    samples
        .iter()
        .filter(|&&x| ((x - median) / scale).abs() > OUTLIER_Z)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn percentiles_are_type_7() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        // h = 9p: p50 → 4.5 → 5.5; p90 → 8.1 → 9.1; p99 → 8.91 → 9.91 (NumPy agrees).
        assert!(close(percentile_sorted(&xs, 0.5), 5.5));
        assert!(close(percentile_sorted(&xs, 0.9), 9.1));
        assert!(close(percentile_sorted(&xs, 0.99), 9.91));
        assert_eq!(percentile_sorted(&xs, 0.0), 1.0);
        assert_eq!(percentile_sorted(&xs, 1.0), 10.0);
        assert_eq!(percentile_sorted(&[4.0], 0.9), 4.0);
        assert!(percentile_sorted(&[], 0.5).is_nan());
        // Uneven gaps: [1, 2, 4, 8, 16], p = 0.3 → h = 1.2 → 2 + 0.2 × 2 = 2.4.
        assert!(close(
            percentile_sorted(&[1.0, 2.0, 4.0, 8.0, 16.0], 0.3),
            2.4
        ));
    }

    #[test]
    fn mean_and_sd_by_hand() {
        // Mean 5; squared deviations 9 1 1 1 0 0 4 16 = 32; sd = sqrt(32 / 7).
        let (m, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!(close(m, 5.0));
        assert!(close(sd, (32.0f64 / 7.0).sqrt()));
        assert_eq!(mean_sd(&[3.0]), (3.0, 0.0));
    }

    #[test]
    fn median_handles_even_and_odd_counts() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn outliers_by_modified_z_score() {
        // Base: median 10.0, absolute deviations 0 0 0 .1 .1 .2 .2 → MAD 0.1, so
        // M = 6.745 (x − 10). Each extension below keeps median 10.0 and MAD 0.1.
        let base = [9.8, 9.9, 10.0, 10.0, 10.0, 10.1, 10.2];
        // 10.5 → M = 3.37 and 9.5 → −3.37: both kept.
        let mut edge = base.to_vec();
        edge.extend([10.5, 9.5]);
        assert_eq!(count_outliers(&edge), 0);
        // 10.6 → M = 4.05 and 50 → 269.8: both out.
        let mut two = base.to_vec();
        two.extend([10.6, 50.0]);
        assert_eq!(count_outliers(&two), 2);
    }

    #[test]
    fn outliers_when_mad_is_zero() {
        // Median 1, MAD 0; mean |x − 1| = 9 / 10 = 0.9, scale 1.128: 10 → 7.98 (out).
        let xs = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 10.0];
        assert_eq!(count_outliers(&xs), 1);
        assert_eq!(count_outliers(&[2.0; 6]), 0);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_median() {
        let mut rng = SplitMix64::new(99);
        let xs: Vec<f64> = (0..200)
            .map(|_| 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .collect();
        let a = bootstrap_median_ci(&xs, 0.95, 500, 42);
        let b = bootstrap_median_ci(&xs, 0.95, 500, 42);
        let c = bootstrap_median_ci(&xs, 0.95, 500, 43);
        assert_eq!(a, b);
        assert_ne!((a.low, a.high), (c.low, c.high));
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = percentile_sorted(&sorted, 0.5);
        assert!(a.low < median && median < a.high, "{a:?} {median}");
        // For uniform(1, 2) and n = 200 the median's standard error is about
        // 1 / (2 · 1 · √200) ≈ 0.035, so the 95% interval is about ±0.07 wide.
        assert!(a.high - a.low > 0.03 && a.high - a.low < 0.3, "{a:?}");
    }

    #[test]
    fn bootstrap_of_constant_data_is_a_point() {
        let ci = bootstrap_median_ci(&[5.0; 9], 0.95, 100, 1);
        assert_eq!((ci.low, ci.high), (5.0, 5.0));
    }

    #[test]
    fn summary_flags_noise() {
        let config = StatsConfig {
            bootstrap_resamples: 300,
            ..StatsConfig::default()
        };
        let steady: Vec<f64> = (0..100).map(|i| 1.0 + 0.001 * f64::from(i % 7)).collect();
        let s = summarize(&steady, &config).unwrap();
        assert!(!s.noisy, "{s:?}");
        assert_eq!(s.n, 100);
        assert_eq!(s.min, 1.0);
        assert!(close(s.max, 1.006));
        // Uniform over 1.00–1.99: p50 = 1.495, p90 = 1.891, tail spread 0.265.
        let busy: Vec<f64> = (0..100).map(|i| 1.0 + f64::from(i) / 100.0).collect();
        let s = summarize(&busy, &config).unwrap();
        assert!(s.noisy && s.tail_spread > 0.2, "{s:?}");
    }

    #[test]
    fn summary_rejects_bad_input() {
        let c = StatsConfig::default();
        assert!(matches!(summarize(&[], &c), Err(MeasureError::NoSamples)));
        assert!(matches!(
            summarize(&[1.0, f64::NAN], &c),
            Err(MeasureError::NonFinite { index: 1, .. })
        ));
        for resamples in [0, MAX_RESAMPLES + 1] {
            let bad = StatsConfig {
                bootstrap_resamples: resamples,
                ..c.clone()
            };
            assert!(matches!(
                summarize(&[1.0], &bad),
                Err(MeasureError::Config {
                    field: "bootstrap_resamples",
                    ..
                })
            ));
        }
    }
}
