//! The one trait every recurrent cell implements.
//!
//! A cell advances a state by one time step. Models (`RNNModel`,
//! `BidirRecurrentModel`, the speaker BiLSTM) are written once against this
//! trait. The input projection `x W_ih^T + b_ih` is split from the recurrence
//! so that [`RecurrentCell::seq`] projects all time steps in one matrix product
//! and only `h W_hh^T` stays inside the time loop.

use crate::{CellError, CellWeights};
use tch::Tensor;

/// What a cell carries from one step to the next.
pub trait CellState {
    /// The hidden state `h` `[B, H]`: what the cell outputs at this step.
    fn output(&self) -> &Tensor;

    /// The same state cut from the graph that computed it (`h.detach()`, and
    /// `c` too for the LSTM): truncated back-propagation through time.
    fn detach(&self) -> Self
    where
        Self: Sized;

    /// Every tensor of the state with its name as an initial state (`h0`,
    /// `c0`), each `[B, H]`: what [`RecurrentCell::f_seq`] checks.
    fn named(&self) -> Vec<(&'static str, &Tensor)>;
}

impl CellState for Tensor {
    fn output(&self) -> &Tensor {
        self
    }

    fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![("h0", self)]
    }

    fn detach(&self) -> Self {
        Tensor::detach(self)
    }
}

/// One recurrent cell: `LSTMCell`, `GRUCell` or `BasicRNNCell`.
pub trait RecurrentCell {
    /// `Tensor` (`h`) for GRU and RNN cells, [`crate::LstmState`] for the LSTM.
    type State: CellState;

    /// The cell's parameters in PyTorch's layout.
    fn weights(&self) -> &CellWeights;

    /// The zero state for a batch of `batch`, on the weights' device and dtype.
    fn zero_state(&self, batch: i64) -> Self::State;

    /// The input's share of the pre-activations for every step at once,
    /// `[.., I] -> [.., G*H]`: `x W_ih^T + b_ih` by default; cells may fold
    /// more in (the LSTM and RNN cells add `b_hh` here).
    fn project_input(&self, input: &Tensor) -> Tensor {
        self.weights().project_input(input)
    }

    /// One step from a projected input `gi` (what [`Self::project_input`]
    /// gave for this step, `[B, G*H]`).
    fn step_projected(&self, gi: &Tensor, state: &Self::State) -> Self::State;

    fn input_size(&self) -> i64 {
        self.weights().input_size()
    }

    fn hidden_size(&self) -> i64 {
        self.weights().hidden_size()
    }

    /// One step from a raw input `[B, I]`.
    fn step(&self, input: &Tensor, state: &Self::State) -> Self::State {
        self.step_projected(&self.project_input(input), state)
    }

    /// The coursework's `forward(input, hx=None)`: one step, zeros when no
    /// state is given. Returns the new state (for the LSTM, `h` and `c`).
    fn forward(&self, input: &Tensor, state: Option<&Self::State>) -> Self::State {
        match state {
            Some(s) => self.step(input, s),
            None => self.step(input, &self.zero_state(input.size()[0])),
        }
    }

    /// Runs the cell over `input [B, T, I]` from `state` (zeros when `None`).
    /// Returns every step's output `[B, T, H]` and the final state.
    ///
    /// # Panics
    /// Where [`Self::f_seq`] returns an error, with its message (as tch's ops
    /// panic where their `f_` twins return one).
    fn seq(&self, input: &Tensor, state: Option<Self::State>) -> (Tensor, Self::State) {
        self.f_seq(input, state).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::seq`], returning an error for an input that is not `[B, T, I]`
    /// with `T >= 1` and the cell's `I`, or a state that is not `[B, H]`.
    ///
    /// [`Self::seq_steps`] by default; a cell with a whole-sequence kernel
    /// (the LSTM and the GRU on the CPU) runs that instead, with the same
    /// values and gradients.
    fn f_seq(
        &self,
        input: &Tensor,
        state: Option<Self::State>,
    ) -> Result<(Tensor, Self::State), CellError> {
        check_sequence(self, input, state.as_ref())?;
        Ok(self.seq_steps(input, state))
    }

    /// [`Self::seq`] one [`Self::step_projected`] at a time, differentiated by
    /// autograd op by op: works on every device and dtype.
    fn seq_steps(&self, input: &Tensor, state: Option<Self::State>) -> (Tensor, Self::State) {
        let (batch, steps) = (input.size()[0], input.size()[1]);
        let mut state = state.unwrap_or_else(|| self.zero_state(batch));
        let gi = self.project_input(input); // [B, T, G*H], one product for all steps
        let mut outputs = Vec::with_capacity(steps as usize);
        for gi_t in gi.unbind(1) {
            state = self.step_projected(&gi_t, &state);
            outputs.push(state.output().shallow_clone());
        }
        (Tensor::stack(&outputs, 1), state)
    }
}

/// Checks what [`RecurrentCell::f_seq`] promises, as `nn.LSTM` checks its
/// input and `hx`: `input [B, T, I]` with `T >= 1` and the cell's `I`, and every
/// state tensor `[B, H]`.
pub(crate) fn check_sequence<C: RecurrentCell + ?Sized>(
    cell: &C,
    input: &Tensor,
    state: Option<&C::State>,
) -> Result<(), CellError> {
    let shape = input.size();
    let (i, h) = (cell.input_size(), cell.hidden_size());
    if shape.len() != 3 || shape[2] != i {
        return Err(CellError::Shape(format!(
            "input has shape {shape:?}, expected [batch, steps, {i}] (batch first)"
        )));
    }
    if shape[1] < 1 {
        return Err(CellError::Shape(format!(
            "input has shape {shape:?}: a sequence needs at least one step"
        )));
    }
    for (name, t) in state.map(CellState::named).unwrap_or_default() {
        if t.size() != [shape[0], h] {
            return Err(CellError::Shape(format!(
                "{name} has shape {:?}, expected [batch, hidden] = [{}, {h}]",
                t.size(),
                shape[0]
            )));
        }
    }
    Ok(())
}

/// The zero `[batch, H]` tensor on the device and dtype of `w`.
pub(crate) fn zeros_like_rows(w: &CellWeights, batch: i64) -> Tensor {
    Tensor::zeros([batch, w.hidden_size()], (w.weight_hh.kind(), w.weight_hh.device()))
}
