//! Plain-text tables for the terminal and logs: records, and the per-layer statistics of
//! `quench inspect`.

use crate::graph::stats::GraphStats;
use crate::sweep::record::Record;

/// A text table: a header row and rows of cells, columns padded to their widest cell; columns
/// whose cells are numbers are right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as lines of text, header and a rule first.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let cell = |row: &[String], c: usize| row.get(c).cloned().unwrap_or_default();
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| cell(r, c).chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let numeric: Vec<bool> = (0..cols)
            .map(|c| {
                self.rows.iter().any(|r| !cell(r, c).is_empty())
                    && self.rows.iter().all(|r| {
                        let v = cell(r, c);
                        let unsigned = v.strip_prefix('-').unwrap_or(&v);
                        v.is_empty()
                            || v == "-"
                            || unsigned == "inf"
                            || unsigned.starts_with(|ch: char| ch.is_ascii_digit())
                    })
            })
            .collect();
        let line = |row: &[String]| {
            let parts: Vec<String> = (0..cols)
                .map(|c| {
                    let v = cell(row, c);
                    let pad = width[c] - v.chars().count();
                    if numeric[c] {
                        format!("{}{v}", " ".repeat(pad))
                    } else {
                        format!("{v}{}", " ".repeat(pad))
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// Milliseconds as a short duration: µs below 1 ms, ms below 10 s, else s.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.1} µs", ms * 1000.0)
    } else if ms < 10_000.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    scaled(n, 1024.0, &[" B", " KiB", " MiB", " GiB"])
}

/// A count with a decimal suffix (`k`, `M`, `G`), for MACs where a column is narrow.
pub fn count(n: u64) -> String {
    scaled(n, 1000.0, &["", "k", "M", "G"])
}

/// `n` divided by `step` until below it (or out of units), with one decimal once divided.
fn scaled(n: u64, step: f64, units: &[&str]) -> String {
    let mut value = n as f64;
    let mut unit = 0;
    while value >= step && unit + 1 < units.len() {
        value /= step;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}{}", units[0])
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// A fraction as a percentage with two decimals.
pub fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// Energy in joules with a unit fit for one inference.
pub fn joules(j: f64) -> String {
    if j < 1e-3 {
        format!("{:.1} µJ", j * 1e6)
    } else if j < 1.0 {
        format!("{:.2} mJ", j * 1e3)
    } else {
        format!("{j:.2} J")
    }
}

/// The records as a comparison table, then one line per failed cell with its error, then the
/// notes the figures need (noise marks, energy sources).
pub fn records(records: &[Record]) -> String {
    let mut table = Table::new([
        "model",
        "variant",
        "runtime",
        "thr",
        "samples",
        "accuracy",
        "expected",
        "agree",
        "p50",
        "p99",
        "CI95",
        "cold",
        "peak RSS",
        "energy/inf",
        "kernel",
    ]);
    let mut failures = Vec::new();
    let mut any_noisy = false;
    let mut sources = std::collections::BTreeSet::new();
    for r in records {
        let q = r.quality.as_ref();
        let lat = r.latency.as_ref().map(|l| &l.latency_ms);
        any_noisy |= lat.is_some_and(|s| s.noisy);
        let energy = r.energy.as_ref().and_then(|e| e.headline.as_ref());
        if let Some(e) = energy {
            sources.insert(energy_source_note(e));
        }
        table.row([
            r.key.model.clone(),
            r.key.variant(),
            r.key.runtime.to_string(),
            r.key.threads.to_string(),
            q.map_or("-".into(), |q| q.samples.to_string()),
            q.and_then(|q| q.accuracy).map_or("-".into(), percent),
            q.and_then(|q| q.expected_fp32_accuracy)
                .map_or("-".into(), percent),
            q.and_then(|q| q.agreement.as_ref())
                .map_or("-".into(), |a| percent(a.top1)),
            lat.map_or("-".into(), |s| {
                format!("{}{}", duration_ms(s.p50), if s.noisy { "~" } else { "" })
            }),
            lat.map_or("-".into(), |s| duration_ms(s.p99)),
            lat.map_or("-".into(), |s| format!("±{:.1}%", s.ci_half_width * 100.0)),
            r.cold_start.map_or("-".into(), |c| duration_ms(c.load_ms)),
            r.memory
                .as_ref()
                .map_or("-".into(), |m| bytes(m.peak_rss_bytes)),
            energy.map_or("-".into(), |e| joules(e.joules_per_inference)),
            r.kernels.first().cloned().unwrap_or_else(|| "-".into()),
        ]);
        if let Some(detail) = r.status.detail() {
            failures.push(format!(
                "{} {} {} on {}: {detail}",
                r.status.word().to_uppercase(),
                r.key.model,
                r.key.variant(),
                r.key.runtime
            ));
        }
    }
    let mut out = table.render();
    for f in failures {
        out.push_str(&f);
        out.push('\n');
    }
    if any_noisy {
        out.push_str(
            "~ noisy: the timing spread, or a loop that got under 90% of a core, says the machine was busy; repeat before trusting it\n",
        );
    }
    for s in sources {
        out.push_str(&format!("energy/inf: {s}\n"));
    }
    out
}

/// A sweep's records for people: the table of [`records`] without the skipped cells, then the
/// skipped cells grouped by model, runtime and reason (one line per group instead of one per
/// cell).
pub fn sweep(records_in: &[Record]) -> String {
    let shown: Vec<Record> = records_in
        .iter()
        .filter(|r| !matches!(r.status, crate::sweep::record::Status::Skipped { .. }))
        .cloned()
        .collect();
    let mut out = records(&shown);
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    for r in records_in {
        if let crate::sweep::record::Status::Skipped { reason } = &r.status {
            let head = format!("{} on {}", r.key.model, r.key.runtime);
            match groups.iter_mut().find(|g| g.0 == head && g.1 == *reason) {
                Some(g) => g.2.push(r.key.variant()),
                None => groups.push((head, reason.clone(), vec![r.key.variant()])),
            }
        }
    }
    for (head, reason, variants) in groups {
        out.push_str(&format!(
            "SKIPPED {head}, {}: {reason}\n",
            variants.join(", ")
        ));
    }
    out
}

/// What an energy figure rests on, in words, without the run-specific numbers.
pub fn energy_source_note(e: &crate::measure::power::EnergyReading) -> String {
    use crate::measure::power::EnergySource;
    match e.source {
        EnergySource::Measured => format!("measured by {}", e.label),
        EnergySource::Estimated => {
            let board = e.label.split(" × ").nth(1).unwrap_or(&e.label);
            format!("estimated from CPU time × {board} (no power sensor readable)")
        }
        EnergySource::Model => "modelled from operation counts (Horowitz, ISSCC 2014)".to_string(),
    }
}

/// Per-layer statistics of a graph (`quench inspect`): op, output shape, parameters, bytes and
/// MACs per node, then totals.
pub fn layers(stats: &GraphStats) -> String {
    let mut table = Table::new(["#", "node", "op", "output shape", "params", "bytes", "MACs"]);
    for (i, n) in stats.nodes.iter().enumerate() {
        let shape = n
            .output_shapes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        table.row([
            i.to_string(),
            n.name.clone(),
            n.op.clone(),
            shape,
            if n.params == 0 {
                "-".into()
            } else {
                n.params.to_string()
            },
            if n.param_bytes == 0 {
                "-".into()
            } else {
                bytes(n.param_bytes as u64)
            },
            if n.macs == 0 {
                "-".into()
            } else {
                n.macs.to_string()
            },
        ]);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "total: {} parameters ({}), {} MACs per inference\n",
        stats.total_params,
        bytes(stats.total_param_bytes as u64),
        stats.total_macs
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_columns_align_right_and_text_left() {
        let mut t = Table::new(["name", "n"]);
        t.row(["a", "1"]);
        t.row(["long", "100"]);
        assert_eq!(t.render(), "name    n\n---------\na       1\nlong  100\n");
        // Signed numbers and an infinite SQNR are numbers too.
        let mut t = Table::new(["dB"]);
        t.row(["inf"]);
        t.row(["-3.5"]);
        t.row(["12.25"]);
        assert_eq!(t.render(), "   dB\n-----\n  inf\n -3.5\n12.25\n");
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(duration_ms(0.0421), "42.1 µs");
        assert_eq!(duration_ms(12.345), "12.35 ms");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(percent(0.9905), "99.05%");
        assert_eq!(joules(2.5e-5), "25.0 µJ");
    }
}
