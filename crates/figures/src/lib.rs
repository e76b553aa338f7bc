//! rnnlab's figures, shared by `rnnlab plots` and the ported notebooks: the
//! embedded font, reading `metrics.csv`, row-averaging, and four drawers (a
//! generic multi-series line chart, a loss curve with its smoothed
//! version, mean ± sd bands over seeds, a strip plot), all PNG through
//! plotters' bitmap backend.
//!
//! Text needs no system font: DejaVu Sans (assets/DejaVuSans.ttf, licence
//! beside it) is compiled into the binary and registered with plotters'
//! `ab_glyph` backend under [`FONT`]. Call [`register_fonts`] once before
//! drawing (the drawers here do it themselves).

pub mod band;
pub mod scatter;
pub mod strip;

pub use band::{mean_sd, Band, BandChart, BandPoint};
pub use strip::{Strip, StripChart};

use anyhow::{anyhow, bail, Context};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// The font family every chart uses.
pub const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Figure size in pixels.
pub const SIZE: (u32, u32) = (1200, 750);

/// Colours for successive series (matplotlib's tab10, so figures look like
/// the coursework's), then a light grey ([`GREY`]).
pub const COLOURS: [RGBColor; 11] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(205, 205, 205),
];

/// Index of the light grey in [`COLOURS`], for raw data under a smoothed curve.
pub const GREY: usize = 10;

/// tab20's light half: the partners, in order, of the first ten [`COLOURS`].
const LIGHT: [RGBColor; 10] = [
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

/// Width and height of a PNG file, read from its header (the IHDR chunk).
pub fn png_size(path: &Path) -> anyhow::Result<(u32, u32)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        bail!("{} is not a PNG file", path.display());
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Ok((be(16), be(20)))
}

/// Colour of category `i` of `n` (a speaker, say): matplotlib's tab20, strong
/// colours first, up to 20 categories; beyond, hues a golden-ratio step apart
/// in two lightnesses, so that neighbours stay apart.
pub fn category_colour(i: usize, n: usize) -> RGBColor {
    if n <= 20 {
        let k = i % 20;
        return if k < 10 { COLOURS[k] } else { LIGHT[k - 10] };
    }
    let light = if i.is_multiple_of(2) { 0.42 } else { 0.62 };
    let hue = (i as f64 * 0.618_034).fract();
    let (r, g, b) = HSLColor(hue, 0.75, light).to_backend_color().rgb;
    RGBColor(r, g, b)
}

/// Registers the embedded DejaVu Sans as [`FONT`] (every style falls back to
/// it). Idempotent.
pub fn register_fonts() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if !ok {
        bail!("the embedded DejaVu Sans font could not be parsed");
    }
    Ok(())
}

/// `metrics.csv` of a run: its header and rows, empty cells as `None`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Option<f64>>>,
}

impl Metrics {
    /// Reads a CSV with a header line and numeric (or empty) cells.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let header: Vec<String> = reader
            .headers()
            .with_context(|| format!("reading {}", path.display()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader
            .deserialize::<Vec<Option<f64>>>()
            .enumerate()
            .map(|(i, row)| {
                row.with_context(|| format!("{}, line {}: not a number", path.display(), i + 2))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { header, rows })
    }

    /// Index of a column, or an error naming the columns there are.
    pub fn column_index(&self, name: &str) -> anyhow::Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("no column {name:?} in {:?}", self.header))
    }

    /// `(x, y)` pairs of two columns, skipping rows where either is empty.
    pub fn xy(&self, x: &str, y: &str) -> anyhow::Result<Vec<(f64, f64)>> {
        let (ix, iy) = (self.column_index(x)?, self.column_index(y)?);
        Ok(self
            .rows
            .iter()
            .filter_map(|r| Some((r.get(ix).copied()??, r.get(iy).copied()??)))
            .collect())
    }
}

/// Means over consecutive rows of `k` points, as the lecture's
/// `torch.tensor(lossi).view(-1, k).mean(1)`: x is the last x of each row; a
/// partial last row is dropped, unless there is no full row at all.
pub fn row_average(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    let k = k.max(1);
    let rows: Vec<&[(f64, f64)]> = if points.len() >= k {
        points.chunks_exact(k).collect()
    } else if points.is_empty() {
        Vec::new()
    } else {
        vec![points]
    };
    rows.iter()
        .map(|row| {
            let mean = row.iter().map(|p| p.1).sum::<f64>() / row.len() as f64;
            (row[row.len() - 1].0, mean)
        })
        .collect()
}

/// One line of a [`LineChart`].
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Colour index into [`COLOURS`].
    pub colour: usize,
    /// Line width in pixels (1 for raw data, 2-3 for the main curve).
    pub width: u32,
    /// Opacity, 0 to 1 (e.g. 0.3 for raw, noisy data under a smoothed curve).
    pub opacity: f64,
}

impl Series {
    /// A solid line of width 2 in colour `colour`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, colour: usize) -> Self {
        Self { label: label.into(), points, colour, width: 2, opacity: 1.0 }
    }
}

/// A titled chart of several series on linear axes.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data (with a 5% margin).
    pub y_range: Option<(f64, f64)>,
}

