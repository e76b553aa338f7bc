//! `--pretrain auto`: the default recipe's pretraining of a small corpus.
//!
//! A corpus of a few voices cannot teach the accents it never speaks, and a
//! synthesiser can speak the same words in many more. So the LSTM and the
//! GRU of the default recipe, on a small corpus, first train on a synthetic
//! set made in the corpus's own conditions (the sample rate of its training
//! clips and the length of the longest), and the corpus's run then
//! fine-tunes from that run's best weights, as `--init-from` does. When the
//! corpus is itself synthetic (it has a `synth.json`), the set speaks none of
//! its validation and test voices, so the clips that choose and score the
//! run stay unheard.
//!
//! The set and the run are made once for each set of conditions and model,
//! under `data/pretrain/<conditions>/`, and later runs find them there. Runs
//! started together (a sweep's `--jobs`) take turns on a lock, and a
//! pretraining run that did not finish is made again.

use crate::train::TrainArgs;
use crate::train_rnn::{lock_exclusive, RnnRunConfig};
use anyhow::{ensure, Context};
use clap::ValueEnum;
use data::synth::{generate, read_summary, Conditions, SynthConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// Where the synthetic sets and their runs are kept (relative to the
/// working folder, as `data/speech_commands`).
pub const DEFAULT_ROOT: &str = "data/pretrain";

/// `--pretrain`: whether a run starts from weights trained on synthetic voices.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PretrainArg {
    /// Where the recipe does: the default recipe's LSTM and GRU on a small corpus.
    Auto,
    /// From PyTorch's initialisation.
    None,
}

/// The synthetic set a corpus is pretrained on.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The rate most of the corpus's training clips have.
    pub sample_rate: u32,
    /// The longest training clip, rounded up to a tenth of a second; `None`
    /// for clips of a second or more (spoken into one-second clips).
    pub max_seconds: Option<f64>,
    pub per_class: usize,
    /// The corpus's validation and test voices, when it is synthetic.
    pub exclude_voices: Vec<String>,
}

impl Plan {
    /// The plan for the corpus in `data_dir`, whose training clips are
    /// `train` (their headers give the rate and the length).
    pub fn for_corpus(
        data_dir: &Path,
        train: &[(PathBuf, i64)],
        per_class: usize,
    ) -> anyhow::Result<Plan> {
        let mut rates = BTreeMap::<u32, usize>::new();
        let mut longest = 0f64;
        for (path, _) in train {
            let (rate, seconds) = data::audio::wav_info(path)?;
            *rates.entry(rate).or_default() += 1;
            longest = longest.max(seconds);
        }
        // the most common rate; of equally common ones the highest
        let sample_rate = rates
            .iter()
            .max_by_key(|&(rate, n)| (*n, *rate))
            .map(|(rate, _)| *rate)
            .context("no training clips")?;
        let tenths = (longest * 10.0 - 1e-6).ceil() / 10.0;
        let max_seconds = (tenths < 1.0).then_some(tenths.max(data::synth::MIN_CLIP_SECONDS));
        let exclude_voices =
            read_summary(data_dir)?.map(|s| s.held_out_voices()).unwrap_or_default();
        Ok(Plan { sample_rate, max_seconds, per_class, exclude_voices })
    }

    /// The folder of the set and its runs: `8000hz-0.8s-2500clips`, then a
    /// hash of the voices left out. Every setting of the set is in the name,
    /// so a set made under other settings is never taken for this one.
    pub fn key(&self) -> String {
        let mut key = match self.max_seconds {
            Some(s) => format!("{}hz-{s:.1}s", self.sample_rate),
            None => format!("{}hz-1s", self.sample_rate),
        };
        key += &format!("-{}clips", self.per_class);
        if !self.exclude_voices.is_empty() {
            // FNV-1a: stable across builds, unlike std's hasher
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.exclude_voices.join(",").bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            key += &format!("-x{:08x}", h as u32);
        }
        key
    }

