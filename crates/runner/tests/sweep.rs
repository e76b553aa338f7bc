//! `rnnlab sweep`: real runs on a tiny synthetic Speech Commands set (skip,
//! resume after a kill, a failing run reported without stopping the others)
//! and the report's numbers on hand-written summaries (mean, sample sd, min,
//! max, and ranking on validation only). Needs espeak-ng for the real runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const RNNLAB: &str = env!("CARGO_BIN_EXE_rnnlab");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rnnlab-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A scratch folder holding a tiny data set, made once for every test here.
fn workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("data");
        let out =
            rnnlab(&dir, &["data", "synth", "--out", "speech", "--per-class", "30", "--seed", "1"]);
        assert!(out.status.success(), "synth: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn rnnlab(dir: &Path, args: &[&str]) -> Output {
    rnnlab_env(dir, args, None)
}

fn rnnlab_env(dir: &Path, args: &[&str], kill_at: Option<u64>) -> Output {
    let mut cmd = Command::new(RNNLAB);
    cmd.args(["--device", "cpu"]).args(args).current_dir(dir).env_remove("LD_LIBRARY_PATH");
    match kill_at {
        Some(k) => cmd.env("RNNLAB_KILL_AT_STEP", k.to_string()),
        None => cmd.env_remove("RNNLAB_KILL_AT_STEP"),
    };
    cmd.output().expect("running rnnlab")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A tiny GRU on the tiny corpus, from scratch (not pretrained on synthetic voices).
const TINY: [&str; 12] = [
    "--model",
    "gru",
    "--data-dir",
    "speech",
    "--hidden",
    "8",
    "--batch-size",
    "16",
    "--valid-every",
    "2",
    "--pretrain",
    "none",
];

/// One sweep, run twice. The first time, a kill at step `per_epoch + 1`
/// stops the 2-epoch run after its first checkpoint, a negative
/// `--clip-grad-norm` fails two runs, and the 1-epoch run finishes; the
/// second time the finished run is skipped, the killed one resumed, and the
/// failing ones fail again, each reported with its log.
#[test]
fn skips_finished_runs_resumes_killed_ones_and_reports_failures() {
    let dir = workspace();
    // steps of one epoch, from a plain run of the same settings
    let mut probe = vec!["train"];
    probe.extend(TINY);
    probe.extend(["--epochs", "1", "--out", "probe"]);
    let out = rnnlab(dir, &probe);
    assert!(out.status.success(), "{}", text(&out));
    let per_epoch = json(&dir.join("probe/summary.json"))["steps"].as_u64().unwrap();

    let mut sweep = vec!["sweep", "run", "--name", "s", "--root", "sweeps", "--jobs", "2"];
    sweep.extend(["--grid", "epochs=1,2", "--grid", "clip-grad-norm=1,-1", "--seeds", "0", "--"]);
    sweep.extend(TINY);
    let first = rnnlab_env(dir, &sweep, Some(per_epoch + 1));
    let log = text(&first);
    assert!(!first.status.success(), "failed runs must fail the sweep:\n{log}");
    assert!(
        log.contains("0 finished before (skipped), 0 resumed, 1 started afresh, 3 failed"),
        "{log}"
    );
    let s = dir.join("sweeps/s");
    let manifest = json(&s.join("sweep.json"));
    assert_eq!(manifest["runs"].as_array().unwrap().len(), 4);
    let argv: Vec<String> = serde_json::from_value(manifest["runs"][0]["argv"].clone()).unwrap();
    assert!(
        argv.join(" ").contains("--epochs 1 --clip-grad-norm 1 --seed 0 --threads 1 --out"),
        "{argv:?}"
    );
    let done = s.join("epochs-1_clip-grad-norm-1/seed0");
    let killed = s.join("epochs-2_clip-grad-norm-1/seed0");
    let bad = s.join("epochs-1_clip-grad-norm--1/seed0");
    assert!(done.join("summary.json").is_file());
    assert!(!killed.join("summary.json").exists() && killed.join("last.safetensors").is_file());
    assert!(log.contains(&format!("log: {}", bad.join("log.txt").display())), "{log}");
    let bad_log = std::fs::read_to_string(bad.join("log.txt")).unwrap();
    assert!(bad_log.contains("--clip-grad-norm must be positive"), "{bad_log}");
    let status = text(&rnnlab(dir, &["sweep", "status", "sweeps/s"]));
    assert!(status.contains("done 1, running 0, failed 3, pending 0"), "{status}");

    let finished_at = std::fs::metadata(done.join("summary.json")).unwrap().modified().unwrap();
    let second = rnnlab(dir, &sweep);
    let log = text(&second);
    assert!(!second.status.success(), "{log}");
    assert!(
        log.contains("1 finished before (skipped), 1 resumed, 0 started afresh, 2 failed"),
        "{log}"
    );
    assert_eq!(
        std::fs::metadata(done.join("summary.json")).unwrap().modified().unwrap(),
        finished_at
    );
    let summary = json(&killed.join("summary.json"));
    assert_eq!(summary["steps"].as_u64(), Some(2 * per_epoch));
    let killed_log = std::fs::read_to_string(killed.join("log.txt")).unwrap();
    assert!(killed_log.contains("train --model gru --resume"), "{killed_log}");
    let status = text(&rnnlab(dir, &["sweep", "status", "sweeps/s"]));
    assert!(status.contains("done 2, running 0, failed 2, pending 0"), "{status}");

    // the report covers the finished runs and names the others
    let out = rnnlab(dir, &["sweep", "report", "sweeps/s"]);
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(s.join("report.md")).unwrap();
    assert!(
        md.contains("## Unfinished runs") && md.contains("epochs-2_clip-grad-norm--1/seed0"),
        "{md}"
    );
    for f in ["report-score.png", "report-valid.png", "report-loss.png"] {
        assert!(s.join(f).is_file(), "no {f}");
    }
    // another grid under the same name is refused
    let mut other = sweep.clone();
    let at = other.iter().position(|a| *a == "epochs=1,2").unwrap();
    other[at] = "epochs=3";
    let out = rnnlab(dir, &other);
    assert!(!out.status.success() && text(&out).contains("other runs"), "{}", text(&out));
}

/// Two runs started together on a fresh folder, both needing the default
/// synthetic set: one makes it while the other waits, and both train (they
/// used to write the same staging folder at once, and one failed).
#[test]
fn parallel_runs_make_the_default_set_once() {
    let dir = scratch("fresh");
    let out = rnnlab(
        &dir,
        &[
            "sweep",
            "run",
            "--name",
            "fresh",
            "--grid",
            "model=gru",
            "--seeds",
            "0-1",
            "--jobs",
            "2",
            "--",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--valid-every",
            "1000",
        ],
    );
    assert!(out.status.success(), "sweep: {}", text(&out));
    for seed in 0..2 {
        let s = json(&dir.join(format!("results/sweeps/fresh/model-gru/seed{seed}/summary.json")));
        assert!(s["test_accuracy"].as_f64().is_some(), "seed {seed}: {s}");
    }
    let root = dir.join("data/speech_commands/data_speech_commands_v0.02");
    assert!(root.join("synth.json").is_file(), "no default set in {}", root.display());
}

/// `rnnlab plots` draws the RNN vs LSTM vs GRU comparison from a sweep over
/// `model` (here the only runs under results/, so nothing else can draw it).
#[test]
fn plots_compare_models_from_a_sweep_over_model() {
    let dir = workspace();
    let mut sweep = vec!["sweep", "run", "--name", "models", "--grid", "model=gru,lstm"];
    sweep.extend(["--seeds", "0-1", "--jobs", "2", "--root", "plots/sweeps", "--"]);
    sweep.extend(&TINY[2..]);
    sweep.extend(["--epochs", "1"]);
    let out = rnnlab(dir, &sweep);
    assert!(out.status.success(), "{}", text(&out));
    let out = rnnlab(dir, &["plots", "--results", "plots"]);
    assert!(out.status.success(), "{}", text(&out));
    for what in ["loss", "accuracy"] {
        let png = dir.join(format!("plots/rnn-comparison-{what}.png"));
        assert_eq!(figures::png_size(&png).unwrap(), figures::SIZE, "{}", png.display());
    }
}

#[test]
fn bad_flags_fail_before_any_run_starts() {
    let dir = scratch("flags");
    let cases: [(&[&str], &str); 5] = [
        (&["--grid", "lr"], "--grid \"lr\": no '='"),
        (&["--grid", "learning-rate=1"], "--learning-rate is not a flag of `rnnlab train`"),
        (&["--grid", "lr=fast"], "--lr"),
        (&["--seeds", "3-1"], "--seeds"),
        (&["--grid", "lr=1", "--", "--lr", "2"], "both an axis"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["sweep", "run", "--name", "x", "--model", "gru"];
        args.extend_from_slice(extra);
        let out = rnnlab(&dir, &args);
        let t = text(&out);
        assert!(!out.status.success() && t.contains(want), "{extra:?}: {t}");
        assert!(!dir.join("results/sweeps/x/sweep.json").exists(), "{extra:?} wrote a manifest");
    }
}

/// A recurrent classifier's `summary.json` with the given scores.
fn rnn_summary(valid: f64, test: f64) -> serde_json::Value {
    serde_json::json!({
        "model": "gru", "recipe": "default", "bidirectional": false, "engine": "custom",
        "best_valid_accuracy": valid, "test_accuracy": test, "epochs": 1,
        "steps": 10, "train_seconds": 1.0, "seconds_per_step": 0.1, "best_step": 10,
        "best_valid_loss": 0.5, "final_valid_loss": 0.5, "stopped_early": false,
        "device": "cpu", "train_clips": 100, "valid_clips": 20, "test_clips": 20
    })
}

/// A sweep folder written by hand: `sweep.json` with `combos` × seeds, and a
/// `summary.json` and `metrics.csv` per run from `summary(combo, seed)`.
fn fake_sweep(
    dir: &Path,
    combos: &[&str],
    seeds: usize,
    summary: impl Fn(usize, usize) -> serde_json::Value,
) {
    let mut runs = Vec::new();
    for (c, combo) in combos.iter().enumerate() {
        for seed in 0..seeds {
            let rel = format!("{combo}/seed{seed}");
            let run = dir.join(&rel);
            std::fs::create_dir_all(&run).unwrap();
            let s = summary(c, seed);
            std::fs::write(run.join("summary.json"), s.to_string()).unwrap();
            let valid =
                s.get("best_valid_accuracy").or(s.get("val_loss")).unwrap().as_f64().unwrap();
            let mut w = csv::Writer::from_path(run.join("metrics.csv")).unwrap();
            w.write_record([
                "step",
                "epoch",
                "loss",
                "lr",
                "valid_loss",
                "valid_acc",
                "test_acc",
                "seconds",
            ])
            .unwrap();
            w.serialize((1, 0, 2.0, 0.01, None::<f64>, None::<f64>, None::<f64>, 0.1)).unwrap();
            w.serialize((2, 0, 1.5, 0.01, Some(valid), Some(valid), Some(0.5), 0.2)).unwrap();
            w.flush().unwrap();
            runs.push(serde_json::json!({
                "index": runs.len(), "combo": combo, "values": [["lr", combo]], "seed": seed,
                "dir": rel, "argv": ["train"]
            }));
        }
    }
    let manifest = serde_json::json!({
        "name": "fake", "workdir": dir, "device": "cpu", "threads": 1,
        "axes": [{"flag": "lr", "values": combos}], "seeds": (0..seeds).collect::<Vec<_>>(),
        "fixed": ["--model", "gru"], "runs": runs
    });
    std::fs::write(dir.join("sweep.json"), manifest.to_string()).unwrap();
}

/// `report.csv` rows as (rank, combo, metric) -> (n, mean, sd, min, max).
#[derive(Debug, serde::Deserialize)]
struct Row {
    rank: usize,
    combo: String,
    metric: String,
    role: String,
    n: usize,
    mean: Option<f64>,
    sd: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

fn rows(dir: &Path) -> Vec<Row> {
    csv::Reader::from_path(dir.join("report.csv"))
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Combination `a` has the better test scores and `b` the better validation
/// scores: `b` ranks first and is the best, and the numbers are the
/// hand-computed ones (a: 0.80, 0.90, 0.85 -> mean 0.85, sd 0.05).
#[test]
fn report_aggregates_over_seeds_and_ranks_on_validation_only() {
    let dir = scratch("fake");
    let valid = [[0.80, 0.90, 0.85], [0.91, 0.93, 0.92]];
    let test = [[0.95, 0.97, 0.96], [0.70, 0.72, 0.71]];
    fake_sweep(&dir, &["a", "b"], 3, |c, s| rnn_summary(valid[c][s], test[c][s]));
    let out = rnnlab(&dir, &["sweep", "report", "."]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = rows(&dir);
    let get = |combo: &str, metric: &str| {
        rows.iter()
            .find(|r| r.combo == combo && r.metric == metric)
            .unwrap_or_else(|| panic!("{combo} {metric}"))
    };
    let a = get("a", "best_valid_accuracy");
    assert_eq!((a.rank, a.n, a.role.as_str()), (2, 3, "validation"));
    assert!(
        close(a.mean, 0.85) && close(a.sd, 0.05) && close(a.min, 0.80) && close(a.max, 0.90),
        "{a:?}"
    );
    let b = get("b", "best_valid_accuracy");
    assert_eq!(b.rank, 1);
    assert!(close(b.mean, 0.92) && close(b.sd, 0.01), "{b:?}");
    let t = get("a", "test_accuracy");
    assert_eq!(t.role, "test");
    assert!(
        close(t.mean, 0.96) && close(t.sd, 0.01) && close(t.min, 0.95) && close(t.max, 0.97),
        "{t:?}"
    );
    let steps = get("a", "steps");
    assert!(close(steps.mean, 10.0) && close(steps.sd, 0.0), "{steps:?}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("**Best on validation:** `b`"), "{md}");
    assert!(
        md.contains("| 1 | `b` | 3/3 | 0.9200 ± 0.0100 | 0.9100 | 0.9300 | 0.7100 ± 0.0100"),
        "{md}"
    );
    for f in ["report-score.png", "report-valid.png", "report-loss.png"] {
        assert!(dir.join(f).is_file(), "no {f}");
    }
}

/// For wavenet the validation loss ranks, lower first.
#[test]
fn wavenet_sweeps_rank_lower_validation_loss_first() {
    let dir = scratch("fake-wavenet");
    let val = [[2.0, 2.2], [1.9, 2.1]];
    fake_sweep(&dir, &["hi", "lo"], 2, |c, s| {
        serde_json::json!({
            "model": "wavenet", "recipe": "lecture", "batch_size": 32, "parameters": 76579,
            "train_loss": 1.8, "val_loss": val[c][s], "test_loss": 1.0 + c as f64,
            "best_val_loss": val[c][s], "steps": 10, "train_seconds": 1.0,
            "ms_per_step": 1.0, "threads": 1, "device": "cpu"
        })
    });
    let out = rnnlab(&dir, &["sweep", "report", "."]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = rows(&dir);
    let lo = rows.iter().find(|r| r.combo == "lo" && r.metric == "val_loss").unwrap();
    assert_eq!((lo.rank, lo.role.as_str()), (1, "validation"));
    // 1.9 and 2.1: mean 2.0, sd sqrt((0.1² + 0.1²) / 1)
    assert!(close(lo.mean, 2.0) && close(lo.sd, 0.02f64.sqrt()), "{lo:?}");
}
