//! The speaker-clustering lab: a bidirectional LSTM over MFCC frames whose
//! utterance embeddings are pulled towards one learned proxy per speaker.
//!
//! Two heads ([`SpeakerHead`]):
//!
//! - the lab's ([`SpeakerHead::LAB`]): the last states joined with the
//!   time-mean, and a proxy loss in the style of Proxy-NCA
//!   (Movshovitz-Attias et al. 2017) with Euclidean distances as logits;
//! - statistics pooling (mean and standard deviation of the BiLSTM outputs
//!   over an utterance's valid frames, as x-vectors, Snyder et al. 2018), an
//!   optional linear projection, L2-normalised embeddings and cosine proxies
//!   with a scale and an additive margin (AM-softmax, Wang et al. 2018).
//!
//! ```text
//! x [B, T, I] --BiLSTM--> out [B, T, 2H] --chunk(2, -1)--> fwd, bwd [B, T, H]
//! lab:    emb = cat(fwd[:, -1], bwd[:, 0], out.mean(1))              [B, 4H]
//!         logits = -PairwiseDistance(p=2, eps=1e-6)(emb_i, proxy_j)  [B, S]
//! cosine: emb = normalize(W cat(mean_t out, std_t out) + b)          [B, E]
//!         logits = s * (cos(emb_i, proxy_j) - m [j == y_i])          [B, S]
//! (with lengths: fwd at each utterance's last frame, bwd starting there,
//!  means and deviations over its own frames; see `crate::lengths`)
//! loss = cross_entropy(logits, speaker)
//! ```
//!
//! The recurrence is [`BidirStack`] over the hand-written [`LSTMCell`], laid
//! out as `nn.LSTM(bidirectional=True, batch_first=True)`; parameters are
//! `lstm.weight_ih_l0`, `lstm.weight_ih_l0_reverse`, ..., `proj.weight`,
//! `proj.bias` (when projecting) and `proxies`.

use crate::lengths::{last_valid, masked_mean};
use crate::{BidirStack, Engine};
use cells::{CellWeights, LSTMCell};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// `nn.PairwiseDistance`'s default epsilon, added to every difference.
pub const PAIRWISE_EPS: f64 = 1e-6;

/// How the BiLSTM's outputs become an utterance embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The lab's: `cat(fwd[:, -1], bwd[:, 0], out.mean(1))` over all frames,
    /// padding included ([`join_embedding`]).
    Last,
    /// Mean and standard deviation of `out` over each utterance's valid
    /// frames ([`stats_pool`]).
    Stats,
}

/// How embeddings are scored against the proxies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProxyLoss {
    /// The lab's: logits are minus `PairwiseDistance(p=2)` to every proxy.
    Distance,
    /// AM-softmax: logits `scale * (cos - margin at the true speaker)` between
    /// L2-normalised embeddings and proxies.
    Cosine { scale: f64, margin: f64 },
}

/// The part of a [`SpeakerModel`] after the BiLSTM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeakerHead {
    pub pooling: Pooling,
    pub loss: ProxyLoss,
    /// A linear layer from the pooled vector to this many dimensions (none:
    /// the pooled vector is the embedding).
    pub projection: Option<i64>,
    /// Dropout on the pooled vector while training (0: none).
    pub dropout: f64,
}

impl SpeakerHead {
    /// The lab's head: last states and time-mean, Euclidean proxy loss.
    pub const LAB: SpeakerHead = SpeakerHead {
        pooling: Pooling::Last,
        loss: ProxyLoss::Distance,
        projection: None,
        dropout: 0.0,
    };
}

impl Default for SpeakerHead {
    /// The lab's head, which older run folders were trained with.
    fn default() -> Self {
        Self::LAB
    }
}

/// Shape of a [`SpeakerModel`]; saved as the run's `config.json` model part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeakerConfig {
    /// Features per frame (MFCC coefficients).
    pub input_size: i64,
    /// Hidden units per direction.
    pub hidden_size: i64,
    /// Stacked bidirectional layers.
    pub num_layers: i64,
    /// Training speakers: one proxy each.
    pub num_speakers: i64,
    /// Pooling, projection and proxy loss (the lab's when absent).
    #[serde(default)]
    pub head: SpeakerHead,
}

