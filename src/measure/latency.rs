//! Timing a closure: warm-up until the timing settles, then a timed loop to a run count or a
//! time budget, summarised with [`stats::summarize`].
//!
//! The closure is one inference (usually `Runtime::run` on a batch); its result is kept alive
//! until after the clock stops reading it, so output deallocation is part of the timed run just
//! as it is for a real caller. Load and plan (cold start) is a different closure timed by
//! [`cold_start`], never mixed into the steady-state figures.

use super::power::cpu_time::{cpu_seconds, Scope};
use super::stats::{self, StatsConfig, Summary};
use super::MeasureError;
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Most runs a loop may be asked for: bounds the sample buffer whatever a profile says.
pub const MAX_RUNS: usize = 10_000_000;

/// When the warm-up stops. After at least `min_runs` runs and two full windows, the median of
/// the last `window` runs is compared with the median of the `window` runs before them; the
/// warm-up has settled when they differ by at most `tolerance` (relative). It stops anyway after
/// `max_runs` runs or `max_time`, and says that it did not settle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupConfig {
    /// Runs always made before settling is judged.
    pub min_runs: usize,
    /// Runs per window (k).
    pub window: usize,
    /// Largest relative change of the window median that counts as settled (e.g. 0.02).
    pub tolerance: f64,
    /// Cap on warm-up runs.
    pub max_runs: usize,
    /// Cap on warm-up time.
    pub max_time: Duration,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            min_runs: 5,
            window: 5,
            tolerance: 0.02,
            max_runs: 500,
            max_time: Duration::from_secs(5),
        }
    }
}

/// How long the timed loop runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Exactly this many runs.
    Runs(usize),
    /// Until `time` has passed and at least `min_runs` were made, or `max_runs` were made.
    Time {
        /// Wall-clock budget of the loop.
        time: Duration,
        /// Runs made even when the budget is spent sooner.
        min_runs: usize,
        /// Runs after which the loop stops even within the budget.
        max_runs: usize,
    },
}

/// Everything [`measure`] needs: warm-up, budget, the recorded parameters and the statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyConfig {
    /// Warm-up rule.
    pub warmup: WarmupConfig,
    /// Timed-loop budget.
    pub budget: Budget,
    /// Items per run (the batch the closure processes); recorded, and used for throughput.
    pub batch_size: usize,
    /// Threads the closure computes with; recorded only (the caller sets up the pool).
    pub threads: usize,
    /// Bootstrap and noise settings.
    pub stats: StatsConfig,
    /// Whether the report carries every timed sample (for later re-analysis).
    pub keep_samples: bool,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            warmup: WarmupConfig::default(),
            budget: Budget::Time {
                time: Duration::from_secs(2),
                min_runs: 10,
                max_runs: 100_000,
            },
            batch_size: 1,
            threads: 1,
            stats: StatsConfig::default(),
            keep_samples: false,
        }
    }
}

impl LatencyConfig {
    /// Checks every setting, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), MeasureError> {
        let bad = |field, message: &str| {
            Err(MeasureError::Config {
                field,
                message: message.to_string(),
            })
        };
        let w = &self.warmup;
        if w.window == 0 {
            return bad("warmup.window", "must be at least 1");
        }
        if !(w.tolerance.is_finite() && w.tolerance >= 0.0) {
            return bad("warmup.tolerance", "must be a finite number ≥ 0");
        }
        if w.max_runs < w.min_runs || w.max_runs > MAX_RUNS {
            return bad("warmup.max_runs", "must be ≥ min_runs and ≤ 10,000,000");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.threads == 0 {
            return bad("threads", "must be at least 1");
        }
        match self.budget {
            Budget::Runs(n) if n == 0 || n > MAX_RUNS => {
                bad("budget.runs", "must be between 1 and 10,000,000")
            }
            Budget::Time {
                min_runs, max_runs, ..
            } if min_runs == 0 || max_runs < min_runs || max_runs > MAX_RUNS => bad(
                "budget.max_runs",
                "need 1 ≤ min_runs ≤ max_runs ≤ 10,000,000",
            ),
            _ => Ok(()),
        }
    }
}

