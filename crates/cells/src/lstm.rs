//! `LSTMCell`: the coursework's LSTM cell (Hochreiter & Schmidhuber 1997, with
//! the forget gate of Gers et al. 2000), equations as in PyTorch's `nn.LSTMCell`:
//!
//! ```text
//! i  = σ(W_ii x + b_ii + W_hi h + b_hi)        input_gate
//! f  = σ(W_if x + b_if + W_hf h + b_hf)        forget_gate
//! g  = tanh(W_ig x + b_ig + W_hg h + b_hg)     cell_memory_gate
//! o  = σ(W_io x + b_io + W_ho h + b_ho)        out_gate
//! c' = f ⊙ c + i ⊙ g
//! h' = o ⊙ tanh(c')
//! ```

use crate::cell::{check_sequence, zeros_like_rows};
use crate::kernel;
use crate::{CellError, CellState, CellWeights, RecurrentCell};
use std::borrow::Borrow;
use tch::{nn, Tensor};

/// The LSTM's state: hidden `h` and cell memory `c`, both `[B, H]`.
#[derive(Debug)]
pub struct LstmState {
    pub h: Tensor,
    pub c: Tensor,
}

impl Clone for LstmState {
    fn clone(&self) -> Self {
        Self { h: self.h.shallow_clone(), c: self.c.shallow_clone() }
    }
}

impl CellState for LstmState {
    fn output(&self) -> &Tensor {
        &self.h
    }

    fn detach(&self) -> Self {
        LstmState { h: self.h.detach(), c: self.c.detach() }
    }

    fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![("h0", &self.h), ("c0", &self.c)]
    }
}

/// Long short-term memory cell with fused gate weights `[4H, ·]` in the order
/// i, f, g, o.
#[derive(Debug)]
pub struct LSTMCell {
    w: CellWeights,
}

impl LSTMCell {
    /// `LSTMCell(input_size, hidden_size, bias)` under `path`.
    pub fn new<'a>(
        path: impl Borrow<nn::Path<'a>>,
        input_size: i64,
        hidden_size: i64,
        bias: bool,
    ) -> Self {
        Self { w: CellWeights::new(path, input_size, hidden_size, 4, bias) }
    }

    /// Wraps weights made elsewhere, e.g. with `nn.LSTM`'s names by a stack.
    pub fn from_weights(w: CellWeights) -> Self {
        assert_eq!(w.gates(), 4, "LSTMCell needs 4 gates");
        Self { w }
    }

    /// Redraws every parameter from U(-1/sqrt(H), 1/sqrt(H)).
    pub fn reset_parameters(&self) {
        self.w.reset_parameters()
    }

    /// Sets the forget gate's bias to `value`: `b_if = value`, `b_hf = 0`.
    ///
    /// With PyTorch's uniform draw the forget gate starts near σ(0) = 0.5, so
    /// the memory halves every step and the early gradient through `c` fades
    /// over the sequence; a bias of 1 (Gers et al. 2000; Jozefowicz et al.
    /// 2015; Keras' `unit_forget_bias`) starts it near σ(1) = 0.73.
    ///
    /// # Panics
    /// When the cell was built with `bias = false`.
    pub fn init_forget_bias(&self, value: f64) {
        let (Some(b_ih), Some(b_hh)) = (&self.w.bias_ih, &self.w.bias_hh) else {
            panic!("init_forget_bias: this LSTMCell has no bias");
        };
        let h = self.w.hidden_size();
        tch::no_grad(|| {
            let _ = b_ih.narrow(0, h, h).fill_(value);
            let _ = b_hh.narrow(0, h, h).fill_(0.0);
        });
    }

    fn gate(&self, k: i64, x: &Tensor, h: &Tensor) -> Tensor {
        let (xp, hp) = self.w.gate_parts(k, x, h);
        xp + hp
    }

    /// `i = σ(W_ii x + b_ii + W_hi h + b_hi)`: how much new memory to write.
    pub fn input_gate(&self, x: &Tensor, h: &Tensor) -> Tensor {
        self.gate(0, x, h).sigmoid()
    }

    /// `f = σ(W_if x + b_if + W_hf h + b_hf)`: how much old memory to keep.
    pub fn forget_gate(&self, x: &Tensor, h: &Tensor) -> Tensor {
        self.gate(1, x, h).sigmoid()
    }

    /// `g = tanh(W_ig x + b_ig + W_hg h + b_hg)`: the candidate memory.
    pub fn cell_memory_gate(&self, x: &Tensor, h: &Tensor) -> Tensor {
        self.gate(2, x, h).tanh()
    }

    /// `o = σ(W_io x + b_io + W_ho h + b_ho)`: how much memory to show as `h`.
    pub fn out_gate(&self, x: &Tensor, h: &Tensor) -> Tensor {
        self.gate(3, x, h).sigmoid()
    }

    /// One step written gate by gate, as the coursework reads. Equal to the
    /// fused [`RecurrentCell::step`]; slower (eight products instead of two).
    pub fn forward_gates(&self, x: &Tensor, state: &LstmState) -> LstmState {
        let i = self.input_gate(x, &state.h);
        let f = self.forget_gate(x, &state.h);
        let g = self.cell_memory_gate(x, &state.h);
        let o = self.out_gate(x, &state.h);
        let c = f * &state.c + i * g;
        let h = o * c.tanh();
        LstmState { h, c }
    }
}

impl RecurrentCell for LSTMCell {
    type State = LstmState;

    fn weights(&self) -> &CellWeights {
        &self.w
    }

    fn zero_state(&self, batch: i64) -> LstmState {
        let z = zeros_like_rows(&self.w, batch);
        LstmState { h: z.shallow_clone(), c: z }
    }

    fn project_input(&self, input: &Tensor) -> Tensor {
        self.w.project_input_with_hidden_bias(input)
    }

    /// The hand-written sequence kernel (`kernel/lstm.rs`) when input,
    /// state and weights are CPU tensors of f32 or f64; step by step otherwise.
    fn f_seq(
        &self,
        input: &Tensor,
        state: Option<LstmState>,
    ) -> Result<(Tensor, LstmState), CellError> {
        check_sequence(self, input, state.as_ref())?;
        let state = state.unwrap_or_else(|| self.zero_state(input.size()[0]));
        let mut tensors = vec![input, &state.h, &state.c];
        tensors.extend(self.w.parameters());
        Ok(match kernel::sequence(&kernel::lstm::LSTM_SEQUENCE, &tensors)? {
            Some([out, h, c]) => (out, LstmState { h, c }),
            None => self.seq_steps(input, Some(state)),
        })
    }

    /// The fast path: one `addmm` for all four gates, one sigmoid over them
    /// (the g rows' sigmoid is unused), then `c' = f c + i g`, `h' = o tanh(c')`.
    fn step_projected(&self, gi: &Tensor, state: &LstmState) -> LstmState {
        let h = self.w.hidden_size();
        let gates = self.w.recur(gi, &state.h); // [B, 4H]
        let sig = gates.sigmoid().chunk(4, 1);
        let g = gates.narrow(1, 2 * h, h).tanh();
        let c = (&sig[1] * &state.c).addcmul(&sig[0], &g);
        let h = &sig[3] * c.tanh();
        LstmState { h, c }
    }
}
