//! `rnnlab sweep report DIR`: per combination, the mean, sample standard
//! deviation (n − 1), min and max over seeds of every numeric field of the
//! runs' `summary.json`; combinations ranked by the model's validation
//! score in the direction of its [`Goal`]. Test scores are shown beside it
//! and never used to rank or to pick the best: a setting chosen on test
//! scores makes its test score an optimistic estimate.
//!
//! Writes `report.md`, `report.csv` (one typed row per combination and
//! metric), `report-score.png` (each seed's validation score by
//! combination) and `report-valid.png`, `report-loss.png` (validation
//! score and training loss against step, mean ± sd over seeds).

use super::exec::run_dir;
use super::manifest::Sweep;
use crate::config::RunSummary;
use anyhow::Context;
use figures::{mean_sd, row_average, Band, BandChart, Metrics, Strip, StripChart};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use train::{Goal, RunDir};

/// How a model's runs are compared: the summary field that ranks them, its
/// direction, the test field shown beside it, and the `metrics.csv` column
/// of the validation curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    pub metric: &'static str,
    pub goal: Goal,
    pub test: Option<&'static str>,
    pub curve: &'static str,
}

/// The validation score each model's engine monitors (its `Task::monitor`),
/// as its summary names it.
pub fn selection(summary: &RunSummary) -> Selection {
    match summary {
        RunSummary::Wavenet(_) => Selection {
            metric: "val_loss",
            goal: Goal::Minimize,
            test: Some("test_loss"),
            curve: "valid_loss",
        },
        RunSummary::Speaker(_) => Selection {
            metric: "best_heldout_accuracy",
            goal: Goal::Maximize,
            test: None,
            curve: "heldout_accuracy",
        },
        _ => Selection {
            metric: "best_valid_accuracy",
            goal: Goal::Maximize,
            test: Some("test_accuracy"),
            curve: "valid_acc",
        },
    }
}

/// Mean, sample standard deviation, min and max of some numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    /// n − 1 in the denominator; NaN for fewer than two values.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

/// [`Stats`] of the finite values of `v` (NaN fields when there are none).
pub fn stats(v: &[f64]) -> Stats {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return Stats { n, mean: f64::NAN, sd: f64::NAN, min: f64::NAN, max: f64::NAN };
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Stats { n, mean, sd, min, max }
}

/// One combination's results over its seeds.
#[derive(Debug, Clone)]
pub struct ComboResult {
    pub combo: String,
    /// Runs with a `summary.json`, and runs in all.
    pub done: usize,
    pub total: usize,
    /// Each finished run's folder and validation score, in seed order.
    pub scores: Vec<(PathBuf, f64)>,
    /// Every numeric summary field over the finished runs.
    pub metrics: BTreeMap<String, Stats>,
}

/// The report of a sweep, combinations in rank order.
#[derive(Debug, Clone)]
pub struct Report {
    pub selection: Option<Selection>,
    pub ranked: Vec<ComboResult>,
    /// Runs without a `summary.json`.
    pub unfinished: Vec<PathBuf>,
}

/// A summary's numbers by field name.
type Numbers = BTreeMap<String, f64>;

/// Numeric top-level fields of a summary, by name.
fn numbers(summary: &RunSummary) -> anyhow::Result<Numbers> {
    let value = serde_json::to_value(summary)?;
    Ok(value
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect())
        .unwrap_or_default())
}

