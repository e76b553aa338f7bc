//! `rnnlab plots [--results DIR]`: draws the figures of every run folder
//! under `results/` (each has a `config.json` with a `"model"` field and a
//! `metrics.csv`), dispatching on the model, then the figures that compare
//! runs of one kind.
//!
//! To add a model's figures: a module here with `plot_run(&Run) ->
//! anyhow::Result<Vec<PathBuf>>` (and, when runs compare, `compare(&[Run],
//! &Path)`), one arm in [`plot_run`] (and a line in [`run`]). Build charts
//! from the `figures` crate: `LineChart` for any set of series, `LossCurve`
//! for a raw and row-averaged training curve, `Metrics` to read
//! `metrics.csv`.

mod rnn;
mod speaker;
mod wavenet;

use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};

/// Flags of `rnnlab plots`.
#[derive(Args, Debug, Clone)]
pub struct PlotsArgs {
    /// Folder holding the run folders.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// One run folder found under the results folder.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    /// `config.json`'s `"model"`, e.g. `wavenet`, `lstm`.
    pub model: String,
    pub config: serde_json::Value,
}

impl Run {
    /// The folder's name, for titles and legends.
    pub fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// `summary.json`, when the run has finished.
    pub fn summary(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("summary.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Every folder directly under `results` with a `config.json` naming its
/// model, sorted by name. A missing `results` folder holds no runs.
pub fn find_runs(results: &Path) -> anyhow::Result<Vec<Run>> {
    if !results.is_dir() {
        return Ok(Vec::new());
    }
    let mut runs = Vec::new();
    let entries =
        std::fs::read_dir(results).with_context(|| format!("listing {}", results.display()))?;
    for entry in entries {
        let dir = entry?.path();
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", config_path.display()))?;
        let Some(model) = config.get("model").and_then(|m| m.as_str()).map(str::to_owned) else {
            eprintln!("{}: no \"model\" field, skipped", config_path.display());
            continue;
        };
        runs.push(Run { dir, model, config });
    }
    runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(runs)
}

/// The figures of one run, by its model.
fn plot_run(run: &Run) -> anyhow::Result<Vec<PathBuf>> {
    match run.model.as_str() {
        "wavenet" => wavenet::plot_run(run),
        m if rnn::MODELS.contains(&m) => rnn::plot_run(run),
        "speaker" => speaker::plot_run(run),
        other => {
            println!("{}: no figures for model {other:?} yet", run.dir.display());
            Ok(Vec::new())
        }
    }
}

pub fn run(args: &PlotsArgs) -> anyhow::Result<()> {
    figures::register_fonts()?;
    let runs = find_runs(&args.results)?;
    if runs.is_empty() {
        println!(
            "no runs under {}: train one first, e.g. `make train` (GRU on speech) or \
             `make wavenet`, then run `rnnlab plots` again",
            args.results.display()
        );
        return Ok(());
    }
    let mut written = Vec::new();
    let mut failed = 0;
    for run in &runs {
        match plot_run(run) {
            Ok(files) => written.extend(files),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e:#}", run.dir.display());
            }
        }
    }
    written.extend(wavenet::compare(&runs, &args.results)?);
    written.extend(rnn::compare(&runs, &args.results)?);
    for file in &written {
        println!("wrote {}", file.display());
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} runs could not be drawn (see above)", runs.len());
    }
    Ok(())
}
