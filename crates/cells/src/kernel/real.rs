//! f32 and f64 for the kernels: the arithmetic they need and views of a
//! tensor's memory.

use std::ops::{Add, AddAssign, Mul, Sub};
use tch::{Device, Kind, Tensor};

pub(crate) trait Real:
    Copy + Add<Output = Self> + AddAssign + Sub<Output = Self> + Mul<Output = Self> + 'static
{
    const KIND: Kind;
    const ZERO: Self;
    const ONE: Self;
    fn exp(self) -> Self;
    fn recip(self) -> Self;

    #[inline(always)]
    fn sigmoid(self) -> Self {
        (Self::ONE + (Self::ZERO - self).exp()).recip()
    }

    /// `tanh x = 2 σ(2x) - 1`: one `exp` (libm's `tanhf` costs about five),
    /// with an absolute error of a few units in the last place of 1 (the
    /// kernels' values are of order one).
    #[inline(always)]
    fn tanh(self) -> Self {
        let two = Self::ONE + Self::ONE;
        two * (two * self).sigmoid() - Self::ONE
    }
}

macro_rules! real {
    ($t:ty, $kind:expr, $exp:path) => {
        impl Real for $t {
            const KIND: Kind = $kind;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn recip(self) -> Self {
                1.0 / self
            }
        }
    };
}

real!(f32, Kind::Float, exp_f32);
real!(f64, Kind::Double, f64::exp);

/// `e^x` in f32 without branches, so that loops over it vectorise (libm's
/// `expf` is a call per element). Cephes' `expf`: `x = n ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-5 polynomial for `e^r`, and `2^n` built in the
/// exponent bits; within 2 ulp of the exact value. Inputs are clamped to
/// [-87.3, 88.3], where `2^n` stays a normal number.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3); // NaN stays NaN
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from the bits of n + 127 + 2^23, whose low mantissa bits are n + 127
    // (a float-to-int cast would not vectorise: Rust's `as` saturates)
    let biased = (n + (8_388_608.0 + 127.0)).to_bits();
    e * f32::from_bits(biased << 23)
}

/// A contiguous CPU tensor and its memory as a slice of `T`.
pub(crate) struct Buf<T> {
    pub tensor: Tensor,
    _t: std::marker::PhantomData<T>,
}

impl<T: Real> Buf<T> {
    /// `t` as a contiguous CPU tensor of `T` (a copy only if it is not one).
    pub fn of(t: &Tensor) -> Result<Self, String> {
        if t.device() != Device::Cpu || t.kind() != T::KIND {
            return Err(format!(
                "kernel wants {:?} on the CPU, got {:?} on {:?}",
                T::KIND,
                t.kind(),
                t.device()
            ));
        }
        Ok(Self { tensor: t.contiguous(), _t: std::marker::PhantomData })
    }

    /// [`Buf::of`] each of `ts`.
    pub fn all(ts: &[Tensor]) -> Result<Vec<Self>, String> {
        ts.iter().map(Self::of).collect()
    }

    /// A new tensor of `shape`, uninitialised: for buffers a kernel writes in full.
    pub fn empty(shape: &[i64]) -> Self {
        Self { tensor: Tensor::empty(shape, (T::KIND, Device::Cpu)), _t: std::marker::PhantomData }
    }

    pub fn slice(&self) -> &[T] {
        // SAFETY: contiguous, of kind T, and alive as long as `self`.
        unsafe {
            std::slice::from_raw_parts(self.tensor.data_ptr() as *const T, self.tensor.numel())
        }
    }

    pub fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as `slice`; `&mut self` keeps the borrow unique (tensors made
        // here share their memory with no other tensor).
        unsafe {
            std::slice::from_raw_parts_mut(self.tensor.data_ptr() as *mut T, self.tensor.numel())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64's libm over the range the kernels meet, and at the clamps.
    #[test]
    fn f32_exp_sigmoid_and_tanh_are_accurate() {
        let mut worst = [0f64; 3];
        for k in 0..=200_000 {
            let x = -87.0 + 175.0 * k as f64 / 200_000.0;
            let xf = x as f32;
            let want = (xf as f64).exp();
            worst[0] = worst[0].max(((exp_f32(xf) as f64) - want).abs() / want);
            let s = 1.0 / (1.0 + (-(xf as f64)).exp());
            worst[1] = worst[1].max((Real::sigmoid(xf) as f64 - s).abs());
            worst[2] = worst[2].max((Real::tanh(xf) as f64 - (xf as f64).tanh()).abs());
        }
        assert!(worst[0] < 3e-7, "exp relative error {:e}", worst[0]);
        assert!(worst[1] < 2e-7 && worst[2] < 4e-7, "sigmoid {:e}, tanh {:e}", worst[1], worst[2]);
        assert_eq!(Real::exp(-1000f32), exp_f32(-87.3));
        assert!(Real::exp(f32::NAN).is_nan());
        assert_eq!(Real::sigmoid(100f32), 1.0);
        assert_eq!(Real::tanh(-100f32), -1.0);
    }
}
