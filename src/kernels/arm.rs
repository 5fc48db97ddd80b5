//! aarch64 helpers shared by the integer kernels.

use std::arch::aarch64::*;
use std::arch::asm;

/// `acc + sdot(b, a)`: four 4-way s8 dot products into i32 lanes (exact). The intrinsic
/// (`vdotq_s32`) is not stable in Rust yet, so the instruction is written directly.
///
/// # Safety
/// The CPU must support the dotprod extension, and the caller must be compiled with it enabled.
#[inline(always)]
pub(crate) unsafe fn sdot(mut acc: int32x4_t, b: int8x16_t, a: int8x16_t) -> int32x4_t {
    // SAFETY: the instruction only reads and writes the named vector registers.
    unsafe {
        asm!("sdot {0:v}.4s, {1:v}.16b, {2:v}.16b", inout(vreg) acc, in(vreg) b, in(vreg) a,
             options(pure, nomem, nostack));
    }
    acc
}
