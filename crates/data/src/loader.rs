//! Batches of features for training: `(x [B, 32, 20] f32, y [B] i64)` on a device, and
//! each clip's valid frames `lengths [B]` i64 (the frames that hold the clip rather than
//! its padding, see [`Features::valid_frames`]).
//!
//! All features of a split are computed once (in parallel, through the cache), stacked
//! (zero-padded to the longest clip) into one `[N, T, C]` tensor and moved to the device; an epoch is a permutation drawn
//! from ChaCha8 seeded with [`epoch_seed`]`(seed, epoch)`, a splitmix64 mix of the two
//! (the same order on every device and run, and no two seeds share an epoch's order),
//! cut into batches with `index_select`. [`Standardizer`] holds per-coefficient mean and
//! standard deviation fitted on the train split only.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use crate::error::{DataError, Result};
use crate::mfcc::Features;
use crate::speech_commands::SpeechCommands;

/// One step of splitmix64 (Steele, Lea & Flood 2014): a bijection of `u64`
/// whose outputs of nearby inputs look independent.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shuffling seed of `epoch` in a run seeded with `seed`:
/// `splitmix64(splitmix64(seed) + epoch)`. Unlike `seed + epoch`, seed `s` at
/// epoch `e + 1` does not repeat seed `s + 1` at epoch `e`.
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    splitmix64(splitmix64(seed).wrapping_add(epoch))
}

/// Per-coefficient standardisation `(x - mean) / std`, fitted on training features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// `[n_mfcc]` means over every frame of every training clip.
    pub mean: Vec<f32>,
    /// `[n_mfcc]` population standard deviations (at least 1e-8).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Statistics over every valid frame of `features` (pass the train split's only);
    /// frames of padding are left out.
    ///
    /// # Panics
    /// When `features` is empty or the clips disagree on `n_mfcc`.
    pub fn fit(features: &[Features]) -> Self {
        let c = features.first().expect("at least one clip to fit").n_mfcc;
        let (mut sum, mut sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
        for f in features {
            assert_eq!(f.n_mfcc, c, "clips with different n_mfcc");
            for row in f.values.chunks_exact(c).take(f.valid_frames) {
                for (k, &v) in row.iter().enumerate() {
                    sum[k] += v as f64;
                    sq[k] += v as f64 * v as f64;
                }
                n += 1;
            }
        }
        let n = n.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - m * m).max(0.0).sqrt().max(1e-8)) as f32)
            .collect();
        Standardizer { mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }

    /// `(x - mean) / std` over the last dimension of `x` (`[..., n_mfcc]`), on `x`'s device.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let mean = Tensor::from_slice(&self.mean).to_device(x.device());
        let std = Tensor::from_slice(&self.std).to_device(x.device());
        (x - mean) / std
    }
}

/// What [`DataLoader::evaluate`] measured on one split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy per clip.
    pub loss: f64,
    pub correct: i64,
    pub total: i64,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// Iterates a dataset in batches on a device.
#[derive(Debug)]
pub struct DataLoader {
    xs: Tensor,      // [N, T, C] on the device
    ys: Tensor,      // [N] i64 on the device
    lengths: Tensor, // [N] i64 valid frames on the device
    batch_size: usize,
    drop_last: bool,
    seed: Option<u64>,
    epoch: u64,
}

impl DataLoader {
    /// Every clip of `dataset` (features computed or read from the cache), in order.
    pub fn new(dataset: &SpeechCommands, batch_size: usize, device: Device) -> Result<Self> {
        Self::from_features(dataset.features()?, &dataset.labels(), batch_size, device)
    }

