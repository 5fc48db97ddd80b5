//! What a host needs to run a sweep: the quench binary (and ONNX Runtime's library beside it,
//! where quench looks for it), the profile, and every model, manifest and data file the profile
//! names, each at the same path relative to the project folder as here. Files outside the
//! project folder are refused: the remote layout mirrors the project, and a profile must not
//! pull arbitrary local files onto a board.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::eval::Manifest;
use crate::remote::RemoteError;

/// Folder of the work dir holding the binary and ONNX Runtime's library.
pub const BIN_DIR: &str = "bin";

/// One file to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipFile {
    /// The local file.
    pub local: PathBuf,
    /// Its path inside the remote work dir, `/`-separated, never absolute and without `..`.
    pub remote: String,
}

/// The files to copy into a host's work dir.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The project folder (canonical); project files keep their path relative to it.
    root: PathBuf,
    /// Files by remote path (so a file named twice is copied once).
    files: BTreeMap<String, PathBuf>,
}

impl Bundle {
    /// An empty bundle of files from the project folder `root`.
    pub fn new(root: &Path) -> Result<Bundle, RemoteError> {
        Ok(Bundle {
            root: canonical(root)?,
            files: BTreeMap::new(),
        })
    }

    /// Adds a project file at its path relative to the project folder, and returns that path;
    /// a file outside the project folder (after following links) is refused.
    pub fn add_project_file(&mut self, path: &Path) -> Result<String, RemoteError> {
        let full = canonical(&self.root.join(path))?;
        let rel = full
            .strip_prefix(&self.root)
            .map_err(|_| RemoteError::OutsideProject {
                path: path.to_path_buf(),
                root: self.root.clone(),
            })?;
        let remote = remote_path(rel).ok_or_else(|| RemoteError::OutsideProject {
            path: path.to_path_buf(),
            root: self.root.clone(),
        })?;
        if !full.is_file() {
            return Err(RemoteError::NotAFile(full));
        }
        self.files.insert(remote.clone(), full);
        Ok(remote)
    }

    /// Adds a model manifest, the model file it names and every data file of its splits.
    pub fn add_manifest(&mut self, manifest_path: &Path) -> Result<(), RemoteError> {
        let full = self.root.join(manifest_path);
        let manifest = Manifest::load(&full).map_err(|e| RemoteError::Manifest(Box::new(e)))?;
        self.add_project_file(&full)?;
        self.add_project_file(&manifest.model.file)?;
        let data = &manifest.data;
        let splits = std::iter::once(&data.test)
            .chain(data.calibration.as_ref())
            .chain(data.validation.as_ref());
        for split in splits {
            self.add_project_file(&split.samples)?;
            if let Some(labels) = &split.labels {
                self.add_project_file(labels)?;
            }
        }
        Ok(())
    }

    /// Adds a file from anywhere (the binary, ONNX Runtime's library) as `BIN_DIR/name`, and
    /// returns that remote path.
    pub fn add_to_bin(&mut self, local: &Path, name: &str) -> Result<String, RemoteError> {
        let full = canonical(local)?;
        if !full.is_file() {
            return Err(RemoteError::NotAFile(full));
        }
        let remote = format!("{BIN_DIR}/{name}");
        self.files.insert(remote.clone(), full);
        Ok(remote)
    }

    /// Adds a file from anywhere under [`BIN_DIR`] with its own file name.
    pub fn add_to_bin_as_is(&mut self, local: &Path) -> Result<String, RemoteError> {
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| RemoteError::NotAFile(local.to_path_buf()))?;
        self.add_to_bin(local, name)
    }

    /// Every file, ordered by remote path.
    pub fn files(&self) -> impl Iterator<Item = ShipFile> + '_ {
        self.files.iter().map(|(remote, local)| ShipFile {
            local: local.clone(),
            remote: remote.clone(),
        })
    }

    /// Total bytes to copy.
    pub fn bytes(&self) -> u64 {
        self.files
            .values()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// `path` made absolute with links resolved, or an error naming it.
fn canonical(path: &Path) -> Result<PathBuf, RemoteError> {
    std::fs::canonicalize(path).map_err(|source| RemoteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A relative path as a `/`-separated remote path, `None` when it is empty or not plain.
fn remote_path(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str().filter(|s| !s.contains(['\'', '\n'])),
            _ => None,
        })
        .collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn a_manifest_brings_its_model_and_data_at_their_project_paths() {
        let mut b = Bundle::new(&project()).unwrap();
        b.add_manifest(Path::new("assets/models/mnist-mlp.toml"))
            .unwrap();
        let remote: Vec<String> = b.files().map(|f| f.remote).collect();
        assert_eq!(
            remote,
            [
                "assets/data/mnist-test-images.idx.gz",
                "assets/data/mnist-test-labels.idx.gz",
                "assets/data/mnist-train-images.idx.gz",
                "assets/data/mnist-train-labels.idx.gz",
                "assets/data/mnist-val-images.idx.gz",
                "assets/data/mnist-val-labels.idx.gz",
                "assets/models/mnist-mlp.onnx",
                "assets/models/mnist-mlp.toml",
            ]
        );
        for f in b.files() {
            assert!(f.local.is_absolute() && f.local.is_file());
        }
        assert!(b.bytes() > 1_000_000);
    }

    #[test]
    fn files_outside_the_project_are_refused() {
        let outside = tempfile::NamedTempFile::new().unwrap();
        let mut b = Bundle::new(&project().join("assets")).unwrap();
        let err = b.add_project_file(outside.path()).unwrap_err();
        assert!(matches!(err, RemoteError::OutsideProject { .. }), "{err}");
        let err = b.add_project_file(Path::new("../Cargo.toml")).unwrap_err();
        assert!(err.to_string().contains("outside the project"), "{err}");
        let err = b.add_project_file(Path::new("models")).unwrap_err();
        assert!(matches!(err, RemoteError::NotAFile(_)), "{err}");
        let err = b.add_project_file(Path::new("nope.toml")).unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn a_manifest_naming_data_outside_the_project_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("proj");
        std::fs::create_dir_all(proj.join("m")).unwrap();
        std::fs::write(dir.path().join("secret.npy"), "x").unwrap();
        std::fs::write(proj.join("m/a.onnx"), "x").unwrap();
        std::fs::write(
            proj.join("m/a.toml"),
            "[model]\nfile = \"a.onnx\"\nname = \"a\"\n[input]\nname = \"x\"\n\
             sample_shape = [1]\n[output]\nkind = \"logits\"\n\
             [data.test]\nsamples = \"../../secret.npy\"\n",
        )
        .unwrap();
        let mut b = Bundle::new(&proj).unwrap();
        let err = b.add_manifest(Path::new("m/a.toml")).unwrap_err();
        assert!(err.to_string().contains("secret.npy"), "{err}");
    }

    #[test]
    fn bin_files_get_the_name_given() {
        let mut b = Bundle::new(&project()).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(b.add_to_bin(&exe, "quench").unwrap(), "bin/quench");
        let err = b.add_to_bin(Path::new("assets"), "x").unwrap_err();
        assert!(matches!(err, RemoteError::NotAFile(_)), "{err}");
        let files: Vec<ShipFile> = b.files().collect();
        assert_eq!(files[0].local, canonical(&exe).unwrap());
    }
}
