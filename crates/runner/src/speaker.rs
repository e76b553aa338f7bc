//! `rnnlab train --model speaker` and `rnnlab data synth-speakers`: the
//! speaker-clustering lab. A BiLSTM over 1.5 s of MFCC frames embeds each
//! utterance; a proxy loss pulls the embeddings of one speaker towards that
//! speaker's learned proxy (see `models::speaker`).
//!
//! Recipes (`--recipe`, `train::recipes`): `default` (statistics pooling over
//! each clip's valid frames, cosine proxies with AM-softmax, the checkpoint
//! chosen on validation speakers; with few training speakers, speaker
//! augmentation: each training speaker also at other speeds, as new
//! speakers) and `lab` (the lab's last-state embedding
//! and Euclidean proxy loss, the last epoch kept).
//!
//! Data: `--data-dir` (default `data/speakers`), one folder per speaker. A
//! seeded split keeps `--holdout-speakers K` whole speakers out of training
//! to score at the end ("unseen"), `--val-speakers V` more to choose the
//! checkpoint on ("validation"), and 20% of every training speaker's
//! utterances for evaluation ("held-out"). Features are standardised per
//! coefficient with training statistics (saved in `config.json`); each clip's
//! valid frames (the audio's, not the window's padding) come from its WAV
//! header.
//!
//! Optimisation, on the `train` engine: Adam, `StepLR(step_size, gamma)`
//! counted in epochs, validation after every epoch (`--valid-every` for
//! another interval). `metrics.csv` has every step's loss and, at each
//! validation, the held-out loss (`valid_loss`) and accuracy, the unseen
//! speakers' k-means purity beside the no-learning baseline's, and the
//! validation speakers' purity and pair AUC (the monitored score when there
//! are validation speakers; the held-out accuracy otherwise). `--resume`
//! continues a run exactly. The embeddings of every utterance, projected on
//! their first two principal components, are kept at regular epochs in
//! `embeddings/epoch_<nnnn>.csv` for `rnnlab plots`. `summary.json` holds
//! the scores of the chosen checkpoint (the best on validation speakers, or
//! the last epoch without them) and the training speed.

use crate::config::{RunConfig, RunSummary};
use crate::train::TrainArgs;
use anyhow::{bail, Context};
use data::cache::FeatureCache;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::{Features, MfccConfig};
use data::speakers::{
    speed_copy_features, speed_speakers, utterance_features, SpeakerCorpus, SplitConfig, Utterance,
    DEFAULT_ROOT, WINDOW_FRAMES, WINDOW_SAMPLES,
};
use data::speech_commands::DEFAULT_CACHE_DIR;
use models::cluster::{baseline_purity, kmeans_purity, pair_auc, pca_2d, KMeansConfig};
use models::speaker::{accuracy, ProxyLoss, SpeakerConfig, SpeakerHead, SpeakerModel};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};
use train::recipes::{SpeakerRecipe, SPEAKER_DEFAULT, SPEAKER_RECIPES};
use train::{Eval, Goal, Optim, RunDir, RunStats, Schedule, Settings, Task};

/// Utterances per forward pass when embedding a whole set.
const EMBED_CHUNK: i64 = 512;
/// At most this many embedding snapshots per run (plus the one before training).
const MAX_SNAPSHOTS: usize = 40;

/// Training settings; flags override the recipe's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerTrain {
    /// The recipe the run started from (runs older than recipes: `lab`).
    #[serde(default = "lab_name")]
    pub recipe: String,
    pub epochs: usize,
    pub batch_size: i64,
    pub lr: f64,
    /// StepLR: epochs between decays, and the decay factor.
    pub step_size: usize,
    pub gamma: f64,
    pub eval_fraction: f64,
    pub holdout_speakers: usize,
    /// Whole speakers the checkpoint is chosen on.
    #[serde(default)]
    pub val_speakers: usize,
    /// Speaker augmentation: speeds at which every training utterance is
    /// played again as a new speaker.
    #[serde(default)]
    pub speed_speakers: Vec<f64>,
    pub seed: u64,
}

