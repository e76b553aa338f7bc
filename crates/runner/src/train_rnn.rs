//! `rnnlab train --model rnn_tanh|rnn_relu|lstm|gru`: the coursework's speech
//! classifier on Speech Commands (or the synthetic set made on first use).
//!
//! The model's part of a run, [`RnnTask`], on the `train` engine: Adam and
//! cross-entropy, validation (loss and accuracy) every `--valid-every` steps
//! and after the last, and the test accuracy reported at the best validation
//! accuracy, each counted on its own split (the notebook adds the test counts
//! onto the validation counts). The default recipe reads each clip up to its
//! own last frame (padding ignored, see `models::lengths`); `--coursework`
//! reads the last step of the padded second, as the notebook does. The engine keeps the checkpoints, so
//! `--resume` continues exactly where the run stopped. A run may start from
//! an earlier run's weights (`--init-from`); on a small corpus the default
//! recipe's LSTM and GRU start from a run on synthetic voices that it makes
//! itself ([`crate::pretrain`]).

use crate::config::{RunConfig, RunSummary};
use crate::train::{ModelKind, TrainArgs};
use anyhow::{bail, ensure, Context};
use clap::ValueEnum;
use data::audio::TrimConfig;
use data::augment::wave::check_speeds;
use data::augment::SpecAugment;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::MfccConfig;
use data::speech_commands::{
    SpeechCommands, Split, DEFAULT_CACHE_DIR, DEFAULT_CLASSES, DEFAULT_ROOT as DEFAULT_DATA_DIR,
};
use data::synth::{generate, SynthConfig};
use models::{classifier, Engine, Mode, RnnConfig, SequenceClassifier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::nn;
use tch::{Device, Tensor};
use train::recipes::{SpeechRecipe, SPEECH_COURSEWORK, SPEECH_DEFAULT};
use train::{Eval, Goal, Optim, RunDir, RunStats, Schedule, Settings, Task};

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

/// Everything a recurrent-classifier run needs to be rebuilt: `config.json`
/// (under the model's name, see [`RunConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RnnRunConfig {
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
    /// Early stopping: end the run after this many validations without a
    /// better validation accuracy (off when none).
    #[serde(default)]
    pub patience: Option<usize>,
    /// The models read each clip up to its own last frame (the default
    /// recipe); the last step of the padded second when false (the notebook,
    /// and runs made before lengths were kept).
    #[serde(default)]
    pub lengths: bool,
    /// Leading and trailing silence trimmed from every clip before padding
    /// (`--trim-silence`); clips kept whole when none.
    #[serde(default)]
    pub trim_silence: Option<TrimConfig>,
    /// Speed perturbation: every training clip also played at each of these
    /// speeds, with its label (none when empty).
    #[serde(default)]
    pub speed_perturb: Vec<f64>,
    /// AdamW's decoupled weight decay (`--weight-decay`); plain Adam when none.
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Fine-tuning (`--init-from`): the run whose weights this one started
    /// from; PyTorch's default initialisation when none.
    #[serde(default)]
    pub init_from: Option<InitFrom>,
}

/// Where a fine-tuned run's first weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitFrom {
    /// The earlier run's folder, as given.
    pub run: PathBuf,
    /// Its checkpoint that was loaded (`best`).
    pub checkpoint: String,
    /// Made by the recipe's pretraining of a small corpus (`--pretrain
    /// auto`), rather than named with `--init-from`.
    #[serde(default)]
    pub by_recipe: bool,
}

