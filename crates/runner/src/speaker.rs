//! `rnnlab train --model speaker` and `rnnlab data synth-speakers`: the
//! speaker-clustering lab. A BiLSTM over 1.5 s of MFCC frames embeds each
//! utterance; a proxy loss pulls the embeddings of one speaker towards that
//! speaker's learned proxy (see `models::speaker`).
//!
//! Data: `--data-dir` (default `data/speakers`), one folder per speaker. A
//! seeded split keeps 20% of every training speaker's utterances for
//! evaluation and `--holdout-speakers K` whole speakers out of training.
//! Features are standardised per coefficient with training statistics (saved
//! in `config.json`).
//!
//! Optimisation, on the `train` engine: Adam, `StepLR(step_size, gamma)`
//! counted in epochs, validation after every epoch (`--valid-every` for
//! another interval). Every step's loss goes to `metrics.csv`
//! (`step,epoch,loss,lr,valid_loss,heldout_accuracy,unseen_purity,seconds`;
//! `valid_loss` is the held-out loss, the validation columns at each
//! validation). `--resume` continues a run exactly. The embeddings
//! of every utterance, projected on their first two principal components, are
//! kept at regular epochs in `embeddings/epoch_<nnnn>.csv` for `rnnlab plots`.
//! `summary.json` holds `final_loss` (mean training loss of the last epoch),
//! `heldout_accuracy` (nearest proxy on held-out utterances), `unseen_purity`
//! (k-means on the unseen speakers' embeddings, k = their number) and the
//! training speed in iterations (batches) per second.

use crate::config::{RunConfig, RunSummary};
use crate::train::TrainArgs;
use anyhow::{bail, Context};
use data::cache::FeatureCache;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::{Features, MfccConfig};
use data::speakers::{
    utterance_features, SpeakerCorpus, SplitConfig, DEFAULT_ROOT, WINDOW_FRAMES, WINDOW_SAMPLES,
};
use data::speech_commands::DEFAULT_CACHE_DIR;
use models::cluster::{kmeans_purity, pca_2d, KMeansConfig};
use models::speaker::{accuracy, proxy_logits, SpeakerConfig, SpeakerModel};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};
use train::{Eval, Goal, Optim, RunDir, RunStats, Schedule, Settings, Task};

/// Utterances per forward pass when embedding a whole set.
const EMBED_CHUNK: i64 = 512;
/// At most this many embedding snapshots per run (plus the one before training).
const MAX_SNAPSHOTS: usize = 40;

/// Training settings; flags override the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeakerTrain {
    pub epochs: usize,
    pub batch_size: i64,
    pub lr: f64,
    /// StepLR: epochs between decays, and the decay factor.
    pub step_size: usize,
    pub gamma: f64,
    pub eval_fraction: f64,
    pub holdout_speakers: usize,
    pub seed: u64,
}

impl Default for SpeakerTrain {
    fn default() -> Self {
        Self {
            epochs: 60,
            batch_size: 32,
            lr: 2e-3,
            step_size: 20,
            gamma: 0.5,
            eval_fraction: 0.2,
            holdout_speakers: 0,
            seed: 0,
        }
    }
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
    /// Proxy `i` belongs to `train_speakers[i]`.
    pub train_speakers: Vec<String>,
    pub unseen_speakers: Vec<String>,
    /// Epochs after which embeddings were saved (0: before training).
    pub snapshot_epochs: Vec<usize>,
    /// Validation every this many steps (every epoch when none).
    #[serde(default)]
    pub valid_every: Option<usize>,
    /// Early stopping on the held-out accuracy (off when none).
    #[serde(default)]
    pub patience: Option<usize>,
}

/// Features and labels of one set, standardised, on the device.
struct Set {
    x: Tensor, // [N, T, C]
    y: Tensor, // [N]
}

impl Set {
    fn len(&self) -> i64 {
        self.y.size()[0]
    }
}

fn to_set(
    feats: &[Features],
    labels: &[i64],
    std: &Standardizer,
    device: Device,
) -> anyhow::Result<Set> {
    if feats.is_empty() {
        let c = std.mean.len() as i64;
        return Ok(Set {
            x: Tensor::zeros([0, WINDOW_FRAMES as i64, c], (Kind::Float, device)),
            y: Tensor::zeros([0], (Kind::Int64, device)),
        });
    }
    let loader = DataLoader::from_features(feats, labels, 1, device)?.standardize(std);
    let (x, y) = loader.tensors();
    Ok(Set { x: x.shallow_clone(), y: y.shallow_clone() })
}

/// Embeddings `[N, 4H]` of a whole set, in chunks, without gradients.
fn embed_all(model: &SpeakerModel, x: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let n = x.size()[0];
    let chunks: Vec<Tensor> = (0..n)
        .step_by(EMBED_CHUNK as usize)
        .map(|s| model.embed(&x.narrow(0, s, EMBED_CHUNK.min(n - s))))
        .collect();
    if chunks.is_empty() {
        Tensor::zeros([0, model.config().embedding_size()], (Kind::Float, x.device()))
    } else {
        Tensor::cat(&chunks, 0)
    }
}

