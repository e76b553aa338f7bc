//! Gradient parity of the hand-written cells with libtorch's own kernels.
//!
//! For every cell kind, with and without bias, in f32 and f64:
//! - one step equals `Tensor::lstm_cell` / `gru_cell` / `rnn_tanh_cell` /
//!   `rnn_relu_cell` given the same weights;
//! - through `STEPS` unrolled steps (back-propagation through time), the
//!   gradients of a scalar loss with respect to the input sequence, the initial
//!   state and every parameter equal the gradients through libtorch's cells;
//! - in f64, those gradients equal central finite differences;
//! - the readable gate-method path equals the fused fast path;
//! - both ways of running a sequence pass: `seq` (on the CPU, the LSTM's
//!   and GRU's hand-written sequence kernels with their own backward) and `seq_steps`
//!   (step by step through autograd).
//!
//! Tolerances: f64 1e-10, f32 2e-5 (absolute on values of order one; the
//! finite-difference check allows 1e-7, the truncation error of h = 1e-6).

use cells::{BasicRNNCell, GRUCell, LSTMCell, LstmState, Nonlinearity, RecurrentCell};
use tch::{nn, Cuda, Device, Kind, Tensor};

const BATCH: i64 = 3;
const INPUT: i64 = 5;
const HIDDEN: i64 = 4;
const STEPS: i64 = 6;

/// What the generic checks need from each cell kind.
trait Case: RecurrentCell + Sized {
    const NAME: &'static str;
    fn build(p: &nn::Path, i: i64, h: i64, bias: bool, nl: Nonlinearity) -> Self;
    fn to_tensors(s: &Self::State) -> Vec<Tensor>;
    fn from_tensors(t: &[Tensor]) -> Self::State;
    /// libtorch's own cell: one step from `state` with the given parameters.
    fn reference(&self, x: &Tensor, state: &[Tensor], w: &[Tensor]) -> Vec<Tensor>;
    /// The coursework's gate-by-gate step.
    fn gates_path(&self, x: &Tensor, s: &Self::State) -> Self::State;
}

fn biases(w: &[Tensor]) -> (Option<&Tensor>, Option<&Tensor>) {
    (w.get(2), w.get(3))
}

impl Case for LSTMCell {
    const NAME: &'static str = "LSTMCell";
    fn build(p: &nn::Path, i: i64, h: i64, bias: bool, _: Nonlinearity) -> Self {
        LSTMCell::new(p, i, h, bias)
    }
    fn to_tensors(s: &LstmState) -> Vec<Tensor> {
        vec![s.h.shallow_clone(), s.c.shallow_clone()]
    }
    fn from_tensors(t: &[Tensor]) -> LstmState {
        LstmState { h: t[0].shallow_clone(), c: t[1].shallow_clone() }
    }
    fn reference(&self, x: &Tensor, s: &[Tensor], w: &[Tensor]) -> Vec<Tensor> {
        let (b_ih, b_hh) = biases(w);
        let hx: Vec<&Tensor> = s.iter().collect();
        let (h, c) = x.lstm_cell(&hx, &w[0], &w[1], b_ih, b_hh);
        vec![h, c]
    }
    fn gates_path(&self, x: &Tensor, s: &LstmState) -> LstmState {
        self.forward_gates(x, s)
    }
}

impl Case for GRUCell {
    const NAME: &'static str = "GRUCell";
    fn build(p: &nn::Path, i: i64, h: i64, bias: bool, _: Nonlinearity) -> Self {
        GRUCell::new(p, i, h, bias)
    }
    fn to_tensors(s: &Tensor) -> Vec<Tensor> {
        vec![s.shallow_clone()]
    }
    fn from_tensors(t: &[Tensor]) -> Tensor {
        t[0].shallow_clone()
    }
    fn reference(&self, x: &Tensor, s: &[Tensor], w: &[Tensor]) -> Vec<Tensor> {
        let (b_ih, b_hh) = biases(w);
        vec![x.gru_cell(&s[0], &w[0], &w[1], b_ih, b_hh)]
    }
    fn gates_path(&self, x: &Tensor, s: &Tensor) -> Tensor {
        self.forward_gates(x, s)
    }
}

