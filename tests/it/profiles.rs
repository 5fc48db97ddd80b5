//! Sweep profiles: every profile in profiles/ parses and plans, and each kind of bad profile
//! gives an error naming the file, line, column, key, value and what is allowed.

use std::path::{Path, PathBuf};

use quench::explore::objective::Objective;
use quench::explore::Level;
use quench::sweep::plan::plan;
use quench::sweep::profile::{self, ProfileError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_bundled_profile_parses_and_plans() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("profiles")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let p = profile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.models.len(), 3, "{}", path.display());
        let plan = plan(&p, 64).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.cells.is_empty());
        // Each variant's cells are contiguous: built once, then every runtime and thread count.
        let mut seen_variants = Vec::new();
        for c in &plan.cells {
            if seen_variants.last() != Some(&c.variant) {
                assert!(!seen_variants.contains(&c.variant), "variant split up");
                seen_variants.push(c.variant);
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 3, "quickstart, edge-arm and full");
}

#[test]
fn quickstart_plan_leaves_out_what_makes_no_sense_and_says_why() {
    let p = profile::load(&root().join("profiles/quickstart.toml")).unwrap();
    let plan = plan(&p, 2).unwrap();
    // Per model: fp32, int8 dynamic/static/qat, int4 weight-only/qat, binary static/qat = 8
    // variants, each on native and ORT.
    assert_eq!(plan.variants.len(), 3 * 8);
    assert_eq!(plan.cells.len(), 3 * 8 * 2);
    let what: Vec<&str> = plan.dropped.iter().map(|d| d.what.as_str()).collect();
    for combo in [
        "int8 weight-only",
        "int4 dynamic",
        "int4 static",
        "binary dynamic",
        "binary weight-only",
    ] {
        assert!(what.contains(&combo), "{combo} not in {what:?}");
    }
    assert!(plan.dropped.iter().all(|d| !d.reason.is_empty()));
    // ORT first within a variant (the reference the native answers are read against).
    assert_eq!(plan.cells[0].key.runtime.name(), "ort");
    // A 2-core machine drops edge-arm's 3 and 4 threads, with the reason.
    let edge = profile::load(&root().join("profiles/edge-arm.toml")).unwrap();
    let plan = quench::sweep::plan::plan(&edge, 2).unwrap();
    let d = plan.dropped.iter().find(|d| d.what == "threads 4").unwrap();
    assert!(d.reason.contains("2 core"), "{}", d.reason);
    assert!(plan.cells.iter().all(|c| c.key.threads <= 2));
}

/// Parses `body` as if it were the file `tests/fixtures/profiles/bad.toml` (so relative model
/// paths resolve as for the fixture profiles) and returns the error's text.
fn error_of(body: &str) -> (ProfileError, String) {
    let path = root().join("tests/fixtures/profiles/bad.toml");
    let e = profile::parse(&path, body).expect_err("a bad profile is refused");
    let text = e.to_string();
    assert!(text.contains("bad.toml:"), "names the file: {text}");
    (e, text)
}

const GOOD: &str = r#"name = "t"

[matrix]
models = ["../../../assets/models/mnist-mlp.toml"]
precisions = ["fp32", "int8"]
methods = ["static"]
runtimes = ["ort"]
threads = [1]
"#;

#[test]
fn the_base_of_the_bad_cases_is_good() {
    let path = root().join("tests/fixtures/profiles/bad.toml");
    let p = profile::parse(&path, GOOD).unwrap();
    assert_eq!(p.models[0].name(), "mnist-mlp");
    assert_eq!(p.calibrators.len(), 1);
}