fn lab_name() -> String {
    "lab".into()
}

impl SpeakerTrain {
    /// A recipe's settings, with no speakers held out (so no speaker
    /// augmentation, which depends on how many speakers train).
    pub fn from_recipe(r: &SpeakerRecipe) -> Self {
        Self {
            recipe: r.name.into(),
            epochs: r.epochs,
            batch_size: r.batch_size,
            lr: r.lr,
            step_size: r.step_size,
            gamma: r.gamma,
            eval_fraction: 0.2,
            holdout_speakers: 0,
            val_speakers: r.val_speakers,
            speed_speakers: Vec::new(),
            seed: 0,
        }
    }

    /// The checkpoint a run's scores and embeddings come from.
    pub fn chosen_checkpoint(&self) -> &'static str {
        if self.val_speakers > 0 {
            train::engine::BEST
        } else {
            train::engine::LAST
        }
    }
}

impl Default for SpeakerTrain {
    fn default() -> Self {
        Self::from_recipe(&SPEAKER_DEFAULT)
    }
}

/// The recipe called `name`, or an error listing the names.
pub fn recipe(name: &str) -> anyhow::Result<SpeakerRecipe> {
    SPEAKER_RECIPES.iter().copied().find(|r| r.name == name).with_context(|| {
        let names: Vec<&str> = SPEAKER_RECIPES.iter().map(|r| r.name).collect();
        format!("--recipe {name} is not a speaker recipe ({})", names.join(" or "))
    })
}

/// `config.json` of a speaker run (under `"model": "speaker"`, see [`RunConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerRunConfig {
    pub speaker: SpeakerConfig,
    pub train: SpeakerTrain,
    pub data_dir: PathBuf,
    /// Samples per utterance window (16 kHz) and the MFCC frames it gives.
    pub window_samples: usize,
    pub window_frames: usize,
    pub mfcc: MfccConfig,
    /// Per-coefficient mean and std of the training features.
    pub standardizer: Standardizer,
    /// Proxy `i` belongs to `train_speakers[i]`, then to `speed_speakers[i - n]`.
    pub train_speakers: Vec<String>,
    /// The pseudo-speakers of speaker augmentation (`<speaker>@speed<factor>`).
    #[serde(default)]
    pub speed_speakers: Vec<String>,
    pub unseen_speakers: Vec<String>,
    #[serde(default)]
    pub val_speakers: Vec<String>,
    /// Epochs after which embeddings were saved (0: before training).
    pub snapshot_epochs: Vec<usize>,
    /// Validation every this many steps (every epoch when none).
    #[serde(default)]
    pub valid_every: Option<usize>,
    /// Early stopping on the monitored score (off when none).
    #[serde(default)]
    pub patience: Option<usize>,
}

/// Features, valid frames and labels of one set, standardised, on the device.
pub(crate) struct Set {
    pub x: Tensor,   // [N, T, C]
    pub len: Tensor, // [N] Int64
    pub y: Tensor,   // [N]
}

impl Set {
    fn len(&self) -> i64 {
        self.y.size()[0]
    }
}

/// The features of `utts` through `cache`, standardised, with their valid frames.
fn load_set(
    cache: &FeatureCache,
    utts: &[Utterance],
    std: &Standardizer,
    device: Device,
) -> anyhow::Result<(Set, Vec<Features>)> {
    let (feats, labels) = utterance_features(cache, utts)?;
    if feats.is_empty() {
        let c = std.mean.len() as i64;
        let set = Set {
            x: Tensor::zeros([0, WINDOW_FRAMES as i64, c], (Kind::Float, device)),
            len: Tensor::zeros([0], (Kind::Int64, device)),
            y: Tensor::zeros([0], (Kind::Int64, device)),
        };
        return Ok((set, feats));
    }
    let loader = DataLoader::from_features(&feats, &labels, 1, device)?.standardize(std);
    let (x, y) = loader.tensors();
    let len = loader.lengths().shallow_clone();
    Ok((Set { x: x.shallow_clone(), len, y: y.shallow_clone() }, feats))
}