/// What the warm-up did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupReport {
    /// Runs made.
    pub runs: usize,
    /// Wall-clock seconds spent.
    pub seconds: f64,
    /// Whether the settling rule was met (false: stopped by a cap).
    pub settled: bool,
    /// Milliseconds of the very first run (caches, page faults and lazy init included).
    pub first_run_ms: f64,
}

/// The result of [`measure`]: the steady-state latency of one run and the throughput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Items per run, as configured.
    pub batch_size: usize,
    /// Threads, as configured.
    pub threads: usize,
    /// The warm-up.
    pub warmup: WarmupReport,
    /// Timed runs.
    pub runs: usize,
    /// Wall-clock seconds of the timed loop (timer overhead included).
    pub loop_seconds: f64,
    /// Latency of one run (one batch) in milliseconds.
    pub latency_ms: Summary,
    /// Items per second over the timed loop: batch_size × runs / loop_seconds.
    pub throughput_per_s: f64,
    /// Share of one core used over the timed loop: CPU seconds / wall seconds, of the calling
    /// thread when `threads` is 1, else of the whole process; below [`crate::measure::stats::NoiseRule::min_cpu_share`] the run is flagged
    /// noisy because it waited for a CPU. `None` when the CPU clock could not be read.
    pub cpu_share: Option<f64>,
    /// Every timed run in milliseconds, in order, when `keep_samples` was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_ms: Option<Vec<f64>>,
}

/// The time of one load-and-plan (cold start), measured apart from inference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColdStartReport {
    /// Milliseconds from calling the load closure to its return.
    pub load_ms: f64,
}

/// Which part of a measurement a failed run belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Loading and planning.
    ColdStart,
    /// The warm-up runs.
    Warmup,
    /// The timed loop.
    Timed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::ColdStart => "cold start",
            Phase::Warmup => "warm-up",
            Phase::Timed => "timed",
        })
    }
}

/// A measurement failed: the work returned an error, or the settings or samples were bad.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError<E> {
    /// The closure under measurement failed.
    #[error("{phase} run {run} failed: {source}")]
    Work {
        /// Where it failed.
        phase: Phase,
        /// The run's index within that phase, from 0.
        run: usize,
        /// The closure's error.
        #[source]
        source: E,
    },
    /// A setting or the statistics failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
}

/// Something that runs alongside the timed loop only (not the warm-up), such as an energy
/// meter: `started` is called just before the first timed run, `finished` just after the last.
pub trait TimedLoopObserver {
    /// The timed loop is about to start.
    fn started(&mut self);
    /// The timed loop has ended.
    fn finished(&mut self);
}

/// The observer that does nothing, for [`measure`].
impl TimedLoopObserver for () {
    fn started(&mut self) {}
    fn finished(&mut self) {}
}

/// Times `load` once: the cold start of a variant (reading, planning, packing), kept apart from
/// steady-state inference. Returns what `load` built.
pub fn cold_start<T, E>(
    load: impl FnOnce() -> Result<T, E>,
) -> Result<(T, ColdStartReport), LatencyError<E>> {
    let start = Instant::now();
    let built = load().map_err(|source| LatencyError::Work {
        phase: Phase::ColdStart,
        run: 0,
        source,
    })?;
    let load_ms = millis(start.elapsed());
    Ok((built, ColdStartReport { load_ms }))
}

/// Warms up and times `work` as `config` says. `work` is one run of one batch.
pub fn measure<T, E>(
    config: &LatencyConfig,
    work: impl FnMut() -> Result<T, E>,
) -> Result<LatencyReport, LatencyError<E>> {
    measure_observed(config, &mut (), work)
}

