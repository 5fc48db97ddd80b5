//! `quench remote` against a real OpenSSH server: the test starts Debian's `sshd` on 127.0.0.1
//! on a free port with its own host key, user key and authorized_keys in a temporary folder, and
//! stops it at the end. Without sshd the test is skipped with a loud message, except under
//! `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::{quench_command, stdout, succeeds};
use quench::remote::arch::{Arch, Binaries};
use quench::remote::host::{Host, Ssh};
use quench::remote::stream::Line;
use quench::remote::target::Target;
use quench::remote::{Job, Progress};
use quench::sweep::event::Event;
use quench::sweep::record::Status;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd, stopped when dropped.
struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why sshd cannot run here, or `Ok(())`.
fn sshd_available() -> Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err(format!(
            "{SSHD} is missing (apt-get install openssh-server)"
        ));
    }
    // sshd refuses to start without its privilege separation folder.
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("cannot make /run/sshd: {e}"))
}

impl Sshd {
    /// Starts sshd, or returns `None` (after a loud message) when it is not installed and
    /// this is not CI.
    fn start() -> Option<Sshd> {
        if let Err(why) = sshd_available() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("sshd is required under CI: {why}");
            }
            eprintln!("\n!!!!! SKIPPING the remote ssh test: {why} !!!!!\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "user_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen failed");
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nSubsystem sftp /usr/lib/openssh/sftp-server\n\
             LogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let sshd = Sshd { child, dir, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    /// `user@127.0.0.1:port` for the current user.
    fn host(&self) -> Host {
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        Host::parse(&format!("{user}@127.0.0.1:{}", self.port)).unwrap()
    }

    /// The `-o` options the client needs: the test's key and its own known_hosts.
    fn options(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            format!("IdentityFile={}", d.join("user_key").display()),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={}", d.join("known_hosts").display()),
            "StrictHostKeyChecking=accept-new".into(),
        ]
    }

    /// A work dir on the "remote" side, inside the test's temporary folder.
    fn work_dir(&self) -> String {
        self.dir.path().join("remote-work").display().to_string()
    }
}

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// ONNX Runtime's library of this machine, when installed.
fn local_ort() -> Vec<PathBuf> {
    quench::runtime::ort::discover_library(&quench::runtime::ort::SearchRoots::from_process())
        .into_iter()
        .collect()
}

fn job(sshd: &Sshd, profile: &str, manifests: &[&str]) -> Job {
    Job {
        root: project(),
        profile: PathBuf::from(profile),
        manifests: manifests.iter().map(PathBuf::from).collect(),
        work_dir: sshd.work_dir(),
        out: sshd.dir.path().join("out"),
        resume: false,
        ssh_options: sshd.options(),
        binaries: Binaries {
            native: PathBuf::from(env!("CARGO_BIN_EXE_quench")),
            aarch64: None,
            target_dirs: Vec::new(),
        },
        ort_libs: local_ort(),
        retries: 2,
        retry_delay: Duration::from_millis(200),
    }
}

#[test]
fn copies_the_bundle_detects_the_arch_and_runs_the_shipped_binary() {
    let Some(sshd) = Sshd::start() else { return };
    let job = job(
        &sshd,
        "assets/models/mnist-mlp.toml",
        &["assets/models/mnist-mlp.toml"],
    );
    let ssh = Ssh {
        host: sshd.host(),
        options: job.ssh_options.clone(),
    };
    let target = Target::connect(ssh, &job.work_dir).unwrap();
    assert_eq!(Some(target.arch), Arch::local());
    let (bundle, ort_note) = job.bundle_for(target.arch).unwrap();
    assert_eq!(ort_note.is_some(), job.ort_libs.is_empty());
    let total = bundle.files().count();
    let (copied, bytes) = target.ship(&bundle).unwrap();
    assert_eq!(copied, total);
    assert!(bytes > 1_000_000, "{bytes}");
    let work = PathBuf::from(&job.work_dir);
    for f in bundle.files() {
        let there = std::fs::read(work.join(&f.remote)).unwrap();
        assert_eq!(there, std::fs::read(&f.local).unwrap(), "{}", f.remote);
    }
    assert!(work.join("assets/data/mnist-test-images.idx.gz").is_file());
    let version = target.binary_version().unwrap();
    assert_eq!(version, format!("quench {}", env!("CARGO_PKG_VERSION")));
    // Unchanged files are not copied again; a changed one is.
    assert_eq!(target.ship(&bundle).unwrap().0, 0);
    std::fs::write(work.join("assets/models/mnist-mlp.toml"), "changed").unwrap();
    assert_eq!(target.ship(&bundle).unwrap().0, 1);
}

#[test]
fn an_unreachable_host_is_reported_not_hung() {
    let Some(sshd) = Sshd::start() else { return };
    let port = sshd.port;
    drop(sshd);
    let host = Host::parse(&format!("127.0.0.1:{port}")).unwrap();
    let ssh = Ssh {
        host,
        options: vec!["ConnectTimeout=3".into()],
    };
    let err = Target::connect(ssh, "w").unwrap_err().to_string();
    assert!(err.contains("uname -m") && err.contains("255"), "{err}");
}

/// Every sshd process serving a connection (children of the listener).
fn session_pids(listener: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
            comm.ends_with("(sshd") && ppid == Some(listener)
        })
        .collect()
}

