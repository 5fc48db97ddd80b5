//! Resident memory: the peak (VmHWM) of running a variant, current RSS, system totals, and the
//! sizes callers know (model file, packed weights, arena).
//!
//! Linux keeps one high-water mark of resident memory per process. Writing `5` to
//! `/proc/self/clear_refs` (Linux ≥ 4.0) resets it to the current RSS, so a peak read after a
//! reset belongs to what ran since. Where the reset fails (an older kernel, a restricted
//! /proc), the figure is the peak of the whole process so far, and is labelled so.

use super::{read_text, MeasureError};
use serde::{Deserialize, Serialize};
use std::path::Path;

const STATUS: &str = "/proc/self/status";
const CLEAR_REFS: &str = "/proc/self/clear_refs";

/// What a peak-RSS figure covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeakScope {
    /// The peak since the high-water mark was reset (the start of the cell).
    SinceReset,
    /// The reset failed: the peak of the whole process so far.
    ProcessPeakSoFar,
}

/// The two resident-memory figures of `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    /// VmHWM: peak resident set, bytes.
    pub peak_rss_bytes: u64,
    /// VmRSS: current resident set, bytes.
    pub rss_bytes: u64,
}

/// Memory totals of the whole machine (from `sysinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemMemory {
    /// Installed memory, bytes.
    pub total_bytes: u64,
    /// Memory available to new work without swapping, bytes.
    pub available_bytes: u64,
    /// Memory in use, bytes.
    pub used_bytes: u64,
}

/// Sizes that only the caller knows, carried into the record beside the measured figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelSizes {
    /// Bytes of the model file on disk (with its external data, if any).
    pub model_file_bytes: u64,
    /// Bytes of weights after packing for the kernels (native runtime), if known.
    pub packed_weight_bytes: Option<u64>,
    /// Bytes of the planned activation arena (native runtime), if known.
    pub arena_bytes: Option<u64>,
}

/// One memory reading of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// Peak resident memory, bytes; what it covers is in `peak_scope`.
    pub peak_rss_bytes: u64,
    /// What the peak covers.
    pub peak_scope: PeakScope,
    /// A label for the peak figure fit to print: "peak RSS since reset" or "process peak RSS so
    /// far (reset unavailable: …)".
    pub peak_label: String,
    /// Resident memory when read, bytes.
    pub rss_bytes: u64,
    /// Whole-machine totals.
    pub system: SystemMemory,
}

/// Tracks the peak resident memory of one cell: created at the cell's start (resetting the
/// high-water mark), read at its end.
#[derive(Debug, Clone)]
pub struct PeakTracker {
    reset_error: Option<String>,
}

impl PeakTracker {
    /// Resets the process's high-water mark and remembers whether that worked.
    pub fn start() -> Self {
        release_free_heap();
        Self {
            reset_error: reset_peak().err().map(|e| e.to_string()),
        }
    }

    /// Whether the reset worked, so that the peak covers only this cell.
    pub fn reset_worked(&self) -> bool {
        self.reset_error.is_none()
    }

    /// Reads peak and current RSS and the system totals.
    pub fn read(&self) -> Result<MemoryReport, MeasureError> {
        let status = read_status()?;
        let (peak_scope, peak_label) = match &self.reset_error {
            None => (PeakScope::SinceReset, "peak RSS since reset".to_string()),
            Some(why) => (
                PeakScope::ProcessPeakSoFar,
                format!("process peak RSS so far (reset unavailable: {why})"),
            ),
        };
        Ok(MemoryReport {
            peak_rss_bytes: status.peak_rss_bytes,
            peak_scope,
            peak_label,
            rss_bytes: status.rss_bytes,
            system: system_memory(),
        })
    }
}

/// Hands heap pages the allocator holds but no longer uses back to the system (glibc keeps
/// freed memory for reuse), so that a reset high-water mark starts from live memory: in a sweep
/// the variant built just before a cell (calibration, QAT) would otherwise count as the cell's.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only releases free pages; glibc allows it at
    // any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resets this process's peak-RSS mark to its current RSS (writes `5` to
