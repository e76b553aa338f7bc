//! `rnnlab plots [--results DIR]`: draws the figures of every run folder
//! under `results/` (each has a typed `config.json`, [`RunConfig`], and a
//! `metrics.csv`), dispatching on the model, then the figures that compare
//! runs of one kind. Every model's loss figure draws the validation loss
//! beside the training loss.
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

use crate::config::{RunConfig, RunSummary};
use crate::train::ModelKind;
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
    pub model: ModelKind,
    pub config: RunConfig,
}

impl Run {
    /// The folder's name, for titles and legends.
    pub fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// `summary.json`, when the run has finished.
    pub fn summary(&self) -> Option<RunSummary> {
        RunSummary::read(&self.dir).ok()
    }
}

/// Every folder directly under `results` with a `config.json` naming its
/// model, sorted by name. A missing `results` folder holds no runs.
pub fn find_runs(results: &Path) -> anyhow::Result<Vec<Run>> {
    if !results.is_dir() {
        return Ok(Vec::new());
    }
    let mut runs = Vec::new();
    let entries = std::fs::read_dir(results)
        .map_err(|e| anyhow::anyhow!("listing {}: {e}", results.display()))?;
    for entry in entries {
        let dir = entry?.path();
        if !dir.join("config.json").is_file() {
            continue;
        }
        match RunConfig::read(&dir) {
            Ok(config) => runs.push(Run { dir, model: config.kind(), config }),
            Err(e) => eprintln!("skipped: {e:#}"),
        }
    }
    runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(runs)
}

/// The figures of one run, by its model.
fn plot_run(run: &Run) -> anyhow::Result<Vec<PathBuf>> {
    match &run.config {
        RunConfig::Wavenet(c) => wavenet::plot_run(run, c),
        RunConfig::Speaker(c) => speaker::plot_run(run, c),
        RunConfig::RnnTanh(c) | RunConfig::RnnRelu(c) | RunConfig::Lstm(c) | RunConfig::Gru(c) => {
            rnn::plot_run(run, c)
        }
    }
}

pub fn run(args: &PlotsArgs) -> anyhow::Result<()> {
    figures::register_fonts()?;
    let runs = find_runs(&args.results)?;
    if runs.is_empty() && crate::sweep::report::model_sweeps(&args.results).is_empty() {
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
