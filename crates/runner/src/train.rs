//! `rnnlab train --model ...`: one command for every model; each model's
//! module reads the flags that apply to it and gives its task to the `train`
//! engine, which owns the loop, checkpoints, `--resume` and early stopping.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use tch::Device;

/// The models `rnnlab train` knows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Elman RNN with tanh (the coursework's RNN_TANH).
    #[value(name = "rnn_tanh")]
    RnnTanh,
    /// Elman RNN with ReLU (RNN_RELU).
    #[value(name = "rnn_relu")]
    RnnRelu,
    Lstm,
    Gru,
    /// makemore part 5: the WaveNet-style hierarchical MLP on names.
    Wavenet,
    /// The speaker-clustering BiLSTM with a proxy loss.
    Speaker,
}

impl ModelKind {
    /// The model's name as on the command line (`gru`, `rnn_tanh`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Flags of `rnnlab train`. Flags left out take the chosen model's defaults.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Which model to train.
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Output folder (default `results/<model>-<timestamp>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint
    /// (`last.safetensors`: model, optimiser and loop state).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Early stopping: end the run after N validations without improvement
    /// of the model's validation metric, and keep the best weights (off by default).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Recurrent classifiers: fine-tune, starting from the best weights of
    /// this earlier run (PyTorch's `model.load_state_dict(torch.load(...))`
    /// before training), e.g. one trained on many synthetic voices of the same
    /// words. The new run takes that run's model shape and features (MFCC
    /// settings, trimming, standardisation); data, budget and seed are its
    /// own, and the default recipe then fine-tunes at 0.001.
    #[arg(long, value_name = "RUN", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Recurrent classifiers: `auto` (the default) pretrains the default
    /// recipe's LSTM or GRU on a small corpus (one whose 5 epochs fall short
    /// of 450 steps): first on many synthetic voices of the same words, made
    /// in the corpus's sample rate and clip length (and, for a synthetic
    /// corpus, none of its validation and test voices), then fine-tuned on
    /// the corpus as with --init-from. Made once under data/pretrain/ and
    /// reused; needs espeak-ng. `none` trains from scratch.
    #[arg(long, value_enum, conflicts_with = "init_from")]
    pub pretrain: Option<crate::pretrain::PretrainArg>,
    /// Recurrent classifiers: clips per word of the synthetic set that
    /// `--pretrain auto` makes (default recipe: 2500).
    #[arg(long, value_name = "N")]
    pub pretrain_clips: Option<usize>,
    /// Random seed: the same seed on CPU gives the same metrics.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data folder (model default when left out).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Mini-batch size.
    #[arg(long)]
    pub batch_size: Option<i64>,
    /// Learning rate; default: the recipe's (speech commands: 0.004, the tanh
    /// RNN 0.002, fine-tuning with --init-from 0.001, --coursework 0.01).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Passes over the training set.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Optimisation steps (models trained by steps, e.g. wavenet).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Recurrent classifiers: also run a reverse stack (`make train MODEL=bigru`).
    #[arg(long)]
    pub bidir: bool,
    /// Recurrent classifiers: hand-written cells or libtorch's fused kernels.
    #[arg(long, value_enum, default_value_t = crate::train_rnn::EngineArg::Custom)]
    pub engine: crate::train_rnn::EngineArg,
    /// Validate every N steps, and after the last (default: recurrent
    /// classifiers 25 (coursework 20), speaker one epoch, wavenet a twentieth of the run).
    #[arg(long)]
    pub valid_every: Option<usize>,
    /// Recurrent classifiers: the notebook's exact settings (raw int16 scale,
    /// hidden 32, 2 layers, lr 0.01, batch 100, 5 epochs, validation every 20 steps).
    #[arg(long)]
    pub coursework: bool,
    /// LSTM and GRU: train without the default recipe's SpecAugment masks (up
    /// to 4 MFCC coefficients and 6 frames hidden per clip).
    #[arg(long)]
    pub no_augment: bool,
    /// Recurrent classifiers: clip the gradients' total 2-norm to this before
    /// every step, as `torch.nn.utils.clip_grad_norm_` (default recipe: 1;
    /// `inf` turns it off).
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Recurrent classifiers: decoupled weight decay, `torch.optim.AdamW`'s
    /// `weight_decay` (default: none, plain Adam).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Recurrent classifiers: MFCCs per frame fed to the model, the first K
    /// (librosa's `n_mfcc`; the default recipe's 10, the coursework's 20).
    /// Fewer keep the spectral envelope's broad shape, which carries the
    /// word, and drop the fine detail that differs most between voices.
    #[arg(long, value_name = "K")]
    pub n_mfcc: Option<usize>,
    /// LSTM: keep PyTorch's uniform initial forget-gate bias instead of the
    /// default recipe's 1.
    #[arg(long)]
    pub no_forget_bias: bool,
    /// Recurrent classifiers: trim each clip's leading and trailing silence
    /// before padding it to one second (librosa's `effects.trim`: frames DB
    /// decibels or more below the loudest one are silent; DB is 60 when left
    /// out); not with --coursework.
    #[arg(long, value_name = "DB", num_args = 0..=1, default_missing_value = "60")]
    pub trim_silence: Option<f64>,
    /// Hidden size.
    #[arg(long)]
    pub hidden: Option<i64>,
    /// Stacked recurrent layers.
    #[arg(long)]
    pub layers: Option<i64>,
    /// Embedding size per character (wavenet: 24).
    #[arg(long, allow_negative_numbers = true)]
    pub embd: Option<i64>,
    /// Named recipe: wavenet `lecture` (default) or `tuned`; speaker
    /// `default` or `lab` (the lab's proxy loss).
    #[arg(long, value_parser = ["lecture", "tuned", "default", "lab"])]
    pub recipe: Option<String>,
    /// Intra-op CPU threads (default: the model's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Whole speakers kept out of training (speaker); their embeddings are clustered.
    #[arg(long)]
    pub holdout_speakers: Option<usize>,
    /// Whole speakers kept out of training to choose the best checkpoint on
    /// (speaker; default recipe 4, lab 0).
    #[arg(long)]
    pub val_speakers: Option<usize>,
    /// Speaker, cosine head: the AM-softmax scale (default recipe 30).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Speaker, cosine head: the AM-softmax additive margin (default recipe 0.2).
    #[arg(long)]
    pub margin: Option<f64>,
    /// Speaker: width of the embedding's projection (default recipe 128; 0: none).
    #[arg(long)]
    pub embedding: Option<i64>,
    /// Speaker: dropout on the pooled vector while training (default recipe 0).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Recurrent classifiers: speeds at which every training clip is played
    /// again, same label (speed perturbation), e.g. `0.9,1.1`; `none` for none
    /// (default: the recipe's). Without `--epochs`, the default recipe's floor
    /// of 450 steps counts each speed's copies too.
    #[arg(long, value_parser = parse_speeds)]
    pub speed_perturb: Option<Speeds>,
    /// Speaker: speeds at which every training utterance is played again, each
    /// speed's copies counted as new speakers (speaker augmentation), e.g.
    /// `0.9,1.1`; `none` for none (default: the recipe's).
    #[arg(long, value_parser = parse_speeds)]
    pub speed_speakers: Option<Speeds>,
    /// Epochs between learning-rate decays, StepLR (speaker: 20).
    #[arg(long)]
    pub step_size: Option<usize>,
    /// Learning-rate decay factor of StepLR (speaker: 0.5).
    #[arg(long)]
    pub gamma: Option<f64>,
}

impl TrainArgs {
    /// The flags of `rnnlab train --model <model>` and nothing else: every
    /// other flag at its default, as the command line would leave it.
    pub fn for_model(model: ModelKind) -> TrainArgs {
        #[derive(clap::Parser)]
        struct Train {
            #[command(flatten)]
            args: TrainArgs,
        }
        let name = model.name();
        <Train as clap::Parser>::try_parse_from(["train", "--model", name.as_str()])
            .expect("`--model` alone parses")
            .args
    }
}

/// `--speed-speakers`: speeds, comma-separated, or `none`.
#[derive(Debug, Clone, PartialEq)]
pub struct Speeds(pub Vec<f64>);

fn parse_speeds(s: &str) -> Result<Speeds, String> {
    if s.trim() == "none" {
        return Ok(Speeds(Vec::new()));
    }
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("`{v}` is not a number (speeds such as 0.9,1.1, or none)"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Speeds)
}

/// Which models a flag applies to.
#[derive(Clone, Copy, PartialEq)]
enum Applies {
    Rnn,
    Speaker,
    Wavenet,
}

/// The flags that only some models read, and whether each was given: a flag
/// the chosen model would ignore is an error instead.
fn model_flags(args: &TrainArgs) -> Vec<(&'static str, bool, &'static [Applies])> {
    use Applies::*;
    vec![
        ("--bidir", args.bidir, &[Rnn]),
        ("--init-from", args.init_from.is_some(), &[Rnn]),
        ("--pretrain", args.pretrain.is_some(), &[Rnn]),
        ("--pretrain-clips", args.pretrain_clips.is_some(), &[Rnn]),
        ("--coursework", args.coursework, &[Rnn]),
        ("--no-augment", args.no_augment, &[Rnn]),
        ("--speed-perturb", args.speed_perturb.is_some(), &[Rnn]),
        ("--weight-decay", args.weight_decay.is_some(), &[Rnn]),
        ("--n-mfcc", args.n_mfcc.is_some(), &[Rnn]),
        ("--no-forget-bias", args.no_forget_bias, &[Rnn]),
        ("--trim-silence", args.trim_silence.is_some(), &[Rnn]),
        ("--clip-grad-norm", args.clip_grad_norm.is_some(), &[Rnn]),
        ("--epochs", args.epochs.is_some(), &[Rnn, Speaker]),
        ("--steps", args.steps.is_some(), &[Wavenet]),
        ("--layers", args.layers.is_some(), &[Rnn, Speaker]),
        ("--embd", args.embd.is_some(), &[Wavenet]),
        ("--recipe", args.recipe.is_some(), &[Wavenet, Speaker]),
        ("--val-speakers", args.val_speakers.is_some(), &[Speaker]),
        ("--scale", args.scale.is_some(), &[Speaker]),
        ("--margin", args.margin.is_some(), &[Speaker]),
        ("--embedding", args.embedding.is_some(), &[Speaker]),
        ("--dropout", args.dropout.is_some(), &[Speaker]),
        ("--holdout-speakers", args.holdout_speakers.is_some(), &[Speaker]),
        ("--step-size", args.step_size.is_some(), &[Speaker]),
        ("--speed-speakers", args.speed_speakers.is_some(), &[Speaker]),
        ("--gamma", args.gamma.is_some(), &[Speaker]),
    ]
}

/// With `--resume`, the run's own config decides; these flags may change it.
const RESUME_FLAGS: &str = "--epochs (or --steps for wavenet), --patience and --threads";

pub fn run(args: &TrainArgs, device: Device) -> anyhow::Result<()> {
    let kind = match args.model {
        ModelKind::Wavenet => Applies::Wavenet,
        ModelKind::Speaker => Applies::Speaker,
        _ => Applies::Rnn,
    };
    for (flag, given, applies) in model_flags(args) {
        if given && !applies.contains(&kind) {
            anyhow::bail!("{flag} does not apply to --model {}", args.model.name());
        }
    }
    if args.resume.is_some() {
        let changed = [
            ("--data-dir", args.data_dir.is_some()),
            ("--batch-size", args.batch_size.is_some()),
            ("--lr", args.lr.is_some()),
            ("--hidden", args.hidden.is_some()),
            ("--valid-every", args.valid_every.is_some()),
        ]
        .into_iter()
        .chain(model_flags(args).into_iter().map(|(f, g, _)| (f, g)))
        .find(|(f, given)| *given && !["--epochs", "--steps"].contains(f));
        if let Some((flag, _)) = changed {
            anyhow::bail!(
                "{flag} cannot change a resumed run (it keeps its config.json); with --resume \
                 only {RESUME_FLAGS} apply"
            );
        }
    }
    match args.model {
        ModelKind::Wavenet => crate::wavenet::train(args, device),
        ModelKind::Speaker => crate::speaker::train(args, device),
        ModelKind::RnnTanh | ModelKind::RnnRelu | ModelKind::Lstm | ModelKind::Gru => {
            crate::train_rnn::train(args, device)
        }
    }
}
