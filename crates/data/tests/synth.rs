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

/// Whether `engine` is installed; when not, says so on stderr (visible in CI logs).
fn have(engine: Engine) -> bool {
    let ok = engine.available();
    if !ok {
        eprintln!("SKIPPED: {} is not installed ({})", engine.program(), engine.install_hint());
    }
    ok
}

fn wav_seconds(p: &Path) -> (u32, f64) {
    let r = hound::WavReader::open(p).unwrap();
    let spec = r.spec();
    (spec.sample_rate, r.duration() as f64 / spec.sample_rate as f64)
}

#[test]
fn flite_and_festival_speak_at_16k_and_name_a_bad_voice() {
    for engine in [Engine::Flite, Engine::Festival] {
        if !have(engine) {
            continue;
        }
        for &name in engine.voices() {
            let y = speak("seven", &Voice::new(engine, name, 50, 175)).unwrap();
            let secs = y.len() as f64 / 16_000.0;
            assert!((0.3..2.5).contains(&secs), "{engine}:{name}: {secs} s");
            assert!(y.iter().fold(0f32, |m, s| m.max(s.abs())) > 0.05, "{engine}:{name} silent");
        }
        let err = speak("one", &Voice::new(engine, "zzzbad", 50, 175)).unwrap_err().to_string();
        assert!(err.contains(engine.program()) && err.contains("zzzbad"), "{err}");
        // speed: twice the words per minute, about half the spoken length
        let v = Voice::new(engine, engine.voices()[0], 50, 175);
        let slow = data::synth::trim_silence(&speak("seven", &v).unwrap()).len() as f64;
        let fast =
            data::synth::trim_silence(&speak("seven", &Voice { speed: 350, ..v.clone() }).unwrap())
                .len() as f64;
        assert!((0.4..0.65).contains(&(fast / slow)), "{engine}: ratio {}", fast / slow);
    }
}

#[test]
fn festival_batches_speak_as_text2wave_does() {
    if !have(Engine::Festival) {
        return;
    }
    let voices: Vec<Voice> = [("kal_diphone", 30, 150), ("cmu_us_slt_arctic_hts", 70, 200)]
        .iter()
        .map(|&(n, p, s)| Voice::new(Engine::Festival, n, p, s))
        .collect();
    let jobs = [("three", &voices[0]), ("two", &voices[1]), ("one", &voices[0])];
    let batch = data::synth::speak_all(&jobs).unwrap();
    for ((text, voice), got) in jobs.iter().zip(&batch) {
        assert_eq!(got, &speak(text, voice).unwrap(), "{text} by {}", voice.name);
    }
}

#[test]
fn several_engines_small_short_clips_with_copies() {
    let engines: Vec<Engine> = Engine::ALL.into_iter().filter(|&e| have(e)).collect();
    require_espeak();
    let cfg = SynthConfig {
        per_class: 10,
        seed: 2,
        engines: engines.clone(),
        train_voices: Some(2),
        conditions: data::synth::Conditions {
            max_seconds: Some(0.8),
            sample_rate: 8000,
            augment: 2,
            telephone: true,
            ..Default::default()
        },
        ..SynthConfig::default()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s = generate(a.path(), &cfg).unwrap();
    generate(b.path(), &cfg).unwrap();
    let root = a.path().join(DATASET_DIR);
    assert!(snapshot(&root) == snapshot(&b.path().join(DATASET_DIR)), "same seed, same files");
    // 8 clean training clips per class, each with 2 augmented and 1 telephone copy
    assert_eq!(s.clips, [3 * 8 * 4, 3, 3]);
    assert_eq!(s.augmented.len(), 3 * 8 * 3);
    assert_eq!(s.train_voices.len(), 2);
    for (split, n) in s
        .engine_clips
        .values()
        .fold([0; 3], |mut acc, v| {
            (0..3).for_each(|i| acc[i] += v[i]);
            acc
        })
        .iter()
        .enumerate()
    {
        assert_eq!(*n, [24, 3, 3][split]);
    }
    let listed: HashSet<String> = ["validation_list.txt", "testing_list.txt"]
        .iter()
        .flat_map(|l| {
            std::fs::read_to_string(root.join(l))
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    for c in &s.augmented {
        assert!(!listed.contains(&c.source) && !listed.contains(&c.file), "{c:?}");
        assert!(root.join(&c.file).is_file());
    }
    // every clip is 8 kHz and 0.3-0.8 s; copies of a clip keep it within 0.8 s * 1.1 (speed)
    for (rel, _) in snapshot(&root).into_iter().filter(|(r, _)| r.ends_with(".wav")) {
        let (rate, secs) = wav_seconds(&root.join(&rel));
        assert_eq!(rate, 8000, "{rel}");
        let max = if rel.contains("_aug") { 0.8 / 0.9 + 0.01 } else { 0.8 + 1e-3 };
        assert!(secs >= 0.3 * 0.9 - 0.01 && secs <= max, "{rel}: {secs} s");
    }
    // the training split is spoken by the two fixed voices only: two speaker prefixes
    let train = SpeechCommands::with_cache(
        a.path(),
        Split::Train,
        &["one", "two", "three"],
        std::sync::Arc::new(data::cache::FeatureCache::uncached(Default::default(), Some(16_000))),
    )
    .unwrap();
    let speakers: HashSet<String> = train
        .items()
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().split('_').next().unwrap().into())
        .collect();
    assert!(speakers.len() <= 2, "{speakers:?}");
    assert_eq!(train.len(), 96);
}
