//! Figures of the recurrent classifiers (`rnn_tanh`, `rnn_relu`, `lstm`,
//! `gru`, each uni- or bidirectional): per run the training loss (raw and
//! averaged over rows of `valid_every` steps, as the makemore lecture does)
//! and the validation and test accuracy; across runs the coursework's theory
//! question 3 figure, RNN against LSTM against GRU, from real runs.

use super::Run;
use figures::{row_average, LineChart, LossCurve, Metrics, Series};
use std::path::{Path, PathBuf};

/// The models drawn here, in the comparison's order.
pub const MODELS: [&str; 4] = ["rnn_tanh", "rnn_relu", "lstm", "gru"];

fn label(run: &Run) -> String {
    let bi = run.config["bidirectional"].as_bool().unwrap_or(false);
    let recipe = run.config["recipe"].as_str().unwrap_or("default");
    format!("{}{} ({recipe})", if bi { "bi" } else { "" }, run.model)
}

fn row(run: &Run) -> usize {
    run.config["valid_every"].as_u64().unwrap_or(20).max(1) as usize
}

/// `<run>/loss.png` and `<run>/accuracy.png`.
pub fn plot_run(run: &Run) -> anyhow::Result<Vec<PathBuf>> {
    let m = Metrics::read(&run.dir.join("metrics.csv"))?;
    let loss = m.xy("step", "loss")?;
    if loss.is_empty() {
        println!("{}: no steps logged yet", run.dir.display());
        return Ok(Vec::new());
    }
    let test = run.summary().and_then(|s| s["test_accuracy"].as_f64());
    let title = format!("{}: training loss", label(run));
    let loss_png = run.dir.join("loss.png");
    LossCurve { title: &title, y_label: "cross-entropy", raw: &loss, k: row(run), extra: vec![] }
        .draw(&loss_png)?;

    let mut acc = LineChart::new(
        match test {
            Some(t) => format!("{}: accuracy (test at best validation: {t:.3})", label(run)),
            None => format!("{}: accuracy", label(run)),
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
fn latest_per_model<'a>(runs: &'a [Run], recipe: &str) -> Vec<&'a Run> {
    MODELS
        .iter()
        .filter_map(|m| {
            runs.iter().rfind(|r| {
                r.model == *m
                    && r.summary().is_some()
                    && !r.config["bidirectional"].as_bool().unwrap_or(false)
                    && r.config["recipe"].as_str() == Some(recipe)
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
        for (i, run) in chosen.iter().enumerate() {
            let m = Metrics::read(&run.dir.join("metrics.csv"))?;
            let test = run.summary().and_then(|s| s["test_accuracy"].as_f64()).unwrap_or(f64::NAN);
            let name = format!("{} (test {test:.3})", run.model);
            loss.series.push(Series::new(&name, row_average(&m.xy("step", "loss")?, row(run)), i));
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
