//! Synthetic Speech Commands spoken by `espeak-ng`, `flite` and `festival`: the default
//! dataset when the real one is absent.
//!
//! Each clip is a class word spoken by one voice at a random pitch and speed, trimmed of its
//! silence, scaled to a random peak, placed at a random offset in the one-second window (or
//! a shorter clip, [`Conditions::max_seconds`]) and mixed with white noise at a random SNR,
//! written as 16-bit PCM at 16 kHz (or [`Conditions::sample_rate`]). espeak-ng speaks with
//! one of 8 English accents and one of 96 variants (`+m3`, `+f2`, `+croak`, ...), a speaker
//! being an (accent, variant) pair; flite and festival speak with their recorded voices, a
//! speaker being the recorded person ([`person`]). Variants and persons are divided between
//! the splits so that validation and test speakers never occur in training, as the real set
//! separates speakers. Everything random comes from ChaCha8 seeded by `seed`: the same seed
//! and engines give byte-identical files, and an espeak-only set is the one espeak-only
//! versions wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audio::{self, ONE_SECOND, SAMPLE_RATE};
use crate::augment::wave::{self, augment_rng, AugmentOp, WaveAugment};
use crate::error::{DataError, Result};
use crate::loader::splitmix64;
use crate::speech_commands::{DATASET_DIR, DEFAULT_CLASSES, TESTING_LIST, VALIDATION_LIST};

/// How to install the synthesiser, for error messages.
pub const INSTALL_HINT: &str = "install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu; \
     `make setup` does it when run as root), `brew install espeak-ng` (macOS), or see \
     https://github.com/espeak-ng/espeak-ng";

/// English base voices of espeak-ng 1.51.
pub const VOICES: [&str; 8] = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
];

/// Voice variants (`espeak-ng-data/voices/!v`), minus the ones that barely sound like speech.
pub const VARIANTS: [&str; 96] = [
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "AnxiousAndy",
    "Denis",
    "Diogo",
    "Gene",
    "Gene2",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Marco",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "RicishayMax",
    "RicishayMax2",
    "RicishayMax3",
    "Storm",
    "Tweaky",
    "adam",
    "anika",
    "announcer",
    "antonio",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "caleb",
    "croak",
    "david",
    "ed",
    "edward",
    "edward2",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "fast",
    "grandma",
    "grandpa",
    "gustave",
    "iven",
    "iven2",
    "iven3",
    "iven4",
    "john",
    "kaukovalta",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "klatt5",
    "klatt6",
    "linda",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "robosoft",
    "robosoft2",
    "robosoft3",
    "robosoft4",
    "robosoft5",
    "robosoft6",
    "robosoft7",
    "robosoft8",
    "sandro",
    "shelby",
    "steph",
    "steph2",
    "steph3",
    "travis",
    "victor",
    "whisper",
    "zac",
];

/// Variants far from ordinary speech: always training speakers, never held out.
const TRAIN_ONLY: [&str; 5] = ["whisper", "croak", "Storm", "Tweaky", "fast"];

/// A speech synthesiser that [`speak`] can run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `espeak-ng`: formant synthesis, 8 accents x 96 voice variants.
    #[default]
    Espeak,
    /// CMU `flite`: voices awb, kal16, rms, slt.
    Flite,
    /// `festival` through `text2wave`: kal and ked diphones, slt HTS.
    Festival,
}

/// flite's voices: three clustergen voices and the 16 kHz kal diphones.
pub const FLITE_VOICES: [&str; 4] = ["awb", "kal16", "rms", "slt"];
/// festival's voices (Debian's festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts).
pub const FESTIVAL_VOICES: [&str; 3] = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"];

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Espeak, Engine::Flite, Engine::Festival];

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Espeak => "espeak",
            Engine::Flite => "flite",
            Engine::Festival => "festival",
        }
    }

    /// The program run.
    pub fn program(self) -> &'static str {
        match self {
            Engine::Espeak => "espeak-ng",
            Engine::Flite => "flite",
            Engine::Festival => "text2wave",
        }
    }

    /// How to install the engine, for error messages.
    pub fn install_hint(self) -> &'static str {
        match self {
            Engine::Espeak => INSTALL_HINT,
            Engine::Flite => {
                "install it with `sudo apt-get install flite` (Debian/Ubuntu; `make setup` \
                 does it when run as root), or see http://cmuflite.org"
            }
            Engine::Festival => {
                "install it with `sudo apt-get install festival festvox-kallpc16k \
                 festvox-kdlpc16k festvox-us-slt-hts` (Debian/Ubuntu; `make setup` does it when \
                 run as root), or see https://www.cstr.ed.ac.uk/projects/festival/"
            }
        }
    }

    /// The engine's named voices (espeak's are accents, each spoken with a variant).
    pub fn voices(self) -> &'static [&'static str] {
        match self {
            Engine::Espeak => &VOICES,
            Engine::Flite => &FLITE_VOICES,
            Engine::Festival => &FESTIVAL_VOICES,
        }
    }

    /// Whether the engine's program runs (festival: and its three voices are installed).
    pub fn available(self) -> bool {
        let runs = |prog: &str, arg: &str| {
            Command::new(prog).arg(arg).output().is_ok_and(|o| o.status.success())
        };
        match self {
            Engine::Espeak => espeak_available(),
            Engine::Flite => runs("flite", "-lv"),
            Engine::Festival => {
                runs("festival", "--version")
                    && Command::new("text2wave").arg("--help").output().is_ok()
                    && FESTIVAL_VOICES.iter().all(|v| festival_voice_dir(v).is_some())
            }
        }
    }

    /// Every engine that [`Engine::available`] finds, in [`Engine::ALL`] order (looked up
    /// once per process).
    pub fn present() -> Vec<Engine> {
        static PRESENT: std::sync::OnceLock<Vec<Engine>> = std::sync::OnceLock::new();
        PRESENT.get_or_init(|| Engine::ALL.into_iter().filter(|e| e.available()).collect()).clone()
    }

    fn error(self, reason: impl Into<String>) -> DataError {
        match self {
            Engine::Espeak => DataError::Espeak(reason.into()),
            _ => DataError::Synth { engine: self.program().into(), reason: reason.into() },
        }
    }
}

