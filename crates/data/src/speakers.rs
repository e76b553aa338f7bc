//! Speaker corpora for the speaker-clustering lab: reading, a seeded split, and a
//! synthetic default corpus made with espeak-ng.
//!
//! A corpus is a folder with one sub-folder per speaker holding WAV files (any rate
//! and channel count: [`crate::cache::FeatureCache`] mixes to mono and resamples to
//! 16 kHz):
//!
//! ```text
//! data/speakers/
//!   s01_en-us/        0000.wav 0001.wav ...
//!   s02_en-gb+f2/     ...
//! ```
//!
//! Speakers are the sub-folders in name order; hidden entries (`.x`) are skipped.
//! Every utterance becomes a fixed window of [`WINDOW_SAMPLES`] (1.5 s, zero-padded at
//! the end or cut, keeping the start), i.e. [`WINDOW_FRAMES`] MFCC frames of 20
//! coefficients with the audio pipeline's librosa-identical MFCC (hop 512).

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::SAMPLE_RATE;
use crate::cache::FeatureCache;
use crate::error::{DataError, Result};
use crate::mfcc::Features;
use crate::synth::{
    engine_set, publish, speak_all, spoken_within, staging_dir, write_at_rate, write_copies,
    AugmentedClip, Conditions, Engine, Voice, MIN_CLIP_SECONDS, RENDER_BLOCK,
};

/// Where `rnnlab data synth-speakers` writes and `train --model speaker` reads by default.
pub const DEFAULT_ROOT: &str = "data/speakers";
/// Samples per utterance window: 1.5 s at 16 kHz.
pub const WINDOW_SAMPLES: usize = 24_000;
/// MFCC frames per window: `1 + 24000 / 512` (centred framing).
pub const WINDOW_FRAMES: usize = 1 + WINDOW_SAMPLES / 512;

/// One WAV file and the index of its speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utterance {
    pub path: PathBuf,
    pub speaker: usize,
}

/// A speaker corpus on disk: speaker names and every utterance.
#[derive(Debug, Clone)]
pub struct SpeakerCorpus {
    root: PathBuf,
    speakers: Vec<String>,
    utterances: Vec<Utterance>,
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'))
}

fn is_wav(p: &Path) -> bool {
    p.is_file()
        && p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(dir, err)))
        .collect::<Result<Vec<_>>>()?;
    v.retain(|p| !is_hidden(p));
    v.sort();
    Ok(v)
}

