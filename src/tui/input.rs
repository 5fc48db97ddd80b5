//! Keys to actions: arrows and vim keys move, digits and Tab switch screens, letters drive the
//! sweep. The help overlay (`tui::help`) lists the same table, from [`KEYS`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Move the selection up.
    Up,
    /// Move the selection down.
    Down,
    /// Move the selection left.
    Left,
    /// Move the selection right.
    Right,
    /// Next screen.
    NextScreen,
    /// Previous screen.
    PrevScreen,
    /// Go to screen N (0-based).
    Screen(usize),
    /// Open the detail of the selected cell.
    Open,
    /// Close the overlay or go back to the matrix.
    Back,
    /// Show or hide the help overlay.
    Help,
    /// Quit (cancelling a running sweep).
    Quit,
    /// Start the sweep, or resume it after a pause.
    Start,
    /// Pause after the current cell.
    Pause,
    /// Cancel the sweep.
    Cancel,
    /// Run the selected cell again.
    Rerun,
    /// Cycle the runtimes shown and run: both, native only, ort only.
    ToggleRuntimes,
    /// Type a filter on model, precision or method.
    Filter,
    /// Write a report of what is on screen.
    Export,
    /// Cycle the trade-off plot's x axis: latency, size, energy.
    Axis,
    /// Show or hide the search front (the candidates a mixed-precision search tried).
    Front,
}

/// The key table: keys as shown in the help, and what they do.
pub const KEYS: &[(&str, &str)] = &[
    ("←↓↑→ hjkl", "move the selection (plot: along the points)"),
    ("1-4 Tab", "matrix, detail, trade-off plot, layers"),
    ("Enter", "detail of the selected cell"),
    ("Esc", "close help / back to the matrix"),
    ("s", "start the sweep (or resume)"),
    ("p", "pause after the current cell"),
    ("c", "cancel the sweep"),
    ("r", "re-run the selected cell"),
    ("t", "runtimes: both / native / ort"),
    ("/", "filter rows (Enter keeps, Esc clears)"),
    ("x", "plot axis: latency / size / energy"),
    ("e", "export a report of what is shown"),
    ("f", "search front of the model (saved search.jsonl)"),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
];

/// The action of a key, outside the filter prompt.
pub fn action(key: KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c')).then_some(Action::Quit);
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Left | KeyCode::Char('h') => Action::Left,
        KeyCode::Right | KeyCode::Char('l') => Action::Right,
        KeyCode::Tab => Action::NextScreen,
        KeyCode::BackTab => Action::PrevScreen,
        KeyCode::Char(c @ '1'..='4') => Action::Screen(c as usize - '1' as usize),
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('s') => Action::Start,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('c') => Action::Cancel,
        KeyCode::Char('r') => Action::Rerun,
        KeyCode::Char('t') => Action::ToggleRuntimes,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('e') => Action::Export,
        KeyCode::Char('x') => Action::Axis,
        KeyCode::Char('f') => Action::Front,
        _ => return None,
    })
}
