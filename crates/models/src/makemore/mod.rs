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