impl SpeakerCorpus {
    /// Lists `root`. Errors (naming the folder) when it does not exist, has fewer than
    /// two speaker folders, or a speaker folder holds no WAV file.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(DataError::dataset(
                root,
                "no speaker corpus here: expected one sub-folder of WAV files per speaker \
                 (make the default one with `rnnlab data synth-speakers`)",
            ));
        }
        let dirs: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if dirs.len() < 2 {
            return Err(DataError::dataset(
                root,
                format!(
                    "a speaker corpus needs at least 2 speaker folders, found {}: the proxy \
                     loss separates speakers, one speaker has nothing to separate",
                    dirs.len()
                ),
            ));
        }
        let mut speakers = Vec::new();
        let mut utterances = Vec::new();
        for dir in dirs {
            let wavs: Vec<PathBuf> =
                sorted_entries(&dir)?.into_iter().filter(|p| is_wav(p)).collect();
            if wavs.is_empty() {
                return Err(DataError::dataset(
                    &dir,
                    "speaker folder holds no .wav file: remove it or add recordings",
                ));
            }
            let name =
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let speaker = speakers.len();
            speakers.push(name);
            utterances.extend(wavs.into_iter().map(|path| Utterance { path, speaker }));
        }
        Ok(Self { root: root.to_path_buf(), speakers, utterances })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Speaker names (folder names), in order: utterance `speaker` indexes this.
    pub fn speakers(&self) -> &[String] {
        &self.speakers
    }

    pub fn utterances(&self) -> &[Utterance] {
        &self.utterances
    }

    /// Splits the corpus: `holdout_speakers` whole speakers (drawn with `seed`) are
    /// kept out of training ("unseen"), then `val_speakers` more ("validation", drawn
    /// next from the same order, so adding validation speakers keeps the unseen ones);
    /// of every other speaker, `eval_fraction` of the utterances (rounded, at least one
    /// when the speaker has two or more) go to evaluation and the rest to training.
    /// Errors when fewer than two training speakers would remain, or when one
    /// validation speaker is asked for (a clustering needs two).
    pub fn split(&self, cfg: &SplitConfig) -> Result<SpeakerSplit> {
        let n = self.speakers.len();
        if cfg.holdout_speakers + cfg.val_speakers + 2 > n {
            return Err(DataError::dataset(
                &self.root,
                format!(
                    "holding out {} unseen and {} validation speakers of {n} leaves fewer \
                     than 2 to train on",
                    cfg.holdout_speakers, cfg.val_speakers
                ),
            ));
        }
        if cfg.val_speakers == 1 {
            return Err(DataError::dataset(
                &self.root,
                "1 validation speaker: validation clusters speakers, so it needs 0 or at least 2",
            ));
        }
        if !(0.0..1.0).contains(&cfg.eval_fraction) {
            return Err(DataError::dataset(
                &self.root,
                format!("eval fraction {} is not in [0, 1)", cfg.eval_fraction),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let h = cfg.holdout_speakers;
        let mut unseen_ids: Vec<usize> = order[..h].to_vec();
        unseen_ids.sort();
        let mut val_ids: Vec<usize> = order[h..h + cfg.val_speakers].to_vec();
        val_ids.sort();
        let train_ids: Vec<usize> =
            (0..n).filter(|s| !unseen_ids.contains(s) && !val_ids.contains(s)).collect();

        let mut split = SpeakerSplit {
            train_speakers: train_ids.iter().map(|&s| self.speakers[s].clone()).collect(),
            unseen_speakers: unseen_ids.iter().map(|&s| self.speakers[s].clone()).collect(),
            val_speakers: val_ids.iter().map(|&s| self.speakers[s].clone()).collect(),
            ..Default::default()
        };
        for (label, &s) in train_ids.iter().enumerate() {
            let mut utts: Vec<&Utterance> =
                self.utterances.iter().filter(|u| u.speaker == s).collect();
            utts.shuffle(&mut rng);
            let k = utts.len();
            let n_eval = if k < 2 {
                0
            } else {
                ((k as f64 * cfg.eval_fraction).round() as usize).clamp(1, k - 1)
            };
            let (eval, train) = utts.split_at(n_eval);
            let tag = |u: &&Utterance| Utterance { path: u.path.clone(), speaker: label };
            split.eval.extend(eval.iter().map(tag));
            split.train.extend(train.iter().map(tag));
        }
        let whole = |ids: &[usize]| -> Vec<Utterance> {
            ids.iter()
                .enumerate()
                .flat_map(|(label, &s)| {
                    self.utterances
                        .iter()
                        .filter(move |u| u.speaker == s)
                        .map(move |u| Utterance { path: u.path.clone(), speaker: label })
                })
                .collect()
        };
        split.unseen = whole(&unseen_ids);
        split.val = whole(&val_ids);
        // Keep each list in corpus order (speaker, then file name) for readable outputs.
        for list in [&mut split.train, &mut split.eval] {
            list.sort_by(|a, b| (a.speaker, &a.path).cmp(&(b.speaker, &b.path)));
        }
        Ok(split)
    }
}

/// MFCCs (through `cache`) and speaker labels of `utts`, in order.
pub fn utterance_features(
    cache: &FeatureCache,
    utts: &[Utterance],
) -> Result<(Vec<Features>, Vec<i64>)> {
    let paths: Vec<&Path> = utts.iter().map(|u| u.path.as_path()).collect();
    let feats = cache.features_many(&paths)?;
    Ok((feats, utts.iter().map(|u| u.speaker as i64).collect()))
}

/// Speaker augmentation (Yamamoto et al., 2019, "Speaker augmentation and
/// bandwidth extension for deep speaker embedding"): every training utterance
/// played at each speed of `factors`, each (speaker, speed) pair a speaker of
/// its own. Playing faster raises the pitch and the formants together, as a
/// shorter vocal tract does, so a corpus of few speakers gets many voices to
/// tell apart, not only more clips of the same ones.
///
/// Only `split.train` is copied: held-out, validation and unseen utterances stay
/// as they are. Pseudo-speaker `k * n + s` is training speaker `s` at
/// `factors[k]` (`n` training speakers), numbered after the real ones, so
/// labels `0..n` keep their meaning. Returns the pseudo-speakers' names
/// (`<speaker>@speed<factor>`) and the copies; an error naming `flag` when the
/// factors are not [`check_speeds`](crate::augment::wave::check_speeds)'s.
pub fn speed_speakers(
    split: &SpeakerSplit,
    factors: &[f64],
    flag: &str,
) -> std::result::Result<(Vec<String>, Vec<SpeedCopy>), String> {
    crate::augment::wave::check_speeds(factors, flag)?;
    let n = split.train_speakers.len();
    let names = factors
        .iter()
        .flat_map(|f| split.train_speakers.iter().map(move |s| format!("{s}@speed{f}")))
        .collect();
    let copies = factors
        .iter()
        .enumerate()
        .flat_map(|(k, &factor)| {
            split.train.iter().map(move |u| SpeedCopy {
                path: u.path.clone(),
                factor,
                speaker: (k + 1) * n + u.speaker,
            })
        })
        .collect();
    Ok((names, copies))
}

/// A training utterance played at another speed, as a speaker of its own
/// ([`speed_speakers`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedCopy {
    pub path: PathBuf,
    pub factor: f64,
    pub speaker: usize,
}

/// MFCCs (through `cache`, [`FeatureCache::features_at_speed`]) and speaker labels
/// of `copies`, in order.
pub fn speed_copy_features(
    cache: &FeatureCache,
    copies: &[SpeedCopy],
) -> Result<(Vec<Features>, Vec<i64>)> {
    let feats = copies
        .par_iter()
        .map(|c| cache.features_at_speed(&c.path, c.factor))
        .collect::<Result<Vec<_>>>()?;
    Ok((feats, copies.iter().map(|c| c.speaker as i64).collect()))
}

/// Options of [`SpeakerCorpus::split`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Fraction of each training speaker's utterances kept for evaluation.
    pub eval_fraction: f64,
    /// Whole speakers kept out of training and scored at the end ("unseen").
    pub holdout_speakers: usize,
    /// Whole speakers kept out of training to choose the checkpoint on.
    #[serde(default)]
    pub val_speakers: usize,
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self { eval_fraction: 0.2, holdout_speakers: 0, val_speakers: 0, seed: 0 }
    }
}

