//! `GRUCell`: the coursework's gated recurrent unit (Cho et al. 2014), with
//! PyTorch's `nn.GRUCell` equations (the reset gate multiplies the hidden
//! projection *after* its bias, unlike the paper):
//!
//! ```text
//! r  = σ(W_ir x + b_ir + W_hr h + b_hr)              reset_gate
//! z  = σ(W_iz x + b_iz + W_hz h + b_hz)              update_gate
//! n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))     update_component
//! h' = (1 − z) ⊙ n + z ⊙ h
//! ```

use crate::cell::{check_sequence, zeros_like_rows};
use crate::kernel;
use crate::{CellError, CellWeights, RecurrentCell};
use std::borrow::Borrow;
use tch::{nn, Tensor};

/// Gated recurrent unit with fused gate weights `[3H, ·]` in the order r, z, n.
#[derive(Debug)]
pub struct GRUCell {
    w: CellWeights,
}

impl GRUCell {
    /// `GRUCell(input_size, hidden_size, bias)` under `path`.
    pub fn new<'a>(
        path: impl Borrow<nn::Path<'a>>,
        input_size: i64,
        hidden_size: i64,
        bias: bool,
    ) -> Self {
        Self { w: CellWeights::new(path, input_size, hidden_size, 3, bias) }
    }

    /// Wraps weights made elsewhere, e.g. with `nn.GRU`'s names by a stack.
    pub fn from_weights(w: CellWeights) -> Self {
        assert_eq!(w.gates(), 3, "GRUCell needs 3 gates");
        Self { w }
    }

    /// Redraws every parameter from U(-1/sqrt(H), 1/sqrt(H)).
    pub fn reset_parameters(&self) {
        self.w.reset_parameters()
    }

    /// `r = σ(W_ir x + b_ir + W_hr h + b_hr)`: how much of `h` the candidate sees.
    pub fn reset_gate(&self, x: &Tensor, h: &Tensor) -> Tensor {
        let (xp, hp) = self.w.gate_parts(0, x, h);
        (xp + hp).sigmoid()
    }

    /// `z = σ(W_iz x + b_iz + W_hz h + b_hz)`: how much of `h` to keep.
    pub fn update_gate(&self, x: &Tensor, h: &Tensor) -> Tensor {
        let (xp, hp) = self.w.gate_parts(1, x, h);
        (xp + hp).sigmoid()
    }

    /// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`: the candidate state.
    pub fn update_component(&self, x: &Tensor, h: &Tensor, r: &Tensor) -> Tensor {
        let (xp, hp) = self.w.gate_parts(2, x, h);
        (xp + r * hp).tanh()
    }

    /// One step written gate by gate, as the coursework reads. Equal to the
    /// fused [`RecurrentCell::step`]; slower (six products instead of two).
    pub fn forward_gates(&self, x: &Tensor, h: &Tensor) -> Tensor {
        let r = self.reset_gate(x, h);
        let z = self.update_gate(x, h);
        let n = self.update_component(x, h, &r);
        (1 - &z) * n + z * h
    }
}

impl RecurrentCell for GRUCell {
    type State = Tensor;

    fn weights(&self) -> &CellWeights {
        &self.w
    }

    fn zero_state(&self, batch: i64) -> Tensor {
        zeros_like_rows(&self.w, batch)
    }

    /// The hand-written sequence kernel (`kernel/gru.rs`) when input,
    /// state and weights are CPU tensors of f32 or f64; step by step otherwise.
    fn f_seq(&self, input: &Tensor, state: Option<Tensor>) -> Result<(Tensor, Tensor), CellError> {
        check_sequence(self, input, state.as_ref())?;
        let state = state.unwrap_or_else(|| self.zero_state(input.size()[0]));
        let mut tensors = vec![input, &state];
        tensors.extend(self.w.parameters());
        Ok(match kernel::sequence(&kernel::gru::GRU_SEQUENCE, &tensors)? {
            Some([out, h]) => (out, h),
            None => self.seq_steps(input, Some(state)),
        })
    }

    /// The fast path: one product for the hidden side, one sigmoid over r and
    /// z, `n = tanh(gi_n + r ⊙ gh_n)` as one `addcmul`, and
    /// `h' = n + z ⊙ (h − n)` as one `lerp`.
    fn step_projected(&self, gi: &Tensor, h: &Tensor) -> Tensor {
        let hs = self.w.hidden_size();
        let gh = self.w.project_hidden(h); // [B, 3H]
        let gi = gi.split_with_sizes([2 * hs, hs], 1);
        let gh = gh.split_with_sizes([2 * hs, hs], 1);
        let rz = (&gi[0] + &gh[0]).sigmoid().chunk(2, 1);
        let n = gi[1].addcmul(&rz[0], &gh[1]).tanh();
        n.lerp_tensor(h, &rz[1])
    }
}
