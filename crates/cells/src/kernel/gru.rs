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
//! ([`WeightGrads`]); unlike the LSTM's, the two sides differ in the `n` rows.

use super::real::Buf;
use super::sequence::{by_kind, previous_states, project, simd_dispatch, Dims, Rows, WeightGrads};
use super::{CustomFunction, Real};
use tch::Tensor;

/// Inputs `[x [B,T,I], h0 [B,H], weight_ih [3H,I], weight_hh [3H,H]]` and, with
/// bias, `bias_ih [3H], bias_hh [3H]`; outputs `[out [B,T,H], h_T [B,H]]`.
pub(crate) struct GruSequence;

pub(crate) static GRU_SEQUENCE: GruSequence = GruSequence;

impl CustomFunction for GruSequence {
    fn forward(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
        by_kind!("GRU", inputs[0].kind(), forward(inputs))
    }

    fn backward(
        &self,
        saved: &[Tensor],
        grads: &[Tensor],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String> {
        by_kind!("GRU", saved[0].kind(), backward(saved, grads, n_inputs))
    }
}

fn forward<T: Real>(inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
    if inputs.len() != 4 && inputs.len() != 6 {
        return Err(format!("GRU kernel: {} inputs, expected 4 or 6", inputs.len()));
    }
    let bufs = inputs.iter().map(Buf::<T>::of).collect::<Result<Vec<_>, _>>()?;
    let (x, h0, w_hh) = (&bufs[0], &bufs[1], &bufs[3]);
    let d = Dims::of("GRU", &x.tensor, &w_hh.tensor, 3)?;
    let Dims { b, t, h, .. } = d;
    let g3 = 3 * h;

    let (b_ih, b_hh) = match &bufs[4..] {
        [b_ih, b_hh] => (Some(b_ih.tensor.shallow_clone()), Some(b_hh)),
        _ => (None, None),
    };
    // gates: the input side for every step, then r, z, n in place
    let mut gates = Buf::<T>::of(&project(&x.tensor, &bufs[2].tensor, b_ih))?;
    let mut gh = Buf::<T>::empty(&[b as i64, g3 as i64]);
    let (mut out, mut gh_n) = (Buf::<T>::empty(&d.shape(h)), Buf::<T>::empty(&d.shape(h)));
    for s in 0..t {
        // gh = h_prev W_hh^T + b_hh
        match b_hh {
            Some(bias) => {
                gh.slice_mut().chunks_exact_mut(g3).for_each(|r| r.copy_from_slice(bias.slice()))
            }
            None => gh.slice_mut().fill(T::ZERO),
        }
        let (h_prev, rs) = match s {
            0 => (h0.ptr(), h),
            _ => (unsafe { out.ptr().add((s - 1) * h) }, t * h),
        };
        // SAFETY: rows s - 1 of out (or h0) and the whole of gh and W_hh, as shaped.
        unsafe {
            T::gemm(
                b,
                h,
                g3,
                T::ONE,
                (h_prev, rs as isize, 1),
                (w_hh.ptr(), 1, h as isize),
                T::ONE,
                (gh.ptr_mut(), g3 as isize, 1),
            );
        }
        let rows = Rows { b, t, h, s };
        forward_step(
            rows,
            gates.slice_mut(),
            gh.slice(),
            h0.slice(),
            gh_n.slice_mut(),
            out.slice_mut(),
        );
    }
    let outputs = vec![out.tensor.shallow_clone(), out.tensor.select(1, t as i64 - 1).contiguous()];
    let mut saved: Vec<Tensor> = bufs[..4].iter().map(|b| b.tensor.shallow_clone()).collect();
    saved.extend([gates.tensor, gh_n.tensor, out.tensor]);
    Ok((outputs, saved))
}

fn backward<T: Real>(
    saved: &[Tensor],
    grads: &[Tensor],
    n_inputs: usize,
) -> Result<Vec<Option<Tensor>>, String> {
    let s = saved.iter().map(Buf::<T>::of).collect::<Result<Vec<_>, _>>()?;
    let [x, h0, w_ih, w_hh, gates, gh_n, out] = &s[..] else {
        return Err(format!("GRU kernel: {} saved tensors, expected 7", s.len()));
    };
    let g = grads.iter().map(Buf::<T>::of).collect::<Result<Vec<_>, _>>()?;
    let [g_out, g_h] = &g[..] else {
        return Err(format!("GRU kernel: {} output gradients, expected 2", g.len()));
    };
    let d = Dims::of("GRU", &x.tensor, &w_hh.tensor, 3)?;
    let Dims { b, t, h, .. } = d;
    let g3 = 3 * h;

    let (mut d_in, mut d_rec) = (Buf::<T>::empty(&d.shape(g3)), Buf::<T>::empty(&d.shape(g3)));
    let mut dh = Buf::<T>::of(&g_h.tensor.copy())?;
    for s in (0..t).rev() {
        let rows = Rows { b, t, h, s };
        backward_step(
            rows,
            gates.slice(),
            gh_n.slice(),
            h0.slice(),
            out.slice(),
            g_out.slice(),
            d_in.slice_mut(),
            d_rec.slice_mut(),
            dh.slice_mut(),
        );
        // dh_prev (holding dh ⊙ z) += d_rec_s W_hh
        // SAFETY: row s of d_rec and the whole of dh and W_hh, as shaped above.
        unsafe {
            T::gemm(
                b,
                g3,
                h,
                T::ONE,
                (d_rec.ptr().add(s * g3), (t * g3) as isize, 1),
                (w_hh.ptr(), h as isize, 1),
                T::ONE,
                (dh.ptr_mut(), h as isize, 1),
            );
        }
    }
    let h_prev = previous_states(&h0.tensor, &out.tensor);
    let grads = WeightGrads::new(
        &d_in.tensor,
        &d_rec.tensor,
        &x.tensor,
        &h_prev,
        &w_ih.tensor,
        n_inputs == 6,
    );
    Ok(grads.into_input_order(vec![dh.tensor]))
}

simd_dispatch!(forward_step => forward_rows(
    r: Rows, gs: &mut [T], gh: &[T], h0s: &[T], gh_ns: &mut [T], hs: &mut [T]
));

simd_dispatch!(backward_step => backward_rows(
    r: Rows, gs: &[T], gh_ns: &[T], h0s: &[T], hs: &[T], g_outs: &[T], d_in: &mut [T],
    d_rec: &mut [T], dhs: &mut [T]
));

/// Step `s` forwards for every example (see [`cell_forward`]).
#[inline(always)]
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
        let (before, after) = hs.split_at_mut(at);
        let h_prev = if s == 0 { &h0s[n * h..][..h] } else { &before[at - h..] };
        cell_forward(
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
#[inline(always)]
fn backward_rows<T: Real>(
    r: Rows,
    gs: &[T],
    gh_ns: &[T],
    h0s: &[T],
    hs: &[T],
    g_outs: &[T],
    d_in: &mut [T],
    d_rec: &mut [T],
    dhs: &mut [T],
) {
    let Rows { b, t, h, s } = r;
    let g3 = 3 * h;
    for n in 0..b {
        let (at, hat) = ((n * t + s) * g3, (n * t + s) * h);
        let h_prev = if s == 0 { &h0s[n * h..][..h] } else { &hs[hat - h..hat] };
        cell_backward(
            &gs[at..at + g3],
            &gh_ns[hat..hat + h],
            h_prev,
            &g_outs[hat..hat + h],
            &mut d_in[at..at + g3],
            &mut d_rec[at..at + g3],
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
/// sides' pre-activation gradients and leaves `dh ⊙ z` in `dh` (the direct
/// part of the gradient of `h_prev`).
#[inline(always)]
fn cell_backward<T: Real>(
    row: &[T],
    gh_n: &[T],
    h_prev: &[T],
    g_out: &[T],
    d_in: &mut [T],
    d_rec: &mut [T],
    dh: &mut [T],
) {
    let m = dh.len();
    let (r, z, n) = (&row[..m], &row[m..2 * m], &row[2 * m..3 * m]);
    let (gh_n, h_prev, g_out) = (&gh_n[..m], &h_prev[..m], &g_out[..m]);
    let (di_r, rest) = d_in.split_at_mut(m);
    let (di_z, di_n) = rest.split_at_mut(m);
    let (dr_r, rest) = d_rec.split_at_mut(m);
    let (dr_z, dr_n) = rest.split_at_mut(m);
    let (di_n, dr_n) = (&mut di_n[..m], &mut dr_n[..m]);
    for j in 0..m {
        let (rj, zj, nj) = (r[j], z[j], n[j]);
        let dh_j = dh[j] + g_out[j];
        let da_n = dh_j * (T::ONE - zj) * (T::ONE - nj * nj);
        let da_r = da_n * gh_n[j] * rj * (T::ONE - rj);
        let da_z = dh_j * (h_prev[j] - nj) * zj * (T::ONE - zj);
        (di_r[j], di_z[j], di_n[j]) = (da_r, da_z, da_n);
        (dr_r[j], dr_z[j], dr_n[j]) = (da_r, da_z, da_n * rj);
        dh[j] = dh_j * zj;
    }
}