    /// Any features with labels; clips of fewer frames than the longest are zero-padded
    /// (their `valid_frames` say where the clip ends).
    pub fn from_features(
        features: &[Features],
        labels: &[i64],
        batch_size: usize,
        device: Device,
    ) -> Result<Self> {
        let bad = |reason: String| DataError::dataset("<features>", reason);
        if features.len() != labels.len() {
            return Err(bad(format!("{} clips but {} labels", features.len(), labels.len())));
        }
        if batch_size == 0 {
            return Err(bad("batch size 0".into()));
        }
        let t = features.iter().map(|f| f.frames).max().unwrap_or(0);
        let c = features.first().map_or(0, |f| f.n_mfcc);
        let mut flat = Vec::with_capacity(features.len() * t * c);
        let mut lengths = Vec::with_capacity(features.len());
        for f in features {
            if f.n_mfcc != c {
                return Err(bad(format!("clips of {c} and of {} coefficients", f.n_mfcc)));
            }
            if f.valid_frames == 0 || f.valid_frames > f.frames {
                return Err(bad(format!("{} valid frames of {}", f.valid_frames, f.frames)));
            }
            flat.extend_from_slice(&f.values);
            flat.resize(flat.len() + (t - f.frames) * c, 0.0);
            lengths.push(f.valid_frames as i64);
        }
        let n = features.len() as i64;
        let xs = Tensor::from_slice(&flat).f_view([n, t as i64, c as i64])?.f_to_device(device)?;
        let ys = Tensor::from_slice(labels).f_to_device(device)?;
        let lengths = Tensor::from_slice(&lengths).f_to_device(device)?;
        Ok(DataLoader { xs, ys, lengths, batch_size, drop_last: false, seed: None, epoch: 0 })
    }

    /// Shuffle every epoch, reproducibly from `seed`.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Drop a last batch smaller than the batch size.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// Standardise every clip once, now.
    pub fn standardize(mut self, s: &Standardizer) -> Self {
        self.xs = s.apply(&self.xs);
        self
    }

    /// Number of clips.
    pub fn num_samples(&self) -> usize {
        self.ys.size()[0] as usize
    }

    /// Number of batches an epoch yields.
    pub fn len(&self) -> usize {
        let n = self.num_samples();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All features `[N, T, C]` and labels `[N]` on the device, in dataset order.
    pub fn tensors(&self) -> (&Tensor, &Tensor) {
        (&self.xs, &self.ys)
    }

    /// Each clip's valid frames `[N]` (i64, on the device), in dataset order.
    pub fn lengths(&self) -> &Tensor {
        &self.lengths
    }

    /// Correct predictions and clips of this split (argmax of `model`'s logits
    /// against the labels), in evaluation mode without autograd, `batch` clips
    /// a forward pass; the count stays on the device until the end.
    pub fn count_correct(&self, model: &dyn ModuleT, batch: i64) -> (i64, i64) {
        let e = self.evaluate(model, batch);
        (e.correct, e.total)
    }

    /// Mean cross-entropy of `model`'s logits and the correct predictions
    /// (argmax against the labels) over this split, in evaluation mode
    /// without autograd, `batch` clips a forward pass; the sums stay on the
    /// device until the end.
    pub fn evaluate(&self, model: &dyn ModuleT, batch: i64) -> Evaluation {
        self.evaluate_with(batch, |x, _| model.forward_t(x, false))
    }

    /// [`Self::evaluate`] of any `logits(x [B, T, C], lengths [B])`, called
    /// under `no_grad` on `batch` clips at a time.
    pub fn evaluate_with(
        &self,
        batch: i64,
        logits: impl Fn(&Tensor, &Tensor) -> Tensor,
    ) -> Evaluation {
        let _guard = tch::no_grad_guard();
        let n = self.ys.size()[0];
        let mut loss = Tensor::zeros([], (Kind::Double, self.ys.device()));
        let mut correct = Tensor::zeros([], (Kind::Int64, self.ys.device()));
        for start in (0..n).step_by(batch.max(1) as usize) {
            let len = batch.min(n - start);
            let y = self.ys.narrow(0, start, len);
            let logits =
                logits(&self.xs.narrow(0, start, len), &self.lengths.narrow(0, start, len));
            loss += logits
                .cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0)
                .to_kind(Kind::Double);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
        }
        Evaluation {
            loss: loss.double_value(&[]) / n.max(1) as f64,
            correct: correct.int64_value(&[]),
            total: n,
        }
    }

