//! "Which variant should I ship?": for each model on each device, the fastest cell whose quality
//! stays within an accuracy budget of the FP32 model, with the figures that justify it.

use crate::report::table::{bytes, duration_ms, percent};
use crate::report::view::{self, Metric};
use crate::sweep::record::{Precision, Record};

/// The FP32 quality a budget is counted from.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The best FP32 cell of the model on the device.
    Measured {
        /// Its figure, as a fraction.
        score: f64,
    },
    /// No FP32 cell was measured: the FP32 accuracy the model's manifest records.
    Manifest {
        /// That accuracy, as a fraction.
        score: f64,
    },
    /// Agreement with FP32 is 1 for FP32 itself by definition.
    Definition,
}

impl Baseline {
    /// The baseline figure, as a fraction.
    pub fn score(&self) -> f64 {
        match self {
            Baseline::Measured { score } | Baseline::Manifest { score } => *score,
            Baseline::Definition => 1.0,
        }
    }
}

/// One cell considered for shipping.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Variant and runtime, e.g. `int8 static minmax · native`.
    pub label: String,
    /// Weight precision.
    pub precision: Precision,
    /// Quality figure, as a fraction.
    pub score: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// Model file bytes.
    pub file_bytes: u64,
    /// The FP32 cell on the same runtime, threads and batch: its median latency, milliseconds.
    pub fp32_p50_ms: Option<f64>,
    /// The FP32 model file's bytes.
    pub fp32_file_bytes: Option<u64>,
}

/// The advice for one model on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Advice {
    /// Model name.
    pub model: String,
    /// Device (see [`view::device`]).
    pub device: String,
    /// The quality figure compared.
    pub metric: Metric,
    /// Largest allowed drop below the baseline, percentage points.
    pub budget_pp: f64,
    /// What the drop is counted from; `None` when nothing says what FP32 scores.
    pub baseline: Option<Baseline>,
    /// The fastest cell within budget.
    pub pick: Option<Candidate>,
    /// The cell with the smallest model file within budget, when it is not the pick.
    pub smallest: Option<Candidate>,
    /// Cells measured but over budget: label and drop in percentage points.
    pub over_budget: Vec<(String, f64)>,
}

/// The advice for every model × device of the records, sorted by model then device. Only cells
/// that finished (`ok`) with a quality figure and a latency count.
pub fn advise(records: &[Record], budget_pp: f64) -> Vec<Advice> {
    let mut out = Vec::new();
    for model in view::distinct(records, |r| r.key.model.clone()) {
        let of_model: Vec<&Record> = records.iter().filter(|r| r.key.model == model).collect();
        let metric = Metric::for_records(of_model.iter().copied());
        let devices = view::distinct(records, view::device);
        for device in devices {
            let cells: Vec<&Record> = of_model
                .iter()
                .copied()
                .filter(|r| view::device(r) == device)
                .collect();
            if cells.is_empty() {
                continue;
            }
            out.push(advise_one(&model, &device, metric, &cells, budget_pp));
        }
    }
    out
}

