//! Synthetic Speech Commands: the same seed writes byte-identical files, validation and test
//! speakers never speak in training, and the set opens as a dataset. Needs `espeak-ng`
//! (`scripts/setup.sh` installs it).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use data::speech_commands::{SpeechCommands, Split, DATASET_DIR};
use data::synth::{espeak_available, generate, speak, Engine, SynthConfig, Voice, INSTALL_HINT};

fn require_espeak() {
    assert!(espeak_available(), "espeak-ng is needed for these tests: {INSTALL_HINT}");
}

fn tiny(seed: u64) -> SynthConfig {
    SynthConfig { per_class: 10, seed, engines: vec![Engine::Espeak], ..SynthConfig::default() }
}

/// Every file under `dir`, relative path -> bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_files() {
    require_espeak();
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sa = generate(a.path(), &tiny(5)).unwrap();
    generate(b.path(), &tiny(5)).unwrap();
    generate(c.path(), &tiny(6)).unwrap();
    let (fa, fb, fc) = (
        snapshot(&a.path().join(DATASET_DIR)),
        snapshot(&b.path().join(DATASET_DIR)),
        snapshot(&c.path().join(DATASET_DIR)),
    );
    assert_eq!(fa.len(), 30 + 3, "30 clips, two lists and synth.json");
    assert!(fa == fb, "same seed, different files");
    assert!(fa != fc, "another seed, the same files");
    assert_eq!(sa.clips, [24, 3, 3]);
    // Generating again over an existing synthetic set replaces it.
    generate(a.path(), &tiny(5)).unwrap();
    assert!(snapshot(&a.path().join(DATASET_DIR)) == fa);
}

#[test]
fn held_out_speakers_never_occur_in_training() {
    require_espeak();
    let dir = tempfile::tempdir().unwrap();
    let s = generate(dir.path(), &tiny(1)).unwrap();
    let train_variants: HashSet<&String> = s.variants[0].iter().collect();
    assert!(s.variants[1].iter().chain(&s.variants[2]).all(|v| !train_variants.contains(v)));
    let cache =
        std::sync::Arc::new(data::cache::FeatureCache::uncached(Default::default(), Some(16_000)));
    let open = |split| {
        SpeechCommands::with_cache(dir.path(), split, &["one", "two", "three"], cache.clone())
            .unwrap()
    };
    let speakers = |ds: &SpeechCommands| -> HashSet<String> {
        ds.items()
            .iter()
            .map(|(p, _)| {
                p.file_name().unwrap().to_string_lossy().split('_').next().unwrap().to_string()
            })
            .collect()
    };
    let (train, val, test) = (open(Split::Train), open(Split::Validation), open(Split::Test));
    assert_eq!((train.len(), val.len(), test.len()), (24, 3, 3));
    assert!(speakers(&train).is_disjoint(&speakers(&val)));
    assert!(speakers(&train).is_disjoint(&speakers(&test)));
    // Every clip is one second of 16 kHz 16-bit mono with the word in it.
    for (p, _) in train.items().iter().take(5) {
        let r = hound::WavReader::open(p).unwrap();
        let spec = r.spec();
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 16_000, 16));
        assert_eq!(r.duration(), 16_000);
    }
    let (x, _) = train.get(0).unwrap();
    assert_eq!(x.size(), [32, 20]);
}

#[test]
fn speak_gives_16k_speech_and_refuses_to_replace_real_data() {
    require_espeak();
    let v = Voice::espeak("en-us", Some("m3"), 50, 160);
    let y = speak("three", &v).unwrap();
    assert!(y.len() > 4_000 && y.len() < 16_000, "{} samples", y.len());
    assert!(y.iter().fold(0f32, |m, s| m.max(s.abs())) > 0.1);
    let bad = Voice::espeak("zzzbad", None, 50, 160);
    let Err(err) = speak("one", &bad) else { panic!("an unknown voice must fail") };
    let err = err.to_string();
    assert!(err.contains("zzzbad"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(DATASET_DIR).join("one")).unwrap();
    let err = generate(dir.path(), &tiny(0)).unwrap_err().to_string();
    assert!(err.contains("not a synthetic set"), "{err}");
}
