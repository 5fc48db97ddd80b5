//! CSV and Markdown views of the records: every column in the CSV (raw numbers, for
//! spreadsheets and scripts), the brief columns with units in Markdown (for pasting into a pull
//! request or a wiki), with the advice and the failed and skipped cells.

use crate::report::columns::{self, COLUMNS};
use crate::report::summary::{Advice, Markup};
use crate::sweep::record::Record;

/// One CSV line per record under a header of the column keys (RFC 4180 quoting).
pub fn csv(records: &[Record]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = COLUMNS.iter().map(|c| c.key).collect::<Vec<_>>().join(",");
    out.push('\n');
    for r in records {
        let line: Vec<String> = COLUMNS.iter().map(|c| quote(&(c.read)(r).raw())).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Markdown markup: `**strong**`, and characters that would end a table cell or start markup
/// escaped.
pub struct Markdown;

impl Markup for Markdown {
    fn text(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' | '\r' => out.push(' '),
                _ => out.push(c),
            }
        }
        out
    }

    fn strong(&self, s: &str) -> String {
        format!("**{}**", self.text(s))
    }
}

/// The Markdown report: the advice under its budget, the table of every cell, then the cells
/// that failed, were skipped or cancelled, with their reasons.
pub fn markdown(records: &[Record], advice: &[Advice], budget_pp: f64) -> String {
    let md = Markdown;
    let mut out = String::from("# quench report\n\n");
    out.push_str(&format!(
        "## Which variant should I ship?\n\nThe fastest finished cell whose accuracy (or top-1 agreement with FP32, for data without labels) is at most {budget_pp} percentage points below FP32's, per model and device.\n\n"
    ));
    for a in advice {
        out.push_str(&format!("- {}\n", a.sentence(&md)));
    }
    out.push_str("\n## Cells\n\n");
    let brief: Vec<_> = columns::brief().collect();
    out.push_str(&format!(
        "| {} |\n",
        brief
            .iter()
            .map(|c| c.title)
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    let rule: Vec<&str> = columns::numeric(&brief, records)
        .into_iter()
        .map(|numeric| if numeric { "---:" } else { "---" })
        .collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for r in records {
        let cells: Vec<String> = brief
            .iter()
            .map(|c| md.text(&(c.read)(r).shown()))
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str("\n## Failed, skipped and cancelled cells\n\n");
    let problems: Vec<&Record> = records.iter().filter(|r| !super::view::is_ok(r)).collect();
    if problems.is_empty() {
        out.push_str("None: every cell finished.\n");
    }
    for r in problems {
        out.push_str(&format!(
            "- {} {}: {}\n",
            md.strong(r.status.word()),
            md.text(&format!(
                "{} {}",
                r.key.model,
                super::view::Labeler::FULL.label(r)
            )),
            md.text(
                r.status
                    .detail()
                    .unwrap_or("stopped before it finished; figures measured before that are kept")
            ),
        ));
    }
    out
}
