//! The training loop every model runs on, as burn-train's `Learner` or
//! Lightning's `Trainer`: a model supplies a [`Task`] (its batches, loss,
//! evaluation and summary); [`fit`] does the rest.
//!
//! One step: the schedule's learning rate, the task's loss, `backward`,
//! optional `clip_grad_norm_`, the optimiser's update. Losses stay on the
//! device and are read back in blocks (every `log_every` steps, at every
//! validation and at every epoch end), so a GPU never waits for the host;
//! a non-finite loss stops the run naming its step. Validation runs every
//! `valid_every` steps **and after the last step**, so a run shorter than
//! one interval still reports real scores. The best validation result is
//! saved as `best.safetensors`; `last.safetensors` (model, optimiser, loop
//! state, in one atomic write) is saved at every validation and epoch end,
//! and `--resume` continues from it exactly: the data order is a function of
//! (seed, epoch) and libtorch's generator is reseeded from (seed, step) at
//! every checkpoint. Early stopping (off unless `patience` is set) ends the
//! run after `patience` validations without improvement and restores the
//! best weights.

use crate::metrics::{MetricsWriter, Scores};
use crate::optim::Optim;
use crate::run_dir::RunDir;
use crate::schedule::{LrSchedule, Schedule};
use anyhow::{bail, Context};
use data::loader::splitmix64;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// One evaluation: the validation loss and the task's other scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval<S> {
    pub loss: f64,
    pub scores: S,
}

/// Which way a monitored number improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    Maximize,
    Minimize,
}

/// The model-specific part of a training run.
pub trait Task {
    /// The validation scores besides the loss (the `metrics.csv` columns).
    type Scores: Scores;

    /// The variables the optimiser trains and the checkpoints hold.
    fn var_store(&self) -> &VarStore;

    /// Batches in one pass over the training data (wavenet: the whole run).
    fn steps_per_epoch(&self) -> u64;

    /// Called before the first step of `epoch` (0-based), also when a
    /// resumed run starts in the middle of it: draw that epoch's data order.
    fn begin_epoch(&mut self, _epoch: u64) {}

    /// The training loss of global step `step` (1-based), batch `batch` of
    /// the current epoch (0-based), in training mode, not yet backpropagated.
    fn train_loss(&mut self, step: u64, batch: u64) -> Tensor;

    /// Scores the model on the validation data (the task may add test
    /// scores), in evaluation mode.
    fn evaluate(&mut self) -> anyhow::Result<Eval<Self::Scores>>;

    /// The number that picks the best checkpoint and drives early stopping.
    fn monitor(&self, eval: &Eval<Self::Scores>) -> (f64, Goal);

    /// Called after the last step of `epoch` (e.g. to save embeddings).
    fn end_epoch(&mut self, _epoch: u64, _run: &RunDir) -> anyhow::Result<()> {
        Ok(())
    }

    /// The progress bar's message after an evaluation.
    fn describe(&self, eval: &Eval<Self::Scores>) -> String {
        format!("valid loss {:.4}", eval.loss)
    }
}

/// How the engine runs a task: saved inside each model's `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Seeds the model's initialisation, the data order and libtorch's generator.
    pub seed: u64,
    /// Optimisation steps of the whole run.
    pub steps: u64,
    /// Validate every this many steps (and after the last).
    pub valid_every: u64,
    pub optimizer: Optim,
    pub schedule: Schedule,
    /// `clip_grad_norm_` of all gradients to this 2-norm before every update.
    pub clip_grad_norm: Option<f64>,
    /// Stop after this many validations without improvement (off when none).
    #[serde(default)]
    pub patience: Option<usize>,
    /// Losses are read back to the host at most this many steps apart.
    pub log_every: u64,
    /// Validate the weights the run starts from before its first step (a
    /// `metrics.csv` row at step 0), so that they can be the best checkpoint:
    /// for a run that starts from trained weights, whose first steps may do
    /// no better on validation than where they started.
    #[serde(default)]
    pub validate_at_start: bool,
}

impl Settings {
    /// Checks the numbers a user can set.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.steps == 0 {
            bail!("a run needs at least one step");
        }
        if self.valid_every == 0 {
            bail!("--valid-every must be positive");
        }
        if let Some(c) = self.clip_grad_norm {
            if c.is_nan() || c <= 0.0 {
                bail!("--clip-grad-norm must be positive (inf turns it off), got {c}");
            }
        }
        if self.patience == Some(0) {
            bail!("--patience must be at least 1");
        }
        Ok(())
    }
}

/// The best validation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best<S> {
    pub step: u64,
    pub monitor: f64,
    pub eval: Eval<S>,
}

/// The loop's position, saved in every resume checkpoint; [`fit`] returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState<S> {
    /// Steps done.
    pub step: u64,
    pub train_seconds: f64,
    pub best: Option<Best<S>>,
    /// The latest evaluation and its step.
    pub last: Option<(u64, Eval<S>)>,
    /// Validations since the best one (for early stopping).
    pub stale: usize,
    pub stopped_early: bool,
}

