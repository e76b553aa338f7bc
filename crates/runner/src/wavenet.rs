//! `rnnlab train --model wavenet` and `rnnlab sample`: makemore part 5's
//! hierarchical MLP on names, trained as the lecture does.
//!
//! The `lecture` recipe (the default) is the notebook's loop: batches of 32
//! drawn uniformly with replacement from the training examples, SGD
//! `p -= lr * grad` with lr 0.1, then 0.01 for the last quarter of the steps
//! (`lr = 0.1 if i < 150000 else 0.01` for 200,000 steps), cross-entropy.
//! The `tuned` recipe is a separate, named configuration (see [`Recipe`]).
//!
//! The loop is the `train` engine's: the loss of every step goes to
//! `metrics.csv` (`step,epoch,loss,lr,valid_loss,seconds`; `valid_loss`
//! every twentieth of the run and after the last step). Losses stay on the
//! device and are read in blocks of [`LOG_BLOCK`] steps, so a CUDA run never
//! waits for the host. `--resume` continues a run exactly (libtorch's
//! generator, which draws the batches, is reseeded at every checkpoint). At
//! the end, `summary.json` holds the train, validation and test losses of
//! the final model in evaluation mode (running BatchNorm statistics), as the
//! lecture's `split_loss`.

use crate::config::{RunConfig, RunSummary};
use crate::train::TrainArgs;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use models::makemore::{
    build_dataset, load_words, split_loss, split_words, Vocab, WaveNet, WaveNetConfig,
    NO_DECAY_GROUP,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};
use train::recipes::{MAKEMORE_LECTURE, MAKEMORE_TUNED};
use train::{Eval, Goal, NoScores, Optim, RunDir, RunStats, Settings, Task};

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
    /// BatchNorm's γ and β), lr 1.5e-3 with
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
        let r = match recipe {
            Recipe::Lecture => MAKEMORE_LECTURE,
            Recipe::Tuned => MAKEMORE_TUNED,
        };
        let (steps, batch_size, lr) = (r.steps, r.batch_size, r.lr);
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

    /// The recipe's optimiser and learning-rate schedule (step `i` 0-based,
    /// as the lecture's loop). Lecture: SGD, `0.1 if i < 150000 else 0.01`
    /// for 200,000 steps (a `StepLR` of three quarters of the run). Tuned:
    /// AdamW, a linear warm-up of `min(1000, steps/10)` steps to the peak,
    /// then a cosine decay to 1e-5 over the rest.
    pub fn optimizer_and_schedule(&self) -> (Optim, train::Schedule) {
        match self.recipe {
            Recipe::Lecture => {
                (Optim::Sgd, train::Schedule::step(self.lr, (self.steps * 3 / 4).max(1), 0.1))
            }
            Recipe::Tuned => {
                let warmup = 1000.min(self.steps / 10).max(1);
                let optim = Optim::AdamW {
                    betas: (0.9, 0.99),
                    weight_decay: 0.1,
                    // no weight decay on BatchNorm's γ and β
                    exempt_group: Some(NO_DECAY_GROUP),
                };
                let decay = self.steps.saturating_sub(warmup).max(1);
                (optim, train::Schedule::warmup_cosine(self.lr, warmup, decay, 1e-5))
            }
        }
    }
}

/// `config.json` of a wavenet run (under `"model": "wavenet"`, see
/// [`RunConfig`]): everything `sample` and `--resume` need to rebuild it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WavenetRunConfig {
    pub net: WaveNetConfig,
    /// The vocabulary, index order (`.abc...z`).
    pub vocab: String,
    pub schedule: Schedule,
    pub seed: u64,
    pub split_seed: u32,
    pub names_file: PathBuf,
    pub threads: i32,
    pub device: String,
    /// Validation every this many steps (a twentieth of the run when none).
    #[serde(default)]
    pub valid_every: Option<usize>,
    /// Early stopping on the validation loss (off when none).
    #[serde(default)]
    pub patience: Option<usize>,
}

/// `summary.json` of a wavenet run: the lecture's `split_loss` of the final
/// model (the best, when early stopping ended the run) in evaluation mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WavenetSummary {
    pub recipe: Recipe,
    pub batch_size: i64,
    pub parameters: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub test_loss: f64,
    pub best_val_loss: f64,
    #[serde(flatten)]
    pub stats: RunStats,
    pub ms_per_step: f64,
    pub threads: i32,
    pub device: String,
}

/// The names file: `<data_dir>/names.txt`, default `data/names.txt`.
fn names_file(args: &TrainArgs) -> PathBuf {
    args.data_dir.clone().unwrap_or_else(|| PathBuf::from("data")).join("names.txt")
}

/// The engine's settings of a wavenet run: the recipe's optimiser and
/// schedule ([`Schedule::optimizer_and_schedule`]), validation every
/// `valid_every` steps.
fn settings(cfg: &WavenetRunConfig) -> Settings {
    let s = cfg.schedule;
    let (optimizer, schedule) = s.optimizer_and_schedule();
    Settings {
        seed: cfg.seed,
        steps: s.steps as u64,
        valid_every: cfg.valid_every.unwrap_or((s.steps / 20).max(1)) as u64,
        optimizer,
        schedule,
        clip_grad_norm: None,
        patience: cfg.patience,
        log_every: LOG_BLOCK as u64,
        validate_at_start: false,
    }
}

/// The model and its three splits, for the training engine.
struct WavenetTask {
    vs: nn::VarStore,
    model: WaveNet,
    splits: [(Tensor, Tensor); 3],
    batch_size: i64,
    steps: u64,
}

impl Task for WavenetTask {
    type Scores = NoScores;

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// No epochs: batches are drawn with replacement, as the lecture does.
    fn steps_per_epoch(&self) -> u64 {
        self.steps
    }

