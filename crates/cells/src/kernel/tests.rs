//! The kernels against libtorch's own whole-sequence ops, `Tensor::lstm` and
//! `Tensor::gru` (one layer, batch first), on the same leaves: outputs and the
//! gradient of every input; their recurrent products against libtorch's `mm`.

use super::gru::GRU_SEQUENCE;
use super::lstm::LSTM_SEQUENCE;
use super::packed::{self, PACKS};
use super::real::Buf;
use super::sequence::{Dims, Recurrent, PACK_MIN_STEPS};
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

/// Runs `f`'s forward and backward on random f32 or f64 leaves (batch 3, `t`
/// steps, input 2, hidden 5) and counts the matrices packed on this thread.
fn packs_in_a_training_step<F: CustomFunction>(case: &Case<F>, kind: Kind, t: i64) -> usize {
    let opts = (kind, Device::Cpu);
    let (b, i, h, g) = (3, 2, 5, case.gates * 5);
    let mut leaves = vec![Tensor::randn([b, t, i], opts)];
    leaves.extend((0..case.states).map(|_| Tensor::randn([b, h], opts)));
    leaves.extend([Tensor::randn([g, i], opts), Tensor::randn([g, h], opts)]);
    let leaves: Vec<Tensor> = leaves.into_iter().map(|t| t.set_requires_grad(true)).collect();
    let before = PACKS.with(|c| c.get());
    let outs = apply(case.kernel, &leaves.iter().collect::<Vec<_>>(), 1 + case.states).unwrap();
    outs[0].sum(kind).backward();
    assert!(leaves[0].grad().defined());
    PACKS.with(|c| c.get()) - before
}

/// With MKL's packed GEMM in the loaded libtorch, an f32 kernel packs `W_hh`
/// once forward and once backward (not once per step); f64 never packs, nor
/// does a sequence too short to repay it.
#[test]
fn f32_kernels_pack_the_recurrent_weight_once_per_call() {
    let mkl = packed::mkl().is_some();
    if !mkl {
        eprintln!("SKIPPED: this libtorch exports no MKL packed GEMM; the kernels use its GEMM");
    }
    let want = if mkl { 2 } else { 0 };
    let t = PACK_MIN_STEPS as i64;
    assert_eq!(packs_in_a_training_step(&LSTM, Kind::Float, t), want, "LSTM f32");
    assert_eq!(packs_in_a_training_step(&GRU, Kind::Float, t), want, "GRU f32");
    assert_eq!(packs_in_a_training_step(&LSTM, Kind::Float, t - 1), 0, "LSTM f32, short");
    assert_eq!(packs_in_a_training_step(&GRU, Kind::Float, t - 1), 0, "GRU f32, short");
    assert_eq!(packs_in_a_training_step(&LSTM, Kind::Double, t), 0, "LSTM f64");
    assert_eq!(packs_in_a_training_step(&GRU, Kind::Double, t), 0, "GRU f64");
}

/// The recurrent products, packed or not, against libtorch's `mm` in f64 on
/// the same f32 values: `c = a op(W)` and `c += a op(W)` with `a` a strided
/// step of a `[B, T, K]` buffer, as the kernels pass it.
#[test]
fn recurrent_products_match_libtorch_mm() {
    let opts = (Kind::Float, Device::Cpu);
    // (batch, rows of W_hh, its columns): the coursework's LSTM, non-square
    // and odd, one row, and an empty batch
    for (b, g, h) in [(100, 128, 32), (7, 15, 5), (1, 6, 3), (0, 8, 4)] {
        let w = Buf::<f32>::of(&Tensor::randn([g, h], opts)).unwrap();
        for transpose in [true, false] {
            let d = Dims { b: b as usize, t: 32, h: h as usize };
            let rec =
                if transpose { Recurrent::forward(&w, d) } else { Recurrent::backward(&w, d) };
            // an empty batch has nothing to pack
            assert_eq!(rec.is_packed(), packed::mkl().is_some() && b > 0, "B {b}");
            let op_w = if transpose { w.tensor.tr() } else { w.tensor.shallow_clone() };
            let (k, n) = (op_w.size()[0], op_w.size()[1]);
            let steps = Tensor::randn([b, 3, k], opts);
            let a = steps.select(1, 1);
            for accumulate in [false, true] {
                let what =
                    format!("B {b}, W [{g}, {h}], transpose {transpose}, accumulate {accumulate}");
                let start = match accumulate {
                    true => Tensor::randn([b, n], opts),
                    // an overwrite must not read what was there
                    false => Tensor::full([b, n], f64::NAN, opts),
                };
                let mut c = Buf::<f32>::of(&start.copy()).unwrap();
                let packs = PACKS.with(|p| p.get());
                rec.product(&a, accumulate, &mut c);
                assert_eq!(PACKS.with(|p| p.get()), packs, "{what}: packed again per product");
                let d = |t: &Tensor| t.to_kind(Kind::Double);
                let mut want = d(&a).mm(&d(&op_w));
                // every term's size: f32 rounding is relative to it
                let mut scale = d(&a).abs().mm(&d(&op_w).abs());
                if accumulate {
                    want += d(&start);
                    scale += d(&start).abs();
                }
                let err = (d(&c.tensor) - &want).abs() - scale * 1e-5;
                assert_eq!(c.tensor.size(), [b, n], "{what}");
                assert!(
                    err.numel() == 0 || err.max().double_value(&[]) <= 0.0,
                    "{what}: beyond 1e-5 relative by {}",
                    err.max().double_value(&[])
                );
            }
        }
    }
}

/// MKL inside libtorch follows libtorch's intra-op thread count (tch's
/// `set_num_threads`, the CLI's `--threads`), so the packed products add no
/// threads of their own.
#[test]
fn mkl_follows_libtorchs_thread_count() {
    let Some(get) = mkl_max_threads() else {
        eprintln!("SKIPPED: this libtorch has no MKL");
        return;
    };
    let before = tch::get_num_threads();
    for n in [1, 2] {
        tch::set_num_threads(n);
        // SAFETY: MKL's `int mkl_get_max_threads(void)`.
        assert_eq!(unsafe { get() }, n, "MKL threads after set_num_threads({n})");
    }
    tch::set_num_threads(before);
}

fn mkl_max_threads() -> Option<unsafe extern "C" fn() -> std::ffi::c_int> {
    #[cfg(unix)]
    {
        // SAFETY: a NUL-terminated name, looked up in the loaded libraries.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mkl_get_max_threads".as_ptr()) };
        // SAFETY: MKL's signature for that name.
        (!p.is_null()).then(|| unsafe { std::mem::transmute(p) })
    }
    #[cfg(not(unix))]
    None
}