impl<S> Default for RunState<S> {
    fn default() -> Self {
        Self { step: 0, train_seconds: 0.0, best: None, last: None, stale: 0, stopped_early: false }
    }
}

impl<S: Clone> RunState<S> {
    /// Takes the validation at `step`, whose monitored score is `score`: it
    /// becomes the best when it beats the best so far towards `goal` (the
    /// first one when it is a number), and the latest in any case. Returns
    /// whether it became the best, whose weights the caller then saves.
    fn record(&mut self, step: u64, eval: Eval<S>, score: f64, goal: Goal) -> bool {
        let better = match (&self.best, goal) {
            (None, _) => !score.is_nan(),
            (Some(b), Goal::Maximize) => score > b.monitor,
            (Some(b), Goal::Minimize) => score < b.monitor,
        };
        if better {
            self.best = Some(Best { step, monitor: score, eval: eval.clone() });
        }
        self.last = Some((step, eval));
        better
    }
}

/// The numbers of a run every model's `summary.json` carries. Training time
/// leaves out validation and checkpoints. Numbers an older summary lacks
/// read as 0 (or NaN for losses, which JSON also writes as `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub steps: u64,
    pub train_seconds: f64,
    #[serde(default)]
    pub seconds_per_step: f64,
    #[serde(default)]
    pub best_step: u64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub best_valid_loss: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub final_valid_loss: f64,
    #[serde(default)]
    pub stopped_early: bool,
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON has no NaN: serde_json writes it as `null`; this reads it back.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl<S> RunState<S> {
    pub fn stats(&self) -> RunStats {
        RunStats {
            steps: self.step,
            train_seconds: self.train_seconds,
            seconds_per_step: self.train_seconds / self.step.max(1) as f64,
            best_step: self.best.as_ref().map_or(0, |b| b.step),
            best_valid_loss: self.best.as_ref().map_or(f64::NAN, |b| b.eval.loss),
            final_valid_loss: self.last.as_ref().map_or(f64::NAN, |(_, e)| e.loss),
            stopped_early: self.stopped_early,
        }
    }
}

/// Sets libtorch's threads (on the CPU) and seeds its generator; call before
/// building the model so that its initialisation follows the seed.
pub fn init(seed: u64, threads: i32, device: Device) {
    if device == Device::Cpu {
        tch::set_num_threads(threads);
    }
    tch::manual_seed(seed as i64);
}

/// libtorch's generator seed from `step` on: a function of (seed, step), so
/// a run resumed at a checkpoint draws what the uninterrupted run drew.
fn reseed(seed: u64, step: u64) {
    // another stream than the data order's `splitmix64(splitmix64(seed) + epoch)`
    let mixed = splitmix64(splitmix64(seed ^ 0x7f4a_7c15_9e37_79b9).wrapping_add(step));
    tch::manual_seed((mixed >> 1) as i64);
}

/// Fault injection for the resume tests: a run sends itself SIGKILL (as
/// `kill -9` would) after the step this variable names.
pub const KILL_AT_STEP_ENV: &str = "RNNLAB_KILL_AT_STEP";

fn kill_at_step() -> Option<u64> {
    std::env::var(KILL_AT_STEP_ENV).ok()?.parse().ok()
}

/// The name of the resume checkpoint.
pub const LAST: &str = "last";
/// The name of the best checkpoint.
pub const BEST: &str = "best";

/// One training step's loss, waiting on the device.
struct Pending {
    step: u64,
    epoch: u64,
    loss: Tensor,
    lr: f64,
    seconds: f64,
}

/// Reads the waiting losses in one transfer; an error names the first step
/// whose loss is not finite.
fn read_losses(pending: &[Pending]) -> anyhow::Result<Vec<f32>> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<&Tensor> = pending.iter().map(|p| &p.loss).collect();
    let stacked = Tensor::stack(&all, 0).to_kind(Kind::Float).to_device(Device::Cpu);
    let losses = Vec::<f32>::try_from(stacked)?;
    if let Some((p, loss)) = pending.iter().zip(&losses).find(|(_, l)| !l.is_finite()) {
        bail!("loss became {loss} at step {}: lower --lr", p.step);
    }
    Ok(losses)
}

