//! The four parameter tensors every cell holds, in PyTorch's layout.
//!
//! `nn.LSTMCell`, `nn.GRUCell` and `nn.RNNCell` all store `weight_ih [G*H, I]`,
//! `weight_hh [G*H, H]`, `bias_ih [G*H]` and `bias_hh [G*H]`, with G = 4, 3, 1
//! gates stacked along the rows. Keeping exactly that layout (rather than one
//! `Linear` per gate) makes one step two matrix products and lets weights move
//! to and from PyTorch unchanged.

use std::borrow::Borrow;
use tch::nn::{self, Init};
use tch::Tensor;

/// Fused input-to-hidden and hidden-to-hidden weights of one cell.
#[derive(Debug)]
pub struct CellWeights {
    /// `[G*H, I]`
    pub weight_ih: Tensor,
    /// `[G*H, H]`
    pub weight_hh: Tensor,
    /// `[G*H]`, absent when the cell was built with `bias = false`.
    pub bias_ih: Option<Tensor>,
    /// `[G*H]`, absent when the cell was built with `bias = false`.
    pub bias_hh: Option<Tensor>,
    input_size: i64,
    hidden_size: i64,
    gates: i64,
}

impl CellWeights {
    /// Registers `weight_ih`, `weight_hh` (and `bias_ih`, `bias_hh` when `bias`)
    /// under `path`, drawn from U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does.
    pub fn new<'a>(
        path: impl Borrow<nn::Path<'a>>,
        input_size: i64,
        hidden_size: i64,
        gates: i64,
        bias: bool,
    ) -> Self {
        Self::named(path, input_size, hidden_size, gates, bias, "")
    }

    /// As [`CellWeights::new`], with `suffix` after each name: `nn.LSTM` calls
    /// layer 1's backward weights `weight_ih_l1_reverse`, so a stack passes
    /// `"_l1_reverse"`.
    pub fn named<'a>(
        path: impl Borrow<nn::Path<'a>>,
        input_size: i64,
        hidden_size: i64,
        gates: i64,
        bias: bool,
        suffix: &str,
    ) -> Self {
        let p = path.borrow();
        let k = 1.0 / (hidden_size as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let rows = gates * hidden_size;
        let var = |name: &str, dims: &[i64]| p.var(&format!("{name}{suffix}"), dims, init);
        let weight_ih = var("weight_ih", &[rows, input_size]);
        let weight_hh = var("weight_hh", &[rows, hidden_size]);
        let (bias_ih, bias_hh) = if bias {
            (Some(var("bias_ih", &[rows])), Some(var("bias_hh", &[rows])))
        } else {
            (None, None)
        };
        Self { weight_ih, weight_hh, bias_ih, bias_hh, input_size, hidden_size, gates }
    }

    /// Gates stacked in the weights: 4 (LSTM), 3 (GRU) or 1 (RNN).
    pub fn gates(&self) -> i64 {
        self.gates
    }

    /// Redraws every parameter in place from U(-1/sqrt(H), 1/sqrt(H)), like the
    /// coursework's `reset_parameters`.
    pub fn reset_parameters(&self) {
        let k = 1.0 / (self.hidden_size as f64).sqrt();
        tch::no_grad(|| {
            for t in self.parameters() {
                let _ = t.shallow_clone().uniform_(-k, k);
            }
        });
    }

    /// The parameters in libtorch's order for `Tensor::lstm` and friends:
    /// `w_ih, w_hh[, b_ih, b_hh]`.
    pub fn parameters(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.weight_ih, &self.weight_hh];
        v.extend(self.bias_ih.iter().chain(self.bias_hh.iter()));
        v
    }

    pub fn input_size(&self) -> i64 {
        self.input_size
    }

    pub fn hidden_size(&self) -> i64 {
        self.hidden_size
    }

    pub fn has_bias(&self) -> bool {
        self.bias_ih.is_some()
    }

    /// `x W_ih^T + b_ih`: `[.., I] -> [.., G*H]`, for any leading dimensions,
    /// so a whole sequence is projected in one matrix product.
    pub fn project_input(&self, input: &Tensor) -> Tensor {
        input.linear(&self.weight_ih, self.bias_ih.as_ref())
    }

    /// `x W_ih^T + b_ih + b_hh`: both biases folded into the input projection,
    /// for cells whose hidden projection is only ever added (LSTM, RNN). The
    /// time loop then needs one fused multiply-add per step ([`Self::recur`]).
    pub fn project_input_with_hidden_bias(&self, input: &Tensor) -> Tensor {
        match (&self.bias_ih, &self.bias_hh) {
            (Some(b_ih), Some(b_hh)) => input.linear(&self.weight_ih, Some(b_ih + b_hh)),
            _ => input.linear::<Tensor>(&self.weight_ih, None),
        }
    }

    /// `gi + h W_hh^T` in one `addmm`: `[B, G*H]`.
    pub fn recur(&self, gi: &Tensor, hidden: &Tensor) -> Tensor {
        gi.addmm(hidden, &self.weight_hh.tr())
    }

    /// `h W_hh^T + b_hh`: `[B, H] -> [B, G*H]`.
    pub fn project_hidden(&self, hidden: &Tensor) -> Tensor {
        hidden.linear(&self.weight_hh, self.bias_hh.as_ref())
    }

    /// Pre-activation of gate `k` alone (rows `k*H..(k+1)*H`), split into its
    /// input part `W_ik x + b_ik` and hidden part `W_hk h + b_hk`. This is the
    /// readable path the gate methods use; the fast path uses the fused products.
    pub fn gate_parts(&self, k: i64, input: &Tensor, hidden: &Tensor) -> (Tensor, Tensor) {
        assert!(k < self.gates, "gate {k} out of range for {} gates", self.gates);
        let h = self.hidden_size;
        let rows = |t: &Tensor| t.narrow(0, k * h, h);
        let x_part = input.linear(&rows(&self.weight_ih), self.bias_ih.as_ref().map(rows));
        let h_part = hidden.linear(&rows(&self.weight_hh), self.bias_hh.as_ref().map(rows));
        (x_part, h_part)
    }
}
