//! Mean ± standard deviation bands: several runs of one setting (the seeds
//! of a sweep) drawn as their mean curve over a shaded band one sample
//! standard deviation wide on each side.

use crate::{padded, register_fonts, tick, COLOURS, FONT, SIZE};
use anyhow::{anyhow, bail};
use plotters::prelude::*;
use std::path::Path;

/// One x of a band: the mean and sample standard deviation (n − 1) of the
/// runs that logged this x; `sd` is 0 where only one run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    pub x: f64,
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

/// Mean and sample standard deviation over `curves` at every x any of them
/// has (the x values of runs of one setting coincide), sorted by x;
/// non-finite values are left out.
pub fn mean_sd(curves: &[Vec<(f64, f64)>]) -> Vec<BandPoint> {
    let mut all: Vec<(f64, f64)> =
        curves.iter().flatten().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.chunk_by(|a, b| a.0 == b.0)
        .map(|group| {
            let n = group.len();
            let mean = group.iter().map(|p| p.1).sum::<f64>() / n as f64;
            let sd = if n > 1 {
                (group.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            } else {
                0.0
            };
            BandPoint { x: group[0].0, mean, sd, n }
        })
        .collect()
}

/// One setting's band and its legend label.
#[derive(Debug, Clone)]
pub struct Band {
    pub label: String,
    pub points: Vec<BandPoint>,
    /// Index into [`COLOURS`].
    pub colour: usize,
}

/// A titled chart of mean ± sd bands on linear axes.
#[derive(Debug, Clone)]
pub struct BandChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bands: Vec<Band>,
    /// Fixed y range; `None` fits the bands (with a 5% margin).
    pub y_range: Option<(f64, f64)>,
}

impl BandChart {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            bands: Vec::new(),
            y_range: None,
        }
    }

    /// Draws the chart into a PNG at `path` ([`SIZE`] pixels).
    pub fn draw(&self, path: &Path) -> anyhow::Result<()> {
        register_fonts()?;
        let all = || self.bands.iter().flat_map(|b| b.points.iter());
        if all().next().is_none() {
            bail!("{}: nothing to draw for {:?}", path.display(), self.title);
        }
        let xs: Vec<f64> = all().map(|p| p.x).collect();
        let ys: Vec<f64> = all().flat_map(|p| [p.mean - p.sd, p.mean + p.sd]).collect();
        let (x0, x1) = padded(&xs, 0.0);
        let (y0, y1) = self.y_range.unwrap_or_else(|| padded(&ys, 0.05));
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT, 30))
            .margin(20)
            .margin_right(50)
            .x_label_area_size(60)
            .y_label_area_size(90)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| tick(*x))
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 18))
            .axis_desc_style((FONT, 22))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(|e| err(&e))?;
        for b in &self.bands {
            let colour = COLOURS[b.colour % COLOURS.len()];
            // the band as one polygon: upper edge left to right, lower edge back
            let mut outline: Vec<(f64, f64)> =
                b.points.iter().map(|p| (p.x, p.mean + p.sd)).collect();
            outline.extend(b.points.iter().rev().map(|p| (p.x, p.mean - p.sd)));
            chart
                .draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.2).filled())))
                .map_err(|e| err(&e))?;
            if b.points.len() == 1 {
                // one x: a dot with its ± sd bar, since a line needs two points
                let p = b.points[0];
                let bar = vec![(p.x, p.mean - p.sd), (p.x, p.mean + p.sd)];
                chart
                    .draw_series([PathElement::new(bar, colour.stroke_width(2))])
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series([Circle::new((p.x, p.mean), 5, colour.filled())])
                    .map_err(|e| err(&e))?;
            }
            let mean = b.points.iter().map(|p| (p.x, p.mean));
            chart
                .draw_series(LineSeries::new(mean, colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(&b.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 20))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::png_size;

    #[test]
    fn mean_and_sample_sd_by_x() {
        // x = 1: values 1, 2, 6 -> mean 3, sd sqrt(((-2)^2 + 1 + 9) / 2) = sqrt(7)
        // x = 2: one run only -> sd 0; the NaN of the third run is left out
        let curves =
            vec![vec![(1.0, 1.0), (2.0, 4.0)], vec![(1.0, 2.0)], vec![(1.0, 6.0), (2.0, f64::NAN)]];
        let b = mean_sd(&curves);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].x, b[0].mean, b[0].n), (1.0, 3.0, 3));
        assert!((b[0].sd - 7f64.sqrt()).abs() < 1e-12);
        assert_eq!(b[1], BandPoint { x: 2.0, mean: 4.0, sd: 0.0, n: 1 });
        assert!(mean_sd(&[]).is_empty());
    }

    #[test]
    fn draws_a_png_of_the_figure_size() {
        let dir = std::env::temp_dir().join(format!("rnnlab-band-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let curves: Vec<Vec<(f64, f64)>> = (0..3)
            .map(|s| (1..=50).map(|i| (i as f64, 1.0 / i as f64 + 0.01 * s as f64)).collect())
            .collect();
        let mut chart = BandChart::new("bands", "step", "loss");
        chart.bands.push(Band { label: "a".into(), points: mean_sd(&curves), colour: 0 });
        let path = dir.join("band.png");
        chart.draw(&path).unwrap();
        assert_eq!(png_size(&path).unwrap(), SIZE);
        assert!(BandChart::new("empty", "x", "y").draw(&dir.join("e.png")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