/// Where Debian puts a festival voice (`/usr/share/festival/voices/<lang>/<voice>`).
fn festival_voice_dir(voice: &str) -> Option<PathBuf> {
    let root = Path::new("/usr/share/festival/voices");
    std::fs::read_dir(root).ok()?.flatten().map(|l| l.path().join(voice)).find(|p| p.is_dir())
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s || e.program() == s)
            .ok_or_else(|| format!("unknown engine {s:?}: expected espeak, flite or festival"))
    }
}

/// The recorded person behind a flite or festival voice: flite's kal16 and festival's
/// kal_diphone are one speaker, so are the two slt voices. Splits keep a person whole.
pub fn person(engine: Engine, name: &str) -> String {
    match (engine, name) {
        (Engine::Flite, "kal16" | "kal") | (Engine::Festival, "kal_diphone") => "kal".into(),
        (Engine::Festival, "cmu_us_slt_arctic_hts") => "slt".into(),
        (Engine::Festival, "ked_diphone") => "ked".into(),
        _ => name.into(),
    }
}

/// One way of speaking: engine, voice, optional espeak variant, pitch (0-99, 50 the voice's
/// own) and speed (words per minute, 175 the voice's own).
///
/// espeak-ng takes pitch and speed as they are (`-p`, `-s`). flite and festival stretch
/// durations by `175 / speed` (flite's `duration_stretch`, festival's `Duration_Stretch`);
/// pitch is moved by resampling: the voice speaks `p = 2^((pitch - 50) / 200)` times slower
/// and its output is played `p` times faster, so every frequency (pitch and formants) is
/// multiplied by `p` and the duration is `175 / speed` of the voice's own (pitch 20-80:
/// about -1.8 to +1.8 semitones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voice {
    /// Missing in manifests written before there were several engines: espeak.
    #[serde(default)]
    pub engine: Engine,
    pub name: String,
    pub variant: Option<String>,
    pub pitch: u32,
    pub speed: u32,
}

impl Voice {
    /// An espeak-ng voice: accent `name` with an optional variant.
    pub fn espeak(name: &str, variant: Option<&str>, pitch: u32, speed: u32) -> Voice {
        Voice {
            engine: Engine::Espeak,
            name: name.into(),
            variant: variant.map(Into::into),
            pitch,
            speed,
        }
    }

    /// A flite or festival voice by name.
    pub fn new(engine: Engine, name: &str, pitch: u32, speed: u32) -> Voice {
        Voice { engine, name: name.into(), variant: None, pitch, speed }
    }

    /// The `-v` argument: `name` or `name+variant`.
    pub fn espeak_name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}+{v}", self.name),
            None => self.name.clone(),
        }
    }

    /// `engine:voice`, e.g. `espeak:en-us+m3`, `flite:slt`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.engine, self.espeak_name())
    }

    /// The frequency factor of `pitch` for flite and festival (see [`Voice`]).
    pub fn pitch_factor(&self) -> f64 {
        2f64.powf((self.pitch as f64 - 50.0) / 200.0)
    }
}

/// Whether `espeak-ng` can be run.
pub fn espeak_available() -> bool {
    Command::new("espeak-ng").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A fresh temporary file name for one synthesis.
fn temp_path(tag: &str, ext: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "rnnlab-{tag}-{}-{}.{ext}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Speaks `text` with `voice` into mono f32 samples at 16 kHz (the engine's own rate
/// resampled with rubato), silence included as the engine makes it. A missing program, an
/// unknown voice or a failed run is an error naming the engine and the voice.
pub fn speak(text: &str, voice: &Voice) -> Result<Vec<f32>> {
    let engine = voice.engine;
    let wav = temp_path(engine.name(), "wav");
    let mut txt = None;
    let mut cmd = Command::new(engine.program());
    match engine {
        Engine::Espeak => {
            cmd.args(["-v", &voice.espeak_name(), "-p", &voice.pitch.to_string()])
                .args(["-s", &voice.speed.to_string(), "-w"])
                .arg(&wav)
                .arg("--")
                .arg(text);
        }
        Engine::Flite | Engine::Festival => {
            if voice.variant.is_some() || !engine.voices().contains(&voice.name.as_str()) {
                return Err(engine.error(format!(
                    "unknown voice {:?} (known: {})",
                    voice.espeak_name(),
                    engine.voices().join(", ")
                )));
            }
            let stretch = 175.0 / voice.speed.max(1) as f64 * voice.pitch_factor();
            if engine == Engine::Flite {
                cmd.args(["-voice", &voice.name, "--setf"])
                    .arg(format!("duration_stretch={stretch:.4}"))
                    .arg("-t")
                    .arg(text)
                    .arg("-o")
                    .arg(&wav);
            } else {
                let t = temp_path("festival", "txt");
                std::fs::write(&t, text).map_err(|e| DataError::io(&t, e))?;
                cmd.arg(&t)
                    .args(["-eval", &format!("(voice_{})", voice.name), "-eval"])
                    .arg(format!("(Parameter.set 'Duration_Stretch {stretch:.4})"))
                    .arg("-o")
                    .arg(&wav);
                txt = Some(t);
            }
        }
    }
    let out = cmd.output();
    if let Some(t) = &txt {
        let _ = std::fs::remove_file(t);
    }
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(engine.error(format!("not found on PATH; {}", engine.install_hint())))
        }
        Err(e) => return Err(engine.error(format!("cannot run: {e}"))),
    };
    // espeak-ng falls back to its default voice (exit code 0) when the voice is unknown;
    // text2wave exits 0 after a Scheme error (`SIOD ERROR`) without writing the file.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = !out.status.success() || stderr.contains("rror") || !wav.is_file();
    let result = if failed {
        Err(engine.error(format!(
            "voice {} failed on {text:?}: {}",
            voice.espeak_name(),
            if stderr.trim().is_empty() { "no audio written" } else { stderr.trim() }
        )))
    } else {
        read_at_pitch(&wav, if engine == Engine::Espeak { 1.0 } else { voice.pitch_factor() })
    };
    let _ = std::fs::remove_file(&wav);
    result
}

