//! Batches of features for training: `(x [B, 32, 20] f32, y [B] i64)` on a device.
//!
//! All features of a split are computed once (in parallel, through the cache), stacked
//! into one `[N, T, C]` tensor and moved to the device; an epoch is a permutation drawn
//! from ChaCha8 seeded with `seed + epoch` (the same order on every device and run), cut
//! into batches with `index_select`. [`Standardizer`] holds per-coefficient mean and
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

/// Per-coefficient standardisation `(x - mean) / std`, fitted on training features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// `[n_mfcc]` means over every frame of every training clip.
    pub mean: Vec<f32>,
    /// `[n_mfcc]` population standard deviations (at least 1e-8).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Statistics over every frame of `features` (pass the train split's only).
    ///
    /// # Panics
    /// When `features` is empty or the clips disagree on `n_mfcc`.
    pub fn fit(features: &[Features]) -> Self {
        let c = features.first().expect("at least one clip to fit").n_mfcc;
        let (mut sum, mut sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
        for f in features {
            assert_eq!(f.n_mfcc, c, "clips with different n_mfcc");
            for row in f.values.chunks_exact(c) {
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

/// Iterates a dataset in batches on a device.
#[derive(Debug)]
pub struct DataLoader {
    xs: Tensor, // [N, T, C] on the device
    ys: Tensor, // [N] i64 on the device
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

    /// Any equal-shaped features with labels.
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
        let (t, c) = features.first().map_or((0, 0), |f| (f.frames, f.n_mfcc));
        let mut flat = Vec::with_capacity(features.len() * t * c);
        for f in features {
            if (f.frames, f.n_mfcc) != (t, c) {
                return Err(bad(format!(
                    "clips of different shapes: [{t}, {c}] and [{}, {}]",
                    f.frames, f.n_mfcc
                )));
            }
            flat.extend_from_slice(&f.values);
        }
        let n = features.len() as i64;
        let xs = Tensor::from_slice(&flat).f_view([n, t as i64, c as i64])?.f_to_device(device)?;
        let ys = Tensor::from_slice(labels).f_to_device(device)?;
        Ok(DataLoader { xs, ys, batch_size, drop_last: false, seed: None, epoch: 0 })
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

    /// Correct predictions and clips of this split (argmax of `model`'s logits
    /// against the labels), in evaluation mode without autograd, `batch` clips
    /// a forward pass; the count stays on the device until the end.
    pub fn count_correct(&self, model: &dyn ModuleT, batch: i64) -> (i64, i64) {
        let _guard = tch::no_grad_guard();
        let n = self.ys.size()[0];
        let mut correct = Tensor::zeros([], (Kind::Int64, self.ys.device()));
        for start in (0..n).step_by(batch.max(1) as usize) {
            let len = batch.min(n - start);
            let pred = model.forward_t(&self.xs.narrow(0, start, len), false).argmax(-1, false);
            correct += pred.eq_tensor(&self.ys.narrow(0, start, len)).sum(Kind::Int64);
        }
        (correct.int64_value(&[]), n)
    }

    /// The next epoch's batches (a fresh order each call when shuffling).
    pub fn iter(&mut self) -> Batches<'_> {
        let n = self.num_samples();
        let order = self.seed.map(|seed| {
            let mut idx: Vec<i64> = (0..n as i64).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(self.epoch)));
            Tensor::from_slice(&idx).to_device(self.xs.device())
        });
        self.epoch += 1;
        Batches { loader: self, order, next: 0, batches: self.len() }
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
        let l = self.loader;
        let start = (self.next * l.batch_size) as i64;
        let size = (l.batch_size as i64).min(l.num_samples() as i64 - start);
        self.next += 1;
        Some(match &self.order {
            Some(order) => {
                let idx = order.narrow(0, start, size);
                (l.xs.index_select(0, &idx), l.ys.index_select(0, &idx))
            }
            None => (l.xs.narrow(0, start, size), l.ys.narrow(0, start, size)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
