//! Sweep profiles: `profiles/*.toml` read as serde data with unknown keys refused, then checked
//! (model manifests found, lists not empty, values in range). Every error names the file, the
//! line and column, the key, the value found and what is allowed.
//!
//! ```toml
//! name = "quickstart"
//! description = "the bundled models, every precision and method, both runtimes"
//!
//! [matrix]
//! models = ["../assets/models/mnist-mlp.toml"]    # manifests (or .onnx beside one), relative to this file
//! precisions = ["fp32", "int8", "int4", "binary"]
//! methods = ["dynamic", "static", "weight-only", "qat"]
//! calibrators = ["minmax"]                       # static variants only (default minmax)
//! groups = [32]                                  # int4 variants only (default 32)
//! runtimes = ["native", "ort"]
//! threads = [1]                                  # default [1]
//! batches = [1]                                  # default [1]
//!
//! [data]
//! test_limit = 500             # evaluate the first N test samples (default: all)
//! calibration_samples = 200    # post-training calibration samples (default 1000)
//! calibrate_on = "native"      # runtime running FP32 while static ranges are found: native|ort
//! bias_correction = true       # static INT8: correct biases for quantization's mean shift (default false)
//! eval_batch = 100
//!
//! [timing]
//! seconds = 0.3                # timed loop per cell
//! warmup_seconds = 0.2         # cap on the warm-up
//!
//! [qat]
//! epochs = 1
//! samples = 2000               # training samples from the calibration split (default: all)
//!
//! [qat.import]                 # QAT-exported models used instead of training in quench
//! mnist-cnn = { file = "exports/mnist-cnn-qat.onnx", precision = "int8" }
//!
//! [power]
//! board = "raspberry-pi-4"     # board for the CPU-time energy estimate (default: detected)
//!
//! [search]                     # mixed-precision search, run after the cells (`quench search --profile`)
//! budget = "0.5%"              # largest held-out accuracy drop, percentage points (required)
//! objective = "size"           # size, latency or energy (default size)
//! time_budget = "10m"          # stop after this long, best so far kept (default: none)
//! precisions = ["int8", "int4", "binary"]  # levels a layer may take besides fp32 (default: these)
//! models = ["mnist-cnn"]       # model names of the matrix it runs on (default: all)
//! samples = 1000               # held-out validation samples decisions are made on (default 2000)
//! rounds = 5                   # interleaved timing rounds per candidate (default 5)
//! runtime = "auto"             # auto, native or ort: where latency/energy are timed
//! seed = 0                     # seed choosing the held-out samples
//! ```
//!
//! The search's test check reads `[data] test_limit` test samples and calibrates on
//! `[data] calibration_samples`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::eval::Manifest;
use crate::explore::objective::Objective;
use crate::explore::search::RuntimeChoice;
use crate::explore::spec::{parse_budget, parse_duration, SearchSpec};
use crate::explore::Level;
use crate::measure::power::estimate::BoardPower;
use crate::quant::pipeline::{CalibrateOn, CalibratorKind};
use crate::runtime::RuntimeKind;
use crate::sweep::record::{Method, Precision};

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The profile.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not TOML, has a key the profile does not know, or a value of the wrong type.
    #[error("{}:{line}:{column}: {key}: {message} (found `{found}`)", path.display())]
    Parse {
        /// The profile.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key, e.g. `matrix.threads`.
        key: String,
        /// The text found there.
        found: String,
        /// What is wrong and what is allowed (from the TOML reader).
        message: String,
    },
    /// A value is well-typed but not usable (a missing model, an empty list, a zero).
    #[error("{}:{line}:{column}: {key} = {value}: {message}", path.display())]
    Invalid {
        /// The profile.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key.
        key: String,
        /// The value found.
        value: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The file as written (serde data; see the module docs for the layout).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    matrix: RawMatrix,
    #[serde(default)]
    data: DataSettings,
    #[serde(default)]
    timing: TimingSettings,
    #[serde(default)]
    qat: RawQat,
    #[serde(default)]
    power: RawPower,
    #[serde(default)]
    search: Option<RawSearch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    budget: Spanned<String>,
    #[serde(default)]
    objective: Option<Objective>,
    #[serde(default)]
    time_budget: Option<Spanned<String>>,
    #[serde(default)]
    precisions: Option<Spanned<Vec<Level>>>,
    #[serde(default)]
    models: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    samples: Option<Spanned<usize>>,
    #[serde(default)]
    rounds: Option<Spanned<usize>>,
    #[serde(default)]
    runtime: Option<Spanned<String>>,
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQat {
    #[serde(default = "default_epochs")]
    epochs: usize,
    #[serde(default)]
    samples: Option<usize>,
    #[serde(default)]
    import: std::collections::BTreeMap<String, Spanned<RawImport>>,
}

impl Default for RawQat {
    fn default() -> Self {
        RawQat {
            epochs: default_epochs(),
            samples: None,
            import: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    file: String,
    precision: Precision,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    models: Spanned<Vec<Spanned<String>>>,
    precisions: Spanned<Vec<Precision>>,
    methods: Spanned<Vec<Spanned<Method>>>,
    #[serde(default)]
    calibrators: Option<Spanned<Vec<CalibratorKind>>>,
    #[serde(default)]
    groups: Option<Spanned<Vec<Spanned<usize>>>>,
    runtimes: Spanned<Vec<RuntimeKind>>,
    #[serde(default)]
    threads: Option<Spanned<Vec<Spanned<usize>>>>,
    #[serde(default)]
    batches: Option<Spanned<Vec<Spanned<usize>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPower {
    #[serde(default)]
    board: Option<Spanned<String>>,
}

/// The `[data]` table: how much of each split a cell uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Evaluate only the first N test samples (`None`: the whole split).
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// Calibration samples of static variants (`None`: the pipeline's default, 1000).
    #[serde(default)]
    pub calibration_samples: Option<usize>,
    /// The runtime static calibration runs the FP32 model on (default: the native engine).
    #[serde(default)]
    pub calibrate_on: CalibrateOn,
    /// Static INT8 variants get bias correction (default `false`; see
    /// [`crate::quant::bias`]).
    #[serde(default)]
    pub bias_correction: bool,
    /// Batch size of the accuracy pass.
    #[serde(default = "default_eval_batch")]
    pub eval_batch: usize,
}

fn default_eval_batch() -> usize {
    100
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            test_limit: None,
            calibration_samples: None,
            calibrate_on: CalibrateOn::Native,
            bias_correction: false,
            eval_batch: default_eval_batch(),
        }
    }
}

/// The `[timing]` table: the latency loop of every cell.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingSettings {
    /// Seconds of timed runs per cell, after warm-up.
    #[serde(default = "default_seconds")]
    pub seconds: f64,
    /// Cap on the warm-up, seconds.
    #[serde(default = "default_warmup")]
    pub warmup_seconds: f64,
    /// Timed runs made even when the time is up.
    #[serde(default = "default_min_runs")]
    pub min_runs: usize,
}

