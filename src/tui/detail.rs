//! The detail screen: every figure of the selected cell's record, with a bar per recorded
//! latency percentile (or a sparkline of the raw samples when the record kept them).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph, Sparkline, Wrap};
use ratatui::Frame;

use super::app::App;
use super::grid::{RowKey, Score};
use super::theme::Theme;
use crate::measure::power::EnergySource;
use crate::measure::stats::Summary;
use crate::report::table::{bytes, duration_ms, joules, percent};
use crate::sweep::record::{Record, Status};

/// Draws the detail of the selected cell into `area`.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let Some(key) = app.selected() else {
        f.render_widget(Paragraph::new("No cell selected.").style(t.muted()), area);
        return;
    };
    let title = format!(
        "{} on {} ",
        RowKey::of(&key).label(),
        super::grid::ColKey::of(&key).label()
    );
    let Some(rec) = app.grid().get(&key) else {
        let what = if app.running.as_ref().is_some_and(|r| r.key == key) {
            "running now: its figures appear when it ends"
        } else {
            "no record yet"
        };
        let p = Paragraph::new(vec![
            Line::from(Span::styled(title, t.accent())),
            Line::from(Span::styled(what, t.muted())),
        ]);
        f.render_widget(p, area);
        return;
    };
    let lat = rec.latency.as_ref().map(|l| &l.latency_ms);
    // Wide: bars with their values; narrow: bars only (the values are in the text beside).
    let chart_w = match area.width {
        _ if lat.is_none() => 0,
        100.. => 37,
        76..=99 => 27,
        _ => 0,
    };
    let [text_area, chart_area] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(chart_w)]).areas(area);
    let mut lines = vec![Line::from(vec![
        Span::styled(title, t.accent()),
        status_span(&rec.status, t),
    ])];
    lines.extend(figures(rec, t));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
    if let (Some(s), true) = (lat, chart_w > 0) {
        let samples = rec.latency.as_ref().and_then(|l| l.samples_ms.as_deref());
        draw_latency_chart(s, samples, t, f, chart_area);
    }
}

fn status_span(status: &Status, t: Theme) -> Span<'static> {
    match status {
        Status::Ok => Span::styled("ok", t.verdict(Some(super::grid::Verdict::Good))),
        other => Span::styled(other.word().to_string(), t.error()),
    }
}

