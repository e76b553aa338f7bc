//! Scatter panels of speaker embeddings projected to 2-D, and their legend:
//! the one drawing of `rnnlab plots`' speaker figures and the speaker-lab
//! notebook.
//!
//! Every speaker has one colour ([`category_colour`] over all speakers,
//! training speakers first); the marker says which utterances a point stands
//! for: a small dot for a training utterance, a ring for a training speaker's
//! held-out utterance, a triangle for a speaker never trained on.

use crate::{category_colour, FONT};
use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Which utterances a point stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A training speaker's utterance that was trained on.
    Train,
    /// A training speaker's utterance kept out of training.
    Heldout,
    /// An utterance of a speaker kept out of training.
    Unseen,
}

/// One utterance's projection.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub kind: PointKind,
    /// The speaker: an index into the training speakers, then the unseen ones
    /// (unseen speaker `k` is `train.len() + k`).
    pub speaker: usize,
    pub x: f64,
    pub y: f64,
}

/// The data's span along one axis, padded by 6%; a unit span around a
/// single value.
fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !(hi - lo).is_finite() || hi <= lo {
        return (lo.min(0.0) - 1.0, hi.max(0.0) + 1.0);
    }
    let pad = 0.06 * (hi - lo);
    (lo - pad, hi + pad)
}

/// One scatter panel of `points` on `area`, captioned, its text `size` pixels
/// high, coloured among `speakers` speakers.
pub fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[Point],
    caption: &str,
    size: u32,
    speakers: usize,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {caption:?}: {e}");
    let xr = range(points.iter().map(|p| p.x));
    let yr = range(points.iter().map(|p| p.y));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, size + 8))
        .margin(8)
        .x_label_area_size(28 + size)
        .y_label_area_size(40 + size)
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("PC 1")
        .y_desc("PC 2")
        .label_style((FONT, size))
        .axis_desc_style((FONT, size + 2))
        .x_labels(5)
        .y_labels(5)
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(|e| err(&e))?;
    let colour = |p: &Point| category_colour(p.speaker, speakers);
    for kind in [PointKind::Train, PointKind::Heldout, PointKind::Unseen] {
        let pts = points.iter().filter(|p| p.kind == kind);
        match kind {
            PointKind::Train => chart
                .draw_series(pts.map(|p| Circle::new((p.x, p.y), 3, colour(p).mix(0.6).filled()))),
            PointKind::Heldout => chart
                .draw_series(pts.map(|p| Circle::new((p.x, p.y), 5, colour(p).stroke_width(2)))),
            PointKind::Unseen => chart.draw_series(
                pts.map(|p| TriangleMarker::new((p.x, p.y), 5, colour(p).mix(0.8).filled())),
            ),
        }
        .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// A legend column: a coloured marker and the name of every training and
/// unseen speaker, then what each marker in `kinds` means.
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    train: &[String],
    unseen: &[String],
    kinds: &[PointKind],
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
    if !train.is_empty() {
        line("training speakers", None)?;
        for (i, s) in train.iter().enumerate() {
            line(s, Some((i, false)))?;
        }
        line("", None)?;
    }
    if !unseen.is_empty() {
        line("unseen speakers", None)?;
        for (i, s) in unseen.iter().enumerate() {
            line(s, Some((train.len() + i, true)))?;
        }
    }
    line("", None)?;
    for kind in kinds {
        line(
            match kind {
                PointKind::Train => "dot: training utterance",
                PointKind::Heldout => "ring: held-out utterance",
                PointKind::Unseen => "triangle: unseen speaker",
            },
            None,
        )?;
    }
    Ok(())
}
