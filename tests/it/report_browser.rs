//! The HTML report in a real browser: headless Chromium (Debian's `chromium`, installed by
//! .ci/run) loads it from disk, logs no console message, and sorting the cell table by
//! latency (the `#sort=` address clicks the column header, as a person would) reorders the
//! rows. Outside CI the test skips, loudly, when Chromium is not installed; under `CI=true` its
//! absence fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use quench::report::files::{self, Options};

/// Chromium's path, or `None` (after saying so) when it is absent outside CI.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Chromium is not installed, and CI=true: .ci/run must install Debian's `chromium`"
        );
        eprintln!(
            "\n!!!!!!!!\n!!! SKIPPED: the browser test of the HTML report needs Chromium \
             (apt-get install chromium); it is not installed here\n!!!!!!!!\n"
        );
    }
    found
}

/// Loads `url` in headless Chromium and returns the DOM after the page's scripts ran and the
/// console messages the page logged.
fn load(chromium: &Path, url: &str) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The `data-v` of column `key` in each body row of the cell table, top to bottom.
fn column(dom: &str, key: &str) -> Vec<String> {
    let table = &dom[dom.find("id=\"cells\"").expect("the cell table")..];
    let head = &table[..table.find("</thead>").unwrap()];
    let index = head
        .split("<th ")
        .skip(1)
        .position(|th| th.contains(&format!("data-key=\"{key}\"")))
        .expect("the column");
    let body = &table[table.find("<tbody>").unwrap()..table.find("</tbody>").unwrap()];
    body.split("<tr")
        .skip(1)
        .map(|row| {
            let td = row.split("<td ").nth(index + 1).expect("the cell");
            let v = &td[td.find("data-v=\"").unwrap() + 8..];
            v[..v.find('"').unwrap()].to_string()
        })
        .collect()
}

fn numbers(values: &[String]) -> Vec<f64> {
    values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn the_report_loads_cleanly_and_sorts_by_latency() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let records = files::read_records(&[
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records.jsonl")
    ])
    .unwrap();
    let options = Options {
        out: dir.path().to_path_buf(),
        budget_pp: 1.0,
        sources: vec![],
    };
    let written = files::write(&records, &options).unwrap();
    let url = format!("file://{}", written.html.display());

    let (dom, console) = load(&chromium, &url);
    assert!(console.is_empty(), "console: {console:#?}");
    let unsorted = column(&dom, "p50_ms");
    assert_eq!(unsorted.len(), records.len());
    // The script ran: it wrote the count of shown rows.
    assert!(dom.contains(&format!("{0} of {0} cells shown", records.len())));

    let (dom, console) = load(&chromium, &format!("{url}#sort=p50_ms"));
    assert!(console.is_empty(), "console: {console:#?}");
    let ascending = column(&dom, "p50_ms");
    assert_ne!(ascending, unsorted, "sorting did not reorder the rows");
    let values = numbers(&ascending);
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    // Cells without a latency go last.
    let first_empty = ascending.iter().position(String::is_empty).unwrap();
    assert!(ascending[first_empty..].iter().all(String::is_empty));
    assert!(dom.contains("aria-sort=\"ascending\""));

    let (dom, _) = load(&chromium, &format!("{url}#sort=p50_ms-desc"));
    let values = numbers(&column(&dom, "p50_ms"));
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
}

#[test]
fn console_errors_are_seen() {
    // The check above can fail: a page with an error shows up in the console lines.
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>noSuchFunction();</script></body></html>",
    )
    .unwrap();
    let (_, console) = load(&chromium, &format!("file://{}", page.display()));
    assert!(
        console.iter().any(|l| l.contains("noSuchFunction")),
        "{console:#?}"
    );
}
