//! The Speech Commands v0.02 dataset as the coursework notebook reads it.
//!
//! `root` is either a folder holding `data_speech_commands_v0.02/` (the notebook's layout,
//! and what `rnnlab data synth` / `rnnlab data download` write) or the extracted archive
//! itself. The validation and test splits are the files listed in `validation_list.txt` and
//! `testing_list.txt` (paths like `one/abc_nohash_0.wav`) whose class is requested, in list
//! order; train is every other `.wav` of the requested classes, sorted; `all` is every
//! `.wav` of the requested classes, lists or not (a corpus to score, made of class folders
//! only, needs neither list: see [`SpeechCommands::all`]). Labels are the
//! position of the class in `classes`. Features are one-second clips' MFCCs `[32, 20]`,
//! through a [`FeatureCache`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tch::Tensor;

use crate::audio::ONE_SECOND;
use crate::cache::FeatureCache;
use crate::error::{DataError, Result};
use crate::mfcc::{Features, MfccConfig};

/// The folder the official archive is extracted into by the notebook.
pub const DATASET_DIR: &str = "data_speech_commands_v0.02";
/// The notebook's classes.
pub const DEFAULT_CLASSES: [&str; 3] = ["one", "two", "three"];
/// Where `rnnlab data synth` puts the synthetic set and training looks first.
pub const DEFAULT_ROOT: &str = "data/speech_commands";
/// Where features are cached by default.
pub const DEFAULT_CACHE_DIR: &str = "data/cache";
/// The two list files of the archive.
pub const VALIDATION_LIST: &str = "validation_list.txt";
pub const TESTING_LIST: &str = "testing_list.txt";

/// Which part of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Validation,
    Test,
    /// Every clip of the requested classes, whatever the lists say.
    All,
}

impl Split {
    /// All three, in the usual order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::All => "all",
        })
    }
}

/// One split of Speech Commands restricted to some classes.
#[derive(Debug)]
pub struct SpeechCommands {
    dir: PathBuf,
    split: Split,
    classes: Vec<String>,
    items: Vec<(PathBuf, i64)>,
    cache: Arc<FeatureCache>,
    features: OnceLock<Vec<Features>>,
}

impl SpeechCommands {
    /// The split with the notebook's features (librosa's MFCC on one-second clips, samples
    /// in [-1, 1)), cached under [`DEFAULT_CACHE_DIR`].
    pub fn new<S: AsRef<str>>(root: impl AsRef<Path>, split: Split, classes: &[S]) -> Result<Self> {
        let cache = FeatureCache::new(DEFAULT_CACHE_DIR, MfccConfig::default(), Some(ONE_SECOND))?;
        Self::with_cache(root, split, classes, Arc::new(cache))
    }

    /// The split with features from `cache` (share one cache between the three splits).
    pub fn with_cache<S: AsRef<str>>(
        root: impl AsRef<Path>,
        split: Split,
        classes: &[S],
        cache: Arc<FeatureCache>,
    ) -> Result<Self> {
        let root = root.as_ref();
        let dir = match split {
            Split::All if !root.join(DATASET_DIR).is_dir() => root.to_path_buf(),
            _ => Self::resolve_root(root)?,
        };
        let classes: Vec<String> = classes.iter().map(|c| c.as_ref().to_string()).collect();
        if classes.is_empty() {
            return Err(DataError::dataset(&dir, "no classes requested"));
        }
        for c in &classes {
            let folder = dir.join(c);
            if !folder.is_dir() {
                return Err(DataError::dataset(&folder, format!("class folder '{c}' is missing")));
            }
        }
        let label_of = |rel: &str| -> Option<i64> {
            let class = rel.split('/').next()?;
            classes.iter().position(|c| c == class).map(|i| i as i64)
        };
        let (validation, testing) = match split {
            Split::All => (Vec::new(), Vec::new()),
            _ => (read_list(&dir.join(VALIDATION_LIST))?, read_list(&dir.join(TESTING_LIST))?),
        };
        let listed = |list: &[String]| -> Result<Vec<(PathBuf, i64)>> {
            let mut items = Vec::new();
            for rel in list {
                if let Some(label) = label_of(rel) {
                    let path = dir.join(rel);
                    if !path.is_file() {
                        return Err(DataError::dataset(&path, "listed in the split but missing"));
                    }
                    items.push((path, label));
                }
            }
            Ok(items)
        };
        let items = match split {
            Split::Validation => listed(&validation)?,
            Split::Test => listed(&testing)?,
            Split::Train | Split::All => {
                let held_out: HashSet<&str> =
                    validation.iter().chain(&testing).map(String::as_str).collect();
                let mut items = Vec::new();
                for (label, c) in classes.iter().enumerate() {
                    let folder = dir.join(c);
                    let mut names = Vec::new();
                    for entry in
                        std::fs::read_dir(&folder).map_err(|e| DataError::io(&folder, e))?
                    {
                        let entry = entry.map_err(|e| DataError::io(&folder, e))?;
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if name.ends_with(".wav")
                            && !held_out.contains(format!("{c}/{name}").as_str())
                        {
                            names.push(name);
                        }
                    }
                    names.sort();
                    items.extend(names.into_iter().map(|n| (folder.join(n), label as i64)));
                }
                items
            }
        };
        Ok(SpeechCommands { dir, split, classes, items, cache, features: OnceLock::new() })
    }

