//! The coursework's models on the hand-written cells of `crates/cells`.

pub mod fused;
pub mod lengths;
pub mod linear;
pub mod mode;
pub mod optim;
pub mod rnn_model;
pub mod stack;

pub mod cluster;
pub mod speaker;

pub use fused::FusedCell;
pub use linear::torch_linear;
pub use mode::{InvalidMode, Mode};
pub use optim::{clip_grad_norm_, Adam};
pub use rnn_model::{
    classifier, BidirRecurrentModel, Engine, RNNModel, RnnConfig, SequenceClassifier,
};
pub use stack::{BidirStack, CellStack, MakeCell};

pub mod makemore;
