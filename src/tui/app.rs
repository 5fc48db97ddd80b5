//! The app state and its one update function: a message (a key, a sweep event, the answer of a
//! command) in, the new state and at most one [`Command`] for the shell out. Nothing here draws
//! or does I/O, so every key and event sequence is testable on its own.

use crate::explore::saved::SavedSearch;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::grid::{cell_key, score, ColKey, Cost, Grid, RowKey};
use super::input::{action, Action};
use super::theme::Theme;
use crate::runtime::RuntimeKind;
use crate::sweep::event::{Dropped, Event, Phase};
use crate::sweep::record::{CellKey, Record};

/// The screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// The variant × runtime matrix.
    Matrix,
    /// Everything recorded for the selected cell.
    Detail,
    /// Accuracy against a cost, with the Pareto front.
    Plot,
    /// Per-layer error of the selected variant.
    Layers,
}

impl Screen {
    /// Every screen, in tab order.
    pub const ALL: [Screen; 4] = [Screen::Matrix, Screen::Detail, Screen::Plot, Screen::Layers];

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            Screen::Matrix => "Matrix",
            Screen::Detail => "Detail",
            Screen::Plot => "Trade-off",
            Screen::Layers => "Layers",
        }
    }

    fn index(self) -> usize {
        Screen::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// A message to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// The sweep said something.
    Sweep(Event),
    /// The shell's answer to a command (done, or why not), shown in the status line.
    Notice(String),
    /// The sweep stopped on an error before or between cells.
    SweepFailed(String),
    /// The terminal changed size (the next frame fits the new size; the state is unchanged).
    Resize,
    /// A signal (SIGTERM, SIGHUP, SIGINT) asked the program to end: quit as `q` does.
    Quit,
}

/// What the app asks the shell (and through it the sweep runner) to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start the sweep, or resume it after a pause.
    Start,
    /// Stop after the cell that is running.
    Pause,
    /// Stop now, marking the running cell cancelled.
    Cancel,
    /// Measure this cell again.
    Rerun(CellKey),
    /// Run only cells on these runtimes from now on.
    SetRuntimes(Vec<RuntimeKind>),
    /// Write a report of these cells' records.
    Export(Vec<CellKey>),
}

/// Which runtimes are shown (and run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtimes {
    /// Native and ONNX Runtime.
    Both,
    /// Native only.
    Native,
    /// ONNX Runtime only.
    Ort,
}

impl Runtimes {
    fn next(self) -> Runtimes {
        match self {
            Runtimes::Both => Runtimes::Native,
            Runtimes::Native => Runtimes::Ort,
            Runtimes::Ort => Runtimes::Both,
        }
    }

    /// The runtimes included.
    pub fn kinds(self) -> Vec<RuntimeKind> {
        match self {
            Runtimes::Both => RuntimeKind::ALL.to_vec(),
            Runtimes::Native => vec![RuntimeKind::Native],
            Runtimes::Ort => vec![RuntimeKind::Ort],
        }
    }

    /// `native+ort`, `native`, `ort`.
    pub fn label(self) -> &'static str {
        match self {
            Runtimes::Both => "native+ort",
            Runtimes::Native => "native",
            Runtimes::Ort => "ort",
        }
    }
}

/// The cell being measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    /// Position in the plan.
    pub index: usize,
    /// Cells in the plan.
    pub total: usize,
    /// The cell.
    pub key: CellKey,
    /// What it is doing (none before its first phase event).
    pub phase: Option<Phase>,
    /// How far the phase is, when known.
    pub fraction: Option<f64>,
    /// The runner's note on the phase.
    pub note: Option<String>,
}

/// Where the sweep stands.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepState {
    /// Not started (or past results only).
    Idle,
    /// Cells are being run.
    Running,
    /// The sweep ended; the counts are the runner's.
    Finished {
        /// Cells ok.
        ok: usize,
        /// Cells failed.
        failed: usize,
        /// Cells skipped.
        skipped: usize,
        /// Cells cancelled.
        cancelled: usize,
        /// Seconds the sweep took.
        seconds: f64,
    },
    /// The sweep stopped on an error.
    Failed(String),
}

