//! `rnnlab train --model rnn_tanh|rnn_relu|lstm|gru`: the coursework's speech
//! classifier on Speech Commands (or the synthetic set made on first use).
//!
//! Adam and cross-entropy, validation every `--valid-every` steps, and the test
//! accuracy reported at the best validation accuracy, each counted on its own
//! split (the notebook adds the test counts onto the validation counts). Every
//! epoch ends with a `last` checkpoint (model, optimiser moments, loop state),
//! so `--resume` continues exactly where the run stopped.

use crate::run_dir::{MetricsCsv, RunDir};
use crate::train::{ModelKind, TrainArgs};
use anyhow::{bail, ensure, Context};
use clap::ValueEnum;
use data::augment::SpecAugment;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::MfccConfig;
use data::speech_commands::{
    SpeechCommands, Split, DEFAULT_CACHE_DIR, DEFAULT_CLASSES, DEFAULT_ROOT as DEFAULT_DATA_DIR,
};
use data::synth::{generate, SynthConfig};
use indicatif::{ProgressBar, ProgressStyle};
use models::lr_scheduler::CosineAnnealingWarmRestarts;
use models::{classifier, clip_grad_norm_, Adam, Engine, Mode, RnnConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// `--engine`: who runs the recurrence (both give the same numbers).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineArg {
    /// The hand-written cells.
    Custom,
    /// libtorch's fused kernels (cuDNN on a GPU).
    Fused,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Custom => Engine::Custom,
            EngineArg::Fused => Engine::Fused,
        }
    }
}

/// Everything a run needs to be rebuilt: saved as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RnnRunConfig {
    pub model: ModelKind,
    pub recipe: String,
    pub bidirectional: bool,
    pub engine: Engine,
    pub rnn: RnnConfig,
    pub epochs: usize,
    pub batch_size: i64,
    pub lr: f64,
    /// Cosine decay of the learning rate from `lr` to 0 over the run, per step
    /// (the default recipe); constant when false (the notebook).
    #[serde(default)]
    pub cosine: bool,
    pub seed: u64,
    pub valid_every: usize,
    pub data_dir: PathBuf,
    pub classes: Vec<String>,
    pub mfcc: MfccConfig,
    /// Per-coefficient statistics of the train split, when the recipe standardises.
    pub standardizer: Option<Standardizer>,
    /// SpecAugment masks on every training batch (the default recipe).
    #[serde(default)]
    pub augment: Option<SpecAugment>,
    /// `clip_grad_norm_` of all gradients to this 2-norm before every step
    /// (the default recipe: 1); unclipped when none (the notebook).
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// LSTM: the forget gate's initial bias (the default recipe: 1);
    /// PyTorch's uniform draw when none (the notebook).
    #[serde(default)]
    pub forget_bias: Option<f64>,
}

/// The loop's position, saved with every `last` checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LoopState {
    epochs_done: usize,
    step: usize,
    best_valid_accuracy: f64,
    test_accuracy: f64,
    best_step: usize,
    train_seconds: f64,
}

fn mode_of(model: ModelKind) -> anyhow::Result<Mode> {
    Ok(match model {
        ModelKind::Lstm => Mode::Lstm,
        ModelKind::Gru => Mode::Gru,
        ModelKind::RnnTanh => Mode::RnnTanh,
        ModelKind::RnnRelu => Mode::RnnRelu,
        other => bail!("{other:?} is not a recurrent classifier"),
    })
}

