//! The TUI's screens drawn on ratatui's `TestBackend` from the fixture records
//! (tests/fixtures/tui-results.jsonl, see its .md) and from synthetic sweep events, compared
//! with insta snapshots; and key handling through `update`.

use std::path::Path;

use quench::runtime::RuntimeKind;
use quench::sweep::event::{Dropped, Event, Phase};
use quench::sweep::record::{CellKey, Method, Precision, Record};
use quench::tui::app::SweepState;
use quench::tui::{draw, update, App, Command, Msg, Screen, Theme};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;

fn fixture() -> Vec<Record> {
    let loaded = quench::sweep::store::read(Path::new("tests/fixtures/tui-results.jsonl")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    loaded.records
}

fn past() -> App {
    App::with_records("tests/fixtures/tui-results.jsonl", fixture(), Theme::COLOR)
}

fn buffer(app: &App, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(app, f)).unwrap();
    term.backend().buffer().clone()
}

/// The screen as text, one line per row, trailing blanks trimmed.
fn text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn screen(app: &App, w: u16, h: u16) -> String {
    text(&buffer(app, w, h))
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::from(KeyCode::Char(c)))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::from(c))
}

fn press(app: &mut App, keys: &str) -> Vec<Command> {
    keys.chars().filter_map(|c| update(app, key(c))).collect()
}

#[test]
fn matrix_from_past_results() {
    let app = past();
    insta::assert_snapshot!("matrix_100x30", screen(&app, 100, 30));
    insta::assert_snapshot!("matrix_80x24", screen(&app, 80, 24));
}

#[test]
fn detail_of_a_quantized_cell() {
    let mut app = past();
    press(&mut app, "jl");
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.screen, Screen::Detail);
    insta::assert_snapshot!("detail_100x30", screen(&app, 100, 30));
    insta::assert_snapshot!("detail_80x24", screen(&app, 80, 24));
}

#[test]
fn detail_of_a_failed_cell_shows_the_error() {
    let mut app = past();
    press(&mut app, "j2");
    let s = screen(&app, 80, 24);
    assert!(s.contains("failed"), "{s}");
    assert!(s.contains("QuantizeLinear"), "{s}");
    insta::assert_snapshot!("detail_failed_80x24", s);
}

#[test]
fn tradeoff_plot_on_each_axis() {
    let mut app = past();
    press(&mut app, "jl3");
    insta::assert_snapshot!("plot_latency_100x30", screen(&app, 100, 30));
    insta::assert_snapshot!("plot_latency_80x24", screen(&app, 80, 24));
    press(&mut app, "x");
    insta::assert_snapshot!("plot_size_80x24", screen(&app, 80, 24));
    press(&mut app, "x");
    insta::assert_snapshot!("plot_energy_80x24", screen(&app, 80, 24));
}

#[test]
fn layers_worst_first() {
    let mut app = past();
    press(&mut app, "jjjl4");
    insta::assert_snapshot!("layers_80x24", screen(&app, 80, 24));
}

#[test]
fn help_overlay() {
    let mut app = past();
    press(&mut app, "?");
    assert!(app.help);
    insta::assert_snapshot!("help_80x24", screen(&app, 80, 24));
    // Keys other than Esc, ? and q do nothing under the overlay.
    press(&mut app, "j3");
    assert_eq!((app.selection(), app.screen), ((0, 0), Screen::Matrix));
    update(&mut app, code(KeyCode::Esc));
    assert!(!app.help);
}

fn key_of(model: &str, p: Precision, m: Method, rt: RuntimeKind) -> CellKey {
    CellKey {
        model: model.into(),
        precision: p,
        method: m,
        runtime: rt,
        threads: 1,
        batch: 1,
        calibrator: (m == Method::Static).then(|| "minmax".to_string()),
        group: None,
    }
}

