//! Reading results files into records and writing a report folder: `report.html`,
//! `report.md`, `cells.csv` and `charts/*.png`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::explore::saved::{self, SavedSearch};
use crate::report::charts::front;
use crate::report::charts::{self, ChartError};
use crate::report::html::{self, Figure, Sources};
use crate::report::search::{self, SearchFigure};
use crate::report::{summary, tabular, view};
use crate::sweep::record::{CellKey, Record};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A results file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A results file holds something that is not a record.
    #[error("{file}:{line}:{column}: not a quench record: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde's message (names the missing or mistyped field).
        message: String,
    },
    /// The results files hold no record at all.
    #[error("no records in {0}")]
    Empty(String),
    /// The accuracy budget is not a finite, non-negative number of percentage points.
    #[error("the accuracy budget must be a number of percentage points ≥ 0, not {0}")]
    Budget(f64),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// Records from the text of a results file: JSON Lines as the sweep writes them, or the
/// pretty-printed records `quench eval --json` prints, one after another. `name` is the file
/// name errors give.
pub fn parse_records(text: &str, name: &str) -> Result<Vec<Record>, ReportError> {
    let mut out = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Record>() {
        match item {
            Ok(r) => out.push(r),
            Err(e) => {
                return Err(ReportError::Parse {
                    file: name.to_string(),
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// Every record of the files, in order; when the same cell (key and device) appears more than
/// once (a resumed or repeated sweep), the last record stands in the place of the first.
pub fn read_records(paths: &[PathBuf]) -> Result<Vec<Record>, ReportError> {
    let mut all = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        all.extend(parse_records(&text, &path.display().to_string())?);
    }
    if all.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ReportError::Empty(names.join(", ")));
    }
    Ok(latest_per_cell(all))
}

/// The records with each cell (key and device) kept once, its last record in its first place.
pub fn latest_per_cell(records: Vec<Record>) -> Vec<Record> {
    let mut index: HashMap<(CellKey, String), usize> = HashMap::new();
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    for r in records {
        let id = (r.key.clone(), view::device(&r));
        match index.get(&id) {
            Some(&i) => out[i] = r,
            None => {
                index.insert(id, out.len());
                out.push(r);
            }
        }
    }
    out
}

/// The searches saved beside each results file (`search.jsonl` in the same folder), the last
/// of each model, and a warning for each line that is not one.
pub fn read_searches(results: &[PathBuf]) -> Result<(Vec<SavedSearch>, Vec<String>), ReportError> {
    let mut all: Vec<SavedSearch> = Vec::new();
    let mut warnings = Vec::new();
    for path in results {
        let dir = path.parent().unwrap_or(Path::new(""));
        let file = dir.join(saved::SEARCH_FILE);
        if !file.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| ReportError::Read {
            path: file.clone(),
            source,
        })?;
        let (found, w) = saved::parse(&text, &file);
        warnings.extend(w);
        for s in found {
            match all.iter_mut().find(|o| o.name == s.name) {
                Some(slot) => *slot = s,
                None => all.push(s),
            }
        }
    }
    Ok((all, warnings))
}

/// How to write a report.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder to write into (created when missing).
    pub out: PathBuf,
    /// Largest accuracy drop below FP32 the advice accepts, percentage points.
    pub budget_pp: f64,
    /// The results files the records came from, named on the page.
    pub sources: Vec<String>,
}

/// The files a report wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The HTML report.
    pub html: PathBuf,
    /// The Markdown report.
    pub markdown: PathBuf,
    /// The CSV table.
    pub csv: PathBuf,
    /// The PNG charts.
    pub charts: Vec<PathBuf>,
}

/// Name of the charts folder inside a report folder.
pub const CHARTS_DIR: &str = "charts";

/// Writes the whole report for `records` into `options.out`.
pub fn write(records: &[Record], options: &Options) -> Result<Written, ReportError> {
    write_with_searches(records, &[], options)
}

/// [`write`](fn@write), with a section per mixed-precision search in `searches` (its front chart as PNG
/// too, and the chosen assignment).
pub fn write_with_searches(
    records: &[Record],
    searches: &[SavedSearch],
    options: &Options,
) -> Result<Written, ReportError> {
    if !(options.budget_pp.is_finite() && options.budget_pp >= 0.0) {
        return Err(ReportError::Budget(options.budget_pp));
    }
    let charts_dir = options.out.join(CHARTS_DIR);
    std::fs::create_dir_all(&charts_dir).map_err(|source| ReportError::Write {
        path: charts_dir.clone(),
        source,
    })?;
    let plan = charts::plan(records);
    let mut figures = Vec::with_capacity(plan.len());
    let mut pngs = Vec::with_capacity(plan.len());
    for chart in &plan {
        let path = charts_dir.join(format!("{}.png", chart.file_stem));
        put(&path, &charts::png(chart, records)?)?;
        pngs.push(path);
        figures.push(Figure {
            chart,
            svg: charts::svg(chart, records)?,
            png: Some(format!("{CHARTS_DIR}/{}.png", chart.file_stem)),
        });
    }
    let png_of = |s: &SavedSearch| format!("{CHARTS_DIR}/{}.png", front::stem(s));
    let mut search_figures = Vec::with_capacity(searches.len());
    for s in searches {
        let path = options.out.join(png_of(s));
        put(&path, &front::png(s)?)?;
        pngs.push(path);
        search_figures.push(SearchFigure {
            search: s,
            svg: front::svg(s)?,
            png: png_of(s),
        });
    }
    let advice = summary::advise(records, options.budget_pp);
    let sources = Sources {
        files: &options.sources,
        budget_pp: options.budget_pp,
    };
    let written = Written {
        html: options.out.join("report.html"),
        markdown: options.out.join("report.md"),
        csv: options.out.join("cells.csv"),
        charts: pngs,
    };
    put(
        &written.html,
        html::page(records, &advice, &figures, &search_figures, &sources).as_bytes(),
    )?;
    put(
        &written.markdown,
        (tabular::markdown(records, &advice, options.budget_pp)
            + &search::markdown(searches, png_of))
            .as_bytes(),
    )?;
    put(&written.csv, tabular::csv(records).as_bytes())?;
    Ok(written)
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_line_names_file_line_and_field() {
        let good = serde_json::to_string(&crate::report::fixture::records()[0]).unwrap();
        let text = format!("{good}\n{{\"schema\": 1, \"model\": \"m\"}}\n");
        let err = parse_records(&text, "results.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("results.jsonl:2:"), "{err}");
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn a_cell_measured_twice_keeps_its_last_record() {
        let records = crate::report::fixture::records();
        let mut again = records[0].clone();
        again.kernels = vec!["second run".into()];
        let mut all = records.clone();
        all.push(again);
        let merged = latest_per_cell(all);
        assert_eq!(merged.len(), records.len());
        assert_eq!(merged[0].kernels, ["second run"]);
    }

    #[test]
    fn a_negative_budget_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            out: dir.path().to_path_buf(),
            budget_pp: -1.0,
            sources: vec![],
        };
        let err = write(&crate::report::fixture::records(), &options).unwrap_err();
        assert!(matches!(err, ReportError::Budget(_)));
    }
}
