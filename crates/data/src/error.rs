//! The crate's one error type: every variant names the file (or address) and the reason.

use std::path::PathBuf;

/// Everything the data pipeline can fail on. Nothing in this crate panics on outside input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error while reading or writing `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A WAV file that cannot be decoded (empty, truncated, not a WAV, unsupported encoding).
    #[error("{path}: not a readable WAV file: {reason}")]
    Wav { path: PathBuf, reason: String },
    /// A dataset folder, list or class that is not where it should be.
    #[error("{path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    /// `espeak-ng` is missing or failed.
    #[error("espeak-ng: {0}")]
    Espeak(String),
    /// A speech synthesiser (`engine`: espeak-ng, flite, festival) is missing or failed.
    #[error("{engine}: {reason}")]
    Synth { engine: String, reason: String },
    /// A download that failed or did not have the announced size.
    #[error("{url}: download failed: {reason}")]
    Download { url: String, reason: String },
    /// A tar.gz archive that cannot be read.
    #[error("{path}: cannot extract: {reason}")]
    Archive { path: PathBuf, reason: String },
    /// A cached feature file that cannot be read back.
    #[error("{path}: bad cache entry: {reason}")]
    Cache { path: PathBuf, reason: String },
    /// A libtorch error while building tensors.
    #[error("tensor: {0}")]
    Tensor(#[from] tch::TchError),
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    /// A dataset-layout error on `path`.
    pub fn dataset(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Dataset { path: path.into(), reason: reason.into() }
    }
}

/// The crate's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