impl LineChart {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: None,
        }
    }

    /// Draws the chart into a PNG at `path` ([`SIZE`] pixels).
    pub fn draw(&self, path: &Path) -> anyhow::Result<()> {
        register_fonts()?;
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        if all().next().is_none() {
            bail!("{}: nothing to draw for {:?}", path.display(), self.title);
        }
        let finite = |v: &f64| v.is_finite();
        let xs: Vec<f64> = all().map(|p| p.0).filter(finite).collect();
        let ys: Vec<f64> = all().map(|p| p.1).filter(finite).collect();
        let (x0, x1) = padded(&xs, 0.0);
        let (y0, y1) = self.y_range.unwrap_or_else(|| padded(&ys, 0.05));

        let draw_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT, 30))
            .margin(20)
            .margin_right(50)
            .x_label_area_size(60)
            .y_label_area_size(90)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_err(&e))?;
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
            .map_err(|e| draw_err(&e))?;
        let mut labelled = false;
        for s in &self.series {
            let colour = COLOURS[s.colour % COLOURS.len()].mix(s.opacity);
            let style = colour.stroke_width(s.width);
            let points = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite());
            let drawn =
                chart.draw_series(LineSeries::new(points, style)).map_err(|e| draw_err(&e))?;
            if !s.label.is_empty() {
                labelled = true;
                drawn.label(&s.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                });
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 20))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(|e| draw_err(&e))?;
        }
        root.present().map_err(|e| draw_err(&e))?;
        Ok(())
    }
}

/// A tick label: whole numbers without decimals (steps, epochs), others with
/// at most six.
fn tick(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        // at most six decimals, so that 2.6 does not print as 2.5999999999999996
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Min and max of `v`, widened by `margin` of the span (and never empty).
fn padded(v: &[f64], margin: f64) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        let c = if lo.is_finite() { lo } else { 0.0 };
        return (c - 0.5, c + 0.5);
    }
    (lo - margin * span, hi + margin * span)
}

/// A training-loss figure: the raw per-step values (faint) and their means
/// over rows of `k` steps (bold), optionally with extra series (e.g. a
/// validation loss) on the same axes.
pub struct LossCurve<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    /// `(step, value)` per logged step.
    pub raw: &'a [(f64, f64)],
    /// Row length for the smoothed curve (the lecture: 1000).
    pub k: usize,
    pub extra: Vec<Series>,
}

impl LossCurve<'_> {
    /// Raw points drawn at most (a longer run shows every n-th step).
    pub const MAX_RAW: usize = 4000;

    pub fn draw(self, path: &Path) -> anyhow::Result<()> {
        let smooth = row_average(self.raw, self.k);
        let mut chart = LineChart::new(self.title, "step", self.y_label);
        // the raw curve spans a much wider range than the trend: fit the axes
        // to the smoothed curve and the extras; raw excursions are clipped
        let mut fit: Vec<f64> = smooth.iter().map(|p| p.1).collect();
        fit.extend(self.extra.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let (lo, hi) = padded(&fit, 0.25);
        chart.y_range = Some((lo, hi));
        let every = self.raw.len().div_ceil(Self::MAX_RAW).max(1);
        let raw: Vec<(f64, f64)> = self.raw.iter().step_by(every).copied().collect();
        let label = if every == 1 {
            "every step".to_owned()
        } else {
            format!("single steps (1 in {every})")
        };
        // light grey, opaque: thousands of overlapping translucent segments
        // would add up to a solid band
        chart.series.push(Series { label, points: raw, colour: GREY, width: 1, opacity: 1.0 });
        chart.series.push(Series {
            width: 3,
            ..Series::new(format!("mean of {} steps", self.k), smooth, 0)
        });
        chart.series.extend(self.extra);
        chart.draw(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_colours_are_tab20_then_distinct_hues() {
        // matplotlib's tab20: (31, 119, 180) then its light partner (174, 199, 232)
        assert_eq!(category_colour(0, 20), RGBColor(31, 119, 180));
        assert_eq!(category_colour(10, 20), RGBColor(174, 199, 232));
        for n in [4, 20, 26, 40] {
            let mut all: Vec<_> = (0..n).map(|i| category_colour(i, n)).collect();
            all.sort_by_key(|c| (c.0, c.1, c.2));
            all.dedup();
            assert_eq!(all.len(), n, "{n} categories share colours");
        }
    }

    #[test]
    fn row_average_is_the_lectures_view_mean() {
        let pts: Vec<(f64, f64)> = (1..=7).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(row_average(&pts, 3), [(3.0, 2.0), (6.0, 5.0)]);
        assert_eq!(row_average(&pts[..2], 3), [(2.0, 1.5)]);
        assert!(row_average(&[], 3).is_empty());
    }

    #[test]
    fn draws_a_png_with_the_embedded_font() {
        let dir = std::env::temp_dir().join(format!("rnnlab-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw: Vec<(f64, f64)> = (1..=3000)
            .map(|i| (i as f64, 3.0 / (i as f64).sqrt() + 0.1 * ((i % 7) as f64)))
            .collect();
        let val = vec![(1000.0, 0.3), (3000.0, 0.2)];
        let path = dir.join("loss.png");
        LossCurve {
            title: "test loss",
            y_label: "loss",
            raw: &raw,
            k: 1000,
            extra: vec![Series::new("val", val, 1)],
        }
        .draw(&path)
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_metrics_with_empty_cells() {
        let dir = std::env::temp_dir().join(format!("rnnlab-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(["step", "loss", "val_loss"]).unwrap();
        w.serialize((1, 3.0, None::<f64>)).unwrap();
        w.serialize((2, 2.5, Some(2.7))).unwrap();
        w.flush().unwrap();
        let m = Metrics::read(&path).unwrap();
        assert_eq!(m.xy("step", "loss").unwrap(), [(1.0, 3.0), (2.0, 2.5)]);
        assert_eq!(m.xy("step", "val_loss").unwrap(), [(2.0, 2.7)]);
        assert!(m.xy("step", "acc").unwrap_err().to_string().contains("acc"));
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(["step", "loss"]).unwrap();
        w.write_record(["1", "x"]).unwrap();
        w.flush().unwrap();
        assert!(Metrics::read(&path).unwrap_err().to_string().contains("line 2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