/// Reads `path` played `factor` times faster, at 16 kHz.
fn read_at_pitch(path: &Path, factor: f64) -> Result<Vec<f32>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let (mono, rate) = audio::decode_wav(std::io::BufReader::new(file), path)?;
    let from = (rate as f64 * factor).round() as u32;
    audio::resample(&mono, from, SAMPLE_RATE)
        .map_err(|reason| DataError::Wav { path: path.into(), reason })
}

/// Festival utterances synthesised per `festival` process by [`speak_all`].
const FESTIVAL_BATCH: usize = 48;

/// Speaks every `(text, voice)` of `jobs`, in order, as [`speak`] would (the same samples).
/// espeak-ng and flite run once per job; festival, whose start-up (loading a voice) takes
/// far longer than an utterance, runs once per batch of [`FESTIVAL_BATCH`] jobs through a
/// Scheme script; jobs run in parallel.
pub fn speak_all(jobs: &[(&str, &Voice)]) -> Result<Vec<Vec<f32>>> {
    let fest: Vec<usize> =
        (0..jobs.len()).filter(|&i| jobs[i].1.engine == Engine::Festival).collect();
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); jobs.len()];
    let single: Vec<(usize, Vec<f32>)> = (0..jobs.len())
        .into_par_iter()
        .filter(|&i| jobs[i].1.engine != Engine::Festival)
        .map(|i| speak(jobs[i].0, jobs[i].1).map(|y| (i, y)))
        .collect::<Result<_>>()?;
    let batched: Vec<Vec<(usize, Vec<f32>)>> = fest
        .par_chunks(FESTIVAL_BATCH)
        .map(|chunk| festival_batch(jobs, chunk))
        .collect::<Result<_>>()?;
    for (i, y) in single.into_iter().chain(batched.into_iter().flatten()) {
        out[i] = y;
    }
    Ok(out)
}

/// One `festival -b` run speaking `jobs[i]` for every `i` of `which`.
fn festival_batch(jobs: &[(&str, &Voice)], which: &[usize]) -> Result<Vec<(usize, Vec<f32>)>> {
    let engine = Engine::Festival;
    let script = temp_path("festival", "scm");
    let wavs: Vec<PathBuf> = which.iter().map(|_| temp_path("festival", "wav")).collect();
    let mut text = String::new();
    let mut current = "";
    for (&i, wav) in which.iter().zip(&wavs) {
        let (words, voice) = jobs[i];
        if voice.variant.is_some() || !FESTIVAL_VOICES.contains(&voice.name.as_str()) {
            return Err(engine.error(format!(
                "unknown voice {:?} (known: {})",
                voice.espeak_name(),
                FESTIVAL_VOICES.join(", ")
            )));
        }
        if voice.name != current {
            text.push_str(&format!("(voice_{})\n", voice.name));
            current = &voice.name;
        }
        let stretch = 175.0 / voice.speed.max(1) as f64 * voice.pitch_factor();
        let quoted = words.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!(
            "(Parameter.set 'Duration_Stretch {stretch:.4})\n\
             (utt.save.wave (utt.synth (Utterance Text \"{quoted}\")) \"{}\" 'riff)\n",
            wav.display()
        ));
    }
    std::fs::write(&script, text).map_err(|e| DataError::io(&script, e))?;
    let out = Command::new("festival").arg("-b").arg(&script).output();
    let _ = std::fs::remove_file(&script);
    let cleanup = || wavs.iter().for_each(|w| drop(std::fs::remove_file(w)));
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            cleanup();
            return Err(engine.error(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("festival not found on PATH; {}", engine.install_hint())
                }
                _ => format!("cannot run festival: {e}"),
            }));
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut result = Vec::with_capacity(which.len());
    for (&i, wav) in which.iter().zip(&wavs) {
        if !out.status.success() || stderr.contains("rror") || !wav.is_file() {
            cleanup();
            return Err(engine.error(format!(
                "voice {} failed on {:?}: {}",
                jobs[i].1.name,
                jobs[i].0,
                if stderr.trim().is_empty() { "no audio written" } else { stderr.trim() }
            )));
        }
        result.push((i, read_at_pitch(wav, jobs[i].1.pitch_factor())?));
    }
    cleanup();
    Ok(result)
}

/// Removes leading and trailing samples quieter than 2% of the peak.
pub fn trim_silence(x: &[f32]) -> &[f32] {
    let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let loud = |v: &f32| v.abs() > 0.02 * peak;
    match (x.iter().position(loud), x.iter().rposition(loud)) {
        (Some(a), Some(b)) => &x[a..=b],
        _ => &x[..0],
    }
}

/// Clips shorter than this are padded with noise to it when `max_seconds` is set.
pub const MIN_CLIP_SECONDS: f64 = 0.3;