/// A live sweep: the plan of four cells, one finished, one being evaluated.
fn live() -> App {
    let recs = fixture();
    let find = |k: &CellKey| recs.iter().find(|r| &r.key == k).unwrap().clone();
    let cells = vec![
        key_of("mnist-cnn", Precision::Fp32, Method::None, RuntimeKind::Ort),
        key_of(
            "mnist-cnn",
            Precision::Int8,
            Method::Static,
            RuntimeKind::Ort,
        ),
        key_of(
            "mnist-cnn",
            Precision::Fp32,
            Method::None,
            RuntimeKind::Native,
        ),
        key_of(
            "mnist-cnn",
            Precision::Int8,
            Method::Static,
            RuntimeKind::Native,
        ),
    ];
    let mut app = App::new("starting", true, Theme::COLOR);
    let events = vec![
        Event::SweepStarted {
            profile: "tiny".into(),
            profile_hash: "abc".into(),
            cells: cells.clone(),
            dropped: vec![Dropped {
                what: "mnist-cnn int4 dynamic".into(),
                reason: "int4 is weight-only".into(),
            }],
        },
        Event::CellStarted {
            index: 0,
            total: 4,
            key: cells[0].clone(),
        },
        Event::CellPhase {
            index: 0,
            phase: Phase::Timing,
            fraction: None,
            note: None,
        },
        Event::CellFinished {
            index: 0,
            record: Box::new(find(&cells[0])),
        },
        Event::CellStarted {
            index: 1,
            total: 4,
            key: cells[1].clone(),
        },
        Event::CellPhase {
            index: 1,
            phase: Phase::Evaluating,
            fraction: Some(0.4),
            note: Some("120/300 samples".into()),
        },
    ];
    for e in events {
        assert_eq!(update(&mut app, Msg::Sweep(e)), None);
    }
    app
}

#[test]
fn live_sweep_shows_plan_progress_and_running_cell() {
    let app = live();
    assert_eq!(app.title, "profile tiny");
    assert_eq!(app.progress(), (1, 4));
    assert!(!app.timing());
    let s = screen(&app, 80, 24);
    assert!(s.contains("▶ evaluating 40%"), "{s}");
    insta::assert_snapshot!("live_matrix_80x24", s);
}

#[test]
fn timing_phase_is_reported_and_ends_with_the_cell() {
    let mut app = live();
    update(
        &mut app,
        Msg::Sweep(Event::CellPhase {
            index: 1,
            phase: Phase::Timing,
            fraction: None,
            note: None,
        }),
    );
    assert!(app.timing());
    assert!(screen(&app, 100, 10).contains("display still while timing"));
    let rec = fixture()
        .into_iter()
        .find(|r| r.key == app.running.as_ref().unwrap().key)
        .unwrap();
    update(
        &mut app,
        Msg::Sweep(Event::CellFinished {
            index: 1,
            record: Box::new(rec),
        }),
    );
    assert!(!app.timing());
    assert_eq!(app.progress(), (2, 4));
    update(
        &mut app,
        Msg::Sweep(Event::SweepFinished {
            ok: 2,
            failed: 0,
            skipped: 0,
            cancelled: 2,
            seconds: 3.5,
        }),
    );
    assert!(matches!(app.state, SweepState::Finished { ok: 2, .. }));
    assert!(screen(&app, 100, 10).contains("finished in 3.5 s: 2 ok"));
}

#[test]
fn sweep_error_is_shown() {
    let mut app = live();
    update(&mut app, Msg::SweepFailed("profile.toml: no model".into()));
    assert_eq!(app.running, None);
    assert!(screen(&app, 80, 24).contains("sweep stopped: profile.toml: no model"));
}

