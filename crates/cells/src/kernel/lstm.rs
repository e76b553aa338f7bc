//! The LSTM over a whole sequence with its backward written out (BPTT), the
//! same equations as [`crate::LSTMCell`]'s step and PyTorch's `nn.LSTM`.
//!
//! Forward, for one layer: one product projects every step's input
//! (`x W_ih^T + b_ih + b_hh`, `[B*T, 4H]`); then per step one product adds
//! `h W_hh^T` and a loop applies the gates in place, keeping the activated
//! gates, `c` and `tanh(c)` for the backward.
//!
//! Backward, from the last step to the first, with `dh` and `dc` flowing back:
//!
//! ```text
//! dc += dh ⊙ o ⊙ (1 - tanh²c)
//! do = dh ⊙ tanh c        di = dc ⊙ g        dg = dc ⊙ i        df = dc ⊙ c_prev
//! pre-activation: da_i = di i(1-i), da_f = df f(1-f), da_g = dg (1-g²), da_o = do o(1-o)
//! dh_prev = da W_hh       dc_prev = dc ⊙ f
//! ```
//!
//! and after the loop three products over all steps at once:
//! `dW_ih = da^T x`, `dW_hh = da^T h_prev`, `dx = da W_ih`; both biases get the
//! column sums of `da`.

use super::real::Buf;
use super::{CustomFunction, Real};
use tch::{Kind, Tensor};

/// Inputs `[x [B,T,I], h0 [B,H], c0 [B,H], weight_ih [4H,I], weight_hh [4H,H]]`
/// and, with bias, `bias_ih [4H], bias_hh [4H]`; outputs
/// `[out [B,T,H], h_T [B,H], c_T [B,H]]`.
pub(crate) struct LstmSequence;

pub(crate) static LSTM_SEQUENCE: LstmSequence = LstmSequence;

/// Sizes read off the inputs.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    i: usize,
    h: usize,
}

impl Dims {
    fn of(x: &Tensor, w_hh: &Tensor) -> Result<Self, String> {
        let (xs, ws) = (x.size(), w_hh.size());
        if xs.len() != 3 || ws.len() != 2 || ws[0] != 4 * ws[1] {
            return Err(format!("LSTM kernel: input {xs:?} and weight_hh {ws:?} do not fit"));
        }
        let u = |v: i64| v as usize;
        Ok(Self { b: u(xs[0]), t: u(xs[1]), i: u(xs[2]), h: u(ws[1]) })
    }
}

impl CustomFunction for LstmSequence {
    fn forward(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
        match inputs[0].kind() {
            Kind::Float => forward::<f32>(inputs),
            Kind::Double => forward::<f64>(inputs),
            k => Err(format!("LSTM kernel: no kernel for {k:?}")),
        }
    }

