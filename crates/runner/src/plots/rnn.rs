//! Figures of the recurrent classifiers (`rnn_tanh`, `rnn_relu`, `lstm`,
//! `gru`, each uni- or bidirectional): per run the training loss (raw and
//! averaged over rows of `valid_every` steps, as the makemore lecture does)
//! with the validation loss, and the validation and test accuracy; across runs the coursework's theory
//! question 3 figure, RNN against LSTM against GRU, from real runs: from a
//! sweep over `model` (mean ± sd bands over its seeds) when one exists under
//! `<results>/sweeps`, else from the latest run of each model.

use super::Run;
use crate::sweep::report::stats;
use crate::train::ModelKind;
use crate::train_rnn::RnnRunConfig;
use figures::{mean_sd, row_average, Band, BandChart, LineChart, LossCurve, Metrics, Series};
use std::path::{Path, PathBuf};

/// The models drawn here, in the comparison's order.
pub const MODELS: [ModelKind; 4] =
    [ModelKind::RnnTanh, ModelKind::RnnRelu, ModelKind::Lstm, ModelKind::Gru];

fn label(run: &Run, cfg: &RnnRunConfig) -> String {
    let bi = if cfg.bidirectional { "bi" } else { "" };
    format!("{bi}{} ({})", run.model.name(), cfg.recipe)
}

fn test_accuracy(run: &Run) -> Option<f64> {
    run.summary().and_then(|s| s.as_rnn().map(|s| s.test_accuracy))
}

/// `<run>/loss.png` and `<run>/accuracy.png`.
pub fn plot_run(run: &Run, cfg: &RnnRunConfig) -> anyhow::Result<Vec<PathBuf>> {
    let m = Metrics::read(&run.dir.join("metrics.csv"))?;
    let loss = m.xy("step", "loss")?;
    if loss.is_empty() {
        println!("{}: no steps logged yet", run.dir.display());
        return Ok(Vec::new());
    }
    let test = test_accuracy(run);
    let title = format!("{}: training loss", label(run, cfg));
    let loss_png = run.dir.join("loss.png");
    let valid = Series::new("validation", m.xy("step", "valid_loss")?, 1);
    LossCurve {
        title: &title,
        y_label: "cross-entropy",
        raw: &loss,
        k: cfg.valid_every.max(1),
        extra: vec![valid],
    }
    .draw(&loss_png)?;

    let mut acc = LineChart::new(
        match test {
            Some(t) => format!("{}: accuracy (test at best validation: {t:.3})", label(run, cfg)),
            None => format!("{}: accuracy", label(run, cfg)),
        },
        "step",
        "accuracy",
    );
    acc.series.push(Series::new("validation", m.xy("step", "valid_acc")?, 0));
    acc.series.push(Series::new("test", m.xy("step", "test_acc")?, 1));
    acc.y_range = Some((0.0, 1.02));
    let acc_png = run.dir.join("accuracy.png");
    acc.draw(&acc_png)?;
    Ok(vec![loss_png, acc_png])
}

/// The latest finished unidirectional run of each model, for one recipe.
fn latest_per_model<'a>(runs: &'a [Run], recipe: &str) -> Vec<(&'a Run, &'a RnnRunConfig)> {
    MODELS
        .iter()
        .filter_map(|m| {
            runs.iter().rev().find_map(|r| {
                let cfg = r.config.as_rnn()?;
                let fits = r.model == *m
                    && r.summary().is_some()
                    && !cfg.bidirectional
                    && cfg.recipe == recipe;
                fits.then_some((r, cfg))
            })
        })
        .collect()
}