#[test]
fn run_control_keys_become_commands_when_live() {
    let mut app = live();
    assert_eq!(press(&mut app, "s"), vec![Command::Start]);
    assert_eq!(press(&mut app, "p"), vec![Command::Pause]);
    assert!(app.pause_requested);
    assert!(screen(&app, 100, 10).contains("pausing after this cell"));
    assert_eq!(press(&mut app, "c"), vec![Command::Cancel]);
    let sel = app.selected().unwrap();
    assert_eq!(press(&mut app, "r"), vec![Command::Rerun(sel)]);
    assert_eq!(
        press(&mut app, "t"),
        vec![Command::SetRuntimes(vec![RuntimeKind::Native])]
    );
    assert!(app
        .visible_cols()
        .iter()
        .all(|c| c.runtime == RuntimeKind::Native));
    assert_eq!(
        press(&mut app, "tt"),
        vec![
            Command::SetRuntimes(vec![RuntimeKind::Ort]),
            Command::SetRuntimes(RuntimeKind::ALL.to_vec())
        ]
    );
}

#[test]
fn run_control_on_past_results_says_why_not() {
    let mut app = past();
    assert_eq!(press(&mut app, "spcr"), vec![]);
    assert!(app
        .notice
        .as_deref()
        .unwrap()
        .contains("no sweep is attached"));
    // Toggling runtimes still filters the view.
    assert_eq!(press(&mut app, "t"), vec![]);
    assert_eq!(app.visible_cols().len(), 1);
}

#[test]
fn export_lists_the_records_on_screen() {
    let mut app = past();
    press(&mut app, "t");
    let Some(Command::Export(keys)) = update(&mut app, key('e')) else {
        panic!("no export command");
    };
    assert_eq!(keys.len(), 9, "one native record per row");
    assert!(keys.iter().all(|k| k.runtime == RuntimeKind::Native));
}

#[test]
fn arrows_and_vim_keys_move_and_clamp() {
    let mut app = past();
    assert_eq!(app.selection(), (0, 0));
    press(&mut app, "jjl");
    assert_eq!(app.selection(), (2, 1));
    update(&mut app, code(KeyCode::Down));
    update(&mut app, code(KeyCode::Left));
    assert_eq!(app.selection(), (3, 0));
    press(&mut app, "lllll");
    assert_eq!(app.selection(), (3, 1), "clamped to the last column");
    press(&mut app, "kkkkkkk");
    assert_eq!(app.selection(), (0, 1));
    for _ in 0..20 {
        update(&mut app, code(KeyCode::Down));
    }
    assert_eq!(app.selection().0, app.visible_rows().len() - 1);
}

#[test]
fn screens_switch_by_digit_tab_and_escape() {
    let mut app = past();
    press(&mut app, "3");
    assert_eq!(app.screen, Screen::Plot);
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Layers);
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Matrix);
    update(&mut app, code(KeyCode::BackTab));
    assert_eq!(app.screen, Screen::Layers);
    update(&mut app, code(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Matrix);
}

#[test]
fn q_and_ctrl_c_quit() {
    let mut app = past();
    press(&mut app, "q");
    assert!(app.quit);
    let mut app = past();
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    );
    assert!(app.quit);
    // Ctrl-C quits from the filter prompt too; a plain q there is text.
    let mut app = past();
    press(&mut app, "/q");
    assert!(!app.quit);
    assert_eq!(app.filter, "q");
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    );
    assert!(app.quit);
}

#[test]
fn filter_narrows_rows_and_escape_clears_it() {
    let mut app = past();
    press(&mut app, "/mlp");
    assert!(app.editing_filter);
    update(&mut app, code(KeyCode::Enter));
    assert!(!app.editing_filter);
    assert_eq!(app.visible_rows().len(), 4);
    assert!(app.visible_rows().iter().all(|r| r.model == "mnist-mlp"));
    let s = screen(&app, 80, 24);
    assert!(!s.contains("mnist-cnn"), "{s}");
    assert!(s.contains("filter \"mlp\""), "{s}");
    press(&mut app, "/");
    update(&mut app, code(KeyCode::Esc));
    assert_eq!(app.visible_rows().len(), 9);
}