/// Held-out loss and nearest-proxy accuracy.
fn evaluate(model: &SpeakerModel, set: &Set) -> (f64, f64) {
    if set.len() == 0 {
        return (f64::NAN, f64::NAN);
    }
    let emb = embed_all(model, &set.x);
    let _guard = tch::no_grad_guard();
    let logits = proxy_logits(&emb, &model.proxies);
    let loss = logits.log_softmax(-1, Kind::Float).nll_loss(&set.y).double_value(&[]);
    (loss, accuracy(&logits, &set.y))
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
    let embs: Vec<Tensor> = sets.iter().map(|(_, s, _)| embed_all(model, &s.x)).collect();
    let all = Tensor::cat(&embs, 0);
    let pcs = pca_2d(&all); // [N, 2]
    let pcs: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&pcs).context("reading PCA")?;
    let dir = run.file("embeddings");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("epoch_{epoch:04}.csv"));
    let mut w =
        csv::Writer::from_path(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut row = 0;
    let round = |v: f64| (v * 1e5).round() / 1e5;
    for (name, set, speakers) in sets {
        let labels: Vec<i64> = Vec::<i64>::try_from(&set.y.to_device(Device::Cpu))?;
        for l in labels {
            let p = &pcs[row];
            w.serialize(EmbeddingRow {
                set: name.to_string(),
                speaker: speakers[l as usize].clone(),
                pc1: round(p[0]),
                pc2: round(p[1]),
            })?;
            row += 1;
        }
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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

/// k-means purity of the unseen speakers' embeddings (k = their number).
fn unseen_purity(model: &SpeakerModel, set: &Set, k: usize, seed: u64) -> Option<f64> {
    if k < 2 || set.len() < k as i64 {
        return None;
    }
    let emb = embed_all(model, &set.x);
    kmeans_purity(&emb, &set.y, k, KMeansConfig { seed, ..KMeansConfig::default() }).ok()
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
}

impl train::Scores for SpeakerScores {
    const COLUMNS: &'static [&'static str] = &["heldout_accuracy", "unseen_purity"];
}

/// `summary.json` of a speaker run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerSummary {
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    /// Held-out loss, accuracy and unseen-speaker purity after the last epoch.
    pub heldout_loss: f64,
    pub heldout_accuracy: f64,
    pub best_heldout_accuracy: f64,
    pub unseen_purity: Option<f64>,
    pub unseen_speakers: usize,
    pub train_speakers: usize,
    pub epochs: usize,
    #[serde(flatten)]
    pub stats: RunStats,
    /// Training iterations (batches) per second.
    pub it_per_s: f64,
    pub device: String,
    pub threads: i32,
}

/// The speaker model and its three sets, for the training engine.
struct SpeakerTask<'a> {
    vs: nn::VarStore,
    model: SpeakerModel,
    loader: DataLoader,
    order: Option<Tensor>,
    sets: Vec<(&'static str, &'a Set, &'a [String])>,
    unseen_k: usize,
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
        let (x, y) = self.loader.batch(self.order.as_ref(), batch as usize);
        self.model.loss(&x, &y)
    }

    fn evaluate(&mut self) -> anyhow::Result<Eval<SpeakerScores>> {
        let (loss, heldout_accuracy) = evaluate(&self.model, self.sets[1].1);
        let unseen_purity = unseen_purity(&self.model, self.sets[2].1, self.unseen_k, self.seed);
        Ok(Eval { loss, scores: SpeakerScores { heldout_accuracy, unseen_purity } })
    }

    fn monitor(&self, eval: &Eval<SpeakerScores>) -> (f64, Goal) {
        (eval.scores.heldout_accuracy, Goal::Maximize)
    }

    fn end_epoch(&mut self, epoch: u64, run: &RunDir) -> anyhow::Result<()> {
        let epoch = epoch as usize + 1;
        if self.snapshots.contains(&epoch) {
            snapshot(run, epoch, &self.model, &self.sets)?;
        }
        Ok(())
    }

    fn describe(&self, e: &Eval<SpeakerScores>) -> String {
        format!(
            "held-out loss {:.4} accuracy {:.1}%{}",
            e.loss,
            100.0 * e.scores.heldout_accuracy,
            e.scores
                .unseen_purity
                .map_or(String::new(), |p| format!(" unseen purity {:.1}%", 100.0 * p))
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
    }
}

pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    let resumed: Option<SpeakerRunConfig> = match &args.resume {
        Some(dir) => match RunConfig::read(dir)? {
            RunConfig::Speaker(c) => Some(c),
            other => bail!("{} is a {:?} run, not a speaker run", dir.display(), other.kind()),
        },
        None => None,
    };
    let d = SpeakerTrain::default();
    let t = match &resumed {
        Some(c) => SpeakerTrain { epochs: args.epochs.unwrap_or(c.train.epochs), ..c.train },
        None => SpeakerTrain {
            epochs: args.epochs.unwrap_or(d.epochs),
            batch_size: args.batch_size.unwrap_or(d.batch_size),
            lr: args.lr.unwrap_or(d.lr),
            step_size: args.step_size.unwrap_or(d.step_size),
            gamma: args.gamma.unwrap_or(d.gamma),
            eval_fraction: d.eval_fraction,
            holdout_speakers: args.holdout_speakers.unwrap_or(d.holdout_speakers),
            seed: args.seed,
        },
    };
    if t.batch_size < 1 || t.step_size < 1 || t.epochs < 1 {
        bail!("--batch-size, --step-size and --epochs must be at least 1");
    }
    // One intra-op thread by default: the ops of a recurrent step are small,
    // and libtorch's thread pool costs more than it gains. `--threads` overrides.
    let threads = args.threads.unwrap_or(1);

    // Data.
    let data_dir = match &resumed {
        Some(c) => c.data_dir.clone(),
        None => args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
    };
    let corpus = SpeakerCorpus::open(&data_dir).with_context(|| {
        format!("reading the speaker corpus (make the default one with `rnnlab data synth-speakers --out {DEFAULT_ROOT}`)")
    })?;
    let split = corpus.split(&SplitConfig {
        eval_fraction: t.eval_fraction,
        holdout_speakers: t.holdout_speakers,
        seed: t.seed,
    })?;
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
    let (train_f, train_y) = utterance_features(&cache, &split.train)?;
    let (eval_f, eval_y) = utterance_features(&cache, &split.eval)?;
    let (unseen_f, unseen_y) = utterance_features(&cache, &split.unseen)?;
    let stats = cache.stats();
    println!(
        "{}: {} training speakers ({} + {} utterances), {} unseen speakers ({} utterances); \
         features in {:.1} s ({} cached, {} computed)",
        data_dir.display(),
        split.train_speakers.len(),
        split.train.len(),
        split.eval.len(),
        split.unseen_speakers.len(),
        split.unseen.len(),
        started.elapsed().as_secs_f64(),
        stats.hits,
        stats.misses
    );
    let standardizer = match &resumed {
        Some(c) => c.standardizer.clone(),
        None => Standardizer::fit(&train_f),
    };
    let loader = DataLoader::from_features(&train_f, &train_y, t.batch_size as usize, device)?
        .shuffle(t.seed)
        .standardize(&standardizer);
    let train_set = {
        let (x, y) = loader.tensors();
        Set { x: x.shallow_clone(), y: y.shallow_clone() }
    };
    let eval_set = to_set(&eval_f, &eval_y, &standardizer, device)?;
    let unseen_set = to_set(&unseen_f, &unseen_y, &standardizer, device)?;

    // Model.
    train::init(t.seed, threads, device);
    let vs = nn::VarStore::new(device);
    let speaker = match &resumed {
        Some(c) => c.speaker,
        None => SpeakerConfig {
            input_size: mfcc.n_mfcc as i64,
            hidden_size: args.hidden.unwrap_or(64),
            num_layers: args.layers.unwrap_or(1),
            num_speakers: split.train_speakers.len() as i64,
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
        train: t,
        data_dir: data_dir.clone(),
        window_samples: WINDOW_SAMPLES,
        window_frames: WINDOW_FRAMES,
        mfcc,
        standardizer,
        train_speakers: split.train_speakers.clone(),
        unseen_speakers: split.unseen_speakers.clone(),
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
        unseen_k: split.unseen_speakers.len(),
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
    let (_, eval) = st.last.clone().context("the run never validated")?;
    let stats = st.stats();
    let summary = SpeakerSummary {
        final_loss,
        heldout_loss: eval.loss,
        heldout_accuracy: eval.scores.heldout_accuracy,
        best_heldout_accuracy: st
            .best
            .as_ref()
            .map_or(f64::NAN, |b| b.eval.scores.heldout_accuracy),
        unseen_purity: eval.scores.unseen_purity,
        unseen_speakers: split.unseen_speakers.len(),
        train_speakers: split.train_speakers.len(),
        epochs: t.epochs,
        it_per_s: stats.steps as f64 / stats.train_seconds,
        stats,
        device: format!("{device:?}"),
        threads: tch::get_num_threads(),
    };
    run.write_json("summary.json", &RunSummary::Speaker(summary.clone()))?;
    println!(
        "final loss {final_loss:.4}, held-out accuracy {:.1}%{}, {:.1} it/s{}; wrote {}",
        100.0 * summary.heldout_accuracy,
        summary
            .unseen_purity
            .map_or(String::new(), |p| format!(", unseen-speaker purity {:.1}%", 100.0 * p)),
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
    fn snapshot_epochs_cover_the_run() {
        assert_eq!(snapshot_epochs(3), [0, 1, 2, 3]);
        let v = snapshot_epochs(100);
        assert_eq!((v[0], *v.last().unwrap()), (0, 100));
        assert!(v.len() <= MAX_SNAPSHOTS + 2);
    }
}
