//! `quench report` from the fixture records (tests/fixtures/records.jsonl, see the README
//! there): snapshots of the HTML structure, the CSV and the Markdown; PNGs that decode, have
//! the chart size and carry drawing and text; the command line end to end.

use std::path::{Path, PathBuf};

use crate::common::{fails, quench_command, stderr, succeeds};
use quench::report::charts::{HEIGHT, WIDTH};
use quench::report::files::{self, Options, Written};
use quench::report::{summary, tabular};
use quench::sweep::record::Record;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records.jsonl")
}

fn fixture() -> Vec<Record> {
    files::read_records(&[fixture_path()]).unwrap()
}

fn write_report(dir: &Path) -> Written {
    let options = Options {
        out: dir.to_path_buf(),
        budget_pp: 1.0,
        sources: vec!["records.jsonl".into()],
    };
    files::write(&fixture(), &options).unwrap()
}

/// The HTML with each inline SVG, the style sheet and the script cut to a marker: what is
/// left is the page's structure and text.
fn outline(html: &str) -> String {
    let mut out = html.to_string();
    for (open, close) in [
        ("<svg", "</svg>"),
        ("<style>", "</style>"),
        ("<script>", "</script>"),
    ] {
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(start) = rest.find(open) {
            result.push_str(&rest[..start]);
            let end = rest[start..].find(close).expect("closed") + start + close.len();
            result.push_str(&format!("{open}…{close}"));
            rest = &rest[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

#[test]
fn html_structure_matches_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_report(dir.path());
    let html = std::fs::read_to_string(&written.html).unwrap();
    // Self-contained: nothing is fetched.
    for external in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!html.contains(external), "the page refers to {external}");
    }
    // One inline SVG per chart written as PNG.
    assert_eq!(html.matches("<svg").count(), written.charts.len());
    insta::assert_snapshot!("report_html_outline", outline(&html));
}

#[test]
fn csv_matches_the_snapshot() {
    let records = fixture();
    let csv = tabular::csv(&records);
    assert_eq!(csv.lines().count(), records.len() + 1);
    insta::assert_snapshot!("cells_csv", csv);
}

#[test]
fn markdown_matches_the_snapshot() {
    let records = fixture();
    let advice = summary::advise(&records, 1.0);
    insta::assert_snapshot!("report_md", tabular::markdown(&records, &advice, 1.0));
}

#[test]
fn pngs_decode_at_the_chart_size_with_drawing_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_report(dir.path());
    assert!(written.charts.len() >= 15, "{:?}", written.charts);
    for path in &written.charts {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(
            (info.width, info.height),
            (WIDTH, HEIGHT),
            "{}",
            path.display()
        );
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
        let not_white = pixels.iter().filter(|p| p.iter().any(|&c| c < 245)).count();
        let share = not_white as f64 / pixels.len() as f64;
        assert!(
            share > 0.01 && share < 0.6,
            "{}: {share:.3} of pixels drawn",
            path.display()
        );
        let colours: std::collections::BTreeSet<&[u8]> = pixels.iter().copied().collect();
        assert!(
            colours.len() > 20,
            "{}: {} colours",
            path.display(),
            colours.len()
        );
        // The title is text, rendered from the embedded font: dark pixels in the top band.
        let title_dark = pixels[..WIDTH as usize * 40]
            .iter()
            .filter(|p| p.iter().all(|&c| c < 100))
            .count();
        assert!(
            title_dark > 100,
            "{}: no title text ({title_dark} dark pixels)",
            path.display()
        );
    }
}

#[test]
fn the_command_writes_a_report_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    succeeds(
        quench_command(&["report"])
            .arg(fixture_path())
            .arg("--out")
            .arg(&out)
            .args(["--budget", "0.5"]),
    );
    for f in [
        "report.html",
        "report.md",
        "cells.csv",
        "charts/quality-latency-mnist-cnn.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<strong>0.5 percentage points</strong>"));
}

#[test]
fn the_command_names_the_bad_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("results.jsonl");
    std::fs::write(&bad, "{\"schema\": 1}\n").unwrap();
    let missing = dir.path().join("missing.jsonl");
    for (file, expect) in [(&bad, "results.jsonl:1:"), (&missing, "missing.jsonl")] {
        let run = fails(
            quench_command(&["report"])
                .arg(file)
                .arg("--out")
                .arg(dir.path().join("out")),
        );
        let err = stderr(&run);
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_saved_search_beside_the_results_gets_its_section_and_front_chart() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.jsonl");
    std::fs::copy(fixture_path(), &results).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(
        fixtures.join("search.jsonl"),
        dir.path().join("search.jsonl"),
    )
    .unwrap();
    let (searches, warnings) = files::read_searches(std::slice::from_ref(&results)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(searches.len(), 1);
    let out = dir.path().join("report");
    let options = Options {
        out: out.clone(),
        budget_pp: 1.0,
        sources: vec!["results.jsonl".into()],
    };
    let written = files::write_with_searches(&fixture(), &searches, &options).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert!(html.contains("<a href=\"#search\">Search</a>"), "nav link");
    assert!(html.contains("<section id=\"search\">"));
    assert!(html.contains("chosen #11 of 17 tried"), "headline");
    assert!(html.contains("<tr><td>conv2</td><td>binary</td><td>1.65e-2</td></tr>"));
    assert!(html.contains("<tr><td>conv1</td><td>fp32</td><td>-</td></tr>"));
    let md = std::fs::read_to_string(&written.markdown).unwrap();
    assert!(md.contains("## Mixed-precision search"), "{md}");
    assert!(md.contains("![search front of mnist-cnn](charts/search-front-mnist-cnn.png)"));
    assert!(md.contains("| fc1 | int4 | 3.84e-5 |"), "{md}");
    let png = out.join("charts/search-front-mnist-cnn.png");
    assert!(written.charts.contains(&png));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    // The chosen mark is ringed in red.
    let red = buf[..info.buffer_size()]
        .chunks(3)
        .filter(|p| p[0] > 180 && p[1] < 60 && p[2] < 70)
        .count();
    assert!(red > 50, "{red} red pixels");
    // Without a search file the page has no search section (the snapshot test covers it).
    let plain = std::fs::read_to_string(write_report(&dir.path().join("plain")).html).unwrap();
    assert!(!plain.contains("id=\"search\""));
}