impl SpeakerConfig {
    /// Width of the pooled vector: `4H` for both poolings (last forward and
    /// first backward output plus the time-mean; or mean and std of `2H`).
    pub fn pooled_size(&self) -> i64 {
        4 * self.hidden_size
    }

    /// Width of an embedding: the projection's, else the pooled vector's.
    pub fn embedding_size(&self) -> i64 {
        self.head.projection.unwrap_or_else(|| self.pooled_size())
    }
}

/// The BiLSTM, its head and proxies.
#[derive(Debug)]
pub struct SpeakerModel {
    lstm: BidirStack<LSTMCell>,
    proj: Option<nn::Linear>,
    /// `[S, E]`, one learnable row per training speaker.
    pub proxies: Tensor,
    config: SpeakerConfig,
    engine: Engine,
}

impl SpeakerModel {
    /// Registers `lstm.*` (U(±1/√H), PyTorch's LSTM initialisation), `proj.*`
    /// when the head projects (`nn.Linear`'s initialisation) and `proxies`
    /// (Xavier uniform) under `path`, in that order.
    pub fn new<'a>(path: impl Borrow<nn::Path<'a>>, config: SpeakerConfig) -> Self {
        let p = path.borrow();
        let lstm = BidirStack::new(
            &(p / "lstm"),
            config.input_size,
            config.hidden_size,
            config.num_layers,
            |p: &nn::Path, i, h, suffix: &str| {
                LSTMCell::from_weights(CellWeights::named(p, i, h, 4, true, suffix))
            },
        );
        let proj = config
            .head
            .projection
            .map(|e| crate::torch_linear(&(p / "proj"), config.pooled_size(), e));
        let proxies = xavier_uniform(p, "proxies", config.num_speakers, config.embedding_size());
        Self { lstm, proj, proxies, config, engine: Engine::Custom }
    }

    /// The same model run by `engine` (the hand-written cells by default).
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    pub fn lstm(&self) -> &BidirStack<LSTMCell> {
        &self.lstm
    }

    /// Utterance embeddings of full-length clips: `[B, T, I] -> [B, E]`.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        self.embed_lengths(x, None, false)
    }

    /// Embeddings `[B, T, I] -> [B, E]` of a padded batch whose row `b` holds
    /// `lengths[b]` valid frames (Int64 `[B]`, in `1..=T`; all `T` when
    /// `None`): each utterance is read as if alone (the forward direction to
    /// its last frame, the backward one from there, pooling over its own
    /// frames). `train` turns the head's dropout on.
    ///
    /// # Panics
    /// When `lengths` is not Int64 `[B]` with values in `1..=T`.
    pub fn embed_lengths(&self, x: &Tensor, lengths: Option<&Tensor>, train: bool) -> Tensor {
        if let Some(l) = lengths {
            crate::lengths::check(l, x.size()[0], x.size()[1]);
        }
        let out = match self.engine {
            Engine::Custom => self.lstm.forward_lengths(x, lengths),
            Engine::Fused => self.lstm.forward_fused(x, lengths, train),
        };
        let pooled = match self.config.head.pooling {
            Pooling::Last => join_embedding_lengths(&out, lengths),
            Pooling::Stats => match lengths {
                Some(l) => stats_pool(&out, l),
                None => stats_pool(&out, &full_lengths(x)),
            },
        };
        let pooled = if train && self.config.head.dropout > 0.0 {
            pooled.dropout(self.config.head.dropout, true)
        } else {
            pooled
        };
        let e = match &self.proj {
            Some(l) => pooled.apply(l),
            None => pooled,
        };
        match self.config.head.loss {
            ProxyLoss::Distance => e,
            ProxyLoss::Cosine { .. } => l2_normalize(&e),
        }
    }

    /// The lengths a recipe's head reads: statistics pooling reads each
    /// clip's own frames; the lab's head reads the padded window, as the lab
    /// does, so that its numbers stay the lab's.
    fn head_lengths<'a>(&self, lengths: &'a Tensor) -> Option<&'a Tensor> {
        (self.config.head.pooling == Pooling::Stats).then_some(lengths)
    }

    /// Utterance embeddings `[B, T, I] -> [B, E]` when only the first
    /// `lengths[b]` frames of clip `b` are speech (`lengths` `[B]`, Int64),
    /// read as the head reads them (see [`SpeakerModel::embed_lengths`]; the
    /// lab's head reads the whole padded window).
    pub fn embed_valid(&self, x: &Tensor, lengths: &Tensor) -> Tensor {
        self.embed_lengths(x, self.head_lengths(lengths), false)
    }

    /// Logits of full-length clips against every proxy: `[B, T, I] -> [B, S]`.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.proxy_scores(&self.embed(x))
    }

    /// Logits of embeddings `[B, E]` against every proxy, without a margin:
    /// minus distances (lab) or `scale * cos` (cosine head).
    pub fn proxy_scores(&self, embeddings: &Tensor) -> Tensor {
        match self.config.head.loss {
            ProxyLoss::Distance => proxy_logits(embeddings, &self.proxies),
            ProxyLoss::Cosine { scale, .. } => cosine_logits(embeddings, &self.proxies) * scale,
        }
    }

    /// The training loss of full-length clips against speaker labels `[B]` (Int64).
    pub fn loss(&self, x: &Tensor, labels: &Tensor) -> Tensor {
        self.loss_lengths(x, None, labels)
    }

    /// The training loss (dropout on) of clips with `lengths` valid frames,
    /// read as [`SpeakerModel::embed_valid`] reads them.
    pub fn loss_valid(&self, x: &Tensor, lengths: &Tensor, labels: &Tensor) -> Tensor {
        self.loss_lengths(x, self.head_lengths(lengths), labels)
    }

    /// The training loss (dropout on) of a padded batch with `lengths` valid
    /// frames (see [`SpeakerModel::embed_lengths`]).
    pub fn loss_lengths(&self, x: &Tensor, lengths: Option<&Tensor>, labels: &Tensor) -> Tensor {
        let e = self.embed_lengths(x, lengths, true);
        self.embedding_loss(&e, labels)
    }

    /// The head's loss of embeddings `[B, E]` against labels `[B]`.
    pub fn embedding_loss(&self, embeddings: &Tensor, labels: &Tensor) -> Tensor {
        match self.config.head.loss {
            ProxyLoss::Distance => proxy_loss(embeddings, &self.proxies, labels),
            ProxyLoss::Cosine { scale, margin } => {
                am_softmax_loss(embeddings, &self.proxies, labels, scale, margin)
            }
        }
    }

    /// Index of the best-scoring proxy for each embedding `[B, E] -> [B]`.
    pub fn nearest_proxy(&self, embeddings: &Tensor) -> Tensor {
        self.proxy_scores(embeddings).argmax(-1, false)
    }
}

