//! The sequence kernels keep PyTorch's autograd guarantees: the graph of a
//! finished step is freed, a saved tensor changed in place is an error at
//! backward, a second backward without `retain_graph` is refused, and
//! `retain_graph` works. Also that `seq` on the CPU really runs the kernel,
//! and that bad shapes are errors. Error wording is libtorch's own.

use cells::autograd::{grad_fn_name, WeakTensor};
use cells::{CellError, GRUCell, LSTMCell, LstmState, RecurrentCell};
use tch::{nn, Device, Kind, Tensor};

const KERNEL: &str = "RustFunction";

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn lstm(vs: &nn::VarStore) -> LSTMCell {
    LSTMCell::new(vs.root() / "lstm", 3, 4, true)
}

fn gru(vs: &nn::VarStore) -> GRUCell {
    GRUCell::new(vs.root() / "gru", 3, 4, true)
}

#[test]
fn seq_on_the_cpu_runs_the_kernel_and_seq_steps_does_not() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (l, g) = (lstm(&vs), gru(&vs));
    for kind in [Kind::Float, Kind::Double] {
        vs.root().set_kind(kind);
        let x = randn(&[2, 5, 3], kind);
        let name = |t: &Tensor| grad_fn_name(t).unwrap_or_default();
        for (out, what) in
            [(l.seq(&x, None).0, "LSTMCell::seq"), (g.seq(&x, None).0, "GRUCell::seq")]
        {
            assert!(name(&out).contains(KERNEL), "{what} {kind:?} ran {:?}", name(&out));
        }
        for out in [l.seq_steps(&x, None).0, g.seq_steps(&x, None).0] {
            let n = name(&out);
            assert!(!n.is_empty() && !n.contains(KERNEL), "seq_steps ran {n:?}");
        }
    }
    // no graph at all without gradients
    tch::no_grad(|| {
        assert_eq!(grad_fn_name(&l.seq(&randn(&[2, 5, 3], Kind::Double), None).0), None)
    });
}

/// `make` runs a forward and hands back the output to watch; when `backward`,
/// the loss is differentiated first. Every strong reference is gone after.
fn graph_is_freed(make: impl Fn() -> (Tensor, Tensor), backward: bool) -> bool {
    let weak = {
        let (out, loss) = make();
        assert!(grad_fn_name(&out).unwrap_or_default().contains(KERNEL));
        if backward {
            loss.backward();
        }
        WeakTensor::new(&out)
    };
    !weak.is_alive()
}

#[test]
fn the_graph_of_a_finished_step_is_freed() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (l, g) = (lstm(&vs), gru(&vs));
    let l2 = LSTMCell::new(vs.root() / "lstm2", 4, 4, true);
    let x = || randn(&[2, 5, 3], Kind::Float).set_requires_grad(true);
    let lstm_step = || {
        let (out, s) = l.seq(&x(), None);
        let loss = out.sum(Kind::Float) + s.c.sum(Kind::Float);
        (out, loss)
    };
    let gru_step = || {
        let (out, h) = g.seq(&x(), None);
        let loss = out.sum(Kind::Float) + h.sum(Kind::Float);
        (out, loss)
    };
    // two layers: the first layer's output is the second node's saved input
    let stacked = || {
        let (first, _) = l.seq(&x(), None);
        let (out, _) = l2.seq(&first, None);
        (first, out.sum(Kind::Float))
    };
    for backward in [true, false] {
        assert!(graph_is_freed(lstm_step, backward), "LSTM graph alive (backward {backward})");
        assert!(graph_is_freed(gru_step, backward), "GRU graph alive (backward {backward})");
        assert!(graph_is_freed(stacked, backward), "stacked graph alive (backward {backward})");
    }
}

