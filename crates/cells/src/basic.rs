//! `BasicRNNCell`: the coursework's Elman cell, `h' = φ(W_ih x + b_ih + W_hh h + b_hh)`
//! with φ = tanh or relu, as PyTorch's `nn.RNNCell`.

use crate::cell::zeros_like_rows;
use crate::{CellError, CellWeights, RecurrentCell};
use std::borrow::Borrow;
use std::str::FromStr;
use tch::{nn, Tensor};

/// The nonlinearity of a [`BasicRNNCell`]. Parse it from the coursework's
/// strings: `"tanh"` and `"relu"`; anything else is [`CellError::InvalidNonlinearity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nonlinearity {
    #[default]
    Tanh,
    Relu,
}

impl FromStr for Nonlinearity {
    type Err = CellError;

    fn from_str(s: &str) -> Result<Self, CellError> {
        match s {
            "tanh" => Ok(Self::Tanh),
            "relu" => Ok(Self::Relu),
            other => Err(CellError::InvalidNonlinearity(other.to_owned())),
        }
    }
}

impl Nonlinearity {
    fn apply(self, t: Tensor) -> Tensor {
        match self {
            Self::Tanh => t.tanh(),
            Self::Relu => t.relu(),
        }
    }
}

/// Elman recurrent cell with one "gate": weights `[H, ·]`.
#[derive(Debug)]
pub struct BasicRNNCell {
    w: CellWeights,
    nonlinearity: Nonlinearity,
}

impl BasicRNNCell {
    /// `BasicRNNCell(input_size, hidden_size, bias, nonlinearity)` under `path`.
    pub fn new<'a>(
        path: impl Borrow<nn::Path<'a>>,
        input_size: i64,
        hidden_size: i64,
        bias: bool,
        nonlinearity: Nonlinearity,
    ) -> Self {
        Self { w: CellWeights::new(path, input_size, hidden_size, 1, bias), nonlinearity }
    }

    /// Wraps weights made elsewhere, e.g. with `nn.RNN`'s names by a stack.
    pub fn from_weights(w: CellWeights, nonlinearity: Nonlinearity) -> Self {
        assert_eq!(w.gates(), 1, "BasicRNNCell needs 1 gate");
        Self { w, nonlinearity }
    }

    pub fn nonlinearity(&self) -> Nonlinearity {
        self.nonlinearity
    }

    /// Redraws every parameter from U(-1/sqrt(H), 1/sqrt(H)).
    pub fn reset_parameters(&self) {
        self.w.reset_parameters()
    }

    /// The step written as its equation, with separate input and hidden parts.
    pub fn forward_gates(&self, x: &Tensor, h: &Tensor) -> Tensor {
        let (xp, hp) = self.w.gate_parts(0, x, h);
        self.nonlinearity.apply(xp + hp)
    }
}

impl RecurrentCell for BasicRNNCell {
    type State = Tensor;

    fn weights(&self) -> &CellWeights {
        &self.w
    }

    fn zero_state(&self, batch: i64) -> Tensor {
        zeros_like_rows(&self.w, batch)
    }

    fn project_input(&self, input: &Tensor) -> Tensor {
        self.w.project_input_with_hidden_bias(input)
    }

    fn step_projected(&self, gi: &Tensor, h: &Tensor) -> Tensor {
        self.nonlinearity.apply(self.w.recur(gi, h))
    }
}
