//! Denormal floats flushed to zero on the CPU, as `torch.set_flush_denormal(True)`.
//!
//! When a recurrent cell's gates saturate (the coursework's raw int16-scale
//! MFCCs drive an LSTM's pre-activations into the hundreds), the sigmoid's
//! tails and the products of its derivatives fall below f32's smallest
//! normal number, 1.2e-38. x86 CPUs compute on such denormal numbers through
//! a slow microcode path, many times slower than on normal ones, and the
//! whole step waits on it. Flushing them to zero changes nothing a model
//! can use: they are below 1e-38. docs/performance.md measures the effect.

/// The environment variable that keeps denormal arithmetic (any value but
/// empty or `0`): for measuring what flushing saves.
pub const KEEP_DENORMALS_ENV: &str = "RNNLAB_KEEP_DENORMALS";

/// Sets flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) on the
/// calling thread, unless [`KEEP_DENORMALS_ENV`] is set; returns whether it
/// did. [`crate::fit`] calls it: libtorch runs CPU autograd, and every
/// operation too small to split across threads, on the thread that calls
/// it, so the training thread is the one that matters. A no-op returning
/// false off x86-64.
pub fn flush_denormals() -> bool {
    if std::env::var_os(KEEP_DENORMALS_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return false;
    }
    set_ftz_daz()
}

#[cfg(target_arch = "x86_64")]
fn set_ftz_daz() -> bool {
    #[allow(deprecated)] // the intrinsics' replacement is inline assembly
    // SAFETY: MXCSR's FTZ and DAZ bits only change how denormal results and
    // inputs of SSE/AVX arithmetic are rounded; every x86-64 CPU has both.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
    true
}

#[cfg(not(target_arch = "x86_64"))]
fn set_ftz_daz() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    /// 1e-30 * 1e-10 is 1e-40, a denormal f32: kept by default, zero once
    /// flushed. On a thread of its own, since the setting is per thread.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn libtorch_products_below_the_normal_range_become_zero() {
        std::thread::spawn(|| {
            let product = || (Tensor::from_slice(&[1e-30f32]) * 1e-10).double_value(&[0]);
            let before = product();
            assert!(before > 0.0 && before < 1.2e-38, "not a denormal: {before:e}");
            assert!(set_ftz_daz());
            assert_eq!(product(), 0.0);
        })
        .join()
        .unwrap();
    }
}
