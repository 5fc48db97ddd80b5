//! Calibrators: streaming reductions of one tensor's observed values to the range `[lo, hi]`
//! its quantization covers. Each sees batches one at a time and keeps bounded state (a min/max
//! pair or a [`Histogram`]); the range methods follow ORT's `calibrate.py`:
//!
//! * MinMax: smallest and largest value (ORT `MinMaxCalibrater`, no moving average).
//! * Percentile: ORT's `compute_percentile` on the histogram. Asymmetric keeps the central
//!   `p`% (cutting `(100 − p)/2`% each side); symmetric cuts `|x|` at `p`%. ORT histograms `|x|`
//!   for the symmetric case with its first edge at `min |x|`; quench folds its signed histogram
//!   instead (first edge 0), so the threshold can differ from ORT's by one bin there.
//! * Entropy: ORT's `get_entropy_threshold` (TensorRT's KL search) to the letter, including its
//!   integer truncation of the expanded quantized distribution and its smoothing.
//! * MSE: the candidate thresholds of the entropy search, `[-t, t]` clipped to the observed
//!   `[min, max]`, scored by the expected squared error of quantize-dequantize on the target
//!   integer grid over the bin centres; the smallest error wins (the first on ties).

use crate::quant::histogram::Histogram;
use crate::quant::numerics::{compute_scale_zp, fake_quantize, QRange};
use crate::quant::scheme::{ActQuant, Calibration};
use crate::quant::QuantError;

/// A calibrated activation range `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibratedRange {
    /// Lower end.
    pub min: f32,
    /// Upper end.
    pub max: f32,
}

/// The state of one tensor's calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrator {
    name: String,
    method: Calibration,
    state: State,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    MinMax(Option<(f32, f32)>),
    Histogram(Histogram),
}

impl Calibrator {
    /// A calibrator for the tensor `name` (used in errors) by `method`.
    pub fn new(name: &str, method: Calibration) -> Result<Calibrator, QuantError> {
        method.validate()?;
        let state = match method {
            Calibration::MinMax => State::MinMax(None),
            Calibration::Percentile { num_bins, .. }
            | Calibration::Entropy { num_bins, .. }
            | Calibration::Mse { num_bins } => State::Histogram(Histogram::new(num_bins)),
        };
        Ok(Calibrator {
            name: name.to_string(),
            method,
            state,
        })
    }

    /// The tensor calibrated.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds one batch of the tensor's values. Fails naming the tensor and the position of the
    /// first NaN or infinity.
    pub fn observe(&mut self, values: &[f32]) -> Result<(), QuantError> {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::Calibration {
                name: self.name.clone(),
                message: format!("element {i} of the batch is {}", values[i]),
            });
        }
        match &mut self.state {
            State::MinMax(range) => {
                for &v in values {
                    let (lo, hi) = range.get_or_insert((v, v));
                    *lo = lo.min(v);
                    *hi = hi.max(v);
                }
            }
            State::Histogram(h) => h.observe(values),
        }
        Ok(())
    }

    /// The range for quantizing onto `target`'s grid. Fails when nothing was observed.
    pub fn range(&self, target: ActQuant) -> Result<CalibratedRange, QuantError> {
        let empty = || QuantError::Calibration {
            name: self.name.clone(),
            message: "no values were observed".into(),
        };
        let (lo, hi) = match (&self.state, self.method) {
            (State::MinMax(r), _) => {
                let (lo, hi) = r.ok_or_else(empty)?;
                if target.symmetric {
                    let m = lo.abs().max(hi.abs());
                    (-m, m)
                } else {
                    (lo, hi)
                }
            }
            (State::Histogram(h), method) => {
                let (min, max) = h.min_max().ok_or_else(empty)?;
                let (lo, hi) = match method {
                    Calibration::Percentile { percentile, .. } => {
                        percentile_range(h, percentile, target.symmetric)
                    }
                    Calibration::Entropy {
                        num_quantized_bins, ..
                    } => entropy_range(h, num_quantized_bins),
                    _ => mse_range(&self.name, h, target)?,
                };
                (lo.max(min), hi.min(max))
            }
        };
        Ok(CalibratedRange { min: lo, max: hi })
    }
}

