//! The speaker-clustering lab: a bidirectional LSTM over MFCC frames whose
//! utterance embeddings are pulled towards one learned proxy per speaker
//! (a proxy loss in the style of Proxy-NCA, Movshovitz-Attias et al. 2017,
//! with Euclidean distances as logits).
//!
//! ```text
//! x [B, T, I] --BiLSTM--> out [B, T, 2H] --chunk(2, -1)--> fwd, bwd [B, T, H]
//! emb = cat(fwd[:, -1], bwd[:, 0], out.mean(1))                 [B, 4H]
//! (with lengths: fwd at each utterance's last frame, bwd starting there,
//!  the mean over its own frames; see `crate::lengths`)
//! logits = -PairwiseDistance(p=2, eps=1e-6)(emb_i, proxy_j)     [B, S]
//! loss = cross_entropy(logits, speaker)
//! ```
//!
//! The recurrence is [`BidirStack`] over the hand-written [`LSTMCell`], laid
//! out as `nn.LSTM(bidirectional=True, batch_first=True)`; parameters are
//! `lstm.weight_ih_l0`, `lstm.weight_ih_l0_reverse`, ... and `proxies`.

use crate::lengths::{last_valid, masked_mean};
use crate::{BidirStack, Engine};
use cells::{CellWeights, LSTMCell};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// `nn.PairwiseDistance`'s default epsilon, added to every difference.
pub const PAIRWISE_EPS: f64 = 1e-6;

/// Shape of a [`SpeakerModel`]; saved as the run's `config.json` model part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerConfig {
    /// Features per frame (MFCC coefficients).
    pub input_size: i64,
    /// Hidden units per direction.
    pub hidden_size: i64,
    /// Stacked bidirectional layers.
    pub num_layers: i64,
    /// Training speakers: one proxy each.
    pub num_speakers: i64,
}

impl SpeakerConfig {
    /// Width of an embedding: `4H` (last forward output `H`, first backward
    /// output `H`, time-mean of both directions `2H`).
    pub fn embedding_size(&self) -> i64 {
        4 * self.hidden_size
    }
}

/// The BiLSTM and its proxies.
#[derive(Debug)]
pub struct SpeakerModel {
    lstm: BidirStack<LSTMCell>,
    /// `[S, 4H]`, one learnable row per training speaker.
    pub proxies: Tensor,
    config: SpeakerConfig,
    engine: Engine,
}

impl SpeakerModel {
    /// Registers `lstm.*` (U(±1/√H), PyTorch's LSTM initialisation) and
    /// `proxies` (Xavier uniform) under `path`.
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
        let proxies = xavier_uniform(p, "proxies", config.num_speakers, config.embedding_size());
        Self { lstm, proxies, config, engine: Engine::Custom }
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

    /// Utterance embeddings: `[B, T, I] -> [B, 4H]`.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        self.embed_lengths(x, None, true)
    }

    /// Embeddings of a padded batch whose row `b` holds `lengths[b]` valid
    /// frames (Int64 `[B]`, in `1..=T`; all `T` when `None`): each utterance
    /// is read as if alone. `train` only matters to the fused engine.
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
        join_embedding_lengths(&out, lengths)
    }

    /// `-distance` to every proxy: `[B, T, I] -> [B, S]`.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        proxy_logits(&self.embed(x), &self.proxies)
    }

    /// The proxy loss of a batch against speaker labels `[B]` (Int64).
    pub fn loss(&self, x: &Tensor, labels: &Tensor) -> Tensor {
        proxy_loss(&self.embed(x), &self.proxies, labels)
    }

    /// Index of the nearest proxy for each embedding `[B, 4H] -> [B]`.
    pub fn nearest_proxy(&self, embeddings: &Tensor) -> Tensor {
        proxy_logits(embeddings, &self.proxies).argmax(-1, false)
    }
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
        SpeakerConfig { input_size: 5, hidden_size: 3, num_layers: 2, num_speakers: 4 }
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
        let c = SpeakerConfig { input_size: 4, hidden_size: 8, num_layers: 1, num_speakers: 3 };
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
