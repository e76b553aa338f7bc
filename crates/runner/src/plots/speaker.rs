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
use crate::config::RunSummary;
use crate::speaker::{EmbeddingRow, SpeakerRunConfig};
use anyhow::{anyhow, bail, Context};
use figures::scatter::{draw_legend, draw_panel, Point, PointKind};
use figures::{register_fonts, LossCurve, Metrics, Series, FONT};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Panels of the grid figure.
const GRID: (usize, usize) = (3, 3);
/// Milliseconds per animation frame.
const FRAME_MS: u32 = 400;
/// The markers the legend explains (triangles are the unseen speakers' own).
const MARKERS: &[PointKind] = &[PointKind::Train, PointKind::Heldout];

/// The projections of one epoch.
struct Snapshot {
    epoch: usize,
    points: Vec<Point>,
}

fn read_snapshot(path: &Path, train: &[String], unseen: &[String]) -> anyhow::Result<Vec<Point>> {
    let rows: Vec<EmbeddingRow> = train::metrics::read_rows(path)?;
    let mut points = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let bad = || anyhow!("{}:{}: bad row {row:?}", path.display(), i + 2);
        let kind = match row.set.as_str() {
            "train" => PointKind::Train,
            "heldout" => PointKind::Heldout,
            "unseen" => PointKind::Unseen,
            _ => return Err(bad()),
        };
        let speaker = match kind {
            PointKind::Unseen => {
                unseen.iter().position(|s| *s == row.speaker).map(|p| p + train.len())
            }
            _ => train.iter().position(|s| *s == row.speaker),
        }
        .ok_or_else(bad)?;
        points.push(Point { kind, speaker, x: row.pc1, y: row.pc2 });
    }
    Ok(points)
}

