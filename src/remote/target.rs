//! One connected host: its architecture, its work dir (`~/.quench-remote/<name>`), and the steps
//! of a remote sweep there: copy the bundle (files already there with the same size and time are
//! kept), check the shipped binary runs, run the sweep with its progress streamed back, and
//! fetch a file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use crate::remote::arch::Arch;
use crate::remote::bundle::{Bundle, BIN_DIR};
use crate::remote::host::{quote, Ssh, SSH_CONNECTION_LOST};
use crate::remote::stream::{parse_line, Line};
use crate::remote::RemoteError;
use crate::sweep::event::Event;

/// Folder under the remote home holding one work dir per profile.
pub const REMOTE_ROOT: &str = ".quench-remote";

/// File name of the shipped quench in the work dir's `bin/`.
pub const BINARY: &str = "quench";

/// Folder of the work dir the sweep writes `results.jsonl` into.
pub const OUT_DIR: &str = "out";

/// Folder of the work dir holding trained QAT models, kept when a new sweep starts over.
pub const CACHE_DIR: &str = "cache";

/// A host reached once, with its architecture known.
#[derive(Debug, Clone)]
pub struct Target {
    /// How to reach it.
    pub ssh: Ssh,
    /// Its CPU, from `uname -m`.
    pub arch: Arch,
    /// The work dir, relative to the remote home or absolute (`.quench-remote/<name>`).
    pub work_dir: String,
}

/// How one run of the remote sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The sweep printed its end (`SweepFinished`) or exited by itself with `code`.
    Ended {
        /// Exit status of the remote quench (`None` when ssh itself was killed).
        code: Option<i32>,
        /// Whether the sweep's final event arrived.
        finished: bool,
    },
    /// The connection failed or dropped before the sweep ended.
    Dropped {
        /// The last lines ssh printed on stderr, or what was seen last.
        reason: String,
    },
}

impl Target {
    /// Connects once to learn the host's architecture; `work_dir` is where the files go,
    /// relative to the remote home or absolute.
    pub fn connect(ssh: Ssh, work_dir: &str) -> Result<Target, RemoteError> {
        let uname = ssh.run("reading the architecture (uname -m)", "uname -m")?;
        let arch = Arch::from_uname(&ssh.host.to_string(), &uname)?;
        Ok(Target {
            ssh,
            arch,
            work_dir: work_dir.to_string(),
        })
    }

    /// Copies every file of `bundle` into the work dir, skipping files already there with the
    /// same size and modification time (copies keep times); returns the files and bytes copied.
    pub fn ship(&self, bundle: &Bundle) -> Result<(usize, u64), RemoteError> {
        let present = self.present_files(bundle)?;
        let mut copied = (0usize, 0u64);
        let mut folders: BTreeMap<String, Vec<&Path>> = BTreeMap::new();
        let files: Vec<_> = bundle.files().collect();
        for f in &files {
            let meta = std::fs::metadata(&f.local).map_err(|source| RemoteError::Io {
                path: f.local.clone(),
                source,
            })?;
            let stamp = (meta.len(), mtime_secs(&meta));
            if present.get(&f.remote) == Some(&stamp) {
                continue;
            }
            copied.0 += 1;
            copied.1 += meta.len();
            let folder = f.remote.rsplit_once('/').map_or("", |(d, _)| d);
            folders
                .entry(folder.to_string())
                .or_default()
                .push(&f.local);
        }
        if folders.is_empty() {
            return Ok(copied);
        }
        let dirs: Vec<String> = folders
            .keys()
            .map(|d| quote(&self.path(d)))
            .collect::<Vec<_>>();
        self.ssh.run(
            "making the work dir",
            &format!("mkdir -p {}", dirs.join(" ")),
        )?;
        for (folder, locals) in &folders {
            self.ssh.upload(locals, &self.path(folder))?;
        }
        Ok(copied)
    }

