//! Optimisers (SGD with momentum, Adam) and learning-rate schedules.

use serde::{Deserialize, Serialize};

/// How parameters follow their gradients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Optimizer {
    /// `v = μ·v + g + λ·w; w -= lr·v`.
    Sgd {
        /// Momentum μ.
        momentum: f32,
        /// L2 weight decay λ.
        weight_decay: f32,
    },
    /// Adam (Kingma & Ba, ICLR 2015) with bias correction.
    Adam {
        /// First-moment decay β₁.
        beta1: f32,
        /// Second-moment decay β₂.
        beta2: f32,
        /// Denominator guard ε.
        eps: f32,
    },
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// `base · ½(1 + cos(π·step/steps))`, from the base rate down to 0 at the last step.
    Cosine,
    /// `base · gamma^(step / every)`.
    Step {
        /// Steps between drops.
        every: usize,
        /// Factor per drop.
        gamma: f32,
    },
}

impl LrSchedule {
    /// The rate at `step` of `total` steps.
    pub fn rate(&self, base: f32, step: usize, total: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let t = step as f32 / total.max(1) as f32;
                base * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
            LrSchedule::Step { every, gamma } => base * gamma.powi((step / every.max(1)) as i32),
        }
    }
}

/// Optimiser state for a list of parameter tensors.
#[derive(Debug, Clone)]
pub(crate) struct OptState {
    kind: Optimizer,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl OptState {
    pub fn new(kind: Optimizer, sizes: impl Iterator<Item = usize>) -> OptState {
        let m: Vec<Vec<f32>> = sizes.map(|n| vec![0.0; n]).collect();
        let v = match kind {
            Optimizer::Adam { .. } => m.clone(),
            Optimizer::Sgd { .. } => Vec::new(),
        };
        OptState { kind, m, v, t: 0 }
    }

    /// One update of every parameter `params[i]` along `grads[i]` at rate `lr`.
    pub fn step<'a>(
        &mut self,
        params: impl Iterator<Item = &'a mut Vec<f32>>,
        grads: &[Vec<f32>],
        lr: f32,
    ) {
        self.t += 1;
        for (i, w) in params.enumerate() {
            let g = &grads[i];
            match self.kind {
                Optimizer::Sgd {
                    momentum,
                    weight_decay,
                } => {
                    for ((w, &g), m) in w.iter_mut().zip(g).zip(&mut self.m[i]) {
                        *m = momentum * *m + g + weight_decay * *w;
                        *w -= lr * *m;
                    }
                }
                Optimizer::Adam { beta1, beta2, eps } => {
                    let c1 = 1.0 - beta1.powi(self.t);
                    let c2 = 1.0 - beta2.powi(self.t);
                    for (((w, &g), m), v) in
                        w.iter_mut().zip(g).zip(&mut self.m[i]).zip(&mut self.v[i])
                    {
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(LrSchedule::Cosine.rate(1.0, 0, 10), 1.0);
        assert!((LrSchedule::Cosine.rate(1.0, 5, 10) - 0.5).abs() < 1e-6);
        assert!(LrSchedule::Cosine.rate(1.0, 10, 10).abs() < 1e-6);
        let s = LrSchedule::Step {
            every: 3,
            gamma: 0.1,
        };
        assert_eq!(s.rate(1.0, 2, 10), 1.0);
        assert!((s.rate(1.0, 3, 10) - 0.1).abs() < 1e-7);
    }

    #[test]
    fn both_optimisers_minimise_a_quadratic() {
        for kind in [
            Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 0.0,
            },
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        ] {
            let mut w = vec![vec![3.0f32, -2.0]];
            let mut st = OptState::new(kind, [2].into_iter());
            for _ in 0..500 {
                let g = vec![w[0].iter().map(|&x| 2.0 * x).collect::<Vec<_>>()];
                st.step(w.iter_mut(), &g, 0.02);
            }
            assert!(w[0].iter().all(|x| x.abs() < 0.05), "{kind:?}: {w:?}");
        }
    }
}
