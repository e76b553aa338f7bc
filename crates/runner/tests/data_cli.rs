//! `rnnlab mfcc`, `rnnlab data synth` and `rnnlab bench mfcc` from the outside: CSV that
//! matches librosa's golden values, a named error for a broken file, a tiny synthetic set.

use std::path::{Path, PathBuf};
use std::process::Command;

fn rnnlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rnnlab"))
}

/// A fresh folder under Cargo's per-test-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_cli_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures")
}

#[test]
fn mfcc_prints_librosa_values_as_csv() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("mfcc_golden.json")).unwrap(),
    )
    .unwrap();
    let clip = golden["clips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "speech_three" && c["scale"] == 1.0)
        .unwrap();
    let out = rnnlab().arg("mfcc").arg(fixtures().join("wav/speech_three.wav")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Vec<f64>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&out.stdout[..])
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 32);
    let want = clip["mfcc"].as_array().unwrap();
    for (row, w) in rows.iter().zip(want) {
        assert_eq!(row.len(), 20);
        for (a, b) in row.iter().zip(w.as_array().unwrap()) {
            assert!((a - b.as_f64().unwrap()).abs() < 0.01, "{a} vs {b}");
        }
    }
}

#[test]
fn mfcc_of_a_broken_file_names_it_and_fails() {
    let dir = scratch("broken");
    let bad = dir.join("broken.wav");
    std::fs::write(&bad, b"RIFF\x10\0\0\0WAVE").unwrap();
    let out = rnnlab().arg("mfcc").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.wav") && !err.contains("panicked"), "{err}");
}

#[test]
fn synth_writes_a_tiny_dataset_and_bench_reads_it() {
    let dir = scratch("synth");
    let out = rnnlab()
        .args(["data", "synth", "--per-class", "5", "--seed", "3", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = dir.join("data_speech_commands_v0.02");
    for class in ["one", "two", "three"] {
        assert_eq!(std::fs::read_dir(root.join(class)).unwrap().count(), 5);
    }
    let out =
        rnnlab().args(["bench", "mfcc", "--iters", "5", "--root"]).arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("whole dataset (15 files"), "{text}");
}

/// The engines installed here besides espeak-ng; the missing ones are named on stderr
/// (visible in CI logs), and the test runs with what is present.
fn extra_engines() -> Vec<&'static str> {
    let mut v = Vec::new();
    for (name, probe, arg) in [("flite", "flite", "-lv"), ("festival", "festival", "--version")] {
        if Command::new(probe).arg(arg).output().is_ok_and(|o| o.status.success()) {
            v.push(name);
        } else {
            eprintln!("SKIPPED engine {name}: `{probe}` is not installed");
        }
    }
    v
}

fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(wavs(&p));
        } else if p.extension().is_some_and(|e| e == "wav") {
            out.push(p);
        }
    }
    out
}

