//! Mixed-precision search: the per-layer assignment over FP32 / INT8 / 4-bit / binary that
//! keeps the held-out accuracy drop within a budget and minimises a measured objective.
//!
//! The method, in four steps:
//!
//! 1. **Sensitivity** (ZeroQ, Cai et al., CVPR 2020, §3.3): for every layer and every lower
//!    level it can take, the mean KL divergence of the output distribution between FP32 and
//!    the model with only that layer at that level, on held-out samples (run in parallel).
//! 2. **Greedy lowering**: from all-FP32, repeatedly take the not-yet-frozen layer whose next
//!    lower level has the smallest sensitivity (least sensitive first, the ordering HAWQ, Dong
//!    et al., ICCV 2019, uses to allot bits; quench orders by the measured KL rather than a
//!    Hessian spectrum), lower it, and *verify* the whole assignment on the held-out samples:
//!    within the budget it is kept, otherwise the layer is frozen at its current level.
//! 3. **Refinement**: from the best feasible assignment by the objective, try every
//!    one-level move of one layer (up or down) not yet tried, keep the first that stays within
//!    the budget and improves the measured objective by more than its noise margin, and start
//!    again, until no move helps.
//! 4. **Report**: the Pareto front (held-out drop vs objective) of every candidate tried, the
//!    chosen one (best objective within budget), and its accuracy on the test split, which is
//!    read only here, after every decision.
//!
//! Every candidate is exported and its objective measured: bytes of the written file, or
//! latency/energy timed against FP32 in interleaved rounds (see [`super::objective`]). The
//! best model so far is always on disk at the output path (written to a temporary file, synced
//! and renamed over it), so stopping the search at any moment loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::eval::{evaluate, metrics, output_index, Dataset};
use crate::explore::objective::{open_checked, Objective, Timed, Timer};
use crate::explore::sensitivity::{jobs_for, only_layer, parallel};
use crate::explore::setup::{Score, Setup, BATCH};
use crate::explore::spec::SearchSpec;
use crate::explore::{ExploreError, ExploreEvent, Level};
use crate::graph::Graph;
use crate::runtime::RuntimeKind;

/// Which runtime latency and energy are timed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// The native engine when it runs every level the search may assign, else ONNX Runtime.
    Auto,
    /// This runtime only.
    Fixed(RuntimeKind),
}

/// How to search: the request, where the result goes, and how to stop it from outside.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// What the search is asked to do (its `setup` part is what the [`Setup`] was made from).
    pub spec: SearchSpec,
    /// Where the chosen (and, meanwhile, the best so far) model is written.
    pub out: PathBuf,
    /// Set from outside (a Ctrl-C) to stop like a time budget does: the best so far is kept
    /// and reported.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// One assignment tried.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    /// Order tried, from 0.
    pub index: usize,
    /// Which step proposed it: `seed`, `greedy` or `refine`.
    pub step: String,
    /// Level of each layer, in [`Setup::layers`] order.
    pub levels: Vec<Level>,
    /// The assignment in words.
    pub assignment: String,
    /// Held-out score.
    pub score: Score,
    /// Within the budget.
    pub feasible: bool,
    /// Bytes of the exported model file.
    pub bytes: u64,
    /// Timing against FP32: every candidate under a timed objective; under the size
    /// objective, the chosen one and all-INT8 (timed after the search).
    pub timed: Option<Timed>,
    /// The objective value (bytes, or the ratio to FP32).
    pub objective: f64,
}

/// The chosen model against FP32 (and all-INT8) on the test split, on ONNX Runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestCheck {
    /// Test samples.
    pub samples: usize,
    /// FP32 accuracy.
    pub fp32_accuracy: Option<f64>,
    /// Chosen model's accuracy.
    pub chosen_accuracy: Option<f64>,
    /// All-INT8 model's accuracy, when it was tried.
    pub int8_accuracy: Option<f64>,
    /// Chosen model's top-1 agreement with FP32.
    pub agreement: f64,
    /// Chosen model's mean KL against FP32, nats.
    pub kl: f64,
    /// FP32 accuracy minus the chosen model's (disagreement without labels).
    pub drop: f64,
    /// Whether that drop is within the budget.
    pub within_budget: bool,
}

