//! `metrics.csv`: one row per training step, written through the `csv` crate.
//!
//! Every model's file starts with the same columns, `step, epoch, loss, lr,
//! valid_loss`, then its own validation scores ([`Scores::COLUMNS`]), then
//! `seconds` (training time so far). The validation columns are filled on
//! the steps that validated and empty elsewhere. Rows are flushed as written,
//! so a killed run keeps every finished row; a resumed run keeps the rows up
//! to its checkpoint and appends after them.

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A task's validation scores besides the loss: a struct of numbers whose
/// field names are [`Scores::COLUMNS`], in order.
pub trait Scores: Serialize + DeserializeOwned + Clone + std::fmt::Debug {
    const COLUMNS: &'static [&'static str];
}

/// No scores besides the validation loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct NoScores {}

impl Scores for NoScores {
    const COLUMNS: &'static [&'static str] = &[];
}

/// The columns every `metrics.csv` starts with.
pub const LEAD_COLUMNS: [&str; 5] = ["step", "epoch", "loss", "lr", "valid_loss"];

/// One row as written. `scores` stands for the task's columns; the csv
/// crate writes a nested struct's fields in place.
#[derive(Serialize)]
struct Row<'a, S> {
    step: u64,
    epoch: u64,
    loss: Option<f32>,
    lr: Option<f64>,
    valid_loss: Option<f64>,
    scores: &'a S,
    seconds: f64,
}

/// The header of a task's `metrics.csv`.
pub fn header<S: Scores>() -> Vec<&'static str> {
    let mut h = LEAD_COLUMNS.to_vec();
    h.extend_from_slice(S::COLUMNS);
    h.push("seconds");
    h
}

/// Appends rows to `metrics.csv`.
pub struct MetricsWriter<S> {
    writer: csv::Writer<File>,
    path: PathBuf,
    empty: Vec<Option<f64>>,
    _scores: std::marker::PhantomData<S>,
}

impl<S: Scores> MetricsWriter<S> {
    /// Creates the file with its header or, when `resume_step` is given, keeps
    /// the existing rows up to that step and appends after them.
    pub fn open(path: &Path, resume_step: Option<u64>) -> anyhow::Result<Self> {
        let head = header::<S>();
        let mut kept: Vec<csv::StringRecord> = Vec::new();
        if let (Some(step), true) = (resume_step, path.exists()) {
            let mut reader = csv::Reader::from_path(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let found: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
            if found != head {
                bail!("{}: header {found:?} differs from {head:?}", path.display());
            }
            for record in reader.records() {
                let record = record.with_context(|| format!("reading {}", path.display()))?;
                let row_step: u64 = record
                    .get(0)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("{}: bad row {record:?}", path.display()))?;
                if row_step <= step {
                    kept.push(record);
                }
            }
        }
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_path(path)
            .with_context(|| format!("creating {}", path.display()))?;
        writer.write_record(&head)?;
        for record in &kept {
            writer.write_record(record)?;
        }
        writer.flush()?;
        Ok(Self {
            writer,
            path: path.to_path_buf(),
            empty: vec![None; S::COLUMNS.len()],
            _scores: std::marker::PhantomData,
        })
    }

    /// Appends one step's row; `valid` on the steps that validated.
    pub fn row(
        &mut self,
        step: u64,
        epoch: u64,
        loss: f32,
        lr: f64,
        valid: Option<(f64, &S)>,
        seconds: f64,
    ) -> anyhow::Result<()> {
        let seconds = (seconds * 1e3).round() / 1e3;
        let result = match valid {
            Some((valid_loss, scores)) => self.writer.serialize(Row {
                step,
                epoch,
                loss: Some(loss),
                lr: Some(lr),
                valid_loss: Some(valid_loss),
                scores,
                seconds,
            }),
            None => {
                self.writer.serialize((step, epoch, loss, lr, None::<f64>, &self.empty, seconds))
            }
        };
        result.with_context(|| format!("writing {}", self.path.display()))
    }

    /// The validation of the weights a run starts from, before its first
    /// step: step 0, with no training loss or rate.
    pub fn start_row(&mut self, valid_loss: f64, scores: &S) -> anyhow::Result<()> {
        let row = Row {
            step: 0,
            epoch: 0,
            loss: None,
            lr: None,
            valid_loss: Some(valid_loss),
            scores,
            seconds: 0.0,
        };
        self.writer.serialize(row).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Pushes the rows written so far to the file.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.flush().with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Reads every row of a `metrics.csv` as `R` (a model's typed row).
pub fn read_rows<R: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<R>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    reader
        .deserialize()
        .collect::<Result<Vec<R>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Acc {
        valid_acc: f64,
        test_acc: Option<f64>,
    }

    impl Scores for Acc {
        const COLUMNS: &'static [&'static str] = &["valid_acc", "test_acc"];
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct AccRow {
        step: u64,
        epoch: u64,
        loss: Option<f32>,
        lr: Option<f64>,
        valid_loss: Option<f64>,
        valid_acc: Option<f64>,
        test_acc: Option<f64>,
        seconds: f64,
    }

    #[test]
    fn rows_round_trip_and_resume_keeps_the_checkpointed_ones() {
        let dir = std::env::temp_dir().join(format!("train-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        let acc = Acc { valid_acc: 0.5, test_acc: Some(0.25) };
        {
            let mut w = MetricsWriter::<Acc>::open(&path, None).unwrap();
            w.start_row(2.75, &acc).unwrap();
            w.row(1, 0, 2.5, 0.1, None, 0.0101).unwrap();
            w.row(2, 0, 1.5, 0.1, Some((1.75, &acc)), 0.02).unwrap();
            w.row(3, 1, 0.5, 0.05, None, 0.03).unwrap();
            w.flush().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "step,epoch,loss,lr,valid_loss,valid_acc,test_acc,seconds\n\
             0,0,,,2.75,0.5,0.25,0.0\n\
             1,0,2.5,0.1,,,,0.01\n2,0,1.5,0.1,1.75,0.5,0.25,0.02\n3,1,0.5,0.05,,,,0.03\n"
        );
        let rows: Vec<AccRow> = read_rows(&path).unwrap();
        assert_eq!((rows[0].step, rows[0].loss, rows[0].lr), (0, None, None));
        assert_eq!(rows[0].valid_loss, Some(2.75));
        assert_eq!(rows[2].valid_acc, Some(0.5));
        assert_eq!(rows[1].valid_loss, None);
        {
            let mut w = MetricsWriter::<Acc>::open(&path, Some(2)).unwrap();
            w.row(3, 1, 0.25, 0.05, None, 0.04).unwrap();
            w.flush().unwrap();
        }
        let rows: Vec<AccRow> = read_rows(&path).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[3].step, rows[3].epoch, rows[3].loss), (3, 1, Some(0.25)));
        assert_eq!((rows[3].lr, rows[3].test_acc, rows[3].seconds), (Some(0.05), None, 0.04));
        // another model's file is refused, not mixed
        assert!(MetricsWriter::<NoScores>::open(&path, Some(2)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
