//! Views of records for people: text tables for the terminal, and the report a team reads
//! (`quench report`): PNG charts, one self-contained HTML file, CSV and Markdown tables.
//! Every function here is a pure function of the records it is given; no figure is measured or
//! computed anywhere else.
//!
//! - [`view`]: what a report reads from a record (variant, device, quality figure), named once.
//! - [`pareto`]: the Pareto front of a trade-off.
//! - [`summary`]: which variant to ship per model and device under an accuracy budget.
//! - [`charts`]: the charts, as PNG (embedded font) and SVG.
//! - [`columns`]: the cell table's columns, shared by [`tabular`] (CSV, Markdown) and [`html`].
//! - [`files`]: reading results files and writing a report folder.
//! - [`explore`]: text tables of `quench sensitivity`, `search` and `drift`.
//! - [`search`]: the report's section on a saved mixed-precision search.

pub mod charts;
pub mod columns;
pub mod explore;
pub mod files;
pub mod html;
pub mod pareto;
pub mod search;
pub mod summary;
pub mod table;
pub mod tabular;
pub mod view;

#[cfg(test)]
pub(crate) mod fixture {
    //! The records of tests/fixtures/records.jsonl (real measurements, hand-edited into
    //! quantized variants and a second device; see tests/fixtures/README.md).
    use crate::sweep::record::Record;

    /// Every fixture record.
    pub fn records() -> Vec<Record> {
        let text = include_str!("../../tests/fixtures/records.jsonl");
        crate::report::files::parse_records(text, "records.jsonl").unwrap()
    }
}