/// Embeddings `[N, E]` of clips `x` with `len` valid frames, in chunks, without gradients.
pub(crate) fn embed_all(model: &SpeakerModel, x: &Tensor, len: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let n = x.size()[0];
    let chunks: Vec<Tensor> = (0..n)
        .step_by(EMBED_CHUNK as usize)
        .map(|s| {
            let k = EMBED_CHUNK.min(n - s);
            model.embed_valid(&x.narrow(0, s, k), &len.narrow(0, s, k))
        })
        .collect();
    if chunks.is_empty() {
        Tensor::zeros([0, model.config().embedding_size()], (Kind::Float, x.device()))
    } else {
        Tensor::cat(&chunks, 0)
    }
}

/// Held-out loss (the head's, without dropout) and nearest-proxy accuracy.
fn evaluate(model: &SpeakerModel, set: &Set) -> (f64, f64) {
    if set.len() == 0 {
        return (f64::NAN, f64::NAN);
    }
    let emb = embed_all(model, &set.x, &set.len);
    let _guard = tch::no_grad_guard();
    let loss = model.embedding_loss(&emb, &set.y).double_value(&[]);
    (loss, accuracy(&model.proxy_scores(&emb), &set.y))
}

/// Writes `embeddings/epoch_<nnnn>.csv`: `set,speaker,pc1,pc2` for every
/// utterance of `sets` (name, set, speaker names), projected together on their
/// first two principal components.
fn snapshot(
    run: &RunDir,
    epoch: usize,
    model: &SpeakerModel,
    sets: &[(&str, &Set, &[String])],
) -> anyhow::Result<()> {
    let embs: Vec<Tensor> = sets.iter().map(|(_, s, _)| embed_all(model, &s.x, &s.len)).collect();
    let all = Tensor::cat(&embs, 0);
    let pcs = pca_2d(&all); // [N, 2]
    let pcs: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&pcs).context("reading PCA")?;
    let dir = run.file("embeddings");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("epoch_{epoch:04}.csv"));
    let mut w =
        csv::Writer::from_path(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut row = 0;
    for (name, set, speakers) in sets {
        let labels: Vec<i64> = Vec::<i64>::try_from(&set.y.to_device(Device::Cpu))?;
        for l in labels {
            let p = &pcs[row];
            w.serialize(EmbeddingRow {
                set: name.to_string(),
                speaker: speakers[l as usize].clone(),
                pc1: round5(p[0]),
                pc2: round5(p[1]),
            })?;
            row += 1;
        }
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `v` to five decimals (the projections' CSV precision).
pub(crate) fn round5(v: f64) -> f64 {
    (v * 1e5).round() / 1e5
}

/// A row of `embeddings/epoch_<nnnn>.csv`: one utterance's embedding on the
/// first two principal components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRow {
    /// `train`, `heldout` or `unseen`.
    pub set: String,
    pub speaker: String,
    pub pc1: f64,
    pub pc2: f64,
}

/// The k-means options of every purity in a run (embeddings and baseline).
fn kmeans_config(seed: u64) -> KMeansConfig {
    KMeansConfig { seed, ..KMeansConfig::default() }
}

/// k-means purity of a set's embeddings `emb` (k = its number of speakers).
fn set_purity(emb: &Tensor, set: &Set, k: usize, seed: u64) -> Option<f64> {
    if k < 2 || set.len() < k as i64 {
        return None;
    }
    kmeans_purity(emb, &set.y, k, kmeans_config(seed)).ok()
}

/// Epochs after which embeddings are saved: 0, then every `every` epochs and the last.
fn snapshot_epochs(epochs: usize) -> Vec<usize> {
    let every = epochs.div_ceil(MAX_SNAPSHOTS).max(1);
    let mut v: Vec<usize> = (0..=epochs).step_by(every).collect();
    if v.last() != Some(&epochs) {
        v.push(epochs);
    }
    v
}

/// The validation scores of a speaker run (`metrics.csv` columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerScores {
    /// Nearest-proxy accuracy on the held-out utterances of training speakers.
    pub heldout_accuracy: f64,
    /// k-means purity of the unseen speakers' embeddings (when there are two or more).
    pub unseen_purity: Option<f64>,
    /// The same k-means on the unseen speakers' standardised MFCC mean and
    /// std per utterance: what no learning gives (the same at every validation).
    #[serde(default)]
    pub baseline_purity: Option<f64>,
    /// k-means purity of the validation speakers' embeddings.
    #[serde(default)]
    pub val_purity: Option<f64>,
    /// Pair AUC of the validation speakers' embeddings ([`pair_auc`]): the
    /// monitored score when there are validation speakers.
    #[serde(default)]
    pub val_auc: Option<f64>,
}

impl train::Scores for SpeakerScores {
    const COLUMNS: &'static [&'static str] =
        &["heldout_accuracy", "unseen_purity", "baseline_purity", "val_purity", "val_auc"];
}

