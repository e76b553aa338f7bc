//! Slurm: the sweep as one job array. `sweep.sbatch` holds one array task
//! per run; each task runs `rnnlab sweep task DIR $SLURM_ARRAY_TASK_ID`, which
//! skips, resumes or starts its run exactly as a local worker does. Slurm does
//! the scheduling; rnnlab only writes the script, submits it with
//! `sbatch --parsable`, and reads `squeue` and `sacct` for `sweep status`.

use super::manifest::{SlurmJob, SlurmOptions, Sweep};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// The script's file name in the sweep folder.
pub const SCRIPT: &str = "sweep.sbatch";
/// Slurm's own output of each task (the runs log to their own folders).
pub const SLURM_LOGS: &str = "slurm";

/// Quotes a word for bash, when it needs it.
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:,+%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The job-array script of `sweep` in `dir`, run by the binary `exe`.
pub fn script(sweep: &Sweep, dir: &Path, exe: &Path, o: &SlurmOptions) -> String {
    let n = sweep.runs.len();
    let throttle = o.max_running.map(|k| format!("%{k}")).unwrap_or_default();
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# rnnlab sweep {:?}: {n} runs, one array task each (docs/sweeps.md)\n",
        sweep.name
    );
    s += &format!("#SBATCH --job-name={}\n", quote(&format!("rnnlab-{}", sweep.name)));
    s += &format!("#SBATCH --array=0-{}{throttle}\n", n.saturating_sub(1));
    s += "#SBATCH --ntasks=1\n";
    s += &format!("#SBATCH --cpus-per-task={}\n", o.cpus_per_task);
    if let Some(p) = &o.partition {
        s += &format!("#SBATCH --partition={}\n", quote(p));
    }
    if let Some(t) = &o.time {
        s += &format!("#SBATCH --time={}\n", quote(t));
    }
    if let Some(g) = o.gpus_per_task {
        s += &format!("#SBATCH --gpus-per-task={g}\n");
    }
    if let Some(m) = &o.mem {
        s += &format!("#SBATCH --mem={}\n", quote(m));
    }
    s += &format!("#SBATCH --chdir={}\n", quote(&sweep.workdir.display().to_string()));
    s += &format!(
        "#SBATCH --output={}\n",
        quote(&dir.join(SLURM_LOGS).join("%A_%a.out").display().to_string())
    );
    s += &format!(
        "exec {} sweep task {} \"$SLURM_ARRAY_TASK_ID\"\n",
        quote(&exe.display().to_string()),
        quote(&dir.display().to_string())
    );
    s
}

