//! Speech Commands splits from the lists, layout and error cases; the feature cache's hits
//! and invalidation; the loader's batches, seeded shuffling, drop-last and standardisation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use data::audio::ONE_SECOND;
use data::augment::wave::speed;
use data::cache::{CacheStats, FeatureCache};
use data::loader::{DataLoader, Standardizer};
use data::mfcc::MfccConfig;
use data::speech_commands::{SpeechCommands, Split, DATASET_DIR, DEFAULT_CLASSES};
use tch::{Device, Kind};

fn tone(path: &Path, hz: f64, len: usize) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..len {
        let v = 0.3 * (2.0 * std::f64::consts::PI * hz * n as f64 / 16_000.0).sin();
        w.write_sample((v * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// root/data_speech_commands_v0.02/{one,two,three,four}/spk{k}_nohash_0.wav, 5 per class;
/// spk3 in validation, spk4 in testing (plus a `four` line that must be filtered out).
fn fake_dataset(root: &Path) -> PathBuf {
    let dir = root.join(DATASET_DIR);
    for (c, class) in ["one", "two", "three", "four"].iter().enumerate() {
        for k in 0..5 {
            let len = 12_000 + 2_000 * k; // shorter and longer than a second
            tone(
                &dir.join(class).join(format!("spk{k}_nohash_0.wav")),
                300.0 * (c + 1) as f64,
                len,
            );
        }
    }
    std::fs::write(
        dir.join("validation_list.txt"),
        "two/spk3_nohash_0.wav\none/spk3_nohash_0.wav\nfour/spk3_nohash_0.wav\nthree/spk3_nohash_0.wav\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("testing_list.txt"),
        "one/spk4_nohash_0.wav\ntwo/spk4_nohash_0.wav\nthree/spk4_nohash_0.wav\n",
    )
    .unwrap();
    dir
}

fn cache(dir: &Path) -> Arc<FeatureCache> {
    Arc::new(FeatureCache::new(dir, MfccConfig::default(), Some(ONE_SECOND)).unwrap())
}

fn rel(ds: &SpeechCommands) -> Vec<String> {
    ds.items()
        .iter()
        .map(|(p, _)| p.strip_prefix(ds.dir()).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn splits_come_from_the_lists_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    fake_dataset(tmp.path());
    let c = cache(&tmp.path().join("cache"));
    let get = |s| SpeechCommands::with_cache(tmp.path(), s, &DEFAULT_CLASSES, c.clone()).unwrap();
    let (train, val, test) = (get(Split::Train), get(Split::Validation), get(Split::Test));
    // Validation keeps the list's order, without the class that was not asked for.
    assert_eq!(
        rel(&val),
        ["two/spk3_nohash_0.wav", "one/spk3_nohash_0.wav", "three/spk3_nohash_0.wav"]
    );
    assert_eq!(val.labels(), [1, 0, 2]);
    assert_eq!(
        rel(&test),
        ["one/spk4_nohash_0.wav", "two/spk4_nohash_0.wav", "three/spk4_nohash_0.wav"]
    );
    // Train is everything else, class by class, sorted.
    assert_eq!(train.len(), 9);
    assert_eq!(
        rel(&train)[..3],
        ["one/spk0_nohash_0.wav", "one/spk1_nohash_0.wav", "one/spk2_nohash_0.wav"]
    );
    assert_eq!(train.labels(), [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!(train.class_names(), ["one", "two", "three"]);
    let (x, y) = train.get(4).unwrap();
    assert_eq!((x.size(), x.kind(), y), (vec![32, 20], Kind::Float, 1));

    // Other classes, and the archive folder itself as the root.
    let four = SpeechCommands::with_cache(
        tmp.path().join(DATASET_DIR),
        Split::Validation,
        &["four", "one"],
        c.clone(),
    )
    .unwrap();
    assert_eq!(rel(&four), ["one/spk3_nohash_0.wav", "four/spk3_nohash_0.wav"]);
    assert_eq!(four.labels(), [1, 0]);
}

#[test]
fn missing_folders_lists_and_classes_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cache(&tmp.path().join("cache"));
    let open = |root: &Path, classes: &[&str]| {
        SpeechCommands::with_cache(root, Split::Train, classes, c.clone()).unwrap_err().to_string()
    };
    let nowhere = tmp.path().join("nowhere");
    assert!(open(&nowhere, &DEFAULT_CLASSES).contains("nowhere"));
    let dir = fake_dataset(tmp.path());
    let err = open(tmp.path(), &["one", "seven"]);
    assert!(err.contains(&dir.join("seven").display().to_string()), "{err}");
    std::fs::remove_file(dir.join("testing_list.txt")).unwrap();
    let err = open(tmp.path(), &DEFAULT_CLASSES);
    assert!(err.contains("testing_list.txt") && err.contains("missing"), "{err}");
    std::fs::write(dir.join("testing_list.txt"), "one/ghost_nohash_0.wav\n").unwrap();
    let err = SpeechCommands::with_cache(tmp.path(), Split::Test, &DEFAULT_CLASSES, c.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ghost_nohash_0.wav"), "{err}");
}

#[test]
fn cache_hits_on_the_second_pass_and_misses_on_changes() {
    let tmp = tempfile::tempdir().unwrap();
    fake_dataset(tmp.path());
    let cache_dir = tmp.path().join("cache");
    let first = cache(&cache_dir);
    let train =
        SpeechCommands::with_cache(tmp.path(), Split::Train, &DEFAULT_CLASSES, first.clone())
            .unwrap();
    let feats = train.features().unwrap().to_vec();
    assert_eq!(first.stats(), CacheStats { hits: 0, misses: 9 });
    // A second epoch reads the features kept in memory: nothing at all is recomputed.
    train.features().unwrap();
    let _ = train.get(0).unwrap();
    assert_eq!(first.stats(), CacheStats { hits: 0, misses: 9 });

    // A second run (new cache object, same folder) reads every entry back, identical.
    let second = cache(&cache_dir);
    let again =
        SpeechCommands::with_cache(tmp.path(), Split::Train, &DEFAULT_CLASSES, second.clone())
            .unwrap();
    assert_eq!(again.features().unwrap(), &feats[..]);
    assert_eq!(second.stats(), CacheStats { hits: 9, misses: 0 });

    // A changed file is recomputed (and only that one).
    let changed = &train.items()[2].0;
    tone(changed, 1234.0, 16_000);
    let third = cache(&cache_dir);
    let ds = SpeechCommands::with_cache(tmp.path(), Split::Train, &DEFAULT_CLASSES, third.clone())
        .unwrap();
    let new = ds.features().unwrap();
    assert_eq!(third.stats(), CacheStats { hits: 8, misses: 1 });
    assert_ne!(new[2], feats[2]);
    assert_eq!(new[3], feats[3]);

    // A changed parameter (the coursework's int16 scale) misses everything.
    let scaled = FeatureCache::new(&cache_dir, MfccConfig::coursework(), Some(ONE_SECOND)).unwrap();
    for (p, _) in ds.items() {
        scaled.features(p).unwrap();
    }
    assert_eq!(scaled.stats(), CacheStats { hits: 0, misses: 9 });
    assert_ne!(scaled.dir(), third.dir());

    // Damaged entries are recomputed, not trusted.
    for entry in std::fs::read_dir(third.dir().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "f32") {
            std::fs::write(&path, b"RNF1garbage").unwrap();
        }
    }
    let fourth = cache(&cache_dir);
    let ds = SpeechCommands::with_cache(tmp.path(), Split::Train, &DEFAULT_CLASSES, fourth.clone())
        .unwrap();
    assert_eq!(ds.features().unwrap(), new);
    assert_eq!(fourth.stats(), CacheStats { hits: 0, misses: 9 });
    let fifth = cache(&cache_dir);
    fifth.features_many(&ds.items().iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()).unwrap();
    assert_eq!(fifth.stats(), CacheStats { hits: 9, misses: 0 });
}

#[test]
fn variable_length_clips_keep_their_length() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("long.wav");
    tone(&wav, 440.0, 24_000);
    let c = FeatureCache::new(tmp.path().join("cache"), MfccConfig::default(), None).unwrap();
    let f = c.features(&wav).unwrap();
    assert_eq!((f.frames, f.n_mfcc), (1 + 24_000 / 512, 20));
}

/// A clip played faster is the clip resampled ([`speed`]) before the MFCC:
/// cached apart from the clip itself, shorter by the factor, and a factor of
/// 1 is the clip.
#[test]
fn speed_copies_are_the_resampled_clip_cached_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("tone.wav");
    tone(&wav, 440.0, 12_000);
    let c = FeatureCache::new(tmp.path().join("cache"), MfccConfig::default(), None).unwrap();
    let plain = c.features(&wav).unwrap();
    let fast = c.features_at_speed(&wav, 1.25).unwrap();
    let samples = data::audio::read_wav(&wav).unwrap();
    let expect = c.extract(&speed(&samples, 1.25, 16_000));
    assert_eq!(fast.values, expect.values);
    // 12,000 samples 1.25 times faster: 9,600, centred frames of hop 512
    assert_eq!((plain.valid_frames, fast.valid_frames), (1 + 12_000 / 512, 1 + 9_600 / 512));
    assert_ne!(fast.values, plain.values);
    assert_eq!(c.features_at_speed(&wav, 1.0).unwrap().values, plain.values);
    // both read back from their own entries
    let again = FeatureCache::new(tmp.path().join("cache"), MfccConfig::default(), None).unwrap();
    let many = again.features_many_at_speed(&[&wav], 1.25).unwrap();
    assert_eq!(many[0].values, fast.values);
    assert_eq!(again.features(&wav).unwrap().values, plain.values);
    assert_eq!(again.stats(), CacheStats { hits: 2, misses: 0 });
}

#[test]
fn loader_batches_shuffles_with_a_seed_and_drops_last() {
    let tmp = tempfile::tempdir().unwrap();
    fake_dataset(tmp.path());
    let c = cache(&tmp.path().join("cache"));
    let train = SpeechCommands::with_cache(tmp.path(), Split::Train, &DEFAULT_CLASSES, c).unwrap();

    let mut plain = DataLoader::new(&train, 4, Device::Cpu).unwrap();
    assert_eq!(plain.len(), 3);
    let batches: Vec<_> = plain.iter().collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].0.size(), [4, 32, 20]);
    assert_eq!(batches[2].0.size(), [1, 32, 20]);
    assert_eq!(batches[0].1.kind(), Kind::Int64);
    let labels: Vec<i64> =
        batches.iter().flat_map(|b| Vec::<i64>::try_from(&b.1).unwrap()).collect();
    assert_eq!(labels, train.labels());

    let order = |l: &mut DataLoader| -> Vec<Vec<i64>> {
        (0..3)
            .map(|_| l.iter().flat_map(|b| Vec::<i64>::try_from(&b.1).unwrap()).collect())
            .collect()
    };
    let mut a = DataLoader::new(&train, 4, Device::Cpu).unwrap().shuffle(7);
    let mut b = DataLoader::new(&train, 4, Device::Cpu).unwrap().shuffle(7);
    let (ea, eb) = (order(&mut a), order(&mut b));
    assert_eq!(ea, eb, "same seed, same order");
    assert_ne!(ea[0], ea[1], "a new order every epoch");
    let mut sorted = ea[0].clone();
    sorted.sort();
    assert_eq!(sorted, [0, 0, 0, 1, 1, 1, 2, 2, 2]);

    let mut dropped = DataLoader::new(&train, 4, Device::Cpu).unwrap().shuffle(1).drop_last(true);
    assert_eq!(dropped.len(), 2);
    assert!(dropped.iter().all(|(x, y)| x.size()[0] == 4 && y.size()[0] == 4));

    // Features and labels stay paired under shuffling.
    let (xs, _) = plain.tensors();
    let xs = xs.shallow_clone();
    for (x, y) in a.iter() {
        for i in 0..x.size()[0] {
            let label = y.int64_value(&[i]);
            let row = x.get(i);
            let found = (0..xs.size()[0]).any(|j| {
                train.labels()[j as usize] == label && row.allclose(&xs.get(j), 0.0, 0.0, false)
            });
            assert!(found);
        }
    }
}

#[test]
fn standardizer_uses_train_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    fake_dataset(tmp.path());
    let c = cache(&tmp.path().join("cache"));
    let train =
        SpeechCommands::with_cache(tmp.path(), Split::Train, &DEFAULT_CLASSES, c.clone()).unwrap();
    let s = Standardizer::fit(train.features().unwrap());
    assert_eq!((s.mean.len(), s.std.len()), (20, 20));
    // Over the valid frames of every clip (padding left out), the standardised
    // features have mean 0 and standard deviation 1.
    let valid = |l: &DataLoader| {
        let (x, _) = l.tensors();
        let t = x.size()[1];
        let mask = tch::Tensor::arange(t, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&l.lengths().unsqueeze(1)); // [N, T]
        x.index(&[Some(mask)]) // [valid frames, 20]
    };
    let l = DataLoader::new(&train, 9, Device::Cpu).unwrap().standardize(&s);
    let lengths: Vec<i64> = l.lengths().try_into().unwrap();
    assert!(lengths.iter().any(|&n| n < 32), "the fake clips are shorter than a second");
    let x = valid(&l);
    let mean = x.mean_dim(0, false, Kind::Float);
    let std = x.std_dim(0, false, false);
    assert!(mean.abs().max().double_value(&[]) < 1e-3);
    assert!((std - 1.0).abs().max().double_value(&[]) < 1e-3);
    // Statistics match libtorch's over the raw train features' valid frames.
    let raw = valid(&DataLoader::new(&train, 9, Device::Cpu).unwrap());
    let want = raw.mean_dim(0, false, Kind::Float);
    let got = tch::Tensor::from_slice(&s.mean);
    assert!(got.allclose(&want, 1e-4, 1e-3, false));
}
