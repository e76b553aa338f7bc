//! The GRU over a whole sequence with its backward written out (BPTT), the
//! same equations as [`crate::GRUCell`]'s step and PyTorch's `nn.GRU`:
//!
//! ```text
//! r = σ(gi_r + gh_r)     z = σ(gi_z + gh_z)     n = tanh(gi_n + r ⊙ gh_n)
//! h' = (1 - z) ⊙ n + z ⊙ h          gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh
//! ```
//!
//! Forward: one product projects every step's input; per step one product
//! gives `gh` and a loop applies the gates, keeping `r`, `z`, `n` and `gh_n`.
//!
//! Backward, from the last step to the first, with `dh` flowing back:
//!
//! ```text
//! dn = dh ⊙ (1 - z)      dz = dh ⊙ (h_prev - n)      da_n = dn ⊙ (1 - n²)
//! da_r = da_n ⊙ gh_n ⊙ r(1-r)      da_z = dz ⊙ z(1-z)
//! input side:     [da_r, da_z, da_n]
//! recurrent side: [da_r, da_z, da_n ⊙ r]
//! dh_prev = dh ⊙ z + (recurrent side) W_hh
//! ```
//!
//! The weight gradients are then products over all steps at once
//! ([`WeightGrads`]); unlike the LSTM's, the two sides differ in the `n` rows,
//! and only those rows of the recurrent side are kept for every step.

use super::real::Buf;
use super::sequence::{
    prefetch, simd_dispatch, Dims, Recurrent, Rows, SequenceKernel, WeightGrads,
};
use super::Real;
use tch::Tensor;

/// Inputs `[x [B,T,I], h0 [B,H], weight_ih [3H,I], weight_hh [3H,H]]` and, with
/// bias, `bias_ih [3H], bias_hh [3H]`; outputs `[out [B,T,H], h_T [B,H]]`.
pub(crate) struct GruSequence;

pub(crate) static GRU_SEQUENCE: GruSequence = GruSequence;

impl SequenceKernel for GruSequence {
    const NAME: &'static str = "GRU";

    fn forward<T: Real>(bufs: &[Buf<T>]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
        if bufs.len() != 4 && bufs.len() != 6 {
            return Err(format!("GRU kernel: {} inputs, expected 4 or 6", bufs.len()));
        }
        let (x, h0, w_hh) = (&bufs[0], &bufs[1], &bufs[3]);
        let d = Dims::of("GRU", &x.tensor, &w_hh.tensor, 3)?;
        let Dims { b, t, h } = d;
        let g3 = 3 * h;

        let (b_ih, b_hh) = match &bufs[4..] {
            [b_ih, b_hh] => (Some(&b_ih.tensor), Some(b_hh)),
            _ => (None, None),
        };
        // gates: the input side for every step, then r, z, n in place
        let mut gates = Buf::<T>::of(&x.tensor.linear(&bufs[2].tensor, b_ih))?;
        let mut gh = Buf::<T>::empty(&[b as i64, g3 as i64]);
        let (mut out, mut gh_n) = (Buf::<T>::empty(&d.shape(h)), Buf::<T>::empty(&d.shape(h)));
        // W_hh^T, packed once for every step where MKL serves
        let w_rec = Recurrent::forward(w_hh, d);
        for s in 0..t {
            let rows = Rows { b, t, h, s };
            // gh = h_prev W_hh^T + b_hh
            match b_hh {
                Some(bias) => gh
                    .slice_mut()
                    .chunks_exact_mut(g3)
                    .for_each(|r| r.copy_from_slice(bias.slice())),
                None => gh.slice_mut().fill(T::ZERO),
            }
            rows.recur(h0, &out, &w_rec, true, &mut gh);
            let (gs, ghs, gh_ns, hs) =
                (gates.slice_mut(), gh.slice(), gh_n.slice_mut(), out.slice_mut());
            forward_rows(rows, gs, ghs, h0.slice(), gh_ns, hs);
        }
        let last = out.tensor.select(1, t as i64 - 1).contiguous();
        let outputs = vec![out.tensor.shallow_clone(), last];
        Ok((outputs, vec![gates.tensor, gh_n.tensor, out.tensor]))
    }