/// `--init-from DIR`: the new run takes the earlier run's model shape and
/// its features (MFCC settings, silence trimming, and the standardisation
/// fitted on that run's training split, so the weights see inputs on the
/// scale they were trained on); data, rate, budget, seed and augmentation
/// stay the new run's own. A flag that would change the shape or the
/// features is refused rather than quietly overridden. Without `--lr` the
/// run fine-tunes at the recipe's fine-tuning rate. `by_recipe`: the run is
/// the recipe's pretraining (`--pretrain auto`), not one named with the flag.
fn start_from(
    cfg: &mut RnnRunConfig,
    args: &TrainArgs,
    dir: &Path,
    by_recipe: bool,
) -> anyhow::Result<()> {
    let flag = if by_recipe {
        format!("the pretrained run {}", dir.display())
    } else {
        format!("--init-from {}", dir.display())
    };
    ensure!(dir.is_dir(), "{flag}: no such run folder");
    let config = RunConfig::read(dir).with_context(|| flag.clone())?;
    let Some(src) = config.as_rnn() else {
        bail!(
            "{flag}: that run's model is {}, not a recurrent word classifier",
            config.kind().name()
        );
    };
    ensure!(
        config.kind() == args.model,
        "{flag}: that run trained --model {}, not {}",
        config.kind().name(),
        args.model.name()
    );
    ensure!(
        src.recipe == cfg.recipe,
        "{flag}: that run followed the {} recipe, this one the {} (--coursework must match)",
        src.recipe,
        cfg.recipe
    );
    ensure!(
        src.classes == cfg.classes,
        "{flag}: that run's classes are {:?}, this one's {:?}",
        src.classes,
        cfg.classes
    );
    let same = |name: &str, given: Option<String>, theirs: String| -> anyhow::Result<()> {
        match given {
            Some(v) if v != theirs => {
                bail!("{flag}: that run has {name} {theirs}, so {name} {v} cannot apply")
            }
            _ => Ok(()),
        }
    };
    same("--hidden", args.hidden.map(|h| h.to_string()), src.rnn.hidden_size.to_string())?;
    same("--layers", args.layers.map(|l| l.to_string()), src.rnn.num_layers.to_string())?;
    same("--n-mfcc", args.n_mfcc.map(|k| k.to_string()), src.mfcc.n_mfcc.to_string())?;
    ensure!(
        !args.bidir || src.bidirectional,
        "{flag}: that run is one-directional, so --bidir cannot apply"
    );
    ensure!(
        args.trim_silence.is_none() || cfg.trim_silence == src.trim_silence,
        "{flag}: that run's silence trimming is {:?}, so --trim-silence {} cannot apply",
        src.trim_silence.map(|t| t.top_db),
        args.trim_silence.unwrap_or_default()
    );
    ensure!(
        dir.join("best.safetensors").is_file(),
        "{flag}: the run has no best.safetensors (it never validated)"
    );
    cfg.bidirectional = src.bidirectional;
    cfg.rnn = src.rnn;
    cfg.mfcc = src.mfcc;
    cfg.trim_silence = src.trim_silence;
    cfg.standardizer = src.standardizer.clone();
    cfg.lengths = src.lengths;
    cfg.forget_bias = src.forget_bias;
    cfg.augment = cfg.augment.map(|_| SpecAugment::for_coefficients(cfg.mfcc.n_mfcc));
    cfg.init_from = Some(InitFrom { run: dir.to_path_buf(), checkpoint: "best".into(), by_recipe });
    if args.lr.is_none() {
        cfg.lr = recipe_of(args).fine_tune_lr_for(cfg.rnn.mode);
    }
    Ok(())
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
    let r = recipe_of(args);
    let hidden = args.hidden.unwrap_or(r.hidden_size);
    let layers = args.layers.unwrap_or(r.num_layers);
    let batch_size = args.batch_size.unwrap_or(r.batch_size);
    let mode = mode_of(args.model)?;
    let lr = args.lr.unwrap_or(r.lr_for(mode));
    let epochs = args.epochs.unwrap_or(r.epochs);
    let valid_every = args.valid_every.unwrap_or(r.valid_every);
    ensure!(hidden > 0, "--hidden must be positive, got {hidden}");
    ensure!(layers > 0, "--layers must be positive, got {layers}");
    ensure!(batch_size > 0, "--batch-size must be positive, got {batch_size}");
    ensure!(lr > 0.0 && lr.is_finite(), "--lr must be a positive number, got {lr}");
    ensure!(epochs > 0, "--epochs must be positive, got {epochs}");
    ensure!(valid_every > 0, "--valid-every must be positive, got {valid_every}");
    let clip = args.clip_grad_norm.or(r.clip_grad_norm).unwrap_or(f64::INFINITY);
    ensure!(clip > 0.0, "--clip-grad-norm must be positive (inf turns it off), got {clip}");
    ensure!(
        !(args.coursework && args.trim_silence.is_some()),
        "--trim-silence does not combine with --coursework (the notebook pads every clip, \
         silence included, to one second)"
    );
    if let Some(db) = args.trim_silence {
        ensure!(
            db > 0.0 && db.is_finite(),
            "--trim-silence takes a positive number of dB, got {db}"
        );
    }
    if let Some(w) = args.weight_decay {
        ensure!(w >= 0.0 && w.is_finite(), "--weight-decay must be 0 or positive, got {w}");
    }
    // without the flag the recipe decides once the corpus is read (`load_splits`)
    let speed_perturb = args.speed_perturb.as_ref().map_or_else(Vec::new, |s| s.0.clone());
    check_speeds(&speed_perturb, "--speed-perturb").map_err(anyhow::Error::msg)?;
    ensure!(
        !args.coursework || speed_perturb.is_empty(),
        "--speed-perturb does not combine with --coursework (the notebook trains on the clips as they are)"
    );
    let mut mfcc = if r.standardize { MfccConfig::default() } else { MfccConfig::coursework() };
    let k = args.n_mfcc.unwrap_or(r.n_mfcc);
    ensure!(
        (1..=mfcc.n_mels).contains(&k),
        "--n-mfcc must be between 1 and {} (the mel bands), got {k}",
        mfcc.n_mels
    );
    mfcc.n_mfcc = k;
    let classes: Vec<String> = DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect();
    Ok(RnnRunConfig {
        recipe: r.name.into(),
        bidirectional: args.bidir,
        engine: args.engine.into(),
        rnn: RnnConfig {
            mode,
            input_size: mfcc.n_mfcc as i64,
            hidden_size: hidden,
            num_layers: layers,
            bias: true,
            output_size: classes.len() as i64,
        },
        epochs,
        batch_size,
        lr,
        cosine: r.cosine,
        seed: args.seed,
        valid_every,
        data_dir: args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        classes,
        mfcc,
        standardizer: None,
        augment: (r.augment && !args.no_augment && mode.is_gated())
            .then(|| SpecAugment::for_coefficients(mfcc.n_mfcc)),
        clip_grad_norm: clip.is_finite().then_some(clip),
        forget_bias: r.forget_bias.filter(|_| !args.no_forget_bias && mode == Mode::Lstm),
        patience: args.patience,
        lengths: !args.coursework,
        trim_silence: args
            .trim_silence
            .map(|top_db| TrimConfig { top_db, ..TrimConfig::default() }),
        speed_perturb,
        weight_decay: args.weight_decay,
        init_from: None,
    })
}

