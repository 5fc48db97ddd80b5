//! The progress stream of a remote sweep: each line `quench sweep --progress json` prints is an
//! [`Event`]; anything else (a shell or loader message) is passed through as text.

use crate::sweep::event::Event;

/// One line read from a host.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A progress event of the sweep.
    Event(Box<Event>),
    /// Any other output, as printed (trailing whitespace and `\r` removed).
    Text(String),
}

/// Reads one line of a host's output.
pub fn parse_line(raw: &str) -> Line {
    let text = raw.trim_end();
    if text.starts_with('{') {
        if let Ok(event) = serde_json::from_str::<Event>(text) {
            return Line::Event(Box::new(event));
        }
    }
    Line::Text(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;
    use crate::sweep::record::{CellKey, Method, Precision};

    fn key() -> CellKey {
        CellKey {
            model: "mnist-mlp".into(),
            precision: Precision::Int4,
            method: Method::Static,
            runtime: RuntimeKind::Ort,
            threads: 2,
            batch: 1,
            calibrator: Some("mse".into()),
            group: Some(32),
        }
    }

    #[test]
    fn event_lines_parse_and_other_lines_pass_through() {
        let event = Event::CellStarted {
            index: 0,
            total: 3,
            key: key(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            parse_line(&format!("{json}\r\n")),
            Line::Event(Box::new(event.clone()))
        );
        assert_eq!(
            parse_line("Warning: Permanently added\n"),
            Line::Text("Warning: Permanently added".into())
        );
        assert_eq!(
            parse_line("{\"event\":\"unknown\"}"),
            Line::Text("{\"event\":\"unknown\"}".into())
        );
    }
}
