//! The training engine every rnnlab model and notebook runs on.
//!
//! A model implements [`Task`] (its batches, loss, evaluation); [`fit`] owns
//! the rest: seeding, the optimiser ([`optim`]) and learning-rate schedule
//! ([`schedule`]), gradient clipping, the on-device loss queue with its
//! non-finite check, validation every N steps and after the last, the best
//! and resume checkpoints ([`RunDir`]), `--resume`, early stopping, the
//! progress bar and `metrics.csv` ([`metrics`]).

pub mod denormal;
pub mod engine;
pub mod metrics;
pub mod optim;
pub mod recipes;
pub mod run_dir;
pub mod schedule;

pub use engine::{fit, init, Best, Eval, Goal, RunState, RunStats, Settings, Task, BEST, LAST};
pub use metrics::{NoScores, Scores};
pub use models::clip_grad_norm_;
pub use optim::{Optim, Optimizer};
pub use run_dir::RunDir;
pub use schedule::{LrSchedule, Schedule};
