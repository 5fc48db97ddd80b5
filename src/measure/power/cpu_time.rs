//! CPU time used by this process or thread (user + system), from `getrusage(2)`.

use super::super::MeasureError;

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every thread of this process (`RUSAGE_SELF`), including runtime thread pools.
    Process,
    /// The calling thread only (`RUSAGE_THREAD`, Linux).
    Thread,
}

/// User plus system CPU seconds used so far by `scope`.
pub fn cpu_seconds(scope: Scope) -> Result<f64, MeasureError> {
    let who = match scope {
        Scope::Process => libc::RUSAGE_SELF,
        Scope::Thread => libc::RUSAGE_THREAD,
    };
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a complete `rusage` through the valid, writable pointer it is
    // given and touches nothing else; `who` is one of the two values Linux accepts.
    let rc = unsafe { libc::getrusage(who, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(MeasureError::Io {
            path: "getrusage(2)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: getrusage returned 0, so it initialised the whole struct.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn spinning_uses_cpu_time_and_sleeping_does_not() {
        let t0 = cpu_seconds(Scope::Thread).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(60) {
            std::hint::spin_loop();
        }
        let t1 = cpu_seconds(Scope::Thread).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let t2 = cpu_seconds(Scope::Thread).unwrap();
        // Spinning 60 ms costs up to 60 ms of CPU (less when preempted on a busy machine).
        assert!(t1 - t0 > 0.005 && t1 - t0 < 0.08, "{}", t1 - t0);
        assert!(t2 - t1 < 0.01, "{}", t2 - t1);
        assert!(cpu_seconds(Scope::Process).unwrap() >= t2);
    }
}