/// Every clip of `x` `[B, T, I]` valid over all `T` frames: `[B]` Int64.
pub fn full_lengths(x: &Tensor) -> Tensor {
    let (b, t) = (x.size()[0], x.size()[1]);
    Tensor::full([b], t, (Kind::Int64, x.device()))
}

/// Floor under a variance before its square root in [`stats_pool`].
pub const STATS_EPS: f64 = 1e-5;

/// Statistics pooling over valid frames: `out` `[B, T, D]`, `lengths` `[B]`
/// (Int64, each clamped to `1..=T`) -> `cat(mean, std)` `[B, 2D]`, where
/// frame `t` of clip `b` counts when `t < lengths[b]` and
/// `std = sqrt(var + eps)` with the population variance.
pub fn stats_pool(out: &Tensor, lengths: &Tensor) -> Tensor {
    let t = out.size()[1];
    let lengths = lengths.to_device(out.device()).to_kind(Kind::Int64).clamp(1, t.max(1));
    let steps = Tensor::arange(t, (Kind::Int64, out.device()));
    let mask = steps.unsqueeze(0).lt_tensor(&lengths.unsqueeze(1)); // [B, T]
    let mask = mask.to_kind(out.kind()).unsqueeze(-1); // [B, T, 1]
    let n = lengths.to_kind(out.kind()).unsqueeze(-1); // [B, 1]
    let mean = (out * &mask).sum_dim_intlist(1, false, out.kind()) / &n; // [B, D]
    let centred = (out - mean.unsqueeze(1)) * &mask;
    let var = centred.square().sum_dim_intlist(1, false, out.kind()) / &n;
    Tensor::cat(&[mean, (var + STATS_EPS).sqrt()], -1)
}

/// Rows of `x` `[N, D]` divided by their 2-norm (at least 1e-12, as
/// `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
    x / norm
}

/// Cosine similarity of every embedding to every proxy, `[B, D] x [S, D] -> [B, S]`.
pub fn cosine_logits(embeddings: &Tensor, proxies: &Tensor) -> Tensor {
    l2_normalize(embeddings).matmul(&l2_normalize(proxies).tr())
}

