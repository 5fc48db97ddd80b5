//! CPU time used by this process or thread, from `clock_gettime(2)`.
//!
//! `CLOCK_PROCESS_CPUTIME_ID` and `CLOCK_THREAD_CPUTIME_ID` count the scheduler's exact run
//! time in nanoseconds. `getrusage(2)` would do too, but Linux scales its user/system split from
//! timer-tick samples, which is off by a tick (4 ms at HZ=250) or more on a loop of a few
//! milliseconds.

use super::super::MeasureError;

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every thread of this process, including runtime thread pools (and any other thread the
    /// process runs meanwhile).
    Process,
    /// The calling thread only.
    Thread,
}

/// CPU seconds used so far by `scope`.
pub fn cpu_seconds(scope: Scope) -> Result<f64, MeasureError> {
    let clock = match scope {
        Scope::Process => libc::CLOCK_PROCESS_CPUTIME_ID,
        Scope::Thread => libc::CLOCK_THREAD_CPUTIME_ID,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec` through the valid, exclusive pointer it is
    // given and touches nothing else; `clock` is one of the two CPU-time clocks POSIX defines.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Err(MeasureError::Io {
            path: "clock_gettime(2)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn spinning_uses_cpu_time_and_sleeping_does_not() {
        // Spin until the thread clock has advanced 20 ms (a busy machine preempts the loop, so
        // the wall time it takes varies); the clock can never run ahead of the wall clock.
        let t0 = cpu_seconds(Scope::Thread).unwrap();
        let start = Instant::now();
        let mut t1 = t0;
        while t1 - t0 < 0.02 && start.elapsed() < Duration::from_secs(20) {
            for _ in 0..10_000 {
                std::hint::spin_loop();
            }
            t1 = cpu_seconds(Scope::Thread).unwrap();
        }
        let wall = start.elapsed().as_secs_f64();
        assert!(
            t1 - t0 >= 0.02 && t1 - t0 <= wall + 0.002,
            "{} in {wall}",
            t1 - t0
        );
        std::thread::sleep(Duration::from_millis(60));
        let t2 = cpu_seconds(Scope::Thread).unwrap();
        assert!(t2 - t1 < 0.005, "{}", t2 - t1);
        assert!(cpu_seconds(Scope::Process).unwrap() >= t2);
    }
}