/// `/proc/self/clear_refs`, Linux ≥ 4.0).
pub fn reset_peak() -> Result<(), MeasureError> {
    std::fs::write(CLEAR_REFS, "5").map_err(|source| MeasureError::Io {
        path: CLEAR_REFS.into(),
        source,
    })
}

/// Reads VmHWM and VmRSS of this process.
pub fn read_status() -> Result<ProcStatus, MeasureError> {
    let path = Path::new(STATUS);
    parse_status(&read_text(path)?, path)
}

/// Parses the VmHWM and VmRSS lines (`VmHWM:     1612 kB`) of a `/proc/PID/status` text;
/// `path` names the source in errors.
pub fn parse_status(text: &str, path: &Path) -> Result<ProcStatus, MeasureError> {
    let field = |name: &str| -> Result<u64, MeasureError> {
        let bad = |message: String| MeasureError::Parse {
            path: path.to_path_buf(),
            field: name.to_string(),
            message,
        };
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| bad("missing".into()))?;
        let kib = line
            .trim()
            .strip_suffix("kB")
            .ok_or_else(|| bad(format!("`{}` is not in kB", line.trim())))?;
        let kib: u64 = kib
            .trim()
            .parse()
            .map_err(|e| bad(format!("`{}`: {e}", kib.trim())))?;
        kib.checked_mul(1024)
            .ok_or_else(|| bad(format!("{kib} kB overflows")))
    };
    Ok(ProcStatus {
        peak_rss_bytes: field("VmHWM")?,
        rss_bytes: field("VmRSS")?,
    })
}

/// Total, available and used memory of the machine.
pub fn system_memory() -> SystemMemory {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    SystemMemory {
        total_bytes: sys.total_memory(),
        available_bytes: sys.available_memory(),
        used_bytes: sys.used_memory(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn peak_resets_after_a_large_allocation_is_freed() {
        let tracker = PeakTracker::start();
        assert!(
            tracker.reset_worked(),
            "clear_refs reset failed on this kernel"
        );
        let before = tracker.read().unwrap();
        let mut block = vec![0u8; 100 * MB as usize];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&block);
        let during = tracker.read().unwrap();
        assert_eq!(during.peak_scope, PeakScope::SinceReset);
        assert_eq!(during.peak_label, "peak RSS since reset");
        assert!(
            during.peak_rss_bytes >= before.rss_bytes + 95 * MB,
            "{before:?} {during:?}"
        );
        drop(block);
        let after_free = read_status().unwrap();
        assert!(after_free.peak_rss_bytes >= before.rss_bytes + 95 * MB);
        let tracker = PeakTracker::start();
        let after_reset = tracker.read().unwrap();
        assert!(
            after_reset.peak_rss_bytes + 50 * MB < during.peak_rss_bytes,
            "{during:?} {after_reset:?}"
        );
        assert!(after_reset.system.total_bytes >= after_reset.system.available_bytes);
        assert!(after_reset.system.total_bytes > 0);
    }

    #[test]
    fn failed_reset_is_labelled_as_process_peak() {
        let tracker = PeakTracker {
            reset_error: Some("kernel before 4.0".into()),
        };
        let r = tracker.read().unwrap();
        assert!(!tracker.reset_worked());
        assert_eq!(r.peak_scope, PeakScope::ProcessPeakSoFar);
        assert_eq!(
            r.peak_label,
            "process peak RSS so far (reset unavailable: kernel before 4.0)"
        );
    }

    #[test]
    fn parses_status_and_names_bad_fields() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1612 kB\nVmRSS:\t    1500 kB\n";
        let s = parse_status(text, Path::new("status")).unwrap();
        assert_eq!(s.peak_rss_bytes, 1612 * 1024);
        assert_eq!(s.rss_bytes, 1500 * 1024);
        let err = parse_status("VmHWM: 12 kB\n", Path::new("status")).unwrap_err();
        assert_eq!(err.to_string(), "status: field `VmRSS`: missing");
        let err = parse_status("VmHWM: x kB\nVmRSS: 1 kB", Path::new("s")).unwrap_err();
        assert!(
            err.to_string().starts_with("s: field `VmHWM`: `x`"),
            "{err}"
        );
    }
}