    fn backward<T: Real>(
        saved: &[Buf<T>],
        grads: &[Buf<T>],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String> {
        let [x, h0, w_ih, w_hh, .., gates, gh_n, out] = saved else {
            return Err(format!("GRU kernel: {} saved tensors, expected 7 or 9", saved.len()));
        };
        let [g_out, g_h] = grads else {
            return Err(format!("GRU kernel: {} output gradients, expected 2", grads.len()));
        };
        let d = Dims::of("GRU", &x.tensor, &w_hh.tensor, 3)?;
        let Dims { b, t, h } = d;

        let mut d_in = Buf::<T>::empty(&d.shape(3 * h));
        // The recurrent side differs from the input side only in its n rows,
        // which are kept for every step; a step's whole recurrent side goes to
        // a scratch buffer, contiguous and in cache for the product back to
        // h_prev, rather than to a second [B, T, 3H] buffer.
        let mut d_rec_n = Buf::<T>::empty(&d.shape(h));
        let mut d_rec = Buf::<T>::empty(&[b as i64, 3 * h as i64]);
        let mut dh = Buf::<T>::of(&g_h.tensor.copy())?;
        let w_rec = Recurrent::backward(w_hh, d);
        for s in (0..t).rev() {
            let rows = Rows { b, t, h, s };
            let (gs, gh_ns, h0s, hs, g_outs) =
                (gates.slice(), gh_n.slice(), h0.slice(), out.slice(), g_out.slice());
            let (d_ins, d_rec_ns) = (d_in.slice_mut(), d_rec_n.slice_mut());
            let (d_recs, dhs) = (d_rec.slice_mut(), dh.slice_mut());
            backward_rows(rows, gs, gh_ns, h0s, hs, g_outs, d_ins, d_rec_ns, d_recs, dhs);
            // dh_prev (holding dh ⊙ z) += d_rec W_hh
            w_rec.product(&d_rec.tensor, true, &mut dh);
        }
        let grads = WeightGrads::new(
            &d_in.tensor,
            Some(&d_rec_n.tensor),
            &x.tensor,
            (&h0.tensor, &out.tensor),
            &w_ih.tensor,
            n_inputs == 6,
        );
        Ok(grads.into_input_order(vec![dh.tensor]))
    }
}

simd_dispatch!(forward_cell => cell_forward(
    row: &mut [T], gh: &[T], h_prev: &[T], gh_n: &mut [T], h: &mut [T]
));

simd_dispatch!(backward_cell => cell_backward(
    row: &[T], gh_n: &[T], h_prev: &[T], g_out: &[T], d_in: &mut [T], d_rec: &mut [T],
    d_rec_n: &mut [T], dh: &mut [T]
));

/// Step `s` forwards for every example (see [`cell_forward`]).
fn forward_rows<T: Real>(
    r: Rows,
    gs: &mut [T],
    gh: &[T],
    h0s: &[T],
    gh_ns: &mut [T],
    hs: &mut [T],
) {
    let Rows { b, t, h, s } = r;
    for n in 0..b {
        let at = (n * t + s) * h;
        if n + 1 < b {
            let next = at + t * h;
            prefetch(&gs[next * 3..][..3 * h]);
            prefetch(&gh_ns[next..][..h]);
            prefetch(&hs[next - h..][..2 * h]);
        }
        let (before, after) = hs.split_at_mut(at);
        let h_prev = if s == 0 { &h0s[n * h..][..h] } else { &before[at - h..] };
        forward_cell(
            &mut gs[(n * t + s) * 3 * h..][..3 * h],
            &gh[n * 3 * h..][..3 * h],
            h_prev,
            &mut gh_ns[at..][..h],
            &mut after[..h],
        );
    }
}

/// Step `s` backwards for every example (see [`cell_backward`]).
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: Real>(
    r: Rows,
    gs: &[T],
    gh_ns: &[T],
    h0s: &[T],
    hs: &[T],
    g_outs: &[T],
    d_in: &mut [T],
    d_rec_n: &mut [T],
    d_rec: &mut [T],
    dhs: &mut [T],
) {
    let Rows { b, t, h, s } = r;
    let g3 = 3 * h;
    for n in 0..b {
        let (at, hat) = ((n * t + s) * g3, (n * t + s) * h);
        if n + 1 < b {
            let (next, hnext) = (at + t * g3, hat + t * h);
            prefetch(&gs[next..][..g3]);
            prefetch(&d_in[next..][..g3]);
            prefetch(&d_rec_n[hnext..][..h]);
            prefetch(&gh_ns[hnext..][..h]);
            prefetch(&g_outs[hnext..][..h]);
            prefetch(&hs[hnext - h..][..h]);
        }
        let h_prev = if s == 0 { &h0s[n * h..][..h] } else { &hs[hat - h..hat] };
        backward_cell(
            &gs[at..at + g3],
            &gh_ns[hat..hat + h],
            h_prev,
            &g_outs[hat..hat + h],
            &mut d_in[at..at + g3],
            &mut d_rec[n * g3..][..g3],
            &mut d_rec_n[hat..hat + h],
            &mut dhs[n * h..][..h],
        );
    }
}

/// One example's step: `row` comes in as the input side `[gi_r | gi_z | gi_n]`
/// and leaves as `[r | z | n]`; `gh` is the recurrent side; writes `gh_n` and `h`.
#[inline(always)]
fn cell_forward<T: Real>(row: &mut [T], gh: &[T], h_prev: &[T], gh_n: &mut [T], h: &mut [T]) {
    let m = h.len();
    let (r, rest) = row.split_at_mut(m);
    let (z, n) = rest.split_at_mut(m);
    let (gh_r, gh_z, gh_nn) = (&gh[..m], &gh[m..2 * m], &gh[2 * m..3 * m]);
    let (n, h_prev, gh_n) = (&mut n[..m], &h_prev[..m], &mut gh_n[..m]);
    for j in 0..m {
        r[j] = (r[j] + gh_r[j]).sigmoid();
        z[j] = (z[j] + gh_z[j]).sigmoid();
    }
    for j in 0..m {
        gh_n[j] = gh_nn[j];
        n[j] = (n[j] + r[j] * gh_nn[j]).tanh();
        h[j] = n[j] + z[j] * (h_prev[j] - n[j]);
    }
}

/// One example's step backwards: from `[r | z | n]`, `gh_n`, `h_prev`, and the
/// gradient reaching `h` (`dh`, plus `g_out` from the output), writes both
/// sides' pre-activation gradients (the recurrent side's n rows once more in
/// `d_rec_n`) and leaves `dh ⊙ z` in `dh` (the direct part of the gradient
/// of `h_prev`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cell_backward<T: Real>(
    row: &[T],
    gh_n: &[T],
    h_prev: &[T],
    g_out: &[T],
    d_in: &mut [T],
    d_rec: &mut [T],
    d_rec_n: &mut [T],
    dh: &mut [T],
) {
    let m = dh.len();
    let (r, z, n) = (&row[..m], &row[m..2 * m], &row[2 * m..3 * m]);
    let (gh_n, h_prev, g_out) = (&gh_n[..m], &h_prev[..m], &g_out[..m]);
    let (di_r, rest) = d_in.split_at_mut(m);
    let (di_z, di_n) = rest.split_at_mut(m);
    let (dr_r, rest) = d_rec.split_at_mut(m);
    let (dr_z, dr_n) = rest.split_at_mut(m);
    let (di_n, dr_n, d_rec_n) = (&mut di_n[..m], &mut dr_n[..m], &mut d_rec_n[..m]);
    for j in 0..m {
        let (rj, zj, nj) = (r[j], z[j], n[j]);
        let dh_j = dh[j] + g_out[j];
        let da_n = dh_j * (T::ONE - zj) * (T::ONE - nj * nj);
        let da_r = da_n * gh_n[j] * rj * (T::ONE - rj);
        let da_z = dh_j * (h_prev[j] - nj) * zj * (T::ONE - zj);
        (di_r[j], di_z[j], di_n[j]) = (da_r, da_z, da_n);
        let da_n_rec = da_n * rj;
        (dr_r[j], dr_z[j], dr_n[j], d_rec_n[j]) = (da_r, da_z, da_n_rec, da_n_rec);
        dh[j] = dh_j * zj;
    }
}
