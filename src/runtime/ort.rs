//! ONNX Runtime behind the [`Runtime`] trait, loaded at run time from its shared library.
//!
//! The `ort` crate panics when it has to find the library itself, so quench finds it first
//! ([`discover_library`]: `$ORT_DYLIB_PATH`, then a project `.venv` holding the `onnxruntime`
//! wheel, then beside the executable), loads it once per process ([`ort_library`]) and turns its
//! absence into [`RuntimeError::OrtUnavailable`] with the install command.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType};

use crate::runtime::{Runtime, RuntimeError};
use crate::tensor::{Tensor, TensorData};

/// How to get ONNX Runtime, appended to every "not found" message.
pub const INSTALL_HINT: &str = "install it in the project folder with `python3 -m venv .venv && \
.venv/bin/pip install onnxruntime==1.32.0`, or set ORT_DYLIB_PATH to the path of libonnxruntime.so";

/// Name of the runtime in records.
const NAME: &str = "ort";

/// Where to look for ONNX Runtime's shared library, in the order searched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRoots {
    /// `$ORT_DYLIB_PATH`: when set it is the only candidate.
    pub env_path: Option<PathBuf>,
    /// Folders searched for `.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`.
    pub venv_roots: Vec<PathBuf>,
    /// Folder searched for the library itself (the executable's folder).
    pub exe_dir: Option<PathBuf>,
}

impl SearchRoots {
    /// The roots of this process: `$ORT_DYLIB_PATH`, the working directory and its ancestors,
    /// then the executable's ancestors, and the executable's folder.
    pub fn from_process() -> SearchRoots {
        let env_path = std::env::var_os("ORT_DYLIB_PATH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let exe = std::env::current_exe().ok();
        let exe_dir = exe.as_deref().and_then(Path::parent).map(Path::to_path_buf);
        let mut venv_roots: Vec<PathBuf> = Vec::new();
        let cwd = std::env::current_dir().ok();
        for start in [cwd.as_deref(), exe_dir.as_deref()].into_iter().flatten() {
            for dir in start.ancestors() {
                if !venv_roots.iter().any(|d| d == dir) {
                    venv_roots.push(dir.to_path_buf());
                }
            }
        }
        SearchRoots {
            env_path,
            venv_roots,
            exe_dir,
        }
    }
}

/// Finds ONNX Runtime's shared library under `roots`, as an absolute path.
pub fn discover_library(roots: &SearchRoots) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = &roots.env_path {
        return std::fs::canonicalize(path).map_err(|e| {
            RuntimeError::OrtUnavailable(format!(
                "ONNX Runtime not found: ORT_DYLIB_PATH is {} ({e}); {INSTALL_HINT}",
                path.display()
            ))
        });
    }
    let found = roots
        .venv_roots
        .iter()
        .find_map(|root| venv_library(root))
        .or_else(|| roots.exe_dir.as_deref().and_then(library_in));
    if let Some(path) = found.and_then(|p| std::fs::canonicalize(p).ok()) {
        return Ok(path);
    }
    let searched: Vec<String> = roots
        .venv_roots
        .iter()
        .map(|r| r.join(".venv").display().to_string())
        .chain(roots.exe_dir.iter().map(|d| d.display().to_string()))
        .collect();
    Err(RuntimeError::OrtUnavailable(format!(
        "ONNX Runtime's library ({}onnxruntime{}*) was not found (searched: {}); {INSTALL_HINT}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX,
        if searched.is_empty() {
            "nowhere".to_string()
        } else {
            searched.join(", ")
        }
    )))
}

/// The library inside `root/.venv/lib/python3*/site-packages/onnxruntime/capi`.
fn venv_library(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons
        .iter()
        .rev()
        .find_map(|p| library_in(&p.join("site-packages").join("onnxruntime").join("capi")))
}