/// How clips are finished and which extra training copies are written: shared by
/// [`generate`] and [`crate::speakers::generate_speakers`]. Fields missing from an older
/// manifest take the defaults (one-second windows at 16 kHz, no copies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conditions {
    /// Longest clip in seconds: a longer utterance is spoken again faster (and, if still
    /// too long, sped up by resampling), and the clip is cut to the utterance plus a random
    /// margin, between [`MIN_CLIP_SECONDS`] and this. `None`: Speech Commands clips are one
    /// second, speaker utterances as long as spoken.
    pub max_seconds: Option<f64>,
    /// Rate of the written WAV files (the loaders resample to 16 kHz on reading).
    pub sample_rate: u32,
    /// Augmented copies of every training clip ([`WaveAugment`], seeded per clip and copy).
    pub augment: usize,
    /// Also write a telephone-band copy (300-3400 Hz) of every training clip.
    pub telephone: bool,
    /// The augmentation recipe of the copies.
    pub wave_augment: WaveAugment,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            max_seconds: None,
            sample_rate: SAMPLE_RATE,
            augment: 0,
            telephone: false,
            wave_augment: WaveAugment::default(),
        }
    }
}

impl Conditions {
    /// Errors (naming `out`) on a sample rate outside 4-48 kHz or a clip length outside
    /// [`MIN_CLIP_SECONDS`]..=10 s.
    pub fn check(&self, out: &Path) -> Result<()> {
        if !(4_000..=48_000).contains(&self.sample_rate) {
            return Err(DataError::dataset(
                out,
                format!("sample rate {} Hz is not in 4000..=48000", self.sample_rate),
            ));
        }
        if let Some(m) = self.max_seconds {
            if !(MIN_CLIP_SECONDS..=10.0).contains(&m) {
                return Err(DataError::dataset(
                    out,
                    format!("max seconds {m} is not in {MIN_CLIP_SECONDS}..=10"),
                ));
            }
        }
        Ok(())
    }

    fn max_len(&self) -> Option<usize> {
        self.max_seconds.map(|s| (s * SAMPLE_RATE as f64).round() as usize)
    }
}

fn legacy_engines() -> Vec<Engine> {
    vec![Engine::Espeak]
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Words (class folders).
    pub classes: Vec<String>,
    /// Clips per class over the three splits.
    pub per_class: usize,
    /// Fractions of each class's clips in validation and test (the rest is train).
    pub validation_fraction: f64,
    pub test_fraction: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// Signal-to-noise ratio range, dB.
    pub snr_db: (f64, f64),
    /// Pitch range (espeak `-p`) and speed range (`-s`, words per minute).
    pub pitch: (u32, u32),
    pub speed: (u32, u32),
    /// Synthesisers speaking the clips (missing in older manifests: espeak only).
    #[serde(default = "legacy_engines")]
    pub engines: Vec<Engine>,
    /// Training voices: `None` draws every clip's voice from all training voices; `Some(n)`
    /// keeps `n` fixed voices (spread over the engines) for the whole training split.
    #[serde(default)]
    pub train_voices: Option<usize>,
    /// Voices no clip of the set speaks, in any split: espeak-ng variants
    /// (`f3`) and flite or festival voices (`flite:slt`; the recorded person
    /// is left out under every engine). [`held_out_voices`] lists another
    /// set's validation and test voices, so that a model trained on this set
    /// has heard none of the voices that score it there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_voices: Vec<String>,
    #[serde(flatten)]
    pub conditions: Conditions,
}

impl Default for SynthConfig {
    /// The default set, spoken by espeak-ng alone: the proving ground every
    /// published figure was measured on. The other engines are asked for by
    /// name (`--engines`); they make a harder set (see `docs/data.md`).
    fn default() -> Self {
        SynthConfig {
            classes: DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect(),
            per_class: DEFAULT_PER_CLASS,
            validation_fraction: 0.1,
            test_fraction: 0.1,
            seed: 0,
            snr_db: (15.0, 40.0),
            pitch: (20, 80),
            speed: (120, 210),
            engines: vec![Engine::Espeak],
            train_voices: None,
            exclude_voices: Vec::new(),
            conditions: Conditions::default(),
        }
    }
}

/// Clips per class of the default set.
pub const DEFAULT_PER_CLASS: usize = 1250;

/// Clips spoken (and held in memory) at a time.
pub(crate) const RENDER_BLOCK: usize = 512;

/// One planned clip.
#[derive(Debug, Clone)]
struct Clip {
    rel: String,
    split: usize,
    word: String,
    voice: Voice,
    peak: f32,
    offset_frac: f64,
    snr_db: f64,
    noise_seed: u64,
}

/// An augmented or telephone-band copy of a training clip, as listed in `synth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentedClip {
    /// The copy, relative to the set's folder.
    pub file: String,
    /// The clean clip it was made from.
    pub source: String,
    pub ops: Vec<AugmentOp>,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthSummary {
    /// Where the set was written (not saved in `synth.json`, so a set is position-free).
    #[serde(skip)]
    pub dir: PathBuf,
    pub config: SynthConfig,
    /// Clips of train (copies included), validation and test.
    pub clips: [usize; 3],
    /// espeak variants (speakers' voice qualities) of each split: train, validation, test.
    pub variants: [Vec<String>; 3],
    /// flite and festival voices (`engine:voice`) of each split.
    #[serde(default)]
    pub voices: [Vec<String>; 3],
    /// Clean clips per engine and split.
    #[serde(default)]
    pub engine_clips: BTreeMap<String, [usize; 3]>,
    /// The fixed training voices when `train_voices` is set (their pitch and speed are
    /// the voices' own, 50 and 175; each clip draws its own, as in the other splits).
    #[serde(default)]
    pub train_voices: Vec<Voice>,
    /// Augmented and telephone-band copies (all in train).
    #[serde(default)]
    pub augmented: Vec<AugmentedClip>,
}