/// What `quench search` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchReport {
    /// The FP32 model.
    pub model: String,
    /// The budget, as a fraction.
    pub budget: f64,
    /// What was minimised.
    pub objective: Objective,
    /// The held-out samples, in words.
    pub split: String,
    /// How the activation ranges were found (once).
    pub ranges: String,
    /// Where latency/energy were timed.
    pub runtime: RuntimeKind,
    /// Why the native engine was not used, when it was not.
    pub runtime_note: Option<String>,
    /// Layer names, in assignment order.
    pub layers: Vec<String>,
    /// Only-this-layer held-out KL of each layer at each lower level (step 1).
    pub sensitivity: Vec<BTreeMap<Level, f64>>,
    /// Every candidate, in order tried.
    pub candidates: Vec<Candidate>,
    /// Indices of the Pareto-optimal candidates (drop vs objective), by objective.
    pub front: Vec<usize>,
    /// Index of the chosen candidate.
    pub chosen: usize,
    /// Index of the all-INT8 candidate, when tried.
    pub all_int8: Option<usize>,
    /// The written model.
    pub output: PathBuf,
    /// The chosen model on the test split.
    pub test: TestCheck,
    /// Why the search stopped early, if it did.
    pub stopped: Option<String>,
    /// Seconds the search took (test pass excluded).
    pub seconds: f64,
}

/// The search's mutable state: candidates tried, the best so far, the clock.
struct State<'a> {
    setup: &'a Setup,
    config: &'a SearchConfig,
    on_event: &'a (dyn Fn(&ExploreEvent) + Sync),
    /// Times every candidate under a timed objective; `None` under the size objective.
    timer: Option<Timer>,
    scratch: PathBuf,
    candidates: Vec<Candidate>,
    seen: BTreeMap<Vec<Level>, usize>,
    best: Option<usize>,
    started: Instant,
    stopped: Option<String>,
}

impl State<'_> {
    fn out_of_time(&mut self) -> bool {
        let cancelled = self
            .config
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
        if cancelled && self.stopped.is_none() {
            self.stopped = Some(format!(
                "interrupted after {} candidates",
                self.candidates.len()
            ));
            (self.on_event)(&ExploreEvent::Warning {
                message: self.stopped.clone().unwrap_or_default(),
            });
        }
        if let (Some(limit), None) = (self.config.spec.time_budget, &self.stopped) {
            if self.started.elapsed() >= limit {
                self.stopped = Some(format!(
                    "time budget of {} s reached after {} candidates",
                    limit.as_secs(),
                    self.candidates.len()
                ));
                (self.on_event)(&ExploreEvent::Warning {
                    message: self.stopped.clone().unwrap_or_default(),
                });
            }
        }
        self.stopped.is_some()
    }

    /// Scores, measures and records `levels` (once per assignment); writes it out when it is
    /// the best feasible so far. Returns its index.
    fn try_levels(&mut self, levels: Vec<Level>, step: &str) -> Result<usize, ExploreError> {
        if let Some(&i) = self.seen.get(&levels) {
            return Ok(i);
        }
        let graph = self.setup.quantize(&self.setup.scheme(&levels))?;
        let score = self.setup.score(&graph)?;
        save_synced(&graph, &self.scratch)?;
        let bytes = file_bytes(&self.scratch)?;
        let timed = match &mut self.timer {
            Some(t) => Some(t.time(&self.scratch)?),
            None => None,
        };
        let objective = match (self.config.spec.objective, &timed) {
            (Objective::Size, _) | (_, None) => bytes as f64,
            (Objective::Latency, Some(t)) => t.latency_ratio,
            (Objective::Energy, Some(t)) => t.energy_ratio.unwrap_or(t.latency_ratio),
        };
        let index = self.candidates.len();
        let feasible = score.drop <= self.config.spec.budget;
        let assignment = assignment(self.setup, &levels);
        (self.on_event)(&ExploreEvent::CandidateTried {
            index,
            assignment: assignment.clone(),
            drop: score.drop,
            feasible,
            objective: Some(objective),
        });
        self.candidates.push(Candidate {
            index,
            step: step.to_string(),
            levels: levels.clone(),
            assignment,
            score,
            feasible,
            bytes,
            timed,
            objective,
        });
        self.seen.insert(levels, index);
        if feasible && self.improves(index) {
            self.best = Some(index);
            std::fs::rename(&self.scratch, &self.config.out).map_err(|source| {
                ExploreError::Io {
                    path: self.config.out.clone(),
                    source,
                }
            })?;
            (self.on_event)(&ExploreEvent::NewBest {
                index,
                path: self.config.out.display().to_string(),
                objective,
            });
        }
        Ok(index)
    }

    /// Whether candidate `i` beats the best so far by more than the objective's margin (ties
    /// within the margin go to the smaller held-out drop).
    fn improves(&self, i: usize) -> bool {
        let Some(b) = self.best else {
            return true;
        };
        let (c, b) = (&self.candidates[i], &self.candidates[b]);
        let margin = self.config.spec.objective.margin();
        c.objective < b.objective * (1.0 - margin)
            || (c.objective <= b.objective * (1.0 + margin)
                && c.score.drop < b.score.drop
                && c.objective <= b.objective)
    }
}