/// AM-softmax: mean cross-entropy of `scale * (cos(e_i, p_j) - margin [j == y_i])`.
pub fn am_softmax_loss(
    embeddings: &Tensor,
    proxies: &Tensor,
    labels: &Tensor,
    scale: f64,
    margin: f64,
) -> Tensor {
    let cos = cosine_logits(embeddings, proxies);
    let s = cos.size()[1];
    let one_hot = labels.one_hot(s).to_kind(cos.kind());
    let logits = (cos - one_hot * margin) * scale;
    logits.log_softmax(-1, logits.kind()).nll_loss(labels)
}

/// `torch.chunk(out, 2, dim=-1)`: a bidirectional output `[B, T, 2H]` split
/// into its forward and backward directions, `[B, T, H]` each.
pub fn split_directions(out: &Tensor) -> (Tensor, Tensor) {
    let mut halves = out.chunk(2, -1);
    assert_eq!(halves.len(), 2, "a bidirectional output has an even last dimension");
    let bwd = halves.pop().expect("two halves");
    let fwd = halves.pop().expect("two halves");
    (fwd, bwd)
}

/// The embedding of a bidirectional output `[B, T, 2H] -> [B, 4H]`: the forward
/// direction's last output (it has read the whole utterance), the backward
/// direction's first output (likewise, read from the end), and the mean of
/// `out` over time.
pub fn join_embedding(out: &Tensor) -> Tensor {
    join_embedding_lengths(out, None)
}

/// [`join_embedding`] of a padded batch with `lengths [B]` valid frames:
/// the forward direction at each row's last valid frame, and the mean over
/// valid frames only.
pub fn join_embedding_lengths(out: &Tensor, lengths: Option<&Tensor>) -> Tensor {
    let (fwd, bwd) = split_directions(out);
    let last_fwd = last_valid(&fwd, lengths); // [B, H]
    let first_bwd = bwd.select(1, 0); // [B, H]
    let mean = masked_mean(out, lengths); // [B, 2H]
    Tensor::cat(&[last_fwd, first_bwd, mean], -1)
}

/// `nn.PairwiseDistance(p=2)` from every embedding to every proxy:
/// `d[i, j] = ||e_i - p_j + eps||_2`, `[B, D] x [S, D] -> [B, S]`.
pub fn proxy_distances(embeddings: &Tensor, proxies: &Tensor) -> Tensor {
    Tensor::pairwise_distance(
        &embeddings.unsqueeze(1), // [B, 1, D]
        &proxies.unsqueeze(0),    // [1, S, D]
        2.0,
        PAIRWISE_EPS,
        false,
    )
}

/// Logits of the proxy loss: negative distances, `[B, S]`.
pub fn proxy_logits(embeddings: &Tensor, proxies: &Tensor) -> Tensor {
    -proxy_distances(embeddings, proxies)
}

/// Mean cross-entropy of the negative distances against `labels` `[B]`
/// (`F.cross_entropy`; computed in the logits' dtype, unlike tch's
/// `cross_entropy_for_logits`, which casts to f32).
pub fn proxy_loss(embeddings: &Tensor, proxies: &Tensor, labels: &Tensor) -> Tensor {
    let logits = proxy_logits(embeddings, proxies);
    logits.log_softmax(-1, logits.kind()).nll_loss(labels)
}

/// `nn.init.xavier_uniform_` (Glorot & Bengio 2010) on a new `[rows, cols]`
/// variable: U(±√(6 / (fan_in + fan_out))) with `fan_in = cols`, `fan_out = rows`.
pub fn xavier_uniform(path: &nn::Path, name: &str, rows: i64, cols: i64) -> Tensor {
    let bound = xavier_bound(rows, cols);
    path.var(name, &[rows, cols], Init::Uniform { lo: -bound, up: bound })
}

/// The Xavier-uniform bound of a `[rows, cols]` matrix (gain 1).
pub fn xavier_bound(rows: i64, cols: i64) -> f64 {
    (6.0 / (rows + cols) as f64).sqrt()
}

