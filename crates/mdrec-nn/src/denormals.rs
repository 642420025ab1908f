//! Flush-to-zero for the floating-point unit of every compute thread.
//!
//! Adam's moment estimates of weights whose gradients are (nearly) zero decay geometrically
//! and, after a few thousand steps, reach subnormal floats; x86 cores compute on subnormals
//! through a microcode assist that is tens of times slower than a normal operation, and a
//! training run slows down with the number of steps. Setting the FTZ (results) and DAZ
//! (inputs) bits of MXCSR treats subnormals as zero — what GPUs and most inference runtimes
//! do. A subnormal f32 is below 1.2e-38, far under anything a gradient update can resolve.
//! MXCSR is per thread: [`install`] sets it on the calling thread and on every thread of
//! rayon's global pool (gemm's and burn's workers); the replica, inference and bench-job
//! threads and `mdrec serve`'s runtime threads call [`flush`].

/// Sets FTZ and DAZ on the calling thread (x86-64; a no-op elsewhere).
pub fn flush() {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code, deprecated)]
    // SAFETY: only the rounding of subnormal results and inputs changes; SSE is always
    // present on x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// [`flush`] on this thread and on rayon's global pool (built here; a pool built before is
/// left as it is and each of its threads keeps its own setting).
pub fn install() {
    flush();
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| flush())
        .build_global();
}
