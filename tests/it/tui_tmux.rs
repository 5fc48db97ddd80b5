//! The real binary's TUI driven in tmux (its own server socket): it opens on a results file,
//! the matrix fills, selection and the help overlay answer keys, `q` exits, and the terminal is
//! back to normal (main screen, cursor shown, canonical mode with echo). Needs tmux (.ci/run
//! installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A tmux server of its own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str, w: u16, h: u16) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let t = Tmux {
            socket: format!(
                "quench-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let dir = env!("CARGO_MANIFEST_DIR");
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            "-c",
            dir,
            cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is not installed (apt-get install tmux; .ci/run does)")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn pane(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "t", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits up to 20 s for the screen to contain `what`; returns the screen.
    fn wait_for(&self, what: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no `{what}` on screen after 20 s:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn quench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quench"))
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn tui_opens_past_results_moves_helps_and_quits_cleanly() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tui-results.jsonl");
    let cmd = format!(
        "{} tui {}; echo QUENCH-EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e '-*icanon' -e '-*echo' | tr '\\n' ' '; echo; sleep 30",
        quoted(&quench()),
        quoted(&results)
    );
    let t = Tmux::start(&cmd, 100, 30);
    let s = t.wait_for("textdir-cls fp32");
    assert!(s.contains("mnist-cnn int8 static minmax"), "{s}");
    assert!(s.contains("99.7%"), "{s}");
    assert!(s.contains("18/18 cells"), "{s}");
    assert_eq!(t.pane("#{alternate_on}"), "1", "full screen while running");

    t.keys(&["j", "l", "Enter"]);
    let s = t.wait_for("mnist-cnn int8 static minmax on ort t1");
    assert!(s.contains("latency percentiles"), "{s}");

    t.keys(&["?"]);
    let s = t.wait_for("keys (Esc or ? closes)");
    assert!(s.contains("pause after the current cell"), "{s}");
    t.keys(&["Escape"]);
    let start = Instant::now();
    while t.screen().contains("keys (Esc or ? closes)") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "help did not close"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    t.keys(&["q"]);
    let s = t.wait_for("QUENCH-EXIT=");
    assert!(s.contains("QUENCH-EXIT=0"), "{s}");
    let modes = t.wait_for("icanon");
    assert!(
        modes.contains(" icanon") || modes.starts_with("icanon") || modes.contains("\nicanon"),
        "canonical mode restored: {modes}"
    );
    assert!(
        !modes.contains("-icanon") && !modes.contains("-echo"),
        "{modes}"
    );
    assert!(!s.contains("1 Matrix"), "the TUI's screen is gone: {s}");
    assert_eq!(t.pane("#{alternate_on}"), "0", "back on the main screen");
    assert_eq!(t.pane("#{cursor_flag}"), "1", "cursor shown");
}

#[test]
fn tui_refuses_a_broken_results_file_without_touching_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("results.jsonl");
    std::fs::write(&bad, "{\"schema\":1}\n").unwrap();
    let cmd = format!(
        "{} tui {}; echo QUENCH-EXIT=$?; sleep 30",
        quoted(&quench()),
        quoted(&bad)
    );
    let t = Tmux::start(&cmd, 100, 10);
    let s = t.wait_for("QUENCH-EXIT=");
    assert!(s.contains("QUENCH-EXIT=2"), "{s}");
    assert!(s.contains("no records to show"), "{s}");
    assert!(
        s.contains("results.jsonl:1: skipped a line that is not a record"),
        "{s}"
    );
}

#[test]
fn tui_runs_a_small_sweep_into_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/profiles/tui.toml");
    let cmd = format!(
        "{} tui {} --out {}; echo QUENCH-EXIT=$?; sleep 60",
        quoted(&quench()),
        quoted(&profile),
        quoted(&out)
    );
    let t = Tmux::start(&cmd, 100, 30);
    let s = t.wait_for("not started: press s");
    assert!(
        s.contains("0/4 cells"),
        "the plan is shown before it runs: {s}"
    );
    assert!(s.contains("mnist-mlp int8 dynamic"), "{s}");
    t.keys(&["s"]);
    let s = t.wait_for("finished in");
    assert!(s.contains("4/4 cells"), "{s}");
    assert!(s.contains("4 ok"), "{s}");
    assert!(!s.contains('·'), "no planned cell left: {s}");

    t.keys(&["j", "Enter"]);
    let s = t.wait_for("mnist-mlp int8 dynamic on native t1");
    assert!(s.contains("CI95 p50"), "{s}");
    t.keys(&["?"]);
    t.wait_for("keys (Esc or ? closes)");
    t.keys(&["q"]);
    let s = t.wait_for("QUENCH-EXIT=");
    assert!(s.contains("QUENCH-EXIT=0"), "{s}");
    assert!(s.contains("results: "), "{s}");
    assert_eq!(t.pane("#{alternate_on}"), "0");
    let body = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(body.lines().count(), 4);
}