/// The newest `libonnxruntime.so*` (or platform equivalent) directly in `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let prefix = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let suffix = std::env::consts::DLL_SUFFIX;
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&prefix)?;
            let is_lib =
                rest.starts_with(suffix) || (rest.starts_with('.') && rest.ends_with(suffix));
            is_lib.then(|| (version_key(rest), e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Numeric parts of a file-name tail (`.so.1.32.0` -> [1, 32, 0]) for picking the newest.
fn version_key(tail: &str) -> Vec<u64> {
    tail.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// ONNX Runtime as loaded in this process.
pub struct OrtLibrary {
    /// The shared library file.
    pub path: PathBuf,
    /// Its version, as it reports it (e.g. `1.32.0`).
    pub version: String,
    environment: ort::environment::Environment,
}

/// Loads ONNX Runtime once per process (found with [`SearchRoots::from_process`]) and returns it;
/// later calls return the same library or the same error. Every use of `ort` must go through
/// here: `ort` allows one environment per process.
pub fn ort_library() -> Result<&'static OrtLibrary, RuntimeError> {
    static LIBRARY: OnceLock<Result<OrtLibrary, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| load_library(&SearchRoots::from_process()))
        .as_ref()
        .map_err(|m| RuntimeError::OrtUnavailable(m.clone()))
}

/// Finds, loads and initialises ONNX Runtime.
fn load_library(roots: &SearchRoots) -> Result<OrtLibrary, String> {
    let path = discover_library(roots).map_err(|e| e.to_string())?;
    let unusable = |e: &dyn std::fmt::Display| {
        format!(
            "ONNX Runtime at {} is unusable: {e}; {INSTALL_HINT}",
            path.display()
        )
    };
    let builder = ort::init_from(&path).map_err(|e| unusable(&e))?;
    let environment = builder
        .with_name("quench")
        .build()
        .map_err(|e| unusable(&e))?;
    let version = library_version(&path).map_err(|e| unusable(&e))?;
    Ok(OrtLibrary {
        path,
        version,
        environment,
    })
}

/// The version string the library at `path` reports through `OrtGetApiBase`.
fn library_version(path: &Path) -> Result<String, String> {
    // SAFETY: `path` is the ONNX Runtime library `ort::init_from` has just loaded; opening it
    // again returns the same, already-initialised handle, so no new initialiser runs.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release
    // (onnxruntime_c_api.h), and ort-sys declares the struct it returns.
    let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }.map_err(|e| e.to_string())?;
    // SAFETY: the function takes no argument and returns a pointer to a static struct.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err("OrtGetApiBase returned null".into());
    }
    // SAFETY: `base` is non-null and points to the library's static OrtApiBase, whose
    // GetVersionString returns a static NUL-terminated string (or null, checked below).
    let text = unsafe { ((*base).GetVersionString)() };
    if text.is_null() {
        return Err("GetVersionString returned null".into());
    }
    // SAFETY: non-null, NUL-terminated and static, per the C API.
    let version = unsafe { CStr::from_ptr(text) };
    Ok(version.to_string_lossy().into_owned())
}

/// Graph optimisation ONNX Runtime applies when it builds a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    /// No graph rewriting.
    Disable,
    /// Constant folding and redundant-node removal.
    Basic,
    /// Basic plus operator fusions.
    Extended,
    /// Everything, including layout optimisations.
    #[default]
    All,
}

impl From<OptLevel> for GraphOptimizationLevel {
    fn from(level: OptLevel) -> Self {
        match level {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        }
    }
}

/// How to build an ONNX Runtime session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtOptions {
    /// Intra-op threads (inter-op is 1: nodes run sequentially).
    pub threads: usize,
    /// Graph optimisation level.
    pub opt_level: OptLevel,
    /// Let idle intra-op threads spin-wait for work (ONNX Runtime's default: lower latency,
    /// but busy cores between runs). Off is kinder to whatever runs beside it.
    pub spin: bool,
}

impl OrtOptions {
    /// `threads` intra-op threads, all graph optimisations, spinning as ONNX Runtime defaults.
    pub fn new(threads: usize) -> OrtOptions {
        OrtOptions {
            threads,
            opt_level: OptLevel::All,
            spin: true,
        }
    }
}

