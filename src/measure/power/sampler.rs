//! A thread that reads every sensor at a fixed interval while the timed loop runs, and turns the
//! readings into joules: counters by summing wrap-corrected differences, instantaneous power by
//! the trapezoidal rule over the sample times.

use super::cpu_time::{cpu_seconds, Scope};
use super::sensors::{Sensor, Value};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The energy one sensor saw between the first and last sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Integrated {
    /// Joules.
    pub joules: f64,
    /// Seconds between the first and last good sample.
    pub seconds: f64,
    /// Good samples.
    pub samples: usize,
    /// The first error, if any sample failed (the others bridge the gap).
    pub first_error: Option<String>,
}

/// Accumulates one sensor's samples.
#[derive(Debug, Clone)]
struct Accumulator {
    joules: f64,
    first: Option<Instant>,
    last: Option<(Instant, Value)>,
    samples: usize,
    first_error: Option<String>,
}

/// The energy, µJ, a counter gained from `before` to `after`, allowing one wrap at `max_range`.
/// `None` when it went backwards and the range is unknown.
pub(crate) fn counter_delta(before: u64, after: u64, max_range: Option<u64>) -> Option<u64> {
    if after >= before {
        Some(after - before)
    } else {
        max_range
            .filter(|&m| m >= before)
            .map(|m| m - before + after)
    }
}

impl Accumulator {
    fn new() -> Self {
        Self {
            joules: 0.0,
            first: None,
            last: None,
            samples: 0,
            first_error: None,
        }
    }

    fn take(&mut self, sensor: &Sensor, now: Instant) {
        let value = match sensor.read() {
            Ok(v) => v,
            Err(e) => return self.fail(e.to_string()),
        };
        if let Some((then, previous)) = self.last {
            match (previous, value) {
                (Value::Counter(a), Value::Counter(b)) => {
                    match counter_delta(a, b, sensor.max_range_uj()) {
                        Some(uj) => self.joules += uj as f64 * 1e-6,
                        None => {
                            // Unknown wrap: drop this interval, keep counting from here.
                            self.fail(format!(
                                "{}: counter went from {a} to {b} µJ with no known wrap range",
                                sensor.label
                            ));
                        }
                    }
                }
                (Value::Watts(a), Value::Watts(b)) => {
                    self.joules += (a + b) / 2.0 * (now - then).as_secs_f64();
                }
                _ => return self.fail(format!("{}: sensor changed kind", sensor.label)),
            }
        }
        self.first.get_or_insert(now);
        self.last = Some((now, value));
        self.samples += 1;
    }

    fn fail(&mut self, why: String) {
        self.first_error.get_or_insert(why);
    }

    fn finish(self) -> Integrated {
        let seconds = match (self.first, self.last) {
            (Some(a), Some((b, _))) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        Integrated {
            joules: self.joules,
            seconds,
            samples: self.samples,
            first_error: self.first_error,
        }
    }
}

fn sample_all(sensors: &[Sensor], accs: &mut [Accumulator]) {
    let now = Instant::now();
    for (sensor, acc) in sensors.iter().zip(accs.iter_mut()) {
        acc.take(sensor, now);
    }
}

/// The sampling thread, started with a first sample taken before `start` returns.
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<(Vec<Integrated>, Option<f64>)>,
}

impl Sampler {
    /// Samples `sensors` now, then every `interval` on a thread until [`Sampler::finish`].
    pub(crate) fn start(sensors: Vec<Sensor>, interval: Duration) -> Self {
        let mut accs: Vec<Accumulator> = sensors.iter().map(|_| Accumulator::new()).collect();
        sample_all(&sensors, &mut accs);
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                sample_all(&sensors, &mut accs);
            }
            sample_all(&sensors, &mut accs);
            let own_cpu = cpu_seconds(Scope::Thread).ok();
            (accs.into_iter().map(Accumulator::finish).collect(), own_cpu)
        });
        Self { stop, handle }
    }

    /// Takes a last sample, stops the thread and returns each sensor's energy (in the order
    /// given to `start`) and the CPU seconds the sampler itself used, when readable.
    pub(crate) fn finish(self) -> Result<(Vec<Integrated>, Option<f64>), String> {
        // A send error means the thread already ended, which `join` reports.
        let _ = self.stop.send(());
        self.handle
            .join()
            .map_err(|_| "the power sampler thread panicked".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_deltas_wrap_once() {
        assert_eq!(counter_delta(100, 250, None), Some(150));
        assert_eq!(counter_delta(900, 100, Some(1_000)), Some(200));
        assert_eq!(counter_delta(900, 100, None), None);
        // A range below the earlier reading is inconsistent, not a wrap.
        assert_eq!(counter_delta(900, 100, Some(800)), None);
    }
}
