//! Accuracy and agreement metrics on model outputs `[samples, classes...]` (everything after the
//! first dimension is one sample's scores), and SQNR and cosine similarity between any two
//! tensors of one shape (per-layer comparisons). Pure functions of their inputs.

use crate::eval::manifest::OutputKind;
use crate::tensor::{Tensor, TensorError};

/// Probabilities below this are treated as this when taking their logarithm (guards `log(0)`).
pub const PROB_FLOOR: f64 = 1e-12;

/// Reference magnitudes below this are treated as this when computing relative differences.
pub const REL_FLOOR: f64 = 1e-6;

/// Outputs that cannot be compared or scored.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// An output is not f32.
    #[error("{0}")]
    Type(#[from] TensorError),
    /// An output has no sample dimension or no scores per sample.
    #[error("output shape {0:?}: expected [samples, classes...] with at least one class")]
    NotScores(Vec<usize>),
    /// Two output sets, or outputs and labels, disagree in shape or count.
    #[error("cannot compare {what}: {left:?} vs {right:?}")]
    Mismatch {
        /// What was being compared.
        what: &'static str,
        /// Shape or count of the first operand.
        left: Vec<usize>,
        /// Shape or count of the second operand.
        right: Vec<usize>,
    },
}

/// Correct predictions out of all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Predictions equal to their label.
    pub correct: usize,
    /// Predictions scored.
    pub total: usize,
    /// `correct / total` (0 when there is nothing to score).
    pub fraction: f64,
}

/// Largest element-wise differences between a reference and a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// `max |candidate − reference|` (NaN when either holds a NaN where the other does not).
    pub max_abs: f64,
    /// `max |candidate − reference| / max(|reference|, REL_FLOOR)`.
    pub max_rel: f64,
}

/// Index of the largest value; ties go to the first, NaNs are ignored (0 when all are NaN).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in row.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// The rows of an f32 output: `(samples, classes, elements)`.
fn rows(t: &Tensor) -> Result<(usize, usize, &[f32]), MetricError> {
    let data = t.as_f32()?;
    match t.shape() {
        [n, rest @ ..] if !rest.is_empty() && rest.iter().all(|&d| d > 0) => {
            Ok((*n, rest.iter().product(), data))
        }
        other => Err(MetricError::NotScores(other.to_vec())),
    }
}

/// Top-1 class of every sample.
pub fn top1(outputs: &Tensor) -> Result<Vec<usize>, MetricError> {
    let (_, classes, data) = rows(outputs)?;
    Ok(data.chunks_exact(classes).map(argmax).collect())
}

/// Top-1 accuracy of predictions against labels.
pub fn accuracy(predictions: &[usize], labels: &[i64]) -> Result<Accuracy, MetricError> {
    if predictions.len() != labels.len() {
        return Err(MetricError::Mismatch {
            what: "predictions with labels",
            left: vec![predictions.len()],
            right: vec![labels.len()],
        });
    }
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|&(&p, &l)| i64::try_from(p) == Ok(l))
        .count();
    let total = labels.len();
    let fraction = if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    };
    Ok(Accuracy {
        correct,
        total,
        fraction,
    })
}

/// Checks two output sets have one shape.
fn same_shape(what: &'static str, a: &Tensor, b: &Tensor) -> Result<(), MetricError> {
    if a.shape() != b.shape() {
        return Err(MetricError::Mismatch {
            what,
            left: a.shape().to_vec(),
            right: b.shape().to_vec(),
        });
    }
    Ok(())
}

/// Fraction of samples whose top-1 class is the same in both output sets.
pub fn agreement(reference: &Tensor, candidate: &Tensor) -> Result<f64, MetricError> {
    same_shape("outputs for agreement", reference, candidate)?;
    let a = top1(reference)?;
    let b = top1(candidate)?;
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    Ok(if a.is_empty() {
        0.0
    } else {
        same as f64 / a.len() as f64
    })
}

/// Natural logarithms of a row's probabilities: log-softmax of logits, or the logarithm of given
/// probabilities (not softmaxed again); each at least `ln(PROB_FLOOR)`.
fn log_probs(row: &[f32], kind: OutputKind, out: &mut Vec<f64>) {
    out.clear();
    let floor = PROB_FLOOR.ln();
    match kind {
        OutputKind::Logits => {
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let sum: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
            let lse = max + sum.ln();
            out.extend(row.iter().map(|&x| (f64::from(x) - lse).max(floor)));
        }
        OutputKind::Probabilities => {
            out.extend(row.iter().map(|&p| f64::from(p).max(PROB_FLOOR).ln()));
        }
    }
}

