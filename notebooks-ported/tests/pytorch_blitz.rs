//! The blitz notebook in quick mode: every question's answer holds.

mod common;

use common::{number_after, QuickRun};

const SECTIONS: [&str; 10] = [
    "(a) Tensors and arrays",
    "(b) The Module trait and its parameters",
    "(c) forward",
    "(d) Flattening between conv and linear layers",
    "(e) backward",
    "(f) zero_grad, and training without it",
    "(g) Optimiser steps",
    "(h) The DataLoader",
    "(i) Using a GPU",
    "Training the CNN classifier",
];

#[test]
fn blitz_answers_hold_in_quick_mode() {
    let run = QuickRun::new(env!("CARGO_BIN_EXE_pytorch-blitz"), "pytorch-blitz", &SECTIONS);
    let t = &run.transcript;
    // (a) a view shares storage, from_slice copies
    assert!(t.contains("the tensor holds [1.0, 2.0, 3.0, 0.0, 0.0, 0.0]"), "{t}");
    // (b) the blitz Net with one input channel and four classes
    assert!(t.contains("10 tensors, 61196 trainable parameters"), "{t}");
    // (d) the wrong flattening is a shape error
    assert!(t.contains("flattening the batch too fails"), "{t}");
    // (e) autograd equals the calculus
    assert!(number_after(t, "max difference") < 1e-12);
    // (f) gradients accumulate, and training without zero_grad ends worse
    assert!(t.contains("w.grad = [3.0]") && t.contains("w.grad = [6.0]"), "{t}");
    let with = number_after(t, "final loss with zero_grad");
    let without = number_after(t, ", without");
    assert!(without > 10.0 * with, "with {with}, without {without}");
    // (g) SGD's step is p - lr * grad
    assert!(number_after(t, "max |after - (before - lr * grad)| =") < 1e-6);
    // the CNN learns the drawn shapes
    let acc = number_after(t, "final test accuracy");
    assert!(acc > 80.0, "test accuracy {acc}%");
    run.assert_png("cnn.png");
}