/// The recipe of a run's flags: the notebook's with `--coursework`.
pub(crate) fn recipe_of(args: &TrainArgs) -> SpeechRecipe {
    if args.coursework {
        SPEECH_COURSEWORK
    } else {
        SPEECH_DEFAULT
    }
}

/// The synthetic set, made when the default folder holds no data set yet.
/// Runs started together (a local sweep's `--jobs`) take turns on a lock file
/// in the folder, so one of them makes the set and the others find it made,
/// instead of all writing the same staging folder at once.
fn ensure_default_data(dir: &Path) -> anyhow::Result<()> {
    if dir != Path::new(DEFAULT_DATA_DIR) || SpeechCommands::resolve_root(dir).is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = lock_exclusive(&dir.join(".synth.lock"))?;
    if SpeechCommands::resolve_root(dir).is_ok() {
        return Ok(());
    }
    eprintln!(
        "no data set in {}: synthesising one with espeak-ng (`rnnlab data synth`)",
        dir.display()
    );
    generate(dir, &SynthConfig::default()).context("making the synthetic data set")?;
    Ok(())
}

/// `path` opened (created if need be) and locked exclusively, waiting for
/// another process's lock to go; the lock goes when the file is dropped.
pub(crate) fn lock_exclusive(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for as long as `file` lives.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
    }
    Ok(file)
}

