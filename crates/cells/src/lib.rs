//! Hand-written recurrent cells with the coursework's API and PyTorch's parameters.
//!
//! `LSTMCell`, `GRUCell` and `BasicRNNCell` each keep the equations of the RNN
//! coursework as named gate methods (so a learner can read them one by one) and
//! a fast path over fused weights that the models use. Parameters have
//! PyTorch's names and layout (`weight_ih [G*H, I]`, `weight_hh [G*H, H]`,
//! `bias_ih`, `bias_hh`; gates i,f,g,o for the LSTM and r,z,n for the GRU), so a
//! PyTorch state dict loads unchanged. Every cell implements [`RecurrentCell`],
//! so models are written once, generic over the cell.
//!
//! `cargo test -p cells` checks forward values and gradients (through several
//! unrolled steps) against libtorch's own `lstm_cell`, `gru_cell`,
//! `rnn_tanh_cell` and `rnn_relu_cell`, and against finite differences in f64.

mod basic;
mod cell;
mod gru;
mod lstm;
mod weights;

pub use basic::{BasicRNNCell, Nonlinearity};
pub use cell::{CellState, RecurrentCell};
pub use gru::GRUCell;
pub use lstm::{LSTMCell, LstmState};
pub use weights::CellWeights;

/// Errors from building a cell out of user-supplied options.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// The coursework's `BasicRNNCell` accepts only "tanh" and "relu".
    #[error("invalid nonlinearity {0:?} selected for RNN: expected \"tanh\" or \"relu\"")]
    InvalidNonlinearity(String),
}
