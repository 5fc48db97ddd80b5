//! Export of what is on screen: the records of the shown cells, written with
//! [`crate::report::table::sweep`] (the table `quench sweep` prints) to a text file. (PNG and
//! HTML reports are not in this build yet; the notice says so.)

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::app::App;
use crate::sweep::record::{CellKey, Record};

/// Writes the records of `keys` as a text table to `dir/quench-tui-SECONDS.txt` (creating
/// `dir`), and returns the file's path; the error text names the path.
pub fn write_report(app: &App, keys: &[CellKey], dir: &Path) -> Result<PathBuf, String> {
    let records: Vec<Record> = keys
        .iter()
        .filter_map(|k| app.grid().get(k).cloned())
        .collect();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(format!("quench-tui-{secs}.txt"));
    let text = format!(
        "quench {}: {} records\n\n{}",
        app.title,
        records.len(),
        crate::report::table::sweep(&records)
    );
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| format!("export: cannot write {}: {e}", path.display()))?;
    Ok(path)
}
