//! SpecAugment-style masking of feature batches (Park et al., 2019,
//! "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
//! Recognition"): each clip gets one band of consecutive coefficients and one
//! span of consecutive frames set to zero, the mean of standardised features.
//!
//! A classifier trained on a few voices learns their spectral envelope; hiding
//! a random part of it makes the model use the whole word, which helps on
//! voices it never heard. The masks come from a generator seeded by
//! `(seed, step)`, not from libtorch's global one, so a resumed run draws the
//! same masks as an uninterrupted one.
//!
//! [`wave`] holds the waveform augmentations (reverberation, noise, speed,
//! pitch, shift, gain, telephone band) that synthesis applies to training clips.

pub mod wave;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Widths of the masks: each is drawn uniformly from `0..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecAugment {
    /// Widest band of coefficients masked (SpecAugment's F).
    pub freq_mask: i64,
    /// Longest span of frames masked (SpecAugment's T).
    pub time_mask: i64,
}

/// `rnnlab train`'s default recipe for LSTM and GRU: about a fifth of the 20 coefficients and
/// of the 32 frames at most, so every clip keeps most of its word.
impl Default for SpecAugment {
    fn default() -> Self {
        Self::for_coefficients(20)
    }
}

impl SpecAugment {
    /// The default recipe's masks for clips of `n` coefficients per frame: a
    /// band of up to a fifth of them (2 of the default recipe's 10, 4 of 20),
    /// and up to 6 of the 32 frames.
    pub fn for_coefficients(n: usize) -> Self {
        SpecAugment { freq_mask: n as i64 / 5, time_mask: 6 }
    }

    /// Masks `x` `[B, T, C]` for training step `step` of a run seeded `seed`.
    pub fn apply(&self, x: &Tensor, seed: u64, step: u64) -> Tensor {
        let (b, t, c) = x.size3().expect("SpecAugment takes [batch, frames, coefficients]");
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut bands = |len: i64, max: i64| -> (Vec<i64>, Vec<i64>) {
            (0..b)
                .map(|_| {
                    let width = rng.gen_range(0..=max.min(len));
                    (rng.gen_range(0..=len - width), width)
                })
                .unzip()
        };
        let (f0, fw) = bands(c, self.freq_mask);
        let (t0, tw) = bands(t, self.time_mask);
        // both masks of every clip drawn on the host, uploaded once: [B, T + C]
        let mut masks = Vec::with_capacity((b * (t + c)) as usize);
        for i in 0..b as usize {
            masks.extend((0..t).map(|k| k >= t0[i] && k < t0[i] + tw[i]));
            masks.extend((0..c).map(|k| k >= f0[i] && k < f0[i] + fw[i]));
        }
        let masks = Tensor::from_slice(&masks).view([b, t + c]).to_device(x.device());
        let time = masks.narrow(1, 0, t).unsqueeze(2); // [B, T, 1]
        let freq = masks.narrow(1, t, c).unsqueeze(1); // [B, 1, C]
        x.masked_fill(&freq.logical_or(&time), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn masks_one_band_and_one_span_per_clip_reproducibly() {
        let x = Tensor::ones([64, 32, 20], (Kind::Float, Device::Cpu));
        let aug = SpecAugment { freq_mask: 4, time_mask: 6 };
        let y = aug.apply(&x, 7, 3);
        assert!(y.equal(&aug.apply(&x, 7, 3)), "same seed and step, same masks");
        assert!(!y.equal(&aug.apply(&x, 7, 4)), "another step, other masks");
        for i in 0..64 {
            // a masked coefficient is zero in every frame, a masked frame in every coefficient
            let clip = y.get(i); // [T, C]
            let zero_cols = clip.sum_dim_intlist(0, false, Kind::Float).eq(0.0).sum(Kind::Int64);
            let zero_rows = clip.sum_dim_intlist(1, false, Kind::Float).eq(0.0).sum(Kind::Int64);
            let (cols, rows) = (zero_cols.int64_value(&[]), zero_rows.int64_value(&[]));
            assert!(cols <= 4 && rows <= 6, "clip {i}: {cols} bands, {rows} frames");
            // everything else is untouched: each zero is in a masked row or column
            let zeros = clip.eq(0.0).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(zeros, cols * 32 + rows * 20 - cols * rows, "clip {i}");
        }
        let masked = y.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(masked > 0, "some clip is masked");
    }
}
