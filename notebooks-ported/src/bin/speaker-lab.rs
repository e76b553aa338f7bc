//! The speaker-clustering lab, ported from PyTorch to Rust.
//!
//! The lab trains a bidirectional LSTM on the MFCC frames of utterances so that
//! every utterance becomes an embedding, pulled towards one learned proxy per
//! training speaker (a proxy loss: softmax over minus the distances to the
//! proxies). Then it clusters the embeddings with k-means, scores the clusters'
//! purity on speakers seen in training and on speakers it never saw, and looks
//! at them in 2-D. Along the way it asks the questions answered below, one
//! section each, in the lab's order: device placement, parameters vs buffers,
//! Xavier initialisation, `nn.PairwiseDistance`, `torch.chunk`, the forward
//! pass, the proxy loss, `StepLR`, training and clustering, and CPU vs GPU
//! iterations per second.
//!
//! The work is done by the library: `models::speaker` (the BiLSTM, the proxies,
//! the loss), `train::schedule` (`StepLR`), `models::cluster` (k-means,
//! purity, PCA) and `data::speakers` (an espeak-ng speaker corpus); this is the
//! same model `rnnlab train --model speaker` trains.
//!
//! Run: `make notebook NB=speaker-lab` (full: the 30-speaker corpus in
//! `data/speakers`, made on first use as `make speakers-data` does, 4 speakers
//! held out, hidden 64, 60 epochs; 7 min 46 s on one thread of a shared 2-core
//! CPU) or `make notebook NB=speaker-lab QUICK=1` (12 speakers x 24 utterances
//! made in the output folder, 3 held out, hidden 32, 15 epochs; about 30 s).
//! Outputs: `results/notebooks/speaker-lab/{output.md,embeddings.png}`.
//!
//! What a learner should see: the Xavier-drawn proxies inside their bound; the
//! library's distance equal to a hand computation, eps included; the forward
//! direction's final state at the last time step and the backward one's at the
//! first; the loss at ln(speakers) at initialisation, falling in training;
//! learning rates halving every `step_size` epochs; k-means purity rising from
//! where the untrained network starts; piles of points per speaker in the
//! scatter; the measured iterations per second. The full run here printed: loss
//! 3.2585 at initialisation (ln 26 = 3.2581), 0.0117 after training; held-out
//! accuracy (nearest proxy) 94.0%; purity 37.7% -> 90.6% on held-out utterances
//! of the 26 training speakers (k = 26) and 50.6% -> 90.9% on the 4 unseen
//! speakers (k = 4); 34.0 it/s while training, 39.3 it/s timed, on the CPU
//! (the LSTM's sequence kernel; 7.8 and 10.7 it/s step by step). Quick mode's 9 training voices separate their own held-out utterances
//! (purity near 100%) but the 3 unseen voices only partly (about 70%).

use anyhow::{anyhow, Context};
use data::cache::FeatureCache;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::{Features, MfccConfig};
use data::speakers::{
    generate_speakers, utterance_features, SpeakerCorpus, SpeakerSynthConfig, SplitConfig,
    DEFAULT_ROOT, WINDOW_SAMPLES,
};
use data::speech_commands::DEFAULT_CACHE_DIR;
use figures::scatter::{draw_legend, draw_panel, Point, PointKind};
use figures::{register_fonts, FONT};
use models::cluster::{kmeans_purity, pca_2d, KMeansConfig};
use models::speaker::{
    accuracy, join_embedding, proxy_distances, proxy_logits, proxy_loss, split_directions,
    xavier_bound, SpeakerConfig, SpeakerModel, PAIRWISE_EPS,
};
use notebooks::{parameter_count, say, Notebook};
use plotters::prelude::*;
use std::path::Path;
use std::time::Instant;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Cuda, Device, Kind, Tensor};
use train::recipes::SPEAKER_LAB;
use train::schedule::{LrSchedule, StepLR};
use train::{Eval, Goal, Optim, RunDir, Schedule, Task};

/// The lab's settings, full and quick.
struct Settings {
    /// Speakers held out of training entirely (the "unseen" ones).
    holdout: usize,
    hidden: i64,
    batch: usize,
    epochs: usize,
    lr: f64,
    step_size: usize,
    gamma: f64,
    /// Training iterations timed per device in the last section.
    timed: usize,
}

/// The model's part of the training run, for the `train` engine.
struct LabTask<'a> {
    vs: &'a nn::VarStore,
    model: &'a SpeakerModel,
    loader: &'a DataLoader,
    order: Option<Tensor>,
    heldout: &'a Set,
}

/// Nearest-proxy accuracy on the held-out utterances (a `metrics.csv` column).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Heldout {
    heldout_accuracy: f64,
}

