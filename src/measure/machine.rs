//! The description of the machine and build a figure was measured on: CPU model and features,
//! cores and threads, frequency and governor, throttling, kernel and OS, quench's version and
//! git revision, and the ONNX Runtime version (filled in by the caller, who loaded it).
//!
//! Files are read under a root directory (`/` on a real machine) so that tests can build fake
//! trees; anything unreadable is left out (`None`/empty), never guessed. CPU features are the
//! exception: they come from the running CPU (`is_x86_feature_detected!` and its aarch64 twin),
//! which is what the kernels dispatch on.

use crate::kernels::{self, Isa};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// quench's version, from Cargo.toml.
pub const QUENCH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision quench was built from (`git rev-parse --short HEAD` at build time), or
/// "unknown".
pub const GIT_REVISION: &str = env!("QUENCH_GIT_REV");

/// Everything a record says about where it was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Host name (`/proc/sys/kernel/hostname`): what tells devices apart when records from
    /// several machines are merged into one report. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// CPU model: `model name` in /proc/cpuinfo, or on Arm the core named from `CPU part`
    /// (e.g. `Arm Cortex-A72`), else the `Model` line.
    pub cpu_model: Option<String>,
    /// Board model from the device tree (Raspberry Pi, Jetson), where there is one.
    pub board: Option<String>,
    /// Target architecture quench was built for (`x86_64`, `aarch64`).
    pub arch: String,
    /// SIMD features the running CPU has, of those that matter to the kernels.
    pub cpu_features: Vec<String>,
    /// The instruction set the kernels dispatched to in this process.
    pub kernel_isa: Isa,
    /// Logical CPUs the system has (processors in /proc/cpuinfo).
    pub logical_cores: Option<usize>,
    /// Logical CPUs this process may use (affinity and cgroup limits applied).
    pub available_parallelism: Option<usize>,
    /// Threads the measured runtime used (the caller's setting).
    pub threads_used: usize,
    /// Frequency scaling, where readable.
    pub frequency: Option<Frequency>,
    /// Throttling counters, where the system exposes them.
    pub throttle: Option<Throttle>,
    /// Kernel name and release, e.g. `Linux 6.1.0-18-amd64`.
    pub kernel: Option<String>,
    /// Operating system (`PRETTY_NAME` of /etc/os-release).
    pub os: Option<String>,
    /// quench's version.
    pub quench_version: String,
    /// quench's git revision, or "unknown".
    pub git_revision: String,
    /// ONNX Runtime's version, when it was loaded.
    pub ort_version: Option<String>,
}

/// CPU frequency and its governor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frequency {
    /// Where the figures come from: `cpufreq` (sysfs) or `cpuinfo` (/proc/cpuinfo "cpu MHz").
    pub source: String,
    /// Scaling governors in use (distinct, e.g. `["performance"]`); empty if not exposed.
    pub governors: Vec<String>,
    /// Current frequency of each CPU, MHz, in CPU order.
    pub current_mhz: Vec<f64>,
    /// Highest frequency the hardware allows, MHz, where exposed.
    pub max_mhz: Option<f64>,
}

/// Thermal or power throttling as the system reports it. Comparing `events` read before and
/// after a cell tells whether the cell itself was throttled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    /// The files read: `thermal_throttle` (x86 core/package counters) or
    /// `raspberry-pi get_throttled`.
    pub source: String,
    /// Throttling events since boot (x86: summed counters; Raspberry Pi: the number of
    /// "has occurred" bits set).
    pub events: u64,
    /// Whether throttling is active now, where the source says (Raspberry Pi only).
    pub throttled_now: Option<bool>,
}

