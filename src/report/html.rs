//! The HTML report: one self-contained file (inline CSS, SVG and script; nothing fetched) with
//! the advice per model, the charts, a sortable and filterable table of every cell, the cells
//! that failed or were skipped with their reasons, the machines, and how to reproduce the sweep.

use std::collections::BTreeMap;

use crate::report::charts::Chart;
use crate::report::columns::{self, Column};
use crate::report::summary::{Advice, Markup};
use crate::report::view::{self, Labeler};
use crate::sweep::record::Record;

/// HTML markup: text escaped, emphasis as `<strong>`.
pub struct Html;

impl Markup for Html {
    fn text(&self, s: &str) -> String {
        escape(s)
    }

    fn strong(&self, s: &str) -> String {
        format!("<strong>{}</strong>", escape(s))
    }
}

/// `s` with the five HTML metacharacters escaped (safe in text and in quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A chart as the HTML shows it: the chart, its SVG, and the PNG file beside the report.
pub struct Figure<'a> {
    /// The chart.
    pub chart: &'a Chart,
    /// Its SVG document.
    pub svg: String,
    /// The PNG's path relative to the HTML file, when one was written.
    pub png: Option<String>,
}

/// What the page says about where the records came from.
pub struct Sources<'a> {
    /// The results files read, as given.
    pub files: &'a [String],
    /// The accuracy budget of the advice, percentage points.
    pub budget_pp: f64,
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;padding:1rem 1.5rem 3rem;color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
nav a{margin-right:1rem}.muted{color:#666}
figure{margin:1rem 0 2rem}figure svg{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.9rem;max-width:960px}
.controls{display:flex;flex-wrap:wrap;gap:.6rem;align-items:center;margin:.6rem 0}
.controls input,.controls select{font:inherit;padding:.2rem .4rem}
.scroll{overflow-x:auto;border:1px solid #ddd}
table{border-collapse:collapse;font-size:.88rem;white-space:nowrap}
th,td{padding:.3rem .55rem;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{position:sticky;top:0;background:#f6f6f8;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \25B2"}th[aria-sort=descending]::after{content:" \25BC"}
tr.failed td{background:#fff0f0}tr.skipped td,tr.cancelled td{background:#fffbe8}
.advice li{margin:.45rem 0}
pre{background:#f6f6f8;padding:.7rem;overflow-x:auto}
dl.machine{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem}dl.machine dt{color:#555}dl.machine dd{margin:0}
"#;

/// Sorting (click a header; again to reverse) and filtering (text, and a menu per column of
/// few values). `#sort=KEY` or `#sort=KEY-desc` in the address sorts on load, by clicking the
/// header as a person would.
const SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('cells');
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function key(row, i, numeric) {
    var v = row.cells[i].getAttribute('data-v');
    if (!numeric) return v;
    return v === '' ? NaN : parseFloat(v);
  }
  function sortBy(i, dir) {
    var numeric = heads[i].getAttribute('data-type') === 'num';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, i, numeric), y = key(b, i, numeric);
      if (numeric) {
        if (isNaN(x) && isNaN(y)) return 0;
        if (isNaN(x)) return 1;
        if (isNaN(y)) return -1;
        return dir * (x - y);
      }
      return dir * x.localeCompare(y);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
    heads[i].setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
  }
  heads.forEach(function (h, i) {
    h.addEventListener('click', function () {
      sortBy(i, h.getAttribute('aria-sort') === 'ascending' ? -1 : 1);
    });
  });
  var text = document.getElementById('filter-text');
  var menus = Array.prototype.slice.call(document.querySelectorAll('select[data-col]'));
  var shown = document.getElementById('shown');
  function filter() {
    var needle = text.value.toLowerCase();
    var count = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = r.textContent.toLowerCase().indexOf(needle) >= 0;
      menus.forEach(function (m) {
        var col = parseInt(m.getAttribute('data-col'), 10);
        if (m.value !== '' && r.cells[col].getAttribute('data-v') !== m.value) ok = false;
      });
      r.hidden = !ok;
      if (ok) count++;
    });
    shown.textContent = count + ' of ' + body.rows.length + ' cells shown';
  }
  text.addEventListener('input', filter);
  menus.forEach(function (m) { m.addEventListener('change', filter); });
  filter();
  var m = /^#sort=([a-z0-9_]+?)(-desc)?$/.exec(window.location.hash);
  if (m) {
    heads.forEach(function (h) {
      if (h.getAttribute('data-key') === m[1]) {
        h.click();
        if (m[2]) h.click();
      }
    });
  }
})();
"#;

/// The whole page.
pub fn page(
    records: &[Record],
    advice: &[Advice],
    figures: &[Figure<'_>],
    searches: &[crate::report::search::SearchFigure<'_>],
    sources: &Sources<'_>,
) -> String {
    let models = view::distinct(records, |r| r.key.model.clone());
    let devices = view::distinct(records, view::device);
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>quench report</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>quench report</h1>\n");
    out.push_str(&format!(
        "<p class=\"muted\">{} cell(s) of {} model(s) on {} device(s), from {}.</p>\n",
        records.len(),
        models.len(),
        devices.len(),
        if sources.files.is_empty() {
            "records given directly".to_string()
        } else {
            sources
                .files
                .iter()
                .map(|f| format!("<code>{}</code>", escape(f)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let search_link = if searches.is_empty() {
        ""
    } else {
        "<a href=\"#search\">Search</a>"
    };
    out.push_str(&format!("<nav><a href=\"#advice\">Which variant?</a><a href=\"#charts\">Charts</a>{search_link}<a href=\"#cells-section\">All cells</a><a href=\"#problems\">Failed and skipped</a><a href=\"#machines\">Machines</a><a href=\"#reproduce\">Reproduce</a></nav>\n"));
    advice_section(&mut out, advice, sources.budget_pp);
    charts_section(&mut out, figures, &models);
    out.push_str(&crate::report::search::html(searches));
    table_section(&mut out, records);
    problems_section(&mut out, records);
    machines_section(&mut out, records);
    reproduce_section(&mut out, records);
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

fn advice_section(out: &mut String, advice: &[Advice], budget_pp: f64) {
    out.push_str("<section id=\"advice\">\n<h2>Which variant should I ship?</h2>\n");
    out.push_str(&format!(
        "<p>For each model and device: the finished cell with the lowest median latency whose accuracy (or, for data without labels, top-1 agreement with FP32) is at most <strong>{budget_pp} percentage points</strong> below FP32's. Change the budget with <code>quench report --budget PP</code>.</p>\n<ul class=\"advice\">\n"
    ));
    if advice.is_empty() {
        out.push_str("<li>No records to advise on.</li>\n");
    }
    for a in advice {
        out.push_str(&format!("<li>{}</li>\n", a.sentence(&Html)));
    }
    out.push_str("</ul>\n</section>\n");
}

fn charts_section(out: &mut String, figures: &[Figure<'_>], models: &[String]) {
    out.push_str("<section id=\"charts\">\n<h2>Charts</h2>\n");
    if figures.is_empty() {
        out.push_str("<p>No finished cell has the figures a chart needs.</p>\n");
    }
    for model in models {
        let of_model: Vec<&Figure<'_>> =
            figures.iter().filter(|f| &f.chart.model == model).collect();
        if of_model.is_empty() {
            continue;
        }
        out.push_str(&format!("<h3>{}</h3>\n", escape(model)));
        for f in of_model {
            out.push_str(&format!("<figure id=\"{}\">\n", escape(&f.chart.file_stem)));
            out.push_str(strip_xml_declaration(&f.svg));
            out.push_str(&format!("\n<figcaption>{}", escape(&f.chart.caption)));
            if let Some(png) = &f.png {
                out.push_str(&format!(" <a href=\"{}\">PNG</a>", escape(png)));
            }
            out.push_str("</figcaption>\n</figure>\n");
        }
    }
    out.push_str("</section>\n");
}

/// An SVG document without its `<?xml …?>` line, for inlining.
pub(crate) fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, body)| body.trim_start()),
        None => svg,
    }
}

/// Columns that get a filter menu: text columns with few distinct values.
fn menu_values(records: &[Record], c: &Column) -> Option<Vec<String>> {
    let values = view::distinct(records, |r| (c.read)(r).raw());
    let is_text = records.iter().all(|r| !(c.read)(r).is_number());
    (is_text
        && ["model", "device", "variant", "runtime", "status"].contains(&c.key)
        && values.len() > 1)
        .then_some(values)
}

fn table_section(out: &mut String, records: &[Record]) {
    let brief: Vec<&Column> = columns::brief().collect();
    out.push_str("<section id=\"cells-section\">\n<h2>All cells</h2>\n<div class=\"controls\">\n");
    out.push_str("<label>Filter <input id=\"filter-text\" type=\"search\" placeholder=\"any text\"></label>\n");
    for (i, c) in brief.iter().enumerate() {
        if let Some(values) = menu_values(records, c) {
            out.push_str(&format!(
                "<label>{} <select data-col=\"{i}\"><option value=\"\">all</option>",
                escape(c.title)
            ));
            for v in values {
                out.push_str(&format!("<option>{}</option>", escape(&v)));
            }
            out.push_str("</select></label>\n");
        }
    }
    out.push_str("<span id=\"shown\" class=\"muted\"></span>\n</div>\n");
    out.push_str("<p class=\"muted\">Click a column title to sort (again to reverse). The CSV beside this file has every column.</p>\n");
    out.push_str("<div class=\"scroll\">\n<table id=\"cells\">\n<thead><tr>");
    for (c, numeric) in brief.iter().zip(columns::numeric(&brief, records)) {
        out.push_str(&format!(
            "<th data-key=\"{}\" data-type=\"{}\" scope=\"col\">{}</th>",
            c.key,
            if numeric { "num" } else { "text" },
            escape(c.title)
        ));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let numeric = columns::numeric(&brief, records);
    for r in records {
        out.push_str(&format!("<tr class=\"{}\">", r.status.word()));
        for (c, &numeric) in brief.iter().zip(&numeric) {
            let v = (c.read)(r);
            let class = if numeric { " class=\"num\"" } else { "" };
            let title = match (c.key, r.status.detail()) {
                ("status", Some(d)) => format!(" title=\"{}\"", escape(d)),
                _ => String::new(),
            };
            out.push_str(&format!(
                "<td data-v=\"{}\"{class}{title}>{}</td>",
                escape(&v.raw()),
                escape(&v.shown())
            ));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

fn problems_section(out: &mut String, records: &[Record]) {
    out.push_str("<section id=\"problems\">\n<h2>Failed and skipped cells</h2>\n");
    let problems: Vec<&Record> = records.iter().filter(|r| !view::is_ok(r)).collect();
    if problems.is_empty() {
        out.push_str("<p>None: every cell finished.</p>\n</section>\n");
        return;
    }
    out.push_str("<ul>\n");
    for r in problems {
        out.push_str(&format!(
            "<li><strong>{}</strong> {} {}: {}</li>\n",
            r.status.word(),
            escape(&r.key.model),
            escape(&Labeler::FULL.label(r)),
            escape(
                r.status
                    .detail()
                    .unwrap_or("stopped before it finished; figures measured before that are kept")
            )
        ));
    }
    out.push_str("</ul>\n</section>\n");
}

fn machines_section(out: &mut String, records: &[Record]) {
    out.push_str("<section id=\"machines\">\n<h2>Machines</h2>\n");
    let mut by_device: BTreeMap<String, &Record> = BTreeMap::new();
    for r in records {
        by_device.entry(view::device(r)).or_insert(r);
    }
    for (device, r) in by_device {
        let m = &r.machine;
        out.push_str(&format!(
            "<h3>{}</h3>\n<dl class=\"machine\">\n",
            escape(&device)
        ));
        let mut row = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                out.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(k), escape(&v)));
            }
        };
        row("host", m.hostname.clone());
        row("board", m.board.clone());
        row("CPU", m.cpu_model.clone());
        row("architecture", Some(m.arch.clone()));
        row("CPU features", Some(m.cpu_features.join(" ")));
        row("kernels", Some(m.kernel_isa.name().to_string()));
        row(
            "cores",
            match (m.logical_cores, m.available_parallelism) {
                (Some(l), Some(a)) => Some(format!("{l} logical, {a} available to quench")),
                (Some(l), None) => Some(format!("{l} logical")),
                (None, Some(a)) => Some(format!("{a} available to quench")),
                (None, None) => None,
            },
        );
        row(
            "frequency",
            m.frequency.as_ref().map(|f| {
                let governors = if f.governors.is_empty() {
                    String::new()
                } else {
                    format!(", governor {}", f.governors.join("/"))
                };
                let max = f
                    .max_mhz
                    .map_or(String::new(), |x| format!(", max {x:.0} MHz"));
                format!("from {}{governors}{max}", f.source)
            }),
        );
        row(
            "throttling",
            m.throttle.as_ref().map(|t| {
                let now = match t.throttled_now {
                    Some(true) => ", throttled when read",
                    Some(false) => ", not throttled when read",
                    None => "",
                };
                format!("{} events ({}){now}", t.events, t.source)
            }),
        );
        row("kernel", m.kernel.clone());
        row("OS", m.os.clone());
        row(
            "quench",
            Some(format!("{} ({})", m.quench_version, m.git_revision)),
        );
        row("ONNX Runtime", m.ort_version.clone());
        out.push_str("</dl>\n");
    }
    out.push_str("</section>\n");
}

fn reproduce_section(out: &mut String, records: &[Record]) {
    out.push_str("<section id=\"reproduce\">\n<h2>Reproduce</h2>\n");
    let commands = view::distinct(records, |r| r.command.clone().unwrap_or_default());
    let commands: Vec<&String> = commands.iter().filter(|c| !c.is_empty()).collect();
    let missing = records.iter().filter(|r| r.command.is_none()).count();
    if commands.is_empty() {
        out.push_str("<p>The records do not say which command measured them (they were written by a quench that did not record it).</p>\n");
    } else {
        out.push_str(&format!(
            "<p>{} measured these records; run {} again, from the same folder, with the same quench revision, to measure them again:</p>\n",
            if commands.len() == 1 { "This command" } else { "These commands" },
            if commands.len() == 1 { "it" } else { "them" }
        ));
        out.push_str("<pre>");
        for c in &commands {
            out.push_str(&escape(c));
            out.push('\n');
        }
        out.push_str("</pre>\n");
        if missing > 0 {
            out.push_str(&format!(
                "<p>{missing} record(s) do not say which command measured them.</p>\n"
            ));
        }
    }
    let profiles = view::distinct(records, |r| r.profile_hash.clone().unwrap_or_default());
    let profiles: Vec<&String> = profiles.iter().filter(|p| !p.is_empty()).collect();
    if !profiles.is_empty() {
        out.push_str(&format!(
            "<p>Profile hash(es): {}.</p>\n",
            profiles
                .iter()
                .map(|p| format!("<code>{}</code>", escape(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let mut records = fixture::records();
        let hostile = "<script>alert(\"x\")</script>&'";
        for r in &mut records {
            r.key.model = hostile.to_string();
            r.machine.hostname = Some(hostile.to_string());
            r.command = Some(hostile.to_string());
        }
        let advice = crate::report::summary::advise(&records, 1.0);
        let sources = Sources {
            files: &[hostile.to_string()],
            budget_pp: 1.0,
        };
        let page = page(&records, &advice, &[], &[], &sources);
        assert!(!page.contains(hostile));
        assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
        // Only the report's own script element is on the page.
        assert_eq!(page.matches("<script>").count(), 1);
    }
}