/// The flags resolved against the recipe: `--coursework` is the notebook's
/// exact settings; the default recipe standardises features, decays the
/// learning rate on a cosine, clips the gradient norm to 1, starts the LSTM's
/// forget gates at a bias of 1, masks the gated cells' training batches with
/// SpecAugment and is tuned (on the validation split) to generalise to unseen
/// voices in the same 5-epoch budget.
fn resolve(args: &TrainArgs) -> anyhow::Result<RnnRunConfig> {
    let cw = args.coursework;
    let hidden = args.hidden.unwrap_or(if cw { 32 } else { 128 });
    let layers = args.layers.unwrap_or(2);
    let batch_size = args.batch_size.unwrap_or(if cw { 100 } else { 32 });
    let lr = args.lr.unwrap_or(if cw { 0.01 } else { 0.002 });
    let epochs = args.epochs.unwrap_or(5);
    let valid_every = args.valid_every.unwrap_or(if cw { 20 } else { 25 });
    ensure!(hidden > 0, "--hidden must be positive, got {hidden}");
    ensure!(layers > 0, "--layers must be positive, got {layers}");
    ensure!(batch_size > 0, "--batch-size must be positive, got {batch_size}");
    ensure!(lr > 0.0 && lr.is_finite(), "--lr must be a positive number, got {lr}");
    ensure!(epochs > 0, "--epochs must be positive, got {epochs}");
    ensure!(valid_every > 0, "--valid-every must be positive, got {valid_every}");
    let clip = args.clip_grad_norm.unwrap_or(if cw { f64::INFINITY } else { 1.0 });
    ensure!(clip > 0.0, "--clip-grad-norm must be positive (inf turns it off), got {clip}");
    let classes: Vec<String> = DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect();
    let mode = mode_of(args.model)?;
    Ok(RnnRunConfig {
        model: args.model,
        recipe: if cw { "coursework" } else { "default" }.into(),
        bidirectional: args.bidir,
        engine: args.engine.into(),
        rnn: RnnConfig {
            mode,
            input_size: 20,
            hidden_size: hidden,
            num_layers: layers,
            bias: true,
            output_size: classes.len() as i64,
        },
        epochs,
        batch_size,
        lr,
        cosine: !cw,
        seed: args.seed,
        valid_every,
        data_dir: args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        classes,
        mfcc: if cw { MfccConfig::coursework() } else { MfccConfig::default() },
        standardizer: None,
        augment: (!cw && !args.no_augment && mode.is_gated()).then(SpecAugment::default),
        clip_grad_norm: clip.is_finite().then_some(clip),
        forget_bias: (!cw && !args.no_forget_bias && mode == Mode::Lstm).then_some(1.0),
    })
}

/// The synthetic set, made when the default folder holds no data set yet.
fn ensure_default_data(dir: &Path) -> anyhow::Result<()> {
    if dir != Path::new(DEFAULT_DATA_DIR) || SpeechCommands::resolve_root(dir).is_ok() {
        return Ok(());
    }
    eprintln!(
        "no data set in {}: synthesising one with espeak-ng (`rnnlab data synth`)",
        dir.display()
    );
    generate(dir, &SynthConfig::default()).context("making the synthetic data set")?;
    Ok(())
}

/// The three splits' loaders on `device`, standardised with the train split's
/// statistics when the recipe asks (and those are fitted now if not yet).
struct Splits {
    train: DataLoader,
    valid: DataLoader,
    test: DataLoader,
}

fn load_splits(cfg: &mut RnnRunConfig, device: Device) -> anyhow::Result<Splits> {
    ensure_default_data(&cfg.data_dir)?;
    let cache = Arc::new(data::cache::FeatureCache::new(
        DEFAULT_CACHE_DIR,
        cfg.mfcc,
        Some(data::audio::ONE_SECOND),
    )?);
    let split = |s| SpeechCommands::with_cache(&cfg.data_dir, s, &cfg.classes, cache.clone());
    let (train, valid, test) =
        (split(Split::Train)?, split(Split::Validation)?, split(Split::Test)?);
    for ds in [&train, &valid, &test] {
        ensure!(!ds.is_empty(), "{}: the {} split is empty", ds.dir().display(), ds.split());
    }
    if cfg.recipe != "coursework" && cfg.standardizer.is_none() {
        cfg.standardizer = Some(Standardizer::fit(train.features()?));
    }
    let bs = cfg.batch_size as usize;
    let mut loaders = [
        DataLoader::new(&train, bs, device)?.shuffle(cfg.seed),
        DataLoader::new(&valid, bs, device)?,
        DataLoader::new(&test, bs, device)?,
    ];
    if let Some(s) = &cfg.standardizer {
        loaders = loaders.map(|l| l.standardize(s));
    }
    let [train, valid, test] = loaders;
    Ok(Splits { train, valid, test })
}

/// Accuracy of one split, counted on its own, in evaluation mode without autograd.
pub fn accuracy(model: &dyn ModuleT, loader: &DataLoader, batch: i64) -> f64 {
    let (correct, n) = loader.count_correct(model, batch);
    correct as f64 / n as f64
}

const METRICS: [&str; 7] = ["step", "epoch", "loss", "lr", "valid_acc", "test_acc", "seconds"];

pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    let (run, mut cfg, state) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let mut cfg: RnnRunConfig = run.read_json("config.json")?;
            let state: LoopState = run.read_json("state.json")?;
            // `--resume DIR --epochs N` extends a run to N epochs (the default
            // recipe's cosine schedule is then re-planned over N epochs).
            if let Some(epochs) = args.epochs {
                ensure!(
                    epochs >= state.epochs_done,
                    "--epochs {epochs}: {} already done",
                    state.epochs_done
                );
                cfg.epochs = epochs;
            }
            if state.epochs_done >= cfg.epochs {
                bail!("{}: all {} epochs are done; nothing to resume", dir.display(), cfg.epochs);
            }
            (run, cfg, Some(state))
        }
        None => {
            let cfg = resolve(args)?;
            // The model's name as on the command line: `gru`, `rnn_tanh`, `bilstm`.
            let model = serde_json::to_value(args.model)?;
            let name = format!(
                "{}{}",
                if cfg.bidirectional { "bi" } else { "" },
                model.as_str().unwrap_or("rnn")
            );
            (RunDir::create(args.out.as_deref(), &name)?, cfg, None)
        }
    };
    let mut splits = load_splits(&mut cfg, device)?;
    run.write_json("config.json", &cfg)?;

    // One intra-op thread by default: the matrices are small (batch x 4H at
    // most 100 x 512), and a second OpenMP thread costs more in hand-off (and,
    // on a busy machine, in spinning) than it saves. `--threads` overrides.
    if device == Device::Cpu {
        tch::set_num_threads(args.threads.unwrap_or(1));
    }
    tch::manual_seed(cfg.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = classifier(&vs.root(), cfg.rnn, cfg.bidirectional, cfg.engine, cfg.forget_bias);
    let mut opt = Adam::new(&vs, cfg.lr);
    let params = vs.trainable_variables();
    let mut st = state.unwrap_or_default();
    if args.resume.is_some() {
        run.load_checkpoint(&mut vs, "last")?;
        let moments = run.read_tensors("last.optim")?;
        opt.load_state(&moments, st.step as i64).map_err(|k| {
            anyhow::anyhow!("{}: no {k}", run.file("last.optim.safetensors").display())
        })?;
        // The shuffling order depends on the epoch: skip the finished ones.
        for _ in 0..st.epochs_done {
            let _ = splits.train.iter();
        }
    }
    let resume_step = args.resume.as_ref().map(|_| st.step as u64);
    let mut metrics = MetricsCsv::open(&run.file("metrics.csv"), &METRICS, resume_step)?;

    let steps_per_epoch = splits.train.len();
    let total = (cfg.epochs * steps_per_epoch) as u64;
    let bar = ProgressBar::new(total).with_position(st.step as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
    )?);
    let cosine = CosineAnnealingWarmRestarts::new(cfg.lr, total.max(1) as usize, 1, 0.0);
    let started = Instant::now() - std::time::Duration::from_secs_f64(st.train_seconds);
    let eval_batch = 1000.max(cfg.batch_size);
    let mut pending = PendingRows::default();
    for epoch in st.epochs_done..cfg.epochs {
        for (x, y) in splits.train.iter() {
            st.step += 1;
            let lr = if cfg.cosine { cosine.lr_at((st.step - 1) as f64) } else { cfg.lr };
            opt.set_lr(lr);
            let x = match &cfg.augment {
                Some(aug) => aug.apply(&x, cfg.seed, st.step as u64),
                None => x,
            };
            let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.zero_grad();
            loss.backward();
            if let Some(max_norm) = cfg.clip_grad_norm {
                let _total_norm = clip_grad_norm_(&params, max_norm);
            }
            opt.step();
            st.train_seconds = started.elapsed().as_secs_f64();
            let seconds = st.train_seconds;
            pending.push(PendingRow { step: st.step, epoch, loss: loss.detach(), lr, seconds });
            bar.inc(1);
            if st.step % cfg.valid_every == 0 {
                // the losses first: a diverged model is never scored or saved
                let losses = pending.losses()?;
                let valid_acc = accuracy(model.as_ref(), &splits.valid, eval_batch);
                let test_acc = accuracy(model.as_ref(), &splits.test, eval_batch);
                if valid_acc > st.best_valid_accuracy {
                    st.best_valid_accuracy = valid_acc;
                    st.test_accuracy = test_acc;
                    st.best_step = st.step;
                    run.save_checkpoint(&vs, "best")?;
                }
                let last = pending.write(&mut metrics, &losses, Some((valid_acc, test_acc)))?;
                bar.set_message(format!("loss {last:.4} valid {valid_acc:.3} test {test_acc:.3}"));
            }
        }
        let losses = pending.losses()?;
        pending.write(&mut metrics, &losses, None)?;
        st.epochs_done = epoch + 1;
        run.save_checkpoint(&vs, "last")?;
        let (moments, _) = opt.state();
        run.save_tensors("last.optim", &moments)?;
        run.write_json("state.json", &st)?;
    }
    bar.finish();

    let summary = serde_json::json!({
        "model": cfg.model,
        "recipe": cfg.recipe,
        "bidirectional": cfg.bidirectional,
        "engine": cfg.engine,
        "best_valid_accuracy": st.best_valid_accuracy,
        "test_accuracy": st.test_accuracy,
        "best_step": st.best_step,
        "epochs": cfg.epochs,
        "steps": st.step,
        "train_seconds": st.train_seconds,
        "seconds_per_step": st.train_seconds / st.step.max(1) as f64,
        "device": format!("{device:?}"),
        "train_clips": splits.train.num_samples(),
        "valid_clips": splits.valid.num_samples(),
        "test_clips": splits.test.num_samples(),
    });
    run.write_json("summary.json", &summary)?;
    println!(
        "{}: best validation accuracy {:.4} at step {}, test accuracy there {:.4} ({} steps, {:.1} s)",
        run.path().display(),
        st.best_valid_accuracy,
        st.best_step,
        st.test_accuracy,
        st.step,
        st.train_seconds
    );
    Ok(())
}

