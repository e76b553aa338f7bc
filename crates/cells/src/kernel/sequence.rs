//! What the sequence kernels share: their sizes, which rows a time step
//! touches, the recurrent products inside the time loop, and the weight
//! gradients after it (products over every step at once). Every product
//! writes into the kernels' own buffers, on as many intra-op threads as
//! libtorch is given. The recurrent ones multiply by `W_hh` at every step: in
//! f32, where libtorch carries MKL, `W_hh` is packed once per kernel call for
//! MKL's packed GEMM ([`super::packed`]); elsewhere each step calls
//! libtorch's GEMM, the one `nn.LSTM` uses.

use super::packed::{self, PackedB};
use super::real::Buf;
use super::{CustomFunction, Real};
use tch::{Kind, Tensor};

/// A recurrent layer's kernel over a whole sequence, for f32 and f64: its
/// tensors arrive as contiguous CPU buffers of one dtype.
pub(crate) trait SequenceKernel: Sync + 'static {
    /// For error messages: "LSTM", "GRU".
    const NAME: &'static str;

    /// Outputs, and the tensors beyond the inputs that `backward` needs.
    fn forward<T: Real>(inputs: &[Buf<T>]) -> Result<(Vec<Tensor>, Vec<Tensor>), String>;

    /// The gradient of every input, in the inputs' order, from the saved
    /// tensors: the `n_inputs` inputs, then what `forward` kept.
    fn backward<T: Real>(
        saved: &[Buf<T>],
        grads: &[Buf<T>],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String>;
}

impl<S: SequenceKernel> CustomFunction for S {
    fn forward(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
        match inputs[0].kind() {
            Kind::Float => S::forward(&Buf::<f32>::all(inputs)?),
            Kind::Double => S::forward(&Buf::<f64>::all(inputs)?),
            k => Err(format!("{} kernel: no kernel for {k:?}", S::NAME)),
        }
    }

    fn backward(
        &self,
        saved: &[Tensor],
        grads: &[Tensor],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String> {
        match saved[0].kind() {
            Kind::Float => S::backward(&Buf::<f32>::all(saved)?, &Buf::all(grads)?, n_inputs),
            Kind::Double => S::backward(&Buf::<f64>::all(saved)?, &Buf::all(grads)?, n_inputs),
            k => Err(format!("{} kernel: no kernel for {k:?}", S::NAME)),
        }
    }
}

/// Sizes of one layer over a sequence: batch, steps and hidden width.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub t: usize,
    pub h: usize,
}

impl Dims {
    /// From `x [B, T, I]` and `weight_hh [G*H, H]`.
    pub fn of(name: &str, x: &Tensor, w_hh: &Tensor, gates: i64) -> Result<Self, String> {
        let (xs, ws) = (x.size(), w_hh.size());
        if xs.len() != 3 || xs[1] < 1 || ws.len() != 2 || ws[0] != gates * ws[1] {
            return Err(format!("{name} kernel: input {xs:?} and weight_hh {ws:?} do not fit"));
        }
        let u = |v: i64| v as usize;
        Ok(Self { b: u(xs[0]), t: u(xs[1]), h: u(ws[1]) })
    }

    pub fn shape(&self, width: usize) -> [i64; 3] {
        [self.b as i64, self.t as i64, width as i64]
    }
}

/// Packing `W_hh` costs about what packed products save over their first few
/// steps, so shorter sequences keep libtorch's GEMM.
pub(crate) const PACK_MIN_STEPS: usize = 4;

/// `W_hh` as one kernel call's time loop multiplies by it: packed once for
/// MKL's GEMM (f32, MKL present, at least [`PACK_MIN_STEPS`] steps, sizes that
/// fit MKL's `int`), or the tensor for libtorch's. Built per call and dropped
/// with it, so no packed copy outlives the weights it was made from.
pub(crate) struct Recurrent<'a, T> {
    w_hh: &'a Buf<T>,
    /// `W_hh^T` (forward) rather than `W_hh` (backward).
    transpose: bool,
    /// Rows of the left operand.
    b: usize,
    packed: Option<PackedB>,
}

impl<'a, T: Real> Recurrent<'a, T> {
    /// For the forward products `h_prev W_hh^T` of a sequence of `d`.
    pub fn forward(w_hh: &'a Buf<T>, d: Dims) -> Self {
        Self::new(w_hh, d, true)
    }

    /// For the backward products `d_s W_hh` of a sequence of `d`.
    pub fn backward(w_hh: &'a Buf<T>, d: Dims) -> Self {
        Self::new(w_hh, d, false)
    }

    fn new(w_hh: &'a Buf<T>, d: Dims, transpose: bool) -> Self {
        let (g, h) = (w_hh.tensor.size()[0] as usize, w_hh.tensor.size()[1] as usize);
        // a step's rows lie up to `T*G` apart, which must fit MKL's `int`
        let packs =
            T::KIND == Kind::Float && d.t >= PACK_MIN_STEPS && i32::try_from(d.t * g).is_ok();
        let packed = match packed::mkl() {
            Some(mkl) if packs => {
                let w = w_hh.tensor.data_ptr() as *const f32;
                // SAFETY: `w_hh` is a contiguous f32 [G, H] buffer.
                unsafe { PackedB::new(mkl, w, (g, h), transpose, d.b) }
            }
            _ => None,
        };
        Self { w_hh, transpose, b: d.b, packed }
    }

