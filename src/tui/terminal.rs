//! Entering and leaving the full-screen terminal: raw mode, the alternate screen and a hidden
//! cursor, undone by [`TerminalGuard`]'s `Drop` on every way out (quit, Ctrl-C, which raw mode
//! delivers as a key, an error returned by the event loop) and by a panic hook when the UI
//! thread panics. A panic on another thread (the sweep worker) leaves the UI up: the worker's
//! end is reported to the app as a sweep error instead.

use std::io::{self, Stdout};
use std::sync::{Mutex, Once};
use std::thread::ThreadId;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

/// The thread that owns the screen, when one does.
static UI_THREAD: Mutex<Option<ThreadId>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// The terminal the app draws on.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Holds the terminal in full-screen mode; dropping it restores the terminal.
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    /// Switches the terminal to raw mode on the alternate screen and returns the terminal to
    /// draw on. On error the terminal is already restored.
    pub fn enter() -> io::Result<(TerminalGuard, Term)> {
        install_panic_hook();
        if let Ok(mut t) = UI_THREAD.lock() {
            *t = Some(std::thread::current().id());
        }
        let guard = TerminalGuard { _private: () };
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        let term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok((guard, term))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Ok(mut t) = UI_THREAD.lock() {
            *t = None;
        }
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor; errors are ignored (there is
/// nothing better to do with a terminal that cannot be written to).
pub(crate) fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

/// Once per process: a panic on the UI thread restores the terminal before the message prints.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui = UI_THREAD
                .lock()
                .map(|t| *t == Some(std::thread::current().id()))
                .unwrap_or(true);
            if on_ui {
                restore();
            }
            previous(info);
        }));
    });
}
