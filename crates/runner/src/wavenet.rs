//! `rnnlab train --model wavenet` and `rnnlab sample`: makemore part 5's
//! hierarchical MLP on names, trained as the lecture does.
//!
//! The `lecture` recipe (the default) is the notebook's loop: batches of 32
//! drawn uniformly with replacement from the training examples, SGD
//! `p -= lr * grad` with lr 0.1, then 0.01 for the last quarter of the steps
//! (`lr = 0.1 if i < 150000 else 0.01` for 200,000 steps), cross-entropy.
//! The `tuned` recipe is a separate, named configuration (see [`Recipe`]).
//!
//! The loss of every step goes to `metrics.csv` (`step,loss,lr,val_loss`;
//! `val_loss` every twentieth of the run). Losses stay on the device and are
//! read in blocks of [`LOG_BLOCK`] steps, so a CUDA run never waits for the
//! host. At the end, `summary.json` holds the train, validation and test
//! losses of the final model in evaluation mode (running BatchNorm
//! statistics), as the lecture's `split_loss`.

use crate::run_dir::{MetricsCsv, RunDir};
use crate::train::TrainArgs;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use models::makemore::{
    build_dataset, load_words, split_loss, split_words, Vocab, WaveNet, WaveNetConfig,
    NO_DECAY_GROUP,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Steps whose losses are read back to the host at once.
pub const LOG_BLOCK: usize = 1000;
/// The lecture's `random.seed(42)` before shuffling the words.
pub const SPLIT_SEED: u32 = 42;

/// How the model is optimised.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// The lecture: SGD, lr 0.1 then 0.01 for the last quarter, batch 32, 200,000 steps.
    #[default]
    Lecture,
    /// Beyond the lecture: AdamW (β 0.9, 0.99; weight decay 0.1, none on
    /// BatchNorm's γ and β), lr 3e-3 with
    /// a 1,000-step warm-up and cosine decay to 1e-5, batch 64, 100,000 steps.
    Tuned,
}

/// The optimisation settings a recipe stands for; flags override them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub recipe: Recipe,
    pub steps: usize,
    pub batch_size: i64,
    /// Peak (tuned) or first (lecture) learning rate.
    pub lr: f64,
}

impl Schedule {
    fn new(recipe: Recipe, args: &TrainArgs) -> anyhow::Result<Self> {
        let (steps, batch_size, lr) = match recipe {
            Recipe::Lecture => (200_000, 32, 0.1),
            Recipe::Tuned => (100_000, 64, 3e-3),
        };
        let s = Self {
            recipe,
            steps: args.steps.unwrap_or(steps),
            batch_size: args.batch_size.unwrap_or(batch_size),
            lr: args.lr.unwrap_or(lr),
        };
        if s.steps == 0 {
            bail!("--steps must be at least 1");
        }
        if s.batch_size < 2 {
            bail!(
                "--batch-size must be at least 2 (BatchNorm1d needs two examples), got {}",
                s.batch_size
            );
        }
        if !(s.lr.is_finite() && s.lr > 0.0) {
            bail!("--lr must be a positive number, got {}", s.lr);
        }
        Ok(s)
    }

