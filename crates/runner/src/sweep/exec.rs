//! Running one run of a sweep as a child `rnnlab train`, the same way for
//! local workers and Slurm array tasks: a run whose `summary.json` exists is
//! skipped, one with a resume checkpoint continues with `train --resume`,
//! any other starts afresh. The child's stdout and stderr go to the run's
//! `log.txt` (appended, so a resumed run keeps its history); its exit status
//! goes to `attempt.json`.

use super::manifest::{RunSpec, Sweep};
use crate::config::RunConfig;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use train::RunDir;

/// The child's log in each run folder.
pub const LOG: &str = "log.txt";
/// The latest attempt's process and exit status in each run folder.
pub const ATTEMPT: &str = "attempt.json";

/// What a run needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `summary.json` exists: nothing to do.
    Skip,
    /// A resume checkpoint exists: `train --resume`.
    Resume,
    /// From the start.
    Fresh,
}

/// The latest attempt at a run (`attempt.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub action: Action,
    pub pid: u32,
    pub host: String,
    /// `None` while the child runs (or when it was killed with its parent).
    pub exit_code: Option<i32>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Skipped,
    Finished(Action),
    Failed { action: Action, status: String, log: PathBuf },
}

/// The run folder of `run` in the sweep folder `dir`.
pub fn run_dir(dir: &Path, run: &RunSpec) -> PathBuf {
    dir.join(&run.dir)
}

/// What `run` needs, read from its folder.
pub fn plan(dir: &Path, run: &RunSpec) -> Action {
    let rd = run_dir(dir, run);
    if rd.join("summary.json").is_file() {
        Action::Skip
    } else if rd.join("config.json").is_file()
        && rd.join(format!("{}.safetensors", train::LAST)).is_file()
    {
        Action::Resume
    } else {
        Action::Fresh
    }
}

/// The `rnnlab` command line for `action` (a resumed run's model is read
/// from its `config.json`).
pub fn argv(
    sweep: &Sweep,
    dir: &Path,
    run: &RunSpec,
    action: Action,
) -> anyhow::Result<Vec<String>> {
    if action != Action::Resume {
        return Ok(run.argv.clone());
    }
    let rd = run_dir(dir, run);
    let model = serde_json::to_value(RunConfig::read(&rd)?.kind())?;
    Ok(vec![
        "--device".into(),
        sweep.device.clone(),
        "train".into(),
        "--model".into(),
        model.as_str().unwrap_or_default().to_string(),
        "--resume".into(),
        rd.display().to_string(),
        "--threads".into(),
        sweep.threads.to_string(),
    ])
}

/// This machine's host name (for `attempt.json`).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Runs `run` to its end with the `rnnlab` binary `exe`; an error only when
/// the run could not be started at all (its folder, its log).
pub fn execute(sweep: &Sweep, dir: &Path, run: &RunSpec, exe: &Path) -> anyhow::Result<Outcome> {
    let action = plan(dir, run);
    if action == Action::Skip {
        return Ok(Outcome::Skipped);
    }
    let rd = RunDir::create(Some(&run_dir(dir, run)), "")?;
    let log_path = rd.file(LOG);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let args = argv(sweep, dir, run, action)?;
    writeln!(log, "== rnnlab {} (in {})", args.join(" "), sweep.workdir.display())?;
    let mut child = Command::new(exe)
        .args(&args)
        .current_dir(&sweep.workdir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut attempt = Attempt { action, pid: child.id(), host: host(), exit_code: None };
    rd.write_json(ATTEMPT, &attempt)?;
    let status = child.wait().with_context(|| format!("waiting for {}", exe.display()))?;
    attempt.exit_code = Some(status.code().unwrap_or(-1));
    rd.write_json(ATTEMPT, &attempt)?;
    if status.success() {
        Ok(Outcome::Finished(action))
    } else {
        writeln!(log, "== exit status: {status}")?;
        Ok(Outcome::Failed { action, status: status.to_string(), log: log_path })
    }
}

/// The attempt recorded in a run folder, if any.
pub fn read_attempt(run_dir: &Path) -> Option<Attempt> {
    let text = std::fs::read_to_string(run_dir.join(ATTEMPT)).ok()?;
    serde_json::from_str(&text).ok()
}