impl MachineInfo {
    /// Describes this machine, reading files under `root`. `threads_used` and `ort_version`
    /// are the caller's, recorded as given.
    pub fn collect(root: &Path, threads_used: usize, ort_version: Option<String>) -> Self {
        let cpuinfo = read(root, "proc/cpuinfo").unwrap_or_default();
        Self {
            hostname: read(root, "proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty()),
            cpu_model: cpu_model(&cpuinfo),
            board: read(root, "proc/device-tree/model")
                .map(|m| m.trim_matches(['\0', ' ', '\n']).to_string())
                .filter(|m| !m.is_empty()),
            arch: std::env::consts::ARCH.to_string(),
            cpu_features: cpu_features(),
            kernel_isa: kernels::isa(),
            logical_cores: Some(cpuinfo_values(&cpuinfo, "processor").count()).filter(|&n| n > 0),
            available_parallelism: std::thread::available_parallelism().ok().map(usize::from),
            threads_used,
            frequency: frequency(root, &cpuinfo),
            throttle: read_throttle(root),
            kernel: kernel(root),
            os: os_name(root),
            quench_version: QUENCH_VERSION.to_string(),
            git_revision: GIT_REVISION.to_string(),
            ort_version,
        }
    }
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path)).ok()
}

fn read_trimmed<T: std::str::FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Values of `key: value` lines of /proc/cpuinfo, in order.
fn cpuinfo_values<'a>(cpuinfo: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cpuinfo.lines().filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Arm (implementer 0x41) core names by `CPU part`, for the cores quench's boards use.
const ARM_PARTS: &[(&str, &str)] = &[
    ("0xd03", "Cortex-A53"),
    ("0xd05", "Cortex-A55"),
    ("0xd08", "Cortex-A72"),
    ("0xd0b", "Cortex-A76"),
    ("0xd0c", "Neoverse-N1"),
    ("0xd40", "Neoverse-V1"),
    ("0xd41", "Cortex-A78"),
    ("0xd42", "Cortex-A78AE"),
    ("0xd49", "Neoverse-N2"),
];

/// `model name` (x86), else the Arm core from implementer and part, else the `Model` line.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    let first = |key| cpuinfo_values(cpuinfo, key).next();
    let arm = || {
        let implementer = first("CPU implementer")?;
        let part = first("CPU part")?;
        let known = ARM_PARTS.iter().find(|(p, _)| *p == part);
        Some(match known {
            Some((_, name)) if implementer == "0x41" => format!("Arm {name}"),
            _ => format!("Arm implementer {implementer} part {part}"),
        })
    };
    first("model name")
        .map(str::to_string)
        .or_else(arm)
        .or_else(|| first("Model").map(str::to_string))
}

/// CPU directories `cpuN` under `root`, sorted by N.
fn cpu_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join("sys/devices/system/cpu")) else {
        return Vec::new();
    };
    let mut cpus: Vec<(u32, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    cpus.sort_by_key(|(n, _)| *n);
    cpus.into_iter().map(|(_, p)| p).collect()
}

fn frequency(root: &Path, cpuinfo: &str) -> Option<Frequency> {
    let cpus = cpu_dirs(root);
    let khz_to_mhz = |khz: u64| khz as f64 / 1e3;
    let current: Vec<f64> = cpus
        .iter()
        .filter_map(|c| read_trimmed(&c.join("cpufreq/scaling_cur_freq")))
        .map(khz_to_mhz)
        .collect();
    let mut governors: Vec<String> = cpus
        .iter()
        .filter_map(|c| read_trimmed(&c.join("cpufreq/scaling_governor")))
        .collect();
    governors.sort();
    governors.dedup();
    let max_mhz = cpus
        .iter()
        .filter_map(|c| read_trimmed(&c.join("cpufreq/cpuinfo_max_freq")))
        .max()
        .map(khz_to_mhz);
    if !current.is_empty() || !governors.is_empty() {
        return Some(Frequency {
            source: "cpufreq".into(),
            governors,
            current_mhz: current,
            max_mhz,
        });
    }
    let from_cpuinfo: Vec<f64> = cpuinfo_values(cpuinfo, "cpu MHz")
        .filter_map(|v| v.parse().ok())
        .collect();
    (!from_cpuinfo.is_empty()).then(|| Frequency {
        source: "cpuinfo".into(),
        governors: Vec::new(),
        current_mhz: from_cpuinfo,
        max_mhz: None,
    })
}