fn read_snapshots(run: &Run, cfg: &SpeakerRunConfig) -> anyhow::Result<Vec<Snapshot>> {
    let (train, unseen) = (&cfg.train_speakers, &cfg.unseen_speakers);
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
        snaps.push(Snapshot { epoch, points: read_snapshot(&path, train, unseen)? });
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

/// `<run>/embeddings.png`: up to 9 epochs in a grid, with a legend.
fn draw_grid(
    cfg: &SpeakerRunConfig,
    snaps: &[Snapshot],
    path: &Path,
    note: &str,
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let (train, unseen) = (&cfg.train_speakers, &cfg.unseen_speakers);
    let root = BitMapBackend::new(path, (1600, 1240)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!("Speaker embeddings (PCA to 2-D) during training{note}");
    let root = root.titled(&title, (FONT, 26)).map_err(|e| err(&e))?;
    let (grid, legend) = root.split_horizontally(1340);
    let panels = grid.split_evenly(GRID);
    for (area, snap) in panels.iter().zip(spread(snaps, GRID.0 * GRID.1)) {
        let n = train.len() + unseen.len();
        draw_panel(area, &snap.points, &format!("epoch {}", snap.epoch), 14, n)?;
    }
    draw_legend(&legend, train, unseen, MARKERS)?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// `<run>/embeddings.gif`: every saved epoch, one frame each, the last held longer.
fn draw_gif(
    cfg: &SpeakerRunConfig,
    snaps: &[Snapshot],
    path: &Path,
    note: &str,
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let (train, unseen) = (&cfg.train_speakers, &cfg.unseen_speakers);
    let root =
        BitMapBackend::gif(path, (1000, 700), FRAME_MS).map_err(|e| err(&e))?.into_drawing_area();
    let last = snaps.last().map(|s| s.epoch);
    for snap in snaps {
        let repeats = if Some(snap.epoch) == last { 6 } else { 1 };
        for _ in 0..repeats {
            root.fill(&WHITE).map_err(|e| err(&e))?;
            let (chart, legend) = root.split_horizontally(740);
            let caption = format!("speaker embeddings (PCA), epoch {}{note}", snap.epoch);
            draw_panel(&chart, &snap.points, &caption, 15, train.len() + unseen.len())?;
            draw_legend(&legend, train, unseen, MARKERS)?;
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
    let heldout = log(metrics.xy("step", "valid_loss")?);
    // Rows of one epoch: the steps between two held-out evaluations.
    let per_epoch = heldout.first().map_or(10, |p| p.0 as usize).max(1);
    let note = match run.summary() {
        Some(RunSummary::Speaker(s)) => format!(", final loss {:.4}", s.final_loss),
        _ => String::new(),
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

/// `"; unseen purity 97.5% (baseline 99.3%)"` for a title, or empty when
/// there is no purity.
pub fn purity_note(unseen: Option<f64>, baseline: Option<f64>) -> String {
    match (unseen, baseline) {
        (Some(u), Some(b)) => {
            format!("; unseen purity {:.1}% (baseline {:.1}%)", 100.0 * u, 100.0 * b)
        }
        (Some(u), None) => format!("; unseen purity {:.1}%", 100.0 * u),
        (None, Some(b)) => format!("; baseline purity {:.1}%", 100.0 * b),
        (None, None) => String::new(),
    }
}

/// `loss.png`, `embeddings.png` and `embeddings.gif` in the run folder.
pub fn plot_run(run: &Run, cfg: &SpeakerRunConfig) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts()?;
    let mut written = Vec::new();
    let loss = run.dir.join("loss.png");
    if draw_loss(run, &loss)? {
        written.push(loss);
    } else {
        println!("{}: no steps logged yet", run.dir.display());
    }
    let snaps = read_snapshots(run, cfg)?;
    if snaps.is_empty() {
        if !written.is_empty() {
            bail!("{}: no embeddings/epoch_*.csv to draw", run.dir.display());
        }
        return Ok(written);
    }
    let note = match run.summary() {
        Some(RunSummary::Speaker(s)) => purity_note(s.unseen_purity, s.baseline_purity),
        _ => String::new(),
    };
    let grid = run.dir.join("embeddings.png");
    draw_grid(cfg, &snaps, &grid, &note)?;
    written.push(grid);
    let gif = run.dir.join("embeddings.gif");
    draw_gif(cfg, &snaps, &gif, &note)?;
    written.push(gif);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;

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
        let cfg = SpeakerRunConfig {
            speaker: models::speaker::SpeakerConfig {
                input_size: 20,
                hidden_size: 4,
                num_layers: 1,
                num_speakers: 2,
                head: models::speaker::SpeakerHead::LAB,
            },
            train: crate::speaker::SpeakerTrain::default(),
            data_dir: dir.clone(),
            window_samples: data::speakers::WINDOW_SAMPLES,
            window_frames: data::speakers::WINDOW_FRAMES,
            mfcc: data::mfcc::MfccConfig::default(),
            standardizer: data::loader::Standardizer { mean: vec![0.0], std: vec![1.0] },
            train_speakers: vec!["a".into(), "b".into()],
            speed_speakers: Vec::new(),
            unseen_speakers: vec!["c".into()],
            val_speakers: Vec::new(),
            snapshot_epochs: vec![0, 1, 2],
            valid_every: None,
            patience: None,
        };
        let config = RunConfig::Speaker(cfg.clone());
        std::fs::write(dir.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
        let mut m = csv::Writer::from_path(dir.join("metrics.csv")).unwrap();
        m.write_record(["step", "epoch", "loss", "lr", "valid_loss", "heldout_accuracy"]).unwrap();
        for s in 1..=6u32 {
            let end = s % 3 == 0;
            let valid = |v: f64| if end { v.to_string() } else { String::new() };
            let (epoch, loss) = (s.div_ceil(3), 2.0 / s as f64);
            m.write_record([
                s.to_string(),
                epoch.to_string(),
                loss.to_string(),
                "0.001".into(),
                valid(1.0 / s as f64),
                valid(0.9),
            ])
            .unwrap();
        }
        m.flush().unwrap();
        for e in 0..3 {
            let path = emb.join(format!("epoch_{e:04}.csv"));
            let mut w = csv::Writer::from_path(path).unwrap();
            for (k, (set, spk)) in
                [("train", "a"), ("train", "b"), ("heldout", "a"), ("unseen", "c")]
                    .iter()
                    .enumerate()
            {
                let (pc1, pc2) = (k as f64 * e as f64, -(k as f64));
                let row = EmbeddingRow { set: set.to_string(), speaker: spk.to_string(), pc1, pc2 };
                w.serialize(row).unwrap();
            }
            w.flush().unwrap();
        }
        let run = Run { dir: dir.clone(), model: crate::train::ModelKind::Speaker, config };
        let files = plot_run(&run, &cfg).unwrap();
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 1000, "{} is too small", f.display());
        }
        let gif = std::fs::read(dir.join("embeddings.gif")).unwrap();
        assert_eq!(purity_note(Some(0.975), Some(0.993)), "; unseen purity 97.5% (baseline 99.3%)");
        assert_eq!(purity_note(None, None), "");
        assert_eq!(&gif[..3], b"GIF");
        // A row naming an unknown speaker is an error that names the file.
        let mut w = csv::Writer::from_path(emb.join("epoch_0009.csv")).unwrap();
        let row = EmbeddingRow { set: "train".into(), speaker: "zz".into(), pc1: 0.0, pc2: 0.0 };
        w.serialize(row).unwrap();
        w.flush().unwrap();
        let e = plot_run(&run, &cfg).unwrap_err().to_string();
        assert!(e.contains("epoch_0009.csv"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