impl Case for BasicRNNCell {
    const NAME: &'static str = "BasicRNNCell";
    fn build(p: &nn::Path, i: i64, h: i64, bias: bool, nl: Nonlinearity) -> Self {
        BasicRNNCell::new(p, i, h, bias, nl)
    }
    fn to_tensors(s: &Tensor) -> Vec<Tensor> {
        vec![s.shallow_clone()]
    }
    fn from_tensors(t: &[Tensor]) -> Tensor {
        t[0].shallow_clone()
    }
    fn reference(&self, x: &Tensor, s: &[Tensor], w: &[Tensor]) -> Vec<Tensor> {
        let (b_ih, b_hh) = biases(w);
        vec![match self.nonlinearity() {
            Nonlinearity::Tanh => x.rnn_tanh_cell(&s[0], &w[0], &w[1], b_ih, b_hh),
            Nonlinearity::Relu => x.rnn_relu_cell(&s[0], &w[0], &w[1], b_ih, b_hh),
        }]
    }
    fn gates_path(&self, x: &Tensor, s: &Tensor) -> Tensor {
        self.forward_gates(x, s)
    }
}

/// A cell with its own variable store, plus a fixed input sequence and state.
struct Fixture<C: Case> {
    _vs: nn::VarStore,
    cell: C,
    x: Tensor,
    state: Vec<Tensor>,
    /// Fixed weights for the loss `sum(out * r_out) + sum(final_i * r_state_i)`,
    /// so every output element gets a different gradient.
    r_out: Tensor,
    r_state: Vec<Tensor>,
}

impl<C: Case> Fixture<C> {
    fn new(kind: Kind, device: Device, bias: bool, nl: Nonlinearity, seed: i64) -> Self {
        tch::manual_seed(seed);
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let cell = C::build(&vs.root(), INPUT, HIDDEN, bias, nl);
        let opts = (kind, device);
        let x = Tensor::randn([BATCH, STEPS, INPUT], opts);
        let n_state = C::to_tensors(&cell.zero_state(1)).len();
        let state = (0..n_state).map(|_| Tensor::randn([BATCH, HIDDEN], opts) * 0.5).collect();
        let r_out = Tensor::randn([BATCH, STEPS, HIDDEN], opts);
        let r_state = (0..n_state).map(|_| Tensor::randn([BATCH, HIDDEN], opts)).collect();
        Self { _vs: vs, cell, x, state, r_out, r_state }
    }

    fn params(&self) -> Vec<Tensor> {
        self.cell.weights().parameters().into_iter().map(Tensor::shallow_clone).collect()
    }

    fn loss(&self, out: &Tensor, last: &[Tensor]) -> Tensor {
        let mut loss = (out * &self.r_out).sum(out.kind());
        for (s, r) in last.iter().zip(&self.r_state) {
            loss += (s * r).sum(s.kind());
        }
        loss
    }

    /// Loss through the hand-written cell's `seq` (or `seq_steps`), with
    /// gradients for the input, the initial state and every parameter (in
    /// that order).
    fn ours(&self, steps: bool) -> (Tensor, Vec<Tensor>) {
        let x = self.x.detach().set_requires_grad(true);
        let s0: Vec<Tensor> =
            self.state.iter().map(|s| s.detach().set_requires_grad(true)).collect();
        let mut params = self.params();
        for p in &mut params {
            p.zero_grad();
        }
        let run = if steps { C::seq_steps } else { C::seq };
        let (out, last) = run(&self.cell, &x, Some(C::from_tensors(&s0)));
        let loss = self.loss(&out, &C::to_tensors(&last));
        loss.backward();
        let grads = std::iter::once(&x).chain(&s0).chain(&params).map(Tensor::grad).collect();
        (loss.detach(), grads)
    }