/// The run's feature extraction: its MFCC settings, one-second clips, and
/// its silence trimming.
pub fn feature_cache(cfg: &RnnRunConfig) -> anyhow::Result<data::cache::FeatureCache> {
    Ok(data::cache::FeatureCache::with_trim(
        DEFAULT_CACHE_DIR,
        cfg.mfcc,
        Some(data::audio::ONE_SECOND),
        cfg.trim_silence,
    )?)
}

/// The three splits' loaders on `device`, standardised with the train split's
/// statistics when the recipe asks (and those are fitted now if not yet).
pub struct Splits {
    train: DataLoader,
    /// Batches an epoch of the training clips alone (without speed copies).
    original_batches: usize,
    valid: DataLoader,
    test: DataLoader,
}

/// `recipe`: a new run without `--speed-perturb`, whose speed perturbation the
/// recipe chooses from the training split's size (and `config.json` records).
fn load_splits(
    cfg: &mut RnnRunConfig,
    recipe: Option<&SpeechRecipe>,
    device: Device,
) -> anyhow::Result<Splits> {
    ensure_default_data(&cfg.data_dir)?;
    let cache = Arc::new(feature_cache(cfg)?);
    let split = |s| SpeechCommands::with_cache(&cfg.data_dir, s, &cfg.classes, cache.clone());
    let (train, valid, test) =
        (split(Split::Train)?, split(Split::Validation)?, split(Split::Test)?);
    for ds in [&train, &valid, &test] {
        ensure!(!ds.is_empty(), "{}: the {} split is empty", ds.dir().display(), ds.split());
    }
    let train_clips = train.len();
    if let Some(r) = recipe {
        cfg.speed_perturb =
            r.speed_perturb_for(train_clips.div_ceil(cfg.batch_size as usize)).to_vec();
    }
    // the training clips, then each of them at every perturbed speed
    let mut train_f = train.features()?.to_vec();
    let mut train_y = train.labels();
    let paths: Vec<&Path> = train.items().iter().map(|(p, _)| p.as_path()).collect();
    for &factor in &cfg.speed_perturb {
        train_f.extend(cache.features_many_at_speed(&paths, factor)?);
        train_y.extend(train.labels());
    }
    if cfg.recipe != SPEECH_COURSEWORK.name && cfg.standardizer.is_none() {
        cfg.standardizer = Some(Standardizer::fit(&train_f));
    }
    let bs = cfg.batch_size as usize;
    let mut loaders = [
        DataLoader::from_features(&train_f, &train_y, bs, device)?.shuffle(cfg.seed),
        DataLoader::new(&valid, bs, device)?,
        DataLoader::new(&test, bs, device)?,
    ];
    if let Some(s) = &cfg.standardizer {
        loaders = loaders.map(|l| l.standardize(s));
    }
    let [train, valid, test] = loaders;
    let original_batches = train_clips.div_ceil(bs);
    Ok(Splits { train, original_batches, valid, test })
}

/// The validation scores of a recurrent classifier (`metrics.csv` columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RnnScores {
    pub valid_acc: f64,
    pub test_acc: f64,
}

impl train::Scores for RnnScores {
    const COLUMNS: &'static [&'static str] = &["valid_acc", "test_acc"];
}

/// `summary.json` of a recurrent-classifier run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RnnSummary {
    pub recipe: String,
    pub bidirectional: bool,
    pub engine: Engine,
    /// At the best validation accuracy ([`RunStats::best_step`]).
    pub best_valid_accuracy: f64,
    pub test_accuracy: f64,
    pub epochs: usize,
    #[serde(flatten)]
    pub stats: RunStats,
    pub device: String,
    pub train_clips: usize,
    pub valid_clips: usize,
    pub test_clips: usize,
}

