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
//! On the CPU, `LSTMCell::seq` and `GRUCell::seq` run a layer's whole sequence
//! as one autograd node with a hand-written backward (`kernel`, bridged to
//! libtorch's autograd by `csrc/custom_function.cpp`): the same values and
//! gradients as the step-by-step path (`seq_steps`), in a few calls instead of
//! thousands.
//!
//! `cargo test -p cells` checks forward values and gradients (through several
//! unrolled steps) against libtorch's own `lstm_cell`, `gru_cell`,
//! `rnn_tanh_cell` and `rnn_relu_cell`, and against finite differences in f64.

pub mod autograd;
mod basic;
mod cell;
mod gru;
mod kernel;
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
    /// An input or initial state of the wrong shape for a sequence.
    #[error("{0}")]
    Shape(String),
    /// A sequence kernel's own failure.
    #[error("{0}")]
    Kernel(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind, Tensor};

    fn shapes(vs: &nn::VarStore) -> Vec<(String, Vec<i64>)> {
        let mut v: Vec<_> = vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
        v.sort();
        v
    }

    #[test]
    fn parameters_have_pytorch_names_and_layout() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _lstm = LSTMCell::new(vs.root() / "lstm", 3, 5, true);
        let _gru = GRUCell::new(vs.root() / "gru", 3, 5, false);
        let _rnn = BasicRNNCell::new(vs.root() / "rnn", 3, 5, true, Nonlinearity::Relu);
        let expected = [
            ("gru.weight_hh", vec![15, 5]),
            ("gru.weight_ih", vec![15, 3]),
            ("lstm.bias_hh", vec![20]),
            ("lstm.bias_ih", vec![20]),
            ("lstm.weight_hh", vec![20, 5]),
            ("lstm.weight_ih", vec![20, 3]),
            ("rnn.bias_hh", vec![5]),
            ("rnn.bias_ih", vec![5]),
            ("rnn.weight_hh", vec![5, 5]),
            ("rnn.weight_ih", vec![5, 3]),
        ];
        let expected: Vec<_> = expected.into_iter().map(|(k, s)| (k.to_owned(), s)).collect();
        assert_eq!(shapes(&vs), expected);
    }

    #[test]
    fn named_weights_take_a_suffix() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = CellWeights::named(vs.root(), 2, 3, 4, false, "_l1_reverse");
        assert_eq!(w.gates(), 4);
        let names: Vec<_> = shapes(&vs).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["weight_hh_l1_reverse", "weight_ih_l1_reverse"]);
    }

    #[test]
    fn reset_parameters_draws_within_one_over_sqrt_hidden() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cell = LSTMCell::new(vs.root(), 7, 16, true);
        let before = cell.weights().weight_ih.copy();
        cell.reset_parameters();
        let bound = 1.0 / 16f64.sqrt();
        for p in cell.weights().parameters() {
            let max = p.abs().max().double_value(&[]);
            assert!(max <= bound, "{max} > {bound}");
            // Spread over the interval, not a constant.
            assert!(max > 0.8 * bound, "{max} is far inside {bound}");
            assert!(p.requires_grad());
        }
        assert!(cell.weights().weight_ih.not_equal_tensor(&before).any().int64_value(&[]) == 1);
    }

    #[test]
    fn invalid_nonlinearity_is_an_error() {
        assert_eq!("tanh".parse::<Nonlinearity>().unwrap(), Nonlinearity::Tanh);
        assert_eq!("relu".parse::<Nonlinearity>().unwrap(), Nonlinearity::Relu);
        let err = "sigmoid".parse::<Nonlinearity>().unwrap_err();
        assert!(err.to_string().contains("\"sigmoid\""), "{err}");
    }

    #[test]
    fn missing_state_means_zeros() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cell = LSTMCell::new(vs.root(), 3, 4, true);
        let x = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        let a = cell.forward(&x, None);
        let b = cell.forward(&x, Some(&cell.zero_state(2)));
        assert_eq!(a.h.size(), [2, 4]);
        assert!(a.h.equal(&b.h) && a.c.equal(&b.c));
        let gru = GRUCell::new(vs.root() / "g", 3, 4, true);
        assert!(gru.forward(&x, None).equal(&gru.forward(&x, Some(&gru.zero_state(2)))));
    }

    #[test]
    fn detached_states_keep_their_values_and_drop_the_graph() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        let lstm = LSTMCell::new(vs.root() / "l", 3, 4, true).forward(&x, None);
        let cut = lstm.detach();
        assert!(lstm.h.requires_grad() && lstm.c.requires_grad());
        assert!(!cut.h.requires_grad() && !cut.c.requires_grad());
        assert!(cut.h.equal(&lstm.h) && cut.c.equal(&lstm.c));
        let h = GRUCell::new(vs.root() / "g", 3, 4, true).forward(&x, None);
        let cut = CellState::detach(&h);
        assert!(h.requires_grad() && !cut.requires_grad() && cut.equal(&h));
    }

    #[test]
    fn seq_returns_every_output_and_the_final_state() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cell = GRUCell::new(vs.root(), 3, 4, true);
        let x = Tensor::randn([2, 5, 3], (Kind::Float, Device::Cpu));
        let (out, last) = cell.seq(&x, None);
        assert_eq!(out.size(), [2, 5, 4]);
        assert!(out.select(1, 4).equal(&last));
    }
}