/// The result of [`SpeakerCorpus::split`]. In `train` and `eval`, `speaker` indexes
/// `train_speakers` (the proxies); in `unseen` it indexes `unseen_speakers`, in `val`
/// `val_speakers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeakerSplit {
    pub train_speakers: Vec<String>,
    pub unseen_speakers: Vec<String>,
    #[serde(default)]
    pub val_speakers: Vec<String>,
    pub train: Vec<Utterance>,
    pub eval: Vec<Utterance>,
    pub unseen: Vec<Utterance>,
    #[serde(default)]
    pub val: Vec<Utterance>,
}

// ---------------------------------------------------------------------------
// The synthetic default corpus
// ---------------------------------------------------------------------------

/// The default synthetic speakers: (base voice, variant, pitch 0-99, speed wpm), each
/// a different voice, variant, pitch and speed.
pub const SPEAKER_VOICES: [(&str, &str, u32, u32); 30] = [
    ("en-us", "m1", 45, 170),
    ("en-gb", "f2", 70, 150),
    ("en-gb-scotland", "m3", 30, 160),
    ("en-029", "f4", 85, 140),
    ("en-gb-x-rp", "m7", 20, 185),
    ("en-us-nyc", "f1", 60, 200),
    ("en-gb-x-gbclan", "klatt", 50, 130),
    ("en-gb-x-gbcwmd", "f5", 95, 165),
    ("en-us", "m5", 10, 145),
    ("en-gb", "Andrea", 55, 175),
    ("en-gb-scotland", "f3", 75, 190),
    ("en-029", "m2", 35, 135),
    ("en-us-nyc", "m4", 65, 155),
    ("en-gb-x-rp", "f1", 40, 180),
    ("en-gb-x-gbcwmd", "m8", 15, 170),
    ("en-us", "f3", 90, 150),
    ("en-gb", "m6", 25, 195),
    ("en-029", "Alicia", 70, 170),
    ("en-us-nyc", "Gene", 45, 140),
    ("en-gb-x-gbclan", "f4", 60, 185),
    ("en-us", "Andy", 28, 162),
    ("en-gb", "Annie", 80, 145),
    ("en-gb-scotland", "Jacky", 55, 205),
    ("en-029", "Lee", 50, 150),
    ("en-gb-x-rp", "Michael", 35, 165),
    ("en-us-nyc", "aunty", 85, 175),
    ("en-gb-x-gbclan", "david", 40, 200),
    ("en-gb-x-gbcwmd", "linda", 70, 135),
    ("en-us", "edward", 20, 180),
    ("en-gb", "belinda", 65, 160),
];

