//! Clips of any length: silence trimming against librosa's `effects.trim`
//! (`scripts/trim_golden.py` made the WAVs under `fixtures/trim/` and
//! librosa's intervals in `fixtures/trim_golden.json`), the valid frames the
//! feature cache keeps for each clip, and the loader's padding and lengths.

use std::path::{Path, PathBuf};

use data::audio::{fit_to_length, read_wav, trim_bounds, TrimConfig, ONE_SECOND};
use data::cache::FeatureCache;
use data::loader::{DataLoader, Standardizer};
use data::mfcc::{Features, Mfcc, MfccConfig};
use serde::Deserialize;
use tch::Device;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Golden {
    clips: Vec<Clip>,
}

#[derive(Deserialize)]
struct Clip {
    name: String,
    samples: usize,
    intervals: Vec<Interval>,
}

#[derive(Deserialize)]
struct Interval {
    top_db: f64,
    start: usize,
    end: usize,
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(fixtures().join("trim_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn wav(name: &str) -> PathBuf {
    fixtures().join("trim").join(format!("{name}.wav"))
}

#[test]
fn trim_matches_librosa() {
    let g = golden();
    assert!(g.clips.len() >= 8);
    let mut trimmed = 0;
    for clip in &g.clips {
        let y = read_wav(&wav(&clip.name)).unwrap();
        assert_eq!(y.len(), clip.samples, "{}", clip.name);
        for i in &clip.intervals {
            let cfg = TrimConfig { top_db: i.top_db, ..TrimConfig::default() };
            let got = trim_bounds(&y, &cfg);
            assert_eq!(got, (i.start, i.end), "{} top_db={}", clip.name, i.top_db);
            trimmed += usize::from((i.start, i.end) != (0, y.len()));
        }
    }
    // The fixtures exercise both outcomes.
    assert!(trimmed >= 6, "only {trimmed} intervals trim anything");
}

/// A clip shorter than the window: its valid frames are the unpadded clip's
/// own (`1 + samples / hop`), and equal them value for value.
#[test]
fn padded_clip_keeps_its_own_frames() {
    let y = read_wav(&wav("short_click")).unwrap(); // 620 samples
    let cfg = MfccConfig::default();
    let cache = FeatureCache::uncached(cfg, Some(ONE_SECOND));
    let f = cache.extract(&y);
    assert_eq!((f.frames, f.valid_frames), (32, 2));
    let alone = Mfcc::new(cfg).compute(&y);
    assert_eq!(alone.frames, 2);
    assert_eq!(&f.values[..2 * 20], &alone.values[..]);
    // A clip of the full window or longer is valid throughout.
    let long = read_wav(&wav("two_words_long")).unwrap();
    let f = cache.extract(&long);
    assert_eq!((f.frames, f.valid_frames), (32, 32));
}

/// With trimming, the features are those of the trimmed clip padded to the
/// window, and the cache stores and returns its valid frames; trimmed and
/// untrimmed features live under different cache keys.
#[test]
fn cache_trims_and_keeps_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MfccConfig::default();
    let trim = Some(TrimConfig::default());
    let path = wav("burst_in_silence");
    let cached = FeatureCache::with_trim(dir.path(), cfg, Some(ONE_SECOND), trim).unwrap();
    let plain = FeatureCache::new(dir.path(), cfg, Some(ONE_SECOND)).unwrap();
    assert_ne!(cached.dir(), plain.dir());
    let first = cached.features(&path).unwrap();
    let y = read_wav(&path).unwrap();
    let want = Mfcc::new(cfg).compute(&fit_to_length(&y[4096..12288], ONE_SECOND));
    assert_eq!(first.values, want.values);
    assert_eq!(first.valid_frames, 1 + (12288 - 4096) / 512);
    // A second cache on the same folder reads the entry back, lengths included.
    let again = FeatureCache::with_trim(dir.path(), cfg, Some(ONE_SECOND), trim).unwrap();
    assert_eq!(again.features(&path).unwrap(), first);
    assert_eq!((again.stats().hits, again.stats().misses), (1, 0));
    let untrimmed = plain.features(&path).unwrap();
    assert_eq!(untrimmed.valid_frames, 32);
    assert_ne!(untrimmed.values, first.values);
}

fn features(frames: usize, valid: usize, value: f32) -> Features {
    Features { frames, n_mfcc: 2, values: vec![value; frames * 2], valid_frames: valid }
}

#[test]
fn loader_pads_and_carries_lengths() {
    let feats = [features(3, 3, 1.0), features(2, 1, 2.0), features(4, 2, 3.0)];
    let l = DataLoader::from_features(&feats, &[0, 1, 2], 2, Device::Cpu).unwrap();
    let (x, _) = l.tensors();
    assert_eq!(x.size(), [3, 4, 2]);
    // The clip of 2 frames is zero-padded to 4.
    let row: Vec<f32> = x.get(1).view([-1]).try_into().unwrap();
    assert_eq!(row, [2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(Vec::<i64>::try_from(l.lengths()).unwrap(), [3, 1, 2]);
    let order = tch::Tensor::from_slice(&[2i64, 0, 1]);
    let (_, y, len) = l.batch_with_lengths(Some(&order), 0);
    assert_eq!(Vec::<i64>::try_from(y).unwrap(), [2, 0]);
    assert_eq!(Vec::<i64>::try_from(len).unwrap(), [2, 3]);
    // A clip claiming more valid frames than it has is refused.
    let err = DataLoader::from_features(&[features(2, 3, 0.0)], &[0], 1, Device::Cpu);
    assert!(err.unwrap_err().to_string().contains("3 valid frames of 2"));
}

/// The standardiser's statistics cover valid frames only: frames 1.0 (x3),
/// 2.0 (x1), 3.0 (x2) give mean 11/6, whatever the padding holds.
#[test]
fn standardizer_skips_padding() {
    let feats = [features(3, 3, 1.0), features(4, 1, 2.0), features(5, 2, 3.0)];
    let s = Standardizer::fit(&feats);
    let mean = 11.0 / 6.0;
    let var = (3.0 * 1.0 + 4.0 + 2.0 * 9.0) / 6.0 - mean * mean;
    assert!((s.mean[0] as f64 - mean).abs() < 1e-6, "{:?}", s.mean);
    assert!((s.std[1] as f64 - f64::sqrt(var)).abs() < 1e-6, "{:?}", s.std);
}
