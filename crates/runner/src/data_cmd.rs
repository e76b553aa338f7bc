//! `rnnlab data download|synth`: get Speech Commands, the real archive or a synthetic
//! stand-in spoken by espeak-ng, into the notebook's layout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use data::download::{self, OFFICIAL_URL};
use data::speech_commands::{DEFAULT_CLASSES, DEFAULT_ROOT};
use data::synth::{self, SynthConfig};

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
    /// Write a synthetic dataset spoken by espeak-ng in the Speech Commands layout.
    Synth(SynthArgs),
    /// Write a speaker corpus spoken by espeak-ng (one folder per speaker) for the speaker model.
    SynthSpeakers(crate::speaker::SynthSpeakersArgs),
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

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Folder to hold data_speech_commands_v0.02/.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub out: PathBuf,
    /// Words to speak (class folders), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = default_classes())]
    pub classes: Vec<String>,
    /// Clips per class, over train, validation and test.
    #[arg(long, default_value_t = SynthConfig::default().per_class)]
    pub per_class: usize,
    /// Seed of every random choice: the same seed writes the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    match &args.command {
        DataCommand::SynthSpeakers(a) => crate::speaker::synth_speakers(a)?,
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
                ..SynthConfig::default()
            };
            let start = Instant::now();
            let s = synth::generate(&a.out, &cfg).context("synthesising Speech Commands")?;
            println!(
                "wrote {} train, {} validation, {} test clips to {} in {:.1} s",
                s.clips[0],
                s.clips[1],
                s.clips[2],
                s.dir.display(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