#[test]
fn an_unknown_key_is_named_with_what_is_allowed() {
    let (e, text) = error_of(&GOOD.replace("threads = [1]", "thread = [1]"));
    assert!(
        matches!(
            e,
            ProfileError::Parse {
                line: 8,
                column: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(text.contains("bad.toml:8:1: matrix.thread"), "{text}");
    assert!(text.contains("unknown field `thread`"), "{text}");
    assert!(text.contains("`threads`"), "lists the allowed keys: {text}");
}

#[test]
fn a_value_of_the_wrong_type_is_named_with_the_expected_type() {
    let (e, text) = error_of(&GOOD.replace("threads = [1]", "threads = [\"two\"]"));
    assert!(matches!(e, ProfileError::Parse { line: 8, .. }), "{e:?}");
    assert!(text.contains("matrix.threads"), "{text}");
    assert!(text.contains("\"two\""), "shows the value: {text}");
    assert!(text.contains("expected"), "{text}");

    let (_, text) = error_of(&GOOD.replace("\"int8\"]", "\"int3\"]"));
    assert!(text.contains("bad.toml:5:"), "{text}");
    assert!(text.contains("matrix.precisions"), "{text}");
    assert!(text.contains("unknown variant `int3`"), "{text}");
    assert!(text.contains("`int4`"), "lists the allowed values: {text}");
}

#[test]
fn an_unknown_model_path_is_named() {
    let (e, text) = error_of(&GOOD.replace("mnist-mlp.toml", "no-such-model.toml"));
    assert!(
        matches!(
            e,
            ProfileError::Invalid {
                line: 4,
                column: 11,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(text.contains("matrix.models"), "{text}");
    assert!(text.contains("no-such-model.toml"), "{text}");
    assert!(text.contains("no model manifest at"), "{text}");
}

#[test]
fn an_empty_matrix_list_is_refused() {
    let (e, text) = error_of(&GOOD.replace("precisions = [\"fp32\", \"int8\"]", "precisions = []"));
    assert!(matches!(e, ProfileError::Invalid { line: 5, .. }), "{e:?}");
    assert!(text.contains("matrix.precisions = []"), "{text}");
    assert!(text.contains("at least one value"), "{text}");
}

#[test]
fn a_matrix_with_nothing_left_after_the_plan_says_why() {
    let path = root().join("tests/fixtures/profiles/bad.toml");
    let body = GOOD
        .replace("[\"fp32\", \"int8\"]", "[\"int4\"]")
        .replace("[\"static\"]", "[\"dynamic\"]");
    let p = profile::parse(&path, &body).unwrap();
    let e = plan(&p, 2).unwrap_err().to_string();
    assert!(
        e.contains("every combination of the matrix was left out"),
        "{e}"
    );
    assert!(e.contains("int4 dynamic: 4-bit is weight-only"), "{e}");
}

#[test]
fn out_of_range_values_are_refused() {
    let (_, text) = error_of(&GOOD.replace("threads = [1]", "threads = [1, 0]"));
    assert!(
        text.contains("bad.toml:8:15: matrix.threads = 0: must be at least 1"),
        "{text}"
    );
    let (_, text) = error_of(&format!("{GOOD}groups = [48]\n"));
    assert!(
        text.contains("matrix.groups = 48: allowed values are [32, 64, 128]"),
        "{text}"
    );
    let (_, text) = error_of(&format!("{GOOD}\n[power]\nboard = \"pi\"\n"));
    assert!(
        text.contains("power.board = \"pi\": unknown board; allowed: raspberry-pi-4"),
        "{text}"
    );
    let (_, text) = error_of(&format!("{GOOD}\n[timing]\nseconds = -1.0\n"));
    assert!(text.contains("timing.seconds = -1"), "{text}");
    let (_, text) = error_of(&GOOD.replace("methods = [\"static\"]", "methods = [\"none\"]"));
    assert!(text.contains("`none` is what fp32 means"), "{text}");
}

#[test]
fn a_qat_import_must_name_a_listed_model_and_an_existing_file() {
    let (_, text) = error_of(&format!(
        "{GOOD}\n[qat.import]\nmnist-cnn = {{ file = \"x.onnx\", precision = \"int8\" }}\n"
    ));
    assert!(text.contains("qat.import.mnist-cnn"), "{text}");
    assert!(
        text.contains("not a model of the matrix; allowed: mnist-mlp"),
        "{text}"
    );
    let (_, text) = error_of(&format!(
        "{GOOD}\n[qat.import]\nmnist-mlp = {{ file = \"x.onnx\", precision = \"int8\" }}\n"
    ));
    assert!(text.contains("no QAT-exported model at"), "{text}");
}

#[test]
fn a_missing_file_is_named() {
    let e = profile::load(Path::new("profiles/nope.toml")).unwrap_err();
    assert!(e.to_string().contains("profiles/nope.toml"), "{e}");
}

const SEARCH: &str = r#"
[search]
budget = "0.5%"
objective = "latency"
time_budget = "2m"
precisions = ["int8", "int4"]
models = ["mnist-mlp"]
samples = 300
"#;

#[test]
fn a_search_table_is_read_with_its_defaults() {
    let path = root().join("tests/fixtures/profiles/bad.toml");
    let p = profile::parse(&path, &format!("{GOOD}{SEARCH}")).unwrap();
    let s = p.search.unwrap();
    assert_eq!(s.models, ["mnist-mlp"]);
    assert_eq!(s.spec.budget, 0.005);
    assert_eq!(s.spec.objective, Objective::Latency);
    assert_eq!(
        s.spec.time_budget,
        Some(std::time::Duration::from_secs(120))
    );
    assert_eq!(s.spec.levels, [Level::Int8, Level::Int4]);
    assert_eq!(s.spec.setup.samples, Some(300));
    assert_eq!(s.spec.rounds, 5, "default");
    assert!(profile::parse(&path, GOOD).unwrap().search.is_none());
}

#[test]
fn bad_search_values_are_named_with_their_position() {
    let with = |from: &str, to: &str| error_of(&format!("{GOOD}{}", SEARCH.replace(from, to))).1;
    let text = with("\"0.5%\"", "\"half\"");
    assert!(
        text.contains("bad.toml:11:10: search.budget = \"half\""),
        "{text}"
    );
    assert!(text.contains("percentage points"), "{text}");
    let text = with("\"2m\"", "\"2 weeks\"");
    assert!(text.contains("search.time_budget"), "{text}");
    let text = with("[\"mnist-mlp\"]", "[\"resnet\"]");
    assert!(text.contains("search.models"), "{text}");
    assert!(text.contains("allowed: mnist-mlp"), "{text}");
    let text = with("\"int4\"]", "\"int2\"]");
    assert!(text.contains("search.precisions"), "{text}");
    assert!(text.contains("unknown variant `int2`"), "{text}");
    let text = with("samples = 300", "sample = 300");
    assert!(text.contains("search.sample"), "{text}");
    assert!(text.contains("unknown field"), "{text}");
    let text = with("samples = 300", "samples = 0");
    assert!(
        text.contains("search.samples = 0: must be at least 1"),
        "{text}"
    );
}
