//! Synthetic Speech Commands with Debian's `espeak-ng`: the default dataset when the real
//! one is absent.
//!
//! Each clip is a class word spoken by one English voice with one variant (`+m3`, `+f2`,
//! `+croak`, ...) at a random pitch and speed, trimmed of its silence, scaled to a random
//! peak, placed at a random offset in the one-second window and mixed with white noise at a
//! random SNR, written as 16 kHz 16-bit PCM. A speaker is a (voice, variant) pair; the
//! variants are divided between the splits so that validation and test speakers never
//! occur in training, as the real set separates speakers. Everything random comes from
//! ChaCha8 seeded by `seed`: the same seed gives byte-identical files.

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
use crate::error::{DataError, Result};
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

/// One way of speaking: base voice, optional variant, pitch (0-99, espeak's default 50) and
/// speed (words per minute, default 175).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voice {
    pub name: String,
    pub variant: Option<String>,
    pub pitch: u32,
    pub speed: u32,
}

impl Voice {
    /// The `-v` argument: `name` or `name+variant`.
    pub fn espeak_name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}+{v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Whether `espeak-ng` can be run.
pub fn espeak_available() -> bool {
    Command::new("espeak-ng").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Speaks `text` with `voice` into mono f32 samples at 16 kHz (espeak-ng's 22.05 kHz output
/// resampled with rubato), silence included as espeak-ng makes it.
pub fn speak(text: &str, voice: &Voice) -> Result<Vec<f32>> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = std::env::temp_dir().join(format!(
        "rnnlab-espeak-{}-{}.wav",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let out = Command::new("espeak-ng")
        .args(["-v", &voice.espeak_name(), "-p", &voice.pitch.to_string()])
        .args(["-s", &voice.speed.to_string(), "-w"])
        .arg(&tmp)
        .arg("--")
        .arg(text)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DataError::Espeak(format!("not found on PATH; {INSTALL_HINT}")))
        }
        Err(e) => return Err(DataError::Espeak(format!("cannot run: {e}"))),
    };
    // espeak-ng falls back to its default voice (exit code 0) when the voice is unknown.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result = if out.status.success() && !stderr.contains("rror") {
        audio::read_wav(&tmp)
    } else {
        Err(DataError::Espeak(format!(
            "voice {} failed on {text:?}: {}",
            voice.espeak_name(),
            stderr.trim()
        )))
    };
    let _ = std::fs::remove_file(&tmp);
    result
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
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            classes: DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect(),
            per_class: 1250,
            validation_fraction: 0.1,
            test_fraction: 0.1,
            seed: 0,
            snr_db: (15.0, 40.0),
            pitch: (20, 80),
            speed: (120, 210),
        }
    }
}

/// One planned clip.
#[derive(Debug, Clone)]
struct Clip {
    rel: String,
    word: String,
    voice: Voice,
    peak: f32,
    offset_frac: f64,
    snr_db: f64,
    noise_seed: u64,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthSummary {
    /// Where the set was written (not saved in `synth.json`, so a set is position-free).
    #[serde(skip)]
    pub dir: PathBuf,
    pub config: SynthConfig,
    pub clips: [usize; 3],
    /// Variants (speakers' voice qualities) of each split: train, validation, test.
    pub variants: [Vec<String>; 3],
}

/// Writes the dataset under `out/data_speech_commands_v0.02/` (class folders of
/// `<speaker>_nohash_<n>.wav`, the two lists and `synth.json`). It is built in a temporary
/// folder and renamed into place; an existing synthetic set is replaced, a folder that is
/// not one (no `synth.json`) is left alone with an error.
pub fn generate(out: &Path, cfg: &SynthConfig) -> Result<SynthSummary> {
    if cfg.classes.is_empty() || cfg.per_class == 0 {
        return Err(DataError::dataset(out, "nothing to generate (no classes or per_class 0)"));
    }
    let final_dir = out.join(DATASET_DIR);
    let tmp_dir = staging_dir(&final_dir)?;
    for c in &cfg.classes {
        let d = tmp_dir.join(c);
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
    }

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let variants = split_variants(&mut rng);
    let (clips, lists) = plan(cfg, &variants, &mut rng);
    clips.par_iter().try_for_each(|clip| render(clip, &tmp_dir))?;

    let mut counts = [0usize; 3];
    for (split, list) in lists.iter().enumerate() {
        counts[split] = list.len();
    }
    counts[0] = clips.len() - counts[1] - counts[2];
    for (name, list) in [(VALIDATION_LIST, &lists[1]), (TESTING_LIST, &lists[2])] {
        let p = tmp_dir.join(name);
        let text: String = list.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).map_err(|e| DataError::io(&p, e))?;
    }
    let summary =
        SynthSummary { dir: final_dir.clone(), config: cfg.clone(), clips: counts, variants };
    publish(&tmp_dir, &final_dir, &summary)?;
    Ok(summary)
}