/// A model loaded into an ONNX Runtime session on the CPU.
pub struct OrtRuntime {
    session: Session,
    threads: usize,
    version: &'static str,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// A `RuntimeError::Failed` from ONNX Runtime.
fn failed(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed {
        runtime: NAME,
        message: format!("{what}: {e}"),
    }
}

impl OrtRuntime {
    /// Loads the `.onnx` file at `path`.
    pub fn from_file(path: &Path, options: &OrtOptions) -> Result<OrtRuntime, RuntimeError> {
        OrtRuntime::build(options, |b| b.commit_from_file(path))
            .map_err(|e| failed(&format!("loading {}", path.display()), e))
    }

    /// Loads a model from its serialised bytes.
    pub fn from_bytes(bytes: &[u8], options: &OrtOptions) -> Result<OrtRuntime, RuntimeError> {
        OrtRuntime::build(options, |b| b.commit_from_memory(bytes))
            .map_err(|e| failed("loading the model", e))
    }

    fn build(
        options: &OrtOptions,
        commit: impl FnOnce(&mut SessionBuilder) -> ort::Result<Session>,
    ) -> Result<OrtRuntime, String> {
        let library = ort_library().map_err(|e| e.to_string())?;
        let threads = options.threads.max(1);
        let text = |e: ort::Error<SessionBuilder>| e.to_string();
        let mut builder = Session::builder(&library.environment)
            .map_err(|e| e.to_string())?
            .with_intra_threads(threads)
            .map_err(text)?
            .with_inter_threads(1)
            .map_err(text)?
            .with_parallel_execution(false)
            .map_err(text)?
            .with_optimization_level(options.opt_level.into())
            .map_err(text)?
            .with_intra_op_spinning(options.spin)
            .map_err(text)?;
        let session = commit(&mut builder).map_err(|e| e.to_string())?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        Ok(OrtRuntime {
            session,
            threads,
            version: &library.version,
            inputs,
            outputs,
        })
    }

    /// The graph's input names, in declaration order.
    pub fn input_names(&self) -> &[String] {
        &self.inputs
    }

    /// The ONNX Runtime version running this model.
    pub fn version(&self) -> &str {
        self.version
    }
}

/// A borrowed ORT view of a quench tensor.
fn to_ort<'t>(name: &str, t: &'t Tensor) -> Result<SessionInputValue<'t>, RuntimeError> {
    fn view<'t, T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
        shape: Vec<i64>,
        data: &'t [T],
    ) -> ort::Result<SessionInputValue<'t>> {
        Ok(TensorRef::from_array_view((shape, data))?.into())
    }
    let bad = |message: String| RuntimeError::BadInput {
        name: name.to_string(),
        message,
    };
    let shape = t
        .shape()
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| {
            bad(format!(
                "shape {:?} does not fit ONNX's i64 dims",
                t.shape()
            ))
        })?;
    match t.data() {
        TensorData::F32(v) => view(shape, v),
        TensorData::U8(v) => view(shape, v),
        TensorData::I8(v) => view(shape, v),
        TensorData::I32(v) => view(shape, v),
        TensorData::I64(v) => view(shape, v),
        TensorData::Bool(v) => view(shape, v),
    }
    .map_err(|e| bad(e.to_string()))
}

/// A quench tensor copied out of an ORT output value.
fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    fn copy<T: PrimitiveTensorElementType + Clone>(
        value: &DynValue,
        wrap: fn(Vec<T>) -> TensorData,
    ) -> Result<(Vec<i64>, TensorData), String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        Ok((shape.to_vec(), wrap(data.to_vec())))
    }
    let what = format!("output `{name}`");
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(failed(&what, format!("{other} is not a tensor"))),
    };
    let (dims, data) = match ty {
        TensorElementType::Float32 => copy(value, TensorData::F32),
        TensorElementType::Uint8 => copy(value, TensorData::U8),
        TensorElementType::Int8 => copy(value, TensorData::I8),
        TensorElementType::Int32 => copy(value, TensorData::I32),
        TensorElementType::Int64 => copy(value, TensorData::I64),
        TensorElementType::Bool => copy(value, TensorData::Bool),
        other => Err(format!("element type {other} is not supported by quench")),
    }
    .map_err(|e| failed(&what, e))?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| failed(&what, format!("negative dimension in {dims:?}")))?;
    Tensor::new(shape, data).map_err(|e| failed(&what, e))
}