    #[cfg(test)]
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// `c (+)= a [B, K] · (W_hh^T or W_hh)`, overwriting `c` unless
    /// `accumulate`; `a` is a `[B, K]` view whose rows may be strided (a step
    /// of a `[B, T, K]` buffer), `c` a contiguous `[B, N]` buffer.
    pub fn product(&self, a: &Tensor, accumulate: bool, c: &mut Buf<T>) {
        let (g, h) = (self.w_hh.tensor.size()[0], self.w_hh.tensor.size()[1]);
        let (k, n) = if self.transpose { (h, g) } else { (g, h) };
        let b = self.b as i64;
        assert!(a.size() == [b, k] && a.stride()[1] == 1, "left operand {:?}", a.size());
        assert!(c.tensor.size() == [b, n], "product into {:?}", c.tensor.size());
        match &self.packed {
            Some(p) => {
                let lda = a.stride()[0] as usize;
                let ldc = c.tensor.size()[1] as usize;
                // SAFETY: `a` and `c` are f32 CPU tensors of the packed
                // product's shapes (checked above), `c` a contiguous buffer
                // of its own.
                unsafe {
                    p.product(
                        a.data_ptr() as *const f32,
                        lda,
                        c.tensor.data_ptr() as *mut f32,
                        ldc,
                        accumulate,
                    )
                }
            }
            None => {
                let w = match self.transpose {
                    true => self.w_hh.tensor.tr(),
                    false => self.w_hh.tensor.shallow_clone(),
                };
                if accumulate {
                    let _ = c.tensor.shallow_clone().addmm_(a, &w);
                } else {
                    let _ = a.mm_out(&c.tensor, &w);
                }
            }
        }
    }
}

/// Which rows of the `[B, T, ·]` buffers time step `s` touches.
#[derive(Clone, Copy)]
pub(crate) struct Rows {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub s: usize,
}

impl Rows {
    /// `c (+)= h_prev W_hh^T` for the batch at step `s`, overwriting `c [B,
    /// G*H]` unless `accumulate`: `h_prev` is `h0` at step 0 and `out[:, s-1]`
    /// after. The product writes straight into the kernel's buffer, which is
    /// contiguous: a product into rows `T*G*H` apart runs far slower.
    pub fn recur<T: Real>(
        self,
        h0: &Buf<T>,
        out: &Buf<T>,
        w: &Recurrent<T>,
        accumulate: bool,
        c: &mut Buf<T>,
    ) {
        let Rows { b, t, h, s } = self;
        assert!(w.transpose, "a backward product in the forward loop");
        let g = w.w_hh.tensor.numel() / h;
        assert!(h0.tensor.numel() == b * h && out.tensor.numel() == b * t * h);
        assert!(c.tensor.numel() == b * g);
        let prev = match s {
            0 => h0.tensor.shallow_clone(),
            _ => out.tensor.select(1, s as i64 - 1),
        };
        w.product(&prev, accumulate, c);
    }

    /// `dh (+)= d[:, s] W_hh`, overwriting `dh` unless `accumulate`: the
    /// recurrent side's pre-activation gradient at step `s` (`d [B, T, G*H]`)
    /// back to the previous state.
    pub fn back<T: Real>(self, d: &Buf<T>, w: &Recurrent<T>, accumulate: bool, dh: &mut Buf<T>) {
        let Rows { b, t, h, s } = self;
        assert!(!w.transpose, "a forward product in the backward loop");
        let g = w.w_hh.tensor.size()[0] as usize;
        assert!(d.tensor.numel() == b * t * g && dh.tensor.numel() == b * h);
        w.product(&d.tensor.select(1, s as i64), accumulate, dh);
    }
}

/// Writes into `states [B, T, H]` (a view is fine) the state each step
/// started from: `h0` at step 0, the previous output of `out` after.
fn write_previous_states(states: &Tensor, h0: &Tensor, out: &Tensor) {
    let t = out.size()[1];
    states.select(1, 0).copy_(h0);
    states.narrow(1, 1, t - 1).copy_(&out.narrow(1, 0, t - 1));
}

/// The state each step started from, `[B, T, H]`.
fn previous_states(h0: &Tensor, out: &Tensor) -> Tensor {
    let states = out.empty_like();
    write_previous_states(&states, h0, out);
    states
}

/// `[x | h_prev]`, `[B, T, I + H]`: each step's input beside the state it
/// started from, written once into one buffer.
fn inputs_and_previous_states(x: &Tensor, h0: &Tensor, out: &Tensor) -> Tensor {
    let (b, t, i) = (x.size()[0], x.size()[1], x.size()[2]);
    let h = out.size()[2];
    let both = Tensor::empty([b, t, i + h], (x.kind(), x.device()));
    both.narrow(2, 0, i).copy_(x);
    write_previous_states(&both.narrow(2, i, h), h0, out);
    both
}

