//! Which quench binary a host can run: its CPU architecture (`uname -m` over ssh), the
//! architecture of a local ELF file, and where the cross-built aarch64 binary is.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::remote::RemoteError;

/// Rust target triple of the cross-built Arm binary.
pub const AARCH64_TRIPLE: &str = "aarch64-unknown-linux-gnu";

/// How to build the Arm binary, quoted in every "not found" error.
pub const AARCH64_BUILD_HINT: &str = "build it with `bash scripts/test-aarch64.sh` (installs the \
rust target and Debian's cross linker once) and then `cargo build --release --target \
aarch64-unknown-linux-gnu`, or name a binary with --aarch64-binary PATH";

/// A CPU architecture quench is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// 64-bit x86 (`x86_64`).
    X86_64,
    /// 64-bit Arm (`aarch64`, `arm64`).
    Aarch64,
}

impl Arch {
    /// The architecture `uname -m` printed; anything quench is not built for is an error that
    /// quotes it.
    pub fn from_uname(host: &str, text: &str) -> Result<Arch, RemoteError> {
        match text.trim() {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" | "aarch64_be" => Ok(Arch::Aarch64),
            other => Err(RemoteError::UnsupportedArch {
                host: host.to_string(),
                arch: other.to_string(),
            }),
        }
    }

    /// The architecture this process was built for, when quench supports it.
    pub fn local() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The `e_machine` value of an ELF file built for this architecture.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 0x3e,
            Arch::Aarch64 => 0xb7,
        }
    }

    /// The architecture of the ELF file at `path` (an executable or a shared library), or
    /// `None` when it is an ELF file for another machine.
    pub fn of_elf(path: &Path) -> Result<Option<Arch>, RemoteError> {
        let io = |source| RemoteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut header = [0u8; 20];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_err(io)?;
        if &header[..4] != b"\x7fELF" || header[5] != 1 {
            return Err(RemoteError::NotElf(path.to_path_buf()));
        }
        let machine = u16::from_le_bytes([header[18], header[19]]);
        Ok([Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .find(|a| a.elf_machine() == machine))
    }

    /// Checks that the ELF file at `path` is built for this architecture.
    pub fn check_elf(self, path: &Path) -> Result<(), RemoteError> {
        match Arch::of_elf(path)? {
            Some(a) if a == self => Ok(()),
            found => Err(RemoteError::WrongArch {
                path: path.to_path_buf(),
                want: self,
                found: found.map_or_else(|| "another machine".to_string(), |a| a.to_string()),
            }),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

/// The quench binaries at hand: the one of this machine and, when given or found, an aarch64
/// build.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The binary for this machine's architecture (the running `quench`).
    pub native: PathBuf,
    /// An aarch64 binary named by the user (`--aarch64-binary`); otherwise one is looked for in
    /// the cargo target folders when an Arm host needs it.
    pub aarch64: Option<PathBuf>,
    /// Folders searched for `aarch64-unknown-linux-gnu/release/quench` when `aarch64` is not set:
    /// `$CARGO_TARGET_DIR`, the project's `target/`, and the target folder the running binary
    /// sits in.
    pub target_dirs: Vec<PathBuf>,
}

impl Binaries {
    /// The running binary, with the target folders of this process and of `project`.
    pub fn of_process(project: &Path, aarch64: Option<PathBuf>) -> Result<Binaries, RemoteError> {
        let native = std::env::current_exe().map_err(|source| RemoteError::Io {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let mut target_dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .into_iter()
            .collect();
        target_dirs.push(project.join("target"));
        // target/release/quench or target/<triple>/release/quench: the target folder is above.
        target_dirs.extend(native.ancestors().nth(2).map(Path::to_path_buf));
        Ok(Binaries {
            native,
            aarch64,
            target_dirs,
        })
    }

    /// The binary to ship to a host of architecture `arch`, checked to be an ELF file for it.
    pub fn for_arch(&self, arch: Arch) -> Result<PathBuf, RemoteError> {
        if Arch::local() == Some(arch) {
            arch.check_elf(&self.native)?;
            return Ok(self.native.clone());
        }
        let path =
            match (arch, &self.aarch64) {
                (Arch::Aarch64, Some(p)) => p.clone(),
                (Arch::Aarch64, None) => {
                    let candidates: Vec<PathBuf> = self
                        .target_dirs
                        .iter()
                        .map(|d| d.join(AARCH64_TRIPLE).join("release").join("quench"))
                        .collect();
                    candidates.iter().find(|p| p.is_file()).cloned().ok_or(
                        RemoteError::NoBinary {
                            arch,
                            searched: candidates,
                        },
                    )?
                }
                (Arch::X86_64, _) => {
                    return Err(RemoteError::NoBinary {
                        arch,
                        searched: Vec::new(),
                    })
                }
            };
        arch.check_elf(&path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_uname_names() {
        assert_eq!(Arch::from_uname("h", "x86_64\n").unwrap(), Arch::X86_64);
        assert_eq!(Arch::from_uname("h", "arm64").unwrap(), Arch::Aarch64);
        assert_eq!(Arch::from_uname("h", "aarch64\n").unwrap(), Arch::Aarch64);
        let err = Arch::from_uname("pi", "armv7l\n").unwrap_err().to_string();
        assert!(err.contains("armv7l") && err.contains("pi"), "{err}");
    }

    #[test]
    fn the_running_binary_is_an_elf_of_this_machine() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(Arch::of_elf(&exe).unwrap(), Arch::local());
    }

    #[test]
    fn elf_headers_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let arm = dir.path().join("arm");
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[18] = 0xb7;
        std::fs::write(&arm, &header).unwrap();
        assert_eq!(Arch::of_elf(&arm).unwrap(), Some(Arch::Aarch64));
        let err = Arch::X86_64.check_elf(&arm).unwrap_err().to_string();
        assert!(err.contains("aarch64") && err.contains("x86_64"), "{err}");
        let text = dir.path().join("script");
        std::fs::write(&text, "#!/bin/sh\necho hi, this is long enough\n").unwrap();
        assert!(matches!(Arch::of_elf(&text), Err(RemoteError::NotElf(_))));
        let short = dir.path().join("short");
        std::fs::write(&short, "x").unwrap();
        assert!(matches!(Arch::of_elf(&short), Err(RemoteError::Io { .. })));
    }

    #[test]
    fn a_missing_arm_build_says_how_to_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let bins = Binaries {
            native: std::env::current_exe().unwrap(),
            aarch64: None,
            target_dirs: vec![dir.path().to_path_buf()],
        };
        let other = if Arch::local() == Some(Arch::Aarch64) {
            Arch::X86_64
        } else {
            Arch::Aarch64
        };
        let err = bins.for_arch(other).unwrap_err().to_string();
        assert!(err.contains("cargo build --release --target"), "{err}");
        if other == Arch::Aarch64 {
            assert!(err.contains(&dir.path().display().to_string()), "{err}");
            let found = dir.path().join(AARCH64_TRIPLE).join("release");
            std::fs::create_dir_all(&found).unwrap();
            let mut header = vec![0u8; 64];
            header[..6].copy_from_slice(b"\x7fELF\x02\x01");
            header[18] = 0xb7;
            std::fs::write(found.join("quench"), &header).unwrap();
            assert_eq!(bins.for_arch(other).unwrap(), found.join("quench"));
        }
        assert_eq!(bins.for_arch(Arch::local().unwrap()).unwrap(), bins.native);
    }
}