/// [`measure`], telling `observer` when the timed loop starts and ends (e.g. to meter energy
/// over exactly the timed runs). `finished` is called even when a timed run fails.
pub fn measure_observed<T, E>(
    config: &LatencyConfig,
    observer: &mut dyn TimedLoopObserver,
    mut work: impl FnMut() -> Result<T, E>,
) -> Result<LatencyReport, LatencyError<E>> {
    config.validate()?;
    let warmup = warm_up(&config.warmup, &mut work)?;

    let (min_runs, max_runs, time) = match config.budget {
        Budget::Runs(n) => (n, n, Duration::ZERO),
        Budget::Time {
            time,
            min_runs,
            max_runs,
        } => (min_runs, max_runs, time),
    };
    let mut samples_ms = Vec::with_capacity(max_runs.min(1 << 16));
    observer.started();
    // One compute thread runs on the caller's thread (the native engine inline, ONNX Runtime with
    // one intra-op thread): its own clock is exact and blind to other threads of the process.
    // With a pool, the process clock is the only one that sees the workers.
    let scope = if config.threads == 1 {
        Scope::Thread
    } else {
        Scope::Process
    };
    let cpu_start = cpu_seconds(scope).ok();
    let loop_start = Instant::now();
    let outcome = loop {
        match timed_run(&mut work) {
            Ok(ms) => samples_ms.push(ms),
            Err(source) => {
                break Err(LatencyError::Work {
                    phase: Phase::Timed,
                    run: samples_ms.len(),
                    source,
                })
            }
        }
        let runs = samples_ms.len();
        if runs >= max_runs || (runs >= min_runs && loop_start.elapsed() >= time) {
            break Ok(loop_start.elapsed());
        }
    };
    let cpu_end = cpu_seconds(scope).ok();
    observer.finished();
    let loop_time = outcome?;

    let mut latency_ms = stats::summarize(&samples_ms, &config.stats)?;
    let runs = samples_ms.len();
    let loop_seconds = loop_time.as_secs_f64();
    let cpu_share = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) if loop_seconds > 0.0 => Some((b - a) / loop_seconds),
        _ => None,
    };
    latency_ms.noisy |= cpu_share.is_some_and(|share| share < config.stats.noise.min_cpu_share);
    Ok(LatencyReport {
        batch_size: config.batch_size,
        threads: config.threads,
        warmup,
        runs,
        loop_seconds,
        latency_ms,
        throughput_per_s: (config.batch_size * runs) as f64 / loop_seconds,
        cpu_share,
        samples_ms: config.keep_samples.then_some(samples_ms),
    })
}

