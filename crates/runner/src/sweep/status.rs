//! `rnnlab sweep status DIR`: each run's state from its folder and, for a
//! submitted sweep, from Slurm: done (its `summary.json` exists), running,
//! failed (a nonzero exit, or Slurm ended the task: timeout, out of memory,
//! cancelled), pending (queued, not started, or stopped and resumable).

use super::exec::{self, read_attempt};
use super::manifest::Sweep;
use super::slurm;
use std::collections::HashMap;
use std::path::Path;

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Done,
    Running,
    Failed,
    Pending,
}

/// Slurm states of a task that ended without finishing its run.
const SLURM_FAILED: [&str; 7] =
    ["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"];

/// Whether process `pid` lives on this machine.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The state of run `index` and a note (its Slurm state, its exit code).
pub fn state(
    dir: &Path,
    sweep: &Sweep,
    index: usize,
    slurm: &HashMap<usize, String>,
) -> (State, String) {
    let run = &sweep.runs[index];
    let rd = exec::run_dir(dir, run);
    if rd.join("summary.json").is_file() {
        return (State::Done, String::new());
    }
    if let Some(s) = slurm.get(&index) {
        match s.as_str() {
            "RUNNING" | "COMPLETING" | "CONFIGURING" => {
                return (State::Running, format!("slurm {s}"))
            }
            "PENDING" | "REQUEUED" | "SUSPENDED" => return (State::Pending, format!("slurm {s}")),
            _ if SLURM_FAILED.contains(&s.as_str()) => {
                return (State::Failed, format!("slurm {s}"))
            }
            _ => {}
        }
    }
    match read_attempt(&rd) {
        Some(a) if a.exit_code.is_some_and(|c| c != 0) => {
            (State::Failed, format!("exit code {}", a.exit_code.unwrap_or_default()))
        }
        Some(a) if a.exit_code.is_none() && a.host == exec::host() && alive(a.pid) => {
            (State::Running, format!("pid {}", a.pid))
        }
        Some(_) => (State::Pending, "stopped; resumable".into()),
        None => (State::Pending, String::new()),
    }
}

pub fn run(dir: &Path) -> anyhow::Result<()> {
    let dir = std::path::absolute(dir)?;
    let sweep = Sweep::read(&dir)?;
    let job = sweep.slurm.as_ref().and_then(|j| j.job_ids.last().cloned());
    let slurm_states = job.as_deref().map(slurm::task_states).unwrap_or_default();
    let mut counts = [0usize; 4];
    let mut lines = Vec::new();
    for run in &sweep.runs {
        let (st, note) = state(&dir, &sweep, run.index, &slurm_states);
        counts[st as usize] += 1;
        let log = exec::run_dir(&dir, run).join(exec::LOG);
        let tail =
            if st == State::Failed { format!(" log: {}", log.display()) } else { String::new() };
        lines.push(format!(
            "{:>4} {:<8} {} {note}{tail}",
            run.index,
            format!("{st:?}").to_lowercase(),
            run.dir.display()
        ));
    }
    println!(
        "sweep {} ({} runs){}",
        sweep.name,
        sweep.runs.len(),
        match &job {
            Some(j) => format!(", Slurm job {j}"),
            None => String::new(),
        }
    );
    for l in &lines {
        println!("{}", l.trim_end());
    }
    println!(
        "done {}, running {}, failed {}, pending {}",
        counts[0], counts[1], counts[2], counts[3]
    );
    Ok(())
}