#[test]
fn plot_keys_walk_the_points_cheapest_first() {
    let mut app = past();
    press(&mut app, "3hhhhhh");
    let mut walk = Vec::new();
    for _ in 0..6 {
        let k = app.selected().unwrap();
        walk.push((k.precision, k.runtime));
        press(&mut app, "l");
    }
    use Precision::*;
    use RuntimeKind::*;
    // mnist-cnn by p50: ort int8 < ort fp32 < ort int4 < ort binary < native fp32 (the
    // failed native variants have no point); the walk stops at the end.
    assert_eq!(
        walk,
        [
            (Int8, Ort),
            (Fp32, Ort),
            (Int4, Ort),
            (Binary, Ort),
            (Fp32, Native),
            (Fp32, Native)
        ]
    );
    press(&mut app, "j");
    assert_eq!(app.selected().unwrap().model, "mnist-mlp");
    press(&mut app, "k");
    assert_eq!(app.selected().unwrap().model, "mnist-cnn");
}

#[test]
fn pareto_marks_follow_the_records() {
    let app = past();
    let g = app.grid();
    let int8 = key_of(
        "mnist-cnn",
        Precision::Int8,
        Method::Static,
        RuntimeKind::Ort,
    );
    let fp32 = key_of("mnist-cnn", Precision::Fp32, Method::None, RuntimeKind::Ort);
    use quench::tui::grid::Cost;
    // Same accuracy, lower latency: int8 is on the front and FP32 is not.
    assert!(g.on_front(&int8, Cost::Latency));
    assert!(!g.on_front(&fp32, Cost::Latency));
}

#[test]
fn no_color_draws_without_colours() {
    let has_colour = |b: &Buffer| {
        b.content()
            .iter()
            .any(|c| c.fg != Color::Reset || c.bg != Color::Reset)
    };
    let mut app = past();
    assert!(has_colour(&buffer(&app, 80, 24)));
    app.theme = Theme::PLAIN;
    for s in ["1", "2", "3", "4", "?"] {
        press(&mut app, s);
        assert!(!has_colour(&buffer(&app, 80, 24)), "screen {s}");
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = live();
    for s in ["1", "2", "3", "4", "?"] {
        press(&mut app, s);
        for (w, h) in [(1, 1), (20, 5), (40, 8), (200, 60)] {
            buffer(&app, w, h);
        }
    }
}

/// The past results with the saved search of tests/fixtures/search.jsonl (mnist-cnn).
fn with_search() -> App {
    let path = Path::new("tests/fixtures/search.jsonl");
    let (searches, warnings) =
        quench::explore::saved::parse(&std::fs::read_to_string(path).unwrap(), path);
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut app = past();
    app.searches = searches;
    app
}

#[test]
fn layers_show_the_search_sensitivity_ranking() {
    let mut app = with_search();
    press(&mut app, "jjjl4");
    assert_eq!(app.selected().unwrap().model, "mnist-cnn");
    let s = screen(&app, 80, 24);
    // Most sensitive first, with the level chosen.
    assert!(s.contains("search sensitivity"), "{s}");
    assert!(
        s.contains("  4 conv2              1.28e-7 at int8   → binary"),
        "{s}"
    );
    insta::assert_snapshot!("layers_search_80x24", s);
}

#[test]
fn front_view_lists_the_front_and_marks_the_chosen() {
    let mut app = with_search();
    press(&mut app, "f");
    assert!(app.front);
    let s = screen(&app, 80, 24);
    assert!(s.contains("*11"), "{s}");
    assert!(
        s.contains("mnist-cnn · search front, size objective"),
        "{s}"
    );
    insta::assert_snapshot!("front_80x24", s);
    update(&mut app, code(KeyCode::Esc));
    assert!(!app.front);
    // Without a saved search the view says how to get one.
    let mut plain = past();
    press(&mut plain, "f");
    assert!(screen(&plain, 80, 24).contains("No saved search"));
}