impl train::Scores for Heldout {
    const COLUMNS: &'static [&'static str] = &["heldout_accuracy"];
}

impl Task for LabTask<'_> {
    type Scores = Heldout;

    fn var_store(&self) -> &nn::VarStore {
        self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        self.loader.len() as u64
    }

    fn begin_epoch(&mut self, epoch: u64) {
        self.order = self.loader.epoch_order(epoch);
    }

    fn train_loss(&mut self, _step: u64, batch: u64) -> Tensor {
        let (x, y) = self.loader.batch(self.order.as_ref(), batch as usize); // [B, T, C], [B]
        self.model.loss(&x, &y)
    }

    fn evaluate(&mut self) -> anyhow::Result<Eval<Heldout>> {
        let logits =
            tch::no_grad(|| proxy_logits(&embed(self.model, &self.heldout.x), &self.model.proxies));
        let loss = tch::no_grad(|| {
            logits.log_softmax(-1, Kind::Float).nll_loss(&self.heldout.y).double_value(&[])
        });
        let heldout_accuracy = accuracy(&logits, &self.heldout.y);
        Ok(Eval { loss, scores: Heldout { heldout_accuracy } })
    }

    fn monitor(&self, eval: &Eval<Heldout>) -> (f64, Goal) {
        (eval.scores.heldout_accuracy, Goal::Maximize)
    }
}

/// The columns of `metrics.csv` the notebook reads back.
#[derive(Debug, serde::Deserialize)]
struct LabRow {
    epoch: u64,
    loss: f64,
    lr: f64,
    heldout_accuracy: Option<f64>,
}

/// One set of utterances: standardised MFCC windows and speaker labels.
struct Set {
    x: Tensor, // [N, T, C]
    y: Tensor, // [N]
}