/// `summary.json` of a speaker run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerSummary {
    #[serde(default = "lab_name")]
    pub recipe: String,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    /// `best` (chosen on validation speakers) or `last`: the checkpoint the
    /// scores below are of.
    #[serde(default = "last_name")]
    pub checkpoint: String,
    /// The step of that checkpoint.
    #[serde(default)]
    pub checkpoint_step: u64,
    /// Held-out loss, accuracy and unseen-speaker purity of that checkpoint.
    pub heldout_loss: f64,
    pub heldout_accuracy: f64,
    pub best_heldout_accuracy: f64,
    pub unseen_purity: Option<f64>,
    /// k-means on the unseen speakers' standardised MFCC mean and std.
    #[serde(default)]
    pub baseline_purity: Option<f64>,
    #[serde(default)]
    pub val_purity: Option<f64>,
    #[serde(default)]
    pub val_auc: Option<f64>,
    pub unseen_speakers: usize,
    #[serde(default)]
    pub val_speakers: usize,
    pub train_speakers: usize,
    pub epochs: usize,
    #[serde(flatten)]
    pub stats: RunStats,
    /// Training iterations (batches) per second.
    pub it_per_s: f64,
    pub device: String,
    pub threads: i32,
}

fn last_name() -> String {
    "last".into()
}

/// The speaker model and its sets, for the training engine.
struct SpeakerTask<'a> {
    vs: nn::VarStore,
    model: SpeakerModel,
    loader: DataLoader,
    order: Option<Tensor>,
    /// train, heldout, unseen (the snapshots' sets).
    sets: Vec<(&'static str, &'a Set, &'a [String])>,
    val: &'a Set,
    unseen_k: usize,
    val_k: usize,
    baseline: Option<f64>,
    seed: u64,
    snapshots: Vec<usize>,
}

impl Task for SpeakerTask<'_> {
    type Scores = SpeakerScores;

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        self.loader.len() as u64
    }

    fn begin_epoch(&mut self, epoch: u64) {
        self.order = self.loader.epoch_order(epoch);
    }

    fn train_loss(&mut self, _step: u64, batch: u64) -> Tensor {
        let (x, y, len) = self.loader.batch_with_lengths(self.order.as_ref(), batch as usize);
        self.model.loss_valid(&x, &len, &y)
    }

    fn evaluate(&mut self) -> anyhow::Result<Eval<SpeakerScores>> {
        let (loss, heldout_accuracy) = evaluate(&self.model, self.sets[1].1);
        let unseen = self.sets[2].1;
        let unseen_emb = embed_all(&self.model, &unseen.x, &unseen.len);
        let unseen_purity = set_purity(&unseen_emb, unseen, self.unseen_k, self.seed);
        let (val_purity, val_auc) = if self.val_k >= 2 {
            let emb = embed_all(&self.model, &self.val.x, &self.val.len);
            (set_purity(&emb, self.val, self.val_k, self.seed), pair_auc(&emb, &self.val.y))
        } else {
            (None, None)
        };
        let scores = SpeakerScores {
            heldout_accuracy,
            unseen_purity,
            baseline_purity: self.baseline,
            val_purity,
            val_auc,
        };
        Ok(Eval { loss, scores })
    }

    fn monitor(&self, eval: &Eval<SpeakerScores>) -> (f64, Goal) {
        match eval.scores.val_auc {
            Some(auc) if self.val_k >= 2 => (auc, Goal::Maximize),
            _ => (eval.scores.heldout_accuracy, Goal::Maximize),
        }
    }

    fn end_epoch(&mut self, epoch: u64, run: &RunDir) -> anyhow::Result<()> {
        let epoch = epoch as usize + 1;
        if self.snapshots.contains(&epoch) {
            snapshot(run, epoch, &self.model, &self.sets)?;
        }
        Ok(())
    }

    fn describe(&self, e: &Eval<SpeakerScores>) -> String {
        let pct = |name: &str, v: Option<f64>| {
            v.map_or(String::new(), |p| format!(" {name} {:.1}%", 100.0 * p))
        };
        format!(
            "held-out loss {:.4} accuracy {:.1}%{}{}{}",
            e.loss,
            100.0 * e.scores.heldout_accuracy,
            pct("val AUC", e.scores.val_auc),
            pct("unseen purity", e.scores.unseen_purity),
            pct("(baseline", e.scores.baseline_purity).replace('%', "%)"),
        )
    }
}

