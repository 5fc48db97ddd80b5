//! A remote sweep on several hosts at once: one thread per host connects, copies, checks the
//! binary, runs the sweep (reconnecting with `--resume` when the connection drops, a bounded
//! number of times), and always tries to bring `results.jsonl` back into `OUT/<host>/`, also
//! when the sweep failed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::remote::arch::{Arch, Binaries};
use crate::remote::bundle::{Bundle, BIN_DIR};
use crate::remote::host::{Host, Ssh, SSH_CONNECTION_LOST};
use crate::remote::stream::Line;
use crate::remote::target::{Attempt, Target, OUT_DIR, REMOTE_ROOT};
use crate::remote::RemoteError;
use crate::sweep::event::Event;
use crate::sweep::headless;
use crate::sweep::store;

/// Name of the results file, here and on the host.
pub const RESULTS_FILE: &str = "results.jsonl";

/// Name of the local file holding every progress event received from a host.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Longest wait between two reconnections.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What to run on every host.
#[derive(Debug, Clone)]
pub struct Job {
    /// The project folder: every file copied lies inside it and keeps its relative path.
    pub root: PathBuf,
    /// The profile file.
    pub profile: PathBuf,
    /// Model manifests the profile names (each brings its model and data files).
    pub manifests: Vec<PathBuf>,
    /// The work dir on each host, relative to the remote home or absolute (by default
    /// `.quench-remote/<profile name>-<profile hash>`, see [`default_work_dir`]); `{host}` in it
    /// is replaced by the host's label, for hosts that share a home folder (NFS). The same dir
    /// is reused across runs so `--resume` finds the earlier results and unchanged files are
    /// not copied again.
    pub work_dir: String,
    /// Local output folder: each host writes `OUT/<host label>/results.jsonl`.
    pub out: PathBuf,
    /// Continue the sweep already recorded on each host instead of starting over.
    pub resume: bool,
    /// Extra `-o` options for `ssh` and `scp`.
    pub ssh_options: Vec<String>,
    /// The quench binaries at hand.
    pub binaries: Binaries,
    /// ONNX Runtime libraries at hand; each host gets the first one built for its CPU.
    pub ort_libs: Vec<PathBuf>,
    /// Reconnections allowed after a dropped connection.
    pub retries: usize,
    /// Wait before the first reconnection; doubled after each, up to 30 s.
    pub retry_delay: Duration,
}

/// Something to show the user about one host.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A step of quench remote itself (connected, copied, reconnecting...).
    Note(String),
    /// A line the remote sweep printed.
    Output(Line),
}

/// How the run on one host ended.
#[derive(Debug)]
pub struct HostReport {
    /// The host.
    pub host: Host,
    /// Its CPU, once known.
    pub arch: Option<Arch>,
    /// What `quench --version` printed there, once the binary ran.
    pub version: Option<String>,
    /// The results brought back (`OUT/<host>/results.jsonl`), when the fetch worked.
    pub results: Option<PathBuf>,
    /// Records read back from that file.
    pub records: usize,
    /// The sweep's own tally (`SweepFinished`), when it got that far.
    pub finished: Option<Event>,
    /// Exit status of the remote sweep, when it ended by itself.
    pub exit_code: Option<i32>,
    /// Reconnections made after dropped connections.
    pub reconnects: usize,
    /// Why the host did not complete (the first error; a failed fetch is noted here only when
    /// nothing else went wrong).
    pub error: Option<RemoteError>,
}

impl HostReport {
    /// One line for the end of `quench remote`: how the host ended and where its results are.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(arch) = self.arch {
            parts.push(arch.to_string());
        }
        match &self.finished {
            _ if self.arch.is_none() => parts.push("not reached".into()),
            Some(Event::SweepFinished {
                ok,
                failed,
                skipped,
                cancelled,
                seconds,
            }) => parts.push(format!(
                "sweep finished in {seconds:.0} s: {ok} ok, {failed} failed, {skipped} skipped, \
                 {cancelled} cancelled"
            )),
            _ => parts.push("sweep did not finish".into()),
        }
        if self.reconnects > 0 {
            parts.push(format!("after {} reconnection(s)", self.reconnects));
        }
        if let Some(code) = self.exit_code.filter(|c| *c != 0) {
            parts.push(format!("exit status {code}"));
        }
        match &self.results {
            Some(path) => parts.push(format!("{} records in {}", self.records, path.display())),
            None => parts.push("no results fetched".into()),
        }
        let mut line = format!("[{}] {}", self.host, parts.join(", "));
        if let Some(e) = &self.error {
            line.push_str(&format!("; error: {e}"));
        }
        line
    }

    /// True when the sweep ran to its end, exited 0, and the results came back.
    pub fn success(&self) -> bool {
        self.error.is_none() && self.results.is_some() && self.exit_code == Some(0)
    }
}

