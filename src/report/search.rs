//! The report's section on a mixed-precision search (`search.jsonl` beside the results): the
//! front chart, the chosen model's measured figures, and the chosen assignment per layer with
//! the layer's sensitivity, for the HTML page and the Markdown file.

use crate::explore::saved::SavedSearch;
use crate::report::explore::drop_points;
use crate::report::html::{escape, strip_xml_declaration};
use crate::report::table::{bytes, duration_ms, percent};

/// A search as the HTML shows it: the search, its front chart as SVG, and the PNG's path
/// relative to the page.
pub struct SearchFigure<'a> {
    /// The search.
    pub search: &'a SavedSearch,
    /// The front chart.
    pub svg: String,
    /// The PNG file of the chart, relative to the report.
    pub png: String,
}

/// The chosen model in one sentence: held-out drop, size, latency, test-split accuracy.
fn headline(s: &SavedSearch) -> String {
    let r = &s.report;
    let Some(c) = r.candidates.get(r.chosen) else {
        return format!("{}: no chosen candidate recorded", s.name);
    };
    let latency = c.timed.as_ref().map_or("not timed".to_string(), |t| {
        format!(
            "{} per batch on {} ({:.3}× FP32)",
            duration_ms(t.latency_ms),
            r.runtime,
            t.latency_ratio
        )
    });
    let test = match (r.test.fp32_accuracy, r.test.chosen_accuracy) {
        (Some(f), Some(a)) => format!(
            "test accuracy {} vs FP32 {}{} on {} samples",
            percent(a),
            percent(f),
            r.test
                .int8_accuracy
                .map_or(String::new(), |i| format!(" and all-INT8 {}", percent(i))),
            r.test.samples
        ),
        _ => format!(
            "test agreement with FP32 {} on {} samples",
            percent(r.test.agreement),
            r.test.samples
        ),
    };
    let within = if r.test.within_budget {
        "within"
    } else {
        "NOT within"
    };
    format!(
        "{}: chosen #{} of {} tried ({} objective, budget {:.2} pts): held-out accuracy change {} pts, {}, {}; {} ({} the budget on the test split){}",
        s.name,
        c.index,
        r.candidates.len(),
        r.objective.name(),
        r.budget * 100.0,
        drop_points(c.score.drop),
        bytes(c.bytes),
        latency,
        test,
        within,
        r.stopped
            .as_ref()
            .map_or(String::new(), |why| format!("; stopped early: {why}"))
    )
}

/// Rows of the chosen assignment: layer, precision, sensitivity (only-this-layer held-out KL
/// at that precision; `-` for FP32 layers).
fn rows(s: &SavedSearch) -> Vec<[String; 3]> {
    s.assignment()
        .into_iter()
        .map(|(layer, level, kl)| {
            [
                layer.to_string(),
                level.name().to_string(),
                kl.map_or("-".into(), |k| format!("{k:.2e}")),
            ]
        })
        .collect()
}

const HEADER: [&str; 3] = ["layer", "precision", "sensitivity (KL, only this layer)"];

/// The HTML section (empty without searches).
pub fn html(figures: &[SearchFigure<'_>]) -> String {
    if figures.is_empty() {
        return String::new();
    }
    let mut out = String::from("<section id=\"search\">\n<h2>Mixed-precision search</h2>\n");
    for f in figures {
        let s = f.search;
        out.push_str(&format!(
            "<h3>{}</h3>\n<p>{}</p>\n",
            escape(&s.name),
            escape(&headline(s))
        ));
        out.push_str(&format!(
            "<figure id=\"{}\">\n",
            escape(&crate::report::charts::front::stem(s))
        ));
        out.push_str(strip_xml_declaration(&f.svg));
        out.push_str(&format!(
            "\n<figcaption>{} <a href=\"{}\">PNG</a></figcaption>\n</figure>\n",
            escape(&crate::report::charts::front::caption(s)),
            escape(&f.png)
        ));
        out.push_str("<table>\n<thead><tr>");
        for h in HEADER {
            out.push_str(&format!("<th>{}</th>", escape(h)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in rows(s) {
            out.push_str("<tr>");
            for c in row {
                out.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
    out
}

/// The Markdown section (empty without searches); `png` gives each chart's path.
pub fn markdown(searches: &[SavedSearch], png: impl Fn(&SavedSearch) -> String) -> String {
    use crate::report::summary::Markup;
    let md = crate::report::tabular::Markdown;
    if searches.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Mixed-precision search\n");
    for s in searches {
        out.push_str(&format!(
            "\n### {}\n\n{}\n\n![search front of {}]({})\n\n| {} |\n| --- | --- | ---: |\n",
            md.text(&s.name),
            md.text(&headline(s)),
            md.text(&s.name),
            png(s),
            HEADER.join(" | ")
        ));
        for row in rows(s) {
            let cells: Vec<String> = row.iter().map(|c| md.text(c)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }
    out
}