fn default_seconds() -> f64 {
    1.0
}
fn default_warmup() -> f64 {
    2.0
}
fn default_min_runs() -> usize {
    10
}

impl Default for TimingSettings {
    fn default() -> Self {
        TimingSettings {
            seconds: default_seconds(),
            warmup_seconds: default_warmup(),
            min_runs: default_min_runs(),
        }
    }
}

/// The `[qat]` table: training of QAT variants.
#[derive(Debug, Clone, PartialEq)]
pub struct QatSettings {
    /// Passes over the training samples.
    pub epochs: usize,
    /// Training samples from the calibration split (`None`: all of it).
    pub samples: Option<usize>,
}

fn default_epochs() -> usize {
    1
}

/// A QAT-exported model (QDQ ONNX, e.g. from PyTorch) that stands for a model's QAT variant
/// at one precision instead of training in quench.
#[derive(Debug, Clone, PartialEq)]
pub struct QatImport {
    /// The model name (as in its manifest) it belongs to.
    pub model: String,
    /// The exported file, resolved against the profile's folder.
    pub file: PathBuf,
    /// The precision it was trained for.
    pub precision: Precision,
}

/// A model of the matrix: its manifest, read and checked.
#[derive(Debug, Clone)]
pub struct ProfileModel {
    /// The manifest file, resolved against the profile's folder.
    pub manifest_path: PathBuf,
    /// The manifest (its model file resolved against the manifest's folder).
    pub manifest: Manifest,
}

