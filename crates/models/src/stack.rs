//! Stacks of recurrent cells, generic over [`RecurrentCell`]: the one piece of
//! recurrence every model here shares (`RNNModel`, `BidirRecurrentModel`, the
//! speaker BiLSTM).
//!
//! Layers run one after another over the whole sequence ("layers then time
//! steps"): the same values as the coursework's time-major loop, since layer
//! `k` at step `t` only needs layer `k-1` at steps `<= t`, and it lets each
//! layer project all its inputs in one matrix product.

use crate::lengths::in_time_order;
use cells::RecurrentCell;
use tch::{nn, Tensor};

/// Builds one cell: `(path, input_size, hidden_size, name_suffix)`.
pub trait MakeCell<C>: Fn(&nn::Path, i64, i64, &str) -> C {}
impl<C, F: Fn(&nn::Path, i64, i64, &str) -> C> MakeCell<C> for F {}

/// `num_layers` cells, one direction, as the coursework's `nn.ModuleList`:
/// layer `k`'s parameters are `<path>.<k>.weight_ih` and so on.
#[derive(Debug)]
pub struct CellStack<C> {
    cells: Vec<C>,
}

impl<C: RecurrentCell> CellStack<C> {
    pub fn new(
        path: &nn::Path,
        input_size: i64,
        hidden_size: i64,
        num_layers: i64,
        make: impl MakeCell<C>,
    ) -> Self {
        let cells = (0..num_layers)
            .map(|k| {
                let fan_in = if k == 0 { input_size } else { hidden_size };
                make(&(path / k), fan_in, hidden_size, "")
            })
            .collect();
        Self { cells }
    }

    pub fn cells(&self) -> &[C] {
        &self.cells
    }

    /// The top layer's output at every step, `[B, T, I] -> [B, T, H]`. With
    /// `reverse` the stack reads time backwards; outputs stay in the input's
    /// time order, so the reverse stack's final output is at step 0.
    pub fn forward(&self, input: &Tensor, reverse: bool) -> Tensor {
        self.forward_lengths(input, reverse, None)
    }

    /// [`Self::forward`] over a padded batch of utterances of `lengths [B]`
    /// valid frames (see [`crate::lengths`]): read backwards, each row starts
    /// at its own last frame. Outputs at padded steps are not meaningful.
    pub fn forward_lengths(
        &self,
        input: &Tensor,
        reverse: bool,
        lengths: Option<&Tensor>,
    ) -> Tensor {
        in_time_order(input, reverse, lengths, |x| {
            let mut x = x.shallow_clone();
            for cell in &self.cells {
                x = cell.seq(&x, None).0;
            }
            x
        })
    }
}

/// A bidirectional stack laid out as PyTorch's `nn.LSTM(bidirectional=True)`:
/// at each layer one cell reads forward and one backward, their outputs are
/// concatenated (`[B, T, 2H]`) and feed the next layer. Parameters are named
/// `weight_ih_l{k}` and `weight_ih_l{k}_reverse`, so an `nn.LSTM` state dict
/// loads unchanged.
#[derive(Debug)]
pub struct BidirStack<C> {
    forward: Vec<C>,
    backward: Vec<C>,
}

impl<C: RecurrentCell> BidirStack<C> {
    pub fn new(
        path: &nn::Path,
        input_size: i64,
        hidden_size: i64,
        num_layers: i64,
        make: impl MakeCell<C>,
    ) -> Self {
        let (mut forward, mut backward) = (Vec::new(), Vec::new());
        for k in 0..num_layers {
            let fan_in = if k == 0 { input_size } else { 2 * hidden_size };
            forward.push(make(path, fan_in, hidden_size, &format!("_l{k}")));
            backward.push(make(path, fan_in, hidden_size, &format!("_l{k}_reverse")));
        }
        Self { forward, backward }
    }

    /// `[B, T, I] -> [B, T, 2H]`: forward direction in `[.., :H]`, backward in
    /// `[.., H:]`, both in the input's time order (as `nn.LSTM` returns).
    pub fn forward(&self, input: &Tensor) -> Tensor {
        self.forward_lengths(input, None)
    }

    /// [`Self::forward`] over a padded batch of utterances of `lengths [B]`
    /// valid frames: the backward direction of each layer starts at each
    /// row's own last frame (see [`crate::lengths`]), as `nn.LSTM` over a
    /// packed sequence. Outputs at padded steps are not meaningful.
    pub fn forward_lengths(&self, input: &Tensor, lengths: Option<&Tensor>) -> Tensor {
        self.run(input, lengths, |cell, x| cell.seq(x, None).0)
    }

    /// The layers in turn, each direction's sequence through `seq`.
    pub(crate) fn run(
        &self,
        input: &Tensor,
        lengths: Option<&Tensor>,
        seq: impl Fn(&C, &Tensor) -> Tensor,
    ) -> Tensor {
        let mut x = input.shallow_clone();
        for (f, b) in self.forward.iter().zip(&self.backward) {
            let out_f = seq(f, &x);
            let out_b = in_time_order(&x, true, lengths, |x| seq(b, x));
            x = Tensor::cat(&[out_f, out_b], 2);
        }
        x
    }
}
