//! Learning-rate schedules as PyTorch's `torch.optim.lr_scheduler`: constant,
//! `StepLR` (the speaker lab's; the makemore lecture's drop to a tenth) and
//! `CosineAnnealingWarmRestarts` (SGDR, Loshchilov & Hutter 2017) with an
//! optional linear warm-up (PyTorch's `LinearLR` then the cosine, as
//! `SequentialLR` chains them), for any model.
//!
//! A schedule is a pure function of a counter ([`LrSchedule::lr`], PyTorch's
//! closed form): the training engine counts optimiser steps, a notebook may
//! count epochs. [`Schedule`] names one of them in a run's `config.json`;
//! [`Scheduler`] adds PyTorch's stateful `step()` that sets a tch
//! optimiser's learning rate, so a loop reads like the notebook:
//!
//! ```no_run
//! # use train::schedule::{Scheduler, StepLR};
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # use tch::nn::OptimizerConfig;
//! let mut opt = tch::nn::Adam::default().build(&vs, 1e-3).unwrap();
//! let mut sched = Scheduler::new(StepLR::new(1e-3, 10, 0.5));
//! for _epoch in 0..30 {
//!     // ... opt.step() for every batch ...
//!     sched.step(&mut opt);
//! }
//! ```

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use tch::nn::Optimizer;

/// A learning rate for every step (or epoch, as the caller counts).
pub trait LrSchedule {
    /// The learning rate in effect during `epoch` (0-based).
    fn lr(&self, epoch: usize) -> f64;
}

/// The same rate throughout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Constant {
    pub lr: f64,
}

impl LrSchedule for Constant {
    fn lr(&self, _epoch: usize) -> f64 {
        self.lr
    }
}

/// A linear warm-up over `warmup` steps, `base_lr · (t + 1) / warmup`
/// (PyTorch's `LinearLR(start_factor=1/warmup, total_iters=warmup-1)`), then
/// [`CosineAnnealingWarmRestarts`] counted from the end of the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    pub warmup: usize,
    pub cosine: CosineAnnealingWarmRestarts,
}

impl LrSchedule for WarmupCosine {
    fn lr(&self, t: usize) -> f64 {
        if t < self.warmup {
            self.cosine.base_lr * (t + 1) as f64 / self.warmup as f64
        } else {
            self.cosine.lr_at((t - self.warmup) as f64)
        }
    }
}

/// The schedule of a run, saved in its `config.json`: one of the above.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant(Constant),
    Step(StepLR),
    Cosine(WarmupCosine),
    /// SGDR stepped every batch, cycles counted in epochs of `steps_per_epoch`
    /// steps (PyTorch's `scheduler.step(epoch + i / iters)`; fastai's SGDR).
    Sgdr {
        sgdr: CosineAnnealingWarmRestarts,
        steps_per_epoch: usize,
    },
}

impl Schedule {
    pub fn constant(lr: f64) -> Self {
        Schedule::Constant(Constant { lr })
    }

    /// `StepLR(base_lr, step_size, gamma)`.
    pub fn step(base_lr: f64, step_size: usize, gamma: f64) -> Self {
        Schedule::Step(StepLR::new(base_lr, step_size, gamma))
    }

    /// A linear warm-up of `warmup` steps, then one cosine decay from
    /// `base_lr` to `eta_min` over `decay` steps (no restart within a run of
    /// `warmup + decay` steps).
    pub fn warmup_cosine(base_lr: f64, warmup: usize, decay: usize, eta_min: f64) -> Self {
        Schedule::Cosine(WarmupCosine {
            warmup,
            cosine: CosineAnnealingWarmRestarts::new(base_lr, decay.max(1), 1, eta_min),
        })
    }
}

impl LrSchedule for Schedule {
    fn lr(&self, t: usize) -> f64 {
        match self {
            Schedule::Constant(s) => s.lr(t),
            Schedule::Step(s) => s.lr(t),
            Schedule::Cosine(s) => s.lr(t),
            Schedule::Sgdr { sgdr, steps_per_epoch } => {
                sgdr.lr_at(t as f64 / (*steps_per_epoch).max(1) as f64)
            }
        }
    }
}