/// Reads every finished run of `sweep` in `dir`, aggregates over seeds and
/// ranks the combinations on the validation score only.
pub fn aggregate(sweep: &Sweep, dir: &Path) -> anyhow::Result<Report> {
    let mut chosen: Option<Selection> = None;
    // (combination, its run folders, the numbers of its finished runs)
    let mut combos: Vec<(String, Vec<PathBuf>, Vec<Numbers>)> = Vec::new();
    let mut unfinished = Vec::new();
    for run in &sweep.runs {
        if combos.last().is_none_or(|c| c.0 != run.combo) {
            combos.push((run.combo.clone(), Vec::new(), Vec::new()));
        }
        let entry = combos.last_mut().expect("pushed above");
        let rd = run_dir(dir, run);
        entry.1.push(rd.clone());
        if !rd.join("summary.json").is_file() {
            unfinished.push(run.dir.clone());
            continue;
        }
        let summary = RunSummary::read(&rd)?;
        let sel = selection(&summary);
        match chosen {
            None => chosen = Some(sel),
            Some(s) if s != sel => anyhow::bail!(
                "{}: its model is ranked on {} but earlier runs on {}; a sweep over models of \
                 different kinds has no common validation score",
                rd.display(),
                sel.metric,
                s.metric
            ),
            _ => {}
        }
        entry.2.push(numbers(&summary)?);
    }
    let mut ranked: Vec<ComboResult> = combos
        .into_iter()
        .map(|(combo, dirs, rows)| {
            let names: std::collections::BTreeSet<&String> =
                rows.iter().flat_map(|r| r.keys()).collect();
            let metrics = names
                .into_iter()
                .map(|k| {
                    let v: Vec<f64> = rows.iter().filter_map(|r| r.get(k).copied()).collect();
                    (k.clone(), stats(&v))
                })
                .collect();
            let finished: Vec<&PathBuf> =
                dirs.iter().filter(|d| d.join("summary.json").is_file()).collect();
            let scores = match chosen {
                Some(s) => finished
                    .iter()
                    .zip(&rows)
                    .map(|(d, r)| ((*d).clone(), r.get(s.metric).copied().unwrap_or(f64::NAN)))
                    .collect(),
                None => Vec::new(),
            };
            ComboResult { combo, done: rows.len(), total: dirs.len(), scores, metrics }
        })
        .collect();
    if let Some(sel) = chosen {
        let key = |c: &ComboResult| {
            let m = c.metrics.get(sel.metric).map_or(f64::NAN, |s| s.mean);
            match sel.goal {
                Goal::Maximize => -m,
                Goal::Minimize => m,
            }
        };
        // NaN (no finished run) last; ties keep the grid's order
        ranked.sort_by(|a, b| {
            let (x, y) = (key(a), key(b));
            x.is_nan().cmp(&y.is_nan()).then(x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal))
        });
    }
    Ok(Report { selection: chosen, ranked, unfinished })
}

/// One row of `report.csv`.
#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    rank: usize,
    combo: &'a str,
    metric: &'a str,
    /// `validation` for the ranking score, `test` for the test score.
    role: &'a str,
    n: usize,
    mean: Option<f64>,
    sd: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "–".into()
    }
}

fn mean_sd_text(s: Option<&Stats>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} ± {}", num(s.mean), num(s.sd)),
        Some(s) => num(s.mean),
        None => "–".into(),
    }
}

fn goal_text(goal: Goal) -> &'static str {
    match goal {
        Goal::Maximize => "higher is better",
        Goal::Minimize => "lower is better",
    }
}

/// `report.csv` as text.
fn csv_text(report: &Report) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for (i, c) in report.ranked.iter().enumerate() {
        for (metric, s) in &c.metrics {
            let role = match report.selection {
                Some(sel) if sel.metric == metric => "validation",
                Some(sel) if sel.test == Some(metric.as_str()) => "test",
                _ => "",
            };
            w.serialize(CsvRow {
                rank: i + 1,
                combo: &c.combo,
                metric,
                role,
                n: s.n,
                mean: finite(s.mean),
                sd: finite(s.sd),
                min: finite(s.min),
                max: finite(s.max),
            })?;
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("writing report.csv: {e}"))
}