    /// Learning rate of step `i` (0-based, as the lecture's loop).
    pub fn lr_at(&self, i: usize) -> f64 {
        match self.recipe {
            // `0.1 if i < 150000 else 0.01` for 200,000 steps
            Recipe::Lecture => {
                if i < self.steps * 3 / 4 {
                    self.lr
                } else {
                    self.lr / 10.0
                }
            }
            Recipe::Tuned => {
                let warmup = 1000.min(self.steps / 10).max(1);
                let min_lr = 1e-5;
                if i < warmup {
                    self.lr * (i + 1) as f64 / warmup as f64
                } else {
                    let t = (i - warmup) as f64 / (self.steps - warmup).max(1) as f64;
                    min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }
}

/// `config.json` of a wavenet run: everything `sample` needs to rebuild it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: String,
    pub net: WaveNetConfig,
    /// The vocabulary, index order (`.abc...z`).
    pub vocab: String,
    pub schedule: Schedule,
    pub seed: u64,
    pub split_seed: u32,
    pub names_file: PathBuf,
    pub threads: i32,
    pub device: String,
}

/// The names file: `<data_dir>/names.txt`, default `data/names.txt`.
fn names_file(args: &TrainArgs) -> PathBuf {
    args.data_dir.clone().unwrap_or_else(|| PathBuf::from("data")).join("names.txt")
}

/// `rnnlab train --model wavenet`.
pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    if args.resume.is_some() {
        bail!("--resume is not supported for wavenet (a run of 200,000 steps takes minutes); start a new run");
    }
    for (flag, set) in [("--epochs", args.epochs.is_some()), ("--layers", args.layers.is_some())] {
        if set {
            bail!("{flag} does not apply to wavenet (it trains by --steps; its depth follows the context of 8)");
        }
    }
    let recipe = args.recipe.unwrap_or_default();
    let schedule = Schedule::new(recipe, args)?;
    let defaults = WaveNetConfig::default();
    let mut net = WaveNetConfig {
        n_embd: args.embd.unwrap_or(defaults.n_embd),
        n_hidden: args.hidden.unwrap_or(defaults.n_hidden),
        ..defaults
    };
    net.validate()?;

    let names = names_file(args);
    let words = load_words(&names)?;
    let vocab = Vocab::from_words(&words);
    net.vocab_size = vocab.len() as i64;
    let split = split_words(&words, SPLIT_SEED);
    let block = net.block_size as usize;
    let (xtr, ytr) = build_dataset(&split.train, &vocab, block, device)?;
    let (xva, yva) = build_dataset(&split.val, &vocab, block, device)?;
    let (xte, yte) = build_dataset(&split.test, &vocab, block, device)?;

    // One intra-op thread: the matrices are tiny (at most 32x256 by 256x128),
    // so a second thread costs more in hand-off than it saves (measured in
    // notes/README-wavenet.md). `--threads` overrides.
    let threads = args.threads.unwrap_or(1);
    if device == Device::Cpu {
        tch::set_num_threads(threads);
    }
    tch::manual_seed(args.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = WaveNet::new(&vs.root(), net)?;

    let run = RunDir::create(args.out.as_deref(), "wavenet")?;
    let config = RunConfig {
        model: "wavenet".into(),
        net,
        vocab: vocab.chars().iter().collect(),
        schedule,
        seed: args.seed,
        split_seed: SPLIT_SEED,
        names_file: names.clone(),
        threads,
        device: format!("{device:?}"),
    };
    run.write_json("config.json", &config)?;
    let mut metrics =
        MetricsCsv::open(&run.file("metrics.csv"), &["step", "loss", "lr", "val_loss"], None)?;
    println!(
        "wavenet ({:?} recipe): {} parameters, {} training examples, {} steps of {} on {device:?} -> {}",
        schedule.recipe,
        net.num_parameters(),
        ytr.size()[0],
        schedule.steps,
        schedule.batch_size,
        run.path().display()
    );

    let mut opt = match schedule.recipe {
        Recipe::Lecture => nn::Sgd::default().build(&vs, schedule.lr)?,
        Recipe::Tuned => nn::AdamW { beta1: 0.9, beta2: 0.99, wd: 0.1, ..Default::default() }
            .build(&vs, schedule.lr)?,
    };
    if schedule.recipe == Recipe::Tuned {
        // no weight decay on BatchNorm's γ and β
        opt.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
    }
    let n_train = xtr.size()[0];
    let eval_every = (schedule.steps / 20).max(1);
    let mut pending: Vec<Tensor> = Vec::with_capacity(LOG_BLOCK);
    let mut pending_lr: Vec<f64> = Vec::with_capacity(LOG_BLOCK);
    let mut first_step = 1;
    let mut last_lr = f64::NAN;
    let mut best_val = f64::INFINITY;
    let mut train_seconds = 0.0;
    let mut tick = Instant::now();
    // evaluation-mode logits, for the split losses
    let eval = |x: &Tensor| model.forward_t(x, false);
    for i in 0..schedule.steps {
        let lr = schedule.lr_at(i);
        if lr != last_lr {
            opt.set_lr(lr);
            last_lr = lr;
        }
        let ix = Tensor::randint(n_train, [schedule.batch_size], (Kind::Int64, device)); // [B]
        let xb = xtr.index_select(0, &ix); // [B, 8]
        let yb = ytr.index_select(0, &ix); // [B]
        let logits = model.forward_t(&xb, true); // [B, 27]
        let loss = logits.cross_entropy_for_logits(&yb);
        opt.backward_step(&loss);
        pending.push(loss.detach());
        pending_lr.push(lr);

        let step = i + 1;
        let eval_now = step % eval_every == 0 || step == schedule.steps;
        if pending.len() == LOG_BLOCK || eval_now {
            let losses = Vec::<f32>::try_from(Tensor::stack(&pending, 0).to_device(Device::Cpu))?;
            train_seconds += tick.elapsed().as_secs_f64();
            let val = if eval_now { Some(split_loss(eval, &xva, &yva)) } else { None };
            for (k, (loss, lr)) in losses.iter().zip(&pending_lr).enumerate() {
                let s = first_step + k;
                let v = if s == step { val.map(|v| format!("{v:.6}")) } else { None };
                metrics.row(&[
                    s.to_string(),
                    format!("{loss:.6}"),
                    format!("{lr:e}"),
                    v.unwrap_or_default(),
                ])?;
            }
            if !losses.iter().all(|l| l.is_finite()) {
                bail!("the loss diverged (non-finite) before step {step}: lower --lr");
            }
            if let Some(v) = val {
                println!(
                    "{step:7}/{:7}: loss {:.4}, val {v:.4} ({:.3} ms/step)",
                    schedule.steps,
                    losses[losses.len() - 1],
                    1e3 * train_seconds / step as f64
                );
                if v < best_val {
                    best_val = v;
                    run.save_checkpoint(&vs, "best")?;
                }
                run.save_checkpoint(&vs, "last")?;
            }
            first_step = step + 1;
            pending.clear();
            pending_lr.clear();
            tick = Instant::now();
        }
    }

    let (train_loss, val_loss, test_loss) =
        (split_loss(eval, &xtr, &ytr), split_loss(eval, &xva, &yva), split_loss(eval, &xte, &yte));
    let summary = serde_json::json!({
        "model": "wavenet",
        "recipe": schedule.recipe,
        "steps": schedule.steps,
        "batch_size": schedule.batch_size,
        "parameters": net.num_parameters(),
        "train_loss": train_loss,
        "val_loss": val_loss,
        "test_loss": test_loss,
        "best_val_loss": best_val,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / schedule.steps as f64,
        "ms_per_step": 1e3 * train_seconds / schedule.steps as f64,
        "threads": threads,
        "device": format!("{device:?}"),
    });
    run.write_json("summary.json", &summary)?;
    println!(
        "train {train_loss:.4}, val {val_loss:.4}, test {test_loss:.4}; {:.3} ms/step; {}",
        1e3 * train_seconds / schedule.steps as f64,
        run.path().display()
    );
    Ok(())
}

/// Flags of `rnnlab sample`.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// A wavenet run folder (with config.json and a checkpoint).
    #[arg(long)]
    pub run: PathBuf,
    /// How many names.
    #[arg(short = 'n', long = "count", default_value_t = 20)]
    pub count: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which checkpoint: `last` or `best`.
    #[arg(long, default_value = "last")]
    pub checkpoint: String,
    /// Longest name, in characters.
    #[arg(long, default_value_t = 50)]
    pub max_len: usize,
}

/// `rnnlab sample`: prints `count` new names, one a line.
pub fn sample(args: &SampleArgs, device: Device) -> anyhow::Result<()> {
    for name in sample_names(&args.run, args, device)? {
        println!("{name}");
    }
    Ok(())
}

fn sample_names(dir: &Path, args: &SampleArgs, device: Device) -> anyhow::Result<Vec<String>> {
    let run = RunDir::open(dir)?;
    let kind: serde_json::Value = run.read_json("config.json")?;
    if kind.get("model").and_then(|m| m.as_str()) != Some("wavenet") {
        bail!(
            "{}: `sample` draws names from wavenet runs; this run's model is {}",
            dir.display(),
            kind["model"]
        );
    }
    let config: RunConfig = run.read_json("config.json")?;
    let vocab_words = [config.vocab.chars().skip(1).collect::<String>()];
    let vocab = Vocab::from_words(&vocab_words);
    if vocab.len() as i64 != config.net.vocab_size {
        bail!(
            "{}: vocabulary {:?} does not match vocab_size {}",
            dir.display(),
            config.vocab,
            config.net.vocab_size
        );
    }
    let mut vs = nn::VarStore::new(device);
    let model =
        WaveNet::new(&vs.root(), config.net).context("rebuilding the model from config.json")?;
    run.load_checkpoint(&mut vs, &args.checkpoint)?;
    tch::manual_seed(args.seed as i64);
    Ok(model.sample(&vocab, args.count, args.max_len))
}