    fn train_loss(&mut self, _step: u64, _batch: u64) -> Tensor {
        let (xtr, ytr) = &self.splits[0];
        let ix = Tensor::randint(ytr.size()[0], [self.batch_size], (Kind::Int64, xtr.device())); // [B]
        let xb = xtr.index_select(0, &ix); // [B, 8]
        let yb = ytr.index_select(0, &ix); // [B]
        self.model.forward_t(&xb, true).cross_entropy_for_logits(&yb) // [B, 27] logits
    }

    fn evaluate(&mut self) -> anyhow::Result<Eval<NoScores>> {
        let (x, y) = &self.splits[1];
        Ok(Eval { loss: split_loss(|x| self.model.forward_t(x, false), x, y), scores: NoScores {} })
    }

    fn monitor(&self, eval: &Eval<NoScores>) -> (f64, Goal) {
        (eval.loss, Goal::Minimize)
    }
}

/// `rnnlab train --model wavenet`.
pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    let (config, run) = match &args.resume {
        Some(dir) => {
            let RunConfig::Wavenet(mut c) = RunConfig::read(dir)? else {
                bail!("{} is not a wavenet run", dir.display());
            };
            // `--resume DIR --steps N` extends the run (the schedule is re-planned)
            if let Some(steps) = args.steps {
                c.schedule.steps = steps;
            }
            c.patience = args.patience.or(c.patience);
            c.threads = args.threads.unwrap_or(c.threads);
            (c, RunDir::open(dir)?)
        }
        None => {
            let recipe = match args.recipe.as_deref() {
                None => Recipe::default(),
                Some(name) => Recipe::from_str(name, true).map_err(|_| {
                    anyhow::anyhow!(
                        "--recipe {name} does not apply to --model wavenet (lecture or tuned)"
                    )
                })?,
            };
            let schedule = Schedule::new(recipe, args)?;
            let defaults = WaveNetConfig::default();
            let net = WaveNetConfig {
                n_embd: args.embd.unwrap_or(defaults.n_embd),
                n_hidden: args.hidden.unwrap_or(defaults.n_hidden),
                ..defaults
            };
            net.validate()?;
            let config = WavenetRunConfig {
                net,
                vocab: String::new(),
                schedule,
                seed: args.seed,
                split_seed: SPLIT_SEED,
                names_file: names_file(args),
                threads: args.threads.unwrap_or(1),
                device: format!("{device:?}"),
                valid_every: args.valid_every,
                patience: args.patience,
            };
            (config, RunDir::create(args.out.as_deref(), "wavenet")?)
        }
    };
    let mut config = config;
    let words = load_words(&config.names_file)?;
    let vocab = Vocab::from_words(&words);
    config.net.vocab_size = vocab.len() as i64;
    config.vocab = vocab.chars().iter().collect();
    let split = split_words(&words, config.split_seed);
    let block = config.net.block_size as usize;
    let splits = [
        build_dataset(&split.train, &vocab, block, device)?,
        build_dataset(&split.val, &vocab, block, device)?,
        build_dataset(&split.test, &vocab, block, device)?,
    ];

    // One intra-op thread: the matrices are tiny (at most 32x256 by 256x128),
    // so a second thread costs more in hand-off than it saves. `--threads` overrides.
    train::init(config.seed, config.threads, device);
    let vs = nn::VarStore::new(device);
    let model = WaveNet::new(&vs.root(), config.net)?;
    run.write_json("config.json", &RunConfig::Wavenet(config.clone()))?;
    let schedule = config.schedule;
    println!(
        "wavenet ({:?} recipe): {} parameters, {} training examples, {} steps of {} on {device:?} -> {}",
        schedule.recipe,
        config.net.num_parameters(),
        splits[0].1.size()[0],
        schedule.steps,
        schedule.batch_size,
        run.path().display()
    );
    let settings = settings(&config);
    let mut task = WavenetTask {
        vs,
        model,
        splits,
        batch_size: schedule.batch_size,
        steps: schedule.steps as u64,
    };
    let st = train::fit(&mut task, &run, &settings, args.resume.is_some())?;

    let eval = |x: &Tensor| task.model.forward_t(x, false);
    let [(xtr, ytr), (xva, yva), (xte, yte)] = &task.splits;
    let (train_loss, val_loss, test_loss) =
        (split_loss(eval, xtr, ytr), split_loss(eval, xva, yva), split_loss(eval, xte, yte));
    let stats = st.stats();
    let summary = WavenetSummary {
        recipe: schedule.recipe,
        batch_size: schedule.batch_size,
        parameters: config.net.num_parameters(),
        train_loss,
        val_loss,
        test_loss,
        best_val_loss: stats.best_valid_loss,
        ms_per_step: 1e3 * stats.seconds_per_step,
        stats,
        threads: config.threads,
        device: format!("{device:?}"),
    };
    run.write_json("summary.json", &RunSummary::Wavenet(summary.clone()))?;
    println!(
        "train {train_loss:.4}, val {val_loss:.4}, test {test_loss:.4}; {:.3} ms/step{}; {}",
        summary.ms_per_step,
        if st.stopped_early { "; stopped early" } else { "" },
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
    let config = match RunConfig::read(dir)? {
        RunConfig::Wavenet(c) => c,
        other => bail!(
            "{}: `sample` draws names from wavenet runs; this run's model is {:?}",
            dir.display(),
            other.kind()
        ),
    };
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
    let vs = nn::VarStore::new(device);
    let model =
        WaveNet::new(&vs.root(), config.net).context("rebuilding the model from config.json")?;
    run.load_checkpoint(&vs, &args.checkpoint)?;
    tch::manual_seed(args.seed as i64);
    Ok(model.sample(&vocab, args.count, args.max_len))
}
