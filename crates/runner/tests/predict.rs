//! `rnnlab predict` and `rnnlab eval --data-dir` on a tiny trained GRU: every
//! WAV encoding (8/16/24/32-bit integer PCM, 32-bit float, stereo, another
//! sample rate) gives the same prediction as the 16 kHz 16-bit original,
//! folders are walked, `--csv` parses back and agrees with `eval` on the same
//! files, and bad input gives errors that name the file, folder or class.
//! Needs espeak-ng (`make setup` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde::Deserialize;

const RNNLAB: &str = env!("CARGO_BIN_EXE_rnnlab");

/// A scratch folder with a tiny synthetic set and a GRU trained on it.
fn workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rnnlab-predict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ok(&rnnlab(
            &dir,
            &["data", "synth", "--out", "speech", "--per-class", "30", "--seed", "2"],
        ));
        ok(&rnnlab(
            &dir,
            &[
                "train",
                "--model",
                "gru",
                "--data-dir",
                "speech",
                "--pretrain",
                "none",
                "--hidden",
                "32",
                "--epochs",
                "10",
                "--batch-size",
                "8",
                "--lr",
                "0.01",
                "--valid-every",
                "20",
                "--seed",
                "1",
                "--out",
                "run",
            ],
        ));
        dir
    })
}

