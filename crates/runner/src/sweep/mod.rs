//! `rnnlab sweep`: the experiment harness. A grid of `rnnlab train` flags
//! times a list of seeds, each run an ordinary run folder under
//! `results/sweeps/<name>/<combination>/seed<k>/`, run by local worker
//! processes or as a Slurm job array; then a report over seeds, ranked on
//! validation scores only (docs/sweeps.md).
//!
//! - [`grid`][]: `--grid` and `--seeds` expanded into runs (pure)
//! - [`manifest`][]: `sweep.json`
//! - [`exec`][]: one run as a child process: skip, resume or start
//! - [`local`][]: `--jobs N` workers and the progress bar
//! - [`slurm`][]: the job-array script, `sbatch`, `squeue`/`sacct`
//! - [`status`][]: done / running / failed / pending per run
//! - [`report`][]: mean, sd, min, max over seeds; `report.md`, `report.csv`, figures

pub mod exec;
pub mod grid;
pub mod local;
pub mod manifest;
pub mod report;
pub mod slurm;
pub mod status;

use crate::device::DeviceArg;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use manifest::{RunSpec, SlurmOptions, Sweep};
use std::path::{Path, PathBuf};

/// `rnnlab sweep <command>`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub command: SweepCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SweepCommand {
    /// Start (or continue) a sweep: every grid combination times every seed.
    Run(Box<RunArgs>),
    /// Run number INDEX of a sweep (what each Slurm array task runs).
    Task {
        /// The sweep folder (holding sweep.json).
        dir: PathBuf,
        /// The run's number (0-based; `$SLURM_ARRAY_TASK_ID`).
        index: usize,
    },
    /// Mean, sd, min and max over seeds per combination, ranked on validation:
    /// report.md, report.csv and figures in the sweep folder.
    Report {
        /// The sweep folder (holding sweep.json).
        dir: PathBuf,
    },
    /// Done, running, failed and pending runs (from the run folders and,
    /// for a submitted sweep, squeue and sacct).
    Status {
        /// The sweep folder (holding sweep.json).
        dir: PathBuf,
    },
}

/// Flags of `rnnlab sweep run`; `rnnlab train` flags every run shares go after `--`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The sweep's name: its folder is `<root>/<name>`.
    #[arg(long)]
    pub name: String,
    /// Folder holding the sweeps.
    #[arg(long, default_value = "results/sweeps")]
    pub root: PathBuf,
    /// The model of every run (the same as `-- --model M`; for several, `--grid model=gru,lstm`).
    #[arg(long, value_enum)]
    pub model: Option<crate::train::ModelKind>,
    /// An axis of the grid: a `rnnlab train` flag and its values,
    /// `FLAG=V1,V2,...` (e.g. `lr=0.001,0.002`, `clip-grad-norm=1,inf`,
    /// `bidir=true,false`); repeat for more axes.
    #[arg(long, value_name = "FLAG=V1,V2,...")]
    pub grid: Vec<String>,
    /// Seeds of every combination: numbers and ranges, `0-7`, `0,3,5`.
    #[arg(long, default_value = "0")]
    pub seeds: String,
    /// Runs at once on this machine (child processes); with --slurm, use --max-running.
    #[arg(long, default_value_t = 1, conflicts_with = "slurm")]
    pub jobs: usize,
    /// Intra-op CPU threads of each run.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// Write a Slurm job-array script (one array task per run) and submit it with sbatch.
    #[arg(long)]
    pub slurm: bool,
    /// With --slurm: write the script only.
    #[arg(long, requires = "slurm")]
    pub no_submit: bool,
    /// With --slurm: the partition (`#SBATCH --partition`).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// With --slurm: the time limit of each task, e.g. `01:00:00`.
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// With --slurm: GPUs of each task.
    #[arg(long, requires = "slurm")]
    pub gpus_per_task: Option<u32>,
    /// With --slurm: CPUs of each task (default: --threads).
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<u32>,
    /// With --slurm: memory of each task, e.g. `4G`.
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// With --slurm: at most this many array tasks at once (`--array=0-N%K`).
    #[arg(long, requires = "slurm")]
    pub max_running: Option<usize>,
    /// `rnnlab train` flags every run shares, after `--` (e.g. `-- --epochs 2 --data-dir speech`).
    #[arg(last = true, value_name = "TRAIN FLAGS")]
    pub train: Vec<String>,
}

/// The name of a `--device` value, as on the command line.
fn device_name(device: DeviceArg) -> String {
    device.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_else(|| "auto".into())
}

