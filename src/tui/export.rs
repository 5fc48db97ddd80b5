//! Export of what is on screen: the records of the shown cells, written as a full report
//! (`quench report`'s HTML, PNG charts, CSV and Markdown) into a new folder.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::app::App;
use crate::report::files::{self, Options};
use crate::sweep::record::{CellKey, Record};

/// Accuracy budget of the exported report's advice, percentage points below FP32 (the default
/// of `quench report`).
const BUDGET_PP: f64 = 1.0;

/// Writes the records of `keys` as a report to `dir/quench-tui-SECONDS/` and returns the path of
/// its HTML page; the error text names the folder.
pub fn write_report(app: &App, keys: &[CellKey], dir: &Path) -> Result<PathBuf, String> {
    let records: Vec<Record> = keys
        .iter()
        .filter_map(|k| app.grid().get(k).cloned())
        .collect();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = dir.join(format!("quench-tui-{secs}"));
    let options = Options {
        out: out.clone(),
        budget_pp: BUDGET_PP,
        sources: vec![app.title.clone()],
    };
    files::write(&records, &options)
        .map(|w| w.html)
        .map_err(|e| format!("export to {}: {e}", out.display()))
}
