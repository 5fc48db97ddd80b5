//! The matrix the screens share: rows are model × precision × method (with calibrator and group),
//! columns are runtime × threads (× batch), and every cell is a planned key, a record, or
//! nothing. Also the only judgements the TUI makes of records: orderings (Pareto front, better
//! or worse than FP32), never a new figure.

use std::collections::{BTreeSet, HashMap};

use crate::runtime::RuntimeKind;
use crate::sweep::record::{CellKey, Method, Precision, Record, Status};

/// A matrix row: one model variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// Model name.
    pub model: String,
    /// Weight precision.
    pub precision: Precision,
    /// Quantization method.
    pub method: Method,
    /// Static range rule, when there is one.
    pub calibrator: Option<String>,
    /// 4-bit group size, when there is one.
    pub group: Option<usize>,
}

impl RowKey {
    /// The row of a cell.
    pub fn of(key: &CellKey) -> RowKey {
        RowKey {
            model: key.model.clone(),
            precision: key.precision,
            method: key.method,
            calibrator: key.calibrator.clone(),
            group: key.group,
        }
    }

    /// `mnist-cnn int8 static minmax`, `mnist-mlp int4 static g32`, `mnist-cnn fp32`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.model, self.precision.name());
        if self.method != Method::None {
            s.push(' ');
            s.push_str(self.method.name());
        }
        if let Some(c) = &self.calibrator {
            s.push(' ');
            s.push_str(c);
        }
        if let Some(g) = self.group {
            s.push_str(&format!(" g{g}"));
        }
        s
    }
}

/// A matrix column: where and how a variant ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColKey {
    /// Runtime.
    pub runtime: RuntimeKind,
    /// Compute threads.
    pub threads: usize,
    /// Batch size of the latency loop.
    pub batch: usize,
}

impl ColKey {
    /// The column of a cell.
    pub fn of(key: &CellKey) -> ColKey {
        ColKey {
            runtime: key.runtime,
            threads: key.threads,
            batch: key.batch,
        }
    }

    /// `ort t1`, or `ort t1 b8` when the batch is not 1.
    pub fn label(&self) -> String {
        if self.batch == 1 {
            format!("{} t{}", self.runtime, self.threads)
        } else {
            format!("{} t{} b{}", self.runtime, self.threads, self.batch)
        }
    }
}

/// The cell key at a row and a column.
pub fn cell_key(row: &RowKey, col: &ColKey) -> CellKey {
    CellKey {
        model: row.model.clone(),
        precision: row.precision,
        method: row.method,
        runtime: col.runtime,
        threads: col.threads,
        batch: col.batch,
        calibrator: row.calibrator.clone(),
        group: row.group,
    }
}

/// The FP32 cell of the same model on the same runtime, threads and batch.
fn fp32_twin(key: &CellKey) -> CellKey {
    CellKey {
        precision: Precision::Fp32,
        method: Method::None,
        calibrator: None,
        group: None,
        ..key.clone()
    }
}

/// The accuracy figure a record is judged by: top-1 accuracy against labels, else top-1
/// agreement with its reference. `None` unless the cell ended ok.
pub fn score(r: &Record) -> Option<Score> {
    if r.status != Status::Ok {
        return None;
    }
    let q = r.quality.as_ref()?;
    if let Some(a) = q.accuracy {
        return Some(Score::Accuracy(a));
    }
    q.agreement.as_ref().map(|a| Score::Agreement(a.top1))
}

/// An accuracy figure and what it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    /// Top-1 accuracy against labels.
    Accuracy(f64),
    /// Top-1 agreement with the reference run (data without labels).
    Agreement(f64),
}

impl Score {
    /// The fraction.
    pub fn value(self) -> f64 {
        match self {
            Score::Accuracy(v) | Score::Agreement(v) => v,
        }
    }
}

/// The x axis of the trade-off plot: a cost, lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Median latency, ms.
    Latency,
    /// Model file size, bytes.
    Size,
    /// Energy per inference (headline figure), joules.
    Energy,
}

impl Cost {
    /// The record's figure on this axis, when it has one (and the cell ended ok).
    pub fn of(self, r: &Record) -> Option<f64> {
        if r.status != Status::Ok {
            return None;
        }
        match self {
            Cost::Latency => r.latency.as_ref().map(|l| l.latency_ms.p50),
            Cost::Size => Some(r.sizes.model_file_bytes as f64),
            Cost::Energy => r
                .energy
                .as_ref()
                .and_then(|e| e.headline.as_ref())
                .map(|h| h.joules_per_inference),
        }
    }

    /// The next axis (latency → size → energy → latency).
    pub fn next(self) -> Cost {
        match self {
            Cost::Latency => Cost::Size,
            Cost::Size => Cost::Energy,
            Cost::Energy => Cost::Latency,
        }
    }

    /// Axis title.
    pub fn title(self) -> &'static str {
        match self {
            Cost::Latency => "p50 latency",
            Cost::Size => "model size",
            Cost::Energy => "energy / inference",
        }
    }
}

