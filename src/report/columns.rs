//! The columns of the cell table, defined once for the CSV file, the Markdown table and the
//! HTML table: each column reads one value from a record, which CSV writes raw and the others
//! show with units.

use crate::report::table::{bytes, duration_ms, joules, percent};
use crate::report::view;
use crate::sweep::record::Record;

/// The unit of a number, for showing it to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count or plain integer.
    Count,
    /// A fraction shown as a percentage.
    Fraction,
    /// Milliseconds.
    Ms,
    /// Bytes.
    Bytes,
    /// Joules.
    Joules,
    /// Decibels.
    Db,
    /// A small real number shown in scientific notation (KL divergence).
    Small,
    /// Inferences per second.
    PerSecond,
}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not measured or not applicable.
    Missing,
    /// Text.
    Text(String),
    /// A number in a unit.
    Number(f64, Unit),
}

impl Value {
    /// The value for machines (CSV, sort keys): numbers in full, fractions as fractions.
    pub fn raw(&self) -> String {
        match self {
            Value::Missing => String::new(),
            Value::Text(t) => t.clone(),
            Value::Number(v, Unit::Count | Unit::Bytes) => format!("{v:.0}"),
            Value::Number(v, _) => format!("{v}"),
        }
    }

    /// The value for people, with its unit (`-` when missing).
    pub fn shown(&self) -> String {
        match self {
            Value::Missing => "-".into(),
            Value::Text(t) => t.clone(),
            Value::Number(v, u) => match u {
                Unit::Count => format!("{v:.0}"),
                Unit::Fraction => percent(*v),
                Unit::Ms => duration_ms(*v),
                Unit::Bytes => bytes(*v as u64),
                Unit::Joules => joules(*v),
                Unit::Db => format!("{v:.1} dB"),
                Unit::Small => format!("{v:.2e}"),
                Unit::PerSecond => format!("{v:.0}/s"),
            },
        }
    }

    /// Whether the value is a number (sorted numerically).
    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(..))
    }
}