/// Trains `task` in `run` to `settings.steps`, from the start or, when
/// `resume`, from `last.safetensors`. Writes `metrics.csv` and the
/// checkpoints; returns the final state (the caller writes `summary.json`).
/// When early stopping ends the run, the best weights are loaded back.
/// Denormal floats are flushed to zero on the calling thread from here on
/// ([`crate::denormal`]).
pub fn fit<T: Task>(
    task: &mut T,
    run: &RunDir,
    settings: &Settings,
    resume: bool,
) -> anyhow::Result<RunState<T::Scores>> {
    settings.validate()?;
    // saturated gates would otherwise compute on denormals, many times slower
    crate::denormal::flush_denormals();
    let lr0 = settings.schedule.lr(0);
    let mut opt = settings.optimizer.build(task.var_store(), lr0)?;
    let params = task.var_store().trainable_variables();
    let mut st: RunState<T::Scores> = if resume {
        let r = run.load_resume(LAST, task.var_store())?;
        opt.load_state(&r.optimizer).map_err(|k| {
            anyhow::anyhow!("{}: no optimiser tensor {k}", run.file("last.safetensors").display())
        })?;
        let state: RunState<T::Scores> = r.state;
        if state.stopped_early {
            bail!(
                "{}: the run stopped early at step {}; nothing to resume",
                run.path().display(),
                state.step
            );
        }
        if state.step >= settings.steps {
            bail!(
                "{}: {} of {} steps are done; nothing to resume (extend the run with more \
                 --epochs or --steps)",
                run.path().display(),
                state.step,
                settings.steps
            );
        }
        state
    } else {
        RunState::default()
    };
    let mut metrics =
        MetricsWriter::<T::Scores>::open(&run.file("metrics.csv"), resume.then_some(st.step))?;
    if !resume && settings.validate_at_start {
        let eval = task.evaluate()?;
        metrics.start_row(eval.loss, &eval.scores)?;
        metrics.flush()?;
        eprintln!("step 0/{}: {}", settings.steps, task.describe(&eval));
        let (score, goal) = task.monitor(&eval);
        if st.record(0, eval, score, goal) {
            run.save_checkpoint(task.var_store(), BEST)?;
        }
    }
    reseed(settings.seed, st.step);

    let per_epoch = task.steps_per_epoch().max(1);
    let total = settings.steps;
    let bar = ProgressBar::new(total).with_position(st.step.min(total));
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
    )?);
    // training time only: validation and checkpoints are not counted
    let (mut trained, mut clock) = (st.train_seconds, Instant::now());
    let mut pending: Vec<Pending> = Vec::new();
    let mut first = true;
    let kill_at = kill_at_step();
    while st.step < total && !st.stopped_early {
        let (epoch, batch) = (st.step / per_epoch, st.step % per_epoch);
        if batch == 0 || first {
            task.begin_epoch(epoch);
            first = false;
        }
        let lr = settings.schedule.lr(st.step as usize);
        st.step += 1;
        opt.set_lr(lr);
        let loss = task.train_loss(st.step, batch);
        opt.zero_grad();
        loss.backward();
        if let Some(max_norm) = settings.clip_grad_norm.filter(|c| c.is_finite()) {
            let _total_norm = models::clip_grad_norm_(&params, max_norm);
        }
        opt.step();
        st.train_seconds = trained + clock.elapsed().as_secs_f64();
        let seconds = st.train_seconds;
        pending.push(Pending { step: st.step, epoch, loss: loss.detach(), lr, seconds });
        bar.inc(1);
        if kill_at.is_some_and(|k| st.step >= k) {
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
        }

        let epoch_end = st.step % per_epoch == 0;
        let validate = st.step % settings.valid_every == 0 || st.step == total;
        if !(validate || epoch_end || pending.len() as u64 >= settings.log_every) {
            continue;
        }
        // the losses first: a diverged model is never scored or saved
        let losses = read_losses(&pending)?;
        st.train_seconds = trained + clock.elapsed().as_secs_f64();
        trained = st.train_seconds;
        let eval = if validate { Some(task.evaluate()?) } else { None };
        let n = pending.len();
        for (k, (p, loss)) in pending.drain(..).zip(losses).enumerate() {
            let valid = eval.as_ref().filter(|_| k + 1 == n).map(|e| (e.loss, &e.scores));
            metrics.row(p.step, p.epoch, loss, p.lr, valid, p.seconds)?;
        }
        metrics.flush()?;
        if let Some(eval) = eval {
            let (score, goal) = task.monitor(&eval);
            bar.set_message(task.describe(&eval));
            if bar.is_hidden() {
                // no terminal (a log file, a pipe): one line per validation
                eprintln!("step {}/{total}: {}", st.step, task.describe(&eval));
            }
            let step = st.step;
            if st.record(step, eval, score, goal) {
                st.stale = 0;
                run.save_checkpoint(task.var_store(), BEST)?;
            } else {
                st.stale += 1;
                if settings.patience.is_some_and(|p| st.stale >= p) {
                    st.stopped_early = true;
                }
            }
        }
        if epoch_end {
            task.end_epoch(epoch, run)?;
        }
        if validate || epoch_end {
            run.save_resume(LAST, task.var_store(), &opt.state(), &st)?;
            reseed(settings.seed, st.step);
        }
        clock = Instant::now();
    }
    bar.finish_and_clear();
    if st.stopped_early {
        run.load_checkpoint(task.var_store(), BEST)
            .context("restoring the best weights after early stopping")?;
    }
    Ok(st)
}
