//! The kernels against libtorch's own whole-sequence ops, `Tensor::lstm` and
//! `Tensor::gru` (one layer, batch first), on the same leaves: outputs and the
//! gradient of every input.

use super::gru::GRU_SEQUENCE;
use super::lstm::LSTM_SEQUENCE;
use super::{apply, CustomFunction};
use tch::{Device, Kind, Tensor};

/// A kernel, its gate count and state count, and libtorch's op for it.
struct Case<F: CustomFunction> {
    kernel: &'static F,
    gates: i64,
    states: usize,
    /// `(leaves, bias) -> outputs` through libtorch.
    reference: fn(&[Tensor], bool) -> Vec<Tensor>,
}

fn lstm_reference(l: &[Tensor], bias: bool) -> Vec<Tensor> {
    let hx = [l[1].unsqueeze(0), l[2].unsqueeze(0)];
    let (out, h, c) = l[0].lstm(&hx, &l[3..], bias, 1, 0.0, true, false, true);
    vec![out, h.squeeze_dim(0), c.squeeze_dim(0)]
}

fn gru_reference(l: &[Tensor], bias: bool) -> Vec<Tensor> {
    let (out, h) = l[0].gru(&l[1].unsqueeze(0), &l[2..], bias, 1, 0.0, true, false, true);
    vec![out, h.squeeze_dim(0)]
}

const LSTM: Case<super::lstm::LstmSequence> =
    Case { kernel: &LSTM_SEQUENCE, gates: 4, states: 2, reference: lstm_reference };
const GRU: Case<super::gru::GruSequence> =
    Case { kernel: &GRU_SEQUENCE, gates: 3, states: 1, reference: gru_reference };

fn check<F: CustomFunction>(
    case: &Case<F>,
    kind: Kind,
    bias: bool,
    (b, t, i, h): (i64, i64, i64, i64),
    tol: f64,
) {
    let opts = (kind, Device::Cpu);
    let g = case.gates * h;
    let mut leaves = vec![Tensor::randn([b, t, i], opts)];
    leaves.extend((0..case.states).map(|_| Tensor::randn([b, h], opts) * 0.5));
    leaves.extend([Tensor::randn([g, i], opts) * 0.4, Tensor::randn([g, h], opts) * 0.4]);
    if bias {
        leaves.extend([Tensor::randn([g], opts) * 0.3, Tensor::randn([g], opts) * 0.3]);
    }
    let n_out = 1 + case.states;
    let weights: Vec<Tensor> = (0..n_out)
        .map(|k| Tensor::randn(if k == 0 { vec![b, t, h] } else { vec![b, h] }, opts))
        .collect();
    let run = |ours: bool| -> (Vec<Tensor>, Vec<Tensor>) {
        let l: Vec<Tensor> = leaves.iter().map(|t| t.copy().set_requires_grad(true)).collect();
        let outs = if ours {
            apply(case.kernel, &l.iter().collect::<Vec<_>>(), n_out).unwrap()
        } else {
            (case.reference)(&l, bias)
        };
        let loss = outs
            .iter()
            .zip(&weights)
            .map(|(o, w)| (o * w).sum(kind))
            .fold(Tensor::zeros([], opts), |a, b| a + b);
        loss.backward();
        (outs.iter().map(Tensor::detach).collect(), l.iter().map(Tensor::grad).collect())
    };
    let ((out, grads), (want, want_grads)) = (run(true), run(false));
    let what = format!("{} gates, {kind:?}, bias {bias}, {:?}", case.gates, (b, t, i, h));
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().to_kind(Kind::Double).double_value(&[]);
    for (k, (o, w)) in out.iter().zip(&want).enumerate() {
        assert!(diff(o, w) < tol, "{what}: output {k} differs by {}", diff(o, w));
    }
    assert_eq!(grads.len(), want_grads.len());
    for (k, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
        // weight gradients sum B*T terms: compared relative to their size
        let size = w.abs().max().double_value(&[]);
        assert!(size > 1e-3, "{what}: gradient of input {k} is ~0; the test is blind");
        let d = diff(g, w);
        assert!(d < tol * size.max(1.0), "{what}: gradient of input {k} differs by {d} of {size}");
    }
}

fn check_all<F: CustomFunction>(case: &Case<F>) {
    for bias in [true, false] {
        check(case, Kind::Double, bias, (5, 7, 3, 4), 1e-12);
        // the coursework's size
        check(case, Kind::Float, bias, (100, 32, 20, 32), 2e-5);
        // one step, and a batch of one
        check(case, Kind::Double, bias, (1, 1, 2, 3), 1e-12);
    }
}

#[test]
fn lstm_matches_libtorch_in_values_and_gradients() {
    check_all(&LSTM);
}

#[test]
fn gru_matches_libtorch_in_values_and_gradients() {
    check_all(&GRU);
}

#[test]
fn double_backward_is_refused_not_wrong() {
    let opts = (Kind::Double, Device::Cpu);
    let x = Tensor::randn([2, 3, 4], opts).set_requires_grad(true);
    let s = Tensor::zeros([2, 5], opts);
    let (w_ih, w_hh) = (Tensor::randn([15, 4], opts), Tensor::randn([15, 5], opts));
    let out = apply(&GRU_SEQUENCE, &[&x, &s, &w_ih, &w_hh], 2).unwrap();
    let loss = out[0].sum(Kind::Double);
    let e = Tensor::f_run_backward(&[&loss], &[&x], true, true).unwrap_err().to_string();
    assert!(e.contains("no double backward"), "{e}");
    // a plain backward of the same graph works
    assert_eq!(Tensor::run_backward(&[&loss], &[&x], false, false)[0].size(), [2, 3, 4]);
}

#[test]
fn bad_inputs_are_errors_not_crashes() {
    let x = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
    let w = Tensor::zeros([8, 2], (Kind::Double, Device::Cpu));
    let e = apply(&LSTM_SEQUENCE, &[&x, &x, &x, &w, &w], 3).unwrap_err();
    assert!(e.contains("Double"), "{e}");
    let e = apply(&LSTM_SEQUENCE, &[&x, &x], 3).unwrap_err();
    assert!(e.contains("2 inputs"), "{e}");
    let w = Tensor::zeros([8, 2], (Kind::Float, Device::Cpu));
    let e = apply(&GRU_SEQUENCE, &[&x, &x, &w, &w], 2).unwrap_err();
    assert!(e.contains("do not fit"), "{e}");
}
