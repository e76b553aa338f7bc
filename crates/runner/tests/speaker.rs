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

/// A scratch folder holding a synthetic corpus of `speakers` speakers, 10
/// utterances each, under `spk/`.
fn corpus(name: &str, speakers: usize) -> PathBuf {
    let dir = scratch(name);
    let n = speakers.to_string();
    let out = rnnlab(
        &dir,
        &["data", "synth-speakers", "--out", "spk", "--speakers", &n, "--utterances", "10"],
    );
    assert!(out.status.success(), "synth-speakers: {}", stderr(&out));
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A row of a speaker run's metrics.csv.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Row {
    step: u64,
    epoch: u64,
    loss: f64,
    lr: f64,
    valid_loss: Option<f64>,
    heldout_accuracy: Option<f64>,
    unseen_purity: Option<f64>,
    seconds: f64,
}

/// metrics.csv's rows, with the wall-clock column zeroed.
fn rows(run: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    reader.deserialize().map(|r| Row { seconds: 0.0, ..r.unwrap() }).collect()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn short_run_lowers_the_loss_and_writes_the_run_folder() {
    let dir = corpus("run", 5);
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
    let summary = summary(&run);
    for key in ["final_loss", "heldout_accuracy", "unseen_purity", "baseline_purity", "it_per_s"] {
        assert!(summary[key].is_number(), "summary.json lacks {key}: {summary}");
    }
    // five speakers, two unseen: too few left for validation speakers
    assert_eq!(
        (summary["val_speakers"].as_u64(), summary["checkpoint"].as_str()),
        (Some(0), Some("last"))
    );
    assert_eq!(summary["train_speakers"], 3);
    // The first epoch's mean loss against the last one (epochs count from 0).
    let rows = rows(&run);
    let mean = |e: u64| {
        let v: Vec<f64> = rows.iter().filter(|r| r.epoch == e).map(|r| r.loss).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(5) < mean(0), "loss {} -> {}", mean(0), mean(5));
    // a held-out (validation) loss after every epoch
    let valid: Vec<&Row> = rows.iter().filter(|r| r.valid_loss.is_some()).collect();
    assert_eq!(valid.len(), 6);
    assert!(valid.iter().all(|r| r.heldout_accuracy.is_some()));
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

/// `--speed-speakers` trains on every training utterance again at each speed,
/// as new speakers after the real ones; nothing else is copied.
#[test]
fn speed_speakers_add_pseudo_speakers_after_the_real_ones() {
    let dir = corpus("speed", 4);
    let train = |extra: &[&str]| {
        let args = ["train", "--model", "speaker", "--data-dir", "spk", "--holdout-speakers", "1"];
        let tiny = ["--hidden", "8", "--batch-size", "8", "--epochs", "1"];
        rnnlab(&dir, &[&args[..], &tiny, extra].concat())
    };
    let out = train(&["--speed-speakers", "0.9,1.1", "--out", "run"]);
    assert!(out.status.success(), "train: {}", stderr(&out));
    let text = std::fs::read_to_string(dir.join("run/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let real: Vec<&str> =
        config["train_speakers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(real.len(), 3);
    let expect: Vec<String> = ["0.9", "1.1"]
        .iter()
        .flat_map(|f| real.iter().map(move |s| format!("{s}@speed{f}")))
        .collect();
    assert_eq!(config["speed_speakers"], serde_json::json!(expect));
    assert_eq!(config["speaker"]["num_speakers"], 9);
    assert_eq!(config["train"]["speed_speakers"], serde_json::json!([0.9, 1.1]));
    // 3 training speakers of 10 utterances, 2 held out each: 24 copied twice
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("48 speed copies as 6 more speakers"), "{log}");
    assert_eq!(summary(&dir.join("run"))["train_speakers"], 3);

    for (flag, message) in [
        ("1", "--speed-speakers: speed 1 is not in [0.5, 2] or is 1"),
        ("0.9,0.9", "--speed-speakers: speed 0.9 is given twice"),
        ("slow", "`slow` is not a number"),
    ] {
        let out = train(&["--speed-speakers", flag, "--out", "bad"]);
        assert!(!out.status.success(), "--speed-speakers {flag} succeeded");
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
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

/// A speaker run killed with SIGKILL in the middle of an epoch and resumed
/// gives the metrics and embeddings of the run that never stopped.
#[test]
fn resume_after_kill_9_mid_epoch_is_exact() {
    let dir = corpus("resume", 4);
    let args = [
        "train",
        "--model",
        "speaker",
        "--data-dir",
        "spk",
        "--holdout-speakers",
        "1",
        "--hidden",
        "8",
        "--batch-size",
        "4",
        "--epochs",
        "3",
        "--valid-every",
        "4",
        "--step-size",
        "1",
    ];
    let out = rnnlab(&dir, &[&args[..], &["--out", "whole"]].concat());
    assert!(out.status.success(), "train: {}", stderr(&out));
    let steps = summary(&dir.join("whole"))["steps"].as_u64().unwrap();
    let per_epoch = steps / 3;
    // 3 training speakers: speaker augmentation triples the 24 training
    // utterances into 18 batches of 4
    assert_eq!(per_epoch, 18, "the checkpoints below assume 18 steps an epoch");
    // killed at step 21, after the validation checkpoint of step 20 (inside
    // epoch 2); the steps after it are done again, speed copies included
    let out = Command::new(RNNLAB)
        .args(["--device", "cpu"])
        .args(args)
        .args(["--out", "killed"])
        .env("RNNLAB_KILL_AT_STEP", (per_epoch + 3).to_string())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the run was not killed");
    let out = rnnlab(&dir, &["train", "--model", "speaker", "--resume", "killed"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert_eq!(rows(&dir.join("whole")), rows(&dir.join("killed")));
    let (a, b) = (summary(&dir.join("whole")), summary(&dir.join("killed")));
    for key in ["final_loss", "heldout_accuracy", "best_step", "final_valid_loss"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let last = format!("embeddings/epoch_{:04}.csv", 3);
    let read = |run: &str| std::fs::read_to_string(dir.join(run).join(&last)).unwrap();
    assert_eq!(read("whole"), read("killed"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default recipe with validation speakers keeps the best checkpoint on
/// them and reports the baseline; `embed` and `cluster` apply the run to a
/// folder of new recordings, and refuse bad flags and files by name.
#[test]
fn validation_speakers_then_embed_and_cluster_new_recordings() {
    let dir = corpus("embed", 6);
    let args = [
        "train",
        "--model",
        "speaker",
        "--data-dir",
        "spk",
        "--holdout-speakers",
        "2",
        "--val-speakers",
        "2",
        "--hidden",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        "4",
        "--lr",
        "0.01",
        "--out",
        "run",
    ];
    let out = rnnlab(&dir, &args);
    assert!(out.status.success(), "train: {}", stderr(&out));
    let run = dir.join("run");
    let s = summary(&run);
    assert_eq!((s["recipe"].as_str(), s["checkpoint"].as_str()), (Some("default"), Some("best")));
    assert_eq!((s["train_speakers"].as_u64(), s["val_speakers"].as_u64()), (Some(2), Some(2)));
    for key in ["baseline_purity", "unseen_purity", "val_auc", "val_purity"] {
        let v = s[key].as_f64().unwrap_or_else(|| panic!("summary.json lacks {key}: {s}"));
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
    // The summary's scores are those of the best validation AUC in metrics.csv.
    let mut r = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let head = r.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let (auc, step) = (col("val_auc"), col("step"));
    let best = r
        .records()
        .map(|r| r.unwrap())
        .filter(|r| !r[auc].is_empty())
        .map(|r| (r[auc].parse::<f64>().unwrap(), r[step].parse::<u64>().unwrap()))
        .fold((f64::MIN, 0), |b, x| if x.0 > b.0 { x } else { b });
    assert_eq!(s["checkpoint_step"].as_u64(), Some(best.1));
    assert!((s["val_auc"].as_f64().unwrap() - best.0).abs() < 1e-12);

    // Two training speakers' recordings, in folders named after them.
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    let new = dir.join("new");
    for name in split["train_speakers"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        std::fs::create_dir_all(new.join(name)).unwrap();
        for e in std::fs::read_dir(dir.join("spk").join(name)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, new.join(name).join(p.file_name().unwrap())).unwrap();
        }
    }
    let out = rnnlab(&dir, &["embed", "--run", "run", "new", "--out", "emb.csv"]);
    assert!(out.status.success(), "embed: {}", stderr(&out));
    let mut r = csv::Reader::from_path(dir.join("emb.csv")).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(head.len(), 1 + 128, "file and 128 dimensions");
    assert_eq!((head[0].as_str(), head[1].as_str(), head[128].as_str()), ("file", "e0", "e127"));
    let rows: Vec<(String, Vec<f64>)> = r.deserialize().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 20);
    for (file, e) in &rows {
        assert!(file.ends_with(".wav") && file.contains('/'), "{file}");
        let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{file}: norm {norm}");
    }

    let out = rnnlab(&dir, &["cluster", "--run", "run", "new", "-k", "2", "--out", "groups.csv"]);
    assert!(out.status.success(), "cluster: {}", stderr(&out));
    #[derive(serde::Deserialize)]
    struct Group {
        file: String,
        cluster: usize,
    }
    let groups: Vec<Group> = csv::Reader::from_path(dir.join("groups.csv"))
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(groups.len(), 20);
    // every speaker's files in one cluster, the two speakers in different ones
    let mut of_speaker = std::collections::BTreeMap::new();
    for g in &groups {
        let speaker = g.file.split('/').next().unwrap().to_owned();
        of_speaker.entry(speaker).or_insert_with(std::collections::BTreeSet::new).insert(g.cluster);
    }
    let sets: Vec<_> = of_speaker.values().collect();
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().all(|s| s.len() == 1), "a speaker split across clusters: {sets:?}");
    assert_ne!(sets[0], sets[1], "both speakers in one cluster");
    assert!(std::fs::metadata(dir.join("groups.png")).unwrap().len() > 1000);

    // With the folders as speakers, `cluster` also prints the purity of its
    // clusters against them, as the CSV gives it, and the baseline's.
    let args = ["cluster", "--run", "run", "new", "-k", "2", "--out", "known.csv"];
    let out = rnnlab(&dir, &[&args[..], &["--speaker-folders"]].concat());
    assert!(out.status.success(), "cluster --speaker-folders: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line =
        text.lines().find(|l| l.starts_with("2 speakers (")).unwrap_or_else(|| panic!("{text}"));
    let pct = |key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{line}")) + key.len()..];
        rest[..rest.find('%').unwrap()].parse().unwrap()
    };
    let groups: Vec<Group> = csv::Reader::from_path(dir.join("known.csv"))
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    let mut counts = std::collections::BTreeMap::<(usize, String), usize>::new();
    for g in &groups {
        *counts.entry((g.cluster, g.file.split('/').next().unwrap().to_owned())).or_default() += 1;
    }
    let majority: usize = (0..2)
        .map(|c| counts.iter().filter(|((k, _), _)| *k == c).map(|(_, &n)| n).max().unwrap_or(0))
        .sum();
    let want = 100.0 * majority as f64 / groups.len() as f64;
    assert!((pct("purity ") - want).abs() < 0.051, "{line}: the CSV gives {want:.1}%");
    assert!((0.0..=100.0).contains(&pct("baseline ")), "{line}");

    // Errors name the flag, folder or file.
    let fail = |args: &[&str], want: &str| {
        let out = rnnlab(&dir, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    };
    fail(&["cluster", "--run", "run", "new", "-k", "0"], "-k 0");
    fail(&["cluster", "--run", "run", "new", "-k", "21"], "-k 21");
    fail(&["embed", "--run", "run", "missing"], "missing");
    fail(&["embed", "--run", "new", "new"], "--run new");
    fail(&["embed", "--run", "run", "new", "--checkpoint", "first"], "--checkpoint first");
    let one = dir.join("one-speaker");
    let speaker = split["train_speakers"][0].as_str().unwrap();
    std::fs::create_dir_all(one.join(speaker)).unwrap();
    for e in std::fs::read_dir(new.join(speaker)).unwrap().take(3) {
        let p = e.unwrap().path();
        std::fs::copy(&p, one.join(speaker).join(p.file_name().unwrap())).unwrap();
    }
    let known = ["cluster", "--run", "run", "one-speaker", "-k", "2", "--speaker-folders"];
    fail(&known, "one speaker's folder");
    std::fs::copy(
        new.join(speaker).read_dir().unwrap().next().unwrap().unwrap().path(),
        one.join("loose.wav"),
    )
    .unwrap();
    fail(&known, "loose.wav lies directly in");
    std::fs::write(new.join("broken.wav"), b"RIFF not really").unwrap();
    fail(&["embed", "--run", "run", "new"], "broken.wav");
    std::fs::remove_dir_all(&dir).unwrap();
}
