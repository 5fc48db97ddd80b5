//! Energy estimated from CPU time: CPU-seconds of the run × watts per active core of the board.
//!
//! The per-core figures are the extra power one busy core draws, from published measurements or
//! specifications; each names its basis. They are coarse (±30% is a fair expectation, more for a
//! core that is memory-bound) and every figure made with them is labelled `estimated`.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A board's active power per busy core, and where the number comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardPower {
    /// Short name, e.g. `raspberry-pi-4`.
    pub name: String,
    /// Watts one fully busy core adds over idle.
    pub watts_per_active_core: f64,
    /// Where the figure comes from.
    pub basis: String,
}

/// The named defaults: (name, watts per active core, basis).
const BOARDS: &[(&str, f64, &str)] = &[
    (
        "raspberry-pi-4",
        0.93,
        "Raspberry Pi 4 B measured at 2.7 W idle and 6.4 W under `stress --cpu 4` \
         (Jeff Geerling, pidramble.com power consumption benchmarks): (6.4 − 2.7) / 4 cores",
    ),
    (
        "raspberry-pi-5",
        1.15,
        "Raspberry Pi 5 reviewed at about 2.7 W idle and 7.3 W with all four cores under \
         stress-ng (Jeff Geerling's and Tom's Hardware's 2023 measurements, rounded): \
         (7.3 − 2.7) / 4 cores",
    ),
    (
        "jetson-orin-nano",
        1.0,
        "NVIDIA Jetson Orin Nano data sheet: 15 W module power mode, 6 Cortex-A78AE cores; \
         assumption that the CPU cluster takes 40% of the budget at full CPU load: 15 × 0.4 / 6",
    ),
    (
        "x86-desktop-core",
        8.1,
        "AMD Ryzen 7 5700X specification: 65 W TDP over 8 cores (TDP / cores; includes the \
         uncore share, so it leans high)",
    ),
    (
        "x86-server-core",
        4.4,
        "AMD EPYC 7763 specification: 280 W TDP over 64 Zen 3 cores (TDP / cores; includes the \
         uncore share, so it leans high)",
    ),
];

impl BoardPower {
    /// Names accepted by [`BoardPower::named`].
    pub fn names() -> impl Iterator<Item = &'static str> {
        BOARDS.iter().map(|(name, _, _)| *name)
    }

    /// One of the named defaults (see [`BoardPower::names`]), or `None` for an unknown name.
    pub fn named(name: &str) -> Option<Self> {
        BOARDS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(n, w, basis)| Self {
                name: n.to_string(),
                watts_per_active_core: *w,
                basis: basis.to_string(),
            })
    }

    /// Guesses the board under `root`: the device-tree model (Raspberry Pi 4/5, Jetson Orin
    /// Nano), else the x86 CPU model (EPYC or Xeon → server core, any other x86 → desktop core).
    /// `None` when nothing matches.
    pub fn detect(root: &Path) -> Option<Self> {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
        let model = read("proc/device-tree/model").to_ascii_lowercase();
        let by_model = if model.contains("raspberry pi 4") {
            Some("raspberry-pi-4")
        } else if model.contains("raspberry pi 5") {
            Some("raspberry-pi-5")
        } else if model.contains("orin nano") {
            Some("jetson-orin-nano")
        } else {
            None
        };
        if let Some(name) = by_model {
            return Self::named(name);
        }
        let cpuinfo = read("proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, v)| v.trim().to_ascii_lowercase())?;
        if cpu.contains("epyc") || cpu.contains("xeon") {
            Self::named("x86-server-core")
        } else if cpuinfo.contains("vendor_id") {
            Self::named("x86-desktop-core")
        } else {
            None
        }
    }

    /// Joules for `cpu_seconds` of busy-core time on this board.
    pub fn joules(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * self.watts_per_active_core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::measure::fake_tree as tree;

    #[test]
    fn every_name_resolves_with_a_basis() {
        for name in BoardPower::names() {
            let b = BoardPower::named(name).unwrap();
            assert!(b.watts_per_active_core > 0.0 && !b.basis.is_empty());
        }
        assert_eq!(BoardPower::names().count(), 5);
        assert!(BoardPower::named("cray-1").is_none());
        let pi4 = BoardPower::named("raspberry-pi-4").unwrap();
        assert!((pi4.joules(2.0) - 1.86).abs() < 1e-12);
    }

    #[test]
    fn detects_boards_from_device_tree_and_cpuinfo() {
        let pi = tree(&[("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0")]);
        assert_eq!(
            BoardPower::detect(pi.path()).unwrap().name,
            "raspberry-pi-4"
        );
        let orin = tree(&[(
            "proc/device-tree/model",
            "NVIDIA Jetson Orin Nano Developer Kit\0",
        )]);
        assert_eq!(
            BoardPower::detect(orin.path()).unwrap().name,
            "jetson-orin-nano"
        );
        let epyc = tree(&[(
            "proc/cpuinfo",
            "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n",
        )]);
        assert_eq!(
            BoardPower::detect(epyc.path()).unwrap().name,
            "x86-server-core"
        );
        let desk = tree(&[(
            "proc/cpuinfo",
            "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8700\n",
        )]);
        assert_eq!(
            BoardPower::detect(desk.path()).unwrap().name,
            "x86-desktop-core"
        );
        let unknown = tree(&[("proc/cpuinfo", "processor\t: 0\nmodel name\t: ARMv8\n")]);
        assert!(BoardPower::detect(unknown.path()).is_none());
    }
}