/// `report.md` as text.
fn markdown(sweep: &Sweep, report: &Report, figures: &[String]) -> String {
    let mut md = format!("# Sweep `{}`\n\n", sweep.name);
    for a in &sweep.axes {
        let _ = writeln!(md, "- axis `--{}`: {}", a.flag, a.values.join(", "));
    }
    let seeds: Vec<String> = sweep.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(md, "- seeds: {} ({})", seeds.join(", "), seeds.len());
    let _ = writeln!(md, "- fixed flags: `{}`", sweep.fixed.join(" "));
    let _ = writeln!(
        md,
        "- runs: {} of {} finished\n",
        sweep.runs.len() - report.unfinished.len(),
        sweep.runs.len()
    );
    let Some(sel) = report.selection else {
        md += "No run has finished yet: nothing to report.\n";
        return md;
    };
    let _ = writeln!(
        md,
        "Ranked by `{}` over seeds (validation; {}). Test scores are shown for reference \
         only: they never rank or choose, since a setting chosen on the test set makes its \
         test score an optimistic estimate. Mean ± sample sd (n − 1), min and max over seeds.\n",
        sel.metric,
        goal_text(sel.goal)
    );
    let test = sel.test.unwrap_or("");
    md += &format!("| rank | combination | runs | {} | min | max |", sel.metric);
    if sel.test.is_some() {
        md += &format!(" {test} | min | max |");
    }
    md += "\n|---|---|---|---|---|---|";
    if sel.test.is_some() {
        md += "---|---|---|";
    }
    md += "\n";
    for (i, c) in report.ranked.iter().enumerate() {
        let v = c.metrics.get(sel.metric);
        let _ = write!(
            md,
            "| {} | `{}` | {}/{} | {} | {} | {} |",
            i + 1,
            c.combo,
            c.done,
            c.total,
            mean_sd_text(v),
            num(v.map_or(f64::NAN, |s| s.min)),
            num(v.map_or(f64::NAN, |s| s.max))
        );
        if sel.test.is_some() {
            let t = c.metrics.get(test);
            let _ = write!(
                md,
                " {} | {} | {} |",
                mean_sd_text(t),
                num(t.map_or(f64::NAN, |s| s.min)),
                num(t.map_or(f64::NAN, |s| s.max))
            );
        }
        md += "\n";
    }
    if let Some(best) = report.ranked.first().filter(|c| c.done > 0) {
        let _ = write!(
            md,
            "\n**Best on validation:** `{}`: {} {} over {} seeds",
            best.combo,
            sel.metric,
            mean_sd_text(best.metrics.get(sel.metric)),
            best.done
        );
        if sel.test.is_some() {
            let _ = write!(md, " (its {test}: {})", mean_sd_text(best.metrics.get(test)));
        }
        md += ".\n";
    }
    md += "\n## Every summary metric\n\nMean ± sd [min, max] over the finished seeds.\n\n";
    for c in &report.ranked {
        let _ = writeln!(md, "### `{}` ({} of {} runs)\n\n| metric | n | mean ± sd | min | max |\n|---|---|---|---|---|", c.combo, c.done, c.total);
        for (k, s) in &c.metrics {
            let _ = writeln!(
                md,
                "| {k} | {} | {} | {} | {} |",
                s.n,
                mean_sd_text(Some(s)),
                num(s.min),
                num(s.max)
            );
        }
        md += "\n";
    }
    if !report.unfinished.is_empty() {
        md += "## Unfinished runs\n\n";
        for r in &report.unfinished {
            let _ = writeln!(md, "- `{}`", r.display());
        }
        md += "\n";
    }
    if !figures.is_empty() {
        md += "## Figures\n\n";
        for f in figures {
            let _ = writeln!(md, "![{f}]({f})");
        }
    }
    md
}

/// Colours of the band figures: the first ten combinations in rank order.
const MAX_BANDS: usize = 10;

