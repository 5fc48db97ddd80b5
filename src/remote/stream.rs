//! The progress stream of a remote sweep: each line `quench sweep --progress json` prints is a
//! [`Event`]; anything else (a shell or loader message) is passed through as text. The
//! [`Describer`] turns events into the short lines shown here, prefixed by host.

use crate::sweep::event::Event;
use crate::sweep::record::{CellKey, Record};

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

/// Turns a host's events into one line each for the terminal; remembers the plan size so cell
/// lines read `i/N`.
#[derive(Debug, Default)]
pub struct Describer {
    /// Cells in the plan, once the sweep started.
    total: Option<usize>,
}

impl Describer {
    /// The line for `event`, or `None` for events not worth a line (phase changes).
    pub fn describe(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::SweepStarted {
                profile,
                cells,
                dropped,
                ..
            } => {
                self.total = Some(cells.len());
                Some(format!(
                    "sweep {profile}: {} cells planned, {} combinations dropped",
                    cells.len(),
                    dropped.len()
                ))
            }
            Event::CellStarted { index, total, key } => {
                self.total = Some(*total);
                Some(format!("cell {}/{total} {}", index + 1, key_words(key)))
            }
            Event::CellPhase { .. } => None,
            Event::CellFinished { index, record } => Some(format!(
                "cell {} {}",
                self.position(*index),
                outcome(record)
            )),
            Event::CellResumed { index, record } => Some(format!(
                "cell {} {} already recorded ok",
                self.position(*index),
                key_words(&record.key)
            )),
            Event::SweepFinished {
                ok,
                failed,
                skipped,
                cancelled,
                seconds,
            } => Some(format!(
                "sweep finished in {seconds:.0} s: {ok} ok, {failed} failed, {skipped} skipped, \
                 {cancelled} cancelled"
            )),
            Event::Warning { message } => Some(format!("warning: {message}")),
        }
    }

    /// `i/N` (1-based), or `i` before the plan size is known.
    fn position(&self, index: usize) -> String {
        match self.total {
            Some(total) => format!("{}/{total}", index + 1),
            None => (index + 1).to_string(),
        }
    }
}

/// `mnist-mlp int8 static minmax ort t1 b1`.
fn key_words(key: &CellKey) -> String {
    let mut words = vec![
        key.model.clone(),
        format!("{:?}", key.precision).to_lowercase(),
        format!("{:?}", key.method).to_lowercase(),
    ];
    words.extend(key.calibrator.clone());
    words.extend(key.group.map(|g| format!("g{g}")));
    words.push(key.runtime.to_string());
    words.push(format!("t{}", key.threads));
    words.push(format!("b{}", key.batch));
    words.join(" ")
}

/// `<key> ok acc 95.12% p50 1.234 ms` or `<key> failed: <error>`.
fn outcome(record: &Record) -> String {
    let mut line = format!("{} {}", key_words(&record.key), record.status.word());
    if let Some(detail) = record.status.detail() {
        line.push_str(": ");
        line.push_str(detail);
    }
    if let Some(acc) = record.quality.as_ref().and_then(|q| q.accuracy) {
        line.push_str(&format!(" acc {:.2}%", acc * 100.0));
    }
    if let Some(latency) = &record.latency {
        line.push_str(&format!(" p50 {:.3} ms", latency.latency_ms.p50));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;
    use crate::sweep::record::{Method, Precision};

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
        let mut d = Describer::default();
        assert_eq!(
            d.describe(&event).unwrap(),
            "cell 1/3 mnist-mlp int4 static mse g32 ort t2 b1"
        );
        assert_eq!(
            d.describe(&Event::Warning {
                message: "torn line".into()
            })
            .unwrap(),
            "warning: torn line"
        );
    }
}