/// Writes the dataset under `out/data_speech_commands_v0.02/` (class folders of
/// `<speaker>_nohash_<n>.wav`, copies `<speaker>_nohash_<n>_aug<k>.wav` and `..._tel.wav`,
/// the two lists and `synth.json`). It is built in a temporary folder and renamed into
/// place; an existing synthetic set is replaced, a folder that is not one (no `synth.json`)
/// is left alone with an error.
pub fn generate(out: &Path, cfg: &SynthConfig) -> Result<SynthSummary> {
    if cfg.classes.is_empty() || cfg.per_class == 0 {
        return Err(DataError::dataset(out, "nothing to generate (no classes or per_class 0)"));
    }
    cfg.conditions.check(out)?;
    let engines = engine_set(out, &cfg.engines)?;
    let final_dir = out.join(DATASET_DIR);
    let tmp_dir = staging_dir(&final_dir, &engines)?;
    for c in &cfg.classes {
        let d = tmp_dir.join(c);
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
    }

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let variants = split_variants(out, &mut rng, &cfg.exclude_voices)?;
    let pools = Pools::new(out, cfg, &engines, &variants)?;
    let (clips, lists) = plan(cfg, &pools, &mut rng);
    let cond = &cfg.conditions;
    let keep = cond.augment > 0 || cond.telephone;
    let mut clean: Vec<Option<Vec<f32>>> = Vec::with_capacity(clips.len());
    for block in clips.chunks(RENDER_BLOCK) {
        let jobs: Vec<(&str, &Voice)> = block.iter().map(|c| (c.word.as_str(), &c.voice)).collect();
        let speech = speak_all(&jobs)?;
        let done: Vec<Option<Vec<f32>>> = block
            .par_iter()
            .zip(&speech)
            .map(|(clip, sp)| {
                let y = render(clip, sp, cond, &tmp_dir)?;
                Ok((keep && clip.split == 0).then_some(y))
            })
            .collect::<Result<_>>()?;
        clean.extend(done);
    }
    let train: Vec<(String, Vec<f32>)> =
        clips.iter().zip(clean).filter_map(|(c, y)| y.map(|y| (c.rel.clone(), y))).collect();
    let augmented = write_copies(&tmp_dir, &train, cond, cfg.seed)?;

    let mut counts = [0usize; 3];
    let mut engine_clips = BTreeMap::<String, [usize; 3]>::new();
    let mut voices: [Vec<String>; 3] = Default::default();
    for c in &clips {
        counts[c.split] += 1;
        engine_clips.entry(c.voice.engine.to_string()).or_default()[c.split] += 1;
        if c.voice.engine != Engine::Espeak {
            voices[c.split].push(c.voice.label());
        }
    }
    for v in &mut voices {
        v.sort();
        v.dedup();
    }
    counts[0] += augmented.len();
    for (name, list) in [(VALIDATION_LIST, &lists[1]), (TESTING_LIST, &lists[2])] {
        let p = tmp_dir.join(name);
        let text: String = list.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).map_err(|e| DataError::io(&p, e))?;
    }
    let summary = SynthSummary {
        dir: final_dir.clone(),
        variants: if engines.contains(&Engine::Espeak) { variants } else { Default::default() },
        config: SynthConfig { engines, ..cfg.clone() },
        clips: counts,
        voices,
        engine_clips,
        train_voices: pools.fixed_train.clone().unwrap_or_default(),
        augmented,
    };
    publish(&tmp_dir, &final_dir, &summary)?;
    Ok(summary)
}

/// `engines` deduplicated in [`Engine::ALL`] order (so the order given does not change the
/// files); an empty list is an error naming `out`.
pub(crate) fn engine_set(out: &Path, engines: &[Engine]) -> Result<Vec<Engine>> {
    let set: Vec<Engine> = Engine::ALL.into_iter().filter(|e| engines.contains(e)).collect();
    if set.is_empty() {
        return Err(DataError::dataset(
            out,
            "no speech engine to synthesise with: install espeak-ng, flite or festival \
             (`make setup` does it when run as root), or name one with --engines",
        ));
    }
    Ok(set)
}

