//! `quench sweep` end to end, as a user (or a remote board) runs it: a trimmed quickstart
//! profile headless, its results file, kill -9 then `--resume`, and `quench results merge`.
//! Needs ONNX Runtime in .venv (scripts/setup-ort.sh).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{fails, quench_command, stderr, stdout, succeeds};
use quench::sweep::record::{Record, Status};

const PROFILE: &str = "tests/fixtures/profiles/tiny.toml";

/// `quench sweep PROFILE --out out extra…`.
fn sweep_command(out: &Path, extra: &[&str]) -> Command {
    let mut c = quench_command(&["sweep", PROFILE, "--out"]);
    c.arg(out).args(extra);
    c
}

/// `quench sweep PROFILE --out out extra…`, which must succeed.
fn sweep(out: &Path, extra: &[&str]) -> Output {
    succeeds(&mut sweep_command(out, extra))
}

fn records(out: &Path) -> Vec<Record> {
    let body = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert!(body.ends_with('\n'), "every record ends its line");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ok_keys(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(|r| r.key.to_string())
        .collect()
}

#[test]
fn headless_sweep_writes_one_full_record_per_planned_cell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = sweep(&out, &["--headless"]);
    let text = stdout(&o);
    // The plan: fp32 once per runtime, int8 dynamic/static/qat, binary static/qat; binary
    // dynamic left out with its reason.
    assert!(text.contains("12 cells"), "{text}");
    assert!(
        text.contains("left out: binary dynamic: binary weights run with calibrated INT8"),
        "{text}"
    );
    assert!(
        text.contains("[ 1/12] mnist-mlp fp32 on ort t1 b1"),
        "{text}"
    );
    assert!(text.contains("[12/12] "), "{text}");
    assert!(text.contains("ETA "), "{text}");
    assert!(text.contains("sweep finished in"), "{text}");
    assert!(text.contains("results: "), "{text}");

    let recs = records(&out);
    assert_eq!(recs.len(), 12);
    let hash = recs[0].profile_hash.clone().expect("profile hash");
    for r in &recs {
        assert_eq!(r.schema, quench::sweep::record::SCHEMA_VERSION);
        assert_eq!(r.profile_hash.as_ref(), Some(&hash));
        assert_eq!(r.key.model, "mnist-mlp");
        assert!(!r.machine.arch.is_empty(), "machine described");
        match (&r.status, r.key.runtime.name(), r.key.precision.name()) {
            // The native engine runs FP32; a quantized graph is skipped with the engine's
            // reason until it runs it (then the cell is simply ok).
            (Status::Skipped { reason }, "native", p) if p != "fp32" => {
                assert!(
                    reason.contains("native cannot run this model yet"),
                    "{reason}"
                );
            }
            (Status::Ok, _, p) => {
                let q = r.quality.as_ref().expect("quality");
                assert_eq!(q.samples, 100);
                assert!(q.accuracy.unwrap() > 0.5, "{r:?}");
                let a = q.agreement.as_ref().expect("agreement with FP32");
                assert!(a.top1 > 0.5);
                let lat = r.latency.as_ref().expect("latency");
                assert!(lat.latency_ms.p50 > 0.0);
                assert!(r.memory.is_some() && r.energy.is_some() && r.cold_start.is_some());
                assert!(!r.kernels.is_empty());
                assert!(r.sizes.model_file_bytes > 0);
                assert_eq!(r.layers.is_empty(), p == "fp32", "{:?}", r.key);
            }
            (s, rt, p) => panic!("unexpected {s:?} for {p} on {rt}"),
        }
        if r.key.method.name() == "static" {
            assert_eq!(r.key.calibrator.as_deref(), Some("minmax"));
        }
    }
    // Every quantized variant was built once, into the output folder; QAT was cached.
    let variants = std::fs::read_dir(out.join("variants")).unwrap().count();
    assert_eq!(variants, 5);
    assert_eq!(std::fs::read_dir(out.join("cache")).unwrap().count(), 2);
    // The final table shows the measured cells and groups the skipped ones by reason.
    assert!(text.contains("mnist-mlp  binary static minmax"), "{text}");
    let skipped = recs
        .iter()
        .filter(|r| matches!(r.status, Status::Skipped { .. }))
        .count();
    assert_eq!(
        text.contains("SKIPPED mnist-mlp on native"),
        skipped > 0,
        "{text}"
    );

    // A second sweep into the same folder must say how to continue rather than mix results.
    let again = fails(&mut sweep_command(&out, &["--headless"]));
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));

    // `--resume` of a finished sweep runs nothing again: every ok cell is resumed, the skipped
    // ones run again (they are cheap and may work now).
    let resumed = sweep(&out, &["--resume", "--progress", "json"]);
    let events = stdout(&resumed);
    let resumed_cells = events
        .lines()
        .filter(|l| l.contains(r#""event":"cell-resumed""#))
        .count();
    assert_eq!(resumed_cells, ok_keys(&recs).len());
    for line in events.lines() {
        serde_json::from_str::<quench::sweep::event::Event>(line)
            .unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    // A second sweep sharing the QAT cache does not train again.
    let other = dir.path().join("other");
    let o = sweep(&other, &["--cache", out.join("cache").to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(text.matches("training 100% reused").count(), 2, "{text}");
    assert_eq!(ok_keys(&records(&other)), ok_keys(&recs));

    // A profile may name a QAT-exported model for a model's QAT variant: it is run as it is,
    // nothing is trained. (The export here is the one this sweep wrote.)
    let export = out.join("variants/mnist-mlp.int8-qat.onnx");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mnist-mlp.toml");
    let profile = dir.path().join("import.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"import\"\n[matrix]\nmodels = [{manifest:?}]\nprecisions = [\"int8\"]\n\
             methods = [\"qat\"]\nruntimes = [\"ort\"]\n[data]\ntest_limit = 100\n\
             [timing]\nseconds = 0.02\nwarmup_seconds = 0.02\nmin_runs = 3\n\
             [qat.import]\nmnist-mlp = {{ file = {export:?}, precision = \"int8\" }}\n"
        ),
    )
    .unwrap();
    let imported = dir.path().join("imported");
    succeeds(
        quench_command(&["sweep"])
            .arg(&profile)
            .arg("--out")
            .arg(&imported),
    );
    let recs_import = records(&imported);
    assert_eq!(recs_import.len(), 1);
    assert_eq!(recs_import[0].status, Status::Ok);
    assert_eq!(recs_import[0].model_file, export.display().to_string());
    assert!(!imported.join("cache").exists(), "nothing was trained");

    // Merge: two files into one, every record kept.
    let merged = dir.path().join("all.jsonl");
    succeeds(
        quench_command(&["results", "merge"])
            .arg(out.join("results.jsonl"))
            .arg(out.join("results.jsonl"))
            .arg("-o")
            .arg(&merged),
    );
    let n = std::fs::read_to_string(&merged).unwrap().lines().count();
    assert_eq!(n, 2 * records(&out).len());
}

#[test]
fn kill_then_resume_gives_the_same_ok_cells_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    sweep(&whole, &[]);

    let cut = dir.path().join("cut");
    let mut child = quench_command(&["sweep", PROFILE, "--progress", "json", "--out"])
        .arg(&cut)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut finished = 0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while finished < 4 {
        let line = lines.next().expect("the sweep goes on").unwrap();
        if line.contains(r#""event":"cell-finished""#) {
            finished += 1;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = records(&cut).len();
    assert!(
        (4..12).contains(&before),
        "{before} records before the kill"
    );
    // The write a kill interrupts leaves a torn last line: it is dropped with a warning.
    let path = cut.join("results.jsonl");
    let mut body = std::fs::read(&path).unwrap();
    body.extend_from_slice(br#"{"schema":1,"model":"mnist-ml"#);
    std::fs::write(&path, body).unwrap();

    let stdout = stdout(&sweep(&cut, &["--resume"]));
    assert!(stdout.contains("warning: "), "{stdout}");
    assert!(stdout.contains("torn last line"), "{stdout}");
    assert!(stdout.contains("ok earlier (resumed)"), "{stdout}");
    assert_eq!(ok_keys(&records(&cut)), ok_keys(&records(&whole)));
}

#[test]
fn sigterm_stops_after_the_running_cell_with_its_record_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = quench_command(&["sweep", PROFILE, "--progress", "json", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the sweep goes on").unwrap();
        if line.contains(r#""event":"cell-started""#) && line.contains(r#""index":2"#) {
            break;
        }
    }
    // SAFETY: kill(2) on the child we spawned; no memory is involved.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let last = rest.last().expect("a last event");
    assert!(last.contains(r#""event":"sweep-finished""#), "{last}");
    assert!(!last.contains(r#""cancelled":0"#), "{last}");
    let recs = records(&out);
    assert_eq!(
        recs.len(),
        3,
        "the running cell's record is written, no later cell runs"
    );
}
