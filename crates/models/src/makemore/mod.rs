//! makemore part 5 (Karpathy, "Building makemore Part 5: Building a WaveNet"):
//! the layers the lecture builds ([`layers`]), the names data set and its
//! split ([`data`]), and the WaveNet-style hierarchical MLP ([`wavenet`]).

pub mod data;
pub mod layers;
pub mod wavenet;

pub use data::{build_dataset, load_words, split_words, Split, Vocab};
pub use layers::{
    BatchNorm1d, BatchNorm1dConfig, Embedding, FlattenConsecutive, Linear, LinearConfig,
    Sequential, Tanh,
};
pub use wavenet::{WaveNet, WaveNetConfig, NO_DECAY_GROUP};

use std::path::PathBuf;
use tch::Tensor;

/// Mean cross-entropy over a whole split `x [N, context]`, `y [N]`, as the
/// lecture's `split_loss`: `forward` gives evaluation-mode logits (BatchNorm on
/// its running statistics); no gradients; chunks of 16,384 rows bound memory.
pub fn split_loss(forward: impl Fn(&Tensor) -> Tensor, x: &Tensor, y: &Tensor) -> f64 {
    const CHUNK: i64 = 16_384;
    let _guard = tch::no_grad_guard();
    let n = x.size()[0];
    let mut total = 0.0;
    for start in (0..n).step_by(CHUNK as usize) {
        let len = CHUNK.min(n - start);
        let logits = forward(&x.narrow(0, start, len)); // [len, vocab]
        let loss = logits.cross_entropy_loss::<Tensor>(
            &y.narrow(0, start, len),
            None,
            tch::Reduction::Sum,
            -100,
            0.0,
        );
        total += loss.double_value(&[]);
    }
    total / n as f64
}

/// Errors from the names file and from model options.
#[derive(Debug, thiserror::Error)]
pub enum MakemoreError {
    #[error("cannot read names file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("names file {path} is empty")]
    EmptyNames { path: PathBuf },
    #[error("names file {path}, line {line}: {word:?} is not a name of lower-case letters a-z")]
    BadName { path: PathBuf, line: usize, word: String },
    #[error("character {0:?} is not in the vocabulary")]
    OutOfVocab(char),
    #[error("invalid model option: {0}")]
    Config(String),
}