/// One column: its machine key (CSV header, HTML sort key), its title for people, whether the
/// short tables (Markdown, HTML) show it, and how to read it from a record.
pub struct Column {
    /// CSV header and HTML `data-key`.
    pub key: &'static str,
    /// Header shown to people.
    pub title: &'static str,
    /// Shown in the Markdown and HTML tables (every column is in the CSV).
    pub brief: bool,
    /// Reads the value.
    pub read: fn(&Record) -> Value,
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn num(v: Option<f64>, unit: Unit) -> Value {
    v.filter(|v| v.is_finite())
        .map_or(Value::Missing, |v| Value::Number(v, unit))
}

/// A figure of the record's agreement with its reference, when it has one.
fn agreement(r: &Record, f: fn(&crate::sweep::record::Agreement) -> f64, unit: Unit) -> Value {
    num(
        r.quality.as_ref().and_then(|q| q.agreement.as_ref()).map(f),
        unit,
    )
}

fn lat(r: &Record, f: fn(&crate::measure::stats::Summary) -> f64) -> Value {
    num(r.latency.as_ref().map(|l| f(&l.latency_ms)), Unit::Ms)
}

/// Every column, in table order.
pub const COLUMNS: &[Column] = &[
    Column {
        key: "model",
        title: "model",
        brief: true,
        read: |r| text(&r.key.model),
    },
    Column {
        key: "device",
        title: "device",
        brief: true,
        read: |r| text(view::device(r)),
    },
    Column {
        key: "variant",
        title: "variant",
        brief: true,
        read: |r| text(view::variant(r)),
    },
    Column {
        key: "precision",
        title: "precision",
        brief: false,
        read: |r| text(r.key.precision.name()),
    },
    Column {
        key: "method",
        title: "method",
        brief: false,
        read: |r| text(r.key.method.name()),
    },
    Column {
        key: "calibrator",
        title: "calibrator",
        brief: false,
        read: |r| r.key.calibrator.clone().map_or(Value::Missing, Value::Text),
    },
    Column {
        key: "group",
        title: "group",
        brief: false,
        read: |r| num(r.key.group.map(|g| g as f64), Unit::Count),
    },
    Column {
        key: "runtime",
        title: "runtime",
        brief: true,
        read: |r| text(r.key.runtime.name()),
    },
    Column {
        key: "threads",
        title: "threads",
        brief: true,
        read: |r| num(Some(r.key.threads as f64), Unit::Count),
    },
    Column {
        key: "batch",
        title: "batch",
        brief: false,
        read: |r| num(Some(r.key.batch as f64), Unit::Count),
    },
    Column {
        key: "status",
        title: "status",
        brief: true,
        read: |r| text(r.status.word()),
    },
    Column {
        key: "samples",
        title: "samples",
        brief: false,
        read: |r| num(r.quality.as_ref().map(|q| q.samples as f64), Unit::Count),
    },
    Column {
        key: "accuracy",
        title: "accuracy",
        brief: true,
        read: |r| num(r.quality.as_ref().and_then(|q| q.accuracy), Unit::Fraction),
    },
    Column {
        key: "agreement",
        title: "agreement",
        brief: true,
        read: |r| agreement(r, |a| a.top1, Unit::Fraction),
    },
    Column {
        key: "kl",
        title: "KL",
        brief: false,
        read: |r| agreement(r, |a| a.kl, Unit::Small),
    },
    Column {
        key: "p50_ms",
        title: "p50",
        brief: true,
        read: |r| lat(r, |s| s.p50),
    },
    Column {
        key: "p90_ms",
        title: "p90",
        brief: false,
        read: |r| lat(r, |s| s.p90),
    },
    Column {
        key: "p99_ms",
        title: "p99",
        brief: true,
        read: |r| lat(r, |s| s.p99),
    },
    Column {
        key: "min_ms",
        title: "min",
        brief: false,
        read: |r| lat(r, |s| s.min),
    },
    Column {
        key: "max_ms",
        title: "max",
        brief: false,
        read: |r| lat(r, |s| s.max),
    },
    Column {
        key: "noisy",
        title: "noisy",
        brief: false,
        read: |r| {
            r.latency.as_ref().map_or(Value::Missing, |l| {
                text(if l.latency_ms.noisy { "yes" } else { "no" })
            })
        },
    },
    Column {
        key: "throughput_per_s",
        title: "throughput",
        brief: false,
        read: |r| {
            num(
                r.latency.as_ref().map(|l| l.throughput_per_s),
                Unit::PerSecond,
            )
        },
    },
    Column {
        key: "cold_start_ms",
        title: "cold start",
        brief: false,
        read: |r| num(r.cold_start.map(|c| c.load_ms), Unit::Ms),
    },
    Column {
        key: "peak_rss_bytes",
        title: "peak RSS",
        brief: false,
        read: |r| {
            num(
                r.memory.as_ref().map(|m| m.peak_rss_bytes as f64),
                Unit::Bytes,
            )
        },
    },
    Column {
        key: "model_file_bytes",
        title: "model file",
        brief: true,
        read: |r| {
            num(
                Some(r.sizes.model_file_bytes as f64).filter(|&b| b > 0.0),
                Unit::Bytes,
            )
        },
    },
    Column {
        key: "packed_weight_bytes",
        title: "packed weights",
        brief: false,
        read: |r| num(r.sizes.packed_weight_bytes.map(|b| b as f64), Unit::Bytes),
    },
    Column {
        key: "energy_j_per_inference",
        title: "energy/inf",
        brief: true,
        read: |r| {
            num(
                view::energy(r).map(|e| e.joules_per_inference),
                Unit::Joules,
            )
        },
    },
    Column {
        key: "energy_source",
        title: "energy source",
        brief: false,
        read: |r| {
            view::energy(r).map_or(Value::Missing, |e| text(view::energy_source_word(e.source)))
        },
    },
    Column {
        key: "worst_layer_sqnr_db",
        title: "worst layer",
        brief: true,
        read: |r| num(view::worst_layer_db(r), Unit::Db),
    },
    Column {
        key: "detail",
        title: "error or reason",
        brief: false,
        read: |r| r.status.detail().map_or(Value::Missing, text),
    },
];

/// The columns the short tables show.
pub fn brief() -> impl Iterator<Item = &'static Column> {
    COLUMNS.iter().filter(|c| c.brief)
}

/// Whether each of `columns` holds numbers in `records` (sorted numerically, aligned right).
pub fn numeric(columns: &[&Column], records: &[Record]) -> Vec<bool> {
    columns
        .iter()
        .map(|c| records.iter().any(|r| (c.read)(r).is_number()))
        .collect()
}