/// Everything the screens show.
#[derive(Debug, Clone)]
pub struct App {
    /// What is shown: `profile NAME` or the results file.
    pub title: String,
    /// A sweep runner is attached (run control works); false for past results.
    pub live: bool,
    /// Colours (or none, under `NO_COLOR`).
    pub theme: Theme,
    /// The screen shown.
    pub screen: Screen,
    /// The help overlay is open.
    pub help: bool,
    /// The trade-off plot's x axis.
    pub axis: Cost,
    /// Runtimes shown and run.
    pub runtimes: Runtimes,
    /// Row filter text (case-insensitive substring of the row label).
    pub filter: String,
    /// The filter prompt has the keyboard.
    pub editing_filter: bool,
    /// The cell being measured.
    pub running: Option<Running>,
    /// Where the sweep stands.
    pub state: SweepState,
    /// A pause was asked for.
    pub pause_requested: bool,
    /// The last message for the user (warning, command answer).
    pub notice: Option<String>,
    /// Combinations the plan left out, with reasons.
    pub dropped: Vec<Dropped>,
    /// The app should end.
    pub quit: bool,
    /// Mixed-precision searches saved beside the results (`search.jsonl`), one per model.
    pub searches: Vec<SavedSearch>,
    /// The search front view is open (over the current screen).
    pub front: bool,
    grid: Grid,
    row: usize,
    col: usize,
}

impl App {
    /// An empty app titled `title`; `live` when a sweep runner answers its commands.
    pub fn new(title: impl Into<String>, live: bool, theme: Theme) -> App {
        App {
            title: title.into(),
            live,
            theme,
            screen: Screen::Matrix,
            help: false,
            axis: Cost::Latency,
            runtimes: Runtimes::Both,
            filter: String::new(),
            editing_filter: false,
            running: None,
            state: SweepState::Idle,
            pause_requested: false,
            notice: None,
            dropped: Vec::new(),
            quit: false,
            searches: Vec::new(),
            front: false,
            grid: Grid::default(),
            row: 0,
            col: 0,
        }
    }

    /// An app showing past records (no sweep attached).
    pub fn with_records(
        title: impl Into<String>,
        records: impl IntoIterator<Item = Record>,
        theme: Theme,
    ) -> App {
        let mut app = App::new(title, false, theme);
        app.add_records(records);
        app
    }

    /// The saved search of `model`, if any.
    pub fn search_of(&self, model: &str) -> Option<&SavedSearch> {
        self.searches.iter().find(|s| s.name == model)
    }

    /// Adds past records (the latest record of a key wins).
    pub fn add_records(&mut self, records: impl IntoIterator<Item = Record>) {
        for r in records {
            self.grid.record(r);
        }
    }