impl ProfileModel {
    /// The manifest's name for the model (the `model` of every record).
    pub fn name(&self) -> &str {
        &self.manifest.model.name
    }
}

/// A checked profile: every list non-empty, every model's manifest loaded.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its `name`.
    pub name: String,
    /// Its `description`.
    pub description: Option<String>,
    /// Hash of the file's text, stamped on every record (`--resume` trusts only the same hash).
    pub hash: String,
    /// Models, in the profile's order.
    pub models: Vec<ProfileModel>,
    /// Precisions.
    pub precisions: Vec<Precision>,
    /// Methods (applied to the quantized precisions; FP32 is the model itself).
    pub methods: Vec<Method>,
    /// Range rules of static variants.
    pub calibrators: Vec<CalibratorKind>,
    /// 4-bit group sizes.
    pub groups: Vec<usize>,
    /// Runtimes.
    pub runtimes: Vec<RuntimeKind>,
    /// Thread counts.
    pub threads: Vec<usize>,
    /// Latency batch sizes.
    pub batches: Vec<usize>,
    /// Data use.
    pub data: DataSettings,
    /// Latency loop.
    pub timing: TimingSettings,
    /// QAT training.
    pub qat: QatSettings,
    /// QAT-exported models used instead of training.
    pub qat_imports: Vec<QatImport>,
    /// Board for the energy estimate (`None`: detected from the machine).
    pub board: Option<BoardPower>,
    /// The `[search]` table, when the profile has one.
    pub search: Option<ProfileSearch>,
}

/// A profile's `[search]` table, checked: the search to run and the models it runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSearch {
    /// The search (its test limit and calibration samples from `[data]`).
    pub spec: SearchSpec,
    /// Names of the matrix's models it runs on, in the matrix's order.
    pub models: Vec<String>,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The dotted key whose value (or name) covers byte `offset`: the nearest `key =` at or above
/// the offset, prefixed by the table header above it.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let mut key = None;
    for line in text[..line_end].lines().rev() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[') {
            let table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("");
            let table = table.trim();
            return match key {
                Some(k) => format!("{table}.{k}"),
                None => table.to_string(),
            };
        }
        if key.is_none() {
            if let Some((k, _)) = t.split_once('=') {
                if !t.starts_with('#') && !t.starts_with('"') {
                    key = Some(k.trim().to_string());
                }
            }
        }
    }
    key.unwrap_or_else(|| "(top level)".into())
}

/// Reads and checks a profile file.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Checks a profile's `text`; `path` names it in errors and is the base of its relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Profile, ProfileError> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_column(text, span.start);
        ProfileError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            key: key_at(text, span.start),
            found: text.get(span).unwrap_or("").trim().to_string(),
            message: e.message().to_string(),
        }
    })?;
    Checker { path, text }.check(raw)
}