/// `StepLR(optimizer, step_size, gamma)`: `base_lr · gamma^(epoch / step_size)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLR {
    pub base_lr: f64,
    /// Epochs between decays (> 0).
    pub step_size: usize,
    pub gamma: f64,
}

impl StepLR {
    pub fn new(base_lr: f64, step_size: usize, gamma: f64) -> Self {
        assert!(step_size > 0, "StepLR needs step_size > 0");
        Self { base_lr, step_size, gamma }
    }
}

impl LrSchedule for StepLR {
    fn lr(&self, epoch: usize) -> f64 {
        self.base_lr * self.gamma.powi((epoch / self.step_size) as i32)
    }
}

/// `CosineAnnealingWarmRestarts(optimizer, T_0, T_mult, eta_min)`: within a
/// cycle of `T_i` epochs, `eta_min + (base_lr - eta_min)(1 + cos(π T_cur / T_i)) / 2`;
/// the first cycle lasts `t_0` epochs and each next one `t_mult` times longer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineAnnealingWarmRestarts {
    pub base_lr: f64,
    /// Epochs of the first cycle (> 0).
    pub t_0: usize,
    /// Growth of each next cycle (>= 1).
    pub t_mult: usize,
    pub eta_min: f64,
}

impl CosineAnnealingWarmRestarts {
    pub fn new(base_lr: f64, t_0: usize, t_mult: usize, eta_min: f64) -> Self {
        assert!(t_0 > 0, "CosineAnnealingWarmRestarts needs T_0 > 0");
        assert!(t_mult >= 1, "CosineAnnealingWarmRestarts needs T_mult >= 1");
        Self { base_lr, t_0, t_mult, eta_min }
    }

    /// The learning rate at a fractional epoch (PyTorch's `step(epoch + i / iters)`),
    /// for schedules stepped every batch.
    pub fn lr_at(&self, epoch: f64) -> f64 {
        let t_0 = self.t_0 as f64;
        let (t_cur, t_i) = if self.t_mult == 1 || epoch < t_0 {
            (epoch % t_0, t_0)
        } else {
            let m = self.t_mult as f64;
            let n = ((epoch / t_0 * (m - 1.0) + 1.0).ln() / m.ln()).floor();
            (epoch - t_0 * (m.powf(n) - 1.0) / (m - 1.0), t_0 * m.powf(n))
        };
        self.eta_min + (self.base_lr - self.eta_min) * (1.0 + (PI * t_cur / t_i).cos()) / 2.0
    }
}

impl LrSchedule for CosineAnnealingWarmRestarts {
    fn lr(&self, epoch: usize) -> f64 {
        self.lr_at(epoch as f64)
    }
}

/// PyTorch's stateful scheduler: counts epochs and sets the optimiser's rate.
#[derive(Debug, Clone)]
pub struct Scheduler<S> {
    schedule: S,
    epoch: usize,
}

impl<S: LrSchedule> Scheduler<S> {
    pub fn new(schedule: S) -> Self {
        Self { schedule, epoch: 0 }
    }

    /// Resumes at `epoch` (e.g. after loading a checkpoint).
    pub fn starting_at(schedule: S, epoch: usize) -> Self {
        Self { schedule, epoch }
    }