/// Fraction of rows of `logits` `[B, S]` whose argmax equals `labels` `[B]`.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    let b = labels.size()[0];
    if b == 0 {
        return 0.0;
    }
    let correct = logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Int64).int64_value(&[]);
    correct as f64 / b as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

    fn config() -> SpeakerConfig {
        SpeakerConfig {
            input_size: 5,
            hidden_size: 3,
            num_layers: 2,
            num_speakers: 4,
            head: SpeakerHead::LAB,
        }
    }

    const COSINE: SpeakerHead = SpeakerHead {
        pooling: Pooling::Stats,
        loss: ProxyLoss::Cosine { scale: 30.0, margin: 0.2 },
        projection: Some(7),
        dropout: 0.1,
    };

    #[test]
    fn stats_pool_reads_only_valid_frames() {
        let out = Tensor::randn([3, 6, 4], F64);
        let lengths = Tensor::from_slice(&[6i64, 2, 1]);
        let got = stats_pool(&out, &lengths);
        assert_eq!(got.size(), [3, 8]);
        for b in 0..3 {
            let l = lengths.int64_value(&[b]);
            for d in 0..4 {
                let v: Vec<f64> = out.get(b).narrow(0, 0, l).select(1, d).try_into().unwrap();
                let mean = v.iter().sum::<f64>() / l as f64;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / l as f64;
                assert!((got.double_value(&[b, d]) - mean).abs() < 1e-12);
                let std = (var + STATS_EPS).sqrt();
                assert!((got.double_value(&[b, 4 + d]) - std).abs() < 1e-12);
            }
        }
        // Frames past the length change nothing; lengths past T count T frames.
        let garbage = out.copy();
        let _ = garbage.narrow(1, 2, 4).get(1).fill_(1e6);
        assert!(stats_pool(&garbage, &lengths).get(1).allclose(&got.get(1), 1e-12, 1e-12, false));
        let full = stats_pool(&out, &Tensor::from_slice(&[99i64, 6, 6]));
        assert!(full.allclose(&stats_pool(&out, &full_lengths(&out)), 1e-12, 1e-12, false));
    }

    /// AM-softmax against a direct computation in f64, with gradients.
    #[test]
    fn am_softmax_matches_direct_computation() {
        let e = Tensor::randn([5, 4], F64).set_requires_grad(true);
        let p = Tensor::randn([3, 4], F64).set_requires_grad(true);
        let y = Tensor::from_slice(&[0i64, 2, 1, 1, 0]);
        let (s, m) = (30.0, 0.2);
        let loss = am_softmax_loss(&e, &p, &y, s, m);
        let g = Tensor::run_backward(&[&loss], &[&e, &p], false, false);

        let e2 = e.detach().set_requires_grad(true);
        let p2 = p.detach().set_requires_grad(true);
        let en = &e2 / e2.square().sum_dim_intlist(-1, true, Kind::Double).sqrt();
        let pn = &p2 / p2.square().sum_dim_intlist(-1, true, Kind::Double).sqrt();
        let cos = en.matmul(&pn.tr()); // [5, 3]
        let labels: Vec<i64> = y.shallow_clone().try_into().unwrap();
        let mut direct = 0.0;
        let cosv: Vec<Vec<f64>> = (&cos).try_into().unwrap();
        for (i, &l) in labels.iter().enumerate() {
            let z: Vec<f64> =
                (0..3).map(|j| s * (cosv[i][j] - if j as i64 == l { m } else { 0.0 })).collect();
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            direct += (lse - z[l as usize]) / 5.0;
        }
        assert!(
            (loss.double_value(&[]) - direct).abs() < 1e-10,
            "{} vs {direct}",
            loss.double_value(&[])
        );
        // gradients of the same expression built from tensors
        let one_hot = y.one_hot(3).to_kind(Kind::Double);
        let z = (cos - one_hot * m) * s;
        let t = -(z.log_softmax(-1, Kind::Double) * y.one_hot(3).to_kind(Kind::Double))
            .sum(Kind::Double)
            / 5.0;
        let g2 = Tensor::run_backward(&[&t], &[&e2, &p2], false, false);
        assert!(g[0].allclose(&g2[0], 1e-10, 1e-12, false), "embedding gradients differ");
        assert!(g[1].allclose(&g2[1], 1e-10, 1e-12, false), "proxy gradients differ");
        // Cosine logits are scale-free: scaling an embedding changes nothing.
        let c1 = cosine_logits(&e.detach(), &p.detach());
        let c2 = cosine_logits(&(e.detach() * 7.0), &p.detach());
        assert!(c1.allclose(&c2, 1e-12, 1e-12, false));
    }

    #[test]
    fn cosine_head_shapes_names_and_unit_embeddings() {
        let vs = nn::VarStore::new(Device::Cpu);
        let c = SpeakerConfig { head: COSINE, ..config() };
        assert_eq!((c.pooled_size(), c.embedding_size()), (12, 7));
        let m = SpeakerModel::new(vs.root(), c);
        let x = Tensor::randn([6, 9, 5], (Kind::Float, Device::Cpu));
        let lengths = Tensor::from_slice(&[9i64, 3, 5, 1, 9, 2]);
        let e = m.embed_valid(&x, &lengths);
        assert_eq!(e.size(), [6, 7]);
        let norms = e.norm_scalaropt_dim(2, [-1], false);
        assert!(norms.allclose(&Tensor::ones([6], (Kind::Float, Device::Cpu)), 1e-5, 1e-6, false));
        // Pooling reads each clip's valid frames: its length changes the embedding.
        let e2 = m.embed_valid(&x, &Tensor::from_slice(&[9i64, 9, 5, 1, 9, 2]));
        assert!(e2.get(0).allclose(&e.get(0), 1e-6, 1e-7, false));
        assert!(!e2.get(1).allclose(&e.get(1), 1e-5, 1e-6, false));
        assert_eq!(m.proxy_scores(&e).size(), [6, 4]);
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(
            names.contains(&"proj.weight".to_owned()) && names.contains(&"proj.bias".to_owned())
        );
        assert_eq!(vs.variables()["proxies"].size(), [4, 7]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        m.loss_valid(&x, &lengths, &y).backward();
        for (name, t) in vs.variables() {
            assert!(
                t.grad().abs().sum(Kind::Double).double_value(&[]) > 0.0,
                "{name}: zero gradient"
            );
        }
    }

    #[test]
    fn chunk_and_join_shapes() {
        let out = Tensor::arange(2 * 4 * 6, F64).view([2, 4, 6]); // B=2, T=4, 2H=6
        let (f, b) = split_directions(&out);
        assert_eq!(f.size(), [2, 4, 3]);
        assert_eq!(b.size(), [2, 4, 3]);
        assert!(f.equal(&out.narrow(2, 0, 3)));
        assert!(b.equal(&out.narrow(2, 3, 3)));
        let e = join_embedding(&out);
        assert_eq!(e.size(), [2, 12]);
        // Batch 0: forward at t=3 is 18,19,20; backward at t=0 is 3,4,5; the
        // time-mean of out[0] is out[0, 0] + 9 (rows step by 6, mean of t=0..3).
        let row: Vec<f64> = e.get(0).try_into().unwrap();
        let want = [18.0, 19.0, 20.0, 3.0, 4.0, 5.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0];
        assert_eq!(row, want);
    }

    #[test]
    fn model_shapes_and_parameter_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let c = config();
        let m = SpeakerModel::new(vs.root(), c);
        let x = Tensor::randn([7, 9, 5], (Kind::Float, Device::Cpu));
        assert_eq!(m.embed(&x).size(), [7, 12]);
        assert_eq!(m.logits(&x).size(), [7, 4]);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        let mut want = vec!["proxies".to_owned()];
        for l in 0..2 {
            for dir in ["", "_reverse"] {
                for w in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
                    want.push(format!("lstm.{w}_l{l}{dir}"));
                }
            }
        }
        want.sort();
        assert_eq!(names, want);
        // nn.LSTM(5, 3, 2, bidirectional=True) has 2*(4*3*(5+3)+2*12) + 2*(4*3*(6+3)+2*12)
        // = 240 + 264 parameters; proxies add 4 * 12.
        let count: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(count, 240 + 264 + 48);
    }

    #[test]
    fn xavier_bounds() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = xavier_uniform(&vs.root(), "p", 50, 200);
        let bound = (6.0f64 / 250.0).sqrt();
        assert!((xavier_bound(50, 200) - bound).abs() < 1e-15);
        let max = p.abs().max().double_value(&[]);
        assert!(max <= bound, "{max} > {bound}");
        // 10k draws from U(±b) reach past 0.95 b and have variance b²/3.
        assert!(max > 0.95 * bound);
        let var = p.to_kind(Kind::Double).var(true).double_value(&[]);
        assert!((var - bound * bound / 3.0).abs() < 0.05 * bound * bound / 3.0, "variance {var}");
    }

    /// The proxy loss against a direct computation: differences, eps, squares,
    /// square roots, log-softmax and a gather, in f64, with gradients.
    #[test]
    fn proxy_loss_matches_direct_computation() {
        let e = Tensor::randn([5, 4], F64).set_requires_grad(true);
        let p = Tensor::randn([3, 4], F64).set_requires_grad(true);
        let y = Tensor::from_slice(&[0i64, 2, 1, 1, 0]);

        let loss = proxy_loss(&e, &p, &y);
        let (ge, gp) = {
            let g = Tensor::run_backward(&[&loss], &[&e, &p], false, false);
            (g[0].copy(), g[1].copy())
        };

        let e2 = e.detach().set_requires_grad(true);
        let p2 = p.detach().set_requires_grad(true);
        let diff = e2.unsqueeze(1) - p2.unsqueeze(0) + PAIRWISE_EPS; // [5, 3, 4]
        let dist = diff.square().sum_dim_intlist(-1, false, Kind::Double).sqrt(); // [5, 3]
        let logits = -dist;
        let logz = logits.exp().sum_dim_intlist(-1, true, Kind::Double).log();
        let direct = -(logits - logz).gather(1, &y.unsqueeze(1), false).mean(Kind::Double);
        let g = Tensor::run_backward(&[&direct], &[&e2, &p2], false, false);

        assert!((loss.double_value(&[]) - direct.double_value(&[])).abs() < 1e-12);
        assert!(ge.allclose(&g[0], 1e-10, 1e-12, false), "embedding gradients differ");
        assert!(gp.allclose(&g[1], 1e-10, 1e-12, false), "proxy gradients differ");

        // A worked case: e = 0, proxies at distance 1 and 2 (plus eps effects).
        let e = Tensor::zeros([1, 2], F64);
        let p = Tensor::from_slice2(&[[1.0, 0.0], [0.0, 2.0]]);
        let d: Vec<f64> = proxy_distances(&e, &p).view([-1]).try_into().unwrap();
        let eps = PAIRWISE_EPS;
        assert!((d[0] - ((1.0 - eps).powi(2) + eps * eps).sqrt()).abs() < 1e-15);
        assert!((d[1] - (eps * eps + (2.0 - eps).powi(2)).sqrt()).abs() < 1e-15);
        let l = proxy_loss(&e, &p, &Tensor::from_slice(&[0i64])).double_value(&[]);
        let want = -((-d[0]) - ((-d[0]).exp() + (-d[1]).exp()).ln());
        assert!((l - want).abs() < 1e-12);
    }

    #[test]
    fn gradients_reach_every_parameter() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SpeakerModel::new(vs.root(), config());
        let x = Tensor::randn([6, 8, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        m.loss(&x, &y).backward();
        for (name, t) in vs.variables() {
            let g = t.grad();
            assert!(g.defined(), "{name} has no gradient");
            assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name}: zero gradient");
        }
    }

    #[test]
    fn short_training_lowers_the_loss() {
        let vs = nn::VarStore::new(Device::Cpu);
        let c = SpeakerConfig {
            input_size: 4,
            hidden_size: 8,
            num_layers: 1,
            num_speakers: 3,
            head: SpeakerHead::LAB,
        };
        let m = SpeakerModel::new(vs.root(), c);
        // Three "speakers": noise around three different constant frames.
        let means =
            Tensor::eye(4, (Kind::Float, Device::Cpu)).narrow(0, 0, 3).view([3, 1, 4]) * 2.0;
        let y = Tensor::arange(24, (Kind::Int64, Device::Cpu)).remainder(3);
        let x = means.index_select(0, &y)
            + Tensor::randn([24, 10, 4], (Kind::Float, Device::Cpu)) * 0.5;
        let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
        let first = m.loss(&x, &y).double_value(&[]);
        for _ in 0..60 {
            let loss = m.loss(&x, &y);
            opt.backward_step(&loss);
        }
        let last = m.loss(&x, &y).double_value(&[]);
        assert!(last < 0.5 * first, "loss {first} -> {last}");
        let acc = tch::no_grad(|| accuracy(&m.logits(&x), &y));
        assert!(acc > 0.9, "accuracy {acc}");
        assert_eq!(m.nearest_proxy(&m.embed(&x)).size(), [24]);
    }
}