/// The record's figures as lines: status text, accuracy, latency, memory, energy, kernels.
fn figures(r: &Record, t: Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let label = |s: &str| Span::styled(format!("{s:<11}"), t.header());
    if let Some(d) = r.status.detail() {
        out.push(Line::from(vec![
            label("error"),
            Span::styled(d.to_string(), t.error()),
        ]));
    }
    if let Some(q) = &r.quality {
        let acc = match super::grid::score(r) {
            Some(Score::Accuracy(a)) => format!("{} top-1", percent(a)),
            Some(Score::Agreement(a)) => format!("{} agreement", percent(a)),
            None => q.accuracy.map_or("-".into(), percent),
        };
        let fp32 = q
            .expected_fp32_accuracy
            .map(|e| format!(" (FP32 {})", percent(e)))
            .unwrap_or_default();
        out.push(Line::from(vec![
            label("accuracy"),
            Span::raw(format!("{acc} on {}{fp32}", q.samples)),
        ]));
        if let Some(a) = &q.agreement {
            out.push(Line::from(vec![
                label("agreement"),
                Span::raw(format!("{} top-1, KL {:.2e}", percent(a.top1), a.kl)),
            ]));
            out.push(Line::from(vec![
                label(""),
                Span::styled(format!("vs {}", a.reference), t.muted()),
            ]));
        }
    }
    if let Some(l) = &r.latency {
        let s = &l.latency_ms;
        let pair = |a: &str, x: f64, b: &str, y: f64| {
            Span::raw(format!("{a} {:<10}{b} {}", duration_ms(x), duration_ms(y)))
        };
        out.push(Line::from(vec![
            label("latency"),
            pair("p50", s.p50, "p90", s.p90),
        ]));
        out.push(Line::from(vec![
            label(""),
            pair("p99", s.p99, "max", s.max),
        ]));
        out.push(Line::from(vec![
            label(""),
            pair("min", s.min, "mean", s.mean),
        ]));
        out.push(Line::from(vec![
            label("CI95 p50"),
            Span::raw(format!(
                "{} – {} (±{:.1}%), sd {}",
                duration_ms(s.median_ci95.low),
                duration_ms(s.median_ci95.high),
                s.ci_half_width * 100.0,
                duration_ms(s.sd)
            )),
        ]));
        if s.noisy {
            out.push(Line::from(vec![
                label(""),
                Span::styled("NOISY: repeat before trusting", t.error()),
            ]));
        }
        let cpu = l
            .cpu_share
            .map(|c| format!(", {:.0}% of a core", c * 100.0))
            .unwrap_or_default();
        out.push(Line::from(vec![
            label("runs"),
            Span::raw(format!(
                "{} in {:.2} s ({:.0}/s){cpu}",
                l.runs, l.loop_seconds, l.throughput_per_s
            )),
        ]));
    }
    if let Some(c) = &r.cold_start {
        out.push(Line::from(vec![
            label("load"),
            Span::raw(duration_ms(c.load_ms)),
        ]));
    }
    if let Some(m) = &r.memory {
        out.push(Line::from(vec![
            label("memory"),
            Span::raw(format!("{} {}", bytes(m.peak_rss_bytes), m.peak_label)),
        ]));
    }
    let mut size = format!("model file {}", bytes(r.sizes.model_file_bytes));
    if let Some(p) = r.sizes.packed_weight_bytes {
        size.push_str(&format!(", packed {}", bytes(p)));
    }
    if let Some(a) = r.sizes.arena_bytes {
        size.push_str(&format!(", arena {}", bytes(a)));
    }
    out.push(Line::from(vec![label("size"), Span::raw(size)]));
    match r.energy.as_ref().and_then(|e| e.headline.as_ref()) {
        Some(h) => {
            let source = match h.source {
                EnergySource::Measured => "measured",
                EnergySource::Estimated => "estimated",
                EnergySource::Model => "modelled",
            };
            out.push(Line::from(vec![
                label("energy"),
                Span::raw(format!(
                    "{}/inf, {:.2} W {source}",
                    joules(h.joules_per_inference),
                    h.average_watts
                )),
            ]));
            out.push(Line::from(vec![
                label(""),
                Span::styled(h.label.clone(), t.muted()),
            ]));
        }
        None => out.push(Line::from(vec![label("energy"), Span::raw("-")])),
    }
    let kernels = if r.kernels.is_empty() {
        "-".to_string()
    } else {
        r.kernels.join(", ")
    };
    out.push(Line::from(vec![label("kernels"), Span::raw(kernels)]));
    out.push(Line::from(vec![
        label("machine"),
        Span::styled(
            format!(
                "{} {} ({}), quench {} {}",
                r.machine.cpu_model.as_deref().unwrap_or("?"),
                r.machine.arch,
                serde_json::to_value(r.machine.kernel_isa)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                r.machine.quench_version,
                r.machine.git_revision
            ),
            t.muted(),
        ),
    ]));
    out
}

/// A bar per recorded percentile (min, p50, p90, p99, max), or the raw samples as a sparkline
/// above them when the record kept samples.
fn draw_latency_chart(s: &Summary, samples: Option<&[f64]>, t: Theme, f: &mut Frame, area: Rect) {
    let (spark_area, bar_area) = match samples {
        Some(_) if area.height >= 12 => {
            let [a, b] = Layout::vertical([Constraint::Length(5), Constraint::Min(6)]).areas(area);
            (Some(a), b)
        }
        _ => (None, area),
    };
    if let (Some(a), Some(samples)) = (spark_area, samples) {
        let data: Vec<u64> = samples
            .iter()
            .map(|&ms| (ms * 1000.0).max(0.0) as u64)
            .collect();
        let spark = Sparkline::default()
            .block(Block::bordered().title("samples (µs)"))
            .data(&data)
            .style(t.accent());
        f.render_widget(spark, a);
    }
    let points = [
        ("min", s.min),
        ("p50", s.p50),
        ("p90", s.p90),
        ("p99", s.p99),
        ("max", s.max),
    ];
    let with_values = area.width >= 37;
    let bar_width = if with_values { 7 } else { 5 };
    let bars: Vec<Bar> = points
        .iter()
        .map(|&(name, ms)| {
            Bar::default()
                .value((ms * 1000.0).max(0.0) as u64)
                .label(Line::from(name))
                .text_value(if with_values {
                    duration_ms(ms).replace(' ', "")
                } else {
                    String::new()
                })
        })
        .collect();
    let chart = BarChart::default()
        .block(Block::bordered().title("latency percentiles"))
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width)
        .bar_gap(0)
        .bar_style(t.accent());
    f.render_widget(chart, bar_area);
}
