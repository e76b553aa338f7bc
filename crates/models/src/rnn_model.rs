//! The coursework's `RNNModel` and `BidirRecurrentModel`.
//!
//! `RNNModel(mode, input_size, hidden_size, num_layers, bias, output_size)`
//! stacks `num_layers` cells of `mode` (`rnn_cell_list`) and classifies the top
//! layer's last output with `fc`. `BidirRecurrentModel` adds a separate
//! reverse stack (`rnn_cell_list_rev`) that reads the sequence backwards, and
//! `fc` sees the forward stack's last output joined with the reverse stack's
//! last output (the one at the first time step). Both run on either engine,
//! with the same parameters: `custom` (the hand-written cells) or `fused`
//! (libtorch's whole-sequence kernels).
//!
//! Given the valid frames of each utterance of a padded batch
//! ([`SequenceClassifier::forward_lengths`]), `fc` sees the forward stack's
//! output at each utterance's own last frame and the reverse stack starts
//! reading there (see [`crate::lengths`]); without them, the last step of the
//! padded batch, as the notebook does.

use crate::lengths::{self, last_valid};
use crate::{torch_linear, CellStack, FusedCell, Mode};
use cells::{BasicRNNCell, GRUCell, LSTMCell, Nonlinearity};
use tch::{nn, Tensor};

/// The coursework's constructor arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RnnConfig {
    pub mode: Mode,
    pub input_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub bias: bool,
    pub output_size: i64,
}

/// Who runs the recurrence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// The hand-written cells, each layer through its cell's `seq`: for the
    /// LSTM and the GRU on CPU tensors of f32 or f64, the cells' sequence
    /// kernels (one autograd node per layer, backward written by hand);
    /// otherwise (Elman cells, CUDA, other dtypes) step by step through autograd.
    #[default]
    Custom,
    /// libtorch's `lstm` / `gru` / `rnn_tanh` / `rnn_relu` (cuDNN on a GPU).
    Fused,
}

/// One direction's stack, whichever the cell.
#[derive(Debug)]
enum Stack {
    Lstm(CellStack<LSTMCell>),
    Gru(CellStack<GRUCell>),
    Rnn(CellStack<BasicRNNCell>),
}

impl Stack {
    fn new(path: &nn::Path, c: &RnnConfig) -> Self {
        let (i, h, l, bias) = (c.input_size, c.hidden_size, c.num_layers, c.bias);
        let rnn = |nl| {
            Stack::Rnn(CellStack::new(path, i, h, l, |p: &nn::Path, i, h, _: &str| {
                BasicRNNCell::new(p, i, h, bias, nl)
            }))
        };
        match c.mode {
            Mode::Lstm => {
                Stack::Lstm(CellStack::new(path, i, h, l, |p: &nn::Path, i, h, _: &str| {
                    LSTMCell::new(p, i, h, bias)
                }))
            }
            Mode::Gru => {
                Stack::Gru(CellStack::new(path, i, h, l, |p: &nn::Path, i, h, _: &str| {
                    GRUCell::new(p, i, h, bias)
                }))
            }
            Mode::RnnTanh => rnn(Nonlinearity::Tanh),
            Mode::RnnRelu => rnn(Nonlinearity::Relu),
        }
    }

    /// Every LSTM cell's forget-gate bias set to `value`
    /// ([`LSTMCell::init_forget_bias`]).
    ///
    /// # Panics
    /// For a GRU or Elman stack, which has no forget gate.
    fn init_forget_bias(&self, value: f64) {
        match self {
            Stack::Lstm(s) => s.cells().iter().for_each(|c| c.init_forget_bias(value)),
            _ => panic!("init_forget_bias: only an LSTM has a forget gate"),
        }
    }

    /// `[B, T, I] -> [B, T, H]`, in the input's time order; read backwards
    /// within each row's length when `lengths` is given.
    fn forward(&self, x: &Tensor, reverse: bool, lengths: Option<&Tensor>, run: Run) -> Tensor {
        fn go<C: FusedCell>(
            s: &CellStack<C>,
            x: &Tensor,
            r: bool,
            l: Option<&Tensor>,
            run: Run,
        ) -> Tensor {
            match run.engine {
                Engine::Custom => s.forward_lengths(x, r, l),
                Engine::Fused => s.forward_fused(x, r, l, run.train),
            }
        }
        match self {
            Stack::Lstm(s) => go(s, x, reverse, lengths, run),
            Stack::Gru(s) => go(s, x, reverse, lengths, run),
            Stack::Rnn(s) => go(s, x, reverse, lengths, run),
        }
    }
}

/// Who runs a forward pass, and in which mode.
#[derive(Debug, Clone, Copy)]
struct Run {
    engine: Engine,
    train: bool,
}