/// The engine's settings for a recurrent-classifier run: Adam (AdamW with
/// `--weight-decay`), the recipe's cosine or constant rate, validation every
/// `valid_every` steps.
fn settings(cfg: &RnnRunConfig, steps_per_epoch: usize) -> Settings {
    let steps = (cfg.epochs * steps_per_epoch) as u64;
    Settings {
        seed: cfg.seed,
        steps,
        valid_every: cfg.valid_every as u64,
        optimizer: match cfg.weight_decay {
            Some(weight_decay) => {
                Optim::AdamW { betas: (0.9, 0.999), weight_decay, exempt_group: None }
            }
            None => Optim::adam(),
        },
        schedule: if cfg.cosine {
            Schedule::warmup_cosine(cfg.lr, 0, steps.max(1) as usize, 0.0)
        } else {
            Schedule::constant(cfg.lr)
        },
        clip_grad_norm: cfg.clip_grad_norm,
        patience: cfg.patience,
        log_every: steps_per_epoch.max(1) as u64,
        validate_at_start: cfg.init_from.is_some(),
    }
}

/// The classifier and its data, for the training engine.
pub struct RnnTask {
    vs: nn::VarStore,
    model: Box<dyn SequenceClassifier>,
    lengths: bool,
    splits: Splits,
    augment: Option<SpecAugment>,
    seed: u64,
    order: Option<Tensor>,
    eval_batch: i64,
}

impl RnnTask {
    fn new(cfg: &RnnRunConfig, splits: Splits, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let model = classifier(&vs.root(), cfg.rnn, cfg.bidirectional, cfg.engine, cfg.forget_bias);
        Self {
            vs,
            model,
            lengths: cfg.lengths,
            splits,
            augment: cfg.augment,
            seed: cfg.seed,
            order: None,
            eval_batch: 1000.max(cfg.batch_size),
        }
    }
}

impl Task for RnnTask {
    type Scores = RnnScores;

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        self.splits.train.len() as u64
    }

    fn begin_epoch(&mut self, epoch: u64) {
        self.order = self.splits.train.epoch_order(epoch);
    }

    fn train_loss(&mut self, step: u64, batch: u64) -> Tensor {
        let (x, y, lengths) =
            self.splits.train.batch_with_lengths(self.order.as_ref(), batch as usize);
        let x = match &self.augment {
            Some(aug) => aug.apply(&x, self.seed, step),
            None => x,
        };
        let lengths = self.lengths.then_some(&lengths);
        self.model.forward_lengths(&x, lengths, true).cross_entropy_for_logits(&y)
    }

    fn evaluate(&mut self) -> anyhow::Result<Eval<RnnScores>> {
        let (model, lengths) = (self.model.as_ref(), self.lengths);
        let (loss, valid_acc) =
            loss_and_accuracy(model, lengths, &self.splits.valid, self.eval_batch);
        let (_, test_acc) = loss_and_accuracy(model, lengths, &self.splits.test, self.eval_batch);
        Ok(Eval { loss, scores: RnnScores { valid_acc, test_acc } })
    }

    fn monitor(&self, eval: &Eval<RnnScores>) -> (f64, Goal) {
        (eval.scores.valid_acc, Goal::Maximize)
    }

    fn describe(&self, e: &Eval<RnnScores>) -> String {
        format!(
            "valid loss {:.4} valid {:.3} test {:.3}",
            e.loss, e.scores.valid_acc, e.scores.test_acc
        )
    }
}

/// Mean cross-entropy and accuracy of one split (see [`DataLoader::evaluate_with`]),
/// each clip read up to its own last frame when `lengths`.
pub fn loss_and_accuracy(
    model: &dyn SequenceClassifier,
    lengths: bool,
    loader: &DataLoader,
    batch: i64,
) -> (f64, f64) {
    let e =
        loader.evaluate_with(batch, |x, l| model.forward_lengths(x, lengths.then_some(l), false));
    (e.loss, e.accuracy())
}

