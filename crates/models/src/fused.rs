//! The `fused` engine: the same parameters run by libtorch's whole-sequence
//! kernels (`Tensor::lstm`, `gru`, `rnn_tanh`, `rnn_relu`; cuDNN on a GPU).
//!
//! A [`crate::CellStack`] keeps its parameters in the hand-written cells; for
//! the fused engine they are handed over, in libtorch's order (per layer
//! `w_ih, w_hh[, b_ih, b_hh]`), to one call over all layers and time steps.

use crate::lengths::in_time_order;
use cells::{BasicRNNCell, GRUCell, LSTMCell, Nonlinearity, RecurrentCell};
use tch::Tensor;

/// A cell whose stack libtorch can run in one call.
pub trait FusedCell: RecurrentCell + Sized {
    /// Runs `layers` (bottom first) over `input [B, T, I]` from zero states;
    /// returns the top layer's outputs `[B, T, H]`.
    fn fused(layers: &[Self], input: &Tensor, train: bool) -> Tensor;
}

/// The flat parameter list, whether all layers have biases, and the zero
/// initial hidden state `[L, B, H]`.
fn flat<C: RecurrentCell>(layers: &[C], input: &Tensor) -> (Vec<Tensor>, bool, Tensor) {
    let params = layers
        .iter()
        .flat_map(|c| c.weights().parameters().into_iter().map(Tensor::shallow_clone))
        .collect();
    let bias = layers[0].weights().has_bias();
    let w = &layers[0].weights().weight_hh;
    let h0 = Tensor::zeros(
        [layers.len() as i64, input.size()[0], layers[0].hidden_size()],
        (w.kind(), w.device()),
    );
    (params, bias, h0)
}

impl FusedCell for LSTMCell {
    fn fused(layers: &[Self], input: &Tensor, train: bool) -> Tensor {
        let (params, bias, h0) = flat(layers, input);
        let n = layers.len() as i64;
        let hx = [h0.shallow_clone(), h0];
        input.lstm(&hx, &params, bias, n, 0.0, train, false, true).0
    }
}

impl FusedCell for GRUCell {
    fn fused(layers: &[Self], input: &Tensor, train: bool) -> Tensor {
        let (params, bias, h0) = flat(layers, input);
        input.gru(&h0, &params, bias, layers.len() as i64, 0.0, train, false, true).0
    }
}

impl FusedCell for BasicRNNCell {
    fn fused(layers: &[Self], input: &Tensor, train: bool) -> Tensor {
        let (params, bias, h0) = flat(layers, input);
        let n = layers.len() as i64;
        match layers[0].nonlinearity() {
            Nonlinearity::Tanh => input.rnn_tanh(&h0, &params, bias, n, 0.0, train, false, true).0,
            Nonlinearity::Relu => input.rnn_relu(&h0, &params, bias, n, 0.0, train, false, true).0,
        }
    }
}

impl<C: FusedCell> crate::CellStack<C> {
    /// As [`crate::CellStack::forward_lengths`], run by libtorch's fused kernel.
    ///
    /// With `lengths`, the kernel runs over the same padded batch, reversed
    /// within each row's length by a gather when reading backwards (see
    /// [`crate::lengths`]), rather than over a packed sequence: one mechanism
    /// for both engines, exact for every stack layout (this stack reads the
    /// whole sequence backwards through all its layers, which libtorch's
    /// bidirectional packed kernels do not express), and no sorting by length.
    pub fn forward_fused(
        &self,
        input: &Tensor,
        reverse: bool,
        lengths: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        in_time_order(input, reverse, lengths, |x| C::fused(self.cells(), x, train))
    }
}

impl<C: FusedCell> crate::BidirStack<C> {
    /// As [`crate::BidirStack::forward_lengths`], each direction of each
    /// layer run by libtorch's fused kernel (one layer per call, so that the
    /// backward direction can start at each row's own last frame).
    pub fn forward_fused(&self, input: &Tensor, lengths: Option<&Tensor>, train: bool) -> Tensor {
        self.run(input, lengths, |cell, x| C::fused(std::slice::from_ref(cell), x, train))
    }
}