    /// Size and modification time of each bundle file already in the work dir.
    fn present_files(&self, bundle: &Bundle) -> Result<BTreeMap<String, (u64, i64)>, RemoteError> {
        let names: Vec<String> = bundle.files().map(|f| quote(&f.remote)).collect();
        let script = format!(
            "cd {} 2>/dev/null || exit 0; for f in {}; do [ -f \"$f\" ] && stat -c '%s %Y %n' \"$f\"; done; exit 0",
            quote(&self.work_dir),
            names.join(" ")
        );
        let out = self.ssh.run("listing the work dir", &script)?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ' ');
                let size = parts.next()?.parse().ok()?;
                let time = parts.next()?.parse().ok()?;
                Some((parts.next()?.to_string(), (size, time)))
            })
            .collect())
    }

    /// Runs the shipped binary `bin/quench --version` and returns what it printed: proof that
    /// the binary starts on the host (its C library and loader accept it).
    pub fn binary_version(&self) -> Result<String, RemoteError> {
        let script = format!(
            "cd {} && ./{BIN_DIR}/{BINARY} --version 2>&1",
            quote(&self.work_dir)
        );
        self.ssh
            .run("starting the shipped quench", &script)
            .map(|s| s.trim().to_string())
    }

    /// Runs `quench sweep PROFILE --headless --out out --cache cache --progress json [--resume]` in the work
    /// dir, calling `on_line` with every line it prints (stdout and stderr) as it arrives. A
    /// quench left running by an earlier, dropped connection is stopped first (SIGTERM, so it
    /// records its cell as cancelled; SIGKILL after 10 s), and without `resume` the previous
    /// results are removed.
    pub fn sweep(
        &self,
        profile: &str,
        resume: bool,
        on_line: &mut dyn FnMut(Line),
    ) -> Result<Attempt, RemoteError> {
        let stop_stale = "if [ -f run.pid ]; then p=$(cat run.pid); \
             if kill -0 \"$p\" 2>/dev/null && grep -q quench \"/proc/$p/cmdline\" 2>/dev/null; then \
             kill -TERM \"$p\"; i=0; \
             while kill -0 \"$p\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
             kill -KILL \"$p\" 2>/dev/null; fi; fi";
        let fresh = if resume {
            String::new()
        } else {
            format!("rm -rf {OUT_DIR}; ")
        };
        let script = format!(
            "cd {wd} || exit 97; {stop_stale}; {fresh}echo $$ > run.pid; \
             exec ./{BIN_DIR}/{BINARY} sweep {profile} --headless --out {OUT_DIR} --cache {CACHE_DIR} --progress json{resume} 2>&1",
            wd = quote(&self.work_dir),
            profile = quote(profile),
            resume = if resume { " --resume" } else { "" },
        );
        let mut cmd = self.ssh.command(&script);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| RemoteError::Spawn {
            program: "ssh".into(),
            source,
        })?;
        let stderr = child.stderr.take();
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut e) = stderr {
                let _ = std::io::Read::read_to_string(&mut e, &mut text);
            }
            text
        });
        let mut finished = false;
        if let Some(stdout) = child.stdout.take() {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = parse_line(&String::from_utf8_lossy(&buf));
                        if let Line::Event(e) = &line {
                            finished |= matches!(**e, Event::SweepFinished { .. });
                        }
                        on_line(line);
                    }
                }
            }
        }
        let status = child.wait().map_err(|source| RemoteError::Spawn {
            program: "ssh".into(),
            source,
        })?;
        let ssh_said = stderr_reader.join().unwrap_or_default();
        let code = status.code();
        let lost = matches!(code, Some(SSH_CONNECTION_LOST) | None);
        if lost && !finished {
            let reason = ssh_said
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .map_or_else(
                    || format!("ssh ended with status {code:?}"),
                    |l| l.trim().to_string(),
                );
            return Ok(Attempt::Dropped { reason });
        }
        Ok(Attempt::Ended { code, finished })
    }

    /// Copies `rel` (relative to the work dir) to `local`.
    pub fn fetch(&self, rel: &str, local: &Path) -> Result<(), RemoteError> {
        self.ssh.download(&self.path(rel), local)
    }

    /// `rel` inside the work dir, relative to the remote home.
    fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.work_dir.clone()
        } else {
            format!("{}/{rel}", self.work_dir)
        }
    }
}

/// Modification time in whole seconds since the epoch (what `stat -c %Y` prints).
fn mtime_secs(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
}
