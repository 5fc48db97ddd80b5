//! Sweeps on other machines (`quench remote PROFILE HOST...`): for each host, at the same time,
//! quench copies the right binary, the profile and the assets it names over the system
//! `ssh`/`scp`, runs the sweep headless there, streams its progress here and brings
//! `results.jsonl` back into `OUT/<host>/`; a dropped connection is resumed with `--resume`.
//!
//! * [`host`] parses host addresses and builds the `ssh`/`scp` command lines.
//! * [`arch`] finds which binary a host can run (`uname -m`, ELF headers, the aarch64 build).
//! * [`bundle`] lists the files to copy, at their project paths.
//! * [`target`] is one connected host: copy, check the binary, run the sweep, fetch.
//! * [`stream`] reads the sweep's JSON progress lines and describes them.
//! * [`job`] runs all of that on every host in threads and reports per host.

pub mod arch;
pub mod bundle;
pub mod host;
pub mod job;
pub mod stream;
pub mod target;

use std::path::PathBuf;

pub use job::{default_work_dir, run, HostReport, Job, Printer, Progress};

/// Why a host could not be prepared, run or read back.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A host address that cannot be used.
    #[error("host `{host}`: {reason}")]
    BadHost {
        /// The address as given.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two hosts would write into the same output folder.
    #[error("hosts `{0}` and `{1}` share the output folder name; give each host once")]
    DuplicateHost(String, String),
    /// `ssh` or `scp` could not be started.
    #[error("could not start `{program}` ({source}); install OpenSSH's client")]
    Spawn {
        /// The program.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `ssh` or `scp` ended with an error.
    #[error(
        "{host}: {what} failed ({}): {stderr}",
        code.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit status {c}"))
    )]
    Command {
        /// The host.
        host: String,
        /// The step.
        what: String,
        /// Exit status (255: connection or authentication failed).
        code: Option<i32>,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The host's CPU is one quench is not built for.
    #[error("{host}: its CPU is `{arch}` (uname -m); quench runs on x86_64 and aarch64 only")]
    UnsupportedArch {
        /// The host.
        host: String,
        /// What `uname -m` printed.
        arch: String,
    },
    /// A file given as a binary or library is not a 64-bit ELF file.
    #[error("{0}: not a 64-bit ELF executable or library")]
    NotElf(PathBuf),
    /// A binary or library is built for another CPU than the host's.
    #[error("{path} is built for {found}, but the host is {want}")]
    WrongArch {
        /// The file.
        path: PathBuf,
        /// The host's architecture.
        want: arch::Arch,
        /// What the file is built for.
        found: String,
    },
    /// No quench binary for the host's architecture was found.
    #[error(
        "no {arch} build of quench found{}; {}",
        if searched.is_empty() { String::new() } else {
            format!(" (looked for {})", searched.iter().map(|p| p.display().to_string())
                .collect::<Vec<_>>().join(", "))
        },
        if *arch == arch::Arch::Aarch64 { arch::AARCH64_BUILD_HINT } else {
            "build quench on an x86_64 machine (cargo build --release --target x86_64-unknown-linux-gnu) and run quench remote from there"
        }
    )]
    NoBinary {
        /// The host's architecture.
        arch: arch::Arch,
        /// Paths looked at.
        searched: Vec<PathBuf>,
    },
    /// A file to copy lies outside the project folder.
    #[error("{path} is outside the project folder {root}: quench remote copies project files only (run it from the project folder, or move the file into it)")]
    OutsideProject {
        /// The file.
        path: PathBuf,
        /// The project folder.
        root: PathBuf,
    },
    /// A path to copy is not a regular file.
    #[error("{0}: not a file")]
    NotAFile(PathBuf),
    /// A model manifest named by the profile could not be read.
    #[error(transparent)]
    Manifest(Box<crate::eval::ManifestError>),
    /// The shipped binary does not start on the host.
    #[error("{host}: the shipped quench does not run there: {output}")]
    BinaryDoesNotRun {
        /// The host.
        host: String,
        /// What it printed.
        output: String,
    },
    /// The results file brought back could not be read.
    #[error(transparent)]
    Results(Box<crate::sweep::store::StoreError>),
    /// The connection dropped more often than allowed.
    #[error("{host}: connection lost {times} times, giving up (last: {reason}); run again with --resume to continue")]
    ConnectionLost {
        /// The host.
        host: String,
        /// How often it dropped.
        times: usize,
        /// ssh's last message.
        reason: String,
    },
}