/// Words and short phrases the synthetic speakers say (each speaker a seeded sample).
pub const TEXTS: [&str; 120] = [
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "forward",
    "backward",
    "follow",
    "learn",
    "visual",
    "apple",
    "orange",
    "banana",
    "river",
    "mountain",
    "window",
    "garden",
    "yellow",
    "purple",
    "silver",
    "winter",
    "summer",
    "morning",
    "evening",
    "coffee",
    "paper",
    "pencil",
    "music",
    "number",
    "language",
    "computer",
    "network",
    "signal",
    "station",
    "weather",
    "thunder",
    "ocean",
    "island",
    "village",
    "market",
    "doctor",
    "teacher",
    "student",
    "engine",
    "rocket",
    "planet",
    "galaxy",
    "energy",
    "history",
    "science",
    "question",
    "answer",
    "problem",
    "picture",
    "kitchen",
    "good morning",
    "thank you",
    "see you later",
    "how are you",
    "open the door",
    "turn it off",
    "what time is it",
    "nice to meet you",
    "call me back",
    "over there",
    "right now",
    "not today",
    "one more time",
    "take it easy",
    "let me think",
    "close the window",
    "the red car",
    "a cup of tea",
    "it is raining",
    "where is the station",
    "I like music",
    "read the book",
    "the quick brown fox",
    "bring me water",
    "we are late",
    "please sit down",
    "come in",
    "hello world",
    "the cat sleeps",
    "turn left here",
    "go straight on",
    "a big blue house",
    "just a moment",
    "listen carefully",
    "speak slowly",
    "the train is late",
    "have a nice day",
    "nothing at all",
    "good night",
    "see you soon",
];

/// The flite and festival speakers, one per recorded person, in the order they join the
/// corpus: each is the first of its voices whose engine is used.
const OTHER_SPEAKERS: [&[(Engine, &str)]; 5] = [
    &[(Engine::Flite, "awb")],
    &[(Engine::Festival, "kal_diphone"), (Engine::Flite, "kal16")],
    &[(Engine::Flite, "rms")],
    &[(Engine::Festival, "cmu_us_slt_arctic_hts"), (Engine::Flite, "slt")],
    &[(Engine::Festival, "ked_diphone")],
];

fn legacy_engines() -> Vec<Engine> {
    vec![Engine::Espeak]
}

/// What [`generate_speakers`] makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerSynthConfig {
    /// Speakers: [`SPEAKER_VOICES`] (espeak) and one per flite/festival person, taken
    /// alternately while both last (at most 35).
    pub speakers: usize,
    /// Utterances per speaker (1 to 1000).
    pub utterances: usize,
    /// Words per utterance at least: texts are joined until there are this many, so
    /// that an utterance fills most of the 1.5 s window with speech.
    pub min_words: usize,
    /// Seed of the text choice, gain and noise.
    pub seed: u64,
    /// Signal-to-noise range of the added white noise, dB.
    pub snr_db: (f64, f64),
    /// Synthesisers (missing in older manifests: espeak only).
    #[serde(default = "legacy_engines")]
    pub engines: Vec<Engine>,
    /// Speakers that get no augmented copies: those that training's split with this many
    /// held-out speakers and `split_seed` keeps unseen ([`SpeakerCorpus::split`]).
    #[serde(default)]
    pub holdout: usize,
    #[serde(default)]
    pub split_seed: u64,
    #[serde(flatten)]
    pub conditions: Conditions,
}

impl Default for SpeakerSynthConfig {
    /// The default corpus, spoken by espeak-ng alone (as the published
    /// figures); the other engines are asked for by name.
    fn default() -> Self {
        Self {
            speakers: 30,
            utterances: 80,
            min_words: 6,
            seed: 0,
            snr_db: (25.0, 40.0),
            engines: vec![Engine::Espeak],
            holdout: 0,
            split_seed: 0,
            conditions: Conditions::default(),
        }
    }
}

/// One synthetic speaker, as recorded in `synth.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthSpeaker {
    pub folder: String,
    pub voice: Voice,
}

/// What [`generate_speakers`] wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerSynthSummary {
    pub dir: PathBuf,
    pub config: SpeakerSynthConfig,
    pub speakers: Vec<SynthSpeaker>,
    /// Utterances written, copies included.
    pub files: usize,
    /// Augmented and telephone-band copies (paths relative to the corpus).
    #[serde(default)]
    pub augmented: Vec<AugmentedClip>,
}

