//! `rnnlab data synth-speakers`, `rnnlab train --model speaker` and `rnnlab plots`
//! end to end on a tiny espeak-ng corpus: the loss falls, the run folder holds
//! what the README promises, and bad corpora fail with a clear message.
//! Needs espeak-ng (`make setup` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RNNLAB: &str = env!("CARGO_BIN_EXE_rnnlab");

/// Runs rnnlab in `dir` (so the feature cache stays in the scratch folder).
fn rnnlab(dir: &Path, args: &[&str]) -> Output {
    Command::new(RNNLAB)
        .args(["--device", "cpu"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running rnnlab")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnnlab-speaker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn short_run_lowers_the_loss_and_writes_the_run_folder() {
    let dir = scratch("run");
    let out = rnnlab(
        &dir,
        &["data", "synth-speakers", "--out", "spk", "--speakers", "5", "--utterances", "10"],
    );
    assert!(out.status.success(), "synth-speakers: {}", stderr(&out));
    let args = [
        "train",
        "--model",
        "speaker",
        "--data-dir",
        "spk",
        "--holdout-speakers",
        "2",
        "--hidden",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        "6",
        "--lr",
        "0.01",
        "--out",
        "run",
    ];
    let out = rnnlab(&dir, &args);
    assert!(out.status.success(), "train: {}", stderr(&out));
    let run = dir.join("run");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for key in ["final_loss", "heldout_accuracy", "unseen_purity", "it_per_s"] {
        assert!(summary[key].is_number(), "summary.json lacks {key}: {summary}");
    }
    assert_eq!(summary["train_speakers"], 3);
    // The first epoch's mean loss against the last one.
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let losses: Vec<(usize, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let mean = |e: usize| {
        let v: Vec<f64> = losses.iter().filter(|p| p.0 == e).map(|p| p.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(6) < mean(1), "loss {} -> {}", mean(1), mean(6));
    for f in ["config.json", "split.json", "last.safetensors", "best.safetensors"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(run.join("embeddings/epoch_0000.csv").is_file());
    assert!(run.join("embeddings/epoch_0006.csv").is_file());

    let out = rnnlab(&dir, &["plots", "--results", "."]);
    assert!(out.status.success(), "plots: {}", stderr(&out));
    for f in ["loss.png", "embeddings.png", "embeddings.gif"] {
        assert!(run.join(f).is_file(), "{f} not drawn");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_speaker_or_an_empty_speaker_folder_is_refused() {
    let dir = scratch("bad");
    std::fs::create_dir_all(dir.join("one/alice")).unwrap();
    std::fs::write(dir.join("one/alice/a.wav"), b"not read").unwrap();
    let train = |data: &str| {
        rnnlab(&dir, &["train", "--model", "speaker", "--data-dir", data, "--out", "run"])
    };
    let out = train("one");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 2 speaker folders, found 1"), "{}", stderr(&out));

    std::fs::create_dir_all(dir.join("one/bob")).unwrap();
    let out = train("one");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("bob") && e.contains("holds no .wav file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
