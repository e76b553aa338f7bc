//! `rnnlab train` for the recurrent classifiers, end to end on a tiny
//! synthetic Speech Commands set: files written, determinism, exact resume,
//! checkpoints that `eval` re-scores, and clear errors for bad arguments.
//! Needs espeak-ng (`make setup` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const RNNLAB: &str = env!("CARGO_BIN_EXE_rnnlab");

/// A scratch folder holding a tiny data set, made once for every test here.
fn workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rnnlab-train-rnn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out =
            rnnlab(&dir, &["data", "synth", "--out", "speech", "--per-class", "30", "--seed", "1"]);
        assert!(out.status.success(), "synth: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// Runs rnnlab in `dir` (so the feature cache stays in the scratch folder).
fn rnnlab(dir: &Path, args: &[&str]) -> Output {
    Command::new(RNNLAB)
        .args(["--device", "cpu"])
        .args(args)
        .current_dir(dir)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("running rnnlab")
}

fn train(dir: &Path, extra: &[&str]) -> Output {
    train_model(dir, "gru", extra)
}

fn train_model(dir: &Path, model: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--model",
        model,
        "--data-dir",
        "speech",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--seed",
        "7",
    ];
    if !extra.contains(&"--valid-every") {
        args.extend_from_slice(&["--valid-every", "2"]);
    }
    // from scratch, unless the test is about the run's starting weights
    if !extra.iter().any(|a| ["--init-from", "--pretrain"].contains(a)) {
        args.extend_from_slice(&["--pretrain", "none"]);
    }
    args.extend_from_slice(extra);
    rnnlab(dir, &args)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "rnnlab failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// metrics.csv, header first, each row without its wall-clock column.
fn metrics(run: &Path) -> Vec<String> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).from_path(run.join("metrics.csv")).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            r.iter().take(r.len() - 1).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// One column of metrics.csv (empty cells as `None`).
fn column(run: &Path, name: &str) -> Vec<Option<f64>> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let i = reader.headers().unwrap().iter().position(|h| h == name).expect(name);
    reader.records().map(|r| r.unwrap()[i].parse().ok()).collect()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn writes_run_files_and_is_deterministic_on_cpu() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "2", "--out", "a"]));
    ok(&train(dir, &["--epochs", "2", "--out", "b"]));
    let (a, b) = (dir.join("a"), dir.join("b"));
    for f in ["metrics.csv", "config.json", "summary.json", "best.safetensors", "last.safetensors"]
    {
        assert!(a.join(f).is_file(), "missing {f}");
    }
    let m = metrics(&a);
    assert_eq!(m[0], "step,epoch,loss,lr,valid_loss,valid_acc,test_acc");
    let s = summary(&a);
    assert_eq!(m.len() - 1, s["steps"].as_u64().unwrap() as usize);
    for key in [
        "best_valid_accuracy",
        "test_accuracy",
        "epochs",
        "steps",
        "train_seconds",
        "device",
        "model",
    ] {
        assert!(!s[key].is_null(), "summary lacks {key}: {s}");
    }
    assert_eq!(m, metrics(&b), "same seed, different metrics");
}

#[test]
fn default_recipe_masks_gated_cells_and_no_augment_turns_it_off() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "1", "--out", "aug"]));
    ok(&train(dir, &["--epochs", "1", "--no-augment", "--out", "plain"]));
    let config = |run: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(run).join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    // a band of up to a fifth of the default recipe's 10 coefficients
    assert_eq!(config("aug")["augment"], serde_json::json!({"freq_mask": 2, "time_mask": 6}));
    assert!(config("plain")["augment"].is_null());
    // the Elman RNNs train unmasked by default
    ok(&train_model(dir, "rnn_tanh", &["--epochs", "1", "--out", "elman"]));
    assert!(config("elman")["augment"].is_null());
    // the first step sees the same weights and batch, masked or not
    let (aug, plain) = (metrics(&dir.join("aug")), metrics(&dir.join("plain")));
    assert_ne!(aug[1], plain[1], "masking did not change the first loss");
}

/// `--speed-perturb` adds every training clip again at each speed, with its
/// label; the validation and test splits stay as they are. Without the flag
/// the default recipe does it on a corpus as small as this one.
#[test]
fn speed_perturb_adds_copies_of_the_training_clips() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "1", "--speed-perturb", "none", "--out", "speed-none"]));
    ok(&train(dir, &["--epochs", "1", "--speed-perturb", "0.9,1.1", "--out", "speed"]));
    ok(&train(dir, &["--epochs", "1", "--out", "speed-auto"]));
    let (a, b) = (summary(&dir.join("speed-none")), summary(&dir.join("speed")));
    let clips = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap();
    assert_eq!(clips(&b, "train_clips"), 3 * clips(&a, "train_clips"));
    assert_eq!(clips(&b, "valid_clips"), clips(&a, "valid_clips"));
    assert_eq!(clips(&b, "test_clips"), clips(&a, "test_clips"));
    let config = |run: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(run).join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(config("speed")["speed_perturb"], serde_json::json!([0.9, 1.1]));
    assert_eq!(config("speed-none")["speed_perturb"], serde_json::json!([]));
    assert_eq!(config("speed-auto")["speed_perturb"], serde_json::json!([0.9, 1.1]));
    assert_eq!(summary(&dir.join("speed-auto"))["train_clips"], b["train_clips"]);
    // the notebook's recipe never adds copies
    ok(&train(dir, &["--epochs", "1", "--coursework", "--out", "speed-coursework"]));
    assert_eq!(config("speed-coursework")["speed_perturb"], serde_json::json!([]));
}

