//! A run folder's `config.json` and `summary.json` as typed values: one enum
//! over the models, tagged by the `"model"` field, each variant holding that
//! model's own config (or summary). `train --resume`, `eval`, `sample` and
//! `plots` read them through [`RunConfig::read`] and [`RunSummary::read`].

use crate::speaker::{SpeakerRunConfig, SpeakerSummary};
use crate::train::ModelKind;
use crate::train_rnn::{RnnRunConfig, RnnSummary};
use crate::wavenet::{WavenetRunConfig, WavenetSummary};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `config.json`: everything a run needs to be rebuilt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum RunConfig {
    RnnTanh(RnnRunConfig),
    RnnRelu(RnnRunConfig),
    Lstm(RnnRunConfig),
    Gru(RnnRunConfig),
    Wavenet(WavenetRunConfig),
    Speaker(SpeakerRunConfig),
}

/// `summary.json`: the results of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum RunSummary {
    RnnTanh(RnnSummary),
    RnnRelu(RnnSummary),
    Lstm(RnnSummary),
    Gru(RnnSummary),
    Wavenet(WavenetSummary),
    Speaker(SpeakerSummary),
}

/// Reads a run file as `T`; a file of an older rnnlab gets an error that
/// says what to do.
fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<T> {
    let path = dir.join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} does not match this rnnlab's run format (a run of an older version, or \
             another program's file); train the run again with this version",
            path.display()
        )
    })
}

impl RunConfig {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        read(dir, "config.json")
    }

    /// The model, as on the command line.
    pub fn kind(&self) -> ModelKind {
        match self {
            RunConfig::RnnTanh(_) => ModelKind::RnnTanh,
            RunConfig::RnnRelu(_) => ModelKind::RnnRelu,
            RunConfig::Lstm(_) => ModelKind::Lstm,
            RunConfig::Gru(_) => ModelKind::Gru,
            RunConfig::Wavenet(_) => ModelKind::Wavenet,
            RunConfig::Speaker(_) => ModelKind::Speaker,
        }
    }

    /// A recurrent classifier's config, under its model's name.
    pub fn rnn(kind: ModelKind, cfg: RnnRunConfig) -> Self {
        match kind {
            ModelKind::RnnTanh => RunConfig::RnnTanh(cfg),
            ModelKind::RnnRelu => RunConfig::RnnRelu(cfg),
            ModelKind::Lstm => RunConfig::Lstm(cfg),
            _ => RunConfig::Gru(cfg),
        }
    }

    /// The recurrent classifier's config, if this is one.
    pub fn as_rnn(&self) -> Option<&RnnRunConfig> {
        match self {
            RunConfig::RnnTanh(c)
            | RunConfig::RnnRelu(c)
            | RunConfig::Lstm(c)
            | RunConfig::Gru(c) => Some(c),
            _ => None,
        }
    }
}

impl RunSummary {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        read(dir, "summary.json")
    }

    /// A recurrent classifier's summary, under its model's name.
    pub fn rnn(kind: ModelKind, s: RnnSummary) -> Self {
        match kind {
            ModelKind::RnnTanh => RunSummary::RnnTanh(s),
            ModelKind::RnnRelu => RunSummary::RnnRelu(s),
            ModelKind::Lstm => RunSummary::Lstm(s),
            _ => RunSummary::Gru(s),
        }
    }

    pub fn as_rnn(&self) -> Option<&RnnSummary> {
        match self {
            RunSummary::RnnTanh(s)
            | RunSummary::RnnRelu(s)
            | RunSummary::Lstm(s)
            | RunSummary::Gru(s) => Some(s),
            _ => None,
        }
    }
}
