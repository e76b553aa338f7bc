//! `sweep.json`: what a sweep is (its axes, seeds, fixed flags) and every
//! run's folder and command line, written atomically when the sweep starts
//! and when a Slurm job is submitted. Every other sweep command reads it.

use super::grid::Axis;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use train::RunDir;

/// The manifest's file name in the sweep folder.
pub const MANIFEST: &str = "sweep.json";

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Its number (a Slurm array task's `SLURM_ARRAY_TASK_ID`).
    pub index: usize,
    /// The combination's folder name.
    pub combo: String,
    /// The combination's `(flag, value)` pairs, one per axis.
    pub values: Vec<(String, String)>,
    pub seed: u64,
    /// The run folder, relative to the sweep folder: `<combo>/seed<k>`.
    pub dir: PathBuf,
    /// The whole `rnnlab` command line of a fresh start, run from `workdir`.
    pub argv: Vec<String>,
}

/// Slurm settings of the job-array script (`rnnlab sweep run --slurm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: u32,
    pub mem: Option<String>,
    /// At most this many array tasks at once (`--array=0-N%K`).
    pub max_running: Option<usize>,
}

/// The Slurm side of a sweep: its script and the jobs submitted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmJob {
    /// The job-array script, in the sweep folder.
    pub script: String,
    pub options: SlurmOptions,
    /// Job ids from `sbatch --parsable`, oldest first (each re-run submits one).
    pub job_ids: Vec<String>,
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub name: String,
    /// The folder runs start in (relative paths in the flags, such as
    /// `--data-dir`, are relative to it).
    pub workdir: PathBuf,
    /// `--device` of every run.
    pub device: String,
    /// Intra-op threads of every run.
    pub threads: i32,
    pub axes: Vec<Axis>,
    pub seeds: Vec<u64>,
    /// `rnnlab train` flags every run shares.
    pub fixed: Vec<String>,
    pub runs: Vec<RunSpec>,
    #[serde(default)]
    pub slurm: Option<SlurmJob>,
}

impl Sweep {
    /// Reads `<dir>/sweep.json`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            bail!(
                "{} is not a sweep folder: it has no {MANIFEST} (start one with `rnnlab sweep run`)",
                dir.display()
            );
        }
        RunDir::create(Some(dir), "")?.read_json(MANIFEST)
    }

    /// Writes `<dir>/sweep.json` atomically.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        RunDir::create(Some(dir), "")?.write_json(MANIFEST, self)
    }

    /// Whether `other` describes the same runs (the Slurm side may differ).
    pub fn same_runs(&self, other: &Sweep) -> bool {
        self.runs == other.runs && self.device == other.device && self.threads == other.threads
    }

    /// The run with this number, or an error naming the range.
    pub fn run(&self, index: usize) -> anyhow::Result<&RunSpec> {
        self.runs.get(index).with_context(|| {
            format!(
                "sweep {:?} has runs 0 to {}; there is no run {index}",
                self.name,
                self.runs.len().saturating_sub(1)
            )
        })
    }
}
