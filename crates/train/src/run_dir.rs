//! A training run's folder: `config.json`, `metrics.csv`, `summary.json` and
//! safetensors checkpoints, shared by every model's `train`.
//!
//! Every file that a crash could leave half-written (checkpoints, JSON) is
//! written to a temporary file in the same folder and renamed over the old
//! one, so a killed run keeps its last complete checkpoint.

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// The folder of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `out`, or `results/<model>-<timestamp>` when `out` is `None`.
    pub fn create(out: Option<&Path>, model: &str) -> anyhow::Result<Self> {
        let path = match out {
            Some(p) => p.to_path_buf(),
            None => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
                PathBuf::from("results").join(format!("{model}-{stamp}"))
            }
        };
        fs::create_dir_all(&path)
            .with_context(|| format!("creating run folder {}", path.display()))?;
        Ok(Self { path })
    }

    /// Opens an existing run (for `--resume`, `eval`, `sample`).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.join("config.json").is_file() {
            bail!("{} is not a run folder: it has no config.json", path.display());
        }
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` (e.g. `config.json`) atomically.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        let target = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &target).with_context(|| format!("writing {}", target.display()))
    }

    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        let path = self.file(name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Saves every variable of `vs` as `<name>.safetensors` (PyTorch's names,
    /// e.g. `rnn_cell_list.0.weight_ih`), through a temporary file and a rename.
    pub fn save_checkpoint(&self, vs: &VarStore, name: &str) -> anyhow::Result<()> {
        let target = self.file(&format!("{name}.safetensors"));
        // tch picks the format from the extension, so the temporary name keeps it.
        let tmp = self.file(&format!(".{name}.tmp.safetensors"));
        vs.save(&tmp).with_context(|| format!("writing checkpoint {}", tmp.display()))?;
        fs::rename(&tmp, &target)
            .with_context(|| format!("writing checkpoint {}", target.display()))
    }

    /// Loads `<name>.safetensors` into `vs`; every variable must be present.
    pub fn load_checkpoint(&self, vs: &mut VarStore, name: &str) -> anyhow::Result<()> {
        let path = self.file(&format!("{name}.safetensors"));
        if !path.is_file() {
            bail!("checkpoint {} does not exist", path.display());
        }
        vs.load(&path).with_context(|| format!("loading checkpoint {}", path.display()))
    }

    /// Saves named tensors (e.g. optimiser moments) as `<name>.safetensors`, atomically.
    pub fn save_tensors(
        &self,
        name: &str,
        tensors: &[(String, tch::Tensor)],
    ) -> anyhow::Result<()> {
        let target = self.file(&format!("{name}.safetensors"));
        let tmp = self.file(&format!(".{name}.tmp.safetensors"));
        tch::Tensor::write_safetensors(tensors, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &target).with_context(|| format!("writing {}", target.display()))
    }

    /// Reads what [`RunDir::save_tensors`] wrote.
    pub fn read_tensors(&self, name: &str) -> anyhow::Result<Vec<(String, tch::Tensor)>> {
        let path = self.file(&format!("{name}.safetensors"));
        tch::Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// `metrics.csv`: a header, then one row per log, flushed as written so a
/// crash keeps every finished row.
pub struct MetricsCsv {
    file: File,
    columns: usize,
}

impl MetricsCsv {
    /// Creates the file with `header`, or, when `resume`, keeps its rows up to
    /// and including `keep_through_step` (first column) and appends after them.
    pub fn open(path: &Path, header: &[&str], resume: Option<u64>) -> anyhow::Result<Self> {
        let head = header.join(",");
        let kept = match resume {
            Some(step) if path.exists() => {
                let reader = BufReader::new(
                    File::open(path).with_context(|| format!("reading {}", path.display()))?,
                );
                let mut lines = reader.lines();
                let first = lines.next().transpose()?.unwrap_or_default();
                if first != head {
                    bail!("{}: header {first:?} differs from {head:?}", path.display());
                }
                let mut kept = Vec::new();
                for line in lines {
                    let line = line?;
                    let row_step: u64 = line
                        .split(',')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .with_context(|| format!("{}: bad row {line:?}", path.display()))?;
                    if row_step <= step {
                        kept.push(line);
                    }
                }
                kept
            }
            _ => Vec::new(),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{head}")?;
        for line in kept {
            writeln!(file, "{line}")?;
        }
        Ok(Self { file, columns: header.len() })
    }

    /// Appends one row; empty strings stand for values not measured at this step.
    pub fn row(&mut self, values: &[String]) -> anyhow::Result<()> {
        debug_assert_eq!(values.len(), self.columns);
        writeln!(self.file, "{}", values.join(","))?;
        self.file.flush()?;
        Ok(())
    }
}