    fn backward(
        &self,
        saved: &[Tensor],
        grads: &[Tensor],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String> {
        match saved[0].kind() {
            Kind::Float => backward::<f32>(saved, grads, n_inputs),
            Kind::Double => backward::<f64>(saved, grads, n_inputs),
            k => Err(format!("LSTM kernel: no kernel for {k:?}")),
        }
    }
}

fn forward<T: Real>(inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
    if inputs.len() != 5 && inputs.len() != 7 {
        return Err(format!("LSTM kernel: {} inputs, expected 5 or 7", inputs.len()));
    }
    let bufs = inputs.iter().map(Buf::<T>::of).collect::<Result<Vec<_>, _>>()?;
    let (x, h0, c0, w_hh) = (&bufs[0], &bufs[1], &bufs[2], &bufs[4]);
    let Dims { b, t, i, h } = Dims::of(&x.tensor, &w_hh.tensor)?;
    let (bi, ti, ii, hi) = (b as i64, t as i64, i as i64, h as i64);
    let g4 = 4 * h;

    // gates[b, t, :] = x[b, t] W_ih^T + b_ih + b_hh: one product for all steps
    let x2 = x.tensor.view([bi * ti, ii]);
    let w_ih_t = bufs[3].tensor.tr();
    let projected = match &bufs[5..] {
        [b_ih, b_hh] => (&b_ih.tensor + &b_hh.tensor).addmm(&x2, &w_ih_t),
        _ => x2.mm(&w_ih_t),
    };
    let mut gates = Buf::<T>::of(&projected.view([bi, ti, 4 * hi]))?;
    let (mut out, mut cell, mut tanh_c) = (
        Buf::<T>::empty(&[bi, ti, hi]),
        Buf::<T>::empty(&[bi, ti, hi]),
        Buf::<T>::empty(&[bi, ti, hi]),
    );
    for s in 0..t {
        // gates[:, s] += h_prev W_hh^T
        let (h_prev, rs) = match s {
            0 => (h0.ptr(), h),
            _ => (unsafe { out.ptr().add((s - 1) * h) }, t * h),
        };
        // SAFETY: the strides address rows s (and s - 1) of buffers of the
        // shapes made above; gates and out do not overlap.
        unsafe {
            T::gemm(
                b,
                h,
                g4,
                T::ONE,
                (h_prev, rs as isize, 1),
                (w_hh.ptr(), 1, h as isize),
                T::ONE,
                (gates.ptr_mut().add(s * g4), (t * g4) as isize, 1),
            );
        }
        let rows = Rows { b, t, h, s };
        let (gs, cs, tcs, hs) =
            (gates.slice_mut(), cell.slice_mut(), tanh_c.slice_mut(), out.slice_mut());
        forward_step(rows, gs, c0.slice(), cs, tcs, hs);
    }
    let last = |buf: &Buf<T>| buf.tensor.select(1, ti - 1).contiguous();
    let outputs = vec![out.tensor.shallow_clone(), last(&out), last(&cell)];
    let mut saved: Vec<Tensor> = bufs[..5].iter().map(|b| b.tensor.shallow_clone()).collect();
    saved.extend([gates.tensor, cell.tensor, tanh_c.tensor, out.tensor]);
    Ok((outputs, saved))
}

fn backward<T: Real>(
    saved: &[Tensor],
    grads: &[Tensor],
    n_inputs: usize,
) -> Result<Vec<Option<Tensor>>, String> {
    let s = saved.iter().map(Buf::<T>::of).collect::<Result<Vec<_>, _>>()?;
    let [x, h0, c0, w_ih, w_hh, gates, cell, tanh_c, out] = &s[..] else {
        return Err(format!("LSTM kernel: {} saved tensors, expected 9", s.len()));
    };
    let g = grads.iter().map(Buf::<T>::of).collect::<Result<Vec<_>, _>>()?;
    let [g_out, g_h, g_c] = &g[..] else {
        return Err(format!("LSTM kernel: {} output gradients, expected 3", g.len()));
    };
    let Dims { b, t, i, h } = Dims::of(&x.tensor, &w_hh.tensor)?;
    let (bi, ti, ii, hi) = (b as i64, t as i64, i as i64, h as i64);
    let g4 = 4 * h;

    let mut d_gates = Buf::<T>::empty(&[bi, ti, 4 * hi]);
    let mut dh = Buf::<T>::of(&g_h.tensor.copy())?;
    let mut dc = Buf::<T>::of(&g_c.tensor.copy())?;
    for s in (0..t).rev() {
        let rows = Rows { b, t, h, s };
        let (gs, cs, tcs, g_outs, c0s) =
            (gates.slice(), cell.slice(), tanh_c.slice(), g_out.slice(), c0.slice());
        let (dgs, dhs, dcs) = (d_gates.slice_mut(), dh.slice_mut(), dc.slice_mut());
        backward_step(rows, gs, dgs, c0s, cs, tcs, g_outs, dhs, dcs);
        // dh_prev = da_s W_hh
        // SAFETY: row s of d_gates and the whole of dh and W_hh, as shaped above.
        unsafe {
            T::gemm(
                b,
                g4,
                h,
                T::ONE,
                (d_gates.ptr().add(s * g4), (t * g4) as isize, 1),
                (w_hh.ptr(), h as isize, 1),
                T::ZERO,
                (dh.ptr_mut(), h as isize, 1),
            );
        }
    }

    // Over all steps at once: h_prev is h0 at step 0 and the previous output after.
    let da = d_gates.tensor.view([bi * ti, 4 * hi]);
    let h_prev = Tensor::cat(&[h0.tensor.unsqueeze(1), out.tensor.narrow(1, 0, ti - 1)], 1);
    let mut result = vec![
        Some(da.mm(&w_ih.tensor).view([bi, ti, ii])),
        Some(dh.tensor),
        Some(dc.tensor),
        Some(da.tr().mm(&x.tensor.view([bi * ti, ii]))),
        Some(da.tr().mm(&h_prev.view([bi * ti, hi]))),
    ];
    if n_inputs == 7 {
        let db = da.sum_dim_intlist(0, false, T::KIND);
        result.extend([Some(db.copy()), Some(db)]);
    }
    Ok(result)
}

/// `fn $name(args)` runs `$inner(args)` (an `#[inline(always)]` fn) from a
/// copy compiled for AVX2 and FMA when the CPU has them: eight f32 lanes
/// instead of SSE2's four, for loops written to vectorise.
macro_rules! simd_dispatch {
    ($name:ident => $inner:ident($($arg:ident: $ty:ty),*)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name<T: Real>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<T: Real>($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features were just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $inner($($arg),*)
        }
    };
}

simd_dispatch!(forward_step => forward_rows(
    r: Rows, gs: &mut [T], c0s: &[T], cs: &mut [T], tcs: &mut [T], hs: &mut [T]
));

simd_dispatch!(backward_step => backward_rows(
    r: Rows, gs: &[T], dgs: &mut [T], c0s: &[T], cs: &[T], tcs: &[T], g_outs: &[T],
    dhs: &[T], dcs: &mut [T]
));

/// Step `s` forwards for every example (see [`cell_forward`]).
#[inline(always)]
fn forward_rows<T: Real>(
    r: Rows,
    gs: &mut [T],
    c0s: &[T],
    cs: &mut [T],
    tcs: &mut [T],
    hs: &mut [T],
) {
    let Rows { b, t, h, s } = r;
    for n in 0..b {
        let at = (n * t + s) * h;
        let (before, after) = cs.split_at_mut(at);
        let c_prev = if s == 0 { &c0s[n * h..][..h] } else { &before[at - h..] };
        let row = &mut gs[(n * t + s) * 4 * h..][..4 * h];
        cell_forward(row, c_prev, &mut after[..h], &mut tcs[at..][..h], &mut hs[at..][..h]);
    }
}

/// Step `s` backwards for every example (see [`cell_backward`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_rows<T: Real>(
    r: Rows,
    gs: &[T],
    dgs: &mut [T],
    c0s: &[T],
    cs: &[T],
    tcs: &[T],
    g_outs: &[T],
    dhs: &[T],
    dcs: &mut [T],
) {
    let Rows { b, t, h, s } = r;
    let g4 = 4 * h;
    for n in 0..b {
        let (at, hat) = ((n * t + s) * g4, (n * t + s) * h);
        let c_prev = if s == 0 { &c0s[n * h..][..h] } else { &cs[hat - h..hat] };
        cell_backward(
            &gs[at..at + g4],
            &mut dgs[at..at + g4],
            c_prev,
            &tcs[hat..hat + h],
            &g_outs[hat..hat + h],
            &dhs[n * h..][..h],
            &mut dcs[n * h..][..h],
        );
    }
}