    /// Shows `keys` as planned cells (dots) before the sweep starts.
    pub fn plan<'a>(&mut self, keys: impl IntoIterator<Item = &'a CellKey>) {
        for k in keys {
            self.grid.plan(k);
        }
    }

    /// The matrix.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Rows passing the filter.
    pub fn visible_rows(&self) -> Vec<&RowKey> {
        let needle = self.filter.to_lowercase();
        self.grid
            .rows()
            .iter()
            .filter(|r| r.label().to_lowercase().contains(&needle))
            .collect()
    }

    /// Columns of the runtimes shown.
    pub fn visible_cols(&self) -> Vec<ColKey> {
        let kinds = self.runtimes.kinds();
        self.grid
            .cols()
            .iter()
            .filter(|c| kinds.contains(&c.runtime))
            .copied()
            .collect()
    }

    /// The selection as (row, column) indices into the visible rows and columns.
    pub fn selection(&self) -> (usize, usize) {
        let rows = self.visible_rows().len();
        let cols = self.visible_cols().len();
        (
            self.row.min(rows.saturating_sub(1)),
            self.col.min(cols.saturating_sub(1)),
        )
    }

    /// The selected cell's key, when the matrix is not empty.
    pub fn selected(&self) -> Option<CellKey> {
        let (r, c) = self.selection();
        let rows = self.visible_rows();
        let cols = self.visible_cols();
        Some(cell_key(rows.get(r)?, cols.get(c)?))
    }

    /// The selected cell's record, when it has one.
    pub fn selected_record(&self) -> Option<&Record> {
        self.grid.get(&self.selected()?)
    }

    /// Planned (or recorded) cells with a record, and all planned (or recorded) cells.
    pub fn progress(&self) -> (usize, usize) {
        let mut done = 0;
        let mut all = 0;
        for r in self.grid.rows() {
            for c in self.grid.cols() {
                if self.grid.is_known(r, c) {
                    all += 1;
                    done += usize::from(self.grid.get(&cell_key(r, c)).is_some());
                }
            }
        }
        (done, all)
    }

    /// A cell is in its timed loop: the shell does not redraw on its own meanwhile.
    pub fn timing(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.phase == Some(Phase::Timing))
    }

    /// The plot's points for the selected model: ok records with a score and a cost on the
    /// current axis, cheapest first.
    pub fn plot_points(&self) -> Vec<&Record> {
        let Some(key) = self.selected() else {
            return Vec::new();
        };
        let shown = self.visible_cols();
        let rows = self.visible_rows();
        let mut pts: Vec<&Record> = self
            .grid
            .model_records(&key.model)
            .into_iter()
            .filter(|r| {
                shown.contains(&ColKey::of(&r.key))
                    && rows.contains(&&RowKey::of(&r.key))
                    && score(r).is_some()
                    && self.axis.of(r).is_some()
            })
            .collect();
        pts.sort_by(|a, b| {
            let (x, y) = (self.axis.of(a), self.axis.of(b));
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        });
        pts
    }

    fn select_key(&mut self, key: &CellKey) {
        let (r, c) = (RowKey::of(key), ColKey::of(key));
        if let Some(i) = self.visible_rows().iter().position(|x| **x == r) {
            self.row = i;
        }
        if let Some(j) = self.visible_cols().iter().position(|x| *x == c) {
            self.col = j;
        }
    }

    fn move_selection(&mut self, dr: isize, dc: isize) {
        let (r, c) = self.selection();
        let rows = self.visible_rows().len();
        let cols = self.visible_cols().len();
        self.row = r.saturating_add_signed(dr).min(rows.saturating_sub(1));
        self.col = c.saturating_add_signed(dc).min(cols.saturating_sub(1));
    }

    /// Along the plot's points (cheapest to dearest).
    fn move_along_points(&mut self, step: isize) {
        let pts = self.plot_points();
        let sel = self.selected();
        let next = match pts.iter().position(|r| Some(&r.key) == sel.as_ref()) {
            Some(i) => i.checked_add_signed(step).and_then(|j| pts.get(j)),
            None => pts.first(),
        };
        if let Some(key) = next.map(|r| r.key.clone()) {
            self.select_key(&key);
        }
    }

    /// To the first row of the next (or previous) model.
    fn move_model(&mut self, step: isize) {
        let (r, _) = self.selection();
        let rows = self.visible_rows();
        let Some(current) = rows.get(r).map(|x| x.model.clone()) else {
            return;
        };
        let mut models: Vec<&str> = rows.iter().map(|x| x.model.as_str()).collect();
        models.dedup();
        let Some(i) = models.iter().position(|m| *m == current) else {
            return;
        };
        let Some(target) = i.checked_add_signed(step).and_then(|j| models.get(j)) else {
            return;
        };
        if let Some(first) = rows.iter().position(|x| x.model == *target) {
            self.row = first;
        }
    }

    fn not_live(&mut self, what: &str) -> Option<Command> {
        self.notice = Some(format!(
            "{what}: no sweep is attached (these are past results); open a profile with `quench tui PROFILE`"
        ));
        None
    }

    fn on_action(&mut self, a: Action) -> Option<Command> {
        if self.help && !matches!(a, Action::Help | Action::Back | Action::Quit) {
            return None;
        }
        match a {
            Action::Up if self.screen == Screen::Plot => self.move_model(-1),
            Action::Down if self.screen == Screen::Plot => self.move_model(1),
            Action::Left if self.screen == Screen::Plot => self.move_along_points(-1),
            Action::Right if self.screen == Screen::Plot => self.move_along_points(1),
            Action::Up => self.move_selection(-1, 0),
            Action::Down => self.move_selection(1, 0),
            Action::Left => self.move_selection(0, -1),
            Action::Right => self.move_selection(0, 1),
            Action::NextScreen => self.screen = Screen::ALL[(self.screen.index() + 1) % 4],
            Action::PrevScreen => self.screen = Screen::ALL[(self.screen.index() + 3) % 4],
            Action::Screen(i) => self.screen = Screen::ALL[i.min(3)],
            Action::Open => self.screen = Screen::Detail,
            Action::Back if self.help => self.help = false,
            Action::Back if self.front => self.front = false,
            Action::Front => self.front = !self.front,
            Action::Back => self.screen = Screen::Matrix,
            Action::Help => self.help = !self.help,
            Action::Quit => self.quit = true,
            Action::Axis => self.axis = self.axis.next(),
            Action::Filter => self.editing_filter = true,
            Action::ToggleRuntimes => {
                self.runtimes = self.runtimes.next();
                if self.live {
                    return Some(Command::SetRuntimes(self.runtimes.kinds()));
                }
            }
            Action::Export => {
                let keys: Vec<CellKey> = self
                    .visible_rows()
                    .iter()
                    .flat_map(|r| self.visible_cols().into_iter().map(|c| cell_key(r, &c)))
                    .filter(|k| self.grid.get(k).is_some())
                    .collect();
                if keys.is_empty() {
                    self.notice = Some("export: no records on screen".into());
                    return None;
                }
                return Some(Command::Export(keys));
            }
            Action::Start if !self.live => return self.not_live("start"),
            Action::Pause if !self.live => return self.not_live("pause"),
            Action::Cancel if !self.live => return self.not_live("cancel"),
            Action::Rerun if !self.live => return self.not_live("re-run"),
            Action::Start => {
                self.pause_requested = false;
                return Some(Command::Start);
            }
            Action::Pause => {
                self.pause_requested = true;
                return Some(Command::Pause);
            }
            Action::Cancel => return Some(Command::Cancel),
            Action::Rerun => return self.selected().map(Command::Rerun),
        }
        None
    }

    fn on_filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => self.editing_filter = false,
            KeyCode::Esc => {
                self.editing_filter = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) => self.filter.push(c),
            _ => {}
        }
        self.row = 0;
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::SweepStarted {
                profile,
                cells,
                dropped,
                ..
            } => {
                self.title = format!("profile {profile}");
                self.plan(&cells);
                if !dropped.is_empty() && self.dropped.is_empty() {
                    self.notice = Some(format!(
                        "{} combinations left out of the plan (see help)",
                        dropped.len()
                    ));
                }
                self.dropped = dropped;
                self.state = SweepState::Running;
            }
            Event::CellStarted { index, total, key } => {
                self.grid.plan(&key);
                self.state = SweepState::Running;
                self.running = Some(Running {
                    index,
                    total,
                    key,
                    phase: None,
                    fraction: None,
                    note: None,
                });
            }
            Event::CellPhase {
                index,
                phase,
                fraction,
                note,
            } => {
                if let Some(r) = self.running.as_mut().filter(|r| r.index == index) {
                    r.phase = Some(phase);
                    r.fraction = fraction;
                    r.note = note;
                }
            }
            Event::CellFinished { index, record } | Event::CellResumed { index, record } => {
                if self.running.as_ref().is_some_and(|r| r.index == index) {
                    self.running = None;
                }
                self.grid.record(*record);
            }
            Event::SweepFinished {
                ok,
                failed,
                skipped,
                cancelled,
                seconds,
            } => {
                self.running = None;
                self.pause_requested = false;
                self.state = SweepState::Finished {
                    ok,
                    failed,
                    skipped,
                    cancelled,
                    seconds,
                };
            }
            Event::Warning { message } => self.notice = Some(message),
        }
    }
}

/// Applies one message; returns what the shell should do, if anything.
pub fn update(app: &mut App, msg: Msg) -> Option<Command> {
    match msg {
        Msg::Key(key) => {
            let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                && matches!(key.code, KeyCode::Char('c'));
            if app.editing_filter && !ctrl_c {
                app.on_filter_key(key);
                return None;
            }
            action(key).and_then(|a| app.on_action(a))
        }
        Msg::Sweep(e) => {
            app.on_event(e);
            None
        }
        Msg::Notice(text) => {
            app.notice = Some(text);
            None
        }
        Msg::SweepFailed(error) => {
            app.running = None;
            app.state = SweepState::Failed(error);
            None
        }
        Msg::Resize => None,
        Msg::Quit => {
            app.quit = true;
            None
        }
    }
}
