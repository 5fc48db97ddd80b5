//! The search results file, `search.jsonl` beside a sweep's `results.jsonl`: one JSON line per
//! finished search (the model's name, then the whole [`SearchReport`]: the chosen assignment,
//! its measured size/latency/accuracy, every candidate tried), appended and fsynced as each
//! search ends, so an interrupted run keeps every search that finished. Readers take the last
//! line of each model. The TUI and `quench report` read it; [`run_profile`] writes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::explore::search::{self, SearchReport};
use crate::explore::{ExploreError, ExploreEvent, Setup};
use crate::sweep::profile::Profile;

/// The file's name in a sweep's output folder.
pub const SEARCH_FILE: &str = "search.jsonl";

/// One finished search of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSearch {
    /// The model's manifest name (the `model` of its sweep records).
    pub name: String,
    /// Hash of the profile whose `[search]` it ran (as on the sweep's records).
    pub profile_hash: Option<String>,
    /// What the search found and tried.
    pub report: SearchReport,
}

impl SavedSearch {
    /// The chosen level of each layer with the layer's only-this-layer held-out KL at that
    /// level (`None` for FP32 layers), in layer order.
    pub fn assignment(&self) -> Vec<(&str, crate::explore::Level, Option<f64>)> {
        let r = &self.report;
        let Some(chosen) = r.candidates.get(r.chosen) else {
            return Vec::new();
        };
        r.layers
            .iter()
            .zip(&chosen.levels)
            .enumerate()
            .map(|(i, (name, &level))| {
                let kl = r.sensitivity.get(i).and_then(|m| m.get(&level)).copied();
                (name.as_str(), level, kl)
            })
            .collect()
    }

    /// Layers ranked most sensitive first by their only-this-layer KL at the highest
    /// quantized level measured for them (INT8 when allowed, else 4-bit, else binary), with
    /// that level and KL.
    pub fn ranking(&self) -> Vec<(&str, crate::explore::Level, f64)> {
        let r = &self.report;
        let mut v: Vec<(&str, crate::explore::Level, f64)> = r
            .layers
            .iter()
            .zip(&r.sensitivity)
            .filter_map(|(name, m)| {
                m.iter()
                    .next()
                    .map(|(&level, &kl)| (name.as_str(), level, kl))
            })
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
        v
    }
}

/// Appends `saved` to `dir`/[`SEARCH_FILE`] and syncs it to disk.
pub fn append(dir: &Path, saved: &SavedSearch) -> Result<PathBuf, ExploreError> {
    let path = dir.join(SEARCH_FILE);
    let io = |source| ExploreError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut line = serde_json::to_string(saved)
        .map_err(|e| ExploreError::Invalid(format!("search result as JSON: {e}")))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(path)
}

/// The searches in `path` (the last of each model, in first-seen order) and a warning for
/// every line that is not a search result (a torn last line after a crash, a foreign line).
pub fn parse(text: &str, path: &Path) -> (Vec<SavedSearch>, Vec<String>) {
    let mut out: Vec<SavedSearch> = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SavedSearch>(line) {
            Ok(s) => match out.iter_mut().find(|o| o.name == s.name) {
                Some(slot) => *slot = s,
                None => out.push(s),
            },
            Err(e) => warnings.push(format!("{}:{}: skipped: {e}", path.display(), n + 1)),
        }
    }
    (out, warnings)
}

/// The searches saved in folder `dir` (none when it has no [`SEARCH_FILE`]).
pub fn read(dir: &Path) -> Result<(Vec<SavedSearch>, Vec<String>), ExploreError> {
    let path = dir.join(SEARCH_FILE);
    if !path.is_file() {
        return Ok((Vec::new(), Vec::new()));
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ExploreError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(parse(&text, &path))
}

/// Runs the profile's `[search]` on each of its models, in order, writing each chosen model to
/// `dir`/`<model stem>.search-<objective>.onnx` and appending each result to
/// `dir`/[`SEARCH_FILE`] as it ends. `cancel` stops the running search (its best so far is
/// reported and saved) and skips the rest. With `resume`, a model whose search of this same
/// profile is already saved is not searched again. Returns what was saved (empty without
/// `[search]`).
pub fn run_profile(
    profile: &Profile,
    dir: &Path,
    resume: bool,
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    on_event: &(dyn Fn(&ExploreEvent) + Sync),
) -> Result<Vec<SavedSearch>, ExploreError> {
    let Some(ps) = &profile.search else {
        return Ok(Vec::new());
    };
    let stopped = || {
        cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    let done: Vec<String> = if resume {
        read(dir)?
            .0
            .into_iter()
            .filter(|s| s.profile_hash.as_deref() == Some(profile.hash.as_str()))
            .map(|s| s.name)
            .collect()
    } else {
        Vec::new()
    };
    let mut saved = Vec::new();
    for name in &ps.models {
        if stopped() {
            break;
        }
        if done.contains(name) {
            on_event(&ExploreEvent::Step {
                message: format!("search on {name}: already saved in {SEARCH_FILE} (resumed)"),
            });
            continue;
        }
        let Some(m) = profile.models.iter().find(|m| m.name() == name) else {
            continue;
        };
        let model = &m.manifest.model.file;
        on_event(&ExploreEvent::Step {
            message: format!("search on {name}"),
        });
        let setup = Setup::prepare(
            &ps.spec.setup.config(model, m.manifest.clone()),
            &|message| {
                on_event(&ExploreEvent::Step {
                    message: message.to_string(),
                })
            },
        )?;
        let mut config = ps.spec.config(ps.spec.default_out(dir, model));
        config.cancel = cancel.clone();
        let report = search::run(&setup, &config, on_event)?;
        let one = SavedSearch {
            name: name.clone(),
            profile_hash: Some(profile.hash.clone()),
            report,
        };
        let path = append(dir, &one)?;
        on_event(&ExploreEvent::Step {
            message: format!("search result of {name} saved to {}", path.display()),
        });
        saved.push(one);
    }
    Ok(saved)
}