    /// The next epoch's batches (a fresh order each call when shuffling).
    pub fn iter(&mut self) -> Batches<'_> {
        let order = self.epoch_order(self.epoch);
        self.epoch += 1;
        Batches { loader: self, order, next: 0, batches: self.len() }
    }

    /// The clip order of `epoch` (0-based) on the device, or `None` when not
    /// shuffling: a permutation drawn from ChaCha8 seeded with
    /// [`epoch_seed`]`(seed, epoch)`.
    pub fn epoch_order(&self, epoch: u64) -> Option<Tensor> {
        let n = self.num_samples();
        self.seed.map(|seed| {
            let mut idx: Vec<i64> = (0..n as i64).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed(seed, epoch)));
            Tensor::from_slice(&idx).to_device(self.xs.device())
        })
    }

    /// Batch `i` (0-based, below [`DataLoader::len`]) of an epoch in `order`
    /// (from [`DataLoader::epoch_order`]; dataset order when `None`):
    /// `(x [B, T, C], y [B])`.
    pub fn batch(&self, order: Option<&Tensor>, i: usize) -> (Tensor, Tensor) {
        let (x, y, _) = self.batch_with_lengths(order, i);
        (x, y)
    }

    /// [`Self::batch`] and the clips' valid frames: `(x [B, T, C], y [B], lengths [B])`.
    pub fn batch_with_lengths(&self, order: Option<&Tensor>, i: usize) -> (Tensor, Tensor, Tensor) {
        let start = (i * self.batch_size) as i64;
        let size = (self.batch_size as i64).min(self.num_samples() as i64 - start);
        let pick = |t: &Tensor| match order {
            Some(order) => t.index_select(0, &order.narrow(0, start, size)),
            None => t.narrow(0, start, size),
        };
        (pick(&self.xs), pick(&self.ys), pick(&self.lengths))
    }
}

/// One epoch of `(x [B, T, C], y [B])`.
pub struct Batches<'a> {
    loader: &'a DataLoader,
    order: Option<Tensor>,
    next: usize,
    batches: usize,
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batches {
            return None;
        }
        self.next += 1;
        Some(self.loader.batch(self.order.as_ref(), self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Reference values of splitmix64 from its published C code
    /// (`next()` with the state starting at 0 returns these in turn; each
    /// call adds the golden-ratio constant to the state first).
    #[test]
    fn splitmix64_matches_the_reference() {
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    fn loader(n: usize, seed: u64) -> DataLoader {
        let feats: Vec<Features> = (0..n)
            .map(|i| Features { frames: 1, n_mfcc: 1, values: vec![i as f32], valid_frames: 1 })
            .collect();
        let labels: Vec<i64> = (0..n as i64).collect();
        DataLoader::from_features(&feats, &labels, n, Device::Cpu).unwrap().shuffle(seed)
    }

    fn order(l: &DataLoader, epoch: u64) -> Vec<i64> {
        Vec::<i64>::try_from(l.epoch_order(epoch).unwrap()).unwrap()
    }

    /// No two (seed, epoch) pairs of 32 seeds and 32 epochs share an order,
    /// in particular seed s at epoch e+1 and seed s+1 at epoch e, which
    /// `seed + epoch` made equal.
    #[test]
    fn no_two_seeds_share_an_epoch_order() {
        let loaders: Vec<DataLoader> = (0..32).map(|s| loader(40, s)).collect();
        let mut seen = HashSet::new();
        for l in &loaders {
            for e in 0..32 {
                assert!(seen.insert(order(l, e)), "an order repeats");
            }
        }
        assert_ne!(order(&loaders[3], 1), order(&loaders[4], 0));
        // iter() walks the same orders, epoch after epoch
        let mut l = loader(40, 5);
        for e in 0..3 {
            let ys: Vec<i64> =
                l.iter().flat_map(|(_, y)| Vec::<i64>::try_from(y).unwrap()).collect();
            assert_eq!(ys, order(&loaders[5], e));
        }
    }
}