/// `rnnlab eval --run DIR`: re-scores a checkpoint on a split.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The run folder (from `rnnlab train`).
    #[arg(long)]
    pub run: PathBuf,
    /// Which split to score.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// Which checkpoint: `best` (at the best validation accuracy) or `last`.
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SplitArg {
    Train,
    Validation,
    Test,
}

pub fn eval(args: &EvalArgs, device: Device) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run)?;
    let mut cfg: RnnRunConfig = run
        .read_json("config.json")
        .with_context(|| format!("{} is not a recurrent-classifier run", args.run.display()))?;
    let splits = load_splits(&mut cfg, device)?;
    let mut vs = nn::VarStore::new(device);
    let model = classifier(&vs.root(), cfg.rnn, cfg.bidirectional, cfg.engine, cfg.forget_bias);
    run.load_checkpoint(&mut vs, &args.checkpoint)?;
    let loader = match args.split {
        SplitArg::Train => &splits.train,
        SplitArg::Validation => &splits.valid,
        SplitArg::Test => &splits.test,
    };
    let acc = accuracy(model.as_ref(), loader, 1000);
    println!(
        "{} {:?} accuracy ({} checkpoint, {} clips): {acc:.6}",
        args.run.display(),
        args.split,
        args.checkpoint,
        loader.num_samples()
    );
    Ok(())
}

/// One step's `metrics.csv` row before its loss is read.
struct PendingRow {
    step: usize,
    epoch: usize,
    loss: Tensor,
    lr: f64,
    seconds: f64,
}

/// Training rows whose losses stay on the device until a validation step or
/// the end of an epoch reads them in one transfer: on CUDA, reading each
/// step's loss would make the host wait for the GPU every step.
#[derive(Default)]
struct PendingRows(Vec<PendingRow>);

impl PendingRows {
    fn push(&mut self, row: PendingRow) {
        self.0.push(row);
    }

    /// The waiting losses, read at once; an error names the first step whose
    /// loss is not finite.
    fn losses(&self) -> anyhow::Result<Vec<f64>> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<&Tensor> = self.0.iter().map(|r| &r.loss).collect();
        let stacked = Tensor::stack(&all, 0).to_kind(Kind::Double).to_device(Device::Cpu);
        let losses = Vec::<f64>::try_from(stacked)?;
        if let Some((row, loss)) = self.0.iter().zip(&losses).find(|(_, l)| !l.is_finite()) {
            bail!("loss became {loss} at step {}: lower --lr", row.step);
        }
        Ok(losses)
    }

    /// Writes the rows (the last with `scores`, validation and test accuracy)
    /// and empties the queue; returns the last loss.
    fn write(
        &mut self,
        metrics: &mut MetricsCsv,
        losses: &[f64],
        scores: Option<(f64, f64)>,
    ) -> anyhow::Result<f64> {
        let n = self.0.len();
        for (k, (row, loss)) in self.0.drain(..).zip(losses).enumerate() {
            let (v, t) = match scores {
                Some((v, t)) if k + 1 == n => (format!("{v:.6}"), format!("{t:.6}")),
                _ => (String::new(), String::new()),
            };
            metrics.row(&[
                row.step.to_string(),
                row.epoch.to_string(),
                format!("{loss:.6}"),
                format!("{:.6e}", row.lr),
                v,
                t,
                format!("{:.3}", row.seconds),
            ])?;
        }
        Ok(losses.last().copied().unwrap_or(f64::NAN))
    }
}
