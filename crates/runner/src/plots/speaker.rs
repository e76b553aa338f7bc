//! Figures of speaker runs: the utterance embeddings projected on their first
//! two principal components at several epochs, coloured by speaker, as a grid
//! (`embeddings.png`) and an animation (`embeddings.gif`), and the training
//! loss (`loss.png`, log10, with the held-out loss per epoch).
//!
//! The projections are written during training (`embeddings/epoch_<n>.csv`:
//! `set,speaker,pc1,pc2`, see `crate::speaker`). Circles are training speakers
//! (filled: training utterances, rings: held-out utterances), triangles the
//! unseen speakers that were kept out of training.

use super::Run;
use anyhow::{anyhow, bail, Context};
use figures::{category_colour, register_fonts, LossCurve, Metrics, Series, FONT};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Panels of the grid figure.
const GRID: (usize, usize) = (3, 3);
/// Milliseconds per animation frame.
const FRAME_MS: u32 = 400;

/// Which points a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Train,
    Heldout,
    Unseen,
}

/// One utterance's projection.
#[derive(Debug, Clone, Copy)]
struct Point {
    kind: Kind,
    /// Colour index: training speakers first, then unseen ones.
    colour: usize,
    x: f64,
    y: f64,
}

/// The projections of one epoch.
struct Snapshot {
    epoch: usize,
    points: Vec<Point>,
}

fn names(run: &Run, key: &str) -> Vec<String> {
    run.config[key]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn read_snapshot(path: &Path, train: &[String], unseen: &[String]) -> anyhow::Result<Vec<Point>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || anyhow!("{}:{}: bad row {line:?}", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 {
            return Err(bad());
        }
        let kind = match f[0] {
            "train" => Kind::Train,
            "heldout" => Kind::Heldout,
            "unseen" => Kind::Unseen,
            _ => return Err(bad()),
        };
        let colour = match kind {
            Kind::Unseen => unseen.iter().position(|s| s == f[1]).map(|p| p + train.len()),
            _ => train.iter().position(|s| s == f[1]),
        }
        .ok_or_else(bad)?;
        let (x, y) = (f[2].parse().map_err(|_| bad())?, f[3].parse().map_err(|_| bad())?);
        points.push(Point { kind, colour, x, y });
    }
    Ok(points)
}

fn read_snapshots(run: &Run) -> anyhow::Result<Vec<Snapshot>> {
    let (train, unseen) = (names(run, "train_speakers"), names(run, "unseen_speakers"));
    let dir = run.dir.join("embeddings");
    let mut snaps = Vec::new();
    if !dir.is_dir() {
        return Ok(snaps);
    }
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let Some(epoch) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("epoch_")?.strip_suffix(".csv")?.parse().ok())
        else {
            continue;
        };
        snaps.push(Snapshot { epoch, points: read_snapshot(&path, &train, &unseen)? });
    }
    snaps.sort_by_key(|s| s.epoch);
    Ok(snaps)
}

/// `n` snapshots spread evenly over `snaps`, first and last included.
fn spread(snaps: &[Snapshot], n: usize) -> Vec<&Snapshot> {
    if snaps.len() <= n {
        return snaps.iter().collect();
    }
    let mut idx: Vec<usize> =
        (0..n).map(|i| (i * (snaps.len() - 1) + (n - 1) / 2) / (n - 1)).collect();
    idx.dedup();
    idx.into_iter().map(|i| &snaps[i]).collect()
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !(hi - lo).is_finite() || hi <= lo {
        return (lo.min(0.0) - 1.0, hi.max(0.0) + 1.0);
    }
    let pad = 0.06 * (hi - lo);
    (lo - pad, hi + pad)
}