/// Writes the script into the sweep folder and, when `submit`, submits it;
/// the job id goes into `sweep.json`.
pub fn submit(
    sweep: &mut Sweep,
    dir: &Path,
    exe: &Path,
    options: SlurmOptions,
    submit: bool,
) -> anyhow::Result<()> {
    let text = script(sweep, dir, exe, &options);
    std::fs::create_dir_all(dir.join(SLURM_LOGS))
        .with_context(|| format!("creating {}", dir.join(SLURM_LOGS).display()))?;
    let rd = train::RunDir::create(Some(dir), "")?;
    rd.write_file(SCRIPT, text.as_bytes())?;
    let path = dir.join(SCRIPT);
    let mut job = sweep.slurm.take().unwrap_or(SlurmJob {
        script: SCRIPT.into(),
        options: options.clone(),
        job_ids: Vec::new(),
    });
    job.options = options;
    if !submit {
        sweep.slurm = Some(job);
        sweep.write(dir)?;
        println!(
            "wrote {} (not submitted); submit it with: sbatch {}",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let out = Command::new("sbatch").arg("--parsable").arg(&path).output().with_context(|| {
        format!(
            "running sbatch (is Slurm installed? `./scripts/setup.sh --slurm`); the script is {}",
            path.display()
        )
    })?;
    if !out.status.success() {
        bail!("sbatch {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    // `--parsable` prints `<id>` or `<id>;<cluster>`
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id: {stdout:?}");
    }
    job.job_ids.push(id.clone());
    sweep.slurm = Some(job);
    sweep.write(dir)?;
    println!(
        "submitted job array {id} ({} tasks); follow it with: rnnlab sweep status {}",
        sweep.runs.len(),
        dir.display()
    );
    Ok(())
}

/// Slurm's state of each array task of `job`, by task number, from `squeue`
/// (queued and running tasks) and then `sacct` (finished ones, when
/// accounting is on). Commands that are missing or fail give nothing.
pub fn task_states(job: &str) -> HashMap<usize, String> {
    let mut states = HashMap::new();
    if let Some(text) = output("sacct", &["-n", "-P", "-X", "-j", job, "-o", "JobID,State"]) {
        parse_into(&text, '|', job, &mut states);
    }
    // squeue is the live view: it wins over sacct for tasks it lists
    if let Some(text) = output("squeue", &["-h", "-r", "-j", job, "-o", "%i %T"]) {
        parse_into(&text, ' ', job, &mut states);
    }
    states
}

/// Lines `<job>_<task><sep><STATE>` into `states`; other lines are ignored.
fn parse_into(text: &str, sep: char, job: &str, states: &mut HashMap<usize, String>) {
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once(sep) else { continue };
        let Some(task) = id.strip_prefix(job).and_then(|r| r.strip_prefix('_')) else { continue };
        if let Ok(t) = task.parse::<usize>() {
            // sacct writes e.g. "CANCELLED by 0"
            let state = state.split_whitespace().next().unwrap_or_default().to_string();
            states.insert(t, state);
        }
    }
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::grid::Axis;
    use std::path::PathBuf;

    #[test]
    fn script_has_one_array_task_per_run() {
        let sweep = Sweep {
            name: "lr screen".into(),
            workdir: PathBuf::from("/home/u/rnnlab"),
            device: "cpu".into(),
            threads: 1,
            axes: vec![Axis { flag: "lr".into(), values: vec!["0.1".into(), "0.2".into()] }],
            seeds: vec![0, 1],
            fixed: vec![],
            runs: Vec::new(),
            slurm: None,
        };
        let mut sweep = sweep;
        for i in 0..4 {
            sweep.runs.push(crate::sweep::manifest::RunSpec {
                index: i,
                combo: "c".into(),
                values: vec![],
                seed: i as u64,
                dir: PathBuf::from(format!("c/seed{i}")),
                argv: vec![],
            });
        }
        let o = SlurmOptions {
            partition: Some("gpu".into()),
            time: Some("01:00:00".into()),
            gpus_per_task: Some(1),
            cpus_per_task: 2,
            mem: None,
            max_running: Some(2),
        };
        let s = script(&sweep, Path::new("/r/sweeps/x"), Path::new("/bin/rnnlab"), &o);
        for line in [
            "#SBATCH --job-name='rnnlab-lr screen'",
            "#SBATCH --array=0-3%2",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=01:00:00",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --chdir=/home/u/rnnlab",
            "#SBATCH --output=/r/sweeps/x/slurm/%A_%a.out",
            "exec /bin/rnnlab sweep task /r/sweeps/x \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(s.lines().any(|l| l == line), "no line {line:?} in\n{s}");
        }
        assert!(!s.contains("--mem"));
    }

    #[test]
    fn queue_lines_map_to_tasks() {
        let mut states = HashMap::new();
        parse_into("12_0 RUNNING\n12_3 PENDING\n13_1 RUNNING\nnoise\n", ' ', "12", &mut states);
        parse_into("12_1|CANCELLED by 0\n12_2|COMPLETED\n", '|', "12", &mut states);
        assert_eq!(states.len(), 4);
        assert_eq!(states[&0], "RUNNING");
        assert_eq!(states[&1], "CANCELLED");
        assert_eq!(states[&3], "PENDING");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