/// An absolute form of `path` (which need not exist yet).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// The manifest of a new sweep from its flags; every run's flags are
/// checked with `rnnlab train`'s parser.
pub fn plan(args: &RunArgs, device: DeviceArg, dir: &Path) -> anyhow::Result<Sweep> {
    if args.name.is_empty() || args.name.contains('/') || args.name.starts_with('.') {
        bail!("--name {:?}: give a plain folder name, e.g. --name lr-screen", args.name);
    }
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if args.threads < 1 {
        bail!("--threads must be at least 1");
    }
    let axes = args.grid.iter().map(|g| grid::parse_axis(g)).collect::<anyhow::Result<Vec<_>>>()?;
    let seeds = grid::parse_seeds(&args.seeds)?;
    let mut fixed = args.train.clone();
    grid::check_fixed(&fixed)?;
    if let Some(m) = args.model {
        if fixed.iter().any(|w| w == "--model") || axes.iter().any(|a| a.flag == "model") {
            bail!("--model is given twice (to the sweep and as a train flag or axis)");
        }
        fixed.splice(
            0..0,
            [
                "--model".to_string(),
                serde_json::to_value(m)?.as_str().unwrap_or_default().to_string(),
            ],
        );
    }
    if !fixed.iter().any(|w| w == "--model") && !axes.iter().any(|a| a.flag == "model") {
        bail!("no model: give --model M, an axis --grid model=A,B, or `-- --model M`");
    }
    for axis in &axes {
        let flag = format!("--{}", axis.flag);
        if fixed.iter().any(|w| *w == flag || w.starts_with(&format!("{flag}="))) {
            bail!("{flag} is both an axis (--grid) and a fixed flag (after --)");
        }
    }
    let combos = grid::combos(&axes)?;
    let device = device_name(device);
    let mut runs = Vec::new();
    for combo in &combos {
        for &seed in &seeds {
            let rel = PathBuf::from(&combo.slug).join(format!("seed{seed}"));
            let flags = grid::train_argv(&fixed, combo, seed, args.threads);
            grid::check_train_flags(&flags).with_context(|| {
                format!("run {}: `rnnlab train {}` is refused", rel.display(), flags.join(" "))
            })?;
            let mut argv = vec!["--device".to_string(), device.clone(), "train".to_string()];
            argv.extend(flags);
            argv.extend(["--out".to_string(), dir.join(&rel).display().to_string()]);
            runs.push(RunSpec {
                index: runs.len(),
                combo: combo.slug.clone(),
                values: combo.values.clone(),
                seed,
                dir: rel,
                argv,
            });
        }
    }
    Ok(Sweep {
        name: args.name.clone(),
        workdir: absolute(Path::new("."))?,
        device,
        threads: args.threads,
        axes,
        seeds,
        fixed,
        runs,
        slurm: None,
    })
}

/// `rnnlab sweep run`.
fn run(args: &RunArgs, device: DeviceArg) -> anyhow::Result<()> {
    let dir = absolute(&args.root.join(&args.name))?;
    let mut sweep = plan(args, device, &dir)?;
    if dir.join(manifest::MANIFEST).is_file() {
        let old = Sweep::read(&dir)?;
        if !old.same_runs(&sweep) {
            bail!(
                "{} holds a sweep with other runs (other axes, seeds, flags, device or \
                 threads); continue it with its own command, or choose another --name",
                dir.display()
            );
        }
        sweep.slurm = old.slurm;
        sweep.workdir = old.workdir;
        println!("continuing sweep {} ({} runs)", dir.display(), sweep.runs.len());
    } else {
        println!("sweep {}: {} runs", dir.display(), sweep.runs.len());
    }
    sweep.write(&dir)?;
    let exe = std::env::current_exe().context("finding the rnnlab binary")?;
    if args.slurm {
        let options = SlurmOptions {
            partition: args.partition.clone(),
            time: args.time.clone(),
            gpus_per_task: args.gpus_per_task,
            cpus_per_task: args.cpus_per_task.unwrap_or(args.threads as u32),
            mem: args.mem.clone(),
            max_running: args.max_running,
        };
        slurm::submit(&mut sweep, &dir, &exe, options, !args.no_submit)
    } else {
        local::run_all(&sweep, &dir, &exe, args.jobs)
    }
}

/// `rnnlab sweep task DIR INDEX`.
fn task(dir: &Path, index: usize) -> anyhow::Result<()> {
    let dir = absolute(dir)?;
    let sweep = Sweep::read(&dir)?;
    let run = sweep.run(index)?;
    let exe = std::env::current_exe().context("finding the rnnlab binary")?;
    match exec::execute(&sweep, &dir, run, &exe)? {
        exec::Outcome::Skipped => println!("{}: finished before; skipped", run.dir.display()),
        exec::Outcome::Finished(a) => println!("{}: {a:?} run finished", run.dir.display()),
        exec::Outcome::Failed { status, log, .. } => {
            bail!("{} failed ({status}); its log: {}", run.dir.display(), log.display())
        }
    }
    Ok(())
}

pub fn dispatch(args: &SweepArgs, device: DeviceArg) -> anyhow::Result<()> {
    match &args.command {
        SweepCommand::Run(a) => run(a, device),
        SweepCommand::Task { dir, index } => task(dir, *index),
        SweepCommand::Report { dir } => report::run(dir),
        SweepCommand::Status { dir } => status::run(dir),
    }
}
