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