/// Where a generator writes before `out` is replaced: `.<name>.tmp` beside
/// `out`, emptied. Fails when espeak-ng is missing, or when `out` exists and
/// is not a generated set (no `synth.json`), so no user's data is replaced.
pub(crate) fn staging_dir(out: &Path) -> Result<PathBuf> {
    if !espeak_available() {
        return Err(DataError::Espeak(format!("not found on PATH; {INSTALL_HINT}")));
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

/// Variants for train, validation and test: about 12% each held out, never a train-only one.
fn split_variants(rng: &mut ChaCha8Rng) -> [Vec<String>; 3] {
    let mut pool: Vec<&str> =
        VARIANTS.iter().copied().filter(|v| !TRAIN_ONLY.contains(v)).collect();
    pool.shuffle(rng);
    let held = VARIANTS.len() * 12 / 100;
    let val = pool[..held].iter().map(|s| s.to_string()).collect();
    let test = pool[held..2 * held].iter().map(|s| s.to_string()).collect();
    let mut train: Vec<String> = pool[2 * held..].iter().map(|s| s.to_string()).collect();
    train.extend(TRAIN_ONLY.iter().map(|s| s.to_string()));
    train.sort();
    [train, val, test]
}

/// Every clip's parameters, drawn in a fixed order, and the validation and test lists.
fn plan(
    cfg: &SynthConfig,
    variants: &[Vec<String>; 3],
    rng: &mut ChaCha8Rng,
) -> (Vec<Clip>, [Vec<String>; 3]) {
    let mut clips = Vec::new();
    let mut lists: [Vec<String>; 3] = Default::default();
    let n_val = (cfg.per_class as f64 * cfg.validation_fraction).round() as usize;
    let n_test = (cfg.per_class as f64 * cfg.test_fraction).round() as usize;
    let n_train = cfg.per_class.saturating_sub(n_val + n_test);
    for word in &cfg.classes {
        let mut per_speaker = std::collections::HashMap::<String, usize>::new();
        for i in 0..cfg.per_class {
            let split = if i < n_train {
                0
            } else if i < n_train + n_val {
                1
            } else {
                2
            };
            let name = VOICES[rng.gen_range(0..VOICES.len())].to_string();
            let variant = variants[split][rng.gen_range(0..variants[split].len())].clone();
            let speaker = hex8(&format!("{name}+{variant}"));
            let n = per_speaker.entry(speaker.clone()).or_default();
            let rel = format!("{word}/{speaker}_nohash_{n}.wav");
            *n += 1;
            let voice = Voice {
                name,
                variant: Some(variant),
                pitch: rng.gen_range(cfg.pitch.0..=cfg.pitch.1),
                speed: rng.gen_range(cfg.speed.0..=cfg.speed.1),
            };
            if split > 0 {
                lists[split].push(rel.clone());
            }
            clips.push(Clip {
                rel,
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

/// Speaks, places, adds noise and writes one clip.
fn render(clip: &Clip, dir: &Path) -> Result<()> {
    let speech = speak(&clip.word, &clip.voice)?;
    let word = trim_silence(&speech);
    let word = &word[..word.len().min(ONE_SECOND)];
    let peak = word.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let gain = clip.peak / peak;
    let offset = ((ONE_SECOND - word.len()) as f64 * clip.offset_frac) as usize;
    let mut y = vec![0f32; ONE_SECOND];
    for (o, s) in y[offset..].iter_mut().zip(word) {
        *o = s * gain;
    }
    // White Gaussian noise at the drawn SNR relative to the word's power.
    let power = word.iter().map(|s| (s * gain) as f64 * (s * gain) as f64).sum::<f64>()
        / word.len().max(1) as f64;
    add_white_noise(&mut y, power, clip.snr_db, clip.noise_seed);
    audio::write_wav_i16(&dir.join(&clip.rel), &y, SAMPLE_RATE)
}