/// numpy's `searchsorted(cdf, v)` (left): the first index whose value is ≥ `v`.
fn search_sorted(cdf: &[f64], v: f64) -> usize {
    cdf.partition_point(|&c| c < v)
}

fn cumulative(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    let mut acc = 0.0;
    counts
        .iter()
        .map(|&c| {
            acc += c as f64 / total as f64;
            acc
        })
        .collect()
}

fn percentile_range(h: &Histogram, percentile: f64, symmetric: bool) -> (f32, f32) {
    let n = h.counts().len();
    if symmetric {
        let half = n / 2;
        let folded: Vec<u64> = (0..half)
            .map(|j| h.counts()[half + j] + h.counts()[half - 1 - j])
            .collect();
        let idx = search_sorted(&cumulative(&folded), percentile / 100.0).min(half);
        let t = h.edge(half + idx);
        (-t, t)
    } else {
        let cdf = cumulative(h.counts());
        let cut = (100.0 - percentile) / 200.0;
        let right = search_sorted(&cdf, 1.0 - cut).min(n);
        let left = search_sorted(&cdf, cut).min(n);
        (h.edge(left), h.edge(right))
    }
}

/// ORT's `smooth_distribution`: zeros become `eps`, the mass is taken evenly off the non-zeros;
/// `None` when everything is zero.
fn smooth(p: &[f64]) -> Option<Vec<f32>> {
    const EPS: f64 = 0.0001;
    let zeros = p.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return None;
    }
    let eps1 = (EPS * zeros as f64 / nonzeros as f64) as f32;
    Some(
        p.iter()
            .map(|&v| {
                if v == 0.0 {
                    EPS as f32
                } else {
                    v as f32 - eps1
                }
            })
            .collect(),
    )
}

/// `Σ p log(p/q)` of the two normalised distributions.
fn kl(p: &[f32], q: &[f32]) -> f64 {
    let sp: f64 = p.iter().map(|&v| f64::from(v)).sum();
    let sq: f64 = q.iter().map(|&v| f64::from(v)).sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (f64::from(a) / sp, f64::from(b) / sq);
            if a > 0.0 && b > 0.0 {
                a * (a / b).ln()
            } else if a == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .sum()
}

/// ORT's `get_entropy_threshold`.
fn entropy_range(h: &Histogram, num_quantized_bins: usize) -> (f32, f32) {
    let hist = h.counts();
    let n = hist.len();
    let zero = n / 2;
    let half_q = num_quantized_bins / 2;
    let mut best = (f64::INFINITY, (h.edge(0), h.edge(n)));
    let mut first = true;
    for i in half_q..=zero {
        let start = zero - i;
        let end = (zero + i + 1).min(n);
        let sliced = &hist[start..end];
        let mut p: Vec<f64> = sliced.iter().map(|&c| c as f64).collect();
        let len = p.len();
        p[0] += hist[..start].iter().sum::<u64>() as f64;
        p[len - 1] += hist[end..].iter().sum::<u64>() as f64;
        let merged = len / num_quantized_bins;
        let mut quantized = vec![0u64; num_quantized_bins];
        for (j, qb) in quantized.iter_mut().enumerate() {
            *qb = sliced[j * merged..(j + 1) * merged].iter().sum();
        }
        quantized[num_quantized_bins - 1] +=
            sliced[num_quantized_bins * merged..].iter().sum::<u64>();
        let mut q = vec![0.0f64; len];
        for (j, &qb) in quantized.iter().enumerate() {
            let range = j * merged..(j + 1) * merged;
            let norm = p[range.clone()].iter().filter(|&&v| v != 0.0).count();
            if norm != 0 {
                // ORT stores `quantized / norm` into an int64 array: truncation.
                let v = (qb as f64 / norm as f64).trunc();
                q[range].iter_mut().for_each(|x| *x = v);
            }
        }
        let div = match (smooth(&p), smooth(&q)) {
            (Some(p), Some(q)) => kl(&p, &q),
            _ => f64::INFINITY,
        };
        if first || div < best.0 {
            best = (div, (h.edge(start), h.edge(end)));
            first = false;
        }
    }
    best.1
}

