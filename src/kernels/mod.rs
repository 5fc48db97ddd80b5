//! Compute kernels: GEMM, GEMV and convolution helpers for f32, i8, 4-bit and binary operands.
//!
//! Every SIMD kernel has a scalar twin that defines its result; the SIMD version is tested against
//! it. Which instruction set runs is decided once, at first use, from the CPU's features
//! ([`isa`]); setting `QUENCH_KERNELS=scalar` in the environment forces the scalar twins so a user
//! can rule the SIMD code out when results look wrong, and `QUENCH_KERNELS=avx2` keeps an AVX-512
//! machine on the AVX2 kernels so both paths can be run (and tested) on one CPU.
//!
//! Kernels never choose a thread count: callers run them inside a rayon pool of the size they
//! want, or inside [`serial`], and a kernel splits its output tiles over [`threads`] workers,
//! running serially (no rayon overhead) when that is 1.

#[cfg(target_arch = "aarch64")]
mod arm;
pub mod b1;
pub mod f32;
pub mod i8;
pub mod lut;
mod par;
pub mod q4;

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// Set while [`serial`] runs on this thread.
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the calling thread with every kernel it calls kept serial ([`threads`] is 1),
/// whatever rayon pool the caller is in. A one-thread plan runs this way: from a plain
/// `fn main` rayon's global pool has one thread per core, and handing the run to a one-thread
/// pool instead would cost a thread wake-up (tens of µs) per run.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Workers a kernel may split its work over here: 1 inside [`serial`], otherwise the size of
/// the current rayon pool.
pub fn threads() -> usize {
    if SERIAL.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// The instruction-set family the kernels were dispatched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// Portable scalar reference code.
    Scalar,
    /// x86_64 with AVX2 and FMA.
    Avx2,
    /// x86_64 with AVX2, FMA and AVX-512 VNNI/BW/VL: the AVX2 kernels plus `vpdpbusd` for INT8.
    Avx512Vnni,
    /// aarch64 NEON without the dot-product extension.
    Neon,
    /// aarch64 NEON with `sdot`/`udot` (ARMv8.2 dotprod).
    NeonDot,
}

impl Isa {
    /// Short lowercase name used in kernel names and records.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dot",
        }
    }
}

impl Isa {
    /// Whether the AVX2 + FMA kernels may run: true for [`Isa::Avx2`] and for
    /// [`Isa::Avx512Vnni`], which implies them.
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512Vnni)
    }
}

/// The instruction set every kernel dispatches to in this process: detected once, honouring
/// `QUENCH_KERNELS=scalar` (scalar twins) and `QUENCH_KERNELS=avx2` (no AVX-512 kernels).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let forced = std::env::var("QUENCH_KERNELS").unwrap_or_default();
        cap(detect(), &forced)
    })
}

/// `detected` limited by a `QUENCH_KERNELS` value: `scalar` gives [`Isa::Scalar`], `avx2` turns
/// [`Isa::Avx512Vnni`] into [`Isa::Avx2`]; anything else leaves it unchanged.
fn cap(detected: Isa, forced: &str) -> Isa {
    if forced.eq_ignore_ascii_case("scalar") {
        Isa::Scalar
    } else if forced.eq_ignore_ascii_case("avx2") && detected == Isa::Avx512Vnni {
        Isa::Avx2
    } else {
        detected
    }
}

/// Whether this CPU runs the AVX-512 VNNI kernels (`vpdpbusd` on 256-bit vectors needs VNNI and
/// VL; BW comes with every VNNI part and is required for the byte shuffles).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512_vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
}

/// Whether this CPU has `vpopcntq` on 256-bit vectors (AVX-512 F, VL and VPOPCNTDQ), which the
/// binary kernel uses when [`isa`] is [`Isa::Avx512Vnni`].
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_vpopcntdq() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vpopcntdq")
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        Isa::Scalar
    } else if has_avx512_vnni() {
        Isa::Avx512Vnni
    } else {
        Isa::Avx2
    }
}

#[cfg(target_arch = "aarch64")]
fn detect() -> Isa {
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        Isa::NeonDot
    } else if std::arch::is_aarch64_feature_detected!("neon") {
        Isa::Neon
    } else {
        Isa::Scalar
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> Isa {
    Isa::Scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_scope_forces_one_thread_and_restores() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(threads(), 3);
            serial(|| {
                assert_eq!(threads(), 1);
                serial(|| assert_eq!(threads(), 1));
                assert_eq!(threads(), 1);
            });
            assert_eq!(threads(), 3);
        });
    }

    #[test]
    fn forcing_caps_the_detected_isa() {
        assert_eq!(cap(Isa::Avx512Vnni, "scalar"), Isa::Scalar);
        assert_eq!(cap(Isa::Avx512Vnni, "AVX2"), Isa::Avx2);
        assert_eq!(cap(Isa::Avx512Vnni, ""), Isa::Avx512Vnni);
        assert_eq!(cap(Isa::Avx2, "avx2"), Isa::Avx2);
        assert_eq!(cap(Isa::Neon, "avx2"), Isa::Neon);
        assert_eq!(cap(Isa::NeonDot, "scalar"), Isa::Scalar);
    }
}
