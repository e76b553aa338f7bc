//! `rnnlab data download|synth|speakers`: get Speech Commands, the real archive or a
//! synthetic stand-in spoken by espeak-ng, flite and festival, into the notebook's layout,
//! and make a synthetic speaker corpus.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use data::download::{self, OFFICIAL_URL};
use data::speakers::{self, generate_speakers, SpeakerSynthConfig};
use data::speech_commands::{DEFAULT_CLASSES, DEFAULT_ROOT};
use data::synth::{self, Conditions, Engine, SynthConfig, DEFAULT_PER_CLASS};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Fetch speech_commands_v0.02.tar.gz (resuming a partial download) and extract the
    /// requested classes and the split lists into DEST/data_speech_commands_v0.02/.
    Download(DownloadArgs),
    /// Write a synthetic dataset in the Speech Commands layout, spoken by espeak-ng or
    /// by the engines of --engines (espeak, flite, festival).
    Synth(SynthArgs),
    /// Write a synthetic speaker corpus (one folder per speaker) for the speaker model.
    #[command(alias = "synth-speakers")]
    Speakers(SpeakersArgs),
}

fn default_classes() -> Vec<String> {
    DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect()
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Folder to hold the archive and data_speech_commands_v0.02/.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub dest: PathBuf,
    /// Where to fetch the archive from.
    #[arg(long, default_value = OFFICIAL_URL)]
    pub url: String,
    /// Classes to extract, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = default_classes())]
    pub classes: Vec<String>,
    /// Expected archive size in bytes (checked besides the server's announced size).
    #[arg(long)]
    pub size: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Flags shared by both synthesis commands: engines, clip length, rate, copies.
#[derive(Args, Debug, Clone)]
pub struct ConditionArgs {
    /// Speech engines, comma-separated (espeak, flite, festival); default: espeak, the
    /// set the published figures were measured on. The same seed and engines write
    /// the same files.
    #[arg(long, value_delimiter = ',')]
    pub engines: Option<Vec<Engine>>,
    /// Longest clip in seconds (at least 0.3): longer words are spoken faster, clips are
    /// the word plus a random margin. Default: one-second clips (speakers: as spoken).
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Sample rate of the written WAV files (the loaders resample on reading).
    #[arg(long, default_value_t = 16_000)]
    pub sample_rate: u32,
    /// Augmented copies of every training clip (reverberation, noise, speed, pitch,
    /// shift, gain; seeded), written into the training split.
    #[arg(long, default_value_t = 0)]
    pub augment: usize,
    /// Also write a telephone-band (300-3400 Hz) copy of every training clip.
    #[arg(long)]
    pub telephone: bool,
}

impl ConditionArgs {
    fn engines(&self) -> Vec<Engine> {
        self.engines.clone().unwrap_or_else(|| vec![Engine::Espeak])
    }

    fn conditions(&self) -> Conditions {
        Conditions {
            max_seconds: self.max_seconds,
            sample_rate: self.sample_rate,
            augment: self.augment,
            telephone: self.telephone,
            ..Conditions::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Folder to hold data_speech_commands_v0.02/.
    #[arg(long, alias = "root", default_value = DEFAULT_ROOT)]
    pub out: PathBuf,
    /// Words to speak (class folders), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = default_classes())]
    pub classes: Vec<String>,
    /// Clips per class, over train, validation and test (copies not counted).
    #[arg(long, default_value_t = DEFAULT_PER_CLASS)]
    pub per_class: usize,
    /// Fixed voices speaking the whole training split (spread over the engines; an espeak-ng
    /// voice is an accent and a variant, pitch and speed still drawn per clip); default:
    /// every clip draws its voice from all training voices. Validation and test voices
    /// never occur in training either way.
    #[arg(long)]
    pub train_voices: Option<usize>,
    /// Seed of every random choice: the same seed writes the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Speak none of the validation and test voices of this earlier synthetic
    /// set, in any split: a set to pretrain on that has heard none of the
    /// voices that score the other.
    #[arg(long, value_name = "DIR")]
    pub exclude_voices_of: Option<PathBuf>,
    #[command(flatten)]
    pub conditions: ConditionArgs,
}

/// Flags of `rnnlab data speakers`.
#[derive(Args, Debug, Clone)]
pub struct SpeakersArgs {
    /// Output folder (one sub-folder per speaker).
    #[arg(long, alias = "root", default_value = speakers::DEFAULT_ROOT)]
    pub out: PathBuf,
    /// Speakers: espeak-ng voices and flite/festival persons alternately (at most 35).
    #[arg(long, default_value_t = 30)]
    pub speakers: usize,
    /// Utterances per speaker.
    #[arg(long, default_value_t = 80)]
    pub utterances: usize,
    /// Words per utterance at least (default 6; 1 with --max-seconds).
    #[arg(long)]
    pub min_words: Option<usize>,
    /// Speakers without augmented copies: those `train --model speaker --holdout-speakers
    /// N --seed SPLIT_SEED` keeps unseen.
    #[arg(long, default_value_t = 0)]
    pub holdout: usize,
    /// The training seed whose split --holdout follows.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Seed of the text choice, loudness, noise and copies.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub conditions: ConditionArgs,
}

pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    match &args.command {
        DataCommand::Speakers(a) => synth_speakers(a)?,
        DataCommand::Download(a) => {
            let dir = download::download(&a.url, &a.dest, &a.classes, a.size, !a.quiet)
                .context("downloading Speech Commands")?;
            println!("extracted {} into {}", a.classes.join(","), dir.display());
        }
        DataCommand::Synth(a) => {
            let cfg = SynthConfig {
                classes: a.classes.clone(),
                per_class: a.per_class,
                seed: a.seed,
                engines: a.conditions.engines(),
                train_voices: a.train_voices,
                exclude_voices: match &a.exclude_voices_of {
                    Some(dir) => synth::held_out_voices(dir)
                        .with_context(|| format!("--exclude-voices-of {}", dir.display()))?,
                    None => Vec::new(),
                },
                conditions: a.conditions.conditions(),
                ..SynthConfig::default()
            };
            let start = Instant::now();
            let s = synth::generate(&a.out, &cfg).context("synthesising Speech Commands")?;
            println!(
                "wrote {} train ({} of them copies), {} validation, {} test clips to {} in {:.1} s",
                s.clips[0],
                s.augmented.len(),
                s.clips[1],
                s.clips[2],
                s.dir.display(),
                start.elapsed().as_secs_f64()
            );
            for (engine, n) in &s.engine_clips {
                println!("  {engine:<9} {} train, {} validation, {} test", n[0], n[1], n[2]);
            }
            for v in &s.train_voices {
                println!("  training voice {}", v.label());
            }
        }
    }
    Ok(())
}

fn synth_speakers(args: &SpeakersArgs) -> anyhow::Result<()> {
    let defaults = SpeakerSynthConfig::default();
    let min_words = args.min_words.unwrap_or(if args.conditions.max_seconds.is_some() {
        1
    } else {
        defaults.min_words
    });
    let cfg = SpeakerSynthConfig {
        speakers: args.speakers,
        utterances: args.utterances,
        min_words,
        seed: args.seed,
        engines: args.conditions.engines(),
        holdout: args.holdout,
        split_seed: args.split_seed,
        conditions: args.conditions.conditions(),
        ..defaults
    };
    let started = Instant::now();
    let summary = generate_speakers(&args.out, &cfg)
        .with_context(|| format!("making the speaker corpus {}", args.out.display()))?;
    println!(
        "wrote {} utterances ({} of them copies) of {} speakers to {} in {:.1} s",
        summary.files,
        summary.augmented.len(),
        summary.speakers.len(),
        summary.dir.display(),
        started.elapsed().as_secs_f64()
    );
    for s in &summary.speakers {
        println!(
            "  {:<28} voice {:<26} pitch {:>2}  speed {:>3}",
            s.folder,
            s.voice.label(),
            s.voice.pitch,
            s.voice.speed
        );
    }
    Ok(())
}