/// The engine's settings of a speaker run: Adam, `StepLR(step_size, gamma)`
/// counted in epochs, validation after every epoch unless `--valid-every`.
fn settings(
    t: &SpeakerTrain,
    per_epoch: usize,
    valid_every: Option<usize>,
    patience: Option<usize>,
) -> Settings {
    let per_epoch = per_epoch.max(1);
    Settings {
        seed: t.seed,
        steps: (t.epochs * per_epoch) as u64,
        valid_every: valid_every.unwrap_or(per_epoch) as u64,
        optimizer: Optim::adam(),
        schedule: Schedule::step(t.lr, t.step_size * per_epoch, t.gamma),
        clip_grad_norm: None,
        patience,
        log_every: per_epoch as u64,
        validate_at_start: false,
    }
}

/// Validation speakers when `--val-speakers` is left out: the recipe's, as
/// many as leave two training speakers, and none when that is fewer than two.
fn default_val_speakers(recipe: usize, speakers: usize, holdout: usize) -> usize {
    let room = speakers.saturating_sub(holdout + 2);
    match recipe.min(room) {
        v if v >= 2 => v,
        _ => 0,
    }
}

/// The recipe's head with `--scale`, `--margin`, `--embedding` and `--dropout` applied.
fn head(rec: &SpeakerRecipe, args: &TrainArgs) -> anyhow::Result<SpeakerHead> {
    let mut h = rec.head;
    match &mut h.loss {
        ProxyLoss::Cosine { scale, margin } => {
            *scale = args.scale.unwrap_or(*scale);
            *margin = args.margin.unwrap_or(*margin);
            if !(*scale > 0.0 && scale.is_finite()) {
                bail!("--scale must be positive, got {scale}");
            }
            if !(0.0..1.0).contains(margin) {
                bail!("--margin must be in [0, 1), got {margin}");
            }
        }
        ProxyLoss::Distance => {
            if args.scale.is_some() || args.margin.is_some() {
                bail!("--scale and --margin apply to the cosine head (--recipe default), not --recipe {}", rec.name);
            }
        }
    }
    if let Some(e) = args.embedding {
        if e < 0 {
            bail!("--embedding must be 0 (no projection) or positive, got {e}");
        }
        h.projection = (e > 0).then_some(e);
    }
    if let Some(p) = args.dropout {
        if !(0.0..1.0).contains(&p) {
            bail!("--dropout must be in [0, 1), got {p}");
        }
        h.dropout = p;
    }
    Ok(h)
}

pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    let resumed: Option<SpeakerRunConfig> = match &args.resume {
        Some(dir) => match RunConfig::read(dir)? {
            RunConfig::Speaker(c) => Some(c),
            other => bail!("{} is a {:?} run, not a speaker run", dir.display(), other.kind()),
        },
        None => None,
    };
    let rec = recipe(args.recipe.as_deref().unwrap_or(SPEAKER_DEFAULT.name))?;
    // Data.
    let data_dir = match &resumed {
        Some(c) => c.data_dir.clone(),
        None => args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
    };
    let corpus = SpeakerCorpus::open(&data_dir).with_context(|| {
        format!("reading the speaker corpus (make the default one with `rnnlab data synth-speakers --out {DEFAULT_ROOT}`)")
    })?;
    let t = match &resumed {
        Some(c) => {
            SpeakerTrain { epochs: args.epochs.unwrap_or(c.train.epochs), ..c.train.clone() }
        }
        None => {
            let d = SpeakerTrain::from_recipe(&rec);
            let holdout_speakers = args.holdout_speakers.unwrap_or(d.holdout_speakers);
            let val_speakers = args.val_speakers.unwrap_or_else(|| {
                default_val_speakers(rec.val_speakers, corpus.speakers().len(), holdout_speakers)
            });
            SpeakerTrain {
                epochs: args.epochs.unwrap_or(d.epochs),
                batch_size: args.batch_size.unwrap_or(d.batch_size),
                lr: args.lr.unwrap_or(d.lr),
                step_size: args.step_size.unwrap_or(d.step_size),
                speed_speakers: match &args.speed_speakers {
                    Some(s) => s.0.clone(),
                    None => {
                        let n = corpus.speakers().len();
                        rec.speed_speakers_for(n.saturating_sub(holdout_speakers + val_speakers))
                            .to_vec()
                    }
                },
                gamma: args.gamma.unwrap_or(d.gamma),
                holdout_speakers,
                val_speakers,
                seed: args.seed,
                ..d
            }
        }
    };
    if t.batch_size < 1 || t.step_size < 1 || t.epochs < 1 {
        bail!("--batch-size, --step-size and --epochs must be at least 1");
    }
    // One intra-op thread by default: the ops of a recurrent step are small,
    // and libtorch's thread pool costs more than it gains. `--threads` overrides.
    let threads = args.threads.unwrap_or(1);

    let split = corpus
        .split(&SplitConfig {
            eval_fraction: t.eval_fraction,
            holdout_speakers: t.holdout_speakers,
            val_speakers: t.val_speakers,
            seed: t.seed,
        })
        .context("--holdout-speakers and --val-speakers")?;
    if let Some(c) = &resumed {
        if c.train_speakers != split.train_speakers || c.unseen_speakers != split.unseen_speakers {
            bail!(
                "{}: the corpus changed since the run started; start a new run",
                data_dir.display()
            );
        }
    }
    let mfcc = MfccConfig::default();
    let cache = FeatureCache::new(DEFAULT_CACHE_DIR, mfcc, Some(WINDOW_SAMPLES))?;
    let started = Instant::now();
    let (mut train_f, mut train_y) = utterance_features(&cache, &split.train)?;
    let n_real = train_f.len() as i64;
    let (speed_names, copies) = speed_speakers(&split, &t.speed_speakers, "--speed-speakers")
        .map_err(anyhow::Error::msg)?;
    let (copy_f, copy_y) = speed_copy_features(&cache, &copies)?;
    train_f.extend(copy_f);
    train_y.extend(copy_y);
    let standardizer = match &resumed {
        Some(c) => c.standardizer.clone(),
        None => Standardizer::fit(&train_f),
    };
    let (eval_set, _) = load_set(&cache, &split.eval, &standardizer, device)?;
    let (unseen_set, _) = load_set(&cache, &split.unseen, &standardizer, device)?;
    let (val_set, _) = load_set(&cache, &split.val, &standardizer, device)?;
    let stats = cache.stats();
    println!(
        "{}: {} training speakers ({} + {} utterances; {} speed copies as {} more speakers), \
         {} validation speakers ({} utterances), {} unseen speakers ({} utterances); features \
         in {:.1} s ({} cached, {} computed); recipe {}",
        data_dir.display(),
        split.train_speakers.len(),
        split.train.len(),
        split.eval.len(),
        copies.len(),
        speed_names.len(),
        split.val_speakers.len(),
        split.val.len(),
        split.unseen_speakers.len(),
        split.unseen.len(),
        started.elapsed().as_secs_f64(),
        stats.hits,
        stats.misses,
        t.recipe
    );
    let loader = DataLoader::from_features(&train_f, &train_y, t.batch_size as usize, device)?
        .shuffle(t.seed)
        .standardize(&standardizer);
    // the real training utterances (the speed copies follow them): the snapshots' set
    let train_set = {
        let (x, y) = loader.tensors();
        let real = |t: &Tensor| t.narrow(0, 0, n_real);
        Set { x: real(x), len: real(loader.lengths()), y: real(y) }
    };
    let unseen_k = split.unseen_speakers.len();
    let baseline = (unseen_k >= 2 && unseen_set.len() >= unseen_k as i64)
        .then(|| {
            baseline_purity(
                &unseen_set.x,
                &unseen_set.len,
                &unseen_set.y,
                unseen_k,
                kmeans_config(t.seed),
            )
        })
        .transpose()?;
    if let Some(b) = baseline {
        println!(
            "baseline (k-means on standardised MFCC mean and std): unseen purity {:.1}%",
            100.0 * b
        );
    }

    // Model.
    train::init(t.seed, threads, device);
    let vs = nn::VarStore::new(device);
    let speaker = match &resumed {
        Some(c) => c.speaker,
        None => SpeakerConfig {
            input_size: mfcc.n_mfcc as i64,
            hidden_size: args.hidden.unwrap_or(rec.hidden_size),
            num_layers: args.layers.unwrap_or(rec.num_layers),
            num_speakers: (split.train_speakers.len() + speed_names.len()) as i64,
            head: head(&rec, args)?,
        },
    };
    let model = SpeakerModel::new(vs.root(), speaker);

    let run = match &args.resume {
        Some(dir) => RunDir::open(dir)?,
        None => RunDir::create(args.out.as_deref(), "speaker")?,
    };
    let snaps = snapshot_epochs(t.epochs);
    let patience = args.patience.or(resumed.as_ref().and_then(|c| c.patience));
    let valid_every = args.valid_every.or(resumed.as_ref().and_then(|c| c.valid_every));
    let config = SpeakerRunConfig {
        speaker,
        train: t.clone(),
        data_dir: data_dir.clone(),
        window_samples: WINDOW_SAMPLES,
        window_frames: WINDOW_FRAMES,
        mfcc,
        standardizer,
        train_speakers: split.train_speakers.clone(),
        speed_speakers: speed_names.clone(),
        unseen_speakers: split.unseen_speakers.clone(),
        val_speakers: split.val_speakers.clone(),
        snapshot_epochs: snaps.clone(),
        valid_every,
        patience,
    };
    run.write_json("config.json", &RunConfig::Speaker(config))?;
    run.write_json("split.json", &split)?;
    let sets: Vec<(&str, &Set, &[String])> = vec![
        ("train", &train_set, &split.train_speakers[..]),
        ("heldout", &eval_set, &split.train_speakers[..]),
        ("unseen", &unseen_set, &split.unseen_speakers[..]),
    ];
    if args.resume.is_none() {
        snapshot(&run, 0, &model, &sets)?;
    }
    let per_epoch = loader.len();
    println!(
        "training {} parameters on {device:?} for {} epochs of {per_epoch} batches; run folder {}",
        vs.trainable_variables().iter().map(|v| v.numel()).sum::<usize>(),
        t.epochs,
        run.path().display()
    );
    let settings = settings(&t, per_epoch, valid_every, patience);
    let mut task = SpeakerTask {
        vs,
        model,
        loader,
        order: None,
        sets,
        val: &val_set,
        unseen_k,
        val_k: split.val_speakers.len(),
        baseline,
        seed: t.seed,
        snapshots: snaps,
    };
    let st = train::fit(&mut task, &run, &settings, args.resume.is_some())?;

    // the last epoch's mean training loss, from metrics.csv
    let rows: Vec<SpeakerRow> = train::metrics::read_rows(&run.file("metrics.csv"))?;
    let last_epoch = rows.last().map(|r| r.epoch);
    let last: Vec<f64> =
        rows.iter().filter(|r| Some(r.epoch) == last_epoch).map(|r| r.loss).collect();
    let final_loss = last.iter().sum::<f64>() / last.len().max(1) as f64;
    let checkpoint = t.chosen_checkpoint();
    let (step, eval) = if checkpoint == train::engine::BEST {
        let b = st.best.clone().context("the run never validated")?;
        (b.step, b.eval)
    } else {
        st.last.clone().context("the run never validated")?
    };
    let stats = st.stats();
    let summary = SpeakerSummary {
        recipe: t.recipe.clone(),
        final_loss,
        checkpoint: checkpoint.into(),
        checkpoint_step: step,
        heldout_loss: eval.loss,
        heldout_accuracy: eval.scores.heldout_accuracy,
        best_heldout_accuracy: st
            .best
            .as_ref()
            .map_or(f64::NAN, |b| b.eval.scores.heldout_accuracy),
        unseen_purity: eval.scores.unseen_purity,
        baseline_purity: baseline,
        val_purity: eval.scores.val_purity,
        val_auc: eval.scores.val_auc,
        unseen_speakers: split.unseen_speakers.len(),
        val_speakers: split.val_speakers.len(),
        train_speakers: split.train_speakers.len(),
        epochs: t.epochs,
        it_per_s: stats.steps as f64 / stats.train_seconds,
        stats,
        device: format!("{device:?}"),
        threads: tch::get_num_threads(),
    };
    run.write_json("summary.json", &RunSummary::Speaker(summary.clone()))?;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |p| format!("{:.1}%", 100.0 * p));
    println!(
        "final loss {final_loss:.4}; {checkpoint} checkpoint (step {step}): held-out accuracy \
         {:.1}%, unseen-speaker purity {} (baseline {}), validation AUC {}; {:.1} it/s{}; wrote {}",
        100.0 * summary.heldout_accuracy,
        pct(summary.unseen_purity),
        pct(summary.baseline_purity),
        pct(summary.val_auc),
        summary.it_per_s,
        if st.stopped_early { ", stopped early" } else { "" },
        run.path().display()
    );
    Ok(())
}