fn advise_one(
    model: &str,
    device: &str,
    metric: Metric,
    cells: &[&Record],
    budget_pp: f64,
) -> Advice {
    let usable: Vec<&Record> = cells
        .iter()
        .copied()
        .filter(|r| view::is_ok(r) && metric.of(r).is_some() && view::p50_ms(r).is_some())
        .collect();
    let fp32 = |r: &Record| r.key.precision == Precision::Fp32;
    let measured = usable
        .iter()
        .filter(|r| fp32(r))
        .filter_map(|r| metric.of(r))
        .max_by(f64::total_cmp);
    let baseline = match (measured, metric) {
        (Some(score), _) => Some(Baseline::Measured { score }),
        (None, Metric::Agreement) => Some(Baseline::Definition),
        (None, Metric::Accuracy) => cells
            .iter()
            .find_map(|r| r.quality.as_ref()?.expected_fp32_accuracy)
            .map(|score| Baseline::Manifest { score }),
    };
    let labeler = view::Labeler {
        device: false,
        ..view::Labeler::for_records(usable.iter().copied())
    };
    let candidate = |r: &Record| {
        let twin = usable.iter().find(|f| {
            fp32(f)
                && f.key.runtime == r.key.runtime
                && f.key.threads == r.key.threads
                && f.key.batch == r.key.batch
        });
        Candidate {
            label: labeler.label(r),
            precision: r.key.precision,
            score: metric.of(r).unwrap_or(f64::NAN),
            p50_ms: view::p50_ms(r).unwrap_or(f64::NAN),
            file_bytes: r.sizes.model_file_bytes,
            fp32_p50_ms: twin.and_then(|f| view::p50_ms(f)),
            fp32_file_bytes: cells
                .iter()
                .find(|f| fp32(f) && f.sizes.model_file_bytes > 0)
                .map(|f| f.sizes.model_file_bytes),
        }
    };
    let mut within = Vec::new();
    let mut over_budget = Vec::new();
    if let Some(b) = &baseline {
        for r in &usable {
            let c = candidate(r);
            let drop_pp = (b.score() - c.score) * 100.0;
            if drop_pp <= budget_pp + 1e-9 {
                within.push(c);
            } else {
                over_budget.push((c.label, drop_pp));
            }
        }
    }
    over_budget.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let pick = within
        .iter()
        .min_by(|a, b| {
            a.p50_ms
                .total_cmp(&b.p50_ms)
                .then(a.file_bytes.cmp(&b.file_bytes))
        })
        .cloned();
    let smallest = within
        .iter()
        .filter(|c| c.file_bytes > 0)
        .min_by(|a, b| {
            a.file_bytes
                .cmp(&b.file_bytes)
                .then(a.p50_ms.total_cmp(&b.p50_ms))
        })
        .filter(|s| pick.as_ref().is_some_and(|p| p.file_bytes > s.file_bytes))
        .cloned();
    Advice {
        model: model.to_string(),
        device: device.to_string(),
        metric,
        budget_pp,
        baseline,
        pick,
        smallest,
        over_budget,
    }
}

/// How a rendering marks up emphasis and escapes text (HTML and Markdown differ).
pub trait Markup {
    /// Plain text, escaped.
    fn text(&self, s: &str) -> String;
    /// Emphasised text, escaped.
    fn strong(&self, s: &str) -> String;
}

impl Advice {
    /// The advice as one paragraph.
    pub fn sentence(&self, m: &dyn Markup) -> String {
        let metric = self.metric.title();
        let mut out = format!("{} on {}: ", m.strong(&self.model), m.text(&self.device));
        let Some(baseline) = &self.baseline else {
            out.push_str(&m.text(&format!(
                "no FP32 cell and no expected FP32 {metric} in the records, so no budget can be applied."
            )));
            return out;
        };
        let floor = (baseline.score() - self.budget_pp / 100.0).max(0.0);
        let from = match baseline {
            Baseline::Measured { .. } => format!("FP32's measured {}", percent(baseline.score())),
            Baseline::Manifest { .. } => format!(
                "the manifest's FP32 {} (no FP32 cell measured)",
                percent(baseline.score())
            ),
            Baseline::Definition => "FP32 itself".to_string(),
        };
        let Some(pick) = &self.pick else {
            out.push_str(&m.text(&format!(
                "no finished cell keeps {metric} at or above {} ({} pp below {from}).",
                percent(floor),
                self.budget_pp
            )));
            return self.append_over_budget(out, m);
        };
        out.push_str(&m.text("ship "));
        out.push_str(&m.strong(&pick.label));
        let mut facts = vec![format!("{} p50", duration_ms(pick.p50_ms))];
        match pick.fp32_p50_ms {
            _ if pick.precision == Precision::Fp32 => {
                facts.push("no quantized cell within budget is faster".to_string())
            }
            Some(f) => facts.push(format!(
                "{:.2}× as fast as FP32 on the same runtime ({})",
                f / pick.p50_ms,
                duration_ms(f)
            )),
            None => {}
        }
        facts.push(format!(
            "{metric} {} ({:+.2} pp against {from}; budget {} pp)",
            percent(pick.score),
            (pick.score - baseline.score()) * 100.0,
            self.budget_pp
        ));
        if pick.file_bytes > 0 {
            let fp32 = match pick.fp32_file_bytes {
                Some(f) if pick.precision != Precision::Fp32 => format!(" (FP32: {})", bytes(f)),
                _ => String::new(),
            };
            facts.push(format!("model file {}{fp32}", bytes(pick.file_bytes)));
        }
        out.push_str(&m.text(&format!(": {}.", facts.join("; "))));
        if let Some(s) = &self.smallest {
            out.push_str(&m.text(" Smallest within budget: "));
            out.push_str(&m.strong(&s.label));
            out.push_str(&m.text(&format!(
                " ({}, {} p50, {metric} {}).",
                bytes(s.file_bytes),
                duration_ms(s.p50_ms),
                percent(s.score)
            )));
        }
        self.append_over_budget(out, m)
    }