pub fn train(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    let (run, mut cfg) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let config = RunConfig::read(dir)?;
            let Some(cfg) = config.as_rnn() else {
                bail!(
                    "{} is a {:?} run, not a recurrent classifier's",
                    dir.display(),
                    config.kind()
                );
            };
            let mut cfg = cfg.clone();
            // `--resume DIR --epochs N` extends a run to N epochs (the default
            // recipe's cosine schedule is then re-planned over N epochs).
            if let Some(epochs) = args.epochs {
                ensure!(epochs > 0, "--epochs must be positive, got {epochs}");
                cfg.epochs = epochs;
            }
            if let Some(p) = args.patience {
                cfg.patience = Some(p);
            }
            (run, cfg)
        }
        None => {
            let mut cfg = resolve(args)?;
            if let Some(dir) = &args.init_from {
                start_from(&mut cfg, args, dir, false)?;
            } else {
                ensure_default_data(&cfg.data_dir)?;
                let cache = Arc::new(feature_cache(&cfg)?);
                let train =
                    SpeechCommands::with_cache(&cfg.data_dir, Split::Train, &cfg.classes, cache)?;
                if let Some(dir) =
                    crate::pretrain::pretrained_run(&cfg, args, train.items(), device)?
                {
                    start_from(&mut cfg, args, &dir, true)?;
                }
            }
            // The model's name as on the command line: `gru`, `rnn_tanh`, `bilstm`.
            let name =
                format!("{}{}", if cfg.bidirectional { "bi" } else { "" }, args.model.name());
            (RunDir::create(args.out.as_deref(), &name)?, cfg)
        }
    };
    let kind = match &args.resume {
        Some(dir) => RunConfig::read(dir)?.kind(),
        None => args.model,
    };
    let recipe = recipe_of(args);
    let auto_speeds = args.resume.is_none() && args.speed_perturb.is_none();
    let splits = load_splits(&mut cfg, auto_speeds.then_some(&recipe), device)?;
    if args.resume.is_none() && args.epochs.is_none() {
        // the recipe's budget has a floor in steps for each version of the
        // split (the clips, then each speed's copies): a small corpus trains longer
        cfg.epochs = recipe.epochs_with_copies(
            splits.original_batches,
            splits.train.len(),
            cfg.speed_perturb.len(),
        );
    }
    run.write_json("config.json", &RunConfig::rnn(kind, cfg.clone()))?;

    // One intra-op thread by default: the matrices are small (batch x 4H at
    // most 100 x 512), and a second OpenMP thread costs more in hand-off than
    // it saves. `--threads` overrides.
    train::init(cfg.seed, args.threads.unwrap_or(1), device);
    let settings = settings(&cfg, splits.train.len());
    let clips = (splits.train.num_samples(), splits.valid.num_samples(), splits.test.num_samples());
    let mut task = RnnTask::new(&cfg, splits, device);
    if let (Some(init), None) = (&cfg.init_from, &args.resume) {
        // a resumed run's own checkpoint takes over in `fit` instead
        RunDir::open(&init.run)?
            .load_checkpoint(&task.vs, &init.checkpoint)
            .with_context(|| format!("--init-from {}", init.run.display()))?;
    }
    let st = train::fit(&mut task, &run, &settings, args.resume.is_some())?;

    let best = st.best.as_ref().context("the run never validated")?;
    let summary = RnnSummary {
        recipe: cfg.recipe.clone(),
        bidirectional: cfg.bidirectional,
        engine: cfg.engine,
        best_valid_accuracy: best.eval.scores.valid_acc,
        test_accuracy: best.eval.scores.test_acc,
        epochs: cfg.epochs,
        stats: st.stats(),
        device: format!("{device:?}"),
        train_clips: clips.0,
        valid_clips: clips.1,
        test_clips: clips.2,
    };
    run.write_json("summary.json", &RunSummary::rnn(kind, summary))?;
    println!(
        "{}: best validation accuracy {:.4} at step {}, test accuracy there {:.4} ({} steps{}, {:.1} s)",
        run.path().display(),
        best.eval.scores.valid_acc,
        best.step,
        best.eval.scores.test_acc,
        st.step,
        if st.stopped_early { ", stopped early" } else { "" },
        st.train_seconds
    );
    Ok(())
}

/// `rnnlab eval --run DIR`: re-scores a checkpoint on a split, of the run's own
/// data set or of another corpus (`--data-dir`).
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The run folder (from `rnnlab train`).
    #[arg(long)]
    pub run: PathBuf,
    /// Which split to score (default: test; `all` for a corpus without split
    /// lists, and every clip of it).
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Which checkpoint: `best` (at the best validation accuracy) or `last`.
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
    /// Score another corpus in the Speech Commands layout (class folders of
    /// WAVs, `validation_list.txt` and `testing_list.txt` optional) through
    /// the run's own feature settings.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitArg {
    Train,
    Validation,
    Test,
    /// Every clip of the requested classes (a corpus without lists).
    All,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Validation => Split::Validation,
            SplitArg::Test => Split::Test,
            SplitArg::All => Split::All,
        }
    }
}