/// A curve of each finished run of `c`: `(step, y)` of a `metrics.csv` column.
fn curves(
    c: &ComboResult,
    column: &str,
    row: Option<usize>,
) -> anyhow::Result<Vec<Vec<(f64, f64)>>> {
    c.scores
        .iter()
        .map(|(d, _)| {
            let m = Metrics::read(&d.join("metrics.csv"))?;
            let xy = m.xy("step", column)?;
            Ok(match row {
                Some(k) => row_average(&xy, (xy.len() / k).max(1)),
                None => xy,
            })
        })
        .collect()
}

/// The three figures, in `dir`; returns their file names.
fn draw(report: &Report, sel: Selection, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut strip = StripChart::new(
        format!("validation score by setting, one dot per seed ({})", goal_text(sel.goal)),
        sel.metric,
    );
    for c in &report.ranked {
        strip
            .strips
            .push(Strip { label: c.combo.clone(), values: c.scores.iter().map(|s| s.1).collect() });
    }
    strip.draw(&dir.join("report-score.png"))?;
    names.push("report-score.png".to_string());
    for (file, column, title, row) in [
        ("report-valid.png", sel.curve, "validation", None),
        ("report-loss.png", "loss", "training loss (means over rows of steps)", Some(100)),
    ] {
        let mut chart = BandChart::new(
            format!("{title}: mean ± sd over seeds"),
            "step",
            if column == "loss" { "training loss" } else { column },
        );
        for (i, c) in report.ranked.iter().filter(|c| c.done > 0).take(MAX_BANDS).enumerate() {
            let points = mean_sd(&curves(c, column, row)?);
            chart.bands.push(Band { label: c.combo.clone(), points, colour: i });
        }
        chart.draw(&dir.join(file))?;
        names.push(file.to_string());
    }
    Ok(names)
}

/// The sweeps under `<results>/sweeps` whose only axis is `model`, newest
/// `sweep.json` first (for `rnnlab plots`' model comparison).
pub fn model_sweeps(results: &Path) -> Vec<(PathBuf, Sweep)> {
    let Ok(entries) = std::fs::read_dir(results.join("sweeps")) else { return Vec::new() };
    let mut found: Vec<(std::time::SystemTime, PathBuf, Sweep)> = entries
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let modified = dir.join(super::manifest::MANIFEST).metadata().ok()?.modified().ok()?;
            let sweep = Sweep::read(&dir).ok()?;
            let only_model = sweep.axes.len() == 1 && sweep.axes[0].flag == "model";
            only_model.then_some((modified, dir, sweep))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, d, s)| (d, s)).collect()
}

/// `rnnlab sweep report DIR`.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let sweep = Sweep::read(dir)?;
    let report = aggregate(&sweep, dir)?;
    let out = RunDir::create(Some(dir), "")?;
    let mut figures = Vec::new();
    if let Some(sel) = report.selection {
        match draw(&report, sel, dir) {
            Ok(f) => figures = f,
            Err(e) => eprintln!("figures not drawn: {e:#}"),
        }
    }
    let md = markdown(&sweep, &report, &figures);
    out.write_file("report.md", md.as_bytes())?;
    out.write_file("report.csv", &csv_text(&report).context("report.csv")?)?;
    print!("{md}");
    println!("\nwrote {}, {}", dir.join("report.md").display(), dir.join("report.csv").display());
    for f in &figures {
        println!("wrote {}", dir.join(f).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand() {
        // 1, 2, 6: mean 3, sd sqrt((4 + 1 + 9) / 2) = sqrt(7)
        let s = stats(&[1.0, 2.0, 6.0, f64::NAN]);
        assert_eq!((s.n, s.mean, s.min, s.max), (3, 3.0, 1.0, 6.0));
        assert!((s.sd - 7f64.sqrt()).abs() < 1e-12);
        let one = stats(&[0.5]);
        assert_eq!((one.n, one.mean, one.min, one.max), (1, 0.5, 0.5, 0.5));
        assert!(one.sd.is_nan());
        assert_eq!(stats(&[]).n, 0);
    }
}