/// Which rows of the `[B, T, ·]` buffers one time step `s` touches.
#[derive(Clone, Copy)]
struct Rows {
    b: usize,
    t: usize,
    h: usize,
    s: usize,
}

/// The four gates of one example: `row` comes in as pre-activations
/// `[i | f | g | o]` and leaves activated; writes `c`, `tanh c` and `h`.
#[inline(always)]
fn cell_forward<T: Real>(row: &mut [T], c_prev: &[T], c: &mut [T], tanh_c: &mut [T], h: &mut [T]) {
    let n = c.len();
    let (i, rest) = row.split_at_mut(n);
    let (f, rest) = rest.split_at_mut(n);
    let (g, o) = rest.split_at_mut(n);
    let (c_prev, tanh_c, h, o) = (&c_prev[..n], &mut tanh_c[..n], &mut h[..n], &mut o[..n]);
    for v in i.iter_mut() {
        *v = v.sigmoid();
    }
    for v in f.iter_mut() {
        *v = v.sigmoid();
    }
    for v in o.iter_mut() {
        *v = v.sigmoid();
    }
    for v in g.iter_mut() {
        *v = v.tanh();
    }
    for j in 0..n {
        let cj = f[j] * c_prev[j] + i[j] * g[j];
        let tc = cj.tanh();
        c[j] = cj;
        tanh_c[j] = tc;
        h[j] = o[j] * tc;
    }
}

