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
//! Optimisation: Adam, `StepLR(step_size, gamma)` stepped once per epoch.
//! Every step's loss goes to `metrics.csv` (`step,epoch,loss,lr,heldout_loss,
//! heldout_accuracy,unseen_purity`; the last three at the end of each epoch). The embeddings
//! of every utterance, projected on their first two principal components, are
//! kept at regular epochs in `embeddings/epoch_<nnnn>.csv` for `rnnlab plots`.
//! `summary.json` holds `final_loss` (mean training loss of the last epoch),
//! `heldout_accuracy` (nearest proxy on held-out utterances), `unseen_purity`
//! (k-means on the unseen speakers' embeddings, k = their number) and the
//! training speed in iterations (batches) per second.

use crate::run_dir::{MetricsCsv, RunDir};
use crate::train::TrainArgs;
use anyhow::{bail, Context};
use clap::Args;
use data::cache::FeatureCache;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::{Features, MfccConfig};
use data::speakers::{
    generate_speakers, utterance_features, SpeakerCorpus, SpeakerSynthConfig, SplitConfig,
    DEFAULT_ROOT, WINDOW_FRAMES, WINDOW_SAMPLES,
};
use data::speech_commands::DEFAULT_CACHE_DIR;
use models::cluster::{kmeans_purity, pca_2d, KMeansConfig};
use models::lr_scheduler::{Scheduler, StepLR};
use models::speaker::{accuracy, proxy_logits, SpeakerConfig, SpeakerModel};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

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

/// `config.json` of a speaker run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerRunConfig {
    /// Always `"speaker"`.
    pub model: String,
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
    let mut text = String::from("set,speaker,pc1,pc2\n");
    let mut row = 0;
    for (name, set, speakers) in sets {
        let labels: Vec<i64> = Vec::<i64>::try_from(&set.y.to_device(Device::Cpu))?;
        for l in labels {
            let p = &pcs[row];
            text.push_str(&format!("{name},{},{:.5},{:.5}\n", speakers[l as usize], p[0], p[1]));
            row += 1;
        }
    }
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
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

pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    if args.resume.is_some() {
        bail!("--resume is not supported for speaker (a default run takes a few minutes); start a new run");
    }
    if args.steps.is_some() {
        bail!("the speaker model trains by epochs: use --epochs, not --steps");
    }
    let d = SpeakerTrain::default();
    let t = SpeakerTrain {
        epochs: args.epochs.unwrap_or(d.epochs),
        batch_size: args.batch_size.unwrap_or(d.batch_size),
        lr: args.lr.unwrap_or(d.lr),
        step_size: args.step_size.unwrap_or(d.step_size),
        gamma: args.gamma.unwrap_or(d.gamma),
        eval_fraction: d.eval_fraction,
        holdout_speakers: args.holdout_speakers.unwrap_or(d.holdout_speakers),
        seed: args.seed,
    };
    if t.batch_size < 1 || t.step_size < 1 {
        bail!("--batch-size and --step-size must be at least 1");
    }
    // One intra-op thread by default: the ops of a recurrent step are small, and
    // libtorch's thread pool costs more than it gains (9 it/s with 1 thread, under
    // 1 it/s with 2 on a busy 2-core machine). `--threads` overrides.
    tch::set_num_threads(args.threads.unwrap_or(1));

    // Data.
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let corpus = SpeakerCorpus::open(&data_dir).with_context(|| {
        format!("reading the speaker corpus (make the default one with `rnnlab data synth-speakers --out {DEFAULT_ROOT}`)")
    })?;
    let split = corpus.split(&SplitConfig {
        eval_fraction: t.eval_fraction,
        holdout_speakers: t.holdout_speakers,
        seed: t.seed,
    })?;
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
    let standardizer = Standardizer::fit(&train_f);
    let mut loader = DataLoader::from_features(&train_f, &train_y, t.batch_size as usize, device)?
        .shuffle(t.seed)
        .standardize(&standardizer);
    let train_set = {
        let (x, y) = loader.tensors();
        Set { x: x.shallow_clone(), y: y.shallow_clone() }
    };
    let eval_set = to_set(&eval_f, &eval_y, &standardizer, device)?;
    let unseen_set = to_set(&unseen_f, &unseen_y, &standardizer, device)?;

    // Model.
    tch::manual_seed(t.seed as i64);
    let vs = nn::VarStore::new(device);
    let speaker = SpeakerConfig {
        input_size: mfcc.n_mfcc as i64,
        hidden_size: args.hidden.unwrap_or(64),
        num_layers: args.layers.unwrap_or(1),
        num_speakers: split.train_speakers.len() as i64,
    };
    let model = SpeakerModel::new(vs.root(), speaker);
    let mut opt = nn::Adam::default().build(&vs, t.lr)?;
    let mut sched = Scheduler::new(StepLR::new(t.lr, t.step_size, t.gamma));
    sched.apply(&mut opt);

    let run = RunDir::create(args.out.as_deref(), "speaker")?;
    let snaps = snapshot_epochs(t.epochs);
    let config = SpeakerRunConfig {
        model: "speaker".into(),
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
    };
    run.write_json("config.json", &config)?;
    run.write_json("split.json", &split)?;
    let mut metrics = MetricsCsv::open(
        &run.file("metrics.csv"),
        &["step", "epoch", "loss", "lr", "heldout_loss", "heldout_accuracy", "unseen_purity"],
        None,
    )?;
    let sets: Vec<(&str, &Set, &[String])> = vec![
        ("train", &train_set, &split.train_speakers[..]),
        ("heldout", &eval_set, &split.train_speakers[..]),
        ("unseen", &unseen_set, &split.unseen_speakers[..]),
    ];
    snapshot(&run, 0, &model, &sets)?;
    println!(
        "training {} parameters on {device:?} for {} epochs of {} batches; run folder {}",
        vs.trainable_variables().iter().map(|v| v.numel()).sum::<usize>(),
        t.epochs,
        loader.len(),
        run.path().display()
    );

    let (mut step, mut train_secs) = (0usize, 0f64);
    let (mut last_epoch_loss, mut best_acc) = (f64::NAN, -1.0);
    let (mut heldout_loss, mut heldout_acc, mut purity) = (f64::NAN, f64::NAN, None);
    for epoch in 1..=t.epochs {
        let lr = sched.lr();
        let tick = Instant::now();
        let mut losses = Vec::new();
        for (x, y) in loader.iter() {
            let loss = model.loss(&x, &y);
            opt.backward_step(&loss);
            losses.push(loss.detach());
        }
        let losses: Vec<f64> = Vec::<f64>::try_from(
            &Tensor::stack(&losses, 0).to_kind(Kind::Double).to_device(Device::Cpu),
        )?;
        train_secs += tick.elapsed().as_secs_f64();
        last_epoch_loss = losses.iter().sum::<f64>() / losses.len() as f64;
        (heldout_loss, heldout_acc) = evaluate(&model, &eval_set);
        purity = unseen_purity(&model, &unseen_set, split.unseen_speakers.len(), t.seed);
        for (i, l) in losses.iter().enumerate() {
            step += 1;
            let end = i + 1 == losses.len();
            let cell = |v: f64| if end { format!("{v:.6}") } else { String::new() };
            metrics.row(&[
                step.to_string(),
                epoch.to_string(),
                format!("{l:.6}"),
                format!("{lr:.6e}"),
                cell(heldout_loss),
                cell(heldout_acc),
                purity.map_or(String::new(), cell),
            ])?;
        }
        sched.step(&mut opt);
        run.save_checkpoint(&vs, "last")?;
        if heldout_acc > best_acc {
            best_acc = heldout_acc;
            run.save_checkpoint(&vs, "best")?;
        }
        if snaps.contains(&epoch) {
            snapshot(&run, epoch, &model, &sets)?;
        }
        println!(
            "epoch {epoch:>3}/{}  loss {last_epoch_loss:.4}  held-out loss {heldout_loss:.4}  \
             accuracy {:.1}%{}  lr {lr:.2e}  {:.1} it/s",
            t.epochs,
            100.0 * heldout_acc,
            purity.map_or(String::new(), |p| format!("  unseen purity {:.1}%", 100.0 * p)),
            step as f64 / train_secs
        );
    }

    let summary = serde_json::json!({
        "model": "speaker",
        "final_loss": last_epoch_loss,
        "heldout_loss": heldout_loss,
        "heldout_accuracy": heldout_acc,
        "best_heldout_accuracy": best_acc,
        "unseen_purity": purity,
        "unseen_speakers": split.unseen_speakers.len(),
        "train_speakers": split.train_speakers.len(),
        "epochs": t.epochs,
        "steps": step,
        "train_seconds": train_secs,
        "it_per_s": step as f64 / train_secs,
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
    });
    run.write_json("summary.json", &summary)?;
    println!(
        "final loss {last_epoch_loss:.4}, held-out accuracy {:.1}%{}, {:.1} it/s; wrote {}",
        100.0 * heldout_acc,
        purity.map_or(String::new(), |p| format!(", unseen-speaker purity {:.1}%", 100.0 * p)),
        step as f64 / train_secs,
        run.path().display()
    );
    Ok(())
}

/// Flags of `rnnlab data synth-speakers`.
#[derive(Args, Debug, Clone)]
pub struct SynthSpeakersArgs {
    /// Output folder (one sub-folder per speaker).
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub out: PathBuf,
    /// Speakers (2 to 30), each a different espeak-ng voice, variant, pitch and speed.
    #[arg(long, default_value_t = SpeakerSynthConfig::default().speakers)]
    pub speakers: usize,
    /// Utterances per speaker (different words and short phrases, at most 120).
    #[arg(long, default_value_t = SpeakerSynthConfig::default().utterances)]
    pub utterances: usize,
    /// Seed of the text choice, loudness and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn synth_speakers(args: &SynthSpeakersArgs) -> anyhow::Result<()> {
    let cfg = SpeakerSynthConfig {
        speakers: args.speakers,
        utterances: args.utterances,
        seed: args.seed,
        ..SpeakerSynthConfig::default()
    };
    let started = Instant::now();
    let summary = generate_speakers(&args.out, &cfg)
        .with_context(|| format!("making the speaker corpus {}", args.out.display()))?;
    println!(
        "wrote {} utterances of {} speakers to {} in {:.1} s",
        summary.files,
        summary.speakers.len(),
        summary.dir.display(),
        started.elapsed().as_secs_f64()
    );
    for s in &summary.speakers {
        println!(
            "  {:<28} voice {:<22} pitch {:>2}  speed {:>3}",
            s.folder,
            s.voice.espeak_name(),
            s.voice.pitch,
            s.voice.speed
        );
    }
    Ok(())
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
