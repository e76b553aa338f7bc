//! The LSTM over a whole sequence with its backward written out (BPTT), the
//! same equations as [`crate::LSTMCell`]'s step and PyTorch's `nn.LSTM`.
//!
//! Forward, for one layer: one product projects every step's input
//! (`x W_ih^T + b_ih + b_hh`, `[B*T, 4H]`); then per step one product gives
//! `h W_hh^T` and a loop adds it and applies the gates in place, keeping the
//! activated gates, `c` and `tanh(c)` for the backward.
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
use super::sequence::{
    prefetch, simd_dispatch, Dims, Recurrent, Rows, SequenceKernel, WeightGrads,
};
use super::Real;
use tch::Tensor;

/// Inputs `[x [B,T,I], h0 [B,H], c0 [B,H], weight_ih [4H,I], weight_hh [4H,H]]`
/// and, with bias, `bias_ih [4H], bias_hh [4H]`; outputs
/// `[out [B,T,H], h_T [B,H], c_T [B,H]]`.
pub(crate) struct LstmSequence;

pub(crate) static LSTM_SEQUENCE: LstmSequence = LstmSequence;

impl SequenceKernel for LstmSequence {
    const NAME: &'static str = "LSTM";

    fn forward<T: Real>(bufs: &[Buf<T>]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
        if bufs.len() != 5 && bufs.len() != 7 {
            return Err(format!("LSTM kernel: {} inputs, expected 5 or 7", bufs.len()));
        }
        let (x, h0, c0, w_hh) = (&bufs[0], &bufs[1], &bufs[2], &bufs[4]);
        let d = Dims::of("LSTM", &x.tensor, &w_hh.tensor, 4)?;
        let Dims { b, t, h } = d;

        // gates[b, t, :] = x[b, t] W_ih^T + b_ih + b_hh: one product for all steps
        let bias = match &bufs[5..] {
            [b_ih, b_hh] => Some(&b_ih.tensor + &b_hh.tensor),
            _ => None,
        };
        let mut gates = Buf::<T>::of(&x.tensor.linear(&bufs[3].tensor, bias))?;
        let [mut out, mut cell, mut tanh_c] = [(); 3].map(|_| Buf::<T>::empty(&d.shape(h)));
        let mut gh = Buf::<T>::empty(&[b as i64, 4 * h as i64]);
        // W_hh^T, packed once for every step where MKL serves
        let w_rec = Recurrent::forward(w_hh, d);
        for s in 0..t {
            let rows = Rows { b, t, h, s };
            // gh = h_prev W_hh^T, added to gates[:, s] in the gates' loop
            rows.recur(h0, &out, &w_rec, false, &mut gh);
            let (gs, cs, tcs, hs) =
                (gates.slice_mut(), cell.slice_mut(), tanh_c.slice_mut(), out.slice_mut());
            forward_rows(rows, gs, gh.slice(), c0.slice(), cs, tcs, hs);
        }
        let last = |buf: &Buf<T>| buf.tensor.select(1, t as i64 - 1).contiguous();
        let outputs = vec![out.tensor.shallow_clone(), last(&out), last(&cell)];
        Ok((outputs, vec![gates.tensor, cell.tensor, tanh_c.tensor, out.tensor]))
    }