fn main() -> anyhow::Result<()> {
    let mut nb = Notebook::start("speaker-lab", "Speaker clustering with a proxy-loss BiLSTM")?;
    let s = nb.pick(
        // the lab's recipe (`rnnlab train --model speaker --recipe lab`)
        Settings {
            holdout: 4,
            hidden: SPEAKER_LAB.hidden_size,
            batch: SPEAKER_LAB.batch_size as usize,
            epochs: SPEAKER_LAB.epochs,
            lr: SPEAKER_LAB.lr,
            step_size: SPEAKER_LAB.step_size,
            gamma: SPEAKER_LAB.gamma,
            timed: 100,
        },
        Settings {
            holdout: 3,
            hidden: 32,
            batch: 16,
            epochs: 15,
            lr: 5e-3,
            step_size: 4,
            gamma: 0.5,
            timed: 20,
        },
    );

    // ------------------------------------------------------------------------
    // The data. Each speaker is a folder of short recordings; each utterance
    // is cut or zero-padded to 1.5 s and turned into 47 frames of 20 MFCCs
    // (librosa's settings), standardised per coefficient with statistics of
    // the training utterances only. Some speakers are kept out of training
    // altogether: the real question of the lab is whether the embedding
    // separates voices it has never heard, not only the ones it has proxies
    // for. Of every training speaker, 20% of the utterances are held out too.
    // ------------------------------------------------------------------------
    nb.section("The data: MFCC sequences of utterances");
    let (corpus, cache) = open_corpus(&mut nb)?;
    let split =
        corpus.split(&SplitConfig { holdout_speakers: s.holdout, ..SplitConfig::default() })?;
    let (train_f, train_y) = utterance_features(&cache, &split.train)?;
    let (held_f, held_y) = utterance_features(&cache, &split.eval)?;
    let (unseen_f, unseen_y) = utterance_features(&cache, &split.unseen)?;
    let standardizer = Standardizer::fit(&train_f);
    let device = nb.device();
    let loader = DataLoader::from_features(&train_f, &train_y, s.batch, device)?
        .shuffle(0)
        .standardize(&standardizer);
    let train = {
        let (x, y) = loader.tensors();
        Set { x: x.shallow_clone(), y: y.shallow_clone() }
    };
    let heldout = to_set(&held_f, &held_y, &standardizer, device)?;
    let unseen = to_set(&unseen_f, &unseen_y, &standardizer, device)?;
    let num_speakers = split.train_speakers.len() as i64;
    say!(
        nb,
        "{} speakers: {} for training ({} training + {} held-out utterances), {} unseen \
         ({} utterances): {}",
        corpus.speakers().len(),
        num_speakers,
        split.train.len(),
        split.eval.len(),
        split.unseen_speakers.len(),
        split.unseen.len(),
        split.unseen_speakers.join(", ")
    );
    say!(nb, "training features {:?} (utterances, frames, MFCCs)", train.x.size());

    // ------------------------------------------------------------------------
    // Device placement. PyTorch keeps every tensor on a device and refuses to
    // mix devices in one operation; the lab picks
    // `torch.device("cuda" if torch.cuda.is_available() else "cpu")`, builds
    // the model and calls `model.to(device)`, and moves every batch with
    // `x.to(device)`. In tch the same choice is `Device::cuda_if_available()`;
    // the model's parameters live in a `VarStore` made on the device (or moved
    // with `vs.set_device(device)`, tch's `model.to`), and tensors move with
    // `Tensor::to_device`. The notebook's DEVICE=cpu|cuda overrides the choice.
    // ------------------------------------------------------------------------
    nb.section("Device placement");
    say!(
        nb,
        "Device::cuda_if_available() chose {:?} (tch::Cuda::is_available() = {}, {} CUDA \
         device(s)); this notebook runs on {device:?}",
        Device::cuda_if_available(),
        Cuda::is_available(),
        Cuda::device_count()
    );
    let frames_cpu = Tensor::from_slice(&train_f[0].values).view([
        1,
        train_f[0].frames as i64,
        train_f[0].n_mfcc as i64,
    ]); // [1, T, C]
    let frames = frames_cpu.to_device(device);
    say!(
        nb,
        "one utterance made on {:?}, after .to_device: {:?}",
        frames_cpu.device(),
        frames.device()
    );
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let config = SpeakerConfig {
        input_size: MfccConfig::default().n_mfcc as i64,
        hidden_size: s.hidden,
        num_layers: SPEAKER_LAB.num_layers,
        num_speakers,
        head: SPEAKER_LAB.head,
    };
    let model = SpeakerModel::new(vs.root(), config);
    let on_device = vs.variables().values().filter(|t| t.device() == device).count();
    say!(
        nb,
        "VarStore on {:?}: {on_device} of {} model tensors live there; training batches \
         live on {:?}",
        vs.device(),
        vs.len(),
        train.x.device()
    );
    if device != Device::Cpu {
        // Mixing devices is an error, as in PyTorch.
        match frames_cpu.f_add(&frames) {
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                say!(nb, "adding a CPU tensor to a {device:?} one fails: {first}")
            }
            Ok(_) => say!(nb, "adding a CPU tensor to a {device:?} one worked"),
        }
    }

    // ------------------------------------------------------------------------
    // Parameters vs buffers. A PyTorch module holds two kinds of tensors:
    // parameters (`nn.Parameter`, returned by `model.parameters()`, given to
    // the optimiser, with gradients) and buffers (`self.register_buffer(...)`:
    // state such as BatchNorm's running mean, saved in the state dict and moved
    // by `.to(device)`, but never trained by gradients). In tch both live in
    // the VarStore: `vs.variables()` lists every named tensor (the state dict),
    // `vs.trainable_variables()` only the parameters, the ones an optimiser
    // built from the VarStore updates. `path.var(..)` makes a parameter,
    // `path.zeros_no_train(..)` a buffer (`register_buffer`).
    // ------------------------------------------------------------------------
    nb.section("Parameters vs buffers");
    let mut names: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in &names {
        say!(nb, "  {name:<22} {:?}  requires_grad {}", t.size(), t.requires_grad());
    }
    let params: i64 = parameter_count(&vs);
    let (i, h) = (config.input_size, config.hidden_size);
    let lstm_formula = 2 * (4 * h * (i + h) + 2 * 4 * h); // two directions
    let proxy_formula = config.num_speakers * config.embedding_size();
    say!(
        nb,
        "the model: {} tensors in vs.variables(), {} in vs.trainable_variables(): every \
         tensor is a parameter, no buffers",
        vs.variables().len(),
        vs.trainable_variables().len()
    );
    say!(
        nb,
        "{params} trainable numbers = nn.LSTM(20, {h}, bidirectional=True)'s 2·(4H(I+H) + 8H) \
         = {lstm_formula} + proxies S·4H = {proxy_formula}"
    );
    // A BatchNorm shows a buffer: its running mean is updated by the forward
    // pass in training mode (momentum 0.1), not by gradients.
    let bn_vs = nn::VarStore::new(device);
    let bn = nn::batch_norm1d(bn_vs.root() / "bn", 4, Default::default());
    say!(
        nb,
        "nn::batch_norm1d(4): {} tensors in variables(), {} trainable; running_mean \
         requires_grad {}",
        bn_vs.variables().len(),
        bn_vs.trainable_variables().len(),
        bn.running_mean.requires_grad()
    );
    let z = Tensor::randn([64, 4], (Kind::Float, device)) * 2.0 + 3.0; // [64, 4]
    bn.forward_t(&z, true).square().sum(Kind::Float).backward();
    let running_gap =
        (&bn.running_mean - z.mean_dim(0, false, Kind::Float) * 0.1).abs().max().double_value(&[]);
    say!(
        nb,
        "after one training-mode forward, running_mean = 0.1 · batch mean (largest difference \
         {running_gap:.1e}); weight.grad defined: {}, running_mean.grad defined: {}",
        bn.ws.as_ref().is_some_and(|w| w.grad().defined()),
        bn.running_mean.grad().defined()
    );
    let saved = nb.path("batchnorm.safetensors");
    bn_vs.save(&saved).with_context(|| format!("writing {}", saved.display()))?;
    let mut in_file: Vec<String> =
        Tensor::read_safetensors(&saved)?.into_iter().map(|(n, _)| n).collect();
    in_file.sort();
    say!(nb, "vs.save writes buffers too, as a state dict does: {}", in_file.join(", "));
    std::fs::remove_file(&saved).with_context(|| format!("removing {}", saved.display()))?;

    // ------------------------------------------------------------------------
    // Xavier initialisation. The proxies are a bare `[S, 4H]` parameter, so
    // the lab initialises them itself with `nn.init.xavier_uniform_`: uniform
    // on ±sqrt(6 / (fan_in + fan_out)), with fan_in the number of columns and
    // fan_out the number of rows (Glorot & Bengio 2010). The bound keeps the
    // variance of a product with the matrix about equal forwards and
    // backwards; here it keeps the proxies small, near the origin, so that at
    // the start no speaker's proxy is much nearer than another's. The LSTM's
    // own weights keep PyTorch's U(±1/sqrt(H)).
    // ------------------------------------------------------------------------
    nb.section("Xavier initialisation");
    let bound = xavier_bound(config.num_speakers, config.embedding_size());
    let p = model.proxies.detach().to_kind(Kind::Double);
    let (lo, hi) = (p.min().double_value(&[]), p.max().double_value(&[]));
    let largest = p.abs().max().double_value(&[]);
    let var = p.var(true).double_value(&[]);
    say!(
        nb,
        "proxies {:?}: fan_in {} fan_out {}, bound sqrt(6/({} + {})) = {bound:.5}",
        p.size(),
        config.embedding_size(),
        config.num_speakers,
        config.embedding_size(),
        config.num_speakers
    );
    say!(
        nb,
        "drawn values span [{lo:.5}, {hi:.5}]: largest |proxy| {largest:.5} <= bound {bound:.5}"
    );
    say!(
        nb,
        "variance {var:.3e} against U(±b)'s b²/3 = {:.3e}; LSTM weights stay in ±1/sqrt(H) = {:.5}",
        bound * bound / 3.0,
        1.0 / (h as f64).sqrt()
    );

    // ------------------------------------------------------------------------
    // PairwiseDistance. `nn.PairwiseDistance(p=2)` gives ||x1 - x2 + eps||_2
    // row by row, with eps = 1e-6 added to every difference (so that the
    // gradient of the norm is defined when two points coincide). The lab
    // broadcasts embeddings `[B, 1, D]` against proxies `[1, S, D]` to get
    // every embedding-to-proxy distance `[B, S]`. Here the library's distance
    // is checked against a computation by hand on a tiny example in which one
    // embedding sits exactly on a proxy.
    // ------------------------------------------------------------------------
    nb.section("PairwiseDistance");
    let e_rows = [[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]];
    let p_rows = [[1.0, 1.0, 1.0], [0.0, 1.0, 2.0], [-2.0, 0.0, 3.0]];
    let by_hand: Vec<Vec<f64>> = e_rows
        .iter()
        .map(|e| {
            p_rows
                .iter()
                .map(|p| e.iter().zip(p).map(|(a, b)| (a - b + PAIRWISE_EPS).powi(2)).sum::<f64>())
                .map(f64::sqrt)
                .collect()
        })
        .collect();
    let lib = proxy_distances(&Tensor::from_slice2(&e_rows), &Tensor::from_slice2(&p_rows)); // [2, 3]
    let lib: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&lib)?;
    let diff = lib.iter().flatten().zip(by_hand.iter().flatten()).map(|(a, b)| (a - b).abs());
    let diff = diff.fold(0.0, f64::max);
    for (r, row) in lib.iter().enumerate() {
        say!(nb, "  embedding {r}: distances {row:.6?}, by hand {:.6?}", by_hand[r]);
    }
    say!(nb, "largest difference, library vs hand: {diff:.3e}");
    say!(
        nb,
        "embedding 0 sits on proxy 1: distance {:.4e} = sqrt(3)·eps = {:.4e}, not 0: the \
         library follows PyTorch's eps = {PAIRWISE_EPS:e}",
        lib[0][1],
        3f64.sqrt() * PAIRWISE_EPS
    );

    // ------------------------------------------------------------------------
    // chunk. A bidirectional LSTM returns, at every time step, the forward
    // direction's output and the backward direction's output side by side:
    // `[B, T, 2H]`. `torch.chunk(out, 2, dim=-1)` (tch: `out.chunk(2, -1)`)
    // splits it back into the two directions, `[B, T, H]` each. The forward
    // direction at step t has read frames 0..=t, so its summary of the whole
    // utterance (its final state) is at the last step; the backward direction
    // reads from the end, so its final state is at step 0. Changing only the
    // last frame shows it: the forward output at step 0 cannot move, the one
    // at the last step does; changing only the first frame leaves the
    // backward output at the last step alone and moves the one at step 0.
    // ------------------------------------------------------------------------
    nb.section("chunk: the BiLSTM output's two directions");
    let x = heldout.x.narrow(0, 0, 4.min(heldout.x.size()[0])); // [B, T, C]
    let t = x.size()[1];
    let (out, fwd, bwd, fwd_last, bwd_first) = tch::no_grad(|| {
        let out = model.lstm().forward(&x); // [B, T, 2H]
        let halves = out.chunk(2, -1); // 2 x [B, T, H]
        let bump = |frame: i64| {
            let b = Tensor::zeros_like(&x); // [B, T, C], ones at one frame
            let _ = b.narrow(1, frame, 1).fill_(1.0);
            model.lstm().forward(&(&x + b)).chunk(2, -1)
        };
        let (fwd, bwd) = (halves[0].shallow_clone(), halves[1].shallow_clone());
        (out, fwd, bwd, bump(t - 1), bump(0))
    });
    let (lib_f, lib_b) = split_directions(&out);
    say!(
        nb,
        "out {:?} -> chunk(2, -1) -> forward {:?}, backward {:?}; split_directions gives the \
         same: {}",
        out.size(),
        fwd.size(),
        bwd.size(),
        lib_f.equal(&fwd) && lib_b.equal(&bwd)
    );
    let moved = |a: &Tensor, b: &Tensor, step: i64| {
        (a.select(1, step) - b.select(1, step)).abs().max().double_value(&[])
    };
    say!(
        nb,
        "changing the last frame moves forward[:, 0] by {:.1e} and forward[:, {}] by {:.1e}",
        moved(&fwd_last[0], &fwd, 0),
        t - 1,
        moved(&fwd_last[0], &fwd, t - 1)
    );
    say!(
        nb,
        "changing the first frame moves backward[:, {}] by {:.1e} and backward[:, 0] by {:.1e}",
        t - 1,
        moved(&bwd_first[1], &bwd, t - 1),
        moved(&bwd_first[1], &bwd, 0)
    );
    say!(
        nb,
        "so the forward final state is forward[:, -1] (t = {}), the backward one backward[:, 0]",
        t - 1
    );

    // ------------------------------------------------------------------------
    // The forward pass. The embedding joins what each direction has read of
    // the whole utterance (the forward output at the last step, the backward
    // output at step 0) with the mean of both directions over time, a
    // summary of every frame: 4H numbers. The logits are minus the distances
    // to the S proxies: the nearest proxy gets the largest logit. Below, the
    // steps one by one, with their shapes, checked against `model.embed`.
    // ------------------------------------------------------------------------
    nb.section("The forward pass");
    tch::no_grad(|| {
        let out = model.lstm().forward(&x); // [B, T, 2H]
        let (fwd, bwd) = split_directions(&out); // [B, T, H] each
        let last_fwd = fwd.select(1, -1); // [B, H]
        let first_bwd = bwd.select(1, 0); // [B, H]
        let mean = out.mean_dim(1, false, Kind::Float); // [B, 2H]
        let emb = Tensor::cat(&[&last_fwd, &first_bwd, &mean], -1); // [B, 4H]
        let dist = proxy_distances(&emb, &model.proxies); // [B, S]
        let logits = -&dist; // [B, S]
        for (what, shape) in [
            ("x (utterances, frames, MFCCs)", x.size()),
            ("out = lstm(x)", out.size()),
            ("fwd, bwd = out.chunk(2, -1)", fwd.size()),
            ("fwd[:, -1], bwd[:, 0]", last_fwd.size()),
            ("out.mean(1)", mean.size()),
            ("embedding = cat(fwd[:, -1], bwd[:, 0], mean)", emb.size()),
            ("distances to the proxies", dist.size()),
            ("logits = -distances", logits.size()),
        ] {
            say!(nb, "  {what:<46} {shape:?}");
        }
        say!(
            nb,
            "equals model.embed(x): {}, model.logits(x): {}, join_embedding(out): {}",
            emb.equal(&model.embed(&x)),
            logits.equal(&model.logits(&x)),
            emb.equal(&join_embedding(&out))
        );
    });

    // ------------------------------------------------------------------------
    // The proxy loss: cross-entropy of the logits against the speaker, i.e.
    // -log softmax(-d)[speaker]. It pulls an utterance towards its speaker's
    // proxy and pushes it from the others. At initialisation the small proxies
    // sit about equally far from every embedding, the softmax is close to
    // uniform over the S speakers, and the loss is close to -log(1/S) = ln S:
    // the value to expect before training, and a check that nothing is off.
    // ------------------------------------------------------------------------
    nb.section("The proxy loss");
    let ln_s = (num_speakers as f64).ln();
    let (init_loss, init_dists) = tch::no_grad(|| {
        let emb = embed(&model, &train.x); // [N, 4H]
        let d = proxy_distances(&emb, &model.proxies); // [N, S]
        let rel = (&d - d.mean_dim(-1, true, Kind::Float)).abs().max().double_value(&[]);
        (proxy_loss(&emb, &model.proxies, &train.y).double_value(&[]), (d.mean(Kind::Float), rel))
    });
    say!(
        nb,
        "distances to the proxies at initialisation: mean {:.3}, every row within ±{:.3} of \
         its mean",
        init_dists.0.double_value(&[]),
        init_dists.1
    );
    say!(
        nb,
        "proxy loss at initialisation {init_loss:.4} on the {} training utterances; \
         ln(S) = ln({num_speakers}) = {ln_s:.4}",
        split.train.len()
    );

    // ------------------------------------------------------------------------
    // StepLR. `torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)`
    // multiplies the learning rate by gamma every step_size epochs:
    // lr(epoch) = base_lr · gamma^floor(epoch / step_size), with
    // `scheduler.step()` called once at the end of each epoch. Large steps
    // first find the piles, smaller ones later settle them. `Scheduler` is the
    // stateful object (`step` sets the optimiser's rate, as PyTorch's does);
    // the training loop below prints the rate in effect at every epoch.
    // ------------------------------------------------------------------------
    nb.section("StepLR");
    let schedule = StepLR::new(s.lr, s.step_size, s.gamma);
    say!(nb, "StepLR(base_lr={}, step_size={}, gamma={})", s.lr, s.step_size, s.gamma);
    for start in (0..s.epochs).step_by(s.step_size) {
        let end = (start + s.step_size).min(s.epochs) - 1;
        say!(nb, "  epochs {start:>2}-{end:>2}: lr {:.3e}", schedule.lr(start));
    }

    // ------------------------------------------------------------------------
    // Training and clustering. Adam on the proxy loss, the learning rate
    // stepped per epoch. Then the lab's test: embed utterances and cluster
    // them with k-means (k = the number of speakers in the set), with no
    // labels, and score purity (each cluster counts its most common speaker;
    // 1 is perfect, a clustering that ignores the voice scores about 1/k).
    // Even the untrained network scores above 1/k: the MFCCs of one voice are
    // alike, and a random recurrent map keeps much of that; training is what
    // pulls each speaker into a pile of its own. Held-out utterances of
    // training speakers show what the proxies taught; unseen speakers show
    // whether the embedding separates new voices. The scatter projects the
    // embeddings on their first two principal components, before and after
    // training.
    // ------------------------------------------------------------------------
    nb.section("Training and clustering");
    let k_seen = split.train_speakers.len();
    let k_unseen = split.unseen_speakers.len();
    let before = (embed(&model, &heldout.x), embed(&model, &unseen.x));
    say!(
        nb,
        "before training: k-means purity {:.1}% on held-out utterances of the {k_seen} training \
         speakers, {:.1}% on the {k_unseen} unseen speakers (about 1/k by chance: {:.0}%, {:.0}%)",
        100.0 * kmeans_purity(&before.0, &heldout.y, k_seen, KMeansConfig::default())?,
        100.0 * kmeans_purity(&before.1, &unseen.y, k_unseen, KMeansConfig::default())?,
        100.0 / k_seen as f64,
        100.0 / k_unseen as f64
    );
    // The loop is the `train` engine's, the one `rnnlab train` runs: Adam,
    // StepLR counted in epochs of batches, a held-out evaluation after every
    // epoch; metrics.csv and the checkpoints go to this notebook's `run/`.
    let per_epoch = loader.len();
    let settings = train::Settings {
        seed: 0,
        steps: (s.epochs * per_epoch) as u64,
        valid_every: per_epoch as u64,
        optimizer: Optim::adam(),
        schedule: Schedule::step(s.lr, s.step_size * per_epoch, s.gamma),
        clip_grad_norm: None,
        patience: None,
        log_every: per_epoch as u64,
        validate_at_start: false,
    };
    let run_dir = nb.path("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let run_dir = RunDir::create(Some(&run_dir), "speaker")?;
    let mut task =
        LabTask { vs: &vs, model: &model, loader: &loader, order: None, heldout: &heldout };
    let state = train::fit(&mut task, &run_dir, &settings, false)?;
    let rows: Vec<LabRow> = train::metrics::read_rows(&run_dir.file("metrics.csv"))?;
    for epoch in 0..s.epochs as u64 {
        let of_epoch: Vec<&LabRow> = rows.iter().filter(|r| r.epoch == epoch).collect();
        let mean_loss = of_epoch.iter().map(|r| r.loss).sum::<f64>() / of_epoch.len() as f64;
        let lr = of_epoch[0].lr;
        let acc = of_epoch.last().and_then(|r| r.heldout_accuracy).unwrap_or(f64::NAN);
        say!(
            nb,
            "epoch {epoch:>2}  lr {lr:.6e}  mean loss {mean_loss:.4}  held-out accuracy (nearest \
             proxy) {:.1}%",
            100.0 * acc
        );
    }
    let (steps, seconds) = (state.step as usize, state.train_seconds);
    let train_loss = tch::no_grad(|| {
        proxy_loss(&embed(&model, &train.x), &model.proxies, &train.y).double_value(&[])
    });
    say!(
        nb,
        "{steps} steps in {seconds:.1} s ({:.1} it/s on {device:?}); proxy loss on the training \
         utterances after training {train_loss:.4} (at initialisation {init_loss:.4}, ln(S) \
         {ln_s:.4})",
        steps as f64 / seconds
    );
    let after = (embed(&model, &heldout.x), embed(&model, &unseen.x));
    say!(
        nb,
        "after training: k-means purity {:.1}% on held-out utterances of the training speakers \
         (k = {k_seen}), {:.1}% on the unseen speakers (k = {k_unseen})",
        100.0 * kmeans_purity(&after.0, &heldout.y, k_seen, KMeansConfig::default())?,
        100.0 * kmeans_purity(&after.1, &unseen.y, k_unseen, KMeansConfig::default())?
    );
    let panels = [
        ("at initialisation".to_owned(), dots(&before, &heldout.y, &unseen.y, k_seen)?),
        (format!("after {} epochs", s.epochs), dots(&after, &heldout.y, &unseen.y, k_seen)?),
    ];
    draw_scatter(
        &nb.path("embeddings.png"),
        &panels,
        &split.train_speakers,
        &split.unseen_speakers,
    )?;
    nb.figure(
        "embeddings.png",
        "held-out utterances of the training speakers (rings) and unseen speakers (triangles), PCA \
         to 2-D, coloured by speaker",
    );

    // ------------------------------------------------------------------------
    // CPU vs GPU iterations per second. One iteration is a forward pass, a
    // backward pass and an Adam step on one batch. The recurrence is a chain
    // of small matrix products, 47 steps long in each direction: a GPU gains
    // less than on a convolution, and a CPU with one thread avoids the thread
    // pool's overhead (the lab measured about 5-6 it/s on its CPU and 24 on a
    // GPU). Both figures are measured here on a fresh model, after warm-up
    // iterations; the GPU one only where libtorch sees a GPU.
    // ------------------------------------------------------------------------
    nb.section("CPU vs GPU iterations per second");
    let batch = (
        train.x.narrow(0, 0, (s.batch as i64).min(train.x.size()[0])),
        train.y.narrow(0, 0, (s.batch as i64).min(train.y.size()[0])),
    );
    let cpu = iterations_per_second(Device::Cpu, config, &batch, s.lr, s.timed)?;
    say!(
        nb,
        "CPU: {cpu:.1} it/s ({} iterations of batch {}, hidden {}, {} thread(s))",
        s.timed,
        batch.0.size()[0],
        s.hidden,
        tch::get_num_threads()
    );
    if Cuda::is_available() {
        let gpu = iterations_per_second(Device::Cuda(0), config, &batch, s.lr, s.timed)?;
        say!(nb, "CUDA: {gpu:.1} it/s, {:.2}x the CPU", gpu / cpu);
    } else {
        say!(
            nb,
            "no GPU is present (tch::Cuda::is_available() = false): only the CPU figure is measured"
        );
    }
    Ok(())
}