/// The columns of a speaker run's `metrics.csv` that its summary reads.
#[derive(Debug, Clone, Deserialize)]
struct SpeakerRow {
    epoch: u64,
    loss: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_speakers_by_default_leave_two_to_train() {
        // 30 speakers, 4 unseen: the recipe's 4.
        assert_eq!(default_val_speakers(4, 30, 4), 4);
        // 6 speakers, 2 unseen: 2 validation, 2 training.
        assert_eq!(default_val_speakers(4, 6, 2), 2);
        // 5 speakers, 2 unseen: one would be left, too few to cluster.
        assert_eq!(default_val_speakers(4, 5, 2), 0);
        assert_eq!(default_val_speakers(0, 30, 4), 0);
        // speaker augmentation when few speakers train: 2 of six, not 22 of 30
        assert_eq!(SPEAKER_DEFAULT.speed_speakers_for(2), [0.9, 1.1]);
        assert!(SPEAKER_DEFAULT.speed_speakers_for(22).is_empty());
        assert!(recipe("lab").unwrap().speed_speakers_for(2).is_empty());
        assert!(recipe("lab").is_ok());
        let e = recipe("tuned").unwrap_err().to_string();
        assert!(e.contains("--recipe tuned") && e.contains("default or lab"), "{e}");
    }

    #[test]
    fn snapshot_epochs_cover_the_run() {
        assert_eq!(snapshot_epochs(3), [0, 1, 2, 3]);
        let v = snapshot_epochs(100);
        assert_eq!((v[0], *v.last().unwrap()), (0, 100));
        assert!(v.len() <= MAX_SNAPSHOTS + 2);
    }
}
