//! The matrix screen: one row per model variant, one column per runtime × threads; each cell
//! shows the record's accuracy and median latency, coloured against FP32, `*` on the model's
//! accuracy-vs-latency Pareto front, `~` when the timing was noisy; the running cell shows its
//! phase and progress, planned cells a dot.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

use super::app::App;
use super::grid::{cell_key, score, ColKey, Cost, RowKey};
use crate::report::table::duration_ms;
use crate::sweep::event::Phase;
use crate::sweep::record::{CellKey, Status};

/// Width of a cell column.
const CELL_WIDTH: u16 = 17;
/// Widest row label.
const MAX_LABEL: usize = 30;

/// Draws the matrix into `area`.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let [table_area, legend_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    let rows = app.visible_rows();
    let cols = app.visible_cols();
    let t = app.theme;
    if rows.is_empty() || cols.is_empty() {
        let text = if app.filter.is_empty() {
            "No cells yet: waiting for the sweep's plan (press s to start)."
        } else {
            "No row matches the filter (press / then Esc to clear it)."
        };
        f.render_widget(Paragraph::new(text).style(t.muted()), table_area);
        return;
    }
    let (sel_r, sel_c) = app.selection();
    let label_w = rows
        .iter()
        .map(|r| r.label().chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, MAX_LABEL) as u16;
    let fit = usize::from(table_area.width.saturating_sub(label_w + 1) / (CELL_WIDTH + 1)).max(1);
    let first_col = (sel_c + 1).saturating_sub(fit);
    let shown_cols: Vec<ColKey> = cols.iter().skip(first_col).take(fit).copied().collect();
    let body_h = usize::from(table_area.height.saturating_sub(1)).max(1);
    let first_row = (sel_r + 1).saturating_sub(body_h);

    let mut header = vec![Span::raw("")];
    header.extend(
        shown_cols
            .iter()
            .map(|c| Span::styled(c.label(), t.header())),
    );
    let mut lines = Vec::new();
    for (i, row) in rows.iter().enumerate().skip(first_row).take(body_h) {
        let mut label = row.label();
        if label.chars().count() > MAX_LABEL {
            label = label.chars().take(MAX_LABEL - 1).chain(['…']).collect();
        }
        let label_style = if i == sel_r {
            t.header()
        } else {
            Default::default()
        };
        let mut cells = vec![Line::from(Span::styled(label, label_style))];
        for (j, col) in shown_cols.iter().enumerate() {
            let mut line = cell(app, row, col);
            if i == sel_r && first_col + j == sel_c {
                line = line.patch_style(t.selected());
            }
            cells.push(line);
        }
        lines.push(Row::new(cells));
    }
    let mut widths = vec![Constraint::Length(label_w)];
    widths.extend(shown_cols.iter().map(|_| Constraint::Length(CELL_WIDTH)));
    let table = Table::new(lines, widths)
        .header(Row::new(header))
        .column_spacing(1);
    f.render_widget(table, table_area);

    let more = if cols.len() > shown_cols.len() {
        format!(
            "  columns {}-{} of {}",
            first_col + 1,
            first_col + shown_cols.len(),
            cols.len()
        )
    } else {
        String::new()
    };
    let legend = Line::from(vec![
        Span::styled("*", t.front()),
        Span::raw(" Pareto (acc vs p50)  ~ noisy  vs FP32: "),
        Span::styled("same/faster", t.verdict(Some(super::grid::Verdict::Good))),
        Span::raw(" "),
        Span::styled("close", t.verdict(Some(super::grid::Verdict::Fair))),
        Span::raw(" "),
        Span::styled("worse", t.verdict(Some(super::grid::Verdict::Poor))),
        Span::styled(more, t.muted()),
    ]);
    f.render_widget(Paragraph::new(legend), legend_area);
}

/// Lowercase phase name.
pub fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::Quantizing => "quantizing",
        Phase::Training => "training",
        Phase::Loading => "loading",
        Phase::Evaluating => "evaluating",
        Phase::Timing => "timing",
    }
}

/// The text of one cell.
fn cell(app: &App, row: &RowKey, col: &ColKey) -> Line<'static> {
    let t = app.theme;
    let key: CellKey = cell_key(row, col);
    if let Some(run) = app.running.as_ref().filter(|r| r.key == key) {
        let phase = run.phase.as_ref().map_or("starting", phase_name);
        let pct = run
            .fraction
            .map(|x| format!(" {:.0}%", x.clamp(0.0, 1.0) * 100.0))
            .unwrap_or_default();
        return Line::from(Span::styled(format!("▶ {phase}{pct}"), t.accent()));
    }
    let grid = app.grid();
    let Some(rec) = grid.get(&key) else {
        return if grid.is_known(row, col) {
            Line::from(Span::styled("·", t.muted()))
        } else {
            Line::default()
        };
    };
    match &rec.status {
        Status::Ok => {}
        Status::Failed { .. } => return Line::from(Span::styled("✗ failed", t.error())),
        Status::Skipped { .. } => return Line::from(Span::styled("– skipped", t.muted())),
        Status::Cancelled => return Line::from(Span::styled("cancelled", t.muted())),
    }
    let acc = score(rec).map_or("-".to_string(), |s| format!("{:.1}%", s.value() * 100.0));
    let lat = rec.latency.as_ref().map(|l| &l.latency_ms);
    let mut spans = vec![
        Span::styled(acc, t.verdict(grid.accuracy_verdict(rec))),
        Span::raw(" "),
        Span::styled(
            lat.map_or("-".to_string(), |s| duration_ms(s.p50)),
            t.verdict(grid.latency_verdict(rec)),
        ),
    ];
    if grid.on_front(&key, Cost::Latency) {
        spans.push(Span::styled("*", t.front()));
    }
    if lat.is_some_and(|s| s.noisy) {
        spans.push(Span::raw("~"));
    }
    Line::from(spans)
}
