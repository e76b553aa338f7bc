//! A strip plot: one column per category (a sweep's settings), one dot per
//! value (a seed's score) with a short bar at the column's mean.

use crate::{padded, register_fonts, COLOURS, FONT, SIZE};
use anyhow::{anyhow, bail};
use plotters::prelude::*;
use std::path::Path;

/// One category's values.
#[derive(Debug, Clone)]
pub struct Strip {
    pub label: String,
    pub values: Vec<f64>,
}

/// A titled strip chart, categories left to right in the given order.
#[derive(Debug, Clone)]
pub struct StripChart {
    pub title: String,
    pub y_label: String,
    pub strips: Vec<Strip>,
}

/// Horizontal offset of the `i`-th of `n` dots in a column (within ±0.2),
/// so that equal values stay apart.
fn jitter(i: usize, n: usize) -> f64 {
    if n < 2 {
        0.0
    } else {
        -0.2 + 0.4 * i as f64 / (n - 1) as f64
    }
}

impl StripChart {
    pub fn new(title: impl Into<String>, y_label: impl Into<String>) -> Self {
        Self { title: title.into(), y_label: y_label.into(), strips: Vec::new() }
    }

    /// Draws the chart into a PNG at `path` ([`SIZE`] pixels).
    pub fn draw(&self, path: &Path) -> anyhow::Result<()> {
        register_fonts()?;
        let ys: Vec<f64> = self
            .strips
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
            .collect();
        if ys.is_empty() {
            bail!("{}: nothing to draw for {:?}", path.display(), self.title);
        }
        let (y0, y1) = padded(&ys, 0.08);
        let n = self.strips.len();
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let labels: Vec<String> = self.strips.iter().map(|s| s.label.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT, 30))
            .margin(20)
            .margin_right(50)
            .x_label_area_size(80)
            .y_label_area_size(90)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), y0..y1)
            .map_err(|e| err(&e))?;
        let label_of = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n.max(1) * 2 + 1)
            .x_label_formatter(&label_of)
            .y_desc(&self.y_label)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 22))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(|e| err(&e))?;
        for (c, s) in self.strips.iter().enumerate() {
            let colour = COLOURS[c % (COLOURS.len() - 1)];
            let finite: Vec<f64> = s.values.iter().copied().filter(|v| v.is_finite()).collect();
            let dots = finite.iter().enumerate().map(|(i, &v)| {
                Circle::new((c as f64 + jitter(i, finite.len()), v), 6, colour.filled())
            });
            chart.draw_series(dots).map_err(|e| err(&e))?;
            if !finite.is_empty() {
                let mean = finite.iter().sum::<f64>() / finite.len() as f64;
                let bar = vec![(c as f64 - 0.3, mean), (c as f64 + 0.3, mean)];
                chart
                    .draw_series(std::iter::once(PathElement::new(bar, BLACK.stroke_width(3))))
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::png_size;

    #[test]
    fn jitter_spreads_dots_within_the_column() {
        assert_eq!(jitter(0, 1), 0.0);
        assert_eq!((jitter(0, 3), jitter(1, 3), jitter(2, 3)), (-0.2, 0.0, 0.2));
    }

    #[test]
    fn draws_a_png_of_the_figure_size() {
        let dir = std::env::temp_dir().join(format!("rnnlab-strip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut chart = StripChart::new("strips", "validation accuracy");
        chart.strips.push(Strip { label: "lr-0.001".into(), values: vec![0.9, 0.92, 0.91] });
        chart.strips.push(Strip { label: "lr-0.002".into(), values: vec![0.95, f64::NAN] });
        let path = dir.join("strip.png");
        chart.draw(&path).unwrap();
        assert_eq!(png_size(&path).unwrap(), SIZE);
        assert!(StripChart::new("empty", "y").draw(&dir.join("e.png")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
