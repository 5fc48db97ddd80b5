//! The event loop: keys (from an input thread) and sweep messages arrive on one channel, go
//! through [`update`], and the frame is redrawn by [`draw`] at most every [`FRAME`]; commands
//! the app returns go to the sweep runner through [`Control`].

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};

use super::app::{update, App, Command, Msg};
use super::draw::draw;
use super::export::write_report;
use super::terminal::TerminalGuard;

/// Shortest time between two frames drawn for sweep events.
pub const FRAME: Duration = Duration::from_millis(100);

/// The sweep runner as the TUI drives it.
pub trait Control {
    /// Carries out a run-control command ([`Command::Export`] never comes here); the answer, or
    /// why it could not be done, is shown in the status line.
    fn command(&mut self, cmd: &Command) -> Result<String, String>;
}

/// The control of past results: there is no sweep to drive.
pub struct NoSweep;

impl Control for NoSweep {
    fn command(&mut self, _cmd: &Command) -> Result<String, String> {
        Err("no sweep is attached to these results".into())
    }
}

/// Where [`Command::Export`] writes its report.
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder of exported reports.
    pub report_dir: PathBuf,
}

/// Runs the app full-screen until it quits: `tx` and `rx` are the two ends of the app's
/// channel, on which the caller's sweep worker sends [`Msg::Sweep`] (and [`Msg::SweepFailed`]).
/// The terminal is restored whatever happens. Returns the app as it ended; stopping a sweep
/// that still runs is the caller's (see [`super::live::LiveSweep::shutdown`]).
pub fn run(
    mut app: App,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    control: &mut dyn Control,
    options: &Options,
) -> std::io::Result<App> {
    let (_guard, mut term) = TerminalGuard::enter()?;
    spawn_signals(tx.clone())?;
    spawn_input(tx);
    term.draw(|f| draw(&app, f))?;
    let mut last = Instant::now();
    let mut dirty = false;
    while !app.quit {
        let msg = match wait(dirty, app.timing(), last.elapsed()) {
            Some(timeout) => match rx.recv_timeout(timeout) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let mut now = false;
        if let Some(m) = msg {
            now = matches!(m, Msg::Key(_) | Msg::Resize);
            if let Some(cmd) = update(&mut app, m) {
                let answer = match &cmd {
                    Command::Export(keys) => {
                        write_report(&app, keys, &options.report_dir).map(|p| {
                            format!(
                                "report written: {} (charts, CSV and Markdown beside it)",
                                p.display()
                            )
                        })
                    }
                    other => control.command(other),
                };
                update(&mut app, Msg::Notice(answer.unwrap_or_else(|e| e)));
            }
            dirty = true;
        }
        if should_draw(dirty, now, app.timing(), last.elapsed()) {
            term.draw(|f| draw(&app, f))?;
            last = Instant::now();
            dirty = false;
        }
    }
    Ok(app)
}

/// How long the loop may wait for the next message: `None` (block) when nothing is pending or a
/// cell is being timed, else until the next frame is due.
fn wait(dirty: bool, timing: bool, since_draw: Duration) -> Option<Duration> {
    (dirty && !timing).then(|| FRAME.saturating_sub(since_draw))
}

/// Whether to draw now: the user asked (a key or a resize), or changes are pending, no cell is
/// being timed, and the last frame is at least [`FRAME`] old.
fn should_draw(dirty: bool, user: bool, timing: bool, since_draw: Duration) -> bool {
    dirty && (user || (!timing && since_draw >= FRAME))
}

/// Turns SIGINT, SIGTERM and SIGHUP into [`Msg::Quit`], so the loop ends and the terminal is
/// restored (raw mode delivers Ctrl-C as a key; these come from `kill` or a closed session).
/// A second signal restores the terminal and exits at once with status 130, as `quench sweep`
/// does, even while a running cell is being waited for.
fn spawn_signals(tx: Sender<Msg>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        let mut first = true;
        for _ in signals.forever() {
            if !first {
                super::terminal::restore();
                std::process::exit(130);
            }
            first = false;
            let _ = tx.send(Msg::Quit);
        }
    });
    Ok(())
}

/// Reads terminal events on their own thread and sends key presses and resizes to the app.
fn spawn_input(tx: Sender<Msg>) {
    std::thread::spawn(move || loop {
        let msg = match event::read() {
            Ok(TermEvent::Key(k)) if k.kind == KeyEventKind::Press => Msg::Key(k),
            Ok(TermEvent::Resize(..)) => Msg::Resize,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Msg::Notice(format!("terminal input failed: {e}")));
                return;
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn sweep_events_are_drawn_at_most_once_a_frame() {
        assert!(!should_draw(true, false, false, 30 * MS));
        assert_eq!(wait(true, false, 30 * MS), Some(70 * MS));
        assert!(should_draw(true, false, false, FRAME));
        assert!(
            !should_draw(false, false, false, FRAME),
            "nothing new, nothing drawn"
        );
        assert_eq!(wait(false, false, FRAME), None, "idle: block");
    }

    #[test]
    fn nothing_is_drawn_for_events_while_a_cell_is_timed() {
        assert!(!should_draw(true, false, true, 10 * FRAME));
        assert_eq!(
            wait(true, true, 10 * FRAME),
            None,
            "blocks until the next message"
        );
        assert!(should_draw(true, true, true, MS), "a key still draws");
    }
}