/// The corpus and the feature extractor: in quick mode a tiny corpus made in
/// the notebook's folder (no disk cache), otherwise `data/speakers` (made on
/// first use, as `make speakers-data`) with the shared MFCC cache.
fn open_corpus(nb: &mut Notebook) -> anyhow::Result<(SpeakerCorpus, FeatureCache)> {
    let window = Some(WINDOW_SAMPLES);
    let (dir, cache) = if nb.quick() {
        let dir = nb.path("corpus");
        let cfg = SpeakerSynthConfig { speakers: 12, utterances: 24, ..Default::default() };
        let made = generate_speakers(&dir, &cfg)
            .with_context(|| format!("making the quick corpus in {}", dir.display()))?;
        say!(
            nb,
            "made {} utterances of {} espeak-ng speakers in {}",
            made.files,
            cfg.speakers,
            dir.display()
        );
        (dir, FeatureCache::uncached(MfccConfig::default(), window))
    } else {
        let dir = Path::new(DEFAULT_ROOT).to_path_buf();
        if !dir.exists() {
            say!(
                nb,
                "{} is missing: making it (30 speakers x 80 utterances, about a minute)",
                dir.display()
            );
            generate_speakers(&dir, &SpeakerSynthConfig::default())
                .with_context(|| format!("making the speaker corpus {}", dir.display()))?;
        }
        (dir, FeatureCache::new(DEFAULT_CACHE_DIR, MfccConfig::default(), window)?)
    };
    let corpus = SpeakerCorpus::open(&dir)
        .with_context(|| format!("reading the speaker corpus {}", dir.display()))?;
    Ok((corpus, cache))
}

