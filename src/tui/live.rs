//! A sweep driven from the TUI: the runner ([`run_plan`]) on a worker thread, its events sent
//! into the app's channel, and the app's run-control [`Command`]s turned into the runner's
//! hooks ([`RunControl`]: pause between cells, runtimes turned off; [`RunOptions::rerun`]).
//!
//! The first job resumes as `options.resume` says; every later one resumes (`results.jsonl` in
//! the output folder is kept and its ok cells are not run again), so `s` after a cancel or a
//! finished sweep runs what is missing, and a re-run names its cell in [`RunOptions::rerun`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::app::{Command, Msg};
use super::shell::Control;
use crate::sweep::plan::Plan;
use crate::sweep::profile::Profile;
use crate::sweep::record::CellKey;
use crate::sweep::runner::{run_plan, RunControl, RunOptions};

/// A job for the worker: run these cells (with `rerun` run even when recorded ok).
#[derive(Debug, Clone)]
struct Job {
    plan: Plan,
    rerun: Vec<CellKey>,
}

/// The worker's inbox and state, shared with the UI thread.
#[derive(Debug, Default)]
struct Shared {
    jobs: VecDeque<Job>,
    busy: bool,
    closing: bool,
    /// Jobs run so far (the first one keeps the caller's `resume`).
    runs: usize,
}

/// The sweep of one profile, run from the TUI.
pub struct LiveSweep {
    plan: Plan,
    options: RunOptions,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    worker: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveSweep {
    /// Starts the worker (idle until [`Command::Start`]) for `plan` of `profile`, writing into
    /// `options.out` and sending its events on `tx`.
    pub fn new(profile: Profile, plan: Plan, options: RunOptions, tx: Sender<Msg>) -> LiveSweep {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let worker = {
            let shared = Arc::clone(&shared);
            let options = options.clone();
            std::thread::spawn(move || work(&profile, &options, &shared, &tx))
        };
        LiveSweep {
            plan,
            options,
            shared,
            worker: Some(worker),
        }
    }

    /// The planned cells, in run order.
    pub fn keys(&self) -> impl Iterator<Item = &CellKey> {
        self.plan.cells.iter().map(|c| &c.key)
    }

    /// A cell is being run (or jobs are waiting).
    pub fn busy(&self) -> bool {
        let s = lock(&self.shared.0);
        s.busy || !s.jobs.is_empty()
    }

    fn push(&self, job: Job) {
        let (m, cv) = &*self.shared;
        lock(m).jobs.push_back(job);
        cv.notify_all();
    }

    fn control(&self) -> &RunControl {
        &self.options.control
    }

    /// Stops the sweep after its running cell and waits for the worker to end.
    pub fn shutdown(mut self) {
        self.options.cancel.store(true, Ordering::SeqCst);
        self.control().pause.store(false, Ordering::SeqCst);
        {
            let (m, cv) = &*self.shared;
            let mut s = lock(m);
            s.jobs.clear();
            s.closing = true;
            cv.notify_all();
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Control for LiveSweep {
    fn command(&mut self, cmd: &Command) -> Result<String, String> {
        let control = self.control();
        match cmd {
            Command::Start => {
                if control.pause.swap(false, Ordering::SeqCst) {
                    return Ok("resumed".into());
                }
                if self.busy() {
                    return Err("the sweep is already running".into());
                }
                self.push(Job {
                    plan: self.plan.clone(),
                    rerun: Vec::new(),
                });
                Ok("started: cells recorded ok in the results folder are kept".into())
            }
            Command::Pause => {
                if !self.busy() {
                    return Err("nothing is running".into());
                }
                control.pause.store(true, Ordering::SeqCst);
                Ok("pausing after the current cell (s resumes)".into())
            }
            Command::Cancel => {
                if !self.busy() {
                    return Err("nothing is running".into());
                }
                lock(&self.shared.0).jobs.clear();
                self.options.cancel.store(true, Ordering::SeqCst);
                control.pause.store(false, Ordering::SeqCst);
                Ok("cancelling: the running cell ends first".into())
            }
            Command::Rerun(key) => {
                let mut plan = self.plan.clone();
                plan.cells.retain(|c| &c.key == key);
                if plan.cells.is_empty() {
                    return Err(format!("{key} is not in this profile's plan"));
                }
                let queued = self.busy();
                self.push(Job {
                    plan,
                    rerun: vec![key.clone()],
                });
                Ok(if queued {
                    format!("{key} will run again after the current job")
                } else {
                    format!("running {key} again")
                })
            }
            Command::SetRuntimes(kinds) => {
                let off: Vec<_> = crate::runtime::RuntimeKind::ALL
                    .into_iter()
                    .filter(|k| !kinds.contains(k))
                    .collect();
                let words = if off.is_empty() {
                    "every runtime runs".to_string()
                } else {
                    let names: Vec<&str> = off.iter().map(|k| k.name()).collect();
                    format!("cells on {} are skipped from now on", names.join(", "))
                };
                *control
                    .off
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = off;
                Ok(words)
            }
            Command::Export(_) => Err("export is done by the shell".into()),
        }
    }
}

/// The worker: waits for jobs and runs them, each into the same results folder.
fn work(
    profile: &Profile,
    options: &RunOptions,
    shared: &(Mutex<Shared>, Condvar),
    tx: &Sender<Msg>,
) {
    let (m, cv) = shared;
    loop {
        let (job, later) = {
            let mut s = lock(m);
            loop {
                if s.closing {
                    return;
                }
                if let Some(job) = s.jobs.pop_front() {
                    s.busy = true;
                    s.runs += 1;
                    break (job, s.runs > 1);
                }
                s = cv.wait(s).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        options.cancel.store(false, Ordering::SeqCst);
        let options = RunOptions {
            resume: options.resume || later,
            rerun: job.rerun,
            ..options.clone()
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_plan(profile, &job.plan, &options, &mut |e| {
                let _ = tx.send(Msg::Sweep(e));
            })
        }));
        let failure = match result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the sweep stopped on an internal error (a panic)".to_string()),
        };
        if let Some(e) = failure {
            let _ = tx.send(Msg::SweepFailed(e));
        }
        lock(m).busy = false;
    }
}