/// Turns spans into [`ProfileError::Invalid`]s.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ProfileError {
        let (line, column) = line_column(self.text, span.start);
        ProfileError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            value: self.text.get(span).unwrap_or("").trim().to_string(),
            message: message.into(),
        }
    }

    fn non_empty<T>(&self, list: &Spanned<Vec<T>>, key: &str) -> Result<(), ProfileError> {
        if list.get_ref().is_empty() {
            return Err(self.invalid(
                list.span(),
                key,
                "the list is empty: the matrix needs at least one value here",
            ));
        }
        Ok(())
    }

    fn counts(
        &self,
        list: Option<Spanned<Vec<Spanned<usize>>>>,
        key: &str,
        allowed: Option<&[usize]>,
    ) -> Result<Option<Vec<usize>>, ProfileError> {
        let Some(list) = list else { return Ok(None) };
        self.non_empty(&list, key)?;
        let mut out = Vec::new();
        for v in list.into_inner() {
            let n = *v.get_ref();
            let ok = match allowed {
                Some(a) => a.contains(&n),
                None => n >= 1,
            };
            if !ok {
                let what = match allowed {
                    Some(a) => format!("allowed values are {a:?}"),
                    None => "must be at least 1".into(),
                };
                return Err(self.invalid(v.span(), key, what));
            }
            out.push(n);
        }
        Ok(Some(out))
    }

    fn model(&self, entry: &Spanned<String>) -> Result<ProfileModel, ProfileError> {
        let base = self.path.parent().unwrap_or(Path::new(""));
        let given = base.join(entry.get_ref());
        let manifest_path = if given.extension().is_some_and(|e| e == "onnx") {
            given.with_extension("toml")
        } else {
            given
        };
        let key = "matrix.models";
        if !manifest_path.is_file() {
            return Err(self.invalid(
                entry.span(),
                key,
                format!(
                    "no model manifest at {} (give a manifest .toml, or an .onnx with its \
                     manifest beside it, relative to the profile's folder)",
                    manifest_path.display()
                ),
            ));
        }
        let manifest = Manifest::load(&manifest_path)
            .map_err(|e| self.invalid(entry.span(), key, e.to_string()))?;
        if !manifest.model.file.is_file() {
            return Err(self.invalid(
                entry.span(),
                key,
                format!(
                    "the manifest's model file {} does not exist",
                    manifest.model.file.display()
                ),
            ));
        }
        Ok(ProfileModel {
            manifest_path,
            manifest,
        })
    }

    fn check(&self, raw: RawProfile) -> Result<Profile, ProfileError> {
        let m = raw.matrix;
        self.non_empty(&m.models, "matrix.models")?;
        self.non_empty(&m.precisions, "matrix.precisions")?;
        self.non_empty(&m.methods, "matrix.methods")?;
        self.non_empty(&m.runtimes, "matrix.runtimes")?;
        let mut models: Vec<ProfileModel> = Vec::new();
        for entry in m.models.get_ref() {
            let model = self.model(entry)?;
            if models.iter().any(|other| other.name() == model.name()) {
                return Err(self.invalid(
                    entry.span(),
                    "matrix.models",
                    format!("model name `{}` is listed twice", model.name()),
                ));
            }
            models.push(model);
        }
        let mut methods = Vec::new();
        for method in m.methods.into_inner() {
            if *method.get_ref() == Method::None {
                return Err(self.invalid(
                    method.span(),
                    "matrix.methods",
                    "`none` is what fp32 means; allowed methods are dynamic, static, \
                     weight-only and qat",
                ));
            }
            methods.push(method.into_inner());
        }
        let calibrators = match m.calibrators {
            Some(c) => {
                self.non_empty(&c, "matrix.calibrators")?;
                c.into_inner()
            }
            None => vec![CalibratorKind::MinMax],
        };
        let groups = self
            .counts(m.groups, "matrix.groups", Some(&[32, 64, 128]))?
            .unwrap_or_else(|| vec![32]);
        let threads = self
            .counts(m.threads, "matrix.threads", None)?
            .unwrap_or_else(|| vec![1]);
        let batches = self
            .counts(m.batches, "matrix.batches", None)?
            .unwrap_or_else(|| vec![1]);
        let board = match raw.power.board {
            Some(b) => Some(BoardPower::named(b.get_ref()).ok_or_else(|| {
                self.invalid(
                    b.span(),
                    "power.board",
                    format!(
                        "unknown board; allowed: {}",
                        BoardPower::names().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?),
            None => None,
        };
        let qat = QatSettings {
            epochs: raw.qat.epochs,
            samples: raw.qat.samples,
        };
        self.settings(&raw.data, &raw.timing, &qat)?;
        let qat_imports = self.imports(raw.qat.import, &models)?;
        let search = match raw.search {
            Some(r) => Some(self.search(r, &models, &raw.data)?),
            None => None,
        };
        Ok(Profile {
            path: self.path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            hash: crate::hash::hex(self.text.as_bytes()),
            models,
            precisions: dedup(m.precisions.into_inner()),
            methods: dedup(methods),
            calibrators: dedup(calibrators),
            groups: dedup(groups),
            runtimes: dedup(m.runtimes.into_inner()),
            threads: dedup(threads),
            batches: dedup(batches),
            data: raw.data,
            timing: raw.timing,
            qat,
            qat_imports,
            board,
            search,
        })
    }

    /// The `[search]` table: a budget, a known duration and runtime, listed models, counts of
    /// at least 1.
    fn search(
        &self,
        raw: RawSearch,
        models: &[ProfileModel],
        data: &DataSettings,
    ) -> Result<ProfileSearch, ProfileError> {
        let budget = parse_budget(raw.budget.get_ref())
            .map_err(|e| self.invalid(raw.budget.span(), "search.budget", e))?;
        let mut spec = SearchSpec::new(budget);
        if let Some(o) = raw.objective {
            spec.objective = o;
        }
        if let Some(t) = &raw.time_budget {
            spec.time_budget = Some(
                parse_duration(t.get_ref())
                    .map_err(|e| self.invalid(t.span(), "search.time_budget", e))?,
            );
        }
        if let Some(p) = raw.precisions {
            self.non_empty(&p, "search.precisions")?;
            spec.levels = dedup(p.into_inner());
        }
        let positive = |v: &Option<Spanned<usize>>, key: &str| match v {
            Some(v) if *v.get_ref() == 0 => Err(self.invalid(v.span(), key, "must be at least 1")),
            Some(v) => Ok(Some(*v.get_ref())),
            None => Ok(None),
        };
        spec.setup.samples = positive(&raw.samples, "search.samples")?;
        if let Some(r) = positive(&raw.rounds, "search.rounds")? {
            spec.rounds = r;
        }
        if let Some(r) = &raw.runtime {
            spec.runtime = match r.get_ref().as_str() {
                "auto" => RuntimeChoice::Auto,
                "native" => RuntimeChoice::Fixed(RuntimeKind::Native),
                "ort" => RuntimeChoice::Fixed(RuntimeKind::Ort),
                _ => {
                    return Err(self.invalid(
                        r.span(),
                        "search.runtime",
                        "allowed values are auto, native and ort",
                    ))
                }
            };
        }
        if let Some(seed) = raw.seed {
            spec.setup.seed = seed;
        }
        spec.test_limit = data.test_limit;
        if let Some(n) = data.calibration_samples {
            spec.setup.calib_samples = n;
        }
        let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
        let chosen = match raw.models {
            Some(list) => {
                self.non_empty(&list, "search.models")?;
                let mut out = Vec::new();
                for m in list.into_inner() {
                    if !names.contains(&m.get_ref().as_str()) {
                        return Err(self.invalid(
                            m.span(),
                            "search.models",
                            format!(
                                "`{}` is not a model of the matrix; allowed: {}",
                                m.get_ref(),
                                names.join(", ")
                            ),
                        ));
                    }
                    out.push(m.into_inner());
                }
                dedup(out)
            }
            None => names.iter().map(|n| n.to_string()).collect(),
        };
        Ok(ProfileSearch {
            spec,
            models: chosen,
        })
    }

    /// The `[qat.import]` entries, each naming a listed model and an existing file, at a
    /// quantized precision.
    fn imports(
        &self,
        raw: std::collections::BTreeMap<String, Spanned<RawImport>>,
        models: &[ProfileModel],
    ) -> Result<Vec<QatImport>, ProfileError> {
        let base = self.path.parent().unwrap_or(Path::new(""));
        let mut out = Vec::new();
        for (model, entry) in raw {
            let key = format!("qat.import.{model}");
            let span = entry.span();
            let entry = entry.into_inner();
            if !models.iter().any(|m| m.name() == model) {
                let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
                return Err(self.invalid(
                    span,
                    &key,
                    format!(
                        "`{model}` is not a model of the matrix; allowed: {}",
                        names.join(", ")
                    ),
                ));
            }
            if entry.precision == Precision::Fp32 {
                return Err(self.invalid(
                    span,
                    &key,
                    "a QAT export is quantized: precision int8, int4 or binary",
                ));
            }
            let file = base.join(&entry.file);
            if !file.is_file() {
                return Err(self.invalid(
                    span,
                    &key,
                    format!("no QAT-exported model at {}", file.display()),
                ));
            }
            out.push(QatImport {
                model,
                file,
                precision: entry.precision,
            });
        }
        Ok(out)
    }

    /// Range checks of the settings tables (whose values carry no spans: the key is named and
    /// the position is the table's header).
    fn settings(
        &self,
        data: &DataSettings,
        timing: &TimingSettings,
        qat: &QatSettings,
    ) -> Result<(), ProfileError> {
        let at = |table: &str, key: &str, value: String, message: &str| {
            let header = format!("[{table}]");
            let start = self.text.find(&header).unwrap_or(0);
            let (line, column) = line_column(self.text, start);
            ProfileError::Invalid {
                path: self.path.to_path_buf(),
                line,
                column,
                key: format!("{table}.{key}"),
                value,
                message: message.to_string(),
            }
        };
        let positive = |v: Option<usize>| v.is_none_or(|n| n >= 1);
        if !positive(data.test_limit) {
            return Err(at("data", "test_limit", "0".into(), "must be at least 1"));
        }
        if !positive(data.calibration_samples) {
            return Err(at(
                "data",
                "calibration_samples",
                "0".into(),
                "must be at least 1",
            ));
        }
        if data.eval_batch == 0 {
            return Err(at("data", "eval_batch", "0".into(), "must be at least 1"));
        }
        for (key, v) in [
            ("seconds", timing.seconds),
            ("warmup_seconds", timing.warmup_seconds),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return Err(at(
                    "timing",
                    key,
                    v.to_string(),
                    "must be a number of seconds in (0, 3600]",
                ));
            }
        }
        if timing.min_runs == 0 {
            return Err(at("timing", "min_runs", "0".into(), "must be at least 1"));
        }
        if qat.epochs == 0 || qat.epochs > 1000 {
            return Err(at(
                "qat",
                "epochs",
                qat.epochs.to_string(),
                "must be in 1..=1000",
            ));
        }
        if !positive(qat.samples) {
            return Err(at("qat", "samples", "0".into(), "must be at least 1"));
        }
        Ok(())
    }
}

/// `list` without repeats, first occurrence kept.
fn dedup<T: PartialEq>(list: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(list.len());
    for v in list {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_keys_come_from_the_text() {
        let text = "name = \"x\"\n[matrix]\nthreads = [1,\n  0]\n";
        assert_eq!(line_column(text, 0), (1, 1));
        let zero = text.find("0]").unwrap();
        assert_eq!(line_column(text, zero), (4, 3));
        assert_eq!(key_at(text, zero), "matrix.threads");
        assert_eq!(key_at(text, 2), "name");
    }
}
