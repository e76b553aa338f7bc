//! A training run's folder: `config.json`, `metrics.csv`, `summary.json`,
//! `best.safetensors` and `last.safetensors`.
//!
//! Every file that a crash could leave half-written (checkpoints, JSON) is
//! written to a temporary file in the same folder and renamed over the old
//! one, so a killed run keeps its last complete checkpoint. The resume
//! checkpoint (`last.safetensors`) is one file holding the model, the
//! optimiser state and the loop's position, so one rename moves all three.

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

/// Optimiser tensors in a resume checkpoint are named `optim/<name>`.
const OPTIM_PREFIX: &str = "optim/";
/// The loop state, JSON bytes as a `u8` tensor, in a resume checkpoint.
const STATE_KEY: &str = "engine/state.json";

/// The folder of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

/// What a resume checkpoint holds besides the model.
pub struct Resume<S> {
    pub optimizer: Vec<(String, Tensor)>,
    pub state: S,
}

impl RunDir {
    /// Creates `out`, or `results/<model>-<timestamp>` when `out` is `None`.
    pub fn create(out: Option<&Path>, model: &str) -> anyhow::Result<Self> {
        let path = match out {
            Some(p) => p.to_path_buf(),
            None => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
                PathBuf::from("results").join(format!("{model}-{stamp}"))
            }
        };
        fs::create_dir_all(&path)
            .with_context(|| format!("creating run folder {}", path.display()))?;
        Ok(Self { path })
    }

    /// Opens an existing run (for `--resume`, `eval`, `sample`).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.join("config.json").is_file() {
            bail!("{} is not a run folder: it has no config.json", path.display());
        }
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` (e.g. `config.json`) atomically.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.write_file(name, (text + "\n").as_bytes())
    }

    /// Writes `name` (any file: a report, a script) atomically.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let target = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &target).with_context(|| format!("writing {}", target.display()))
    }

    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        let path = self.file(name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Saves every variable of `vs` as `<name>.safetensors` (PyTorch's names,
    /// e.g. `rnn_cell_list.0.weight_ih`), through a temporary file and a rename.
    pub fn save_checkpoint(&self, vs: &VarStore, name: &str) -> anyhow::Result<()> {
        let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        self.save_tensors(name, &vars)
    }

    /// Loads `<name>.safetensors` into the variables of `vs` (copied in place,
    /// so a shared `&VarStore` is enough); every variable must be present
    /// with its shape (other tensors in the file, as a resume checkpoint's,
    /// are ignored).
    pub fn load_checkpoint(&self, vs: &VarStore, name: &str) -> anyhow::Result<()> {
        let path = self.file(&format!("{name}.safetensors"));
        if !path.is_file() {
            bail!("checkpoint {} does not exist", path.display());
        }
        let saved: std::collections::HashMap<String, Tensor> =
            self.read_tensors(name)?.into_iter().collect();
        for (var, mut tensor) in vs.variables() {
            let src = saved
                .get(&var)
                .with_context(|| format!("checkpoint {} has no {var}", path.display()))?;
            if src.size() != tensor.size() {
                bail!(
                    "checkpoint {}: {var} is {:?}, the model's is {:?}",
                    path.display(),
                    src.size(),
                    tensor.size()
                );
            }
            tch::no_grad(|| tensor.f_copy_(src))
                .with_context(|| format!("loading {var} from {}", path.display()))?;
        }
        Ok(())
    }

    /// Saves named tensors as `<name>.safetensors`, atomically.
    pub fn save_tensors(&self, name: &str, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
        let target = self.file(&format!("{name}.safetensors"));
        // the temporary name keeps the extension tch picks the format from
        let tmp = self.file(&format!(".{name}.tmp.safetensors"));
        Tensor::write_safetensors(tensors, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &target).with_context(|| format!("writing {}", target.display()))
    }

    /// Reads what [`RunDir::save_tensors`] wrote.
    pub fn read_tensors(&self, name: &str) -> anyhow::Result<Vec<(String, Tensor)>> {
        let path = self.file(&format!("{name}.safetensors"));
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Writes a resume checkpoint `<name>.safetensors` in one atomic rename:
    /// the model's variables under their own names (so `eval` loads it as any
    /// checkpoint), the optimiser's tensors under `optim/`, and `state` as JSON.
    pub fn save_resume(
        &self,
        name: &str,
        vs: &VarStore,
        optimizer: &[(String, Tensor)],
        state: &impl Serialize,
    ) -> anyhow::Result<()> {
        let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        for (k, t) in optimizer {
            tensors.push((format!("{OPTIM_PREFIX}{k}"), t.shallow_clone()));
        }
        let json = serde_json::to_vec(state)?;
        tensors.push((STATE_KEY.into(), Tensor::from_slice(&json)));
        self.save_tensors(name, &tensors)
    }

    /// Loads a resume checkpoint into `vs` and returns the rest.
    pub fn load_resume<S: DeserializeOwned>(
        &self,
        name: &str,
        vs: &VarStore,
    ) -> anyhow::Result<Resume<S>> {
        self.load_checkpoint(vs, name)?;
        let path = self.file(&format!("{name}.safetensors"));
        let tensors = self.read_tensors(name)?;
        let mut optimizer = Vec::new();
        let mut state = None;
        for (k, t) in tensors {
            if let Some(rest) = k.strip_prefix(OPTIM_PREFIX) {
                optimizer.push((rest.to_string(), t));
            } else if k == STATE_KEY {
                let bytes = Vec::<u8>::try_from(&t)?;
                state = Some(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("{}: parsing {STATE_KEY}", path.display()))?,
                );
            }
        }
        let state = state.with_context(|| {
            format!(
                "{} holds no {STATE_KEY}: it was written by an older rnnlab that kept the \
                 loop state apart; start a new run",
                path.display()
            )
        })?;
        Ok(Resume { optimizer, state })
    }
}