    /// The same loss through libtorch's cell, unrolled step by step, with
    /// gradients for copies of the same leaves.
    fn reference(&self) -> (Tensor, Vec<Tensor>) {
        let x = self.x.detach().set_requires_grad(true);
        let s0: Vec<Tensor> =
            self.state.iter().map(|s| s.detach().set_requires_grad(true)).collect();
        let w: Vec<Tensor> =
            self.params().iter().map(|p| p.detach().copy().set_requires_grad(true)).collect();
        let mut s: Vec<Tensor> = s0.iter().map(Tensor::shallow_clone).collect();
        let mut outs = Vec::new();
        for t in 0..STEPS {
            s = self.cell.reference(&x.select(1, t), &s, &w);
            outs.push(s[0].shallow_clone());
        }
        let loss = self.loss(&Tensor::stack(&outs, 1), &s);
        loss.backward();
        let grads = std::iter::once(&x).chain(&s0).chain(&w).map(Tensor::grad).collect();
        (loss.detach(), grads)
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().to_kind(Kind::Double).double_value(&[])
}

fn tolerance(kind: Kind) -> f64 {
    match kind {
        Kind::Double => 1e-10,
        _ => 2e-5,
    }
}

fn grad_names<C: Case>(f: &Fixture<C>) -> Vec<String> {
    let mut names = vec!["input".to_owned()];
    names.extend((0..f.state.len()).map(|i| ["h0", "c0"][i].to_owned()));
    names.extend(
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .iter()
            .take(f.params().len())
            .map(|s| s.to_string()),
    );
    names
}

/// Forward, gate path and BPTT gradients against libtorch for one configuration.
fn check_parity<C: Case>(kind: Kind, device: Device, bias: bool, nl: Nonlinearity) {
    let f = Fixture::<C>::new(kind, device, bias, nl, 17);
    let tol = tolerance(kind);
    let what = format!("{} {kind:?} {device:?} bias={bias} {nl:?}", C::NAME);

    // One step, fast path and gate path, against libtorch.
    let s0 = C::from_tensors(&f.state);
    let x0 = f.x.select(1, 0);
    let ours = C::to_tensors(&tch::no_grad(|| f.cell.step(&x0, &s0)));
    let gates = C::to_tensors(&tch::no_grad(|| f.cell.gates_path(&x0, &s0)));
    let reference = tch::no_grad(|| f.cell.reference(&x0, &f.state, &f.params()));
    for ((o, g), r) in ours.iter().zip(&gates).zip(&reference) {
        let d = max_abs_diff(o, r);
        assert!(d <= tol, "{what}: one step differs from libtorch by {d:e} > {tol:e}");
        let d = max_abs_diff(g, o);
        assert!(d <= tol, "{what}: gate path differs from fast path by {d:e} > {tol:e}");
    }

    // Unrolled sequence: loss and every gradient, both ways of running it.
    let (ref_loss, ref_grads) = f.reference();
    let scale = ref_loss.abs().to_kind(Kind::Double).double_value(&[]).max(1.0);
    for steps in [false, true] {
        let what = format!("{what} {}", if steps { "seq_steps" } else { "seq" });
        let (loss, grads) = f.ours(steps);
        let d = max_abs_diff(&loss, &ref_loss);
        assert!(d <= tol * scale, "{what}: loss over {STEPS} steps differs by {d:e}");
        assert_eq!(grads.len(), ref_grads.len());
        for ((g, r), name) in grads.iter().zip(&ref_grads).zip(grad_names(&f)) {
            assert!(r.defined(), "{what}: libtorch gave no gradient for {name}");
            let d = max_abs_diff(g, r);
            assert!(d <= tol, "{what}: d loss / d {name} differs from libtorch by {d:e} > {tol:e}");
            // Not vacuous: every gradient carries signal.
            let norm = r.abs().max().to_kind(Kind::Double).double_value(&[]);
            assert!(norm > 1e-3, "{what}: gradient of {name} is ~0 ({norm:e}); the test is blind");
        }
    }
}

/// Central finite differences in f64 of the hand-written cell's loss, for
/// every element of the input, the initial state and every parameter.
fn check_finite_differences<C: Case>(bias: bool, nl: Nonlinearity) {
    let f = Fixture::<C>::new(Kind::Double, Device::Cpu, bias, nl, 29);
    let what = format!("{} bias={bias} {nl:?}", C::NAME);
    let (_, grads) = f.ours(false);
    let eps = 1e-6;
    let loss_at = |x: &Tensor, s: &[Tensor]| -> f64 {
        tch::no_grad(|| {
            let (out, last) = f.cell.seq(x, Some(C::from_tensors(s)));
            f.loss(&out, &C::to_tensors(&last)).double_value(&[])
        })
    };
    let mut leaves: Vec<Tensor> = vec![f.x.shallow_clone()];
    leaves.extend(f.state.iter().map(Tensor::shallow_clone));
    leaves.extend(f.params());
    for ((leaf, g), name) in leaves.iter().zip(&grads).zip(grad_names(&f)) {
        let flat = leaf.view([-1]);
        let g = g.view([-1]);
        for i in 0..flat.size()[0] {
            let orig = flat.double_value(&[i]);
            let at = |v: f64| {
                let _ = tch::no_grad(|| flat.get(i).fill_(v));
                loss_at(&f.x, &f.state)
            };
            let numeric = (at(orig + eps) - at(orig - eps)) / (2.0 * eps);
            at(orig);
            let analytic = g.double_value(&[i]);
            let d = (numeric - analytic).abs();
            assert!(
                d <= 1e-7 * analytic.abs().max(1.0),
                "{what}: d loss / d {name}[{i}]: autograd {analytic} vs finite difference {numeric}"
            );
        }
    }
}

fn devices() -> Vec<Device> {
    if Cuda::is_available() {
        vec![Device::Cpu, Device::Cuda(0)]
    } else {
        eprintln!("CUDA parity skipped: no CUDA device (Cuda::is_available() is false)");
        vec![Device::Cpu]
    }
}

fn all_parity<C: Case>(nl: Nonlinearity) {
    for device in devices() {
        for kind in [Kind::Float, Kind::Double] {
            for bias in [true, false] {
                check_parity::<C>(kind, device, bias, nl);
            }
        }
    }
}

#[test]
fn lstm_matches_libtorch() {
    all_parity::<LSTMCell>(Nonlinearity::Tanh);
}

#[test]
fn gru_matches_libtorch() {
    all_parity::<GRUCell>(Nonlinearity::Tanh);
}

#[test]
fn rnn_tanh_matches_libtorch() {
    all_parity::<BasicRNNCell>(Nonlinearity::Tanh);
}

#[test]
fn rnn_relu_matches_libtorch() {
    all_parity::<BasicRNNCell>(Nonlinearity::Relu);
}

#[test]
fn finite_differences_f64() {
    for bias in [true, false] {
        check_finite_differences::<LSTMCell>(bias, Nonlinearity::Tanh);
        check_finite_differences::<GRUCell>(bias, Nonlinearity::Tanh);
        check_finite_differences::<BasicRNNCell>(bias, Nonlinearity::Tanh);
        check_finite_differences::<BasicRNNCell>(bias, Nonlinearity::Relu);
    }
}

/// `init_forget_bias` writes the chunk libtorch's `lstm_cell` uses as the
/// forget gate: with every weight and other bias at 0, one step of libtorch's
/// cell keeps `σ(1) c` of the memory and adds nothing (`i g = 0.5 tanh(0)`).
/// The other gates' biases are left as drawn.
#[test]
fn forget_bias_sets_libtorch_forget_gate() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (i, h) = (3, 5);
    let cell = LSTMCell::new(vs.root(), i, h, true);
    let w = cell.weights();
    let (b_ih, b_hh) = (w.bias_ih.as_ref().unwrap(), w.bias_hh.as_ref().unwrap());
    let (drawn_ih, drawn_hh) = (b_ih.copy(), b_hh.copy());
    cell.init_forget_bias(1.0);
    let others = |b: &Tensor| Tensor::cat(&[b.narrow(0, 0, h), b.narrow(0, 2 * h, 2 * h)], 0);
    assert!(others(b_ih).equal(&others(&drawn_ih)) && others(b_hh).equal(&others(&drawn_hh)));
    assert!(b_ih.narrow(0, h, h).eq(1.0).all().int64_value(&[]) == 1);
    assert!(b_hh.narrow(0, h, h).eq(0.0).all().int64_value(&[]) == 1);

    tch::no_grad(|| {
        for t in [&w.weight_ih, &w.weight_hh] {
            let _ = t.shallow_clone().zero_();
        }
        for b in [b_ih, b_hh] {
            let _ = b.narrow(0, 0, h).zero_();
            let _ = b.narrow(0, 2 * h, 2 * h).zero_();
        }
    });
    let opts = (Kind::Float, Device::Cpu);
    let (x, h0, c0) =
        (Tensor::randn([2, i], opts), Tensor::randn([2, h], opts), Tensor::randn([2, h], opts));
    let (_, c1) = x.lstm_cell(&[&h0, &c0], &w.weight_ih, &w.weight_hh, Some(b_ih), Some(b_hh));
    let expected = &c0 * (1.0f64 / (1.0 + (-1.0f64).exp()));
    assert!(max_abs_diff(&c1, &expected) < 1e-6, "libtorch's forget gate is not the chunk set");
    // and our own step agrees
    let ours = cell.step(&x, &LstmState { h: h0, c: c0 });
    assert!(max_abs_diff(&ours.c, &expected) < 1e-6);
}
