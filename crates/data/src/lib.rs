//! The audio data pipeline: WAV in, librosa-identical MFCCs, Speech Commands (real or
//! synthesised with espeak-ng), an on-disk feature cache and a batching loader.
//!
//! `audio` reads WAVs; `mfcc` matches `librosa.feature.mfcc`; `cache` keys features by file
//! content and parameters; `speech_commands` reads the notebook's dataset layout; `loader`
//! batches it on a device; `augment` masks training batches (SpecAugment); `synth` generates
//! a stand-in dataset; `download` fetches the real one.

pub mod audio;
pub mod augment;
pub mod cache;
pub mod download;
pub mod error;
pub mod loader;
pub mod mfcc;
pub mod speakers;
pub mod speech_commands;
pub mod synth;

pub use error::{DataError, Result};