/// The assignment in words: `layer=level` for every layer.
pub fn assignment(setup: &Setup, levels: &[Level]) -> String {
    setup
        .layers
        .iter()
        .zip(levels)
        .map(|(l, v)| format!("{}={}", l.name, v.name()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn file_bytes(path: &Path) -> Result<u64, ExploreError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| ExploreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `graph` to `path` and syncs it to disk (a rename of it is then atomic and durable).
fn save_synced(graph: &Graph, path: &Path) -> Result<(), ExploreError> {
    let bytes = crate::onnx::to_bytes(graph)?;
    let io = |source| ExploreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Indices of the candidates no other candidate beats on both held-out drop and objective,
/// sorted by objective ([`crate::report::pareto::front`] with the drop as a negated value).
pub fn pareto_front(candidates: &[Candidate]) -> Vec<usize> {
    let points: Vec<(f64, f64)> = candidates
        .iter()
        .map(|c| (c.objective, -c.score.drop))
        .collect();
    crate::report::pareto::front(&points)
        .into_iter()
        .map(|i| candidates[i].index)
        .collect()
}

/// The first of `assignments` (after FP32) the native engine cannot run, with its error.
fn native_refuses(
    setup: &Setup,
    config: &SearchConfig,
    scratch: &Path,
    input: &crate::tensor::Tensor,
    assignments: &[Vec<Level>],
) -> Result<Option<(usize, String)>, ExploreError> {
    let name = setup.data.input_name();
    let native = RuntimeKind::Native;
    if let Err(e) = open_checked(native, &setup.model, config.spec.threads, name, input) {
        return Ok(Some((usize::MAX, format!("FP32: {e}"))));
    }
    for (i, levels) in assignments.iter().enumerate() {
        save_synced(&setup.quantize(&setup.scheme(levels))?, scratch)?;
        if let Err(e) = open_checked(native, scratch, config.spec.threads, name, input) {
            return Ok(Some((i, e.to_string())));
        }
    }
    Ok(None)
}

/// Every layer that takes `level` at it, the others FP32.
fn uniform(setup: &Setup, level: Level) -> Vec<Level> {
    setup
        .layers
        .iter()
        .map(|l| {
            if level.applies_to(&l.op_type) {
                level
            } else {
                Level::Fp32
            }
        })
        .collect()
}

/// For a timed objective: the runtime every candidate is timed on, the levels the search may
/// use, and a note when `Auto` did not get the native engine with every level. Under `Auto`
/// the native engine is kept when it runs FP32 and at least one lower level; levels it cannot
/// run are dropped (and named), since timing candidates on two runtimes would compare unlike
/// things.
fn pick_runtime(
    setup: &Setup,
    config: &SearchConfig,
    scratch: &Path,
    input: &crate::tensor::Tensor,
) -> Result<(RuntimeKind, Vec<Level>, Option<String>), ExploreError> {
    if let RuntimeChoice::Fixed(k) = config.spec.runtime {
        return Ok((k, config.spec.levels.clone(), None));
    }
    let lower: Vec<Level> = config
        .spec
        .levels
        .iter()
        .copied()
        .filter(|l| *l != Level::Fp32)
        .collect();
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for &level in &lower {
        match native_refuses(setup, config, scratch, input, &[uniform(setup, level)])? {
            Some((usize::MAX, e)) => {
                return Ok((
                    RuntimeKind::Ort,
                    config.spec.levels.clone(),
                    Some(format!("native engine cannot run {e}")),
                ))
            }
            Some((_, e)) => refused.push(format!("{} ({e})", level.name())),
            None => kept.push(level),
        }
    }
    match (kept.is_empty(), refused.is_empty()) {
        (_, true) => Ok((RuntimeKind::Native, config.spec.levels.clone(), None)),
        (true, false) => Ok((
            RuntimeKind::Ort,
            config.spec.levels.clone(),
            Some(format!(
                "native engine cannot run any lower level: {}",
                refused.join("; ")
            )),
        )),
        (false, false) => Ok((
            RuntimeKind::Native,
            kept,
            Some(format!(
                "levels left out because the native engine cannot run them (--runtime ort \
                 includes them): {}",
                refused.join("; ")
            )),
        )),
    }
}

/// Runs the search (see the module doc). `on_event` hears every step and candidate.
pub fn run(
    setup: &Setup,
    config: &SearchConfig,
    on_event: &(dyn Fn(&ExploreEvent) + Sync),
) -> Result<SearchReport, ExploreError> {
    if !(config.spec.budget >= 0.0 && config.spec.budget < 1.0) {
        return Err(ExploreError::Invalid(format!(
            "budget {} is not a fraction in [0, 1)",
            config.spec.budget
        )));
    }
    if config.spec.threads == 0 || config.spec.batch == 0 || config.spec.rounds == 0 {
        return Err(ExploreError::Invalid(
            "--threads, --batch and --rounds must be at least 1".into(),
        ));
    }
    let started = Instant::now();
    let out_dir = config
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = config
        .out
        .file_name()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let scratch = out_dir.join(format!(".{stem}.candidate.tmp"));
    let result = search(setup, config, on_event, &scratch, started);
    // The scratch file is gone after a rename; otherwise it holds a losing candidate.
    let _ = std::fs::remove_file(&scratch);
    result
}

fn search(
    setup: &Setup,
    config: &SearchConfig,
    on_event: &(dyn Fn(&ExploreEvent) + Sync),
    scratch: &Path,
    started: Instant,
) -> Result<SearchReport, ExploreError> {
    let step = |m: &str| {
        on_event(&ExploreEvent::Step {
            message: m.to_string(),
        })
    };
    let n = setup.layers.len();
    // The runtime first: under a timed objective it can narrow the levels.
    let input = setup
        .data
        .batch(0..config.spec.batch.min(setup.data.len()))?;
    let timed = config.spec.objective != Objective::Size;
    let (runtime, search_levels, mut runtime_note) = if timed {
        step("choosing the runtime to time on");
        pick_runtime(setup, config, scratch, &input)?
    } else {
        (RuntimeKind::Ort, config.spec.levels.clone(), None)
    };
    if let Some(n) = &runtime_note {
        on_event(&ExploreEvent::Warning {
            message: format!("timing on {runtime}: {n}"),
        });
    }
    let new_timer = |kind: RuntimeKind, input: crate::tensor::Tensor| {
        Timer::new(
            kind,
            &setup.model,
            config.spec.threads,
            config.spec.rounds,
            config.spec.objective == Objective::Energy,
            setup.data.input_name(),
            input,
        )
    };
    let timer = if timed {
        Some(new_timer(runtime, input.clone())?)
    } else {
        None
    };
    let allowed = |l: usize, v: Level| {
        v == Level::Fp32 || (search_levels.contains(&v) && v.applies_to(&setup.layers[l].op_type))
    };
    let lower = |l: usize, v: Level| {
        let mut v = v.lower(&setup.layers[l].op_type);
        while let Some(x) = v {
            if allowed(l, x) {
                return Some(x);
            }
            v = x.lower(&setup.layers[l].op_type);
        }
        None
    };
    let higher = |l: usize, v: Level| {
        let mut v = v.higher(&setup.layers[l].op_type);
        while let Some(x) = v {
            if allowed(l, x) {
                return Some(x);
            }
            v = x.higher(&setup.layers[l].op_type);
        }
        None
    };

    // Step 1: only-this-layer sensitivity at every allowed lower level.
    let tasks: Vec<(usize, Level)> = (0..n)
        .flat_map(|l| search_levels.iter().map(move |&v| (l, v)))
        .filter(|&(l, v)| v != Level::Fp32 && allowed(l, v))
        .collect();
    on_event(&ExploreEvent::LayersStarted {
        total: tasks.len(),
        layers: n,
        samples: setup.data.len(),
    });
    let done = std::sync::atomic::AtomicUsize::new(0);
    let scores = parallel(jobs_for(setup, config.spec.jobs), &tasks, |&(l, v)| {
        let (score, _) = only_layer(setup, l, v.precision(setup.calibration))?;
        on_event(&ExploreEvent::LayerScored {
            done: done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            total: tasks.len(),
            layer: setup.layers[l].name.clone(),
            variant: format!("only {}", v.name()),
            drop: score.drop,
        });
        Ok(score)
    })?;
    let mut sensitivity: Vec<BTreeMap<Level, f64>> = vec![BTreeMap::new(); n];
    for (&(l, v), s) in tasks.iter().zip(&scores) {
        sensitivity[l].insert(v, s.kl);
    }

    let mut st = State {
        setup,
        config,
        on_event,
        timer,
        scratch: scratch.to_path_buf(),
        candidates: Vec::new(),
        seen: BTreeMap::new(),
        best: None,
        started,
        stopped: None,
    };

    // Seeds: FP32 (always feasible, so a model is on disk from the start) and all-INT8.
    let fp32 = vec![Level::Fp32; n];
    st.try_levels(fp32.clone(), "seed")?;
    let int8: Vec<Level> = (0..n)
        .map(|l| {
            if allowed(l, Level::Int8) {
                Level::Int8
            } else {
                Level::Fp32
            }
        })
        .collect();
    let all_int8 = if int8 != fp32 && !st.out_of_time() {
        Some(st.try_levels(int8, "seed")?)
    } else {
        None
    };

    // Step 2: greedy lowering, least sensitive move first, each verified.
    let mut current = fp32;
    let mut frozen: BTreeSet<usize> = BTreeSet::new();
    while !st.out_of_time() {
        let next = (0..n)
            .filter(|l| !frozen.contains(l))
            .filter_map(|l| lower(l, current[l]).map(|v| (l, v)))
            .min_by(|a, b| {
                let kl = |&(l, v): &(usize, Level)| {
                    sensitivity[l].get(&v).copied().unwrap_or(f64::INFINITY)
                };
                kl(a).total_cmp(&kl(b)).then(a.0.cmp(&b.0))
            });
        let Some((l, v)) = next else { break };
        let mut cand = current.clone();
        cand[l] = v;
        let i = st.try_levels(cand.clone(), "greedy")?;
        if st.candidates[i].feasible {
            current = cand;
        } else {
            frozen.insert(l);
        }
    }

    // Step 3: refinement around the best by single-layer moves.
    'refine: while !st.out_of_time() {
        let Some(b) = st.best else { break };
        let base = st.candidates[b].levels.clone();
        let mut moves: Vec<(f64, Vec<Level>)> = Vec::new();
        for l in 0..n {
            for v in [lower(l, base[l]), higher(l, base[l])]
                .into_iter()
                .flatten()
            {
                let mut cand = base.clone();
                cand[l] = v;
                if !st.seen.contains_key(&cand) {
                    let kl = sensitivity[l].get(&v).copied().unwrap_or(0.0);
                    moves.push((kl, cand));
                }
            }
        }
        moves.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, cand) in moves {
            if st.out_of_time() {
                break 'refine;
            }
            st.try_levels(cand, "refine")?;
            if st.best != Some(b) {
                continue 'refine;
            }
        }
        break;
    }

    let chosen = st.best.ok_or_else(|| {
        ExploreError::Invalid("no candidate was within the budget (FP32 always is)".into())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    // Under the size objective, time the chosen model and all-INT8 now: on the native engine
    // when it runs both (and `Auto`), else on the runtime asked for or ORT.
    let runtime = match (&st.timer, config.spec.runtime) {
        (Some(_), _) => runtime,
        (None, RuntimeChoice::Fixed(k)) => k,
        (None, RuntimeChoice::Auto) => {
            let timed: Vec<Vec<Level>> = std::iter::once(chosen)
                .chain(all_int8)
                .map(|i| st.candidates[i].levels.clone())
                .collect();
            match native_refuses(setup, config, scratch, &input, &timed)? {
                None => RuntimeKind::Native,
                Some((i, e)) => {
                    let what = match i {
                        usize::MAX => "FP32".to_string(),
                        0 => "the chosen model".to_string(),
                        _ => "the all-INT8 model".to_string(),
                    };
                    runtime_note = Some(format!("native engine cannot run {what}: {e}"));
                    RuntimeKind::Ort
                }
            }
        }
    };
    let mut timer = match st.timer.take() {
        Some(t) => t,
        None => new_timer(runtime, input)?,
    };
    for i in std::iter::once(chosen).chain(all_int8) {
        if st.candidates[i].timed.is_none() {
            step(&format!("timing candidate #{i} on {runtime}"));
            let graph = setup.quantize(&setup.scheme(&st.candidates[i].levels))?;
            save_synced(&graph, scratch)?;
            st.candidates[i].timed = Some(timer.time(scratch)?);
        }
    }
    step("scoring the chosen model on the test split");
    let chosen_graph = crate::onnx::load(&config.out)?;
    let int8_graph = match all_int8 {
        Some(i) => Some(setup.quantize(&setup.scheme(&st.candidates[i].levels))?),
        None => None,
    };
    let test = test_check(setup, config, &chosen_graph, int8_graph.as_ref())?;
    Ok(SearchReport {
        model: setup.model.display().to_string(),
        budget: config.spec.budget,
        objective: config.spec.objective,
        split: setup.split.clone(),
        ranges: setup.ranges_note.clone(),
        runtime,
        runtime_note,
        layers: setup.layers.iter().map(|l| l.name.clone()).collect(),
        sensitivity,
        front: pareto_front(&st.candidates),
        candidates: st.candidates,
        chosen,
        all_int8,
        output: config.out.clone(),
        test,
        stopped: st.stopped,
        seconds,
    })
}

/// The chosen model (and all-INT8) against FP32 on the test split, on ONNX Runtime.
fn test_check(
    setup: &Setup,
    config: &SearchConfig,
    chosen: &Graph,
    int8: Option<&Graph>,
) -> Result<TestCheck, ExploreError> {
    let m = &setup.manifest;
    let test = Dataset::load(&m.data.test, &m.input, config.spec.test_limit)?;
    let run = |g: &Graph| -> Result<crate::eval::EvalResult, ExploreError> {
        let mut rt = crate::quant::pipeline::session(g)?;
        let out = output_index(&m.output, crate::runtime::Runtime::output_names(&rt))?;
        Ok(evaluate(&mut rt, &test, BATCH, out)?)
    };
    let fp32 = run(&setup.graph)?;
    let c = run(chosen)?;
    let int8_accuracy = match int8 {
        Some(g) => run(g)?.accuracy,
        None => None,
    };
    let agreement = metrics::agreement(&fp32.outputs, &c.outputs)?;
    let drop = match (fp32.accuracy, c.accuracy) {
        (Some(f), Some(a)) => f - a,
        _ => 1.0 - agreement,
    };
    Ok(TestCheck {
        samples: test.len(),
        fp32_accuracy: fp32.accuracy,
        chosen_accuracy: c.accuracy,
        int8_accuracy,
        agreement,
        kl: metrics::mean_kl(&fp32.outputs, &c.outputs, m.output.kind)?,
        drop,
        within_budget: drop <= config.spec.budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(index: usize, drop: f64, objective: f64) -> Candidate {
        Candidate {
            index,
            step: "seed".into(),
            levels: vec![],
            assignment: String::new(),
            score: Score {
                accuracy: None,
                agreement: 1.0 - drop,
                kl: 0.0,
                drop,
            },
            feasible: true,
            bytes: 0,
            timed: None,
            objective,
        }
    }

    #[test]
    fn front_keeps_only_undominated_points_by_objective() {
        let c = vec![
            cand(0, 0.0, 100.0),
            cand(1, 0.001, 50.0),
            cand(2, 0.002, 60.0), // dominated by 1
            cand(3, 0.01, 20.0),
            cand(4, 0.001, 50.0), // equal to 1: neither dominates
        ];
        assert_eq!(pareto_front(&c), vec![3, 1, 4, 0]);
    }
}