/// Reads the throttling counters under `root`: x86 `thermal_throttle/{core,package}_throttle_count`
/// summed over CPUs, else the Raspberry Pi firmware's `get_throttled` bits (16–19: under-voltage,
/// frequency capped, throttled, soft temperature limit, each "has occurred"; bit 2: throttled
/// now). `None` when neither is exposed.
pub fn read_throttle(root: &Path) -> Option<Throttle> {
    let counts: Vec<u64> = cpu_dirs(root)
        .iter()
        .flat_map(|c| {
            ["core_throttle_count", "package_throttle_count"]
                .map(|f| read_trimmed::<u64>(&c.join("thermal_throttle").join(f)))
        })
        .flatten()
        .collect();
    if !counts.is_empty() {
        return Some(Throttle {
            source: "thermal_throttle".into(),
            events: counts.iter().sum(),
            throttled_now: None,
        });
    }
    let text = read(root, "sys/devices/platform/soc/soc:firmware/get_throttled")?;
    let text = text.trim();
    let bits = u32::from_str_radix(text.trim_start_matches("0x"), 16).ok()?;
    Some(Throttle {
        source: "raspberry-pi get_throttled".into(),
        events: u64::from((bits >> 16 & 0xF).count_ones()),
        throttled_now: Some(bits & 0x4 != 0),
    })
}

fn kernel(root: &Path) -> Option<String> {
    let release = read(root, "proc/sys/kernel/osrelease")?;
    let name = read(root, "proc/sys/kernel/ostype").unwrap_or_else(|| "Linux".into());
    Some(format!("{} {}", name.trim(), release.trim()))
}

fn os_name(root: &Path) -> Option<String> {
    let text = read(root, "etc/os-release").or_else(|| read(root, "usr/lib/os-release"))?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    field("PRETTY_NAME").or_else(|| field("NAME"))
}

/// Names of the features detected as present.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn present<const N: usize>(detected: [(bool, &str); N]) -> Vec<String> {
    detected
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The kernel-relevant SIMD features of the running CPU.
#[cfg(target_arch = "x86_64")]
fn cpu_features() -> Vec<String> {
    macro_rules! detected {
        ($($f:tt),*) => {
            [$((is_x86_feature_detected!($f), $f)),*]
        };
    }
    let all = detected!(
        "sse4.2",
        "popcnt",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avxvnni",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni",
        "avx512bf16",
        "avx512vpopcntdq"
    );
    present(all)
}

/// The kernel-relevant SIMD features of the running CPU.
#[cfg(target_arch = "aarch64")]
fn cpu_features() -> Vec<String> {
    macro_rules! detected {
        ($($f:tt),*) => {
            [$((std::arch::is_aarch64_feature_detected!($f), $f)),*]
        };
    }
    let all = detected!("neon", "dotprod", "fp16", "i8mm", "bf16", "sve", "sve2");
    present(all)
}

