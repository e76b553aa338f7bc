//! `--jobs N` on this machine: N worker threads, each running one child
//! `rnnlab train` at a time from a shared queue, under one progress bar. A
//! failed run is reported at the end with its log and does not stop the others.

use super::exec::{self, Action, Outcome};
use super::manifest::Sweep;
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A line above the bar, or on stderr when there is no terminal.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Runs every run of `sweep` (skipping finished ones), `jobs` at once.
pub fn run_all(sweep: &Sweep, dir: &Path, exe: &Path, jobs: usize) -> anyhow::Result<()> {
    let total = sweep.runs.len();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} runs [{elapsed_precise}<{eta_precise}] {msg}",
    )?);
    let next = AtomicUsize::new(0);
    let counts = Mutex::new([0usize; 4]); // skipped, resumed, fresh, failed
    let failures: Mutex<Vec<(PathBuf, String, PathBuf)>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(total.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(run) = sweep.runs.get(i) else { break };
                let outcome = exec::execute(sweep, dir, run, exe);
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Ok(Outcome::Skipped) => c[0] += 1,
                    Ok(Outcome::Finished(action)) => {
                        c[if action == Action::Resume { 1 } else { 2 }] += 1;
                        say(&bar, format!("done: {} ({action:?})", run.dir.display()));
                    }
                    Ok(Outcome::Failed { status, log, .. }) => {
                        c[3] += 1;
                        say(&bar, format!("FAILED: {} ({status})", run.dir.display()));
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push((
                            run.dir.clone(),
                            status,
                            log,
                        ));
                    }
                    Err(e) => {
                        c[3] += 1;
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{}: {e:#}", run.dir.display()));
                    }
                }
                bar.set_message(format!(
                    "{} skipped, {} resumed, {} new, {} failed",
                    c[0], c[1], c[2], c[3]
                ));
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let c = counts.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "sweep {}: {total} runs: {} finished before (skipped), {} resumed, {} started afresh, {} failed",
        sweep.name, c[0], c[1], c[2], c[3]
    );
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    for (run, status, log) in &failures {
        println!("failed: {} ({status}); log: {}", run.display(), log.display());
    }
    for e in &errors {
        println!("could not start: {e}");
    }
    if !failures.is_empty() || !errors.is_empty() {
        bail!(
            "{} of {total} runs failed (logs above); re-run the same command to retry them",
            failures.len() + errors.len()
        );
    }
    println!("report: rnnlab sweep report {}", dir.display());
    Ok(())
}