    fn backward<T: Real>(
        saved: &[Buf<T>],
        grads: &[Buf<T>],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String> {
        let [x, h0, c0, w_ih, w_hh, .., gates, cell, tanh_c, out] = saved else {
            return Err(format!("LSTM kernel: {} saved tensors, expected 9 or 11", saved.len()));
        };
        let [g_out, g_h, g_c] = grads else {
            return Err(format!("LSTM kernel: {} output gradients, expected 3", grads.len()));
        };
        let d = Dims::of("LSTM", &x.tensor, &w_hh.tensor, 4)?;
        let Dims { b, t, h } = d;

        let mut d_gates = Buf::<T>::empty(&d.shape(4 * h));
        let mut dh = Buf::<T>::of(&g_h.tensor.copy())?;
        let mut dc = Buf::<T>::of(&g_c.tensor.copy())?;
        let w_rec = Recurrent::backward(w_hh, d);
        for s in (0..t).rev() {
            let rows = Rows { b, t, h, s };
            let (gs, cs, tcs, g_outs, c0s) =
                (gates.slice(), cell.slice(), tanh_c.slice(), g_out.slice(), c0.slice());
            let (dgs, dhs, dcs) = (d_gates.slice_mut(), dh.slice_mut(), dc.slice_mut());
            backward_rows(rows, gs, dgs, c0s, cs, tcs, g_outs, dhs, dcs);
            // dh_prev = da_s W_hh
            rows.back(&d_gates, &w_rec, false, &mut dh);
        }
        // Both sides of the gates share their pre-activation gradient (b_hh is
        // folded into the projection), over all steps at once.
        let grads = WeightGrads::new(
            &d_gates.tensor,
            None,
            &x.tensor,
            (&h0.tensor, &out.tensor),
            &w_ih.tensor,
            n_inputs == 7,
        );
        Ok(grads.into_input_order(vec![dh.tensor, dc.tensor]))
    }
}

simd_dispatch!(forward_cell => cell_forward(
    row: &mut [T], gh: &[T], c_prev: &[T], c: &mut [T], tanh_c: &mut [T], h: &mut [T]
));

simd_dispatch!(backward_cell => cell_backward(
    row: &[T], d_row: &mut [T], c_prev: &[T], tanh_c: &[T], g_out: &[T], dh: &[T],
    dc: &mut [T]
));

/// Step `s` forwards for every example (see [`cell_forward`]).
fn forward_rows<T: Real>(
    r: Rows,
    gs: &mut [T],
    ghs: &[T],
    c0s: &[T],
    cs: &mut [T],
    tcs: &mut [T],
    hs: &mut [T],
) {
    let Rows { b, t, h, s } = r;
    for n in 0..b {
        let at = (n * t + s) * h;
        if n + 1 < b {
            let next = at + t * h;
            prefetch(&gs[next * 4..][..4 * h]);
            prefetch(&cs[next - h..][..2 * h]);
            prefetch(&tcs[next..][..h]);
            prefetch(&hs[next..][..h]);
        }
        let (before, after) = cs.split_at_mut(at);
        let c_prev = if s == 0 { &c0s[n * h..][..h] } else { &before[at - h..] };
        let row = &mut gs[at * 4..][..4 * h];
        let gh = &ghs[n * 4 * h..][..4 * h];
        forward_cell(row, gh, c_prev, &mut after[..h], &mut tcs[at..][..h], &mut hs[at..][..h]);
    }
}

/// Step `s` backwards for every example (see [`cell_backward`]).
#[allow(clippy::too_many_arguments)]
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
        if n + 1 < b {
            let (next, hnext) = (at + t * g4, hat + t * h);
            prefetch(&gs[next..][..g4]);
            prefetch(&dgs[next..][..g4]);
            prefetch(&cs[hnext - h..][..h]);
            prefetch(&tcs[hnext..][..h]);
            prefetch(&g_outs[hnext..][..h]);
        }
        let c_prev = if s == 0 { &c0s[n * h..][..h] } else { &cs[hat - h..hat] };
        backward_cell(
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

/// The four gates of one example: `row` comes in as the input side's
/// pre-activations `[i | f | g | o]`, gets the recurrent side `gh` added, and
/// leaves activated; writes `c`, `tanh c` and `h`.
#[inline(always)]
fn cell_forward<T: Real>(
    row: &mut [T],
    gh: &[T],
    c_prev: &[T],
    c: &mut [T],
    tanh_c: &mut [T],
    h: &mut [T],
) {
    let n = c.len();
    for (v, g) in row.iter_mut().zip(gh) {
        *v += *g;
    }
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
