//! Figures of wavenet runs: the lecture's training curve (log10 of the loss,
//! averaged over rows of 1000 steps: `torch.tensor(lossi).view(-1,
//! 1000).mean(1)`), with the validation loss, and a comparison of runs.

use super::Run;
use crate::config::{RunConfig, RunSummary};
use crate::wavenet::WavenetRunConfig;
use figures::{row_average, LineChart, LossCurve, Metrics, Series};
use std::path::{Path, PathBuf};

/// Steps per row of the lecture's smoothed curve.
const ROW: usize = 1000;

/// The lecture's rows of 1000 steps, or a twentieth of a shorter run.
fn row_len(steps: usize) -> usize {
    if steps >= 20 * ROW {
        ROW
    } else {
        (steps / 20).max(1)
    }
}

/// `(step, value)` points of one curve.
type Curve = Vec<(f64, f64)>;

/// log10 of the training loss of every step, and of the validation loss.
fn log10_losses(run: &Run) -> anyhow::Result<(Curve, Curve)> {
    let metrics = Metrics::read(&run.dir.join("metrics.csv"))?;
    let log = |v: Vec<(f64, f64)>| v.into_iter().map(|(s, l)| (s, l.log10())).collect::<Vec<_>>();
    Ok((log(metrics.xy("step", "loss")?), log(metrics.xy("step", "valid_loss")?)))
}

fn recipe(cfg: &WavenetRunConfig) -> String {
    format!("{:?}", cfg.schedule.recipe).to_lowercase()
}

fn val_loss(run: &Run) -> Option<f64> {
    match run.summary()? {
        RunSummary::Wavenet(s) => Some(s.val_loss),
        _ => None,
    }
}

/// `<run>/loss.png`.
pub fn plot_run(run: &Run, cfg: &WavenetRunConfig) -> anyhow::Result<Vec<PathBuf>> {
    let (train, val) = log10_losses(run)?;
    if train.is_empty() {
        println!("{}: no steps logged yet", run.dir.display());
        return Ok(Vec::new());
    }
    let val_note = match val_loss(run) {
        Some(v) => format!(", final val loss {v:.4}"),
        None => String::new(),
    };
    let title = format!("wavenet, {} recipe: training loss{val_note}", recipe(cfg));
    let path = run.dir.join("loss.png");
    LossCurve {
        title: &title,
        y_label: "log10(loss)",
        raw: &train,
        k: row_len(train.len()),
        extra: vec![Series::new("validation (eval mode)", val, 1)],
    }
    .draw(&path)?;
    Ok(vec![path])
}

/// `<results>/wavenet-comparison.png` when there are two or more wavenet runs.
pub fn compare(runs: &[Run], results: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let wavenets: Vec<(&Run, &WavenetRunConfig)> = runs
        .iter()
        .filter_map(|r| match &r.config {
            RunConfig::Wavenet(c) => Some((r, c)),
            _ => None,
        })
        .collect();
    if wavenets.len() < 2 {
        return Ok(Vec::new());
    }
    let mut chart = LineChart::new(
        format!("wavenet runs: training loss, mean over rows of {ROW} steps"),
        "step",
        "log10(loss)",
    );
    for (i, (run, cfg)) in wavenets.iter().enumerate() {
        let Ok((train, _)) = log10_losses(run) else { continue };
        let label = match val_loss(run) {
            Some(v) => format!("{} ({}, val {v:.3})", run.name(), recipe(cfg)),
            None => format!("{} ({})", run.name(), recipe(cfg)),
        };
        let k = row_len(train.len());
        chart.series.push(Series::new(label, row_average(&train, k), i));
    }
    let path = results.join("wavenet-comparison.png");
    chart.draw(&path)?;
    Ok(vec![path])
}