#[test]
fn synth_small_short_8k_corpus_with_copies_from_the_cli() {
    let dir = scratch("small");
    let mut engines = vec!["espeak"];
    engines.extend(extra_engines());
    let out = rnnlab()
        .args(["data", "synth", "--per-class", "10", "--train-voices", "2"])
        .args(["--max-seconds", "0.8", "--sample-rate", "8000", "--augment", "1", "--telephone"])
        .args(["--engines", &engines.join(","), "--classes", "one,two", "--root"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // 8 training clips per class and two copies of each, 1 validation and 1 test
    assert!(text.contains("wrote 48 train (32 of them copies), 2 validation, 2 test"), "{text}");
    let root = dir.join("data_speech_commands_v0.02");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("synth.json")).unwrap()).unwrap();
    assert_eq!(manifest["config"]["engines"].as_array().unwrap().len(), engines.len());
    assert_eq!(manifest["config"]["augment"], 1);
    assert_eq!(manifest["augmented"].as_array().unwrap().len(), 32);
    let files = wavs(&root);
    assert_eq!(files.len(), 52);
    for p in &files {
        let r = hound::WavReader::open(p).unwrap();
        let secs = r.duration() as f64 / r.spec().sample_rate as f64;
        assert_eq!(r.spec().sample_rate, 8000, "{}", p.display());
        assert!((0.26..=0.9).contains(&secs), "{}: {secs} s", p.display());
    }
    // the set trains as any other: bench reads every file (resampled to 16 kHz)
    let out =
        rnnlab().args(["bench", "mfcc", "--iters", "1", "--root"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = rnnlab()
        .args(["data", "synth", "--engines", "espeak,sapi", "--root"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("sapi"), "{err}");
}

#[test]
fn speakers_few_short_clips_from_the_cli() {
    let dir = scratch("spk").join("corpus");
    let out = rnnlab()
        .args(["data", "speakers", "--speakers", "3", "--utterances", "4", "--engines", "espeak"])
        .args(["--max-seconds", "0.8", "--sample-rate", "8000", "--augment", "1", "--holdout", "1"])
        .arg("--root")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // 12 utterances, a copy of each of the two speakers training keeps
    assert!(text.contains("wrote 20 utterances (8 of them copies) of 3 speakers"), "{text}");
    let folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let copies: Vec<usize> = folders
        .iter()
        .map(|f| wavs(f).iter().filter(|p| p.to_string_lossy().contains("_aug")).count())
        .collect();
    assert_eq!(copies.iter().filter(|&&c| c == 0).count(), 1, "{copies:?}");
    for p in wavs(&dir) {
        let r = hound::WavReader::open(&p).unwrap();
        let secs = r.duration() as f64 / r.spec().sample_rate as f64;
        assert_eq!(r.spec().sample_rate, 8000);
        assert!(secs <= 0.9, "{}: {secs} s", p.display());
    }
}

/// The speaker codes (`<speaker>_nohash_<n>.wav`) of a set's files: every
/// file's, or those its validation and test lists name.
fn speakers(root: &Path, held_out_only: bool) -> std::collections::BTreeSet<String> {
    let code =
        |p: &Path| p.file_name().unwrap().to_str().unwrap().split('_').next().unwrap().into();
    if held_out_only {
        ["validation_list.txt", "testing_list.txt"]
            .iter()
            .flat_map(|l| {
                std::fs::read_to_string(root.join(l))
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .map(|l| code(Path::new(&l)))
            .collect()
    } else {
        wavs(root).iter().map(|p| code(p)).collect()
    }
}

/// `data synth --exclude-voices-of DIR` makes a set (to pretrain on) that
/// speaks none of DIR's validation and test voices in any split: no espeak-ng
/// variant of theirs in its pools, and no file of a held-out speaker (an
/// accent and variant, or a recorded person under any engine). Without the
/// flag the same seed draws DIR's own held-out variants, so the flag is what
/// keeps them out. A folder that is no synthetic set is a named error.
#[test]
fn synth_can_leave_out_another_sets_held_out_voices() {
    let dir = scratch("exclude");
    let mut engines = vec!["espeak"];
    engines.extend(extra_engines());
    let synth = |out: &str, extra: &[&str]| {
        rnnlab()
            .args(["data", "synth", "--seed", "4", "--engines"])
            .arg(engines.join(","))
            .args(extra)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap()
    };
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr))
    };
    ok(synth("small", &["--per-class", "12", "--train-voices", "4"]));
    let small = dir.join("small");
    let excl = ["--exclude-voices-of", small.to_str().unwrap()];
    ok(synth("pretrain", &[&excl[..], &["--per-class", "40"]].concat()));
    ok(synth("same-seed", &["--per-class", "40"]));
    let manifest = |name: &str| -> serde_json::Value {
        let p = dir.join(name).join("data_speech_commands_v0.02/synth.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let variants =
        |m: &serde_json::Value, splits: &[usize]| -> std::collections::BTreeSet<String> {
            splits
                .iter()
                .flat_map(|&s| m["variants"][s].as_array().unwrap().iter())
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
    let held_out = variants(&manifest("small"), &[1, 2]);
    assert_eq!(held_out.len(), 22);
    let pretrain = manifest("pretrain");
    assert!(variants(&pretrain, &[0, 1, 2]).is_disjoint(&held_out));
    assert!(pretrain["config"]["exclude_voices"].as_array().unwrap().len() >= 22);
    assert_eq!(variants(&manifest("same-seed"), &[1, 2]), held_out);
    let root = |n: &str| dir.join(n).join("data_speech_commands_v0.02");
    let (theirs, mine) = (speakers(&root("small"), true), speakers(&root("pretrain"), false));
    assert!(!theirs.is_empty() && mine.len() > theirs.len());
    assert!(theirs.is_disjoint(&mine), "shared speakers: {:?}", theirs.intersection(&mine));

    let out = rnnlab()
        .args(["data", "synth", "--exclude-voices-of"])
        .arg(dir.join("none"))
        .arg("--out")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--exclude-voices-of") && err.contains("none"),
        "{err}"
    );
}