/// One example's step backwards: from the activated gates `row`, `c_prev`,
/// `tanh c` and the gradients reaching `h` (`dh`, plus `g_out` from the
/// output) and `c` (`dc`), writes the pre-activation gradients `d_row` and
/// leaves `dc` holding the gradient of `c_prev`.
#[inline(always)]
fn cell_backward<T: Real>(
    row: &[T],
    d_row: &mut [T],
    c_prev: &[T],
    tanh_c: &[T],
    g_out: &[T],
    dh: &[T],
    dc: &mut [T],
) {
    let n = dc.len();
    let (i, f, g, o) = (&row[..n], &row[n..2 * n], &row[2 * n..3 * n], &row[3 * n..4 * n]);
    let (di, rest) = d_row.split_at_mut(n);
    let (df, rest) = rest.split_at_mut(n);
    let (dg, do_) = rest.split_at_mut(n);
    let (do_, c_prev, tanh_c, g_out, dh) =
        (&mut do_[..n], &c_prev[..n], &tanh_c[..n], &g_out[..n], &dh[..n]);
    for j in 0..n {
        let (ig, fg, gg, og, tc) = (i[j], f[j], g[j], o[j], tanh_c[j]);
        let dh_j = dh[j] + g_out[j];
        let dc_j = dc[j] + dh_j * og * (T::ONE - tc * tc);
        di[j] = dc_j * gg * ig * (T::ONE - ig);
        df[j] = dc_j * c_prev[j] * fg * (T::ONE - fg);
        dg[j] = dc_j * ig * (T::ONE - gg * gg);
        do_[j] = dh_j * tc * og * (T::ONE - og);
        dc[j] = dc_j * fg;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::apply;
    use tch::Device;

    /// The kernel's outputs and the gradients of a weighted sum of them, against
    /// libtorch's `Tensor::lstm` (one layer, batch first) on the same leaves.
    fn check(kind: Kind, bias: bool, (b, t, i, h): (i64, i64, i64, i64), tol: f64) {
        let opts = (kind, Device::Cpu);
        let mut leaves = vec![
            Tensor::randn([b, t, i], opts),
            Tensor::randn([b, h], opts) * 0.5,
            Tensor::randn([b, h], opts) * 0.5,
            Tensor::randn([4 * h, i], opts) * 0.4,
            Tensor::randn([4 * h, h], opts) * 0.4,
        ];
        if bias {
            leaves.extend([Tensor::randn([4 * h], opts) * 0.3, Tensor::randn([4 * h], opts) * 0.3]);
        }
        let r = [
            Tensor::randn([b, t, h], opts),
            Tensor::randn([b, h], opts),
            Tensor::randn([b, h], opts),
        ];
        let run = |ours: bool| -> (Vec<Tensor>, Vec<Tensor>) {
            let l: Vec<Tensor> = leaves.iter().map(|t| t.copy().set_requires_grad(true)).collect();
            let outs = if ours {
                apply(&LSTM_SEQUENCE, &l.iter().collect::<Vec<_>>(), 3).unwrap()
            } else {
                let hx = [l[1].unsqueeze(0), l[2].unsqueeze(0)];
                let (out, h, c) = l[0].lstm(&hx, &l[3..], bias, 1, 0.0, true, false, true);
                vec![out, h.squeeze_dim(0), c.squeeze_dim(0)]
            };
            let loss = outs
                .iter()
                .zip(&r)
                .map(|(o, r)| (o * r).sum(kind))
                .fold(Tensor::zeros([], opts), |a, b| a + b);
            loss.backward();
            (outs.iter().map(Tensor::detach).collect(), l.iter().map(Tensor::grad).collect())
        };
        let ((out, grads), (want, want_grads)) = (run(true), run(false));
        let diff =
            |a: &Tensor, b: &Tensor| (a - b).abs().max().to_kind(Kind::Double).double_value(&[]);
        for (k, (o, w)) in out.iter().zip(&want).enumerate() {
            assert!(diff(o, w) < tol, "output {k} ({kind:?}, bias {bias}): {}", diff(o, w));
        }
        let names = ["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"];
        for ((g, w), name) in grads.iter().zip(&want_grads).zip(names) {
            // weight gradients sum B*T terms: relative to their size
            let size = w.abs().max().double_value(&[]);
            assert!(size > 1e-3, "gradient of {name} is ~0");
            let d = diff(g, w);
            assert!(d < tol * size.max(1.0), "d/d {name} ({kind:?}, bias {bias}): {d} of {size}");
        }
    }

    #[test]
    fn matches_libtorch_lstm_in_values_and_gradients() {
        for bias in [true, false] {
            check(Kind::Double, bias, (5, 7, 3, 4), 1e-12);
            check(Kind::Float, bias, (100, 32, 20, 32), 2e-5);
            // one step, and a batch of one
            check(Kind::Double, bias, (1, 1, 2, 3), 1e-12);
        }
    }

    #[test]
    fn double_backward_is_refused_not_wrong() {
        let opts = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([2, 3, 4], opts).set_requires_grad(true);
        let s = Tensor::zeros([2, 5], opts);
        let (w_ih, w_hh) = (Tensor::randn([20, 4], opts), Tensor::randn([20, 5], opts));
        let out = apply(&LSTM_SEQUENCE, &[&x, &s, &s, &w_ih, &w_hh], 3).unwrap();
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
    }
}