/// The kernel-relevant SIMD features of the running CPU (none known on this architecture).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::measure::fake_tree as tree;

    #[test]
    fn describes_an_x86_tree_with_cpufreq_and_throttle_counters() {
        let cpu = "sys/devices/system/cpu";
        let dir = tree(&[
            (
                "proc/cpuinfo",
                "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338\ncpu MHz\t\t: 2000.0\n\n\
                 processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n",
            ),
            (
                &format!("{cpu}/cpu0/cpufreq/scaling_governor"),
                "powersave\n",
            ),
            (
                &format!("{cpu}/cpu1/cpufreq/scaling_governor"),
                "performance\n",
            ),
            (&format!("{cpu}/cpu0/cpufreq/scaling_cur_freq"), "2600000\n"),
            (&format!("{cpu}/cpu1/cpufreq/scaling_cur_freq"), "800000\n"),
            (&format!("{cpu}/cpu1/cpufreq/cpuinfo_max_freq"), "3200000\n"),
            (
                &format!("{cpu}/cpu0/thermal_throttle/core_throttle_count"),
                "3\n",
            ),
            (
                &format!("{cpu}/cpu0/thermal_throttle/package_throttle_count"),
                "1\n",
            ),
            (
                &format!("{cpu}/cpu1/thermal_throttle/core_throttle_count"),
                "0\n",
            ),
            (
                &format!("{cpu}/cpufreq/policy0/scaling_governor"),
                "ignored\n",
            ),
            ("proc/sys/kernel/ostype", "Linux\n"),
            ("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n"),
            ("proc/sys/kernel/hostname", "bench-x86\n"),
            (
                "etc/os-release",
                "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            ),
        ]);
        let m = MachineInfo::collect(dir.path(), 2, Some("1.32.0".into()));
        assert_eq!(m.cpu_model.as_deref(), Some("Intel(R) Xeon(R) Gold 6338"));
        assert_eq!(m.logical_cores, Some(2));
        assert_eq!(m.threads_used, 2);
        let f = m.frequency.unwrap();
        assert_eq!(f.source, "cpufreq");
        assert_eq!(f.governors, ["performance", "powersave"]);
        assert_eq!(f.current_mhz, [2600.0, 800.0]);
        assert_eq!(f.max_mhz, Some(3200.0));
        let t = m.throttle.unwrap();
        assert_eq!(
            (t.source.as_str(), t.events, t.throttled_now),
            ("thermal_throttle", 4, None)
        );
        assert_eq!(m.kernel.as_deref(), Some("Linux 6.1.0-18-amd64"));
        assert_eq!(m.hostname.as_deref(), Some("bench-x86"));
        assert_eq!(m.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(m.ort_version.as_deref(), Some("1.32.0"));
        assert_eq!(m.quench_version, env!("CARGO_PKG_VERSION"));
        assert!(m.board.is_none());
    }

    #[test]
    fn describes_a_raspberry_pi_tree() {
        let dir = tree(&[
            (
                "proc/cpuinfo",
                "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n\
                 processor\t: 1\n\nprocessor\t: 2\n\nprocessor\t: 3\n\
                 Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n",
            ),
            ("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"),
            // Under-voltage has occurred (bit 16), throttled now and before (bits 2 and 18).
            (
                "sys/devices/platform/soc/soc:firmware/get_throttled",
                "0x50004\n",
            ),
            ("usr/lib/os-release", "NAME=\"Raspbian\"\n"),
        ]);
        let m = MachineInfo::collect(dir.path(), 4, None);
        assert_eq!(m.cpu_model.as_deref(), Some("Arm Cortex-A72"));
        assert_eq!(m.board.as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
        assert_eq!(m.logical_cores, Some(4));
        let t = m.throttle.unwrap();
        assert_eq!(t.events, 2);
        assert_eq!(t.throttled_now, Some(true));
        assert_eq!(m.os.as_deref(), Some("Raspbian"));
        assert!(m.frequency.is_none() && m.kernel.is_none());
        assert_eq!(
            cpu_model("CPU implementer\t: 0x51\nCPU part\t: 0x802\n").as_deref(),
            Some("Arm implementer 0x51 part 0x802")
        );
    }

    #[test]
    fn an_empty_tree_gives_no_guesses() {
        let dir = tempfile::tempdir().unwrap();
        let m = MachineInfo::collect(dir.path(), 1, None);
        assert!(m.cpu_model.is_none() && m.logical_cores.is_none() && m.os.is_none());
        assert!(m.hostname.is_none());
        assert!(m.frequency.is_none() && m.throttle.is_none() && m.kernel.is_none());
    }

    #[test]
    fn describes_this_machine() {
        let m = MachineInfo::collect(Path::new("/"), 1, None);
        assert!(m.cpu_model.is_some() && m.kernel.is_some());
        assert!(m.logical_cores.unwrap_or(0) >= 1);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            assert!(m.cpu_features.iter().any(|f| f == "avx2"));
        }
        assert!(!m.git_revision.is_empty());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["quench_version"], env!("CARGO_PKG_VERSION"));
    }
}