fn mse_range(name: &str, h: &Histogram, target: ActQuant) -> Result<(f32, f32), QuantError> {
    let (min, max) = h.min_max().unwrap_or((0.0, 0.0));
    let n = h.counts().len();
    let grid = QRange::for_type(target.dtype, target.symmetric);
    let occupied: Vec<(f32, f64)> = (0..n)
        .filter(|&i| h.counts()[i] > 0)
        .map(|i| {
            let c = h.center(i).clamp(f64::from(min), f64::from(max)) as f32;
            (c, h.counts()[i] as f64)
        })
        .collect();
    let mut best: Option<(f64, (f32, f32))> = None;
    for i in 1..=n / 2 {
        let t = h.edge(n / 2 + i);
        let (lo, hi) = ((-t).max(min), t.min(max));
        let p = compute_scale_zp(name, lo.min(hi), hi, grid, target.symmetric)?;
        let err: f64 = occupied
            .iter()
            .map(|&(c, w)| {
                let d = f64::from(fake_quantize(c, p, grid)) - f64::from(c);
                w * d * d
            })
            .sum();
        if best.is_none_or(|(e, _)| err < e) {
            best = Some((err, (lo, hi)));
        }
    }
    Ok(best.map_or((min, max), |b| b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scheme::ActType;

    const U8: ActQuant = ActQuant {
        dtype: ActType::U8,
        symmetric: false,
    };
    const S8S: ActQuant = ActQuant {
        dtype: ActType::S8,
        symmetric: true,
    };

    fn calibrate(method: Calibration, batches: &[&[f32]], target: ActQuant) -> (f32, f32) {
        let mut c = Calibrator::new("t", method).unwrap();
        for b in batches {
            c.observe(b).unwrap();
        }
        let r = c.range(target).unwrap();
        (r.min, r.max)
    }

    #[test]
    fn minmax_over_batches() {
        let r = calibrate(Calibration::MinMax, &[&[1.0, -2.0], &[3.0, 0.5]], U8);
        assert_eq!(r, (-2.0, 3.0));
        let r = calibrate(Calibration::MinMax, &[&[1.0, -2.0], &[3.0, 0.5]], S8S);
        assert_eq!(r, (-3.0, 3.0));
    }

    #[test]
    fn bad_observations_are_named() {
        let mut c = Calibrator::new("conv1_in", Calibration::MinMax).unwrap();
        let err = c.observe(&[0.0, f32::NAN]).unwrap_err().to_string();
        assert!(
            err.contains("conv1_in") && err.contains("element 1"),
            "{err}"
        );
        let err = c.range(U8).unwrap_err().to_string();
        assert!(err.contains("no values"), "{err}");
    }

    /// Values `k / 100` for k in -1000..=1000 plus a far outlier.
    fn ramp_with_outlier() -> Vec<f32> {
        let mut v: Vec<f32> = (-1000..=1000).map(|k| k as f32 / 100.0).collect();
        v.push(100.0);
        v
    }

    #[test]
    fn percentile_cuts_tails_as_ort_does() {
        // 2002 values, 8 bins of width 25 on [-100, 100]: bin 3 holds 1000 values, bin 4 1001,
        // bin 7 the outlier. Asymmetric 99%: cut 0.5% per side; cdf = [0, 0, 0, .4995, .9995,
        // .9995, .9995, 1]: left = 3 (edge -25, clamped to the min -10), right = 4, whose LEFT
        // edge 0 ORT takes. ORT 1.32 gives (-10.0, 0.0) here too.
        let v = ramp_with_outlier();
        let p = |percentile, num_bins| Calibration::Percentile {
            percentile,
            num_bins,
        };
        assert_eq!(calibrate(p(99.0, 8), &[&v], U8), (-10.0, 0.0));
        // Symmetric 99.9: folded |x| cdf [.9995, ...] -> index 0 -> t = 0 (ORT: (-0.0, 0.0)).
        assert_eq!(calibrate(p(99.9, 8), &[&v], S8S), (0.0, 0.0));
        // ORT 1.32 on `gaussian_like(20000, 7)`, 2048 bins, 99.99%: asymmetric
        // (-6.1575937, 6.6001005), symmetric (-6.6038504, 6.6038504); within one bin.
        let g = gaussian_like(20000, 7);
        let bin = 2.0 * ORT_THRESHOLD / 2048.0;
        let (lo, hi) = calibrate(p(99.99, 2048), &[&g], U8);
        assert!((lo + 6.157_593_7).abs() <= bin && (hi - 6.600_100_5).abs() <= bin);
        let (lo, hi) = calibrate(p(99.99, 2048), &[&g], S8S);
        assert!((lo + 6.603_850_4).abs() <= bin && (hi - 6.603_850_4).abs() <= bin);
    }

    #[test]
    fn entropy_matches_ort_entropy_calibrater() {
        // ORT 1.32: HistogramCollector("entropy", symmetric=False, num_bins=2048,
        // num_quantized_bins=128) fed `gaussian_like(20000, 7)` in two batches of 10000 gives
        // (-4.972575, 4.980076) on a histogram of half-width 7.6801167.
        let v = gaussian_like(20000, 7);
        assert_eq!(&v[..3], &[1.089_777_8, -0.497_839_4, 1.946_150_5]);
        let (lo, hi) = calibrate(
            Calibration::Entropy {
                num_bins: 2048,
                num_quantized_bins: 128,
            },
            &[&v[..10000], &v[10000..]],
            U8,
        );
        let bin = 2.0 * ORT_THRESHOLD / 2048.0;
        assert!(
            (lo + 4.972_575).abs() <= bin && (hi - 4.980_076).abs() <= bin,
            "{lo} {hi}"
        );
    }

    #[test]
    fn mse_finds_the_analytic_optimum_and_keeps_a_dense_range() {
        // One outlier at 100 among 200,001 values spread evenly on [-10, 10], s8 symmetric:
        // clipping at t costs the outlier (100 − t)² and every value ≈ (t/127)²/12, minimal at
        // 100 − t = t · 200001 / (127² · 12), t ≈ 49.2 (not at 10: the outlier alone would cost
        // 8100 there), and the lower end stays at the observed minimum.
        let mut v: Vec<f32> = (-100_000..=100_000).map(|k| k as f32 / 10_000.0).collect();
        v.push(100.0);
        let m = Calibration::Mse { num_bins: 2048 };
        let (lo, hi) = calibrate(m, &[&v], S8S);
        assert_eq!(lo, -10.0);
        assert!(hi > 47.0 && hi < 51.5, "{hi}");
        let dense: Vec<f32> = (0..=1000).map(|k| k as f32 / 1000.0).collect();
        let (lo, hi) = calibrate(m, &[&dense], U8);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.99, "{hi}");
    }

    /// Deterministic heavy-ish tailed values: a sum of uniforms from a xorshift stream, cubed
    /// for tails.
    pub(crate) fn gaussian_like(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| {
                let g = (0..4).map(|_| next()).sum::<f32>() - 2.0;
                g * g * g + 0.25 * g
            })
            .collect()
    }

    /// Half-width of ORT's histogram of `gaussian_like(20000, 7)` (its max |x|).
    const ORT_THRESHOLD: f32 = 7.680_116_7;
}