/// `<results>/rnn-comparison-{loss,accuracy}[-coursework].png`: RNN vs LSTM vs
/// GRU (question 3), from the latest run of each, when two or more kinds ran.
pub fn compare(runs: &[Run], results: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for recipe in ["default", "coursework"] {
        let suffix = if recipe == "default" { String::new() } else { format!("-{recipe}") };
        if let Some(files) = compare_sweep(results, recipe, &suffix)? {
            written.extend(files);
            continue;
        }
        let chosen = latest_per_model(runs, recipe);
        if chosen.len() < 2 {
            continue;
        }
        let mut loss = LineChart::new(
            format!("RNN vs LSTM vs GRU ({recipe} recipe): training loss"),
            "step",
            "cross-entropy (mean over rows of steps)",
        );
        let mut acc = LineChart::new(
            format!("RNN vs LSTM vs GRU ({recipe} recipe): validation accuracy"),
            "step",
            "validation accuracy",
        );
        for (i, (run, cfg)) in chosen.iter().enumerate() {
            let m = Metrics::read(&run.dir.join("metrics.csv"))?;
            let test = test_accuracy(run).unwrap_or(f64::NAN);
            let name = format!("{} (test {test:.3})", run.model.name());
            let row = cfg.valid_every.max(1);
            loss.series.push(Series::new(&name, row_average(&m.xy("step", "loss")?, row), i));
            acc.series.push(Series::new(&name, m.xy("step", "valid_acc")?, i));
        }
        acc.y_range = Some((0.0, 1.02));
        for (chart, what) in [(loss, "loss"), (acc, "accuracy")] {
            let path = results.join(format!("rnn-comparison-{what}{suffix}.png"));
            chart.draw(&path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// A finished sweep run: its folder, config and test accuracy.
type SweepRun = (PathBuf, RnnRunConfig, f64);

/// The comparison from the newest sweep whose only axis is `model` and that
/// finished runs of two or more models of `recipe` (unidirectional): each
/// model's curves as mean ± sd bands over its seeds. `None` when there is no
/// such sweep.
fn compare_sweep(
    results: &Path,
    recipe: &str,
    suffix: &str,
) -> anyhow::Result<Option<Vec<PathBuf>>> {
    for (dir, sweep) in crate::sweep::report::model_sweeps(results) {
        let mut by_model: Vec<(ModelKind, Vec<SweepRun>)> = Vec::new();
        for spec in &sweep.runs {
            let rd = crate::sweep::exec::run_dir(&dir, spec);
            let (Ok(config), Ok(summary)) =
                (crate::config::RunConfig::read(&rd), crate::config::RunSummary::read(&rd))
            else {
                continue;
            };
            let (Some(cfg), Some(s)) = (config.as_rnn(), summary.as_rnn()) else { continue };
            if cfg.bidirectional || cfg.recipe != recipe || !MODELS.contains(&config.kind()) {
                continue;
            }
            let entry = match by_model.iter_mut().find(|(m, _)| *m == config.kind()) {
                Some(e) => e,
                None => {
                    by_model.push((config.kind(), Vec::new()));
                    by_model.last_mut().expect("pushed")
                }
            };
            entry.1.push((rd, cfg.clone(), s.test_accuracy));
        }
        if by_model.len() < 2 {
            continue;
        }
        by_model.sort_by_key(|(m, _)| MODELS.iter().position(|x| x == m));
        let title = |what: &str| {
            format!("RNN vs LSTM vs GRU ({recipe}, sweep {}): {what}, mean ± sd", sweep.name)
        };
        let mut loss = BandChart::new(
            title("training loss"),
            "step",
            "cross-entropy (mean over rows of steps)",
        );
        let mut acc = BandChart::new(title("validation accuracy"), "step", "validation accuracy");
        for (i, (model, runs)) in by_model.iter().enumerate() {
            let tests: Vec<f64> = runs.iter().map(|r| r.2).collect();
            let t = stats(&tests);
            let label =
                format!("{} (test {:.3} ± {:.3}, {} seeds)", model.name(), t.mean, t.sd, t.n);
            let (mut losses, mut accs) = (Vec::new(), Vec::new());
            for (rd, cfg, _) in runs {
                let m = Metrics::read(&rd.join("metrics.csv"))?;
                losses.push(row_average(&m.xy("step", "loss")?, cfg.valid_every.max(1)));
                accs.push(m.xy("step", "valid_acc")?);
            }
            loss.bands.push(Band { label: label.clone(), points: mean_sd(&losses), colour: i });
            acc.bands.push(Band { label, points: mean_sd(&accs), colour: i });
        }
        acc.y_range = Some((0.0, 1.02));
        let mut written = Vec::new();
        for (chart, what) in [(loss, "loss"), (acc, "accuracy")] {
            let path = results.join(format!("rnn-comparison-{what}{suffix}.png"));
            chart.draw(&path)?;
            written.push(path);
        }
        return Ok(Some(written));
    }
    Ok(None)
}