#[test]
fn a_sweep_runs_remotely_and_resumes_after_a_killed_connection() {
    let Some(sshd) = Sshd::start() else { return };
    let profile = "tests/fixtures/profiles/tiny.toml";
    let loaded = quench::sweep::profile::load(&project().join(profile)).unwrap();
    let manifests: Vec<PathBuf> = loaded
        .models
        .iter()
        .map(|m| m.manifest_path.clone())
        .collect();
    let mut job = job(&sshd, profile, &[]);
    job.manifests = manifests;
    let host = sshd.host();
    let listener = sshd.child.id();
    let killed = AtomicBool::new(false);
    let events: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    let notes: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let reports = quench::remote::run(&job, std::slice::from_ref(&host), &|_, p| match p {
        Progress::Output(Line::Event(e)) => {
            if matches!(**e, Event::CellFinished { .. }) && !killed.swap(true, Ordering::SeqCst) {
                // Drop the connection the way a network cut does: kill the server's side.
                let pids = session_pids(listener);
                assert!(!pids.is_empty(), "no sshd session process found");
                for pid in pids {
                    Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status()
                        .unwrap();
                }
            }
            events.lock().unwrap().push((**e).clone());
        }
        Progress::Output(Line::Text(t)) | Progress::Note(t) => {
            notes.lock().unwrap().push(t.clone())
        }
    })
    .unwrap();
    let notes = notes.into_inner().unwrap();
    let events = events.into_inner().unwrap();
    let report = &reports[0];
    assert!(report.error.is_none(), "{}\n{notes:#?}", report.summary());
    assert_eq!(report.reconnects, 1, "{notes:#?}");
    assert!(
        notes.iter().any(|n| n.contains("connection lost")),
        "{notes:#?}"
    );
    // The second run resumed the cells the first one finished.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::CellResumed { .. })),
        "{events:#?}"
    );
    let Some(Event::SweepFinished { ok, cancelled, .. }) = &report.finished else {
        panic!("no end of sweep: {notes:#?}")
    };
    assert_eq!(*cancelled, 0);
    // The results came back, parse, and hold an ok record for every ok cell.
    let results = report.results.as_ref().unwrap();
    assert_eq!(results, &job.out.join(host.label()).join("results.jsonl"));
    let loaded_results = quench::sweep::store::read(results).unwrap();
    let ok_keys: std::collections::HashSet<_> = loaded_results
        .records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(|r| format!("{:?}", r.key))
        .collect();
    assert_eq!(ok_keys.len(), *ok);
    let Some(Event::SweepStarted {
        cells,
        profile_hash,
        ..
    }) = events.first()
    else {
        panic!("the first event is not the plan: {events:#?}")
    };
    assert_eq!(profile_hash, &loaded.hash);
    for key in cells {
        assert!(
            loaded_results.records.iter().any(|r| &r.key == key),
            "no record for {key:?}"
        );
    }
    assert!(job.out.join(host.label()).join("events.jsonl").is_file());
}

#[test]
fn quench_remote_runs_two_hosts_at_once_from_the_command_line() {
    let Some(sshd) = Sshd::start() else { return };
    let host = sshd.host();
    let user = host.user.clone().unwrap();
    // One server under two names: two hosts, each with its own work dir and results.
    let hosts = [
        format!("{user}@127.0.0.1:{}", sshd.port),
        format!("{user}@localhost:{}", sshd.port),
    ];
    let out = sshd.dir.path().join("cli-out");
    let mut cmd = quench_command(&["remote", "tests/fixtures/profiles/tiny.toml"]);
    cmd.args(&hosts)
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(format!("{}/cli-{{host}}", sshd.dir.path().display()));
    for option in sshd.options() {
        cmd.arg("-o").arg(option);
    }
    let stdout = stdout(&succeeds(&mut cmd));
    for (text, label) in hosts.iter().zip([
        format!("127.0.0.1_{}", sshd.port),
        format!("localhost_{}", sshd.port),
    ]) {
        let loaded = quench::sweep::store::read(&out.join(label).join("results.jsonl")).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(!loaded.records.is_empty());
        assert!(
            loaded.records.iter().all(|r| r.status == Status::Ok),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("[{text}] sweep finished")),
            "{stdout}"
        );
    }
}
