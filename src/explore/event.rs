//! Progress events of the exploration jobs (sensitivity, search, drift). They are their own
//! type rather than variants of [`crate::sweep::event::Event`], whose variants are about the
//! cells of a sweep plan; a listener (the command line's stderr printer, a TUI screen) receives
//! them through a `&(dyn Fn(&ExploreEvent) + Sync)` callback, called from worker threads too.

use serde::{Deserialize, Serialize};

/// One thing that happened in an exploration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ExploreEvent {
    /// A preparation step started (calibrating, scoring FP32, opening runtimes).
    Step {
        /// What is being done.
        message: String,
    },
    /// The per-layer variants are about to run.
    LayersStarted {
        /// Variants to score.
        total: usize,
        /// Layers analysed.
        layers: usize,
        /// Evaluation samples per variant.
        samples: usize,
    },
    /// One per-layer variant was scored (in completion order, which varies with parallelism;
    /// results do not).
    LayerScored {
        /// Variants scored so far.
        done: usize,
        /// Variants in all.
        total: usize,
        /// The layer.
        layer: String,
        /// What was done to it, e.g. `only int8` or `all but`.
        variant: String,
        /// Accuracy drop (or disagreement without labels) against FP32, as a fraction.
        drop: f64,
    },
    /// The search scored a candidate assignment.
    CandidateTried {
        /// Candidates tried so far (this one included).
        index: usize,
        /// The assignment in words (`conv1=int8 fc1=int4 ...`).
        assignment: String,
        /// Held-out accuracy drop (or disagreement) against FP32, as a fraction.
        drop: f64,
        /// Whether it is within the budget.
        feasible: bool,
        /// The objective value measured (bytes, relative latency or joules per inference).
        objective: Option<f64>,
    },
    /// A new best model was written.
    NewBest {
        /// Candidate index.
        index: usize,
        /// Where it was written.
        path: String,
        /// Its objective value.
        objective: f64,
    },
    /// Something the user should read (a fallback, a stop on the time budget).
    Warning {
        /// The message.
        message: String,
    },
}
