//! Styles. Only the terminal's own named colours are used (green, yellow, red, cyan), never a
//! fixed foreground such as white or black, so the palette follows the terminal's dark or light
//! scheme; emphasis is carried by bold, dim and reverse video, which also survive `NO_COLOR`
//! (<https://no-color.org>: any non-empty value turns colour off).

use ratatui::style::{Color, Modifier, Style};

use super::grid::Verdict;

/// The styles every screen draws with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to something non-empty.
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    /// With colour.
    pub const COLOR: Theme = Theme { color: true };

    /// Without colour (bold, dim and reverse only).
    pub const PLAIN: Theme = Theme { color: false };

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// A judgement against FP32.
    pub fn verdict(self, v: Option<Verdict>) -> Style {
        match v {
            Some(Verdict::Good) => self.fg(Color::Green),
            Some(Verdict::Fair) => self.fg(Color::Yellow),
            Some(Verdict::Poor) => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            None => Style::new(),
        }
    }

    /// Titles, tabs and the running cell.
    pub fn accent(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Failures and errors.
    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Planned cells, hints and secondary text.
    pub fn muted(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    /// The selected cell or point.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Headers.
    pub fn header(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// A Pareto-front mark.
    pub fn front(self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }
}