/// `--weight-decay` trains with AdamW: the first loss (before any step) is
/// the plain run's, the next ones are not.
#[test]
fn weight_decay_switches_to_adamw() {
    let dir = workspace();
    let args = ["--epochs", "1", "--speed-perturb", "none"];
    ok(&train(dir, &[&args[..], &["--out", "wd-none"]].concat()));
    ok(&train(dir, &[&args[..], &["--weight-decay", "0.5", "--out", "wd"]].concat()));
    let (plain, decayed) = (metrics(&dir.join("wd-none")), metrics(&dir.join("wd")));
    assert_eq!(plain[1], decayed[1]);
    assert_ne!(plain[2], decayed[2], "weight decay did not change the second step");
    let text = std::fs::read_to_string(dir.join("wd/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["weight_decay"], 0.5);
}

/// The default recipe clips the gradient norm to 1 and starts an LSTM's
/// forget gates at 1; the flags turn each off, and the notebook's recipe has
/// neither. Each changes the run it is turned off in.
#[test]
fn default_recipe_clips_and_sets_the_lstm_forget_bias() {
    let dir = workspace();
    let config = |run: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(run).join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let lstm = |out: &str, extra: &[&str]| {
        let mut args = vec!["--epochs", "1", "--lr", "0.05", "--out", out];
        args.extend_from_slice(extra);
        ok(&train_model(dir, "lstm", &args));
    };
    lstm("lstm-default", &[]);
    lstm("lstm-unclipped", &["--clip-grad-norm", "inf"]);
    lstm("lstm-torch-init", &["--no-forget-bias"]);
    lstm("lstm-tight", &["--clip-grad-norm", "0.01"]);
    lstm("lstm-coursework", &["--coursework"]);
    ok(&train(dir, &["--epochs", "1", "--out", "gru-default"]));
    let (default, unclipped, torch_init) =
        (config("lstm-default"), config("lstm-unclipped"), config("lstm-torch-init"));
    assert_eq!(default["clip_grad_norm"], 1.0);
    assert_eq!(default["forget_bias"], 1.0);
    assert!(unclipped["clip_grad_norm"].is_null() && unclipped["forget_bias"] == 1.0);
    assert!(torch_init["forget_bias"].is_null() && torch_init["clip_grad_norm"] == 1.0);
    let coursework = config("lstm-coursework");
    assert!(coursework["clip_grad_norm"].is_null() && coursework["forget_bias"].is_null());
    let gru = config("gru-default");
    assert!(gru["forget_bias"].is_null() && gru["clip_grad_norm"] == 1.0);
    // The initial bias changes the first loss. A norm of 0.01 clips every
    // step, each by its own factor, which changes Adam's later updates (the
    // first one is the same at any gradient scale).
    let m = |run: &str| metrics(&dir.join(run));
    assert_ne!(m("lstm-default")[1], m("lstm-torch-init")[1], "the forget bias changed nothing");
    let (tight, unclipped) = (m("lstm-tight"), m("lstm-unclipped"));
    assert_eq!(tight[1], unclipped[1]);
    assert!(tight[3..] != unclipped[3..], "clipping changed nothing");
}

#[test]
fn resume_continues_exactly() {
    let dir = workspace();
    // The notebook's constant learning rate: the default recipe's cosine
    // schedule spans the planned epochs, so a run extended from 1 to 3 epochs
    // is re-planned and differs from one planned for 3 from the start.
    ok(&train(dir, &["--coursework", "--epochs", "3", "--out", "full"]));
    ok(&train(dir, &["--coursework", "--epochs", "1", "--out", "part"]));
    let out = rnnlab(dir, &["train", "--model", "gru", "--resume", "part", "--epochs", "3"]);
    ok(&out);
    // Equal, except that the 1-epoch run also validated after its last step.
    let (full, part) = (metrics(&dir.join("full")), metrics(&dir.join("part")));
    assert_eq!(full.len(), part.len());
    let end_of_part = (full.len() - 1) / 3; // the step, and its row after the header
    for (i, (f, p)) in full.iter().zip(&part).enumerate() {
        if i != end_of_part {
            assert_eq!(f, p);
        }
    }
    for c in ["step", "epoch", "loss", "lr"] {
        assert_eq!(column(&dir.join("full"), c), column(&dir.join("part"), c), "{c}");
    }
    let valid = column(&dir.join("part"), "valid_loss");
    assert!(valid[end_of_part - 1].is_some(), "the 1-epoch run did not validate at its end");
    assert_eq!(
        summary(&dir.join("full"))["test_accuracy"],
        summary(&dir.join("part"))["test_accuracy"]
    );
    // A finished run has nothing to resume.
    let out = rnnlab(dir, &["train", "--model", "gru", "--resume", "part"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resume"));
}

/// `rnnlab eval --run RUN --split test` gives the test accuracy the run's
/// `summary.json` reports.
fn eval_matches_training(dir: &Path, run: &str) {
    let out = rnnlab(dir, &["eval", "--run", run, "--split", "test"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let acc: f64 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let expected = summary(&dir.join(run))["test_accuracy"].as_f64().unwrap();
    assert!((acc - expected).abs() < 1e-6, "eval says {acc}, training said {expected}");
}

#[test]
fn checkpoints_have_pytorch_names_and_eval_rescores_them() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "2", "--bidir", "--layers", "2", "--out", "bi"]));
    let run = dir.join("bi");
    let mut names: Vec<String> = tch::Tensor::read_safetensors(run.join("best.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    assert_eq!(names.len(), 2 * 2 * 4 + 2);
    assert!(names.contains(&"rnn_cell_list_rev.1.weight_hh".to_owned()), "{names:?}");
    assert!(names.contains(&"fc.weight".to_owned()));
    eval_matches_training(dir, "bi");
}

/// `--n-mfcc K` feeds the model the first K coefficients: the run records
/// it, the input weights have K columns, the masks scale with it, and `eval`
/// rescores the run with the same features. Without the flag the default
/// recipe reads 10 and the coursework 20.
#[test]
fn n_mfcc_sets_the_features_the_model_reads() {
    let dir = workspace();
    let config_of = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(name).join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    ok(&train(dir, &["--epochs", "2", "--n-mfcc", "13", "--out", "nm"]));
    let config = config_of("nm");
    assert_eq!(config["mfcc"]["n_mfcc"], 13);
    assert_eq!(config["rnn"]["input_size"], 13);
    assert_eq!(config["augment"]["freq_mask"], 2);
    let weights = tch::Tensor::read_safetensors(dir.join("nm").join("best.safetensors")).unwrap();
    let (_, w_ih) = weights.iter().find(|(n, _)| n == "rnn_cell_list.0.weight_ih").unwrap();
    assert_eq!(w_ih.size(), [24, 13]);
    eval_matches_training(dir, "nm");

    ok(&train(dir, &["--epochs", "1", "--out", "nm-default"]));
    let config = config_of("nm-default");
    assert_eq!(config["mfcc"]["n_mfcc"], 10);
    assert_eq!(config["rnn"]["input_size"], 10);
    ok(&train(dir, &["--epochs", "1", "--coursework", "--out", "nm-coursework"]));
    assert_eq!(config_of("nm-coursework")["mfcc"]["n_mfcc"], 20);
}

#[test]
fn engines_train_identically() {
    let dir = workspace();
    ok(&train_model(dir, "lstm", &["--epochs", "1", "--engine", "custom", "--out", "ec"]));
    ok(&train_model(dir, "lstm", &["--epochs", "1", "--engine", "fused", "--out", "ef"]));
    // Losses agree to the printed precision for the first steps (f32 rounding
    // may differ in the last digit later on).
    let (c, f) = (column(&dir.join("ec"), "loss"), column(&dir.join("ef"), "loss"));
    for i in 0..c.len().min(3) {
        let (c, f) = (c[i].unwrap(), f[i].unwrap());
        assert!((c - f).abs() < 1e-4, "step {}: {c} vs {f}", i + 1);
    }
}

fn config(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

/// The default recipe's learning rate: 0.004, but 0.002 for the tanh RNN;
/// `--lr` overrides either. The rate the run trained at is the first step's
/// `lr` in metrics.csv (the cosine starts at it).
#[test]
fn elman_models_train_under_the_coursework_names() {
    let dir = workspace();
    ok(&train_model(dir, "rnn_tanh", &["--epochs", "1", "--out", "elman-tanh"]));
    assert_eq!(summary(&dir.join("elman-tanh"))["model"], "rnn_tanh");
    assert_eq!(config(&dir.join("elman-tanh"))["lr"], 0.002);
    assert_eq!(column(&dir.join("elman-tanh"), "lr")[0], Some(0.002));
    ok(&train_model(dir, "rnn_tanh", &["--epochs", "1", "--lr", "0.03", "--out", "elman-tanh-lr"]));
    assert_eq!(column(&dir.join("elman-tanh-lr"), "lr")[0], Some(0.03));
    ok(&train_model(dir, "rnn_relu", &["--epochs", "1", "--out", "elman-relu"]));
    assert_eq!(column(&dir.join("elman-relu"), "lr")[0], Some(0.004));
    // Without --out: results/<model>-<timestamp>, the model named as on the command line.
    ok(&train_model(dir, "rnn_relu", &["--epochs", "1", "--bidir"]));
    let runs: Vec<String> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let run = runs.iter().find(|n| n.starts_with("birnn_relu-")).expect("results/birnn_relu-*");
    assert_eq!(summary(&dir.join("results").join(run))["model"], "rnn_relu");
}

/// rnnlab with `args` fails, without a panic, and says `message`.
fn fails_with(dir: &Path, args: &[&str], message: &str) {
    let out = rnnlab(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(message), "{args:?}: expected {message:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
}

#[test]
fn bad_arguments_give_clear_errors() {
    let dir = workspace();
    let cases: [(&[&str], &str); 17] = [
        (&["--recipe", "tuned"], "--recipe does not apply to --model gru"),
        (&["--steps", "10"], "--steps does not apply to --model gru"),
        (&["--holdout-speakers", "2"], "--holdout-speakers does not apply"),
        (&["--patience", "0"], "--patience must be at least 1"),
        (&["--hidden", "0"], "--hidden must be positive"),
        (&["--lr=-1"], "--lr must be a positive number"),
        (&["--data-dir", "no/such/folder"], "no/such/folder"),
        (&["--resume", "speech"], "no config.json"),
        (&["--epochs", "0"], "--epochs must be positive"),
        (&["--clip-grad-norm", "0"], "--clip-grad-norm must be positive"),
        (&["--clip-grad-norm", "NaN"], "--clip-grad-norm must be positive"),
        (&["--speed-perturb", "1"], "--speed-perturb: speed 1 is not in [0.5, 2] or is 1"),
        (&["--speed-perturb", "0.9,fast"], "`fast` is not a number"),
        (&["--coursework", "--speed-perturb", "0.9"], "does not combine with --coursework"),
        (&["--weight-decay=-1"], "--weight-decay must be 0 or positive"),
        (&["--n-mfcc", "0"], "--n-mfcc must be between 1 and 128 (the mel bands), got 0"),
        (&["--n-mfcc", "129"], "--n-mfcc must be between 1 and 128"),
    ];
    for (extra, message) in cases {
        fails_with(dir, &[&["train", "--model", "gru"], extra].concat(), message);
    }
    // a resumed run keeps its config: flags that would change it are refused
    ok(&train(dir, &["--epochs", "1", "--out", "to-extend"]));
    let out = rnnlab(dir, &["train", "--model", "gru", "--resume", "to-extend", "--lr", "0.1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--lr cannot change a resumed run"), "{stderr}");
    let out = train_model(dir, "tpu", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));
}

/// Losses are read in blocks (at validation steps and epoch ends), yet a
/// diverging run still stops with the first step whose loss is not finite,
/// before scoring or saving the diverged model.
#[test]
fn a_diverging_run_names_the_step() {
    let dir = workspace();
    let out = train(dir, &["--lr", "1e38", "--epochs", "1", "--out", "diverged"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a run at lr 1e38 finished: {stderr}");
    assert!(stderr.contains("loss became") && stderr.contains("lower --lr"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dir.join("diverged/best.safetensors").exists(), "a diverged model was saved");
}

/// A run killed with SIGKILL in the middle of an epoch (between two
/// checkpoints) and resumed gives the metrics of the run that never stopped,
/// with the default recipe (cosine schedule, SpecAugment, clipping).
#[test]
fn resume_after_kill_9_mid_epoch_is_exact() {
    let dir = workspace();
    let args = ["--epochs", "3", "--valid-every", "3"];
    ok(&train(dir, &[&args[..], &["--out", "whole"]].concat()));
    let steps = summary(&dir.join("whole"))["steps"].as_u64().unwrap();
    let per_epoch = steps / 3;
    // Checkpoints follow validations (every 3 steps) and epoch ends: killed
    // at step per_epoch + 3, the run resumes from a checkpoint inside epoch 2
    // (step 6 of 5-step epochs) and recomputes the steps after it.
    assert!(per_epoch > 3 && !per_epoch.is_multiple_of(3), "{per_epoch} steps per epoch");
    let kill = per_epoch + 3;
    let out = Command::new(RNNLAB)
        .args(["--device", "cpu", "train", "--model", "gru", "--data-dir", "speech"])
        .args(["--hidden", "8", "--batch-size", "16", "--seed", "7", "--pretrain", "none"])
        .args(args)
        .args(["--out", "killed"])
        .env("RNNLAB_KILL_AT_STEP", kill.to_string())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the run was not killed");
    assert!(!dir.join("killed/summary.json").exists());
    let partial = metrics(&dir.join("killed"));
    assert!(partial.len() < steps as usize + 1, "every row was written before the kill");
    ok(&rnnlab(dir, &["train", "--model", "gru", "--resume", "killed"]));
    assert_eq!(metrics(&dir.join("whole")), metrics(&dir.join("killed")));
    let (a, b) = (summary(&dir.join("whole")), summary(&dir.join("killed")));
    for key in ["best_valid_accuracy", "test_accuracy", "best_step", "final_valid_loss"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// A run shorter than one validation interval still validates after its last
/// step: real scores, a best checkpoint, and the validation loss in metrics.csv.
#[test]
fn a_run_shorter_than_the_validation_interval_reports_real_scores() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "1", "--valid-every", "100000", "--out", "short"]));
    let run = dir.join("short");
    let s = summary(&run);
    let steps = s["steps"].as_u64().unwrap();
    assert_eq!(s["best_step"].as_u64(), Some(steps), "{s}");
    for key in ["best_valid_accuracy", "test_accuracy"] {
        assert!(s[key].as_f64().unwrap() > 0.0, "{key}: {s}");
    }
    assert!(run.join("best.safetensors").is_file());
    let valid = column(&run, "valid_loss");
    assert_eq!(valid.len() as u64, steps);
    assert!(valid.last().unwrap().is_some_and(f64::is_finite));
    assert!(valid[..valid.len() - 1].iter().all(Option::is_none));
}

/// Every validation writes the validation loss beside the training loss.
#[test]
fn metrics_carry_the_validation_loss() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "1", "--out", "valid-loss"]));
    let run = dir.join("valid-loss");
    let (valid, acc) = (column(&run, "valid_loss"), column(&run, "valid_acc"));
    assert!(valid.iter().flatten().count() >= 2);
    for (v, a) in valid.iter().zip(&acc) {
        assert_eq!(v.is_some(), a.is_some(), "a validation row without its loss");
        assert!(v.is_none_or(|v| v.is_finite() && v > 0.0));
    }
}

/// `--patience 1` stops at the first validation that does not beat the best
/// accuracy, keeps the best weights (eval of the final model agrees with the
/// best test accuracy) and says so in summary.json.
#[test]
fn early_stopping_ends_the_run_and_keeps_the_best_weights() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "6", "--patience", "1", "--lr", "0.05", "--out", "patient"]));
    let run = dir.join("patient");
    let s = summary(&run);
    assert_eq!(s["stopped_early"], true, "{s}");
    let steps = s["steps"].as_u64().unwrap();
    let best = s["best_step"].as_u64().unwrap();
    assert_eq!(steps, best + 2, "stopped at the first validation after the best: {s}");
    let out = rnnlab(dir, &["eval", "--run", "patient", "--split", "test", "--checkpoint", "best"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let acc: f64 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!((acc - s["test_accuracy"].as_f64().unwrap()).abs() < 1e-6, "{text} vs {s}");
    // a run that stopped early has nothing to resume
    let out = rnnlab(dir, &["train", "--model", "gru", "--resume", "patient"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped early"));
}

/// A run folder of an older rnnlab: a config.json without the fields added
/// since (here `patience`) still loads; one that does not match the format
/// is refused with an error saying what to do, by `eval` and `plots`.
#[test]
fn older_run_folders_load_or_say_what_to_do() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "1", "--out", "older"]));
    let path = dir.join("older/config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("patience");
    std::fs::write(&path, config.to_string()).unwrap();
    ok(&rnnlab(dir, &["eval", "--run", "older", "--split", "validation"]));

    config.as_object_mut().unwrap().remove("rnn");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = rnnlab(dir, &["eval", "--run", "older"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("train the run again"), "{stderr}");
    let results = dir.join("older-results");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::rename(dir.join("older"), results.join("older")).unwrap();
    let out = rnnlab(dir, &["plots", "--results", "older-results"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped") && stderr.contains("train the run again"), "{stderr}");
}

/// Without `--epochs` the default recipe's budget has a floor in steps, 450
/// for each version of the training split: the tiny corpus, a few batches an
/// epoch, trains as many epochs as reach 1,350 steps with its two speed
/// copies, or 450 without them; `--coursework` keeps the notebook's 5 epochs
/// and an explicit `--epochs` is obeyed.
#[test]
fn a_small_corpus_trains_at_least_the_recipes_floor_of_steps() {
    let dir = workspace();
    let steps = |run: &str| summary(&dir.join(run))["steps"].as_u64().unwrap();
    let one = ["--epochs", "1", "--valid-every", "100"];
    ok(&train(dir, &[&one[..], &["--speed-perturb", "none", "--out", "floor-one"]].concat()));
    let per_epoch = steps("floor-one");
    ok(&train(dir, &[&one[..], &["--out", "floor-one-copies"]].concat()));
    let with_copies = steps("floor-one-copies");
    assert!(with_copies > 2 * per_epoch, "{with_copies} batches with copies, {per_epoch} without");
    ok(&train(dir, &["--valid-every", "500", "--out", "floor"]));
    assert_eq!(steps("floor"), 1350u64.div_ceil(with_copies) * with_copies);
    ok(&train(dir, &["--valid-every", "500", "--speed-perturb", "none", "--out", "floor-plain"]));
    assert_eq!(steps("floor-plain"), 450u64.div_ceil(per_epoch) * per_epoch);
    ok(&train(dir, &["--coursework", "--valid-every", "500", "--out", "floor-cw"]));
    assert_eq!(steps("floor-cw"), 5 * per_epoch);
}

/// The default recipe reads each clip up to its own last frame; the
/// notebook's recipe keeps its fixed one-second padding and reads the last
/// padded step, and refuses silence trimming. `--trim-silence` keeps
/// librosa's rule in config.json (60 dB unless given), and at 30 dB changes
/// the features the model sees (the synthetic clips' noise floor lies within
/// 60 dB of their loudest frame, so the default trims none of them).
#[test]
fn lengths_and_trimming_follow_the_recipe() {
    let dir = workspace();
    let config = |run: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(run).join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    ok(&train(dir, &["--epochs", "1", "--out", "len-default"]));
    ok(&train(dir, &["--epochs", "1", "--out", "len-trim", "--trim-silence", "30"]));
    ok(&train(dir, &["--epochs", "1", "--out", "len-trim60", "--trim-silence"]));
    ok(&train(dir, &["--epochs", "1", "--out", "len-coursework", "--coursework"]));
    let (default, trim, coursework) =
        (config("len-default"), config("len-trim"), config("len-coursework"));
    assert_eq!(default["lengths"], true);
    assert!(default["trim_silence"].is_null());
    assert_eq!(trim["trim_silence"]["top_db"], 30.0);
    assert_eq!(config("len-trim60")["trim_silence"]["top_db"], 60.0);
    assert_eq!(trim["trim_silence"]["frame_length"], 2048);
    assert_eq!(trim["trim_silence"]["hop_length"], 512);
    assert_eq!(coursework["lengths"], false);
    assert!(coursework["trim_silence"].is_null());
    let m = |run: &str| metrics(&dir.join(run));
    assert_ne!(m("len-default")[1], m("len-trim")[1], "trimming changed nothing");
    let out = train(dir, &["--epochs", "1", "--coursework", "--trim-silence"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--trim-silence") && err.contains("--coursework"), "{err}");
    let out = train(dir, &["--epochs", "1", "--trim-silence", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--trim-silence"), "{err}");
    // eval re-scores the trimmed run through its own feature settings.
    let out = rnnlab(dir, &["eval", "--run", "len-trim", "--split", "test"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let acc: f64 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let expected = summary(&dir.join("len-trim"))["test_accuracy"].as_f64().unwrap();
    assert!((acc - expected).abs() < 1e-6, "eval says {acc}, training said {expected}");
}

/// `bench rnn` times the engines it is given and only those, one JSON row
/// per engine and size, each timing the one step `--steps 1` allows.
#[test]
fn bench_rnn_times_the_engines_given() {
    let dir = std::env::temp_dir().join(format!("rnnlab-bench-rnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let args = ["bench", "rnn", "--steps", "1", "--warmup", "0", "--max-seconds", "0"];
    let sizes = ["--batch-size", "2", "--hidden", "4,8", "--modes", "GRU", "--layers", "1"];
    let rows = |engines: &str| -> Vec<serde_json::Value> {
        let out = rnnlab(&dir, &[&args[..], &sizes[..], &["--engines", engines]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        line["results"].as_array().unwrap().clone()
    };
    let fused = rows("fused");
    assert_eq!(fused.len(), 2);
    assert!(fused.iter().all(|r| r["engine"] == "fused" && r["steps"] == 1), "{fused:?}");
    let both = rows("custom,fused");
    let engines: Vec<_> = both.iter().map(|r| r["engine"].as_str().unwrap()).collect();
    assert_eq!(engines, ["custom", "fused", "custom", "fused"]);
    let out = rnnlab(&dir, &[&args[..], &["--engines", "cudnn"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--engines"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The largest absolute difference between the tensors of checkpoint
/// `a_name` of run `a` (`best`: the weights; `last`: the weights and Adam's
/// moments, the loop's own state left out) and the same tensors of `b`'s
/// checkpoint `b_name`.
fn weight_change(a: &Path, a_name: &str, b: &Path, b_name: &str) -> f64 {
    let read = |p: &Path, name: &str| -> std::collections::HashMap<String, tch::Tensor> {
        let file = p.join(format!("{name}.safetensors"));
        tch::Tensor::read_safetensors(file).unwrap().into_iter().collect()
    };
    let (a, b) = (read(a, a_name), read(b, b_name));
    a.iter()
        .filter(|(n, _)| !n.starts_with("engine/"))
        .map(|(n, t)| {
            let other = b.get(n).unwrap_or_else(|| panic!("{b_name} has no {n}"));
            (t.to_kind(tch::Kind::Double) - other.to_kind(tch::Kind::Double)).abs().max()
        })
        .map(|d| d.double_value(&[]))
        .fold(0.0, f64::max)
}

/// [`weight_change`] between the same checkpoint of two runs.
fn max_weight_change(a: &Path, b: &Path, name: &str) -> f64 {
    weight_change(a, name, b, name)
}

/// `--init-from RUN` starts from RUN's best weights (fine-tuning): at a
/// vanishing rate (Adam moves each weight by about the rate per step) the
/// new run's weights stay RUN's, while the same run without the flag ends
/// far from them. The new run takes RUN's shape, features and
/// standardisation, records where it started, and `eval` rescores it.
#[test]
fn init_from_starts_at_the_earlier_runs_best_weights() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "2", "--n-mfcc", "13", "--out", "ft-src"]));
    let fine_tune = |out: &str, extra: &[&str]| {
        let mut args = vec!["train", "--model", "gru", "--data-dir", "speech", "--epochs", "1"];
        args.extend_from_slice(&["--lr", "1e-9", "--seed", "3", "--out", out]);
        args.extend_from_slice(extra);
        rnnlab(dir, &args)
    };
    ok(&fine_tune("ft", &["--init-from", "ft-src"]));
    ok(&fine_tune("ft-scratch", &["--n-mfcc", "13", "--hidden", "8", "--pretrain", "none"]));
    let src = dir.join("ft-src");
    let moved = weight_change(&src, "best", &dir.join("ft"), "last");
    assert!(moved < 1e-6, "fine-tuning at lr 1e-9 moved a weight by {moved}");
    // The start is validated (step 0, no training loss) and, as no later
    // validation beats it here, is the best checkpoint: the source's weights.
    let (steps, losses) = (column(&dir.join("ft"), "step"), column(&dir.join("ft"), "loss"));
    assert_eq!((steps[0], losses[0]), (Some(0.0), None));
    assert!(column(&dir.join("ft"), "valid_acc")[0].is_some());
    assert_eq!(summary(&dir.join("ft"))["best_step"], 0);
    assert_eq!(max_weight_change(&src, &dir.join("ft"), "best"), 0.0);
    let apart = max_weight_change(&src, &dir.join("ft-scratch"), "best");
    assert!(apart > 1e-2, "a run from scratch ends {apart} from the source's weights");
    assert_eq!(
        column(&dir.join("ft-scratch"), "step")[0],
        Some(1.0),
        "only a fine-tuned run validates its start"
    );

    let (c, s) = (config(&dir.join("ft")), config(&src));
    assert_eq!(c["init_from"]["run"], "ft-src");
    assert_eq!(c["init_from"]["checkpoint"], "best");
    assert_eq!(c["rnn"], s["rnn"]);
    assert_eq!(c["mfcc"], s["mfcc"]);
    assert_eq!(c["standardizer"], s["standardizer"], "the source's standardisation is kept");
    assert_eq!(c["seed"], 3);
    assert!(config(&dir.join("ft-scratch"))["init_from"].is_null());
    eval_matches_training(dir, "ft");

    // without --lr, the default recipe fine-tunes at its lower rate, with the
    // speed copies of a new run on a small corpus
    let args = ["--data-dir", "speech", "--init-from", "ft-src", "--epochs", "1"];
    ok(&rnnlab(dir, &[&["train", "--model", "gru"], &args[..], &["--out", "ft-rate"]].concat()));
    let run = dir.join("ft-rate");
    assert_eq!(column(&run, "lr")[1], Some(0.001), "row 0 validates the start");
    assert_eq!(config(&run)["speed_perturb"], serde_json::json!([0.9, 1.1]));
}

/// A resumed fine-tuned run continues from its own last checkpoint, exactly
/// as a run planned that long from the start (the notebook's constant rate,
/// so the plan does not change with the length).
#[test]
fn a_fine_tuned_run_resumes_exactly() {
    let dir = workspace();
    ok(&train(dir, &["--coursework", "--epochs", "1", "--out", "ftr-src"]));
    let from = ["--coursework", "--init-from", "ftr-src", "--seed", "5"];
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "--model", "gru", "--data-dir", "speech"];
        args.extend_from_slice(&from);
        args.extend_from_slice(extra);
        rnnlab(dir, &args)
    };
    ok(&run(&["--epochs", "2", "--valid-every", "100", "--out", "ftr-full"]));
    ok(&run(&["--epochs", "1", "--valid-every", "100", "--out", "ftr-part"]));
    ok(&rnnlab(dir, &["train", "--model", "gru", "--resume", "ftr-part", "--epochs", "2"]));
    for c in ["step", "loss"] {
        assert_eq!(column(&dir.join("ftr-full"), c), column(&dir.join("ftr-part"), c), "{c}");
    }
    assert_eq!(max_weight_change(&dir.join("ftr-full"), &dir.join("ftr-part"), "last"), 0.0);
    // the notebook's recipe has one rate, fine-tuned or not
    assert_eq!(column(&dir.join("ftr-full"), "lr")[1], Some(0.01));
}

/// `--init-from` refuses, naming the run and the conflict: a missing run, a
/// different model or recipe, flags that would change the model's shape or
/// features, other models, and `--resume`.
#[test]
fn init_from_errors_name_the_run_and_the_conflict() {
    let dir = workspace();
    ok(&train(dir, &["--epochs", "1", "--out", "fte-src"]));
    let cases: [(&[&str], &str); 8] = [
        (&["--init-from", "no/such/run"], "--init-from no/such/run: no such run folder"),
        (&["--init-from", "speech"], "--init-from speech"),
        (&["--init-from", "fte-src", "--model", "lstm"], "that run trained --model gru, not lstm"),
        (&["--init-from", "fte-src", "--coursework"], "recipe"),
        (&["--init-from", "fte-src", "--hidden", "16"], "that run has --hidden 8, so --hidden 16"),
        (&["--init-from", "fte-src", "--n-mfcc", "20"], "that run has --n-mfcc 10"),
        (&["--init-from", "fte-src", "--bidir"], "that run is one-directional"),
        (&["--init-from", "fte-src", "--model", "wavenet"], "--init-from does not apply"),
    ];
    for (extra, message) in cases {
        let model: &[&str] = if extra.contains(&"--model") { &[] } else { &["--model", "gru"] };
        fails_with(dir, &[&["train", "--data-dir", "speech"], model, extra].concat(), message);
    }
    let out = rnnlab(dir, &["train", "--model", "gru", "--resume", "fte-src", "--init-from", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

/// The file's modification time.
fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// On a small corpus the default recipe's GRU first trains on synthetic
/// voices of the same words (here a set of 12 clips per word), made in the
/// corpus's conditions and without its validation and test voices, then
/// fine-tunes from that run's best weights at the fine-tuning rate. Set and
/// run are made once and found by the next run; an unfinished pretraining
/// run is made again; `--pretrain none`, the coursework and the Elman RNNs
/// train from scratch.
#[test]
fn a_small_corpus_is_pretrained_on_synthetic_voices_first() {
    let dir = workspace();
    let auto = ["--pretrain", "auto", "--pretrain-clips", "12", "--epochs", "1"];
    let out = train(dir, &[&auto[..], &["--out", "pt"]].concat());
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("synthesising the pretraining set"), "{stderr}");
    let c = config(&dir.join("pt"));
    let from = c["init_from"]["run"].as_str().unwrap().to_string();
    assert!(from.starts_with("data/pretrain/16000hz-1s-12clips-x"), "{from}");
    assert_eq!(c["init_from"]["by_recipe"], true);
    assert_eq!(column(&dir.join("pt"), "step")[0], Some(0.0), "the start is validated");
    assert_eq!(column(&dir.join("pt"), "lr")[1], Some(0.001));

    // the set: the corpus's rate and one-second clips, none of its held-out voices
    let manifest = |set: &Path| -> serde_json::Value {
        let path = set.join("data_speech_commands_v0.02/synth.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let run = dir.join(&from);
    let set = run.parent().unwrap().join("set");
    let (theirs, mine) = (manifest(&dir.join("speech")), manifest(&set));
    let mut held_out: Vec<String> = [1, 2]
        .iter()
        .flat_map(|&i| {
            let v = theirs["variants"][i].as_array().unwrap().iter();
            v.chain(theirs["voices"][i].as_array().unwrap()).map(|s| s.as_str().unwrap().into())
        })
        .collect();
    held_out.sort();
    held_out.dedup();
    assert!(!held_out.is_empty());
    assert_eq!(mine["config"]["exclude_voices"], serde_json::json!(held_out));
    assert_eq!(mine["config"]["per_class"], 12);
    assert_eq!(mine["config"]["sample_rate"], theirs["config"]["sample_rate"]);
    for i in 0..3 {
        for v in mine["variants"][i].as_array().unwrap() {
            assert!(!held_out.contains(&v.as_str().unwrap().to_string()), "{v} is held out");
        }
    }
    // the pretrained run: the same model, from scratch, on the set
    let p = config(&run);
    assert_eq!(p["rnn"], c["rnn"]);
    assert!(p["init_from"].is_null());
    assert_eq!(p["seed"], 0);
    assert!(run.join("summary.json").is_file());

    // found the second time; at lr 1e-9 the run keeps the pretrained weights
    let made = mtime(&set.join("data_speech_commands_v0.02/synth.json"));
    let out = train(dir, &[&auto[..], &["--lr", "1e-9", "--out", "pt-still"]].concat());
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("synthesising") && !stderr.contains("pretraining gru"), "{stderr}");
    assert_eq!(mtime(&set.join("data_speech_commands_v0.02/synth.json")), made);
    let moved = weight_change(&run, "best", &dir.join("pt-still"), "last");
    assert!(moved < 1e-6, "fine-tuning at lr 1e-9 moved a weight by {moved}");

    // a pretraining run without summary.json did not finish: it is made again
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let out = train(dir, &[&auto[..], &["--out", "pt-again"]].concat());
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pretraining gru"));
    assert!(run.join("summary.json").is_file());

    // a set whose manifest disagrees with the plan is not trusted
    let manifest_path = set.join("data_speech_commands_v0.02/synth.json");
    let kept = std::fs::read_to_string(&manifest_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&kept).unwrap();
    edited["config"]["seed"] = serde_json::json!(99);
    std::fs::write(&manifest_path, edited.to_string()).unwrap();
    let out = train(dir, &[&auto[..], &["--out", "pt-edited"]].concat());
    std::fs::write(&manifest_path, kept).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("made with other settings"));

    // from scratch: --pretrain none, the coursework, the Elman RNNs
    ok(&train(dir, &["--epochs", "1", "--out", "pt-none"]));
    ok(&train(dir, &["--coursework", "--epochs", "1", "--out", "pt-cw"]));
    ok(&train_model(dir, "rnn_relu", &["--pretrain", "auto", "--epochs", "1", "--out", "pt-relu"]));
    for run in ["pt-none", "pt-cw", "pt-relu"] {
        assert!(config(&dir.join(run))["init_from"].is_null(), "{run}");
    }
    assert_eq!(column(&dir.join("pt-none"), "lr")[0], Some(0.004));
}

/// `--pretrain` and `--pretrain-clips` refuse what they cannot do, naming it.
#[test]
fn pretrain_errors_name_the_conflict() {
    let dir = workspace();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--pretrain", "auto", "--coursework"],
            "--pretrain auto does not combine with --coursework",
        ),
        (
            &["--pretrain", "none", "--pretrain-clips", "20"],
            "--pretrain-clips sizes the synthetic set",
        ),
        (&["--pretrain", "auto", "--pretrain-clips", "5"], "--pretrain-clips must be at least 10"),
        (&["--pretrain", "none", "--init-from", "x"], "cannot be used with"),
        (
            &["--pretrain", "none", "--model", "wavenet"],
            "--pretrain does not apply to --model wavenet",
        ),
        (&["--pretrain", "maybe"], "invalid value 'maybe'"),
    ];
    for (extra, message) in cases {
        let model: &[&str] = if extra.contains(&"--model") { &[] } else { &["--model", "gru"] };
        fails_with(dir, &[&["train", "--data-dir", "speech"], model, extra].concat(), message);
    }
    ok(&train(dir, &["--epochs", "1", "--out", "pte"]));
    fails_with(
        dir,
        &["train", "--model", "gru", "--resume", "pte", "--pretrain", "none"],
        "--pretrain cannot change a resumed run",
    );
}