impl Runtime for OrtRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn output_names(&self) -> &[String] {
        &self.outputs
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, RuntimeError> {
        if let Some((name, _)) = inputs
            .iter()
            .find(|(n, _)| !self.inputs.iter().any(|i| i == n))
        {
            return Err(RuntimeError::BadInput {
                name: name.to_string(),
                message: format!("the model's inputs are {:?}", self.inputs),
            });
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|i| !inputs.iter().any(|(n, _)| n == i))
        {
            return Err(RuntimeError::BadInput {
                name: missing.clone(),
                message: "not given".into(),
            });
        }
        let values = inputs
            .iter()
            .map(|(name, t)| Ok((std::borrow::Cow::Borrowed(*name), to_ort(name, t)?)))
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let outputs = self.session.run(values).map_err(|e| failed("run", e))?;
        self.outputs
            .iter()
            .map(|name| {
                let value = outputs.get(name).ok_or_else(|| {
                    failed(&format!("output `{name}`"), "missing from the results")
                })?;
                from_ort(name, value)
            })
            .collect()
    }

    fn kernel_names(&self) -> Vec<String> {
        vec![format!("ort-cpu-{}", self.version)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_search_path_reports_the_install_command() {
        let err = discover_library(&SearchRoots::default()).unwrap_err();
        let RuntimeError::OrtUnavailable(message) = err else {
            panic!("expected OrtUnavailable, got {err}");
        };
        assert!(
            message.contains("pip install onnxruntime==1.32.0"),
            "{message}"
        );
        assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
    }

    #[test]
    fn unloadable_library_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so.1.32.0");
        std::fs::write(&fake, b"not a shared library").unwrap();
        let roots = SearchRoots {
            env_path: Some(fake),
            ..SearchRoots::default()
        };
        let message = load_library(&roots).err().unwrap();
        assert!(message.contains("is unusable"), "{message}");
        assert!(
            message.contains("pip install onnxruntime==1.32.0"),
            "{message}"
        );
        let message = load_library(&SearchRoots::default()).err().unwrap();
        assert!(
            message.contains("was not found (searched: nowhere)"),
            "{message}"
        );
    }

    #[test]
    fn missing_env_path_is_reported_not_skipped() {
        let roots = SearchRoots {
            env_path: Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
            ..SearchRoots::default()
        };
        let message = discover_library(&roots).unwrap_err().to_string();
        assert!(
            message.contains("ORT_DYLIB_PATH is /nonexistent/libonnxruntime.so"),
            "{message}"
        );
    }

    #[test]
    fn finds_the_newest_library_in_a_venv_then_beside_the_exe() {
        let dir = tempfile::tempdir().unwrap();
        let capi = dir
            .path()
            .join("proj/.venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        for f in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.32.0",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(capi.join(f), b"").unwrap();
        }
        let exe_dir = dir.path().join("bin");
        std::fs::create_dir_all(&exe_dir).unwrap();
        std::fs::write(exe_dir.join("libonnxruntime.so"), b"").unwrap();

        let mut roots = SearchRoots {
            env_path: None,
            venv_roots: vec![dir.path().join("proj/sub"), dir.path().join("proj")],
            exe_dir: Some(exe_dir.clone()),
        };
        let found = discover_library(&roots).unwrap();
        assert!(
            found.ends_with("capi/libonnxruntime.so.1.32.0"),
            "{}",
            found.display()
        );
        roots.venv_roots.clear();
        assert!(discover_library(&roots)
            .unwrap()
            .ends_with("bin/libonnxruntime.so"));
    }
}