    /// Every clip of a corpus laid out as Speech Commands (class folders of `.wav` files,
    /// under `root/data_speech_commands_v0.02` or `root` itself; lists not needed), for
    /// scoring a model trained on `classes`. Folders of WAVs whose name is not among
    /// `classes` are an error naming them (folders starting with `_`, like
    /// `_background_noise_`, are not classes); classes without a folder are skipped.
    pub fn all<S: AsRef<str>>(
        root: impl AsRef<Path>,
        classes: &[S],
        cache: Arc<FeatureCache>,
    ) -> Result<Self> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(DataError::dataset(root, "no such folder"));
        }
        let nested = root.join(DATASET_DIR);
        let dir = if nested.is_dir() { nested } else { root.to_path_buf() };
        let known: Vec<&str> = classes.iter().map(AsRef::as_ref).collect();
        let mut unknown = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('_') && !known.contains(&name.as_str()) {
                let folder = entry.path();
                let has_wav = std::fs::read_dir(&folder)
                    .map_err(|e| DataError::io(&folder, e))?
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().ends_with(".wav"));
                if has_wav {
                    unknown.push(name);
                }
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            return Err(DataError::dataset(
                &dir,
                format!(
                    "class folders unknown to the model: {} (it knows {})",
                    unknown.join(", "),
                    known.join(", ")
                ),
            ));
        }
        let present: Vec<&str> = known.iter().copied().filter(|c| dir.join(c).is_dir()).collect();
        if present.is_empty() {
            return Err(DataError::dataset(
                &dir,
                format!("no class folder here: expected one of {}", known.join(", ")),
            ));
        }
        let mut ds = Self::with_cache(&dir, Split::All, &present, cache)?;
        // Labels are positions in the model's classes, not in the folders present.
        let index = |c: &str| known.iter().position(|k| *k == c).expect("present is known") as i64;
        let map: Vec<i64> = present.iter().map(|c| index(c)).collect();
        ds.items.iter_mut().for_each(|(_, l)| *l = map[*l as usize]);
        ds.classes = known.iter().map(|c| c.to_string()).collect();
        if ds.items.is_empty() {
            return Err(DataError::dataset(&dir, "no .wav files in the class folders"));
        }
        Ok(ds)
    }

    /// The extracted-archive folder under `root`: `root/data_speech_commands_v0.02` when it
    /// exists, else `root` itself when it holds the two lists.
    pub fn resolve_root(root: &Path) -> Result<PathBuf> {
        let nested = root.join(DATASET_DIR);
        if nested.is_dir() {
            return Ok(nested);
        }
        if root.join(VALIDATION_LIST).is_file() || root.join(TESTING_LIST).is_file() {
            return Ok(root.to_path_buf());
        }
        Err(DataError::dataset(
            root,
            format!(
                "no Speech Commands here: expected {DATASET_DIR}/ inside it, or the extracted \
                 archive itself (with {VALIDATION_LIST}); make one with `rnnlab data synth` or \
                 fetch the real set with `rnnlab data download`"
            ),
        ))
    }

    /// The extracted-archive folder in use.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn split(&self) -> Split {
        self.split
    }

    /// Class names; label `i` is `class_names()[i]`.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `(wav path, label)` of every clip, in dataset order.
    pub fn items(&self) -> &[(PathBuf, i64)] {
        &self.items
    }

    /// Every label, in dataset order.
    pub fn labels(&self) -> Vec<i64> {
        self.items.iter().map(|(_, l)| *l).collect()
    }

    /// The feature cache in use.
    pub fn cache(&self) -> &Arc<FeatureCache> {
        &self.cache
    }

    /// Features of clip `i` as a CPU f32 tensor `[32, 20]` and its label.
    ///
    /// # Panics
    /// When `i >= len()`, like slice indexing.
    pub fn get(&self, i: usize) -> Result<(Tensor, i64)> {
        let (path, label) = &self.items[i];
        let f = match self.features.get() {
            Some(all) => all[i].clone(),
            None => self.cache.features(path)?,
        };
        Ok((f.to_tensor(), *label))
    }

    /// Features of every clip (computed in parallel through the cache on the first call,
    /// kept in memory afterwards).
    pub fn features(&self) -> Result<&[Features]> {
        if let Some(f) = self.features.get() {
            return Ok(f);
        }
        let paths: Vec<&Path> = self.items.iter().map(|(p, _)| p.as_path()).collect();
        let computed = self.cache.features_many(&paths)?;
        Ok(self.features.get_or_init(|| computed))
    }
}

fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::dataset(path, "split list is missing"),
        _ => DataError::io(path, e),
    })?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}
