//! Run control of a real sweep (tests/fixtures/profiles/tui.toml: four quick cells) through the
//! TUI's `LiveSweep`, without a terminal: the commands the app sends, the events that come back
//! and the records written. Needs ONNX Runtime in .venv (scripts/setup-ort.sh).

use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use quench::runtime::RuntimeKind;
use quench::sweep::event::Event;
use quench::sweep::plan::plan;
use quench::sweep::record::{Record, Status};
use quench::sweep::runner::RunOptions;
use quench::sweep::store;
use quench::tui::live::LiveSweep;
use quench::tui::{Command, Control, Msg};

const PROFILE: &str = "tests/fixtures/profiles/tui.toml";

fn start(out: &Path) -> (LiveSweep, Receiver<Msg>) {
    let profile = quench::sweep::profile::load(Path::new(PROFILE)).unwrap();
    let plan = plan(&profile, 1).unwrap();
    assert_eq!(plan.cells.len(), 4);
    let (tx, rx) = channel();
    let options = RunOptions {
        resume: true,
        ..RunOptions::new(out)
    };
    (LiveSweep::new(profile, plan, options, tx), rx)
}

/// Events until the sweep finishes (or fails), within 120 s.
fn until_finished(rx: &Receiver<Msg>) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).expect("an event") {
            Msg::Sweep(e @ Event::SweepFinished { .. }) => {
                out.push(e);
                return out;
            }
            Msg::Sweep(e) => out.push(e),
            Msg::SweepFailed(e) => panic!("sweep failed: {e}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn records(out: &Path) -> Vec<Record> {
    store::read(&out.join(store::RESULTS_FILE)).unwrap().records
}

#[test]
fn runtimes_turned_off_are_skipped_and_a_rerun_runs_one_cell_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut live, rx) = start(dir.path());
    assert!(live
        .command(&Command::Pause)
        .unwrap_err()
        .contains("nothing is running"));
    live.command(&Command::SetRuntimes(vec![RuntimeKind::Ort]))
        .unwrap();
    live.command(&Command::Start).unwrap();
    let events = until_finished(&rx);
    let Some(Event::SweepFinished { ok, skipped, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!((*ok, *skipped), (2, 2), "{events:?}");
    let recs = records(dir.path());
    for r in &recs {
        match r.key.runtime {
            RuntimeKind::Native => assert_eq!(
                r.status,
                Status::Skipped {
                    reason: "native turned off during the sweep".into()
                }
            ),
            RuntimeKind::Ort => assert_eq!(r.status, Status::Ok),
        }
    }
    // Re-run an ok cell: it runs again (not resumed) and appends a second record.
    let again = recs
        .iter()
        .find(|r| r.key.runtime == RuntimeKind::Ort)
        .unwrap()
        .key
        .clone();
    live.command(&Command::SetRuntimes(RuntimeKind::ALL.to_vec()))
        .unwrap();
    live.command(&Command::Rerun(again.clone())).unwrap();
    let events = until_finished(&rx);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::CellFinished { record, .. } if record.key == again)),
        "{events:?}"
    );
    assert_eq!(records(dir.path()).len(), 5);
    live.shutdown();
}

#[test]
fn pause_holds_the_next_cell_until_start_and_cancel_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut live, rx) = start(dir.path());
    live.command(&Command::Start).unwrap();
    live.command(&Command::Pause).unwrap();
    // At most the cell that was running ends; then nothing until resumed.
    let mut started = 0;
    while let Ok(m) = rx.recv_timeout(Duration::from_secs(3)) {
        match m {
            Msg::Sweep(Event::CellStarted { .. }) => started += 1,
            Msg::Sweep(Event::SweepFinished { .. }) => panic!("finished while paused"),
            _ => {}
        }
    }
    assert!(started <= 1, "{started} cells started while paused");
    assert!(live.busy());
    assert_eq!(live.command(&Command::Start).unwrap(), "resumed");
    live.command(&Command::Cancel).unwrap();
    let events = until_finished(&rx);
    let Some(Event::SweepFinished { ok, cancelled, .. }) = events.last() else {
        unreachable!()
    };
    assert!(*cancelled >= 1 && ok + cancelled <= 4, "{events:?}");
    live.shutdown();
}