/// A classifier of padded batches of utterances: `[B, T, I]` and, optionally,
/// each utterance's valid frames `lengths [B]` (Int64, in `1..=T`) to
/// `[B, output]` logits. `forward_t` is `forward_lengths` without lengths.
pub trait SequenceClassifier: nn::ModuleT {
    /// Logits of `xs [B, T, I]` reading only the first `lengths[b]` frames of
    /// row `b` (all `T` when `None`).
    ///
    /// # Panics
    /// When `lengths` is not Int64 `[B]` with values in `1..=T`.
    fn forward_lengths(&self, xs: &Tensor, lengths: Option<&Tensor>, train: bool) -> Tensor;
}

fn check_lengths(xs: &Tensor, lengths: Option<&Tensor>) {
    if let Some(l) = lengths {
        let size = xs.size();
        lengths::check(l, size[0], size[1]);
    }
}

fn check(c: &RnnConfig) {
    assert!(c.num_layers >= 1, "RNNModel needs at least one layer, got {}", c.num_layers);
}

/// `RNNModel`: `[B, T, input_size] -> [B, output_size]` logits.
#[derive(Debug)]
pub struct RNNModel {
    config: RnnConfig,
    engine: Engine,
    rnn_cell_list: Stack,
    fc: nn::Linear,
}

impl RNNModel {
    pub fn new(path: &nn::Path, config: RnnConfig) -> Self {
        check(&config);
        Self {
            config,
            engine: Engine::Custom,
            rnn_cell_list: Stack::new(&(path / "rnn_cell_list"), &config),
            fc: torch_linear(&(path / "fc"), config.hidden_size, config.output_size),
        }
    }

    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// LSTM: every cell's forget-gate bias set to `value` (see
    /// [`LSTMCell::init_forget_bias`]); panics for other modes.
    pub fn with_forget_bias(self, value: f64) -> Self {
        self.rnn_cell_list.init_forget_bias(value);
        self
    }
}

impl nn::ModuleT for RNNModel {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_lengths(xs, None, train)
    }
}

impl SequenceClassifier for RNNModel {
    fn forward_lengths(&self, xs: &Tensor, lengths: Option<&Tensor>, train: bool) -> Tensor {
        check_lengths(xs, lengths);
        let run = Run { engine: self.engine, train };
        let out = self.rnn_cell_list.forward(xs, false, lengths, run); // [B, T, H]
        last_valid(&out, lengths).apply(&self.fc) // [B, output]
    }
}

/// `BidirRecurrentModel`: a forward and a separate reverse stack;
/// `[B, T, input_size] -> [B, output_size]` logits.
#[derive(Debug)]
pub struct BidirRecurrentModel {
    config: RnnConfig,
    engine: Engine,
    rnn_cell_list: Stack,
    rnn_cell_list_rev: Stack,
    fc: nn::Linear,
}

impl BidirRecurrentModel {
    pub fn new(path: &nn::Path, config: RnnConfig) -> Self {
        check(&config);
        Self {
            config,
            engine: Engine::Custom,
            rnn_cell_list: Stack::new(&(path / "rnn_cell_list"), &config),
            rnn_cell_list_rev: Stack::new(&(path / "rnn_cell_list_rev"), &config),
            fc: torch_linear(&(path / "fc"), 2 * config.hidden_size, config.output_size),
        }
    }

    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// LSTM: both stacks' forget-gate biases set to `value`; panics for other modes.
    pub fn with_forget_bias(self, value: f64) -> Self {
        self.rnn_cell_list.init_forget_bias(value);
        self.rnn_cell_list_rev.init_forget_bias(value);
        self
    }
}

impl nn::ModuleT for BidirRecurrentModel {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_lengths(xs, None, train)
    }
}

impl SequenceClassifier for BidirRecurrentModel {
    fn forward_lengths(&self, xs: &Tensor, lengths: Option<&Tensor>, train: bool) -> Tensor {
        check_lengths(xs, lengths);
        let run = Run { engine: self.engine, train };
        let fwd = last_valid(&self.rnn_cell_list.forward(xs, false, lengths, run), lengths);
        let rev = self.rnn_cell_list_rev.forward(xs, true, lengths, run).select(1, 0);
        Tensor::cat(&[fwd, rev], 1).apply(&self.fc) // [B, 2H] -> [B, output]
    }
}

/// Either model, chosen at run time (`--bidir`), with PyTorch's initial
/// weights or, given `forget_bias` (LSTM only), that forget-gate bias.
pub fn classifier(
    path: &nn::Path,
    config: RnnConfig,
    bidirectional: bool,
    engine: Engine,
    forget_bias: Option<f64>,
) -> Box<dyn SequenceClassifier> {
    if bidirectional {
        let model = BidirRecurrentModel::new(path, config).with_engine(engine);
        Box::new(match forget_bias {
            Some(b) => model.with_forget_bias(b),
            None => model,
        })
    } else {
        let model = RNNModel::new(path, config).with_engine(engine);
        Box::new(match forget_bias {
            Some(b) => model.with_forget_bias(b),
            None => model,
        })
    }
}