/// One scatter panel of `snap` on `area`.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    snap: &Snapshot,
    caption: &str,
    size: u32,
    speakers: usize,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing epoch {}: {e}", snap.epoch);
    let xr = range(snap.points.iter().map(|p| p.x));
    let yr = range(snap.points.iter().map(|p| p.y));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, size + 8))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(40)
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .label_style((FONT, size))
        .x_labels(5)
        .y_labels(5)
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(|e| err(&e))?;
    let colour = |p: &Point| category_colour(p.colour, speakers);
    for kind in [Kind::Train, Kind::Heldout, Kind::Unseen] {
        let pts = snap.points.iter().filter(|p| p.kind == kind);
        match kind {
            Kind::Train => chart
                .draw_series(pts.map(|p| Circle::new((p.x, p.y), 3, colour(p).mix(0.6).filled()))),
            Kind::Heldout => chart
                .draw_series(pts.map(|p| Circle::new((p.x, p.y), 5, colour(p).stroke_width(2)))),
            Kind::Unseen => chart.draw_series(
                pts.map(|p| TriangleMarker::new((p.x, p.y), 5, colour(p).mix(0.8).filled())),
            ),
        }
        .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// A legend column: one coloured marker and name per speaker.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    train: &[String],
    unseen: &[String],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing the legend: {e}");
    let style = (FONT, 15).into_font().color(&BLACK);
    let mut y = 20;
    let n = train.len() + unseen.len();
    let mut line = |text: &str, colour: Option<(usize, bool)>| -> anyhow::Result<()> {
        if let Some((c, is_unseen)) = colour {
            let col = category_colour(c, n).filled();
            if is_unseen {
                area.draw(&TriangleMarker::new((14, y + 8), 6, col)).map_err(|e| err(&e))?;
            } else {
                area.draw(&Circle::new((14, y + 8), 5, col)).map_err(|e| err(&e))?;
            }
        }
        area.draw(&Text::new(text.to_owned(), (28, y), style.clone())).map_err(|e| err(&e))?;
        y += 21;
        Ok(())
    };
    line("training speakers", None)?;
    for (i, s) in train.iter().enumerate() {
        line(s, Some((i, false)))?;
    }
    if !unseen.is_empty() {
        line("", None)?;
        line("unseen speakers", None)?;
        for (i, s) in unseen.iter().enumerate() {
            line(s, Some((train.len() + i, true)))?;
        }
    }
    line("", None)?;
    line("dot: training utterance", None)?;
    line("ring: held-out utterance", None)?;
    Ok(())
}