/// A set standardised with the training statistics, on `device`.
fn to_set(f: &[Features], y: &[i64], std: &Standardizer, device: Device) -> anyhow::Result<Set> {
    let loader = DataLoader::from_features(f, y, 1, device)?.standardize(std);
    let (x, y) = loader.tensors();
    Ok(Set { x: x.shallow_clone(), y: y.shallow_clone() })
}

/// Embeddings of a whole set without gradients: `[N, T, C] -> [N, 4H]`.
fn embed(model: &SpeakerModel, x: &Tensor) -> Tensor {
    tch::no_grad(|| model.embed(x))
}

/// Times `n` training iterations (forward, backward, Adam) of a fresh model on
/// `device`, after three warm-up iterations; iterations per second.
fn iterations_per_second(
    device: Device,
    config: SpeakerConfig,
    batch: &(Tensor, Tensor),
    lr: f64,
    n: usize,
) -> anyhow::Result<f64> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = SpeakerModel::new(vs.root(), config);
    let mut opt = nn::Adam::default().build(&vs, lr)?;
    let (x, y) = (batch.0.to_device(device), batch.1.to_device(device)); // [B, T, C], [B]
    let sync = || {
        if let Device::Cuda(i) = device {
            Cuda::synchronize(i as i64);
        }
    };
    for _ in 0..3 {
        opt.backward_step(&model.loss(&x, &y));
    }
    sync();
    let tick = Instant::now();
    for _ in 0..n {
        opt.backward_step(&model.loss(&x, &y));
    }
    sync();
    Ok(n as f64 / tick.elapsed().as_secs_f64())
}