struct Job {
    rel: PathBuf,
    speaker: usize,
    text: String,
    voice: Voice,
    peak: f32,
    snr_db: f64,
    noise_seed: u64,
}

/// Distinct random [`TEXTS`] joined with ", " until they hold `min_words` words.
pub fn utterance_text(rng: &mut impl Rng, min_words: usize) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut words = 0;
    while words < min_words.max(1) && parts.len() < TEXTS.len() {
        let t = TEXTS[rng.gen_range(0..TEXTS.len())];
        if !parts.contains(&t) {
            parts.push(t);
            words += t.split_whitespace().count();
        }
    }
    parts.join(", ")
}

/// The synthetic speakers of `cfg`, folder names included (`s01_en-us+m1`,
/// `s02_flite-awb`): espeak's and the other engines' alternately while both last.
pub fn synth_speakers(cfg: &SpeakerSynthConfig) -> Vec<SynthSpeaker> {
    let espeak: Vec<Voice> = if cfg.engines.contains(&Engine::Espeak) {
        SPEAKER_VOICES
            .iter()
            .map(|&(name, variant, pitch, speed)| Voice::espeak(name, Some(variant), pitch, speed))
            .collect()
    } else {
        Vec::new()
    };
    let others: Vec<Voice> = OTHER_SPEAKERS
        .iter()
        .filter_map(|choices| choices.iter().find(|(e, _)| cfg.engines.contains(e)))
        .map(|&(e, name)| Voice::new(e, name, 50, 175))
        .collect();
    let mut order = Vec::new();
    for i in 0..espeak.len().max(others.len()) {
        order.extend(espeak.get(i).cloned());
        order.extend(others.get(i).cloned());
    }
    order
        .into_iter()
        .take(cfg.speakers)
        .enumerate()
        .map(|(i, voice)| {
            let folder = match voice.engine {
                Engine::Espeak => format!("s{:02}_{}", i + 1, voice.espeak_name()),
                e => format!("s{:02}_{e}-{}", i + 1, voice.name),
            };
            SynthSpeaker { folder, voice }
        })
        .collect()
}

/// Writes a speaker corpus into `out` (`<speaker>/<nnnn>.wav`, 16-bit at
/// `conditions.sample_rate`, plus `synth.json`). Each utterance is a few texts (words and
/// short phrases) spoken by the speaker's fixed voice, trimmed of silence (and brought
/// under `conditions.max_seconds`), scaled to a seeded peak and mixed with seeded white
/// noise; the same seed and engines give identical files. Augmented copies
/// (`<nnnn>_aug<k>.wav`, `<nnnn>_tel.wav`) are made for every speaker except the ones a
/// split with `holdout` held-out speakers and `split_seed` keeps unseen. The corpus is
/// built in a temporary folder and renamed into place; an existing synthetic corpus is
/// replaced, any other folder is left alone with an error.
pub fn generate_speakers(out: &Path, cfg: &SpeakerSynthConfig) -> Result<SpeakerSynthSummary> {
    let engines = engine_set(out, &cfg.engines)?;
    let cfg = &SpeakerSynthConfig { engines: engines.clone(), ..cfg.clone() };
    let speakers = synth_speakers(cfg);
    let most = synth_speakers(&SpeakerSynthConfig { speakers: usize::MAX, ..cfg.clone() }).len();
    if cfg.speakers < 2 || cfg.speakers > most {
        return Err(DataError::dataset(
            out,
            format!(
                "speakers must be in 2..={most} with engines {} (got {})",
                engines.iter().map(|e| e.name()).collect::<Vec<_>>().join(","),
                cfg.speakers
            ),
        ));
    }
    if cfg.utterances == 0 || cfg.utterances > 1000 {
        return Err(DataError::dataset(
            out,
            format!("utterances must be in 1..=1000 (got {})", cfg.utterances),
        ));
    }
    if cfg.holdout + 2 > cfg.speakers {
        return Err(DataError::dataset(
            out,
            format!("holding out {} of {} speakers leaves fewer than 2", cfg.holdout, cfg.speakers),
        ));
    }
    cfg.conditions.check(out)?;
    let tmp = staging_dir(out, &engines)?;

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut jobs = Vec::new();
    for (k, s) in speakers.iter().enumerate() {
        let d = tmp.join(&s.folder);
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
        for i in 0..cfg.utterances {
            let text = utterance_text(&mut rng, cfg.min_words);
            jobs.push(Job {
                rel: PathBuf::from(&s.folder).join(format!("{i:04}.wav")),
                speaker: k,
                text,
                voice: s.voice.clone(),
                peak: rng.gen_range(0.3..0.9),
                snr_db: rng.gen_range(cfg.snr_db.0..=cfg.snr_db.1),
                noise_seed: rng.gen(),
            });
        }
    }
    let cond = &cfg.conditions;
    let copies = cond.augment > 0 || cond.telephone;
    let mut clean: Vec<Vec<f32>> = Vec::with_capacity(jobs.len());
    for block in jobs.chunks(RENDER_BLOCK) {
        let said: Vec<(&str, &Voice)> = block.iter().map(|j| (j.text.as_str(), &j.voice)).collect();
        let speech = speak_all(&said)?;
        let done: Vec<Vec<f32>> = block
            .par_iter()
            .zip(&speech)
            .map(|(job, sp)| {
                render(job, sp, cond, &tmp).map(|y| if copies { y } else { Vec::new() })
            })
            .collect::<Result<_>>()?;
        clean.extend(done);
    }

    let mut augmented = Vec::new();
    if copies {
        // The speakers training holds out, found by the split itself on the clean corpus
        // (which speakers it holds out depends only on their number and the seed).
        let split = SpeakerCorpus::open(&tmp)?.split(&SplitConfig {
            holdout_speakers: cfg.holdout,
            seed: cfg.split_seed,
            ..SplitConfig::default()
        })?;
        let train: Vec<(String, Vec<f32>)> = jobs
            .iter()
            .zip(clean)
            .filter(|(j, _)| !split.unseen_speakers.contains(&speakers[j.speaker].folder))
            .map(|(j, y)| (j.rel.to_string_lossy().into_owned(), y))
            .collect();
        augmented = write_copies(&tmp, &train, cond, cfg.seed)?;
    }

    let summary = SpeakerSynthSummary {
        dir: out.to_path_buf(),
        config: cfg.clone(),
        speakers,
        files: jobs.len() + augmented.len(),
        augmented,
    };
    publish(&tmp, out, &summary)?;
    Ok(summary)
}