/// Mean over samples of KL(P‖Q), P the reference's distribution and Q the candidate's, both
/// taken per `kind`; terms where P is below `PROB_FLOOR` contribute nothing.
pub fn mean_kl(
    reference: &Tensor,
    candidate: &Tensor,
    kind: OutputKind,
) -> Result<f64, MetricError> {
    same_shape("outputs for KL divergence", reference, candidate)?;
    let (n, classes, p_data) = rows(reference)?;
    let (_, _, q_data) = rows(candidate)?;
    if n == 0 {
        return Ok(0.0);
    }
    let (mut lp, mut lq) = (Vec::with_capacity(classes), Vec::with_capacity(classes));
    let mut total = 0.0;
    for (p_row, q_row) in p_data
        .chunks_exact(classes)
        .zip(q_data.chunks_exact(classes))
    {
        log_probs(p_row, kind, &mut lp);
        log_probs(q_row, kind, &mut lq);
        total += lp
            .iter()
            .zip(&lq)
            .map(|(&a, &b)| {
                let p = a.exp();
                if p <= PROB_FLOOR {
                    0.0
                } else {
                    p * (a - b)
                }
            })
            .sum::<f64>();
    }
    Ok(total / n as f64)
}

/// Largest absolute and relative element-wise differences of two output sets.
pub fn difference(reference: &Tensor, candidate: &Tensor) -> Result<Difference, MetricError> {
    same_shape("outputs for differences", reference, candidate)?;
    let (a, b) = (reference.as_f32()?, candidate.as_f32()?);
    let mut d = Difference {
        max_abs: 0.0,
        max_rel: 0.0,
    };
    // A NaN, once seen, sticks: it is never hidden by a later larger value.
    let take = |max: &mut f64, x: f64| {
        if !max.is_nan() && (x.is_nan() || x > *max) {
            *max = x;
        }
    };
    for (&r, &c) in a.iter().zip(b) {
        let (r, c) = (f64::from(r), f64::from(c));
        let abs = if r == c { 0.0 } else { (c - r).abs() };
        take(&mut d.max_abs, abs);
        take(&mut d.max_rel, abs / r.abs().max(REL_FLOOR));
    }
    Ok(d)
}

/// Signal-to-quantisation-noise ratio in dB: `10·log10(Σ r² / Σ (c − r)²)` over all elements
/// (any shape, e.g. one layer's activations); `+inf` when the candidate equals the reference.
pub fn sqnr_db(reference: &Tensor, candidate: &Tensor) -> Result<f64, MetricError> {
    same_shape("tensors for SQNR", reference, candidate)?;
    Ok(ErrorSums::of(reference.as_f32()?, candidate.as_f32()?).sqnr_db())
}

/// Cosine similarity of two tensors taken as flat vectors: 1 when both are zero, 0 when only
/// one is.
pub fn cosine(reference: &Tensor, candidate: &Tensor) -> Result<f64, MetricError> {
    same_shape("tensors for cosine similarity", reference, candidate)?;
    Ok(ErrorSums::of(reference.as_f32()?, candidate.as_f32()?).cosine())
}

/// The running sums behind [`sqnr_db`] and [`cosine`], so that values arriving batch by batch
/// are scored without being kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorSums {
    signal: f64,
    noise: f64,
    dot: f64,
    candidate: f64,
}

impl ErrorSums {
    /// The sums over one pair of equally long slices.
    pub fn of(reference: &[f32], candidate: &[f32]) -> ErrorSums {
        let mut sums = ErrorSums::default();
        sums.add(reference, candidate);
        sums
    }

    /// Adds the element pairs of `reference` and `candidate` (up to the shorter).
    pub fn add(&mut self, reference: &[f32], candidate: &[f32]) {
        for (&r, &c) in reference.iter().zip(candidate) {
            let (r, c) = (f64::from(r), f64::from(c));
            self.signal += r * r;
            self.noise += (c - r) * (c - r);
            self.dot += r * c;
            self.candidate += c * c;
        }
    }

    /// [`sqnr_db`] of everything added.
    pub fn sqnr_db(&self) -> f64 {
        if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }

    /// [`cosine`] of everything added.
    pub fn cosine(&self) -> f64 {
        match (self.signal == 0.0, self.candidate == 0.0) {
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            (false, false) => self.dot / (self.signal.sqrt() * self.candidate.sqrt()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape, v).unwrap()
    }

    #[test]
    fn argmax_takes_first_max_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, 0.5]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
    }

    #[test]
    fn top1_and_accuracy() {
        let out = t(vec![3, 2], vec![0.1, 0.9, 2.0, -1.0, 0.0, 5.0]);
        let p = top1(&out).unwrap();
        assert_eq!(p, vec![1, 0, 1]);
        let a = accuracy(&p, &[1, 1, 1]).unwrap();
        assert_eq!((a.correct, a.total), (2, 3));
        assert!((a.fraction - 2.0 / 3.0).abs() < 1e-12);
        assert!(accuracy(&p, &[1, 1]).is_err());
        assert_eq!(accuracy(&p, &[-1, 0, 1]).unwrap().correct, 2);
        assert!(matches!(
            top1(&t(vec![3], vec![0.0; 3])),
            Err(MetricError::NotScores(_))
        ));
    }

    #[test]
    fn agreement_counts_same_top1() {
        let a = t(vec![4, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
        let b = t(vec![4, 2], vec![2.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 3.0]);
        assert_eq!(agreement(&a, &b).unwrap(), 0.75);
        assert!(agreement(&a, &t(vec![2, 4], vec![0.0; 8])).is_err());
    }

    #[test]
    fn kl_of_logits_matches_hand_computation() {
        // P = softmax(0, ln 3) = (1/4, 3/4); Q = softmax(0, 0) = (1/2, 1/2).
        // KL = 1/4 ln(1/2) + 3/4 ln(3/2).
        let p = t(vec![1, 2], vec![0.0, 3f32.ln()]);
        let q = t(vec![1, 2], vec![0.0, 0.0]);
        let want = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        let got = mean_kl(&p, &q, OutputKind::Logits).unwrap();
        assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        // Identical outputs: zero. Shift-invariant: logits + 7 give the same distribution.
        assert_eq!(mean_kl(&p, &p, OutputKind::Logits).unwrap(), 0.0);
        let shifted = t(vec![1, 2], vec![7.0, 7.0]);
        let again = mean_kl(&p, &shifted, OutputKind::Logits).unwrap();
        assert!((again - want).abs() < 1e-7);
    }

    #[test]
    fn kl_of_probabilities_is_not_softmaxed_again_and_guards_zero() {
        let p = t(vec![2, 2], vec![0.25, 0.75, 1.0, 0.0]);
        let q = t(vec![2, 2], vec![0.5, 0.5, 0.0, 1.0]);
        // Row 1: as above. Row 2: P = (1, 0), Q = (0, 1): 1·(ln 1 − ln 1e-12).
        let row1 = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        let row2 = -(1e-12f64.ln());
        let got = mean_kl(&p, &q, OutputKind::Probabilities).unwrap();
        assert!(got.is_finite());
        assert!((got - (row1 + row2) / 2.0).abs() < 1e-6, "{got}");
    }

    #[test]
    fn differences_abs_and_rel() {
        let r = t(vec![1, 3], vec![1.0, -2.0, 0.0]);
        let c = t(vec![1, 3], vec![1.5, -2.0, 1e-7]);
        let d = difference(&r, &c).unwrap();
        assert!((d.max_abs - 0.5).abs() < 1e-7);
        // 0.5 / 1 = 0.5 beats 1e-7 / 1e-6 = 0.1.
        assert!((d.max_rel - 0.5).abs() < 1e-6);
        let n = t(vec![1, 3], vec![1.0, f32::NAN, 0.0]);
        assert!(difference(&r, &n).unwrap().max_abs.is_nan());
        assert_eq!(
            difference(&r, &r).unwrap(),
            Difference {
                max_abs: 0.0,
                max_rel: 0.0
            }
        );
    }

    #[test]
    fn sqnr_and_cosine_match_hand_computation() {
        // Signal 3² + 4² = 25, noise 0.5² = 0.25: 10·log10(100) = 20 dB.
        let r = t(vec![2], vec![3.0, 4.0]);
        let c = t(vec![2], vec![3.5, 4.0]);
        assert!((sqnr_db(&r, &c).unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(sqnr_db(&r, &r).unwrap(), f64::INFINITY);
        // (3·4 + 4·−3) = 0: orthogonal; (3, 4)·(6, 8) parallel.
        assert!(cosine(&r, &t(vec![2], vec![4.0, -3.0])).unwrap().abs() < 1e-12);
        assert!((cosine(&r, &t(vec![2], vec![6.0, 8.0])).unwrap() - 1.0).abs() < 1e-12);
        let z = t(vec![2], vec![0.0, 0.0]);
        assert_eq!(
            (cosine(&z, &z).unwrap(), cosine(&r, &z).unwrap()),
            (1.0, 0.0)
        );
        assert!(cosine(&r, &t(vec![1, 2], vec![3.0, 4.0])).is_err());
    }
}