/// A trained recurrent classifier: its run config, and the model with the
/// weights of `checkpoint` (`best` or `last`).
pub struct Trained {
    pub cfg: RnnRunConfig,
    pub model: Box<dyn SequenceClassifier>,
    _vs: nn::VarStore,
}

impl Trained {
    pub fn load(dir: &Path, checkpoint: &str, device: Device) -> anyhow::Result<Self> {
        ensure!(dir.is_dir(), "run folder {} does not exist", dir.display());
        let run = RunDir::open(dir)?;
        let config = RunConfig::read(dir)?;
        let Some(cfg) = config.as_rnn() else {
            bail!(
                "{}: this run's model is {:?}, not a recurrent word classifier (lstm, gru, \
                 rnn_tanh, rnn_relu)",
                dir.display(),
                config.kind()
            );
        };
        let vs = nn::VarStore::new(device);
        let model = classifier(&vs.root(), cfg.rnn, cfg.bidirectional, cfg.engine, cfg.forget_bias);
        run.load_checkpoint(&vs, checkpoint)?;
        Ok(Self { cfg: cfg.clone(), model, _vs: vs })
    }

    /// Batches of `loader` read as the run reads them (to each clip's own
    /// last frame when the run keeps lengths).
    pub fn logits(&self, x: &Tensor, lengths: &Tensor) -> Tensor {
        self.model.forward_lengths(x, self.cfg.lengths.then_some(lengths), false)
    }

    /// `loader` standardised as the run was trained, when it standardises.
    pub fn prepare(&self, loader: DataLoader) -> DataLoader {
        match &self.cfg.standardizer {
            Some(s) => loader.standardize(s),
            None => loader,
        }
    }
}

pub fn eval(args: &EvalArgs, device: Device) -> anyhow::Result<()> {
    let trained = Trained::load(&args.run, &args.checkpoint, device)?;
    let mut cfg = trained.cfg.clone();
    let (loader, split) = match &args.data_dir {
        None => {
            let split = args.split.unwrap_or(SplitArg::Test);
            ensure!(
                split != SplitArg::All,
                "--split all scores a corpus given with --data-dir (one without split lists)"
            );
            // the clips themselves: a train split is scored without speed copies
            cfg.speed_perturb.clear();
            let splits = load_splits(&mut cfg, None, device)?;
            let loader = match split {
                SplitArg::Train => splits.train,
                SplitArg::Validation => splits.valid,
                _ => splits.test,
            };
            (loader, Split::from(split))
        }
        Some(dir) => {
            let cache = Arc::new(feature_cache(&cfg)?);
            let has_lists = SpeechCommands::resolve_root(dir).is_ok();
            let split = args.split.map(Split::from).unwrap_or(if has_lists {
                Split::Test
            } else {
                Split::All
            });
            let ds = match split {
                Split::All => SpeechCommands::all(dir, &cfg.classes, cache)?,
                s => {
                    ensure!(
                        has_lists,
                        "--data-dir {}: no {} or {} to take the {s} split from; score every \
                         clip with --split all (the default for such a corpus)",
                        dir.display(),
                        data::speech_commands::VALIDATION_LIST,
                        data::speech_commands::TESTING_LIST
                    );
                    SpeechCommands::with_cache(dir, s, &cfg.classes, cache)?
                }
            };
            ensure!(!ds.is_empty(), "{}: the {split} split is empty", ds.dir().display());
            (trained.prepare(DataLoader::new(&ds, 1000, device)?), split)
        }
    };
    let e = loader.evaluate_with(1000, |x, l| trained.logits(x, l));
    println!(
        "{} {split} loss {:.6}; accuracy ({} checkpoint, {} clips): {:.6}",
        args.run.display(),
        e.loss,
        args.checkpoint,
        loader.num_samples(),
        e.accuracy()
    );
    Ok(())
}