    /// The current learning rate (`get_last_lr()[0]`).
    pub fn lr(&self) -> f64 {
        self.schedule.lr(self.epoch)
    }

    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Sets the optimiser to the current learning rate without advancing (call
    /// once before training, as constructing a PyTorch scheduler does).
    pub fn apply(&self, opt: &mut Optimizer) {
        opt.set_lr(self.lr());
    }

    /// `scheduler.step()`: moves to the next epoch and sets its rate; returns it.
    pub fn step(&mut self, opt: &mut Optimizer) -> f64 {
        self.epoch += 1;
        let lr = self.lr();
        opt.set_lr(lr);
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-12, "epoch {e}: {g} vs {w}");
        }
    }

    // Expected values: scripts/lr_scheduler_golden.py (PyTorch 2.11).
    #[test]
    fn step_lr_matches_pytorch() {
        let s = StepLR::new(0.1, 3, 0.5);
        let got: Vec<f64> = (0..10).map(|e| s.lr(e)).collect();
        let want = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125];
        assert_close(&got, &want);
    }

    #[test]
    fn cosine_restarts_match_pytorch() {
        let s = CosineAnnealingWarmRestarts::new(0.1, 4, 1, 0.001);
        let got: Vec<f64> = (0..10).map(|e| s.lr(e)).collect();
        let want = [
            0.1,
            0.0855017856687341,
            0.0505,
            0.0154982143312659,
            0.1,
            0.0855017856687341,
            0.0505,
            0.0154982143312659,
            0.1,
            0.0855017856687341,
        ];
        assert_close(&got, &want);

        let s = CosineAnnealingWarmRestarts::new(0.1, 2, 2, 0.0);
        let got: Vec<f64> = (0..16).map(|e| s.lr(e)).collect();
        let want = [
            0.1,
            0.05,
            0.1,
            0.08535533905932738,
            0.05,
            0.014644660940672627,
            0.1,
            0.09619397662556434,
            0.08535533905932738,
            0.0691341716182545,
            0.05,
            0.030865828381745515,
            0.014644660940672627,
            0.0038060233744356634,
            0.1,
            0.09903926402016153,
        ];
        assert_close(&got, &want);
    }

    /// Warm-up then cosine equals PyTorch's `SequentialLR([LinearLR(
    /// start_factor=1/3, total_iters=2), CosineAnnealingLR(T_max=5,
    /// eta_min=0.01)], milestones=[3])` stepped once per step (golden script).
    #[test]
    fn warmup_cosine_matches_pytorch() {
        let s = Schedule::warmup_cosine(0.3, 3, 5, 0.01);
        let got: Vec<f64> = (0..8).map(|t| s.lr(t)).collect();
        // PyTorch 2.11; by hand 0.3·1/3, 0.3·2/3, 0.3, then
        // 0.01 + 0.29·(1 + cos(πk/5))/2 for k = 0, 1, ... (the peak twice)
        let want = [
            0.09999999999999999,
            0.19999999999999998,
            0.3,
            0.3,
            0.27230746418436735,
            0.19980746418436734,
            0.1101925358156326,
            0.03769253581563263,
        ];
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-12, "step {t}: {g} vs {w}");
        }
        assert_eq!(Schedule::constant(0.5).lr(1000), 0.5);
        assert_close(
            &(0..5).map(|t| Schedule::step(1.0, 2, 0.1).lr(t)).collect::<Vec<_>>(),
            &[1.0, 1.0, 0.1, 0.1, 0.010000000000000002],
        );
    }

    /// SGDR stepped every batch at the fractional epoch (golden script:
    /// `scheduler.step(epoch + i / iters)` with 2 batches an epoch).
    #[test]
    fn sgdr_per_batch_matches_pytorch() {
        let sgdr = CosineAnnealingWarmRestarts::new(0.1, 1, 2, 0.0);
        let s = Schedule::Sgdr { sgdr, steps_per_epoch: 2 };
        let got: Vec<f64> = (0..8).map(|t| s.lr(t)).collect();
        let want = [
            0.1,
            0.05,
            0.1,
            0.08535533905932738,
            0.05,
            0.014644660940672627,
            0.1,
            0.09619397662556434,
        ];
        assert_close(&got, &want);
    }

    #[test]
    fn scheduler_steps_the_optimizer() {
        use tch::nn::OptimizerConfig;
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _w = vs.root().zeros("w", &[1]);
        let mut opt = tch::nn::Sgd::default().build(&vs, 1.0).unwrap();
        let mut sched = Scheduler::new(StepLR::new(0.1, 2, 0.1));
        sched.apply(&mut opt);
        let lrs: Vec<f64> = (0..4).map(|_| sched.step(&mut opt)).collect();
        assert_close(&lrs, &[0.1, 0.01, 0.01, 0.001]);
        assert_eq!(sched.epoch(), 4);
        let resumed = Scheduler::starting_at(StepLR::new(0.1, 2, 0.1), 4);
        assert!((resumed.lr() - 0.001).abs() < 1e-15);
    }
}