fn rnnlab(dir: &Path, args: &[&str]) -> Output {
    Command::new(RNNLAB)
        .args(["--device", "cpu"])
        .args(args)
        .current_dir(dir)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running rnnlab")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "rnnlab failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fails_with(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "should have failed: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
}

#[derive(Debug, Deserialize)]
struct Row {
    file: String,
    class: String,
    probability: f64,
    predicted: bool,
}

fn rows(out: &Output) -> Vec<Row> {
    ok(out);
    let mut r = csv::Reader::from_reader(out.stdout.as_slice());
    r.deserialize().map(|row| row.unwrap()).collect()
}

/// `(file, predicted class, probabilities in class order)` per file.
fn per_file(rows: &[Row]) -> Vec<(String, String, Vec<f64>)> {
    let mut out: Vec<(String, String, Vec<f64>)> = Vec::new();
    for r in rows {
        if out.last().is_none_or(|(f, _, _)| *f != r.file) {
            out.push((r.file.clone(), String::new(), Vec::new()));
        }
        let last = out.last_mut().unwrap();
        last.2.push(r.probability);
        if r.predicted {
            last.1 = r.class.clone();
        }
    }
    out
}

fn test_clips(dir: &Path) -> Vec<PathBuf> {
    let root = dir.join("speech/data_speech_commands_v0.02");
    let list = std::fs::read_to_string(root.join("testing_list.txt")).unwrap();
    list.lines().filter(|l| !l.is_empty()).map(|l| root.join(l)).collect()
}

/// The clip re-encoded: `bits` integer or float, `channels` copies, `rate` Hz
/// (resampled by linear interpolation, which changes the sound slightly).
fn encode(src: &Path, dst: &Path, bits: u16, float: bool, channels: u16, rate: u32) {
    let mut r = hound::WavReader::open(src).unwrap();
    let x: Vec<f64> = r.samples::<i16>().map(|s| s.unwrap() as f64 / 32768.0).collect();
    let n = (x.len() as f64 * rate as f64 / 16_000.0) as usize;
    let y: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 * 16_000.0 / rate as f64;
            let (k, f) = (t.floor() as usize, t.fract());
            x[k.min(x.len() - 1)] * (1.0 - f) + x[(k + 1).min(x.len() - 1)] * f
        })
        .collect();
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    };
    let mut w = hound::WavWriter::create(dst, spec).unwrap();
    for &v in &y {
        for _ in 0..channels {
            if float {
                w.write_sample(v as f32).unwrap();
            } else {
                let full = (1i64 << (bits - 1)) as f64;
                let q = (v * full).round().clamp(-full, full - 1.0) as i64;
                match bits {
                    8 => w.write_sample(q as i8).unwrap(),
                    16 => w.write_sample(q as i16).unwrap(),
                    _ => w.write_sample(q as i32).unwrap(),
                }
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn every_wav_format_predicts_like_the_original() {
    let dir = workspace();
    let src = &test_clips(dir)[0];
    let formats = dir.join("formats");
    std::fs::create_dir_all(&formats).unwrap();
    let cases: [(&str, u16, bool, u16, u32, f64); 7] = [
        ("int8", 8, false, 1, 16_000, 0.05),
        ("int16", 16, false, 1, 16_000, 1e-6),
        ("int24", 24, false, 1, 16_000, 1e-6),
        ("int32", 32, false, 1, 16_000, 1e-6),
        ("float32", 32, true, 1, 16_000, 1e-6),
        ("stereo16", 16, false, 2, 16_000, 1e-6),
        ("rate44k1", 16, false, 1, 44_100, 0.05),
    ];
    for (name, bits, float, ch, rate, _) in cases {
        encode(src, &formats.join(format!("{name}.wav")), bits, float, ch, rate);
    }
    let src_str = src.to_str().unwrap();
    let original = per_file(&rows(&rnnlab(dir, &["predict", "--run", "run", "--csv", src_str])));
    let (_, want_class, want) = &original[0];
    // The folder is walked: every format, sorted by name.
    let got = per_file(&rows(&rnnlab(dir, &["predict", "--run", "run", "--csv", "formats"])));
    let mut names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    names.sort();
    assert_eq!(got.len(), cases.len());
    for ((file, class, p), name) in got.iter().zip(&names) {
        assert!(file.ends_with(&format!("{name}.wav")), "{file} for {name}");
        let tol = cases.iter().find(|c| c.0 == *name).unwrap().5;
        let d = p.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d <= tol, "{name}: probabilities differ from the original by {d}");
        assert_eq!(class, want_class, "{name}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    // The table names the same class.
    let out = rnnlab(dir, &["predict", "--run", "run", src_str]);
    ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table.lines().nth(1).unwrap();
    assert_eq!(line.split_whitespace().nth(1), Some(want_class.as_str()), "{table}");
    assert!(table.lines().next().unwrap().contains("three"));
}

/// Output into a pipe whose reader is gone (`rnnlab predict ... | head`): rnnlab
/// ends quietly, by SIGPIPE as other command-line tools do, with no "Broken pipe"
/// error and no panic. The reader is closed before rnnlab starts, so its first
/// write always meets the closed pipe.
#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = workspace();
    let src = test_clips(dir)[0].to_str().unwrap().to_string();
    for csv in [true, false] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut args = vec!["--device", "cpu", "predict", "--run", "run"];
        if csv {
            args.push("--csv");
        }
        args.push(&src);
        let out = Command::new(RNNLAB)
            .args(&args)
            .current_dir(dir)
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("RUST_BACKTRACE")
            .stdout(writer)
            .output()
            .expect("running rnnlab");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "csv {csv}: {err}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "csv {csv}: {:?} {err}", out.status);
    }
}

/// A corpus of class folders without split lists: `eval --data-dir` scores
/// every clip, and its accuracy equals the share of `predict`'s rows whose
/// predicted class is the file's folder.
#[test]
fn csv_agrees_with_eval_on_another_corpus() {
    let dir = workspace();
    let corpus = dir.join("corpus");
    for clip in test_clips(dir) {
        let class = clip.parent().unwrap().file_name().unwrap();
        let dst = corpus.join(class);
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(&clip, dst.join(clip.file_name().unwrap())).unwrap();
    }
    let out = rnnlab(dir, &["eval", "--run", "run", "--data-dir", "corpus"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" all "), "{text}");
    let acc: f64 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let files = per_file(&rows(&rnnlab(dir, &["predict", "--run", "run", "--csv", "corpus"])));
    assert_eq!(files.len(), test_clips(dir).len());
    let correct = files
        .iter()
        .filter(|(f, class, _)| Path::new(f).parent().unwrap().ends_with(class))
        .count();
    let share = correct as f64 / files.len() as f64;
    assert!((acc - share).abs() < 1e-6, "eval {acc}, predict {share}");
    assert!(acc > 0.5, "the tiny run learned too little to compare ({acc})");
    // The run's own test split scores the same clips the same way.
    let out = rnnlab(dir, &["eval", "--run", "run", "--split", "test"]);
    ok(&out);
    let own: f64 =
        String::from_utf8_lossy(&out.stdout).trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!((own - acc).abs() < 1e-6, "test split {own}, corpus {acc}");
    // Without lists, a named split is refused; a class the run never saw is named.
    fails_with(
        &rnnlab(dir, &["eval", "--run", "run", "--data-dir", "corpus", "--split", "test"]),
        &["corpus", "testing_list.txt", "--split all"],
    );
    let four = corpus.join("four");
    std::fs::create_dir_all(&four).unwrap();
    std::fs::copy(&test_clips(dir)[0], four.join("x.wav")).unwrap();
    fails_with(
        &rnnlab(dir, &["eval", "--run", "run", "--data-dir", "corpus"]),
        &["four", "unknown"],
    );
    std::fs::remove_dir_all(&four).unwrap();
}

#[test]
fn bad_input_names_the_file() {
    let dir = workspace();
    let bad = dir.join("bad");
    std::fs::create_dir_all(bad.join("empty_folder")).unwrap();
    std::fs::write(bad.join("text.wav"), "this is not audio").unwrap();
    std::fs::write(bad.join("zero.wav"), "").unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(bad.join("no_samples.wav"), spec).unwrap().finalize().unwrap();
    let predict = |arg: &str| rnnlab(dir, &["predict", "--run", "run", arg]);
    fails_with(&predict("bad/text.wav"), &["bad/text.wav", "not a WAV"]);
    fails_with(&predict("bad/zero.wav"), &["bad/zero.wav", "empty"]);
    fails_with(&predict("bad/no_samples.wav"), &["bad/no_samples.wav", "no audio samples"]);
    fails_with(&predict("bad/missing.wav"), &["bad/missing.wav", "no such file"]);
    fails_with(&predict("bad/empty_folder"), &["bad/empty_folder", "no .wav files"]);
    let clip = test_clips(dir)[0].to_string_lossy().into_owned();
    fails_with(
        &rnnlab(dir, &["predict", "--run", "no-such-run", &clip]),
        &["no-such-run", "does not exist"],
    );
    // A run folder of another model.
    let names = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    ok(&rnnlab(
        dir,
        &[
            "train",
            "--model",
            "wavenet",
            "--steps",
            "2",
            "--embd",
            "4",
            "--hidden",
            "8",
            "--data-dir",
            names.to_str().unwrap(),
            "--out",
            "wavenet-run",
        ],
    ));
    fails_with(
        &rnnlab(dir, &["predict", "--run", "wavenet-run", &clip]),
        &["wavenet-run", "Wavenet", "not a recurrent word classifier"],
    );
    fails_with(
        &rnnlab(dir, &["eval", "--run", "wavenet-run"]),
        &["wavenet-run", "not a recurrent word classifier"],
    );
}
