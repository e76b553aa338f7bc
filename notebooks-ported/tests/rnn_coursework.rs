//! The RNN coursework notebook in quick mode: the cells equal libtorch's, the
//! models count their parameters as the formula does, an unknown mode is an
//! error, each split is scored on its own, the GRU learns, and question 3's
//! figures and table come from three real runs.

mod common;

use common::{number_after, numbers_after, QuickRun};

const SECTIONS: [&str; 9] = [
    "Setup",
    "Features",
    "Question 1: the cells",
    "Question 2: the models",
    "Training",
    "Theory question 1: long sequences",
    "Theory question 2: gates",
    "Theory question 3: RNN vs LSTM vs GRU",
    "Theory question 4: bidirectional models",
];

/// The line that starts with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?}"))
}

/// `(correct, total)` pairs written `a/b` in `text`.
fn fractions(text: &str) -> Vec<(i64, i64)> {
    text.split_whitespace()
        .filter_map(|w| {
            let w = w.trim_matches(|c: char| c == '(' || c == ')' || c == ',');
            let (a, b) = w.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

#[test]
fn rnn_coursework_holds_in_quick_mode() {
    let run = QuickRun::new(env!("CARGO_BIN_EXE_rnn-coursework"), "rnn-coursework", &SECTIONS);
    let t = &run.transcript;

    // Setup: the quick set is made in the notebook's own folder, and the
    // held-out voices are never heard in training.
    let synth = run.dir.join("speech_commands/data_speech_commands_v0.02/synth.json");
    assert!(synth.is_file(), "{} missing", synth.display());
    let valid_clips = number_after(t, "\nvalidation") as i64;
    let test_clips = number_after(t, "\ntest") as i64;
    assert_ne!(valid_clips, test_clips, "equal split sizes would hide mixed counts");
    assert_eq!(t.matches(" 0 of them heard in training").count(), 2, "{t}");

    // Features: 32 frames of 20 MFCCs; the x 32768 scale shifts c0 alone, by the formula.
    assert!(t.contains("features [32, 20] = [frames, MFCCs]"), "{t}");
    let moved = number_after(t, "coefficient 0 moves by");
    let formula = number_after(t, "√128 =");
    assert!((moved - formula).abs() < 0.05, "c0 moved {moved}, formula {formula}");
    assert!(number_after(t, "the others by at most") < 1e-3);
    assert!(number_after(t, "after standardising, train split: |mean| <=") < 1e-4);

    // Question 1: every parity difference with libtorch is f32 rounding.
    let parity = numbers_after(t, "max |difference|");
    assert_eq!(parity.len(), 8 + 2, "8 libtorch checks and 2 gate-path checks:\n{t}");
    for d in parity {
        assert!(d < 1e-5, "a cell differs from libtorch by {d}");
    }
    assert!(t.contains("nonlinearity=\"sigmoid\") -> error: invalid nonlinearity \"sigmoid\""));

    // Question 2: logits [B, 3]; counted parameters equal the formula for
    // every mode and direction; an unknown mode is an error.
    let counted = numbers_after(t, "tensors,");
    let by_formula = numbers_after(t, "parameters counted,");
    assert_eq!(counted.len(), 8, "{t}");
    assert_eq!(counted, by_formula);
    assert!(t.contains("rnn_cell_list_rev.1.weight_hh"), "{t}");
    assert!(
        t.contains("RNNModel(\"lstm\", 20, ...) -> error: invalid RNN mode \"lstm\" selected"),
        "{t}"
    );

    // Training: the GRU's loss falls; validation and test are each counted on
    // their own split (the denominators are the split sizes).
    let first = number_after(t, "mean of the first 5 steps");
    let last = number_after(t, "of the last 5 steps");
    assert!(last < 0.8 * first, "GRU loss {first} -> {last}");
    let steps: Vec<&str> = t.lines().filter(|l| l.starts_with("  step ")).collect();
    assert_eq!(steps.len(), 8, "40 steps, validation every 5");
    for l in steps {
        let f = fractions(l);
        assert_eq!(f.len(), 2, "{l}");
        assert_eq!(f[0].1, valid_clips, "{l}");
        assert_eq!(f[1].1, test_clips, "{l}");
    }

    // Question 3: both figures, and the table of the three models, each with
    // its test accuracy counted on the test split.
    run.assert_png("q3-loss.png");
    run.assert_png("q3-accuracy.png");
    let q3 = &t[t.find("## Theory question 3").unwrap()..t.find("## Theory question 4").unwrap()];
    for model in ["RNN_TANH", "LSTM", "GRU"] {
        let row = line(q3, &format!("| {model} | "));
        let f = fractions(row);
        assert_eq!(f.len(), 2, "{row}");
        assert_eq!((f[0].1, f[1].1), (valid_clips, test_clips), "{row}");
    }

    // Question 4: a forward stack ignores later frames; the reverse stack
    // does not.
    assert_eq!(number_after(t, "change by at most"), 0.0);
    assert!(number_after(t, "changes by up to") > 0.0);
}