/// The gradients of `x`, `weight_ih`, `weight_hh` and (with bias) both biases,
/// from the pre-activation gradients of every step: `d_in [B, T, G*H]` of the
/// input side `x W_ih^T + b_ih`; `d_rec_last [B, T, H]`, the recurrent side's
/// (`h W_hh^T + b_hh`) in the last gate's rows, where it is all that differs
/// from `d_in` (the GRU's `n`; `None` where the sides share one gradient, as
/// in the LSTM); `h0` and the
/// layer's output `out` give the state each step started from. The gradients
/// of `h0` and of the initial cell state come first in the kernels' input
/// order, so they are left to the caller.
pub(crate) struct WeightGrads {
    pub dx: Tensor,
    pub dw_ih: Tensor,
    pub dw_hh: Tensor,
    pub biases: Option<(Tensor, Tensor)>,
}

impl WeightGrads {
    pub fn new(
        d_in: &Tensor,
        d_rec_last: Option<&Tensor>,
        x: &Tensor,
        (h0, out): (&Tensor, &Tensor),
        w_ih: &Tensor,
        bias: bool,
    ) -> Self {
        let (b, t, g) = (d_in.size()[0], d_in.size()[1], d_in.size()[2]);
        // widths spelled out: `-1` is ambiguous for an empty batch
        let flat = |m: &Tensor| m.reshape([b * t, m.size()[2]]);
        let d_in = flat(d_in);
        let d_rec_last = d_rec_last.map(flat);
        let kind = d_in.kind();
        let i = w_ih.size()[1];
        let (dw_ih, dw_hh) = match &d_rec_last {
            // both sides share `d` (the LSTM): one product over `[x | h_prev]`,
            // which runs faster than two half as wide; MKL runs `d^T m` faster
            // as `(m^T d)^T` when `m` is narrow (a first layer's few inputs)
            None => {
                let both = flat(&inputs_and_previous_states(x, h0, out));
                let dwt = both.tr().mm(&d_in);
                (
                    dwt.narrow(0, 0, i).tr().contiguous(),
                    dwt.narrow(0, i, dwt.size()[0] - i).tr().contiguous(),
                )
            }
            // the recurrent side's rows: the input side's, then its own last
            Some(last) => {
                let (h_prev, h) = (flat(&previous_states(h0, out)), last.size()[1]);
                let dw_hh = Tensor::empty([g, h], (kind, d_in.device()));
                let _ = d_in.narrow(1, 0, g - h).tr().mm_out(&dw_hh.narrow(0, 0, g - h), &h_prev);
                let _ = last.tr().mm_out(&dw_hh.narrow(0, g - h, h), &h_prev);
                (d_in.tr().mm(&flat(x)), dw_hh)
            }
        };
        Self {
            dx: d_in.mm(w_ih).view([b, t, i]),
            dw_ih,
            dw_hh,
            biases: bias.then(|| {
                let sum = |d: &Tensor| d.sum_dim_intlist(0, false, kind).view([g]);
                let db_ih = sum(&d_in);
                let db_hh = match &d_rec_last {
                    Some(last) => {
                        let h = last.size()[1];
                        let last = last.sum_dim_intlist(0, false, kind).view([h]);
                        Tensor::cat(&[db_ih.narrow(0, 0, g - h), last], 0)
                    }
                    None => db_ih.copy(),
                };
                (db_ih, db_hh)
            }),
        }
    }

    /// `[dx, dh0, (dc0,) dW_ih, dW_hh, (db_ih, db_hh)]`, the kernels' input order.
    pub fn into_input_order(self, state_grads: Vec<Tensor>) -> Vec<Option<Tensor>> {
        let mut out = vec![Some(self.dx)];
        out.extend(state_grads.into_iter().map(Some));
        out.extend([Some(self.dw_ih), Some(self.dw_hh)]);
        if let Some((b_ih, b_hh)) = self.biases {
            out.extend([Some(b_ih), Some(b_hh)]);
        }
        out
    }
}

/// `fn $name(args)` runs `$inner(args)` (an `#[inline(always)]` fn) from a
/// copy compiled for AVX2 and FMA when the CPU has them: eight f32 lanes
/// instead of SSE2's four, for loops written to vectorise.
///
/// The kernels dispatch one example's cell, not a whole step: that copy is a
/// function of its own, whose slices the compiler knows to be disjoint, so
/// its loops vectorise unconditionally. Inlined into the loop over the batch,
/// where a state row is read from the same buffer the next one is written to,
/// they were guarded by overlap checks that failed, and the GRU's ran scalar.
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
pub(crate) use simd_dispatch;

/// Asks the CPU to bring `rows` into cache ahead of use. A step's rows in the
/// `[B, T, ·]` buffers lie `T` rows apart, so each example's row starts a new
/// page that the hardware prefetcher does not foresee; the row loops ask for
/// the next example's rows while working on this one's.
#[inline(always)]
pub(crate) fn prefetch<T>(rows: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (p, bytes) = (rows.as_ptr() as *const i8, std::mem::size_of_val(rows));
        for off in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults, and `off` stays inside `rows`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = rows;
}