impl Job {
    /// The files for a host of architecture `arch`: the binary and, when one is built for
    /// `arch`, ONNX Runtime's library in `bin/`, then the profile and its assets. Returns a note
    /// for the user when no ONNX Runtime library can be shipped.
    pub fn bundle_for(&self, arch: Arch) -> Result<(Bundle, Option<String>), RemoteError> {
        let mut bundle = Bundle::new(&self.root)?;
        let binary = self.binaries.for_arch(arch)?;
        bundle.add_to_bin(&binary, crate::remote::target::BINARY)?;
        let ort = self
            .ort_libs
            .iter()
            .find(|lib| matches!(Arch::of_elf(lib), Ok(Some(a)) if a == arch));
        let note = match ort {
            Some(lib) => {
                bundle.add_to_bin_as_is(lib)?;
                None
            }
            None => Some(format!(
                "no ONNX Runtime library built for {arch} to copy (give one with --ort-lib): \
                 cells on ort will be recorded as failed unless the host has libonnxruntime \
                 (ORT_DYLIB_PATH in its ssh environment, a .venv with onnxruntime in the remote \
                 home, or the library in the work dir's {BIN_DIR}/)"
            )),
        };
        bundle.add_project_file(&self.profile)?;
        for manifest in &self.manifests {
            bundle.add_manifest(manifest)?;
        }
        Ok((bundle, note))
    }

    /// The profile's path inside the work dir (its path relative to the project folder).
    fn remote_profile(&self) -> Result<String, RemoteError> {
        Bundle::new(&self.root)?.add_project_file(&self.profile)
    }
}

/// The work dir of a profile on every host: `.quench-remote/<profile name>-<profile hash>`, so a
/// changed profile starts in a fresh folder and an unchanged one finds its earlier results.
pub fn default_work_dir(profile_name: &str, profile_hash: &str) -> String {
    let name: String = profile_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{REMOTE_ROOT}/{name}-{profile_hash}")
}

/// Runs `job` on every host at once and returns one report per host, in the order given;
/// `sink` receives each host's progress as it happens (from the hosts' threads).
pub fn run(
    job: &Job,
    hosts: &[Host],
    sink: &(dyn Fn(&Host, &Progress) + Sync),
) -> Result<Vec<HostReport>, RemoteError> {
    let mut labels: HashMap<String, &Host> = HashMap::new();
    for host in hosts {
        if let Some(other) = labels.insert(host.label(), host) {
            return Err(RemoteError::DuplicateHost(
                other.to_string(),
                host.to_string(),
            ));
        }
    }
    let profile = job.remote_profile()?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|host| scope.spawn(|| run_host(job, &profile, host, &|p| sink(host, p))))
            .collect();
        Ok(handles
            .into_iter()
            .zip(hosts)
            .map(|(h, host)| {
                h.join().unwrap_or_else(|_| HostReport {
                    error: Some(RemoteError::BadHost {
                        host: host.to_string(),
                        reason: "its worker thread panicked".into(),
                    }),
                    ..HostReport::new(host)
                })
            })
            .collect())
    })
}

impl HostReport {
    /// A report with nothing done yet.
    fn new(host: &Host) -> HostReport {
        HostReport {
            host: host.clone(),
            arch: None,
            version: None,
            results: None,
            records: 0,
            finished: None,
            exit_code: None,
            reconnects: 0,
            error: None,
        }
    }
}

