//! Figures of the recurrent classifiers (`rnn_tanh`, `rnn_relu`, `lstm`,
//! `gru`, each uni- or bidirectional): per run the training loss (raw and
//! averaged over rows of `valid_every` steps, as the makemore lecture does)
//! with the validation loss, and the validation and test accuracy; across runs the coursework's theory
//! question 3 figure, RNN against LSTM against GRU, from real runs.

use super::Run;
use crate::train::ModelKind;
use crate::train_rnn::RnnRunConfig;
use figures::{row_average, LineChart, LossCurve, Metrics, Series};
use std::path::{Path, PathBuf};

/// The models drawn here, in the comparison's order.
pub const MODELS: [ModelKind; 4] =
    [ModelKind::RnnTanh, ModelKind::RnnRelu, ModelKind::Lstm, ModelKind::Gru];

/// The model's name as on the command line (`gru`, `rnn_tanh`).
fn name(model: ModelKind) -> String {
    serde_json::to_value(model).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn label(run: &Run, cfg: &RnnRunConfig) -> String {
    let bi = if cfg.bidirectional { "bi" } else { "" };
    format!("{bi}{} ({})", name(run.model), cfg.recipe)
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
        let chosen = latest_per_model(runs, recipe);
        if chosen.len() < 2 {
            continue;
        }
        let suffix = if recipe == "default" { String::new() } else { format!("-{recipe}") };
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
            let name = format!("{} (test {test:.3})", name(run.model));
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
