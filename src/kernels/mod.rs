//! Compute kernels: GEMM, GEMV and convolution helpers for f32, i8, 4-bit and binary operands.
//!
//! Every SIMD kernel has a scalar twin that defines its result; the SIMD version is tested against
//! it. Which instruction set runs is decided once, at first use, from the CPU's features
//! ([`isa`]); setting `QUENCH_KERNELS=scalar` in the environment forces the scalar twins so a user
//! can rule the SIMD code out when results look wrong.
//!
//! Kernels never choose a thread count: callers run them inside a rayon pool of the size they
//! want, and a kernel splits its output tiles over `rayon::current_num_threads()` workers, running
//! serially (no rayon overhead) when that is 1.

#[cfg(target_arch = "aarch64")]
mod arm;
pub mod b1;
pub mod f32;
pub mod i8;
mod par;
pub mod q4;

use std::sync::OnceLock;

/// The instruction-set family the kernels were dispatched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// Portable scalar reference code.
    Scalar,
    /// x86_64 with AVX2 and FMA.
    Avx2,
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
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dot",
        }
    }
}

/// The instruction set every kernel dispatches to in this process: detected once, honouring
/// `QUENCH_KERNELS=scalar`.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let forced_scalar = std::env::var("QUENCH_KERNELS")
            .map(|v| v.eq_ignore_ascii_case("scalar"))
            .unwrap_or(false);
        if forced_scalar {
            Isa::Scalar
        } else {
            detect()
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Scalar
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
