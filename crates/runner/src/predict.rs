//! `rnnlab predict --run DIR FILE_OR_FOLDER...`: a trained word classifier on
//! one's own recordings.
//!
//! Every WAV (integer PCM of 8, 16, 24 or 32 bits or 32-bit float, mono or
//! multichannel, any sample rate: see `data::audio`) goes through the run's
//! own feature settings from `config.json` (MFCC parameters, silence
//! trimming, the one-second window, the train split's standardisation) and
//! its checkpoint; each gets its predicted class and the probability (softmax
//! of the logits) of every class. Folders are walked for `*.wav`. Output is
//! an aligned table, or CSV with `--csv`: one row per file and class
//! (`file,class,probability,predicted`).

use crate::train_rnn::Trained;
use anyhow::{bail, ensure, Context};
use data::audio::{read_wav, ONE_SECOND};
use data::cache::FeatureCache;
use data::loader::DataLoader;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The run folder (from `rnnlab train --model lstm|gru|rnn_tanh|rnn_relu`).
    #[arg(long)]
    pub run: PathBuf,
    /// WAV files, or folders searched (recursively) for `*.wav`.
    #[arg(required = true, value_name = "FILE_OR_FOLDER")]
    pub inputs: Vec<PathBuf>,
    /// CSV on stdout instead of a table: `file,class,probability,predicted`,
    /// one row per file and class.
    #[arg(long)]
    pub csv: bool,
    /// Which checkpoint: `best` (at the best validation accuracy) or `last`.
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
}

/// One row of `--csv`: a file's probability of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub file: String,
    pub class: String,
    pub probability: f64,
    /// Whether this is the file's most probable class.
    pub predicted: bool,
}

/// The WAV files named by `inputs`: files as given, folders walked for
/// `*.wav` (sorted). Errors name a path that does not exist or a folder
/// without WAVs.
pub fn collect_wavs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            ensure!(files.len() > before, "{}: no .wav files in this folder", input.display());
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            out.push(path);
        }
    }
    Ok(())
}

/// Each file's probability of every class `[files][classes]`, in the run's
/// class order.
pub fn probabilities(
    trained: &Trained,
    files: &[PathBuf],
    device: Device,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let cfg = &trained.cfg;
    let extract = FeatureCache::uncached_with_trim(cfg.mfcc, Some(ONE_SECOND), cfg.trim_silence);
    let mut features = Vec::with_capacity(files.len());
    for file in files {
        let samples = read_wav(file)?;
        ensure!(!samples.is_empty(), "{}: the WAV file holds no audio samples", file.display());
        features.push(extract.extract(&samples));
    }
    let labels = vec![0i64; files.len()];
    let loader = trained.prepare(DataLoader::from_features(&features, &labels, 256, device)?);
    let _guard = tch::no_grad_guard();
    let mut rows = Vec::with_capacity(files.len());
    for i in 0..loader.len() {
        let (x, _, lengths) = loader.batch_with_lengths(None, i);
        let p = trained.logits(&x, &lengths).softmax(-1, Kind::Double).to_device(Device::Cpu);
        rows.extend(Vec::<Vec<f64>>::try_from(p)?);
    }
    Ok(rows)
}

pub fn run(args: &PredictArgs, device: Device) -> anyhow::Result<()> {
    let trained = Trained::load(&args.run, &args.checkpoint, device)?;
    let files = collect_wavs(&args.inputs)?;
    let probs = probabilities(&trained, &files, device)?;
    let classes = &trained.cfg.classes;
    let best = |p: &[f64]| (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
    if args.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        for (file, p) in files.iter().zip(&probs) {
            let top = best(p);
            for (k, class) in classes.iter().enumerate() {
                w.serialize(PredictionRow {
                    file: file.display().to_string(),
                    class: class.clone(),
                    probability: p[k],
                    predicted: k == top,
                })?;
            }
        }
        w.flush()?;
        return Ok(());
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let fw = names.iter().map(String::len).max().unwrap_or(0).max(4);
    let pw = classes.iter().map(String::len).max().unwrap_or(0).max(9);
    let cw = classes.iter().map(String::len).max().unwrap_or(0).max(6);
    let mut header = format!("{:<fw$}  {:<pw$}", "file", "predicted");
    for c in classes {
        header.push_str(&format!("  {c:>cw$}"));
    }
    println!("{header}");
    for (name, p) in names.iter().zip(&probs) {
        let mut line = format!("{name:<fw$}  {:<pw$}", classes[best(p)]);
        for v in p {
            line.push_str(&format!("  {v:>cw$.4}"));
        }
        println!("{line}");
    }
    Ok(())
}