/// Held-out and unseen embeddings projected together on their first two
/// principal components; unseen speaker `k` is colour `seen + k`.
fn dots(
    emb: &(Tensor, Tensor),
    held_y: &Tensor,
    unseen_y: &Tensor,
    seen: usize,
) -> anyhow::Result<Vec<Point>> {
    let pcs = pca_2d(&Tensor::cat(&[&emb.0, &emb.1], 0)); // [N, 2]
    let pcs: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&pcs)?;
    let labels = |y: &Tensor| Vec::<i64>::try_from(&y.to_device(Device::Cpu));
    let held = labels(held_y)?.into_iter().map(|l| (PointKind::Heldout, l as usize));
    let unseen = labels(unseen_y)?.into_iter().map(|l| (PointKind::Unseen, seen + l as usize));
    Ok(pcs
        .iter()
        .zip(held.chain(unseen))
        .map(|(p, (kind, speaker))| Point { kind, speaker, x: p[0], y: p[1] })
        .collect())
}

/// `embeddings.png`: one scatter panel per `(caption, points)` side by side,
/// and the legend, drawn as `rnnlab plots` draws a speaker run's.
fn draw_scatter(
    path: &Path,
    panels: &[(String, Vec<Point>)],
    seen: &[String],
    unseen: &[String],
) -> anyhow::Result<()> {
    register_fonts()?;
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1600, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled("Speaker embeddings, PCA to 2-D", (FONT, 28)).map_err(|e| err(&e))?;
    let (plots, legend) = root.split_horizontally(1300);
    for (area, (caption, points)) in plots.split_evenly((1, panels.len())).iter().zip(panels) {
        draw_panel(area, points, caption, 15, seen.len() + unseen.len())?;
    }
    draw_legend(&legend, seen, unseen, &[PointKind::Heldout])?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
