//! The trade-off screen: the selected model's cells as points of accuracy (or agreement) against
//! a cost (median latency, model size, energy per inference), the Pareto front drawn as a line,
//! the selected cell as a block. A cost axis spanning more than 20× is drawn in log scale (the
//! tick labels keep the real values).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use super::app::App;
use super::grid::{score, ColKey, Cost, RowKey};
use crate::report::pareto::on_front;
use crate::report::table::{bytes, duration_ms, joules};
use crate::sweep::record::Record;

/// A cost in its unit.
fn cost_text(cost: Cost, v: f64) -> String {
    match cost {
        Cost::Latency => duration_ms(v),
        Cost::Size => bytes(v.max(0.0) as u64),
        Cost::Energy => joules(v),
    }
}

/// Draws the plot into `area`.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let pts = app.plot_points();
    let [chart_area, info_area] =
        Layout::vertical([Constraint::Min(6), Constraint::Length(3)]).areas(area);
    let Some(model) = app.selected().map(|k| k.model) else {
        f.render_widget(Paragraph::new("No cells yet.").style(t.muted()), area);
        return;
    };
    if pts.is_empty() {
        let msg = format!(
            "{model}: no finished cell has both a score and a {} yet (x: next axis, ↑↓: model)",
            app.axis.title()
        );
        f.render_widget(Paragraph::new(msg).style(t.muted()), area);
        return;
    }
    let raw: Vec<(f64, f64)> = pts
        .iter()
        .map(|r| {
            (
                app.axis.of(r).unwrap_or(f64::NAN),
                score(r).map_or(f64::NAN, |s| s.value()),
            )
        })
        .collect();
    let (lo, hi) = raw
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let log = lo > 0.0 && hi / lo > 20.0;
    let to_x = |c: f64| if log { c.log10() } else { c };
    let xy: Vec<(f64, f64)> = raw.iter().map(|&(c, s)| (to_x(c), s * 100.0)).collect();
    let on_front = on_front(&raw);
    let front: Vec<(f64, f64)> = xy
        .iter()
        .zip(&on_front)
        .filter(|(_, on)| **on)
        .map(|(p, _)| *p)
        .collect();
    let selected = app.selected();
    let sel_idx = pts.iter().position(|r| Some(&r.key) == selected.as_ref());
    let sel: Vec<(f64, f64)> = sel_idx.map(|i| vec![xy[i]]).unwrap_or_default();

    let (x0, x1) = pad(to_x(lo), to_x(hi));
    let (y_lo, y_hi) = xy
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (y0, y1) = pad(y_lo, y_hi);
    let y1 = if y_hi <= 100.0 { y1.min(100.0) } else { y1 };
    let from_x = |x: f64| if log { 10f64.powf(x) } else { x };
    let x_labels = vec![
        Span::raw(cost_text(app.axis, from_x(x0))),
        Span::raw(cost_text(app.axis, from_x((x0 + x1) / 2.0))),
        Span::raw(cost_text(app.axis, from_x(x1))),
    ];
    let y_labels = vec![
        Span::raw(format!("{y0:.1}%")),
        Span::raw(format!("{:.1}%", (y0 + y1) / 2.0)),
        Span::raw(format!("{y1:.1}%")),
    ];
    let datasets = vec![
        Dataset::default()
            .name("Pareto front")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.front())
            .data(&front),
        Dataset::default()
            .name("cells")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(t.accent())
            .data(&xy),
        Dataset::default()
            .name("selected")
            .marker(Marker::Block)
            .graph_type(GraphType::Scatter)
            .style(t.header())
            .data(&sel),
    ];
    let scale = if log { " (log)" } else { "" };
    let chart = Chart::new(datasets)
        .x_axis(
            Axis::default()
                .title(format!("{}{scale} →", app.axis.title()))
                .bounds([x0, x1])
                .labels(x_labels),
        )
        .y_axis(
            Axis::default()
                .title(format!("{model} accuracy ↑"))
                .bounds([y0, y1])
                .labels(y_labels),
        );
    f.render_widget(chart, chart_area);

    let mut info = Vec::new();
    if let Some(i) = sel_idx {
        info.push(point_line(app, pts[i], on_front[i]));
    } else {
        info.push(Line::from(Span::styled(
            "the selected cell has no point here (←→ moves along the points)",
            t.muted(),
        )));
    }
    info.push(Line::from(Span::styled(
        format!(
            "{} points, {} on the front · ←→ along points, ↑↓ model, x axis ({})",
            pts.len(),
            front.len(),
            app.axis.title()
        ),
        t.muted(),
    )));
    f.render_widget(Paragraph::new(info), info_area);
}

/// Bounds with a margin, never empty.
fn pad(lo: f64, hi: f64) -> (f64, f64) {
    let span = (hi - lo).abs();
    let m = if span > 0.0 {
        span * 0.08
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - m, hi + m)
}

fn point_line(app: &App, r: &Record, on_front: bool) -> Line<'static> {
    let t = app.theme;
    let s = score(r).map_or(0.0, |s| s.value());
    let c = app.axis.of(r).unwrap_or(f64::NAN);
    let mut spans = vec![
        Span::styled(
            format!(
                "{} on {}",
                RowKey::of(&r.key).label(),
                ColKey::of(&r.key).label()
            ),
            t.header(),
        ),
        Span::raw(format!(": {:.2}% at {}", s * 100.0, cost_text(app.axis, c))),
    ];
    if on_front {
        spans.push(Span::styled("  * on the Pareto front", t.front()));
    }
    Line::from(spans)
}