/// Runs forward, then `change`, then backward; the backward's error.
fn backward_after(
    change: impl FnOnce(&Tensor, &LstmState, &LSTMCell),
    x: Tensor,
    state: LstmState,
) -> String {
    let vs = nn::VarStore::new(Device::Cpu);
    let cell = lstm(&vs);
    let (out, _) = cell.seq(&x, Some(state.clone()));
    assert!(grad_fn_name(&out).unwrap_or_default().contains(KERNEL));
    change(&x, &state, &cell);
    let loss = out.sum(Kind::Float);
    let w = &cell.weights().weight_ih;
    match Tensor::f_run_backward(&[&loss], &[w], false, false) {
        Ok(_) => "no error".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_saved_tensor_modified_in_place_is_an_error_at_backward() {
    let state = || LstmState { h: randn(&[2, 4], Kind::Float), c: randn(&[2, 4], Kind::Float) };
    let x = || randn(&[2, 5, 3], Kind::Float);
    const WANT: &str = "modified by an inplace operation";
    // `+=` on a tensor is its in-place add (`add_`), as in PyTorch
    let bump = |t: &Tensor| {
        let mut t = t.shallow_clone();
        tch::no_grad(|| t += 0.5);
    };
    type Change = Box<dyn FnOnce(&Tensor, &LstmState, &LSTMCell)>;
    let cases: [(&str, Change); 5] = [
        ("x", Box::new(move |x, _, _| bump(x))),
        ("h0", Box::new(move |_, s, _| bump(&s.h))),
        ("c0", Box::new(|_, s, _| drop(s.c.shallow_clone().zero_()))),
        ("weight_hh", Box::new(move |_, _, c| bump(&c.weights().weight_hh))),
        ("bias_ih", Box::new(move |_, _, c| bump(c.weights().bias_ih.as_ref().unwrap()))),
    ];
    for (what, change) in cases {
        let e = backward_after(change, x(), state());
        assert!(e.contains(WANT), "{what} changed in place: {e}");
    }
    // unchanged, the same backward succeeds
    assert_eq!(backward_after(|_, _, _| (), x(), state()), "no error");
}

#[test]
fn a_second_backward_is_refused_unless_the_graph_is_retained() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (l, g) = (lstm(&vs), gru(&vs));
    let w = [&l.weights().weight_hh, &g.weights().weight_hh];
    let x = randn(&[2, 5, 3], Kind::Double);
    vs.root().set_kind(Kind::Double);
    let loss = || l.seq(&x, None).0.sum(Kind::Double) + g.seq(&x, None).0.sum(Kind::Double);

    let once = loss();
    Tensor::run_backward(&[&once], &w, false, false);
    let e = Tensor::f_run_backward(&[&once], &w, false, false).unwrap_err().to_string();
    assert!(e.contains("Trying to backward through the graph a second time"), "{e}");

    let kept = loss();
    let first = Tensor::run_backward(&[&kept], &w, true, false);
    let second = Tensor::run_backward(&[&kept], &w, false, false);
    for (a, b) in first.iter().zip(&second) {
        assert!(a.abs().sum(Kind::Double).double_value(&[]) > 0.0);
        assert!(a.equal(b), "retain_graph: the second backward differs");
    }
}

#[test]
fn an_empty_batch_runs_and_differentiates() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (l, g) = (lstm(&vs), gru(&vs));
    let x = randn(&[0, 5, 3], Kind::Float).set_requires_grad(true);
    let (out, s) = l.seq(&x, None);
    let (out_g, h) = g.seq(&x, None);
    assert_eq!((out.size(), s.h.size(), s.c.size()), (vec![0, 5, 4], vec![0, 4], vec![0, 4]));
    assert_eq!((out_g.size(), h.size()), (vec![0, 5, 4], vec![0, 4]));
    (out.sum(Kind::Float) + out_g.sum(Kind::Float)).backward();
    assert_eq!(x.grad().size(), [0, 5, 3]);
    for w in [&l.weights().weight_ih, &g.weights().weight_hh] {
        assert_eq!(w.grad().size(), w.size());
        assert_eq!(w.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}

#[test]
fn bad_shapes_are_errors_that_name_the_tensor() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (l, g) = (lstm(&vs), gru(&vs));
    let x = randn(&[2, 5, 3], Kind::Float);
    let state =
        |h: &[i64], c: &[i64]| LstmState { h: randn(h, Kind::Float), c: randn(c, Kind::Float) };
    let err = |r: Result<(Tensor, LstmState), CellError>| r.map(|_| ()).unwrap_err().to_string();
    let e = err(l.f_seq(&x, Some(state(&[3, 4], &[2, 4]))));
    assert!(e.contains("h0 has shape [3, 4]") && e.contains("[2, 4]"), "{e}");
    let e = err(l.f_seq(&x, Some(state(&[2, 4], &[2, 5]))));
    assert!(e.contains("c0 has shape [2, 5]"), "{e}");
    // a [1, H] state would broadcast in the step-by-step ops: refused too
    let e = err(l.f_seq(&x, Some(state(&[1, 4], &[1, 4]))));
    assert!(e.contains("h0 has shape [1, 4]"), "{e}");
    let e = g.f_seq(&x, Some(randn(&[2], Kind::Float))).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("h0 has shape [2]"), "{e}");
    let e = err(l.f_seq(&randn(&[2, 5, 7], Kind::Float), None));
    assert!(e.contains("input has shape [2, 5, 7]") && e.contains("3]"), "{e}");
    let e = err(l.f_seq(&randn(&[5, 3], Kind::Float), None));
    assert!(e.contains("input has shape [5, 3]"), "{e}");
    let e = g.f_seq(&randn(&[2, 0, 3], Kind::Float), None).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("at least one step"), "{e}");
    // seq panics with the same message, as tch's ops do
    let p = std::panic::catch_unwind(|| l.seq(&x, Some(state(&[3, 4], &[2, 4])))).unwrap_err();
    assert!(p.downcast_ref::<String>().unwrap().contains("h0 has shape [3, 4]"));
}
