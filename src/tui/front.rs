//! A saved mixed-precision search in the TUI: the front view (key `f`: the Pareto front of the
//! candidates the search tried, the chosen one marked, with its measured size, latency and
//! test accuracy) and the sensitivity ranking the layers screen shows. Figures are read from
//! the saved [`SearchReport`](crate::explore::search::SearchReport), never computed here.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

use super::app::App;
use crate::explore::objective::Objective;
use crate::explore::saved::SavedSearch;
use crate::explore::search::Candidate;
use crate::report::explore::drop_points;
use crate::report::table::{bytes, duration_ms, percent};

/// The search shown: the selected cell's model's, else the first saved.
fn shown(app: &App) -> Option<&SavedSearch> {
    app.selected()
        .and_then(|k| app.search_of(&k.model))
        .or(app.searches.first())
}

fn latency(c: &Candidate) -> String {
    c.timed.as_ref().map_or("-".into(), |t| {
        format!("{} ({:.2}×)", duration_ms(t.latency_ms), t.latency_ratio)
    })
}

/// Draws the front of the shown search into `area`.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let Some(s) = shown(app) else {
        f.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled("Search front", t.accent())),
                Line::from(Span::styled(
                    "No saved search: a profile with a [search] table writes search.jsonl \
                     beside results.jsonl (quench sweep PROFILE --headless). f closes.",
                    t.muted(),
                )),
            ])
            .wrap(ratatui::widgets::Wrap { trim: false }),
            area,
        );
        return;
    };
    let r = &s.report;
    let title = Line::from(vec![
        Span::styled(s.name.clone(), t.accent()),
        Span::styled(
            format!(
                " · search front, {} objective, budget {:.2} pts · {} tried · f closes",
                r.objective.name(),
                r.budget * 100.0,
                r.candidates.len()
            ),
            t.muted(),
        ),
    ]);
    let chosen = r.candidates.get(r.chosen);
    let test = match (r.test.chosen_accuracy, r.test.fp32_accuracy) {
        (Some(a), Some(f)) => format!("test {} vs fp32 {}", percent(a), percent(f)),
        _ => format!("test agreement {}", percent(r.test.agreement)),
    };
    let summary = Line::from(match chosen {
        Some(c) => vec![
            Span::styled(format!("* chosen #{} ", c.index), t.header()),
            Span::raw(format!(
                "{} · {} · {} · {} on {} samples{}",
                c.assignment,
                bytes(c.bytes),
                latency(c),
                test,
                r.test.samples,
                if r.test.within_budget {
                    ""
                } else {
                    " (over budget)"
                }
            )),
        ],
        None => vec![Span::styled("no chosen candidate", t.muted())],
    });
    let [head, sum, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(2),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title), head);
    f.render_widget(
        Paragraph::new(summary).wrap(ratatui::widgets::Wrap { trim: false }),
        sum,
    );
    let mut shown: Vec<usize> = r.front.clone();
    if !shown.contains(&r.chosen) {
        shown.push(r.chosen);
    }
    let objective = match r.objective {
        Objective::Size => "size",
        Objective::Latency => "lat/fp32",
        Objective::Energy => "energy/fp32",
    };
    let rows: Vec<Row> = shown
        .iter()
        .filter_map(|&i| r.candidates.get(i))
        .map(|c| {
            let mark = if c.index == r.chosen { "*" } else { " " };
            let style = if c.index == r.chosen {
                t.header()
            } else {
                ratatui::style::Style::default()
            };
            let value = match r.objective {
                Objective::Size => bytes(c.bytes),
                _ => format!("{:.3}", c.objective),
            };
            Row::new(vec![
                format!("{mark}{}", c.index),
                drop_points(c.score.drop),
                value,
                latency(c),
                c.assignment.clone(),
            ])
            .style(style)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Length(18),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(["#", "Δ pts", objective, "latency", "assignment"]).style(t.header()))
    .column_spacing(1);
    f.render_widget(table, body);
}

/// The layers screen's lines on `model`'s saved search: the layers most sensitive first by
/// only-this-layer held-out KL, with the level the search chose (empty without a search).
pub fn ranking_lines(app: &App, model: &str) -> Vec<Line<'static>> {
    let t = app.theme;
    let Some(s) = app.search_of(model) else {
        return Vec::new();
    };
    let chosen: Vec<(&str, crate::explore::Level)> = s
        .assignment()
        .into_iter()
        .map(|(name, level, _)| (name, level))
        .collect();
    let mut lines = vec![Line::from(Span::styled(
        "search sensitivity: only-this-layer KL vs FP32, most sensitive first → chosen",
        t.muted(),
    ))];
    for (rank, (name, at, kl)) in s.ranking().into_iter().enumerate() {
        let level = chosen
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("-", |(_, l)| l.name());
        lines.push(Line::from(format!(
            "{:>3} {name:<16} {kl:>9.2e} at {:<6} → {level}",
            rank + 1,
            at.name()
        )));
    }
    lines
}
