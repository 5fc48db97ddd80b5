//! Listeners of a sweep's events for runs without a UI (`ssh board 'quench sweep …'`, `nohup`,
//! log files): [`Printer`] turns each event into plain lines (cell i/N, what it is doing, the
//! ETA, one summary line per finished cell), [`json_line`] into one JSON object per line for
//! other tools. Neither computes a figure: every number printed comes from a record, except
//! the ETA, which is the mean duration of the cells run so far times the cells left.

use std::time::{Duration, Instant};

use crate::report::table::{duration_ms, percent};
use crate::sweep::event::{Event, Phase};
use crate::sweep::record::Record;

/// The event as one JSON line (no trailing newline).
pub fn json_line(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|e| {
        format!(r#"{{"event":"warning","message":"event not serialisable: {e}"}}"#)
    })
}

/// Turns events into log lines and keeps the records for the final table.
#[derive(Debug)]
pub struct Printer {
    total: usize,
    width: usize,
    /// When the running cell started.
    cell_started: Option<Instant>,
    /// Durations of the cells run (not resumed) so far.
    durations: Vec<Duration>,
    /// Cells finished or resumed.
    done: usize,
    records: Vec<Record>,
}

impl Default for Printer {
    fn default() -> Self {
        Printer::new()
    }
}

/// `1m05s`, `42s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.0}s", d.as_secs_f64())
    }
}

fn phase_word(phase: &Phase) -> &'static str {
    match phase {
        Phase::Quantizing => "quantizing",
        Phase::Training => "training",
        Phase::Loading => "loading",
        Phase::Evaluating => "evaluating",
        Phase::Timing => "timing",
    }
}

impl Printer {
    /// A printer before any event.
    pub fn new() -> Printer {
        Printer {
            total: 0,
            width: 1,
            cell_started: None,
            durations: Vec::new(),
            done: 0,
            records: Vec::new(),
        }
    }

    /// The records seen so far (finished and resumed cells), in arrival order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    fn tag(&self, index: usize) -> String {
        format!("[{:>w$}/{}]", index + 1, self.total, w = self.width)
    }

    /// Time left: the mean duration of the cells run so far times the cells left, less what
    /// the running cell has already taken.
    fn eta(&self) -> String {
        if self.durations.is_empty() {
            return "ETA ?".into();
        }
        let mean = self.durations.iter().sum::<Duration>() / self.durations.len() as u32;
        let left = self.total.saturating_sub(self.done) as u32;
        let running = self.cell_started.map_or(Duration::ZERO, |s| s.elapsed());
        let eta = (mean * left).saturating_sub(running);
        format!("ETA {}", clock(eta))
    }

    /// One line of what a finished record says.
    fn outcome(record: &Record) -> String {
        let mut parts = Vec::new();
        if let Some(q) = &record.quality {
            if let Some(a) = q.accuracy {
                parts.push(format!("accuracy {}", percent(a)));
            }
            if let Some(a) = &q.agreement {
                parts.push(format!("agree {}", percent(a.top1)));
            }
        }
        if let Some(l) = &record.latency {
            parts.push(format!("p50 {}", duration_ms(l.latency_ms.p50)));
        }
        if let Some(detail) = record.status.detail() {
            parts.push(detail.to_string());
        }
        parts.join(", ")
    }

    /// The lines `event` prints (often one, none for events that say nothing new).
    pub fn lines(&mut self, event: &Event) -> Vec<String> {
        match event {
            Event::SweepStarted {
                profile,
                profile_hash,
                cells,
                dropped,
            } => {
                self.total = cells.len();
                self.width = self.total.to_string().len();
                let mut out = vec![format!(
                    "sweep {profile} (profile hash {profile_hash}): {} cells, {} combination(s) \
                     left out",
                    cells.len(),
                    dropped.len()
                )];
                out.extend(
                    dropped
                        .iter()
                        .map(|d| format!("left out: {}: {}", d.what, d.reason)),
                );
                out
            }
            Event::CellStarted { index, key, .. } => {
                self.cell_started = Some(Instant::now());
                vec![format!("{} {key}  ({})", self.tag(*index), self.eta())]
            }
            Event::CellPhase {
                index,
                phase,
                fraction,
                note,
            } => {
                let mut line = format!("{}   {}", self.tag(*index), phase_word(phase));
                if let Some(f) = fraction {
                    line.push_str(&format!(" {:.0}%", f * 100.0));
                }
                if let Some(n) = note {
                    line.push_str(&format!(" {n}"));
                }
                vec![line]
            }
            Event::CellFinished { index, record } => {
                let took = self.cell_started.take().map(|s| s.elapsed());
                if let Some(d) = took {
                    self.durations.push(d);
                }
                self.done += 1;
                self.records.push((**record).clone());
                let took = took.map_or(String::new(), |d| format!(" in {:.1} s", d.as_secs_f64()));
                vec![format!(
                    "{} {} {}{took}: {}  ({})",
                    self.tag(*index),
                    record.status.word(),
                    record.key,
                    Self::outcome(record),
                    self.eta()
                )]
            }
            Event::CellResumed { index, record } => {
                self.done += 1;
                self.records.push((**record).clone());
                vec![format!(
                    "{} ok earlier (resumed) {}",
                    self.tag(*index),
                    record.key
                )]
            }
            Event::SweepFinished {
                ok,
                failed,
                skipped,
                cancelled,
                seconds,
            } => vec![format!(
                "sweep finished in {}: {ok} ok, {failed} failed, {skipped} skipped, \
                 {cancelled} cancelled",
                clock(Duration::from_secs_f64(seconds.max(0.0)))
            )],
            Event::Warning { message } => vec![format!("warning: {message}")],
        }
    }
}
