//! Training losses on a batch of scores `[batch × classes]`, each returning the mean loss and
//! its gradient with respect to the scores.

/// Softmax of `z / t` for one row.
fn softmax(z: &[f32], t: f32) -> Vec<f32> {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f32> = z.iter().map(|&v| ((v - m) / t).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Softmax cross-entropy against integer labels. Labels must be in `0..classes` (checked by the
/// caller).
pub(crate) fn cross_entropy(scores: &[f32], labels: &[usize], classes: usize) -> (f32, Vec<f32>) {
    let batch = labels.len();
    let mut grad = vec![0.0; scores.len()];
    let mut loss = 0.0f64;
    for (n, &y) in labels.iter().enumerate() {
        let p = softmax(&scores[n * classes..(n + 1) * classes], 1.0);
        loss -= f64::from(p[y].max(f32::MIN_POSITIVE).ln());
        for (c, (g, &pc)) in grad[n * classes..(n + 1) * classes]
            .iter_mut()
            .zip(&p)
            .enumerate()
        {
            *g = (pc - f32::from(u8::from(c == y))) / batch as f32;
        }
    }
    ((loss / batch as f64) as f32, grad)
}

/// Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural
/// network"): `T² · KL(softmax(teacher/T) ‖ softmax(student/T))`, averaged over the batch. The
/// `T²` keeps the gradient's size independent of the temperature.
pub(crate) fn distillation(
    student: &[f32],
    teacher: &[f32],
    classes: usize,
    temperature: f32,
) -> (f32, Vec<f32>) {
    let batch = student.len() / classes;
    let t = temperature;
    let mut grad = vec![0.0; student.len()];
    let mut loss = 0.0f64;
    for n in 0..batch {
        let r = n * classes..(n + 1) * classes;
        let ps = softmax(&student[r.clone()], t);
        let pt = softmax(&teacher[r.clone()], t);
        for (c, g) in grad[r].iter_mut().enumerate() {
            if pt[c] > 0.0 {
                loss += f64::from(pt[c] * (pt[c].ln() - ps[c].max(f32::MIN_POSITIVE).ln()));
            }
            *g = t * (ps[c] - pt[c]) / batch as f32;
        }
    }
    ((loss * f64::from(t * t) / batch as f64) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(f: impl Fn(&[f32]) -> f32, z: &[f32]) -> Vec<f32> {
        (0..z.len())
            .map(|i| {
                let (mut a, mut b) = (z.to_vec(), z.to_vec());
                a[i] += 1e-3;
                b[i] -= 1e-3;
                (f(&a) - f(&b)) / 2e-3
            })
            .collect()
    }

    #[test]
    fn losses_match_finite_differences() {
        let z = [0.3, -1.2, 2.0, 0.5, 0.1, -0.4];
        let (_, g) = cross_entropy(&z, &[2, 0], 3);
        let n = numeric(|z| cross_entropy(z, &[2, 0], 3).0, &z);
        for (a, b) in g.iter().zip(&n) {
            assert!((a - b).abs() < 2e-3, "{g:?} vs {n:?}");
        }
        let t = [1.0, 0.0, -1.0, -0.5, 0.7, 0.2];
        let (l, g) = distillation(&z, &t, 3, 2.0);
        assert!(l > 0.0);
        let n = numeric(|z| distillation(z, &t, 3, 2.0).0, &z);
        for (a, b) in g.iter().zip(&n) {
            assert!((a - b).abs() < 2e-3, "{g:?} vs {n:?}");
        }
        // Identical distributions: no loss, no gradient.
        let (l, g) = distillation(&t, &t, 3, 4.0);
        assert!(l.abs() < 1e-6 && g.iter().all(|v| v.abs() < 1e-7));
    }
}
