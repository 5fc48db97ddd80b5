//! The terminal UI (ratatui + crossterm): a view of the sweep's [`Event`] stream and its
//! [`Record`]s that computes no figure of its own; it only orders records and marks the Pareto
//! front from their fields.
//!
//! Elm-like: [`App`] is the state, [`update`] applies one [`Msg`] (a key, a sweep event, a
//! command's answer) and may return a [`Command`] for the sweep runner, and [`draw`](fn@draw) is a pure
//! function of the state, so every screen renders on ratatui's `TestBackend`.
//!
//! * [`app`]: state, messages, commands and `update`; [`input`]: keys to actions.
//! * [`grid`]: rows (model × precision × method) and columns (runtime × threads) of the matrix,
//!   the Pareto front and the comparison with FP32.
//! * [`draw`](mod@draw): the frame; one module per screen: [`matrix`], [`detail`], [`plot`], [`layers`];
//!   [`front`]: a saved search's front (key `f`) and its sensitivity ranking.
//! * [`theme`]: colours that follow the terminal's palette and honour `NO_COLOR`.
//! * [`terminal`]: raw mode and alternate screen, always restored; [`shell`]: the event loop;
//!   [`export`]: the report of what is on screen; [`live`]: a sweep run from the UI.
//!
//! ## Not disturbing the measurement
//! The sweep runs on its own thread; the UI thread sleeps on one channel. Frames for sweep
//! events are drawn at most every [`shell::FRAME`] (100 ms), coalescing bursts. While a cell is
//! in [`Phase::Timing`] the loop draws nothing on its own and blocks in `recv` without a
//! timeout, so it takes no CPU until the next event (the end of timing) or a key: only a key
//! press (or a resize) draws a frame during timing, and the status line says the display is
//! held still.
//!
//! [`Event`]: crate::sweep::event::Event
//! [`Record`]: crate::sweep::record::Record
//! [`Phase::Timing`]: crate::sweep::event::Phase::Timing

pub mod app;
pub mod detail;
pub mod draw;
pub mod export;
pub mod front;
pub mod grid;
pub mod input;
pub mod layers;
pub mod live;
pub mod matrix;
pub mod plot;
pub mod shell;
pub mod terminal;
pub mod theme;

pub use app::{update, App, Command, Msg, Screen};
pub use draw::draw;
pub use shell::{run, Control, NoSweep, Options};
pub use theme::Theme;
