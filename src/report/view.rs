//! What the reports read from a record, named once: the variant's label, the device it ran on,
//! the quality figure, latency, size and energy. Every chart, table and summary goes through
//! these functions, so a figure reads the same in each of them.

use std::collections::BTreeSet;

use crate::measure::power::{EnergyReading, EnergySource};
use crate::sweep::record::{Method, Record, Status};

/// The variant a record measured, without runtime or device: `fp32`, `int8 dynamic`,
/// `int8 static minmax`, `int4 static g32`, `binary qat`.
pub fn variant(r: &Record) -> String {
    let mut label = r.key.precision.name().to_string();
    if r.key.method != Method::None {
        label.push(' ');
        label.push_str(r.key.method.name());
    }
    if let Some(c) = &r.key.calibrator {
        label.push(' ');
        label.push_str(c);
    }
    if let Some(g) = r.key.group {
        label.push_str(&format!(" g{g}"));
    }
    label
}

/// The device a record was measured on: its host name, else its board, else its CPU model,
/// else its architecture. Records merged from several machines are told apart by this.
pub fn device(r: &Record) -> String {
    let m = &r.machine;
    m.hostname
        .clone()
        .or_else(|| m.board.clone())
        .or_else(|| m.cpu_model.clone())
        .unwrap_or_else(|| m.arch.clone())
}

/// Names cells for chart rows, legends and lists: variant and runtime, plus the device, threads
/// and batch when the records being shown differ in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labeler {
    /// Add `@ device`.
    pub device: bool,
    /// Add `t<threads>`.
    pub threads: bool,
    /// Add `b<batch>`.
    pub batch: bool,
}

impl Labeler {
    /// Labels that tell apart the given records.
    pub fn for_records<'a>(records: impl IntoIterator<Item = &'a Record> + Clone) -> Labeler {
        let varies = |f: &dyn Fn(&Record) -> String| {
            let mut seen = BTreeSet::new();
            records.clone().into_iter().for_each(|r| {
                seen.insert(f(r));
            });
            seen.len() > 1
        };
        Labeler {
            device: varies(&device),
            threads: varies(&|r| r.key.threads.to_string()),
            batch: varies(&|r| r.key.batch.to_string()),
        }
    }

    /// Every part: for lists that mix models and devices.
    pub const FULL: Labeler = Labeler {
        device: true,
        threads: true,
        batch: true,
    };

    /// `variant · runtime` with the parts this labeler adds.
    pub fn label(&self, r: &Record) -> String {
        let mut out = format!("{} · {}", variant(r), r.key.runtime);
        if self.threads {
            out.push_str(&format!(" t{}", r.key.threads));
        }
        if self.batch {
            out.push_str(&format!(" b{}", r.key.batch));
        }
        if self.device {
            out.push_str(&format!(" @ {}", device(r)));
        }
        out
    }
}

/// Which quality figure a model's cells are compared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Top-1 accuracy against the split's labels.
    Accuracy,
    /// Top-1 agreement with the FP32 reference (for data without labels).
    Agreement,
}

impl Metric {
    /// Accuracy when any of the records has one, else agreement.
    pub fn for_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Metric {
        let labelled = records
            .into_iter()
            .any(|r| r.quality.as_ref().is_some_and(|q| q.accuracy.is_some()));
        if labelled {
            Metric::Accuracy
        } else {
            Metric::Agreement
        }
    }

    /// The record's figure for this metric, as a fraction.
    pub fn of(self, r: &Record) -> Option<f64> {
        let q = r.quality.as_ref()?;
        match self {
            Metric::Accuracy => q.accuracy,
            Metric::Agreement => q.agreement.as_ref().map(|a| a.top1),
        }
    }

    /// A short name for axes and table headers.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Agreement => "top-1 agreement with FP32",
        }
    }
}

/// The cell finished with every figure measured.
pub fn is_ok(r: &Record) -> bool {
    r.status == Status::Ok
}

/// Median latency of one run, milliseconds.
pub fn p50_ms(r: &Record) -> Option<f64> {
    r.latency.as_ref().map(|l| l.latency_ms.p50)
}

/// The headline energy figure (the best link of the chain that gave one).
pub fn energy(r: &Record) -> Option<&EnergyReading> {
    r.energy.as_ref().and_then(|e| e.headline.as_ref())
}

/// One word for where an energy figure comes from.
pub fn energy_source_word(s: EnergySource) -> &'static str {
    match s {
        EnergySource::Measured => "measured",
        EnergySource::Estimated => "estimated",
        EnergySource::Model => "model",
    }
}

/// The lowest per-layer SQNR of a quantized variant, dB (layers with identical outputs have
/// none and do not count).
pub fn worst_layer_db(r: &Record) -> Option<f64> {
    r.layers
        .iter()
        .filter_map(|l| l.sqnr_db)
        .min_by(|a, b| a.total_cmp(b))
}

/// The distinct values of `f` over the records, sorted.
pub fn distinct(records: &[Record], f: impl Fn(&Record) -> String) -> Vec<String> {
    records
        .iter()
        .map(f)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::record::Precision;

    #[test]
    fn variant_labels_name_method_calibrator_and_group() {
        let mut r: Record = crate::report::fixture::records()[0].clone();
        r.key.precision = Precision::Int4;
        r.key.method = Method::Static;
        r.key.calibrator = None;
        r.key.group = Some(32);
        assert_eq!(variant(&r), "int4 static g32");
        r.key.precision = Precision::Int8;
        r.key.calibrator = Some("entropy".into());
        r.key.group = None;
        assert_eq!(variant(&r), "int8 static entropy");
        r.key.precision = Precision::Fp32;
        r.key.method = Method::None;
        r.key.calibrator = None;
        assert_eq!(variant(&r), "fp32");
    }
}