/// `<run>/embeddings.png`: up to 9 epochs in a grid, with a legend.
fn draw_grid(run: &Run, snaps: &[Snapshot], path: &Path) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let (train, unseen) = (names(run, "train_speakers"), names(run, "unseen_speakers"));
    let root = BitMapBackend::new(path, (1600, 1240)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled("Speaker embeddings (PCA to 2-D) during training", (FONT, 30))
        .map_err(|e| err(&e))?;
    let (grid, legend) = root.split_horizontally(1340);
    let panels = grid.split_evenly(GRID);
    for (area, snap) in panels.iter().zip(spread(snaps, GRID.0 * GRID.1)) {
        let n = train.len() + unseen.len();
        draw_panel(area, snap, &format!("epoch {}", snap.epoch), 14, n)?;
    }
    draw_legend(&legend, &train, &unseen)?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// `<run>/embeddings.gif`: every saved epoch, one frame each, the last held longer.
fn draw_gif(run: &Run, snaps: &[Snapshot], path: &Path) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let (train, unseen) = (names(run, "train_speakers"), names(run, "unseen_speakers"));
    let root =
        BitMapBackend::gif(path, (1000, 700), FRAME_MS).map_err(|e| err(&e))?.into_drawing_area();
    let last = snaps.last().map(|s| s.epoch);
    for snap in snaps {
        let repeats = if Some(snap.epoch) == last { 6 } else { 1 };
        for _ in 0..repeats {
            root.fill(&WHITE).map_err(|e| err(&e))?;
            let (chart, legend) = root.split_horizontally(740);
            let caption = format!("speaker embeddings (PCA), epoch {}", snap.epoch);
            draw_panel(&chart, snap, &caption, 15, train.len() + unseen.len())?;
            draw_legend(&legend, &train, &unseen)?;
            root.present().map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

/// `<run>/loss.png`: log10 of every step's loss and of the held-out loss per epoch.
fn draw_loss(run: &Run, path: &Path) -> anyhow::Result<bool> {
    let metrics = Metrics::read(&run.dir.join("metrics.csv"))?;
    let log = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        v.into_iter().filter(|p| p.1 > 0.0).map(|(s, l)| (s, l.log10())).collect()
    };
    let train = log(metrics.xy("step", "loss")?);
    if train.is_empty() {
        return Ok(false);
    }
    let heldout = log(metrics.xy("step", "heldout_loss")?);
    // Rows of one epoch: the steps between two held-out evaluations.
    let per_epoch = heldout.first().map_or(10, |p| p.0 as usize).max(1);
    let note = match run.summary().and_then(|s| s["final_loss"].as_f64()) {
        Some(l) => format!(", final loss {l:.4}"),
        None => String::new(),
    };
    LossCurve {
        title: &format!("speaker BiLSTM, proxy loss{note}"),
        y_label: "log10(loss)",
        raw: &train,
        k: per_epoch,
        extra: vec![Series::new("held-out utterances", heldout, 1)],
    }
    .draw(path)?;
    Ok(true)
}

/// `loss.png`, `embeddings.png` and `embeddings.gif` in the run folder.
pub fn plot_run(run: &Run) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts()?;
    let mut written = Vec::new();
    let loss = run.dir.join("loss.png");
    if draw_loss(run, &loss)? {
        written.push(loss);
    } else {
        println!("{}: no steps logged yet", run.dir.display());
    }
    let snaps = read_snapshots(run)?;
    if snaps.is_empty() {
        if !written.is_empty() {
            bail!("{}: no embeddings/epoch_*.csv to draw", run.dir.display());
        }
        return Ok(written);
    }
    let grid = run.dir.join("embeddings.png");
    draw_grid(run, &snaps, &grid)?;
    written.push(grid);
    let gif = run.dir.join("embeddings.gif");
    draw_gif(run, &snaps, &gif)?;
    written.push(gif);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(epoch: usize) -> Snapshot {
        Snapshot { epoch, points: Vec::new() }
    }

    #[test]
    fn spread_keeps_first_and_last() {
        let snaps: Vec<Snapshot> = (0..=40).map(snap).collect();
        let picked: Vec<usize> = spread(&snaps, 9).iter().map(|s| s.epoch).collect();
        assert_eq!(picked.len(), 9);
        assert_eq!((picked[0], picked[8]), (0, 40));
        let few: Vec<usize> = spread(&snaps[..4], 9).iter().map(|s| s.epoch).collect();
        assert_eq!(few, [0, 1, 2, 3]);
    }

    #[test]
    fn draws_grid_gif_and_loss_from_a_run_folder() {
        let dir = std::env::temp_dir().join(format!("rnnlab-speaker-plot-{}", std::process::id()));
        let emb = dir.join("embeddings");
        std::fs::create_dir_all(&emb).unwrap();
        let config = serde_json::json!({
            "model": "speaker", "train_speakers": ["a", "b"], "unseen_speakers": ["c"]
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let mut csv = String::from("step,epoch,loss,lr,heldout_loss,heldout_accuracy\n");
        for s in 1..=6 {
            let end = s % 3 == 0;
            let h = if end { format!("{},0.9", 1.0 / s as f64) } else { ",".into() };
            csv.push_str(&format!("{s},{},{},0.001,{h}\n", (s + 2) / 3, 2.0 / s as f64));
        }
        std::fs::write(dir.join("metrics.csv"), csv).unwrap();
        for e in 0..3 {
            let mut t = String::from("set,speaker,pc1,pc2\n");
            for (k, (set, spk)) in
                [("train", "a"), ("train", "b"), ("heldout", "a"), ("unseen", "c")]
                    .iter()
                    .enumerate()
            {
                t.push_str(&format!("{set},{spk},{},{}\n", k as f64 * e as f64, -(k as f64)));
            }
            std::fs::write(emb.join(format!("epoch_{e:04}.csv")), t).unwrap();
        }
        let run = Run { dir: dir.clone(), model: "speaker".into(), config };
        let files = plot_run(&run).unwrap();
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 1000, "{} is too small", f.display());
        }
        let gif = std::fs::read(dir.join("embeddings.gif")).unwrap();
        assert_eq!(&gif[..3], b"GIF");
        // A row naming an unknown speaker is an error that names the file.
        std::fs::write(emb.join("epoch_0009.csv"), "set,speaker,pc1,pc2\ntrain,zz,0,0\n").unwrap();
        let e = plot_run(&run).unwrap_err().to_string();
        assert!(e.contains("epoch_0009.csv"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
