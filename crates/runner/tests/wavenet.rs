//! `rnnlab train --model wavenet`, `rnnlab sample` and `rnnlab plots`, run
//! as a user would: a short training run lowers the loss and writes its run
//! folder, sampling gives names of the vocabulary only, bad options fail
//! with a clear message and no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn rnnlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rnnlab")).args(args).output().expect("running rnnlab")
}

fn data_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data").to_string_lossy().into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnnlab-wavenet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A row of a wavenet run's metrics.csv.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Row {
    step: u64,
    epoch: u64,
    loss: f64,
    lr: f64,
    valid_loss: Option<f64>,
    seconds: f64,
}

/// metrics.csv's rows, with the wall-clock column zeroed.
fn rows(run: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    reader.deserialize().map(|r| Row { seconds: 0.0, ..r.unwrap() }).collect()
}

/// One short run shared by the tests (a small model, 400 steps).
fn short_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let results = tmp("results");
        let out = results.join("wavenet-short");
        let o = rnnlab(&[
            "--device",
            "cpu",
            "train",
            "--model",
            "wavenet",
            "--steps",
            "400",
            "--embd",
            "10",
            "--hidden",
            "32",
            "--seed",
            "3",
            "--data-dir",
            &data_dir(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

#[test]
fn short_run_lowers_the_loss_and_writes_its_folder() {
    let run = short_run();
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, ["step", "epoch", "loss", "lr", "valid_loss", "seconds"]);
    let rows = rows(run);
    let losses: Vec<f64> = rows.iter().map(|r| r.loss).collect();
    assert_eq!(losses.len(), 400, "one row per step");
    // the validation loss every twentieth of the run, the last after step 400
    let valid: Vec<u64> = rows.iter().filter(|r| r.valid_loss.is_some()).map(|r| r.step).collect();
    assert_eq!(valid, (1..=20).map(|k| 20 * k).collect::<Vec<u64>>());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..50]), mean(&losses[350..]));
    assert!(first > 2.9, "starts near ln(27) = 3.30: {first}");
    assert!(last < first - 0.3, "loss fell from {first} to {last}");

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"], "wavenet");
    assert_eq!(config["net"]["n_embd"], 10);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for key in ["train_loss", "val_loss", "test_loss", "train_seconds", "seconds_per_step"] {
        assert!(summary[key].as_f64().is_some_and(f64::is_finite), "{key}: {summary}");
    }
    assert_eq!(summary["steps"], 400);
    assert_eq!(summary["model"], "wavenet");
    assert!(summary["val_loss"].as_f64().unwrap() < 2.9, "{summary}");

    let names = tch::Tensor::read_safetensors(run.join("last.safetensors")).unwrap();
    let mut names: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert!(names.contains(&"layers.0.weight".to_owned()), "{names:?}");
    assert!(names.contains(&"layers.3.running_var".to_owned()), "{names:?}");
    assert!(run.join("best.safetensors").is_file());
}

#[test]
fn samples_names_of_the_vocabulary_repeatably() {
    let run = short_run().to_str().unwrap().to_owned();
    let sample = |seed: &str| {
        let o = rnnlab(&["--device", "cpu", "sample", "--run", &run, "-n", "20", "--seed", seed]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let names = sample("1");
    assert_eq!(names.lines().count(), 20);
    for name in names.lines() {
        assert!(name.chars().all(|c| c.is_ascii_lowercase()), "{name:?}");
    }
    assert_eq!(sample("1"), names, "same seed, same names");
    assert_ne!(sample("2"), names);
}

#[test]
fn plots_draw_each_run_and_explain_an_empty_folder() {
    let run = short_run();
    let results = run.parent().unwrap().to_str().unwrap().to_owned();
    let o = rnnlab(&["plots", "--results", &results]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(run.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    let empty = tmp("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = rnnlab(&["plots", "--results", empty.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("no runs"));
    std::fs::remove_dir_all(&empty).unwrap();
}

fn fails_with(args: &[&str], needle: &str) {
    let o = rnnlab(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn bad_options_and_missing_names_file_fail_clearly() {
    let out = tmp("bad");
    let out = out.to_str().unwrap();
    let train = ["--device", "cpu", "train", "--model", "wavenet", "--steps", "5", "--out", out];
    fails_with(&[&train[..], &["--embd", "0"]].concat(), "--embd");
    fails_with(&[&train[..], &["--embd", "-4"]].concat(), "--embd");
    fails_with(&[&train[..], &["--hidden", "0"]].concat(), "--hidden");
    fails_with(&[&train[..], &["--batch-size", "1"]].concat(), "--batch-size");
    fails_with(&[&train[..], &["--epochs", "2"]].concat(), "--epochs does not apply");
    fails_with(&[&train[..], &["--bidir"]].concat(), "--bidir does not apply");
    fails_with(
        &[&train[..], &["--data-dir", "/nonexistent-rnnlab"]].concat(),
        "/nonexistent-rnnlab/names.txt",
    );
    fails_with(&["sample", "--run", "/nonexistent-rnnlab-run"], "not a run folder");
}

/// A wavenet run killed with SIGKILL between two checkpoints and resumed
/// draws the same batches (libtorch's generator is reseeded at every
/// checkpoint) and gives the metrics and summary of the run that never stopped.
#[test]
fn resume_after_kill_9_is_exact() {
    let root = tmp("resume");
    let run = |out: &str, kill: Option<u64>| {
        let out = root.join(out);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rnnlab"));
        cmd.args(["--device", "cpu", "train", "--model", "wavenet", "--steps", "200"])
            .args(["--embd", "6", "--hidden", "16", "--seed", "5", "--recipe", "tuned"])
            .args(["--data-dir", &data_dir(), "--out", out.to_str().unwrap()]);
        if let Some(k) = kill {
            cmd.env("RNNLAB_KILL_AT_STEP", k.to_string());
        }
        cmd.output().unwrap()
    };
    let whole = run("whole", None);
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    // validation and checkpoints every 10 steps: killed 5 steps after one
    assert!(!run("killed", Some(125)).status.success(), "the run was not killed");
    let killed = root.join("killed");
    let o = rnnlab(&[
        "--device",
        "cpu",
        "train",
        "--model",
        "wavenet",
        "--resume",
        killed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rows(&root.join("whole")), rows(&killed));
    let summary = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let (a, b) = (summary(&root.join("whole")), summary(&killed));
    for key in ["train_loss", "val_loss", "test_loss", "best_val_loss", "best_step"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}