/// Everything for one host.
fn run_host(job: &Job, profile: &str, host: &Host, sink: &dyn Fn(&Progress)) -> HostReport {
    let mut report = HostReport::new(host);
    let dir = job.out.join(host.label());
    let note = |text: String| sink(&Progress::Note(text));
    let ssh = Ssh {
        host: host.clone(),
        options: job.ssh_options.clone(),
    };
    let work_dir = job.work_dir.replace("{host}", &host.label());
    let target = match Target::connect(ssh, &work_dir) {
        Ok(t) => t,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.arch = Some(target.arch);
    note(format!(
        "{} host, work dir {}",
        target.arch, target.work_dir
    ));
    if let Err(e) = prepare(job, &target, &mut report, &note)
        .and_then(|()| sweep(job, profile, &target, &dir, &mut report, sink))
    {
        report.error = Some(e);
    }
    match fetch_results(&target, &dir) {
        Ok((path, loaded)) => {
            for warning in &loaded.warnings {
                note(format!("warning: {warning}"));
            }
            note(format!(
                "{} records in {}",
                loaded.records.len(),
                path.display()
            ));
            report.records = loaded.records.len();
            report.results = Some(path);
        }
        Err(e) => {
            if report.error.is_none() {
                report.error = Some(e);
            } else {
                note(format!("results not fetched: {e}"));
            }
        }
    }
    report
}

/// Copies the bundle and checks the shipped binary starts.
fn prepare(
    job: &Job,
    target: &Target,
    report: &mut HostReport,
    note: &dyn Fn(String),
) -> Result<(), RemoteError> {
    let (bundle, ort_note) = job.bundle_for(target.arch)?;
    if let Some(text) = ort_note {
        note(text);
    }
    let total = bundle.files().count();
    let (copied, bytes) = target.ship(&bundle)?;
    note(format!(
        "copied {copied} of {total} files ({:.1} MB; the rest were already there)",
        bytes as f64 / 1e6
    ));
    let version = target.binary_version().map_err(|e| match e {
        RemoteError::Command { code, stderr, .. } if code != Some(SSH_CONNECTION_LOST) => {
            RemoteError::BinaryDoesNotRun {
                host: target.ssh.host.to_string(),
                output: stderr,
            }
        }
        other => other,
    })?;
    note(format!("running {version}"));
    report.version = Some(version);
    Ok(())
}

/// Runs the sweep, reconnecting with `--resume` after each dropped connection (at most
/// `job.retries` times), and logs every event to `dir/events.jsonl`.
fn sweep(
    job: &Job,
    profile: &str,
    target: &Target,
    dir: &Path,
    report: &mut HostReport,
    sink: &dyn Fn(&Progress),
) -> Result<(), RemoteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let log_path = dir.join(EVENTS_FILE);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(job.resume)
        .write(true)
        .truncate(!job.resume)
        .open(&log_path)
        .map_err(io(&log_path))?;
    let mut resume = job.resume;
    let mut delay = job.retry_delay;
    loop {
        let mut log_error = None;
        let attempt = target.sweep(profile, resume, &mut |line| {
            if let Line::Event(event) = &line {
                if let Event::SweepFinished { .. } = **event {
                    report.finished = Some((**event).clone());
                }
                let written = serde_json::to_string(&**event)
                    .map_err(std::io::Error::other)
                    .and_then(|text| writeln!(log, "{text}"));
                if let Err(e) = written {
                    log_error.get_or_insert(e);
                }
            }
            sink(&Progress::Output(line));
        })?;
        if let Some(source) = log_error {
            return Err(RemoteError::Io {
                path: log_path,
                source,
            });
        }
        match attempt {
            Attempt::Ended { code, .. } => {
                report.exit_code = code;
                return Ok(());
            }
            Attempt::Dropped { reason } if report.reconnects < job.retries => {
                report.reconnects += 1;
                sink(&Progress::Note(format!(
                    "connection lost ({reason}); resuming in {:.0} s (reconnection {} of {})",
                    delay.as_secs_f64(),
                    report.reconnects,
                    job.retries
                )));
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                resume = true;
            }
            Attempt::Dropped { reason } => {
                return Err(RemoteError::ConnectionLost {
                    host: target.ssh.host.to_string(),
                    times: report.reconnects + 1,
                    reason,
                })
            }
        }
    }
}

/// Brings the host's `out/results.jsonl` to `dir/results.jsonl` (through a temporary file, so
/// a failed copy leaves an earlier one intact) and reads it back.
fn fetch_results(target: &Target, dir: &Path) -> Result<(PathBuf, store::Loaded), RemoteError> {
    std::fs::create_dir_all(dir).map_err(|source| RemoteError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(RESULTS_FILE);
    let part = dir.join(format!("{RESULTS_FILE}.part"));
    target.fetch(&format!("{OUT_DIR}/{RESULTS_FILE}"), &part)?;
    std::fs::rename(&part, &path).map_err(|source| RemoteError::Io {
        path: path.clone(),
        source,
    })?;
    let loaded = store::read(&path).map_err(|e| RemoteError::Results(Box::new(e)))?;
    Ok((path, loaded))
}

/// Prints every host's progress as `[host] line`: events as the headless `quench sweep` prints
/// them (one [`headless::Printer`] per host), other lines as they came.
#[derive(Debug, Default)]
pub struct Printer {
    /// One headless printer per host label.
    printers: Mutex<HashMap<String, headless::Printer>>,
}

impl Printer {
    /// The lines to print for `progress` of `host` (none for events that say nothing new).
    pub fn lines(&self, host: &Host, progress: &Progress) -> Vec<String> {
        let lines = match progress {
            Progress::Note(text) | Progress::Output(Line::Text(text)) => vec![text.clone()],
            Progress::Output(Line::Event(event)) => match self.printers.lock() {
                Ok(mut printers) => printers.entry(host.label()).or_default().lines(event),
                Err(_) => Vec::new(),
            },
        };
        lines.into_iter().map(|l| format!("[{host}] {l}")).collect()
    }

    /// Prints the lines for `progress` to stdout.
    pub fn show(&self, host: &Host, progress: &Progress) {
        let mut out = std::io::stdout().lock();
        for line in self.lines(host, progress) {
            let _ = writeln!(out, "{line}");
        }
    }
}
