//! The coursework's models on the hand-written cells of `crates/cells`.

pub mod mode;
pub mod stack;

pub mod cluster;
pub mod lr_scheduler;
pub mod speaker;

pub use mode::{InvalidMode, Mode};
pub use stack::{BidirStack, CellStack, MakeCell};

pub mod makemore;