/// One run, in milliseconds; the result is dropped inside the timed span.
fn timed_run<T, E>(work: &mut impl FnMut() -> Result<T, E>) -> Result<f64, E> {
    let start = Instant::now();
    let out = work()?;
    drop(black_box(out));
    Ok(millis(start.elapsed()))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn warm_up<T, E>(
    config: &WarmupConfig,
    work: &mut impl FnMut() -> Result<T, E>,
) -> Result<WarmupReport, LatencyError<E>> {
    let start = Instant::now();
    let mut times = Vec::with_capacity(config.max_runs.min(1 << 12));
    let mut settled = false;
    while times.len() < config.max_runs && (times.len() < config.min_runs || !settled) {
        if times.len() >= config.min_runs && start.elapsed() >= config.max_time {
            break;
        }
        let ms = timed_run(work).map_err(|source| LatencyError::Work {
            phase: Phase::Warmup,
            run: times.len(),
            source,
        })?;
        times.push(ms);
        settled = window_settled(&times, config.window, config.tolerance);
    }
    Ok(WarmupReport {
        runs: times.len(),
        seconds: start.elapsed().as_secs_f64(),
        settled,
        first_run_ms: times.first().copied().unwrap_or(0.0),
    })
}

/// Whether the median of the last `window` times is within `tolerance` (relative) of the median
/// of the `window` before them. False until two windows are full.
fn window_settled(times: &[f64], window: usize, tolerance: f64) -> bool {
    let n = times.len();
    if n < 2 * window {
        return false;
    }
    let median = |slice: &[f64]| {
        let mut v = slice.to_vec();
        v.sort_by(f64::total_cmp);
        stats::percentile_sorted(&v, 0.5)
    };
    let last = median(&times[n - window..]);
    let previous = median(&times[n - 2 * window..n - window]);
    (last - previous).abs() <= tolerance * previous
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Busy-waits until `d` has passed on the monotonic clock: a steady closure whose time does
    /// not grow when the thread is preempted mid-way.
    fn spin(d: Duration) -> Result<(), std::convert::Infallible> {
        let start = Instant::now();
        while start.elapsed() < d {
            std::hint::spin_loop();
        }
        Ok(())
    }

    fn quick(budget: Budget) -> LatencyConfig {
        LatencyConfig {
            warmup: WarmupConfig {
                min_runs: 3,
                window: 3,
                tolerance: 0.05,
                max_runs: 30,
                max_time: Duration::from_secs(1),
            },
            budget,
            batch_size: 4,
            threads: 1,
            stats: StatsConfig {
                bootstrap_resamples: 500,
                ..StatsConfig::default()
            },
            keep_samples: true,
        }
    }

    #[test]
    fn steady_spin_gives_plausible_quiet_statistics() {
        // The machine is shared (and the other tests run beside this one): a preemption that
        // straddles a run's deadline adds a whole time slice to it. Short runs make that rare
        // enough to stay out of the p90, and three attempts ride out a busy moment; a spin
        // that was noisy every time means the noise rule or the loop is wrong.
        let mut last = None;
        for _ in 0..3 {
            let cfg = quick(Budget::Runs(400));
            let r = measure(&cfg, || spin(Duration::from_micros(50))).unwrap();
            let s = &r.latency_ms;
            assert_eq!((r.runs, s.n), (400, 400));
            assert!(s.min >= 0.05, "{s:?}");
            assert!(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
            assert!(s.median_ci95.low <= s.p50 && s.p50 <= s.median_ci95.high);
            assert!((s.min..=s.max).contains(&s.mean));
            assert!(r.warmup.runs >= 3 && r.warmup.first_run_ms >= 0.05);
            assert_eq!(r.samples_ms.as_ref().map(Vec::len), Some(400));
            // 4 items per 50 µs run: at most 80,000 per second.
            assert!(r.throughput_per_s <= 80_000.0, "{}", r.throughput_per_s);
            // The flag is the spread rule or the CPU-share rule, nothing else.
            let rule = cfg.stats.noise;
            let spread_noisy =
                s.tail_spread > rule.max_tail_spread || s.ci_half_width > rule.max_ci_half_width;
            let starved = r.cpu_share.is_some_and(|c| c < rule.min_cpu_share);
            assert_eq!(s.noisy, spread_noisy || starved, "{r:?}");
            // The spread of a steady spin is quiet (other tests may still take the CPU between
            // runs, which the CPU-share rule rightly reports).
            if !spread_noisy {
                assert!(s.p50 < 0.06, "{s:?}");
                return;
            }
            last = Some(r);
        }
        panic!("a steady 50 µs spin had a noisy spread three times: {last:?}");
    }

    #[test]
    fn sleep_is_timed_at_least_as_long_as_asked() {
        let r = measure(&quick(Budget::Runs(20)), || {
            std::thread::sleep(Duration::from_millis(2));
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        assert!(r.latency_ms.min >= 2.0, "{:?}", r.latency_ms);
        assert!(r.latency_ms.p50 < 20.0, "{:?}", r.latency_ms);
        // Sleeping runs leave the CPU to others: the loop used far less than a core, which the
        // noise rule reports even though every run took the same time.
        let share = r
            .cpu_share
            .expect("the process CPU clock is readable on Linux");
        assert!(share < 0.5, "{share}");
        assert!(r.latency_ms.noisy);
    }

    #[test]
    fn time_budget_stops_after_the_budget() {
        let budget = Budget::Time {
            time: Duration::from_millis(60),
            min_runs: 3,
            max_runs: 1_000_000,
        };
        let r = measure(&quick(budget), || spin(Duration::from_millis(1))).unwrap();
        assert!(r.loop_seconds >= 0.06, "{}", r.loop_seconds);
        assert!((3..=61).contains(&r.runs), "{}", r.runs);
        // A count cap wins over the time budget.
        let capped = Budget::Time {
            time: Duration::from_secs(60),
            min_runs: 1,
            max_runs: 5,
        };
        let r = measure(&quick(capped), || spin(Duration::from_micros(10))).unwrap();
        assert_eq!(r.runs, 5);
    }

    #[test]
    fn observer_sees_only_the_timed_runs() {
        struct Marks<'a> {
            calls: &'a Cell<usize>,
            at_start: Option<usize>,
            at_end: Option<usize>,
        }
        impl TimedLoopObserver for Marks<'_> {
            fn started(&mut self) {
                self.at_start = Some(self.calls.get());
            }
            fn finished(&mut self) {
                self.at_end = Some(self.calls.get());
            }
        }
        let calls = Cell::new(0);
        let mut marks = Marks {
            calls: &calls,
            at_start: None,
            at_end: None,
        };
        let r = measure_observed(&quick(Budget::Runs(17)), &mut marks, || {
            calls.set(calls.get() + 1);
            spin(Duration::from_micros(50))
        })
        .unwrap();
        assert_eq!(marks.at_start, Some(r.warmup.runs));
        assert_eq!(marks.at_end, Some(r.warmup.runs + 17));
    }

    #[test]
    fn errors_name_the_phase_and_run() {
        let mut n = 0;
        let err = measure(&quick(Budget::Runs(10)), || {
            n += 1;
            if n == 3 {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(
            err,
            LatencyError::Work {
                phase: Phase::Warmup,
                run: 2,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "warm-up run 2 failed: an error occurred when formatting an argument"
        );
        let mut cfg = quick(Budget::Runs(10));
        cfg.warmup.min_runs = 0;
        cfg.warmup.max_runs = 0;
        let mut n = 0;
        let err = measure(&cfg, || {
            n += 1;
            if n == 5 {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(
            err,
            LatencyError::Work {
                phase: Phase::Timed,
                run: 4,
                ..
            }
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut cfg = quick(Budget::Runs(0));
        assert!(matches!(
            measure(&cfg, || spin(Duration::ZERO)),
            Err(LatencyError::Measure(MeasureError::Config {
                field: "budget.runs",
                ..
            }))
        ));
        cfg.budget = Budget::Runs(1);
        cfg.batch_size = 0;
        assert!(cfg.validate().is_err());
        cfg.batch_size = 1;
        cfg.warmup.tolerance = f64::NAN;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn settling_compares_consecutive_window_medians() {
        assert!(!window_settled(&[5.0, 4.0, 3.0], 2, 0.1));
        // Medians 9.5 then 5.5: not settled; then 5.5 and 5.25: within 5%.
        assert!(!window_settled(&[10.0, 9.0, 5.0, 6.0], 2, 0.05));
        assert!(window_settled(&[10.0, 9.0, 5.0, 6.0, 5.0, 5.5], 2, 0.05));
    }

    #[test]
    fn warmup_stops_at_its_cap_when_times_keep_moving() {
        let mut cfg = quick(Budget::Runs(1));
        cfg.warmup.tolerance = 0.0;
        cfg.warmup.max_runs = 12;
        let mut d = 50u64;
        let r = measure(&cfg, || {
            d += 40; // every run 40 µs longer: never settles at zero tolerance
            spin(Duration::from_micros(d))
        })
        .unwrap();
        assert_eq!(r.warmup.runs, 12);
        assert!(!r.warmup.settled);
    }

    #[test]
    fn cold_start_is_timed_apart_and_returns_the_value() {
        let (v, report) = cold_start(|| {
            spin(Duration::from_millis(3))?;
            Ok::<_, std::convert::Infallible>(7)
        })
        .unwrap();
        assert_eq!(v, 7);
        assert!(report.load_ms >= 3.0);
        let err = cold_start(|| Err::<(), _>(std::fmt::Error)).unwrap_err();
        assert!(matches!(
            err,
            LatencyError::Work {
                phase: Phase::ColdStart,
                ..
            }
        ));
    }
}
