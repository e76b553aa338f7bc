//! The speaker-clustering lab in quick mode: every section runs, and the
//! answers it prints hold (distances, Xavier bound, chunk, loss, StepLR).

mod common;

use common::{number_after, QuickRun};

const SECTIONS: [&str; 11] = [
    "The data: MFCC sequences of utterances",
    "Device placement",
    "Parameters vs buffers",
    "Xavier initialisation",
    "PairwiseDistance",
    "chunk: the BiLSTM output's two directions",
    "The forward pass",
    "The proxy loss",
    "StepLR",
    "Training and clustering",
    "CPU vs GPU iterations per second",
];

#[test]
fn speaker_lab_answers_hold_in_quick_mode() {
    let run = QuickRun::new(env!("CARGO_BIN_EXE_speaker-lab"), "speaker-lab", &SECTIONS);
    let t = &run.transcript;

    // quick mode makes its own corpus in the output folder, not under data/
    assert!(
        run.dir.join("corpus/synth.json").is_file(),
        "no quick corpus in {}",
        run.dir.display()
    );

    // parameters: every model tensor trains; the count is nn.LSTM's plus the proxies'
    let tensors = number_after(t, "the model:");
    assert_eq!(tensors, number_after(t, "tensors in vs.variables(),"), "the model has buffers");
    let line = t.lines().find(|l| l.contains("trainable numbers =")).expect("parameter count");
    let total = number_after(line, "");
    let lstm = number_after(line, "(4H(I+H) + 8H) =");
    let proxies = number_after(line, "S·4H =");
    assert_eq!(total, lstm + proxies, "{line}");
    // a BatchNorm's running statistics are buffers: stored, saved, not trained
    assert!(t.contains("nn::batch_norm1d(4): 4 tensors in variables(), 2 trainable"), "{t}");
    assert!(t.contains("running_mean requires_grad false"), "{t}");
    assert!(number_after(t, "0.1 · batch mean (largest difference") < 1e-5, "{t}");
    assert!(t.contains("weight.grad defined: true, running_mean.grad defined: false"), "{t}");
    assert!(t.contains("bn.running_mean, bn.running_var"), "{t}");

    // Xavier: every drawn proxy lies within the bound, and the draws reach near it
    let largest = number_after(t, "largest |proxy|");
    let (fan_in, fan_out) = (number_after(t, ": fan_in"), number_after(t, "fan_out"));
    let bound = (6.0 / (fan_in + fan_out)).sqrt(); // Glorot & Bengio's bound, not the library's
    assert!(largest <= bound && largest > 0.9 * bound, "largest {largest}, bound {bound}");

    // PairwiseDistance: the library equals the hand computation, eps included
    assert!(number_after(t, "largest difference, library vs hand:") < 1e-12, "{t}");
    let on_proxy = number_after(t, "sits on proxy 1: distance");
    assert!((on_proxy - 3f64.sqrt() * 1e-6).abs() < 1e-10, "{on_proxy}");

    // chunk: the forward direction's final state is at the last step, the backward's at 0
    assert_eq!(number_after(t, "moves forward[:, 0] by"), 0.0, "{t}");
    assert!(number_after(t, "and forward[:, 46] by") > 0.0, "{t}");
    assert_eq!(number_after(t, "moves backward[:, 46] by"), 0.0, "{t}");
    assert!(number_after(t, "and backward[:, 0] by") > 0.0, "{t}");
    assert!(t.contains("split_directions gives the same: true"), "{t}");
    assert!(t.contains("model.embed(x): true, model.logits(x): true, join_embedding(out): true"));

    // the loss starts near ln(S) and falls in training
    let init = number_after(t, "proxy loss at initialisation");
    let speakers = number_after(t, "ln(S) = ln(");
    let ln_s = speakers.ln();
    assert!((init - ln_s).abs() < 0.05 * ln_s, "loss {init} vs ln S {ln_s}");
    let after = number_after(t, "utterances after training");
    assert!(after < 0.5 * init, "loss {init} -> {after}");

    // StepLR: the rate of every epoch is base_lr · gamma^(epoch / step_size)
    let base = number_after(t, "StepLR(base_lr=");
    let step = number_after(t, "step_size=") as usize;
    let gamma = number_after(t, "gamma=");
    let epochs: Vec<(usize, f64)> = t
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .map(|l| (number_after(l, "epoch") as usize, number_after(l, "lr")))
        .collect();
    assert!(epochs.len() > 2 * step, "{} epochs of step {step}", epochs.len());
    for (i, &(epoch, lr)) in epochs.iter().enumerate() {
        assert_eq!(epoch, i);
        let want = base * gamma.powi((epoch / step) as i32);
        assert!((lr - want).abs() < 1e-9 * want, "epoch {epoch}: lr {lr}, want {want}");
    }

    // clustering: even the untrained network clusters above chance (1/k) ...
    let line = t.lines().find(|l| l.starts_with("before training:")).expect("purity before");
    let before = number_after(line, "before training: k-means purity");
    let before_unseen = number_after(line, "training speakers,");
    let (chance, chance_unseen) = (number_after(line, "by chance:"), number_after(line, "%, "));
    assert!(before > chance && before_unseen > chance_unseen, "{line}");
    // ... and training separates the training speakers' held-out utterances

    let trained = number_after(t, "after training: k-means purity");
    assert!(trained > before, "purity {before}% -> {trained}%");
    assert!(run.figure_links().iter().any(|f| f == "embeddings.png"), "{t}");

    // speed: the CPU is measured; the GPU only where there is one, and it says so
    assert!(number_after(t, "CPU:") > 0.0, "{t}");
    let gpu_line = if tch::Cuda::is_available() { "CUDA:" } else { "no GPU is present" };
    assert!(t.contains(gpu_line), "{t}");
}