/// The voices each split may use.
struct Pools {
    /// Engines with a voice in each split (in [`Engine::ALL`] order).
    engines: [Vec<Engine>; 3],
    /// espeak variants of each split.
    variants: [Vec<String>; 3],
    /// flite and festival voices of each split.
    others: [Vec<(Engine, &'static str)>; 3],
    /// Fixed training voices (`train_voices`).
    fixed_train: Option<Vec<Voice>>,
}

impl Pools {
    /// The recorded persons of flite and festival are shuffled (with a generator of their
    /// own, so an espeak-only set draws as it always did): one for validation, one for
    /// test, the rest for training. Fixed training voices are dealt round-robin from each
    /// engine's shuffled training voices.
    fn new(
        out: &Path,
        cfg: &SynthConfig,
        engines: &[Engine],
        variants: &[Vec<String>; 3],
    ) -> Result<Pools> {
        let excluded: Vec<String> = cfg
            .exclude_voices
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter_map(|(e, v)| Some(person(e.parse().ok()?, v)))
            .collect();
        let others_all: Vec<(Engine, &'static str)> = engines
            .iter()
            .filter(|&&e| e != Engine::Espeak)
            .flat_map(|&e| e.voices().iter().map(move |&v| (e, v)))
            .filter(|&(e, v)| !excluded.contains(&person(e, v)))
            .collect();
        let mut persons: Vec<String> = others_all.iter().map(|&(e, v)| person(e, v)).collect();
        persons.sort();
        persons.dedup();
        if !persons.is_empty() && persons.len() < 3 {
            return Err(DataError::dataset(
                out,
                "flite and festival need 3 recorded speakers for train, validation and test",
            ));
        }
        let mut prng = ChaCha8Rng::seed_from_u64(splitmix64(cfg.seed ^ 0x7065_7273_6f6e));
        persons.shuffle(&mut prng);
        let split_of = |p: &str| match persons.iter().position(|q| q == p) {
            Some(0) => 1,
            Some(1) => 2,
            _ => 0,
        };
        let mut others: [Vec<(Engine, &'static str)>; 3] = Default::default();
        for &(e, v) in &others_all {
            others[split_of(&person(e, v))].push((e, v));
        }
        let has = |split: usize, e: Engine| match e {
            Engine::Espeak => !variants[split].is_empty(),
            _ => others[split].iter().any(|&(o, _)| o == e),
        };
        let mut per_split: [Vec<Engine>; 3] = Default::default();
        for (split, list) in per_split.iter_mut().enumerate() {
            *list = engines.iter().copied().filter(|&e| has(split, e)).collect();
            if list.is_empty() {
                return Err(DataError::dataset(out, "a split would have no voice to speak it"));
            }
        }
        let fixed_train = match cfg.train_voices {
            None => None,
            Some(n) => Some(fixed_voices(out, cfg, engines, &variants[0], &others[0], n)?),
        };
        Ok(Pools { engines: per_split, variants: variants.clone(), others, fixed_train })
    }
}

/// `n` fixed training voices dealt round-robin over `engines` from each one's shuffled
/// training voices (espeak: a training variant with a drawn accent).
fn fixed_voices(
    out: &Path,
    cfg: &SynthConfig,
    engines: &[Engine],
    variants: &[String],
    others: &[(Engine, &'static str)],
    n: usize,
) -> Result<Vec<Voice>> {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(cfg.seed ^ 0x0074_7261_696e));
    let mut lists: Vec<Vec<(Engine, String, Option<String>)>> = Vec::new();
    for &e in engines {
        let mut l: Vec<(Engine, String, Option<String>)> = if e == Engine::Espeak {
            variants
                .iter()
                .map(|v| (e, VOICES[rng.gen_range(0..VOICES.len())].to_string(), Some(v.clone())))
                .collect()
        } else {
            others.iter().filter(|o| o.0 == e).map(|&(e, v)| (e, v.to_string(), None)).collect()
        };
        l.shuffle(&mut rng);
        lists.push(l);
    }
    let total: usize = lists.iter().map(Vec::len).sum();
    if n == 0 || n > total {
        return Err(DataError::dataset(
            out,
            format!("train voices must be in 1..={total} for engines {engines:?} (got {n})"),
        ));
    }
    let mut chosen = Vec::new();
    let mut round = 0;
    while chosen.len() < n {
        for l in &lists {
            if let Some((e, name, variant)) = l.get(round) {
                if chosen.len() < n {
                    chosen.push(Voice {
                        engine: *e,
                        name: name.clone(),
                        variant: variant.clone(),
                        pitch: 50,
                        speed: 175,
                    });
                }
            }
        }
        round += 1;
    }
    Ok(chosen)
}

/// Where a generator writes before `out` is replaced: `.<name>.tmp` beside
/// `out`, emptied. Fails when one of `engines` is missing, or when `out` exists and
/// is not a generated set (no `synth.json`), so no user's data is replaced.
pub(crate) fn staging_dir(out: &Path, engines: &[Engine]) -> Result<PathBuf> {
    for &e in engines {
        if !e.available() {
            return Err(e.error(format!(
                "not found or incomplete (voices {}); {}",
                e.voices().join(", "),
                e.install_hint()
            )));
        }
    }
    if out.exists() && !out.join("synth.json").is_file() {
        return Err(DataError::dataset(
            out,
            "exists and is not a synthetic set (no synth.json): refusing to replace it",
        ));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    Ok(tmp)
}

/// Writes `summary` as `tmp/synth.json`, then puts `tmp` in place of `out`:
/// an interrupted generator leaves the old set whole, never half a new one.
pub(crate) fn publish(tmp: &Path, out: &Path, summary: &impl Serialize) -> Result<()> {
    let p = tmp.join("synth.json");
    let mut json = serde_json::to_string_pretty(summary).expect("summary serialises");
    json.push('\n');
    std::fs::write(&p, json).map_err(|e| DataError::io(&p, e))?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| DataError::io(out, e))?;
    }
    std::fs::rename(tmp, out).map_err(|e| DataError::io(out, e))
}

/// Variants for train, validation and test: about 12% each held out, never a train-only one;
/// none of `exclude` (the same draws as without it when it names no variant).
fn split_variants(
    out: &Path,
    rng: &mut ChaCha8Rng,
    exclude: &[String],
) -> Result<[Vec<String>; 3]> {
    let kept = |v: &&str| !exclude.iter().any(|x| x == v);
    let mut pool: Vec<&str> =
        VARIANTS.iter().copied().filter(|v| !TRAIN_ONLY.contains(v)).filter(kept).collect();
    pool.shuffle(rng);
    let held = VARIANTS.len() * 12 / 100;
    if pool.len() <= 2 * held {
        return Err(DataError::dataset(
            out,
            format!(
                "only {} espeak-ng variants are left after the excluded voices, too few for \
                 {held} validation, {held} test and some training ones",
                pool.len()
            ),
        ));
    }
    let val = pool[..held].iter().map(|s| s.to_string()).collect();
    let test = pool[held..2 * held].iter().map(|s| s.to_string()).collect();
    let mut train: Vec<String> = pool[2 * held..].iter().map(|s| s.to_string()).collect();
    train.extend(TRAIN_ONLY.iter().copied().filter(kept).map(|s| s.to_string()));
    train.sort();
    Ok([train, val, test])
}

/// The `synth.json` of the data set in `dir` (or in its
/// `data_speech_commands_v0.02`); `None` when the set was not made by
/// `rnnlab data synth` (it has no `synth.json`).
pub fn read_summary(dir: &Path) -> Result<Option<SynthSummary>> {
    let root = crate::speech_commands::SpeechCommands::resolve_root(dir)?;
    let path = root.join("synth.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let summary = serde_json::from_str(&text)
        .map_err(|e| DataError::dataset(&path, format!("unreadable: {e}")))?;
    Ok(Some(summary))
}

impl SynthSummary {
    /// The validation and test voices: espeak-ng variants, and flite and
    /// festival voices as `engine:voice`, sorted. Given as
    /// [`SynthConfig::exclude_voices`], they make a set that shares no voice
    /// with this set's held-out splits.
    pub fn held_out_voices(&self) -> Vec<String> {
        let mut voices: Vec<String> = [1, 2]
            .iter()
            .flat_map(|&i| self.variants[i].iter().chain(&self.voices[i]).cloned())
            .collect();
        voices.sort();
        voices.dedup();
        voices
    }
}

/// The validation and test voices of the synthetic set in `dir` (its
/// `synth.json`; see [`SynthSummary::held_out_voices`]).
pub fn held_out_voices(dir: &Path) -> Result<Vec<String>> {
    match read_summary(dir)? {
        Some(summary) => Ok(summary.held_out_voices()),
        None => Err(DataError::dataset(
            dir,
            "no synth.json: only a set made by `rnnlab data synth` lists its voices",
        )),
    }
}

/// Every clip's parameters, drawn in a fixed order, and the validation and test lists.
/// Within a split the clips go round-robin to the engines that have a voice there; an
/// espeak clip draws an accent and a variant, a flite or festival clip one of its engine's
/// voices; with fixed training voices, training clip `j` takes voice `j mod n`.
fn plan(cfg: &SynthConfig, pools: &Pools, rng: &mut ChaCha8Rng) -> (Vec<Clip>, [Vec<String>; 3]) {
    let mut clips = Vec::new();
    let mut lists: [Vec<String>; 3] = Default::default();
    let n_val = (cfg.per_class as f64 * cfg.validation_fraction).round() as usize;
    let n_test = (cfg.per_class as f64 * cfg.test_fraction).round() as usize;
    let n_train = cfg.per_class.saturating_sub(n_val + n_test);
    for word in &cfg.classes {
        let mut per_speaker = std::collections::HashMap::<String, usize>::new();
        for i in 0..cfg.per_class {
            let (split, j) = if i < n_train {
                (0, i)
            } else if i < n_train + n_val {
                (1, i - n_train)
            } else {
                (2, i - n_train - n_val)
            };
            let (engine, name, variant) = match (&pools.fixed_train, split) {
                (Some(fixed), 0) => {
                    let v = &fixed[j % fixed.len()];
                    (v.engine, v.name.clone(), v.variant.clone())
                }
                _ => {
                    let engines = &pools.engines[split];
                    match engines[j % engines.len()] {
                        Engine::Espeak => {
                            let name = VOICES[rng.gen_range(0..VOICES.len())].to_string();
                            let vs = &pools.variants[split];
                            (Engine::Espeak, name, Some(vs[rng.gen_range(0..vs.len())].clone()))
                        }
                        e => {
                            let vs: Vec<&str> = pools.others[split]
                                .iter()
                                .filter(|o| o.0 == e)
                                .map(|o| o.1)
                                .collect();
                            (e, vs[rng.gen_range(0..vs.len())].to_string(), None)
                        }
                    }
                }
            };
            let speaker = match &variant {
                Some(v) => hex8(&format!("{name}+{v}")),
                None => hex8(&format!("person:{}", person(engine, &name))),
            };
            let n = per_speaker.entry(speaker.clone()).or_default();
            let rel = format!("{word}/{speaker}_nohash_{n}.wav");
            *n += 1;
            let voice = Voice {
                engine,
                name,
                variant,
                pitch: rng.gen_range(cfg.pitch.0..=cfg.pitch.1),
                speed: rng.gen_range(cfg.speed.0..=cfg.speed.1),
            };
            if split > 0 {
                lists[split].push(rel.clone());
            }
            clips.push(Clip {
                rel,
                split,
                word: word.clone(),
                voice,
                peak: rng.gen_range(0.2..0.9),
                offset_frac: rng.gen_range(0.0..1.0),
                snr_db: rng.gen_range(cfg.snr_db.0..=cfg.snr_db.1),
                noise_seed: rng.gen(),
            });
        }
    }
    (clips, lists)
}

/// Adds white Gaussian noise to `y` at `snr_db` below `signal_power` (mean
/// square), drawn from ChaCha8 seeded with `seed` (Box-Muller, two normals
/// from two uniforms): the same seed gives the same noise.
pub(crate) fn add_white_noise(y: &mut [f32], signal_power: f64, snr_db: f64, seed: u64) {
    let sigma = (signal_power / 10f64.powf(snr_db / 10.0)).sqrt();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for pair in y.chunks_mut(2) {
        let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
        let r = (-2.0 * u1.ln()).sqrt() * sigma;
        let t = 2.0 * std::f64::consts::PI * u2;
        pair[0] += (r * t.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second += (r * t.sin()) as f32;
        }
    }
}

fn hex8(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// `speech` (`text` spoken by `voice`) trimmed of silence; with `max_len`, a longer result
/// is spoken again at the speed that should fit (5% to spare) and, if still too long, sped
/// up by resampling to `max_len`.
pub(crate) fn spoken_within(
    speech: &[f32],
    text: &str,
    voice: &Voice,
    max_len: Option<usize>,
) -> Result<Vec<f32>> {
    let mut y = trim_silence(speech).to_vec();
    if let Some(max) = max_len {
        if y.len() > max {
            let speed = (voice.speed as f64 * y.len() as f64 / max as f64 * 1.05).ceil() as u32;
            let again = speak(text, &Voice { speed, ..voice.clone() })?;
            y = trim_silence(&again).to_vec();
        }
        if y.len() > max {
            y = wave::speed(&y, y.len() as f64 / max as f64, SAMPLE_RATE);
            y.truncate(max);
        }
    }
    Ok(y)
}

/// Writes `y` (16 kHz) to `path` at `sample_rate`, 16-bit PCM.
pub(crate) fn write_at_rate(path: &Path, y: &[f32], sample_rate: u32) -> Result<()> {
    if sample_rate == SAMPLE_RATE {
        return audio::write_wav_i16(path, y, SAMPLE_RATE);
    }
    let r = audio::resample(y, SAMPLE_RATE, sample_rate)
        .map_err(|reason| DataError::Wav { path: path.into(), reason })?;
    audio::write_wav_i16(path, &r, sample_rate)
}

/// `file.wav` -> `file<suffix>.wav`.
fn with_suffix(rel: &str, suffix: &str) -> String {
    match rel.strip_suffix(".wav") {
        Some(stem) => format!("{stem}{suffix}.wav"),
        None => format!("{rel}{suffix}"),
    }
}

/// Writes `cond.augment` augmented copies (`<clip>_aug<k>.wav`, [`WaveAugment`] with the
/// generator [`augment_rng`]`(seed, k, index)`; babble from the next eight training clips)
/// and, with `cond.telephone`, a telephone-band copy (`<clip>_tel.wav`) of each of `train`
/// (relative path, clean 16 kHz samples), and lists them.
pub(crate) fn write_copies(
    dir: &Path,
    train: &[(String, Vec<f32>)],
    cond: &Conditions,
    seed: u64,
) -> Result<Vec<AugmentedClip>> {
    let n = train.len();
    let jobs: Vec<(usize, Option<usize>)> = (0..n)
        .flat_map(|t| {
            (0..cond.augment).map(move |k| (t, Some(k))).chain(cond.telephone.then_some((t, None)))
        })
        .collect();
    jobs.par_iter()
        .map(|&(t, k)| {
            let (rel, x) = &train[t];
            let (y, ops, file) = match k {
                Some(k) => {
                    let pool: Vec<&[f32]> =
                        (1..=8.min(n - 1)).map(|d| train[(t + d) % n].1.as_slice()).collect();
                    let mut rng = augment_rng(seed, k as u64, t as u64);
                    let (y, ops) = cond.wave_augment.apply(x, SAMPLE_RATE, &pool, &mut rng);
                    (y, ops, with_suffix(rel, &format!("_aug{k}")))
                }
                None => (
                    wave::telephone(x, SAMPLE_RATE),
                    vec![AugmentOp::Telephone],
                    with_suffix(rel, "_tel"),
                ),
            };
            write_at_rate(&dir.join(&file), &y, cond.sample_rate)?;
            Ok(AugmentedClip { file, source: rel.clone(), ops })
        })
        .collect()
}

/// Places `speech` (the clip spoken), adds noise and writes one clip; returns it at 16 kHz.
fn render(clip: &Clip, speech: &[f32], cond: &Conditions, dir: &Path) -> Result<Vec<f32>> {
    let spoken = spoken_within(speech, &clip.word, &clip.voice, cond.max_len())?;
    let word = &spoken[..spoken.len().min(ONE_SECOND)];
    let len = match cond.max_len() {
        None => ONE_SECOND,
        Some(max) => {
            // a length between the word (at least MIN_CLIP_SECONDS) and max, drawn from
            // the clip's own noise seed so that one-second sets draw as they always did
            let min = ((MIN_CLIP_SECONDS * SAMPLE_RATE as f64) as usize).max(word.len());
            let mut r = ChaCha8Rng::seed_from_u64(splitmix64(clip.noise_seed));
            if max > min {
                r.gen_range(min..=max)
            } else {
                min
            }
        }
    };
    let peak = word.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let gain = clip.peak / peak;
    let offset = ((len - word.len()) as f64 * clip.offset_frac) as usize;
    let mut y = vec![0f32; len];
    for (o, s) in y[offset..].iter_mut().zip(word) {
        *o = s * gain;
    }
    // White Gaussian noise at the drawn SNR relative to the word's power.
    let power = word.iter().map(|s| (s * gain) as f64 * (s * gain) as f64).sum::<f64>()
        / word.len().max(1) as f64;
    add_white_noise(&mut y, power, clip.snr_db, clip.noise_seed);
    write_at_rate(&dir.join(&clip.rel), &y, cond.sample_rate)?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_without_engines_load_as_espeak() {
        let voice: Voice =
            serde_json::from_str(r#"{"name":"en-us","variant":"m3","pitch":50,"speed":160}"#)
                .unwrap();
        assert_eq!(voice, Voice::espeak("en-us", Some("m3"), 50, 160));
        // the config part of a synth.json written before engines existed
        let old = r#"{"classes":["one"],"per_class":10,"validation_fraction":0.1,
            "test_fraction":0.1,"seed":3,"snr_db":[15.0,40.0],"pitch":[20,80],"speed":[120,210]}"#;
        let cfg: SynthConfig = serde_json::from_str(old).unwrap();
        assert_eq!(cfg.engines, [Engine::Espeak]);
        assert_eq!(cfg.conditions, Conditions::default());
        assert_eq!(cfg.train_voices, None);
        // and a new one round-trips
        let new = SynthConfig { engines: vec![Engine::Flite], ..cfg.clone() };
        let back: SynthConfig =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        assert_eq!("festival".parse::<Engine>().unwrap(), Engine::Festival);
        assert!("sapi".parse::<Engine>().unwrap_err().contains("espeak, flite or festival"));
    }

    #[test]
    fn persons_are_shared_across_engines() {
        assert_eq!(person(Engine::Flite, "kal16"), person(Engine::Festival, "kal_diphone"));
        assert_eq!(person(Engine::Flite, "slt"), person(Engine::Festival, "cmu_us_slt_arctic_hts"));
        assert_ne!(person(Engine::Flite, "awb"), person(Engine::Flite, "rms"));
        assert_eq!(with_suffix("one/ab_nohash_3.wav", "_aug1"), "one/ab_nohash_3_aug1.wav");
        let v = Voice::new(Engine::Flite, "slt", 70, 175);
        assert!((v.pitch_factor() - 2f64.powf(0.1)).abs() < 1e-12);
    }
}
