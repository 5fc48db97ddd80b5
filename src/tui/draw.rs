//! The whole frame, a pure function of the [`App`]: tabs and sweep state on top, the screen, a
//! status line (running cell, progress, last notice or the filter prompt) and, over it all, the
//! help overlay.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;

use super::app::{App, Screen, SweepState};
use super::grid::{ColKey, RowKey};
use super::input::KEYS;
use super::matrix::phase_name;

/// Draws the app into the frame.
pub fn draw(app: &App, f: &mut Frame) {
    let [top, body, status, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_top(app, f, top);
    match app.screen {
        _ if app.front => super::front::draw(app, f, body),
        Screen::Matrix => super::matrix::draw(app, f, body),
        Screen::Detail => super::detail::draw(app, f, body),
        Screen::Plot => super::plot::draw(app, f, body),
        Screen::Layers => super::layers::draw(app, f, body),
    }
    draw_status(app, f, status);
    draw_hint(app, f, hint);
    if app.help {
        draw_help(app, f, body);
    }
}

fn draw_top(app: &App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let titles: Vec<String> = Screen::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {}", i + 1, s.title()))
        .collect();
    let selected = Screen::ALL.iter().position(|&s| s == app.screen);
    let [tabs_area, title_area] =
        Layout::horizontal([Constraint::Length(39), Constraint::Min(10)]).areas(area);
    let tabs = Tabs::new(titles)
        .select(selected)
        .highlight_style(t.accent().add_modifier(ratatui::style::Modifier::REVERSED))
        .padding("", "")
        .divider(" ");
    f.render_widget(tabs, tabs_area);
    let title = Paragraph::new(Line::from(vec![
        Span::styled("quench ", t.accent()),
        Span::raw(tail(
            &app.title,
            usize::from(title_area.width).saturating_sub(7),
        )),
    ]))
    .alignment(ratatui::layout::Alignment::Right);
    f.render_widget(title, title_area);
}

/// The sweep's state and progress in words.
fn sweep_line(app: &App) -> Vec<Span<'static>> {
    let t = app.theme;
    let (done, all) = app.progress();
    let mut spans = vec![Span::raw(format!("{done}/{all} cells "))];
    match (&app.state, &app.running) {
        (_, Some(run)) => {
            let phase = run.phase.as_ref().map_or("starting", phase_name);
            let pct = run
                .fraction
                .map(|x| format!(" {:.0}%", x.clamp(0.0, 1.0) * 100.0))
                .unwrap_or_default();
            spans.push(Span::styled(
                format!(
                    "▶ {}/{} {} on {}: {phase}{pct}",
                    run.index + 1,
                    run.total,
                    RowKey::of(&run.key).label(),
                    ColKey::of(&run.key).label()
                ),
                t.accent(),
            ));
            if app.pause_requested {
                spans.push(Span::styled(" · pausing after this cell", t.header()));
            }
            if app.timing() {
                spans.push(Span::styled(" · display still while timing", t.muted()));
            }
            if let Some(n) = &run.note {
                spans.push(Span::raw(format!(" ({n})")));
            }
        }
        (SweepState::Idle, None) if app.live => {
            spans.push(Span::styled("not started: press s", t.muted()))
        }
        (SweepState::Idle, None) => spans.push(Span::styled("past results", t.muted())),
        (SweepState::Running, None) if app.pause_requested => {
            spans.push(Span::styled("paused: s resumes", t.header()))
        }
        (SweepState::Running, None) => spans.push(Span::raw("running")),
        (
            SweepState::Finished {
                ok,
                failed,
                skipped,
                cancelled,
                seconds,
            },
            None,
        ) => spans.push(Span::raw(format!(
            "finished in {seconds:.1} s: {ok} ok, {failed} failed, {skipped} skipped, {cancelled} cancelled"
        ))),
        (SweepState::Failed(e), None) => {
            spans.push(Span::styled(format!("sweep stopped: {e}"), t.error()))
        }
    }
    spans
}

fn draw_status(app: &App, f: &mut Frame, area: Rect) {
    f.render_widget(Paragraph::new(Line::from(sweep_line(app))), area);
}

fn draw_hint(app: &App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let line = if app.editing_filter {
        Line::from(vec![
            Span::styled("filter: ", t.accent()),
            Span::raw(app.filter.clone()),
            Span::styled("▏ Enter keeps, Esc clears", t.muted()),
        ])
    } else if let Some(n) = &app.notice {
        Line::from(Span::raw(n.clone()))
    } else {
        let filter = if app.filter.is_empty() {
            String::new()
        } else {
            format!("filter \"{}\" · ", app.filter)
        };
        Line::from(Span::styled(
            format!(
                "{filter}runtimes {} · ? help · q quit",
                app.runtimes.label()
            ),
            t.muted(),
        ))
    };
    f.render_widget(Paragraph::new(line), area);
}

fn draw_help(app: &App, f: &mut Frame, body: Rect) {
    let t = app.theme;
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<10} "), t.header()),
                Span::raw(*what),
            ])
        })
        .collect();
    if !app.live {
        lines.push(Line::from(Span::styled(
            "past results: run control needs `quench tui PROFILE`",
            t.muted(),
        )));
    }
    for d in &app.dropped {
        lines.push(Line::from(Span::styled(
            format!("left out: {} ({})", d.what, d.reason),
            t.muted(),
        )));
    }
    let h = (lines.len() as u16 + 2).min(body.height);
    let [area] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(body);
    let [area] = Layout::horizontal([Constraint::Length(64.min(body.width))])
        .flex(Flex::Center)
        .areas(area);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(" keys (Esc or ? closes) ")
                .border_style(t.accent()),
        ),
        area,
    );
}

/// The end of `text` in at most `width` columns, `…` marking a cut.
fn tail(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    let keep = width.saturating_sub(1);
    std::iter::once('…')
        .chain(text.chars().skip(n - keep))
        .collect()
}
