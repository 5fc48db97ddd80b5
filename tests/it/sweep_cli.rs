//! `quench sweep` end to end, as a user (or a remote board) runs it: a trimmed quickstart
//! profile headless, its results file, kill -9 then `--resume`, and `quench results merge`.
//! Needs ONNX Runtime in .venv (scripts/setup-ort.sh).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use quench::sweep::record::{Record, Status};

const PROFILE: &str = "tests/fixtures/profiles/tiny.toml";

fn quench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quench"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn sweep(out: &Path, extra: &[&str]) -> Output {
    quench()
        .args(["sweep", PROFILE, "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("the quench binary starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    // The plan: fp32 once per runtime, int8 dynamic/static/qat, binary static/qat; binary
    // dynamic left out with its reason.
    assert!(stdout.contains("12 cells"), "{stdout}");
    assert!(
        stdout.contains("left out: binary dynamic: binary weights run with calibrated INT8"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[ 1/12] mnist-mlp fp32 on ort t1 b1"),
        "{stdout}"
    );
    assert!(stdout.contains("[12/12] "), "{stdout}");
    assert!(stdout.contains("ETA "), "{stdout}");
    assert!(stdout.contains("sweep finished in"), "{stdout}");
    assert!(stdout.contains("results: "), "{stdout}");

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
    assert!(
        stdout.contains("mnist-mlp  binary static minmax"),
        "{stdout}"
    );
    let skipped = recs
        .iter()
        .filter(|r| matches!(r.status, Status::Skipped { .. }))
        .count();
    assert_eq!(
        stdout.contains("SKIPPED mnist-mlp on native"),
        skipped > 0,
        "{stdout}"
    );

    // A second sweep into the same folder must say how to continue rather than mix results.
    let again = sweep(&out, &["--headless"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("--resume"),
        "{}",
        text(&again.stderr)
    );

    // `--resume` of a finished sweep runs nothing again: every ok cell is resumed, the skipped
    // ones run again (they are cheap and may work now).
    let resumed = sweep(&out, &["--resume", "--progress", "json"]);
    let events = text(&resumed.stdout);
    assert!(resumed.status.success(), "{events}");
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
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches("training 100% reused").count(),
        2,
        "{stdout}"
    );
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
    let o = quench()
        .args(["sweep"])
        .arg(&profile)
        .arg("--out")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let recs_import = records(&imported);
    assert_eq!(recs_import.len(), 1);
    assert_eq!(recs_import[0].status, Status::Ok);
    assert_eq!(recs_import[0].model_file, export.display().to_string());
    assert!(!imported.join("cache").exists(), "nothing was trained");

    // Merge: two files into one, every record kept.
    let merged = dir.path().join("all.jsonl");
    let m = quench()
        .args(["results", "merge"])
        .arg(out.join("results.jsonl"))
        .arg(out.join("results.jsonl"))
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", text(&m.stderr));
    let n = std::fs::read_to_string(&merged).unwrap().lines().count();
    assert_eq!(n, 2 * records(&out).len());
}

#[test]
fn kill_then_resume_gives_the_same_ok_cells_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let o = sweep(&whole, &[]);
    assert!(o.status.success(), "{}", text(&o.stdout));

    let cut = dir.path().join("cut");
    let mut child = quench()
        .args(["sweep", PROFILE, "--progress", "json", "--out"])
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

    let o = sweep(&cut, &["--resume"]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(stdout.contains("warning: "), "{stdout}");
    assert!(stdout.contains("torn last line"), "{stdout}");
    assert!(stdout.contains("ok earlier (resumed)"), "{stdout}");
    assert_eq!(ok_keys(&records(&cut)), ok_keys(&records(&whole)));
}

#[test]
fn sigterm_stops_after_the_running_cell_with_its_record_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = quench()
        .args(["sweep", PROFILE, "--progress", "json", "--out"])
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