    /// `rnnlab data synth`'s default set in these conditions.
    pub fn synth_config(&self) -> SynthConfig {
        SynthConfig {
            per_class: self.per_class,
            exclude_voices: self.exclude_voices.clone(),
            conditions: Conditions {
                max_seconds: self.max_seconds,
                sample_rate: self.sample_rate,
                ..Conditions::default()
            },
            ..SynthConfig::default()
        }
    }
}

/// The model's part of a pretrained run's folder name: everything that
/// fixes its shape and features (`gru-h128-l2-k10`, `bilstm-...-trim60`).
fn model_key(cfg: &RnnRunConfig, args: &TrainArgs) -> String {
    let mut key = format!(
        "{}{}-h{}-l{}-k{}",
        if cfg.bidirectional { "bi" } else { "" },
        args.model.name(),
        cfg.rnn.hidden_size,
        cfg.rnn.num_layers,
        cfg.mfcc.n_mfcc
    );
    if let Some(t) = cfg.trim_silence {
        key += &format!("-trim{}", t.top_db);
    }
    if args.no_forget_bias {
        key += "-nofb";
    }
    if cfg.engine == models::Engine::Fused {
        key += "-fused";
    }
    key
}

/// The pretrained run a new run on `cfg`'s corpus starts from, made (set and
/// run) if not made yet; `None` where the recipe does not pretrain or
/// `--pretrain none` says not to. `train` are the corpus's training clips.
pub fn pretrained_run(
    cfg: &RnnRunConfig,
    args: &TrainArgs,
    train: &[(PathBuf, i64)],
    device: Device,
) -> anyhow::Result<Option<PathBuf>> {
    let recipe = crate::train_rnn::recipe_of(args);
    let asked = args.pretrain;
    ensure!(
        !(args.coursework && asked == Some(PretrainArg::Auto)),
        "--pretrain auto does not combine with --coursework (the notebook trains from scratch)"
    );
    let off = asked == Some(PretrainArg::None) || args.coursework;
    ensure!(
        args.pretrain_clips.is_none() || !off,
        "--pretrain-clips sizes the synthetic set of --pretrain auto, which this run does not make"
    );
    let batches = train.len().div_ceil(cfg.batch_size as usize);
    let Some(recipe_clips) =
        recipe.pretrain_clips.filter(|_| !off && recipe.pretrains(cfg.rnn.mode, batches))
    else {
        return Ok(None);
    };
    let per_class = args.pretrain_clips.unwrap_or(recipe_clips);
    ensure!(per_class >= 10, "--pretrain-clips must be at least 10, got {per_class}");
    let plan = Plan::for_corpus(&cfg.data_dir, train, per_class)?;
    let dir = Path::new(DEFAULT_ROOT).join(plan.key());
    let (set, run) = (dir.join("set"), dir.join(model_key(cfg, args)));
    eprintln!(
        "a small corpus ({} training clips): the recipe pretrains on synthetic voices first, \
         {run} (--pretrain none trains from scratch)",
        train.len(),
        run = run.display()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = lock_exclusive(&dir.join(".lock"))?;
    // a set whose manifest cannot be read is made again (`generate` replaces it)
    match read_summary(&set).ok().flatten() {
        // a folder copied or edited by hand would otherwise be trusted
        Some(found) => ensure!(
            found.config == plan.synth_config(),
            "{}: this pretraining set was made with other settings than the run asks for \
             (its synth.json); remove the folder to make it again",
            set.display()
        ),
        None => {
            eprintln!("synthesising the pretraining set {} (espeak-ng)", set.display());
            generate(&set, &plan.synth_config()).with_context(|| {
                format!(
                    "making the pretraining set {} (needs espeak-ng: `make setup`; or train \
                     from scratch with --pretrain none)",
                    set.display()
                )
            })?;
        }
    }
    if !run.join("summary.json").is_file() {
        if run.exists() {
            // a run that did not finish: made again, from the start
            std::fs::remove_dir_all(&run).with_context(|| format!("removing {}", run.display()))?;
        }
        eprintln!("pretraining {} on {}", args.model.name(), set.display());
        crate::train_rnn::train(&pretraining_args(args, &set, &run), device)
            .with_context(|| format!("pretraining {}", run.display()))?;
    }
    Ok(Some(run))
}

/// The pretraining run's flags: the corpus run's model shape and features
/// (model, `--bidir`, `--hidden`, `--layers`, `--n-mfcc`, `--trim-silence`,
/// `--no-forget-bias`, `--engine`), everything else the recipe's own, seed 0.
fn pretraining_args(args: &TrainArgs, set: &Path, run: &Path) -> TrainArgs {
    TrainArgs {
        model: args.model,
        bidir: args.bidir,
        hidden: args.hidden,
        layers: args.layers,
        n_mfcc: args.n_mfcc,
        trim_silence: args.trim_silence,
        no_forget_bias: args.no_forget_bias,
        engine: args.engine,
        threads: args.threads,
        data_dir: Some(set.to_path_buf()),
        out: Some(run.to_path_buf()),
        pretrain: Some(PretrainArg::None),
        ..TrainArgs::for_model(args.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::audio::write_wav_i16;

    /// A corpus in the Speech Commands layout with clips of these rates and
    /// lengths (seconds), and the plan for it.
    fn plan_of(name: &str, clips: &[(u32, f64)]) -> Plan {
        let dir = std::env::temp_dir().join(format!("rnnlab-plan-{name}-{}", std::process::id()));
        let root = dir.join(data::speech_commands::DATASET_DIR);
        std::fs::create_dir_all(root.join("one")).unwrap();
        for list in [data::speech_commands::VALIDATION_LIST, data::speech_commands::TESTING_LIST] {
            std::fs::write(root.join(list), "").unwrap();
        }
        let mut train = Vec::new();
        for (i, &(rate, seconds)) in clips.iter().enumerate() {
            let path = root.join(format!("one/s{i}_nohash_0.wav"));
            let n = (rate as f64 * seconds).round() as usize;
            write_wav_i16(&path, &vec![0.1; n], rate).unwrap();
            train.push((path, 0));
        }
        let plan = Plan::for_corpus(&dir, &train, 2500).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        plan
    }

    /// The rate most clips have, the longest clip rounded up to a tenth of a
    /// second (one-second clips past 1 s), no voices left out of a corpus
    /// that was not synthesised.
    #[test]
    fn the_set_takes_the_corpus_conditions() {
        let p = plan_of("short", &[(8000, 0.31), (8000, 0.6), (16000, 0.72), (8000, 0.52)]);
        assert_eq!((p.sample_rate, p.max_seconds), (8000, Some(0.8)));
        assert!(p.exclude_voices.is_empty());
        assert_eq!(p.key(), "8000hz-0.8s-2500clips");
        let exact = plan_of("exact", &[(16000, 0.6), (16000, 0.4)]);
        assert_eq!((exact.sample_rate, exact.max_seconds), (16000, Some(0.6)));
        let tiny = plan_of("tiny", &[(8000, 0.2)]);
        assert_eq!(tiny.max_seconds, Some(data::synth::MIN_CLIP_SECONDS));
        let long = plan_of("long", &[(22050, 1.0), (22050, 1.4)]);
        assert_eq!((long.key().as_str(), long.max_seconds), ("22050hz-1s-2500clips", None));
        let cfg = long.synth_config();
        assert_eq!((cfg.conditions.sample_rate, cfg.conditions.max_seconds), (22050, None));
    }

    /// The folder names every choice that changes the set.
    #[test]
    fn the_key_names_size_and_left_out_voices() {
        let base = Plan {
            sample_rate: 8000,
            max_seconds: Some(0.6),
            per_class: 2500,
            exclude_voices: Vec::new(),
        };
        let some = Plan { exclude_voices: vec!["f3".into(), "m1".into()], ..base.clone() };
        let other = Plan { exclude_voices: vec!["f3".into(), "m2".into()], ..base.clone() };
        let fewer = Plan { per_class: 300, ..base.clone() };
        assert_eq!(fewer.key(), "8000hz-0.6s-300clips");
        assert!(some.key().starts_with("8000hz-0.6s-2500clips-x") && some.key().len() == 31);
        assert_ne!(some.key(), other.key());
        assert_eq!(some.key(), some.clone().key());
        assert_eq!(some.synth_config().exclude_voices, some.exclude_voices);
    }
}