    fn append_over_budget(&self, mut out: String, m: &dyn Markup) -> String {
        if !self.over_budget.is_empty() {
            let list: Vec<String> = self
                .over_budget
                .iter()
                .map(|(label, drop)| format!("{label} (−{drop:.2} pp)"))
                .collect();
            out.push_str(&m.text(&format!(" Over budget: {}.", list.join(", "))));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    struct Plain;
    impl Markup for Plain {
        fn text(&self, s: &str) -> String {
            s.to_string()
        }
        fn strong(&self, s: &str) -> String {
            format!("*{s}*")
        }
    }

    #[test]
    fn picks_the_fastest_cell_within_budget_and_lists_the_rest() {
        let records = fixture::records();
        let advice = advise(&records, 1.0);
        assert!(!advice.is_empty());
        for a in &advice {
            let Some(pick) = &a.pick else { continue };
            let b = a.baseline.as_ref().unwrap().score();
            assert!((b - pick.score) * 100.0 <= 1.0 + 1e-9, "{a:?}");
            // Nothing within budget on that device is faster.
            for r in records
                .iter()
                .filter(|r| r.key.model == a.model && view::device(r) == a.device && view::is_ok(r))
            {
                let (Some(s), Some(p)) = (a.metric.of(r), view::p50_ms(r)) else {
                    continue;
                };
                if (b - s) * 100.0 <= 1.0 {
                    assert!(
                        p >= pick.p50_ms,
                        "{} is faster than {}",
                        variant_of(r),
                        pick.label
                    );
                }
            }
        }
    }

    fn variant_of(r: &Record) -> String {
        view::Labeler::FULL.label(r)
    }

    #[test]
    fn a_zero_budget_keeps_only_cells_as_good_as_fp32() {
        let records = fixture::records();
        for a in advise(&records, 0.0) {
            if let (Some(p), Some(b)) = (&a.pick, &a.baseline) {
                assert!(p.score >= b.score() - 1e-9);
            }
        }
    }

    #[test]
    fn without_any_fp32_figure_the_advice_says_so() {
        let mut records = fixture::records();
        records.retain(|r| r.key.model == "mnist-cnn" && r.key.precision != Precision::Fp32);
        for r in &mut records {
            if let Some(q) = r.quality.as_mut() {
                q.expected_fp32_accuracy = None;
            }
        }
        let advice = advise(&records, 1.0);
        assert!(advice
            .iter()
            .all(|a| a.baseline.is_none() && a.pick.is_none()));
        assert!(advice[0]
            .sentence(&Plain)
            .contains("no budget can be applied"));
    }
}