fn render(job: &Job, speech: &[f32], cond: &Conditions, dir: &Path) -> Result<Vec<f32>> {
    let voiced = spoken_within(
        speech,
        &job.text,
        &job.voice,
        cond.max_seconds.map(|s| (s * SAMPLE_RATE as f64).round() as usize),
    )?;
    let peak = voiced.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let gain = job.peak / peak;
    let mut y: Vec<f32> = voiced.iter().map(|s| s * gain).collect();
    let power = y.iter().map(|&s| s as f64 * s as f64).sum::<f64>() / y.len().max(1) as f64;
    if cond.max_seconds.is_some() {
        // short clips are at least MIN_CLIP_SECONDS: silence (then noise) after the words
        y.resize(y.len().max((MIN_CLIP_SECONDS * SAMPLE_RATE as f64) as usize), 0.0);
    }
    crate::synth::add_white_noise(&mut y, power, job.snr_db, job.noise_seed);
    write_at_rate(&dir.join(&job.rel), &y, cond.sample_rate)?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(path: &Path, hz: f32) {
        let y: Vec<f32> = (0..1600)
            .map(|i| 0.3 * (i as f32 * hz * std::f32::consts::TAU / 16000.0).sin())
            .collect();
        crate::audio::write_wav_i16(path, &y, SAMPLE_RATE).unwrap();
    }

    fn corpus(speakers: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, (name, n)) in speakers.iter().enumerate() {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..*n {
                tone(&d.join(format!("{k:03}.wav")), 200.0 + 100.0 * i as f32);
            }
        }
        dir
    }

    #[test]
    fn speed_speakers_copy_training_utterances_only_as_new_speakers() {
        let dir = corpus(&[("a", 5), ("b", 5), ("c", 5), ("d", 5)]);
        let c = SpeakerCorpus::open(dir.path()).unwrap();
        let cfg = SplitConfig { holdout_speakers: 1, val_speakers: 0, ..SplitConfig::default() };
        let split = c.split(&cfg).unwrap();
        let n = split.train_speakers.len();
        assert_eq!(n, 3);
        let (names, copies) = speed_speakers(&split, &[0.9, 1.1], "--speed-speakers").unwrap();
        // speaker s at factors[k] is pseudo-speaker (k + 1) * n + s, after the real ones
        let expect: Vec<String> = [0.9, 1.1]
            .iter()
            .flat_map(|f| split.train_speakers.iter().map(move |s| format!("{s}@speed{f}")))
            .collect();
        assert_eq!(names, expect);
        assert_eq!(copies.len(), 2 * split.train.len());
        for (k, f) in [0.9, 1.1].iter().enumerate() {
            for (u, c) in split.train.iter().zip(&copies[k * split.train.len()..]) {
                assert_eq!((&c.path, c.factor, c.speaker), (&u.path, *f, (k + 1) * n + u.speaker));
            }
        }
        // nothing of the held-out, validation or unseen utterances is copied
        for u in split.eval.iter().chain(&split.unseen).chain(&split.val) {
            assert!(copies.iter().all(|c| c.path != u.path), "{} copied", u.path.display());
        }
        assert_eq!(speed_speakers(&split, &[], "--speed-speakers").unwrap().1.len(), 0);
        for (bad, why) in
            [(&[1.0][..], "is 1"), (&[0.3], "not in [0.5, 2]"), (&[0.9, 0.9], "twice")]
        {
            let e = speed_speakers(&split, bad, "--speed-speakers").unwrap_err();
            assert!(e.starts_with("--speed-speakers: ") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn window_is_47_frames() {
        assert_eq!(WINDOW_FRAMES, 47);
        assert_eq!(crate::mfcc::MfccConfig::default().frames(WINDOW_SAMPLES), WINDOW_FRAMES);
    }

    #[test]
    fn reads_speakers_in_order_skipping_hidden_and_non_wav() {
        let dir = corpus(&[("bob", 3), ("alice", 2)]);
        std::fs::write(dir.path().join("alice/notes.txt"), "x").unwrap();
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        let c = SpeakerCorpus::open(dir.path()).unwrap();
        assert_eq!(c.speakers(), ["alice", "bob"]);
        assert_eq!(c.utterances().len(), 5);
        assert_eq!(c.utterances().iter().filter(|u| u.speaker == 1).count(), 3);
    }

    #[test]
    fn one_speaker_or_empty_folder_is_a_clear_error() {
        let dir = corpus(&[("only", 3)]);
        let e = SpeakerCorpus::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("at least 2 speaker folders, found 1"), "{e}");

        let dir = corpus(&[("a", 2), ("b", 0)]);
        let e = SpeakerCorpus::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("holds no .wav file") && e.contains("/b"), "{e}");

        let e = SpeakerCorpus::open("/nonexistent/speakers").unwrap_err().to_string();
        assert!(e.contains("no speaker corpus here"), "{e}");
    }

    #[test]
    fn seeded_split_keeps_speakers_whole_and_utterances_apart() {
        let dir = corpus(&[("a", 10), ("b", 10), ("c", 10), ("d", 10), ("e", 1)]);
        let c = SpeakerCorpus::open(dir.path()).unwrap();
        let cfg = SplitConfig { eval_fraction: 0.2, holdout_speakers: 2, val_speakers: 0, seed: 7 };
        let s = c.split(&cfg).unwrap();
        assert_eq!(s.train_speakers.len(), 3);
        assert_eq!(s.unseen_speakers.len(), 2);
        for name in &s.unseen_speakers {
            assert!(!s.train_speakers.contains(name));
        }
        // Every utterance lands in exactly one list.
        let mut all: Vec<&PathBuf> =
            s.train.iter().chain(&s.eval).chain(&s.unseen).map(|u| &u.path).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 41);
        // 2 of 10 per training speaker go to evaluation (none of a one-file speaker).
        for (label, name) in s.train_speakers.iter().enumerate() {
            let n_eval = s.eval.iter().filter(|u| u.speaker == label).count();
            assert_eq!(n_eval, if name == "e" { 0 } else { 2 }, "{name}");
        }
        // Seeded: same seed, same split; another seed, another one.
        assert_eq!(c.split(&cfg).unwrap(), s);
        let other = c.split(&SplitConfig { seed: 8, ..cfg }).unwrap();
        assert!(other.eval != s.eval || other.unseen_speakers != s.unseen_speakers);
        // Too many held out.
        let e = c.split(&SplitConfig { holdout_speakers: 4, ..cfg }).unwrap_err().to_string();
        assert!(e.contains("fewer than 2 to train on"), "{e}");
    }

    #[test]
    fn validation_speakers_are_a_third_group_and_keep_the_unseen_ones() {
        let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
        let spec: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 5)).collect();
        let dir = corpus(&spec);
        let c = SpeakerCorpus::open(dir.path()).unwrap();
        let base = SplitConfig { holdout_speakers: 2, seed: 3, ..SplitConfig::default() };
        let plain = c.split(&base).unwrap();
        let s = c.split(&SplitConfig { val_speakers: 3, ..base }).unwrap();
        assert_eq!(s.unseen_speakers, plain.unseen_speakers);
        assert_eq!(s.unseen, plain.unseen);
        assert_eq!((s.train_speakers.len(), s.val_speakers.len()), (3, 3));
        for v in &s.val_speakers {
            assert!(!s.train_speakers.contains(v) && !s.unseen_speakers.contains(v), "{v}");
        }
        // Every utterance of a validation speaker, labelled by its index there.
        assert_eq!(s.val.len(), 15);
        for u in &s.val {
            let folder = u.path.parent().unwrap().file_name().unwrap().to_str().unwrap();
            assert_eq!(s.val_speakers[u.speaker], folder);
        }
        assert!(plain.val.is_empty() && plain.val_speakers.is_empty());
        let e = c.split(&SplitConfig { val_speakers: 5, ..base }).unwrap_err().to_string();
        assert!(e.contains("2 unseen and 5 validation speakers of 8"), "{e}");
        let e = c.split(&SplitConfig { val_speakers: 1, ..base }).unwrap_err().to_string();
        assert!(e.contains("1 validation speaker"), "{e}");
    }

    /// The speaker window's valid frames, as the feature cache counts them
    /// for every utterance (centred framing of the clip's 16 kHz samples, cut
    /// to the window).
    #[test]
    fn valid_frames_of_the_speaker_window() {
        let cache = crate::cache::FeatureCache::uncached(
            crate::mfcc::MfccConfig::default(),
            Some(WINDOW_SAMPLES),
        );
        let frames = |p: &Path| cache.features(p).map(|f| f.valid_frames);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        // 0.1 s at 16 kHz: 1600 samples, 1 + 1600 / 512 = 4 frames.
        tone(&p, 300.0);
        assert_eq!(frames(&p).unwrap(), 4);
        // 3 s at 8 kHz is 48,000 samples at 16 kHz, cut to the window: 47 frames.
        let q = dir.path().join("b.wav");
        crate::audio::write_wav_i16(&q, &vec![0.1; 24_000], 8_000).unwrap();
        assert_eq!(frames(&q).unwrap(), WINDOW_FRAMES);
        // 0.5 s at 44.1 kHz: 8000 samples at 16 kHz, 1 + 8000 / 512 = 16 frames.
        crate::audio::write_wav_i16(&q, &vec![0.1; 22_050], 44_100).unwrap();
        assert_eq!(frames(&q).unwrap(), 16);
        let bad = dir.path().join("bad.wav");
        std::fs::write(&bad, b"not a wav").unwrap();
        let e = frames(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.wav"), "{e}");
    }

    #[test]
    fn synth_speakers_are_distinct() {
        let espeak = SpeakerSynthConfig { engines: vec![Engine::Espeak], ..Default::default() };
        let s = synth_speakers(&espeak);
        assert_eq!(s.len(), 30);
        for (i, a) in s.iter().enumerate() {
            for b in &s[i + 1..] {
                assert_ne!(a.voice.label(), b.voice.label());
                assert_ne!((a.voice.pitch, a.voice.speed), (b.voice.pitch, b.voice.speed));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t = utterance_text(&mut rng, 6);
        let words = t.split_whitespace().count();
        assert!((6..=6 + 4).contains(&words), "{t:?}");
        let mut texts = TEXTS.to_vec();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), TEXTS.len(), "texts are distinct");
    }

    #[test]
    fn synth_speakers_alternate_engines_one_per_person() {
        let all = SpeakerSynthConfig {
            speakers: 6,
            engines: Engine::ALL.to_vec(),
            ..SpeakerSynthConfig::default()
        };
        let folders: Vec<String> = synth_speakers(&all).into_iter().map(|s| s.folder).collect();
        assert_eq!(
            folders,
            [
                "s01_en-us+m1",
                "s02_flite-awb",
                "s03_en-gb+f2",
                "s04_festival-kal_diphone",
                "s05_en-gb-scotland+m3",
                "s06_flite-rms"
            ]
        );
        let flite = SpeakerSynthConfig { engines: vec![Engine::Flite], ..all.clone() };
        let names: Vec<String> = synth_speakers(&flite).into_iter().map(|s| s.voice.name).collect();
        assert_eq!(names, ["awb", "kal16", "rms", "slt"]);
        let every = SpeakerSynthConfig { speakers: usize::MAX, ..all };
        assert_eq!(synth_speakers(&every).len(), 35);
    }
}
