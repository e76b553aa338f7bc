//! MFCC parity with librosa 0.11: `scripts/librosa_golden.py` made the WAVs under
//! `fixtures/wav/` and librosa's features of each (`fixtures/mfcc_golden.json`). The
//! largest difference must be under 1e-4 of the clip's MFCC value range.

use std::path::{Path, PathBuf};

use data::audio::{fit_to_length, read_wav, ONE_SECOND};
use data::cache::FeatureCache;
use data::mfcc::{Mfcc, MfccConfig};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn golden() -> Vec<(String, PathBuf, f32, Vec<Vec<f32>>)> {
    let text = std::fs::read_to_string(fixtures().join("mfcc_golden.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let rows = c["mfcc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
                .collect();
            (
                c["name"].as_str().unwrap().to_string(),
                fixtures().join(c["wav"].as_str().unwrap()),
                c["scale"].as_f64().unwrap() as f32,
                rows,
            )
        })
        .collect()
}

/// (largest |difference|, value range of the golden matrix)
fn compare(got: &[f32], want: &[Vec<f32>]) -> (f32, f32) {
    let flat: Vec<f32> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), flat.len());
    let range = flat.iter().copied().fold(f32::MIN, f32::max)
        - flat.iter().copied().fold(f32::MAX, f32::min);
    let diff = got.iter().zip(&flat).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    (diff, range)
}

#[test]
fn mfcc_matches_librosa_on_every_golden_clip() {
    let clips = golden();
    assert!(clips.len() >= 10);
    let mut report = Vec::new();
    for (name, wav, scale, want) in &clips {
        let mfcc = Mfcc::new(MfccConfig { scale: *scale, ..MfccConfig::default() });
        let y = fit_to_length(&read_wav(wav).unwrap(), ONE_SECOND);
        let f = mfcc.compute(&y);
        assert_eq!((f.frames, f.n_mfcc), (32, 20), "{name}");
        let (diff, range) = compare(&f.values, want);
        report.push(format!("{name} x{scale}: max diff {diff:.2e}, relative {:.2e}", diff / range));
        assert!(diff < 1e-4 * range, "{name} (scale {scale}): max diff {diff} vs range {range}");
    }
    eprintln!("{}", report.join("\n"));
}

/// librosa's `n_mfcc=K` keeps the first K rows of the same DCT, so fewer
/// coefficients (`rnnlab train --n-mfcc`) are the golden matrix's first columns.
#[test]
fn fewer_coefficients_are_librosas_first_ones() {
    for (name, wav, scale, want) in golden().iter().take(3) {
        let mfcc = Mfcc::new(MfccConfig { scale: *scale, n_mfcc: 10, ..MfccConfig::default() });
        let f = mfcc.compute(&fit_to_length(&read_wav(wav).unwrap(), ONE_SECOND));
        assert_eq!((f.frames, f.n_mfcc), (32, 10), "{name}");
        let first: Vec<Vec<f32>> = want.iter().map(|row| row[..10].to_vec()).collect();
        let (diff, range) = compare(&f.values, &first);
        assert!(diff < 1e-4 * range, "{name} (scale {scale}): max diff {diff} vs range {range}");
    }
}

#[test]
fn feature_cache_gives_the_golden_values_too() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FeatureCache::new(dir.path(), MfccConfig::default(), Some(ONE_SECOND)).unwrap();
    for (name, wav, scale, want) in golden().iter().filter(|c| c.2 == 1.0) {
        let f = cache.features(wav).unwrap();
        let (diff, range) = compare(&f.values, want);
        assert!(diff < 1e-4 * range, "{name} (scale {scale}): {diff} vs {range}");
    }
}