/// How a quantized cell compares with the FP32 cell of the same model and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As good (within half a point of accuracy) or faster.
    Good,
    /// Somewhat worse (within two points) or no faster.
    Fair,
    /// Clearly worse.
    Poor,
}

/// The matrix: every key known (planned or recorded), its latest record, and the ordering.
#[derive(Debug, Clone, Default)]
pub struct Grid {
    rows: Vec<RowKey>,
    cols: Vec<ColKey>,
    records: HashMap<CellKey, Record>,
    planned: BTreeSet<(RowKey, ColKey)>,
}

impl Grid {
    /// Adds a planned key (a cell that will run).
    pub fn plan(&mut self, key: &CellKey) {
        let (r, c) = (RowKey::of(key), ColKey::of(key));
        self.insert_axes(&r, c);
        self.planned.insert((r, c));
    }

    /// Adds or replaces the record of its key (the latest record of a key wins).
    pub fn record(&mut self, record: Record) {
        self.insert_axes(&RowKey::of(&record.key), ColKey::of(&record.key));
        self.records.insert(record.key.clone(), record);
    }

    fn insert_axes(&mut self, r: &RowKey, c: ColKey) {
        if let Err(i) = self.rows.binary_search(r) {
            self.rows.insert(i, r.clone());
        }
        if let Err(i) = self.cols.binary_search(&c) {
            self.cols.insert(i, c);
        }
    }

    /// Every row, ordered by model, precision, method.
    pub fn rows(&self) -> &[RowKey] {
        &self.rows
    }

    /// Every column, ordered by runtime, threads, batch.
    pub fn cols(&self) -> &[ColKey] {
        &self.cols
    }

    /// The record of a key, if it has one.
    pub fn get(&self, key: &CellKey) -> Option<&Record> {
        self.records.get(key)
    }

    /// Whether a key is part of the plan (or was recorded).
    pub fn is_known(&self, row: &RowKey, col: &ColKey) -> bool {
        self.planned.contains(&(row.clone(), *col))
            || self.records.contains_key(&cell_key(row, col))
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records of one model, in row then column order.
    pub fn model_records(&self, model: &str) -> Vec<&Record> {
        let mut out = Vec::new();
        for r in self.rows.iter().filter(|r| r.model == model) {
            for c in &self.cols {
                if let Some(rec) = self.records.get(&cell_key(r, c)) {
                    out.push(rec);
                }
            }
        }
        out
    }

    /// Whether a key is on its model's accuracy-vs-`cost` Pareto front.
    pub fn on_front(&self, key: &CellKey, cost: Cost) -> bool {
        let recs = self.model_records(&key.model);
        let points: Vec<(f64, f64)> = recs
            .iter()
            .map(|r| {
                (
                    cost.of(r).unwrap_or(f64::NAN),
                    score(r).map_or(f64::NAN, Score::value),
                )
            })
            .collect();
        let front = crate::report::pareto::on_front(&points);
        recs.iter().zip(front).any(|(r, on)| on && &r.key == key)
    }

    /// The FP32 record a variant is read against: same model and column, else any FP32 record
    /// of the model.
    pub fn baseline(&self, key: &CellKey) -> Option<&Record> {
        self.records.get(&fp32_twin(key)).or_else(|| {
            self.records.values().find(|r| {
                r.key.model == key.model
                    && r.key.precision == Precision::Fp32
                    && r.status == Status::Ok
            })
        })
    }

    /// The accuracy verdict of a record against its FP32 baseline (`None` for FP32 itself or
    /// when either lacks a score).
    pub fn accuracy_verdict(&self, r: &Record) -> Option<Verdict> {
        if r.key.precision == Precision::Fp32 {
            return None;
        }
        let base = score(self.baseline(&r.key)?)?.value();
        let drop = base - score(r)?.value();
        Some(if drop <= 0.005 {
            Verdict::Good
        } else if drop <= 0.02 {
            Verdict::Fair
        } else {
            Verdict::Poor
        })
    }

    /// The latency verdict of a record against the FP32 record of the same column: faster is
    /// good, within the two medians' confidence intervals is fair, slower is poor.
    pub fn latency_verdict(&self, r: &Record) -> Option<Verdict> {
        if r.key.precision == Precision::Fp32 {
            return None;
        }
        let base = &self
            .records
            .get(&fp32_twin(&r.key))?
            .latency
            .as_ref()?
            .latency_ms;
        let mine = &r.latency.as_ref()?.latency_ms;
        Some(if mine.median_ci95.high < base.median_ci95.low {
            Verdict::Good
        } else if mine.median_ci95.low > base.median_ci95.high {
            Verdict::Poor
        } else {
            Verdict::Fair
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_labels_name_calibrator_and_group() {
        let r = RowKey {
            model: "m".into(),
            precision: Precision::Int4,
            method: Method::Static,
            calibrator: None,
            group: Some(32),
        };
        assert_eq!(r.label(), "m int4 static g32");
        let f = RowKey {
            precision: Precision::Fp32,
            method: Method::None,
            group: None,
            ..r
        };
        assert_eq!(f.label(), "m fp32");
    }
}
