//! Hand-written forward and backward passes over a whole sequence, run as one
//! autograd node.
//!
//! Step by step, a cell costs a dozen libtorch calls forward and as many
//! autograd nodes backward; at the coursework's sizes (batch 100, hidden 32)
//! each call does microseconds of arithmetic and about as much dispatch. A
//! kernel here does one layer's whole sequence as one GEMM per step (into the
//! kernel's own buffers, on a once-packed `W_hh` where MKL is there:
//! [`packed`]) and the gates fused in one vectorised loop,
//! and its backward is written out by hand (BPTT), so a training step makes
//! one autograd node per layer instead of thousands.
//!
//! tch cannot define an autograd function, so `csrc/custom_function.cpp`
//! wraps [`CustomFunction`] in a `torch::autograd::Function`: `loss.backward()`
//! reaches the Rust backward like any other node. The bridge saves the
//! tensors the backward needs as PyTorch's `save_for_backward` does, so the
//! node keeps autograd's guarantees: its graph is freed with its last tensor,
//! an input changed in place before backward is an error, and a second
//! backward needs `retain_graph`. Kernels (the LSTM's and the
//! GRU's) run on CPU tensors of f32 or f64; the cells fall back to their
//! step-by-step path elsewhere (CUDA, half precision).

pub(crate) mod gru;
pub(crate) mod lstm;
mod packed;
mod real;
mod sequence;
#[cfg(test)]
mod tests;

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

pub(crate) use real::Real;

/// A function with a hand-written gradient.
pub(crate) trait CustomFunction: Sync + 'static {
    /// Outputs, and the tensors beyond the inputs that [`Self::backward`]
    /// needs (the bridge saves every input itself).
    fn forward(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>), String>;

    /// The gradient of every input (`n_inputs` of them; `None` for none) from
    /// the saved tensors (the `n_inputs` inputs, then what forward kept) and
    /// the gradient of every output (zeros for an output that did not reach
    /// the loss).
    fn backward(
        &self,
        saved: &[Tensor],
        grad_outputs: &[Tensor],
        n_inputs: usize,
    ) -> Result<Vec<Option<Tensor>>, String>;
}

/// Runs the sequence kernel `f` on `[input [B, T, I], states.., weights..]`
/// when every tensor is on the CPU in the input's dtype, f32 or f64, and the
/// sequence has a step; `Ok(None)` otherwise, for the caller's step-by-step
/// path. A kernel's own failure (shapes that do not fit) is an error.
pub(crate) fn sequence<F: CustomFunction, const N: usize>(
    f: &'static F,
    tensors: &[&Tensor],
) -> Result<Option<[Tensor; N]>, crate::CellError> {
    let input = tensors[0];
    let kind = input.kind();
    let runs = matches!(kind, Kind::Float | Kind::Double)
        && input.dim() == 3
        && input.size()[1] > 0
        && tensors.iter().all(|t| t.device() == Device::Cpu && t.kind() == kind);
    if !runs {
        return Ok(None);
    }
    let outs = apply(f, tensors, N).map_err(crate::CellError::Kernel)?;
    Ok(Some(outs.try_into().unwrap_or_else(|_| unreachable!("apply returns N outputs"))))
}

type ForwardFn = unsafe extern "C" fn(
    *const c_void,
    *mut *mut C_tensor,
    usize,
    *mut *mut C_tensor,
    usize,
    *mut *mut C_tensor,
    usize,
    *mut usize,
    *mut c_char,
    usize,
) -> c_int;

type BackwardFn = unsafe extern "C" fn(
    *const c_void,
    *mut *mut C_tensor,
    usize,
    *mut *mut C_tensor,
    usize,
    *mut *mut C_tensor,
    usize,
    *mut c_char,
    usize,
) -> c_int;

extern "C" {
    fn rnnlab_apply(
        op: *const c_void,
        fwd: ForwardFn,
        bwd: BackwardFn,
        inputs: *const *mut C_tensor,
        n_in: usize,
        outputs: *mut *mut C_tensor,
        n_out: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Runs `f` on `inputs` as one autograd node with `n_out` outputs.
pub(crate) fn apply<F: CustomFunction>(
    f: &'static F,
    inputs: &[&Tensor],
    n_out: usize,
) -> Result<Vec<Tensor>, String> {
    let ptrs: Vec<*mut C_tensor> = inputs.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
    let mut outs = vec![std::ptr::null_mut(); n_out];
    let mut err = [0 as c_char; 1024];
    // SAFETY: the handles are live for the call (borrowed); the bridge writes
    // `n_out` new handles, which become owned tensors.
    let rc = unsafe {
        rnnlab_apply(
            f as *const F as *const c_void,
            forward_trampoline::<F>,
            backward_trampoline::<F>,
            ptrs.as_ptr(),
            ptrs.len(),
            outs.as_mut_ptr(),
            n_out,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        return Err(message(&err));
    }
    Ok(outs.into_iter().map(|p| unsafe { Tensor::from_ptr(p) }).collect())
}

pub(crate) fn message(err: &[c_char]) -> String {
    let bytes: Vec<u8> = err.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Takes ownership of `n` handles made by the bridge.
unsafe fn take(ptrs: *mut *mut C_tensor, n: usize) -> Vec<Tensor> {
    (0..n).map(|i| Tensor::from_ptr(*ptrs.add(i))).collect()
}

/// Hands a tensor over to the bridge (null for `None`).
fn give(t: Option<Tensor>) -> *mut C_tensor {
    match t {
        Some(mut t) => {
            let p = t.as_mut_ptr();
            std::mem::forget(t);
            p
        }
        None => std::ptr::null_mut(),
    }
}

/// Writes `msg` into the bridge's buffer and returns the failure code.
unsafe fn fail(msg: &str, err: *mut c_char, err_len: usize) -> c_int {
    let n = msg.len().min(err_len.saturating_sub(1));
    std::ptr::copy_nonoverlapping(msg.as_ptr() as *const c_char, err, n);
    *err.add(n) = 0;
    1
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic in a Rust kernel".into())
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn forward_trampoline<F: CustomFunction>(
    op: *const c_void,
    inputs: *mut *mut C_tensor,
    n_in: usize,
    outputs: *mut *mut C_tensor,
    n_out: usize,
    saved: *mut *mut C_tensor,
    max_saved: usize,
    n_saved: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    let f = &*(op as *const F);
    let inputs = take(inputs, n_in);
    match catch_unwind(AssertUnwindSafe(|| f.forward(&inputs))) {
        Ok(Ok((outs, keep))) if outs.len() == n_out && keep.len() <= max_saved => {
            for (i, t) in outs.into_iter().enumerate() {
                *outputs.add(i) = give(Some(t));
            }
            *n_saved = keep.len();
            for (i, t) in keep.into_iter().enumerate() {
                *saved.add(i) = give(Some(t));
            }
            0
        }
        Ok(Ok((outs, keep))) => fail(
            &format!("kernel gave {} outputs and {} saved tensors", outs.len(), keep.len()),
            err,
            err_len,
        ),
        Ok(Err(e)) => fail(&e, err, err_len),
        Err(p) => fail(&panic_message(p), err, err_len),
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn backward_trampoline<F: CustomFunction>(
    op: *const c_void,
    saved: *mut *mut C_tensor,
    n_saved: usize,
    grad_outputs: *mut *mut C_tensor,
    n_out: usize,
    grad_inputs: *mut *mut C_tensor,
    n_in: usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    let f = &*(op as *const F);
    let (saved, grads) = (take(saved, n_saved), take(grad_outputs, n_out));
    match catch_unwind(AssertUnwindSafe(|| f.backward(&saved, &grads, n_in))) {
        Ok(Ok(gs)) if gs.len() == n_in => {
            for (i, g) in gs.into_iter().enumerate() {
                *grad_inputs.add(i) = give(g);
            }
            0
        }
        Ok(Ok(gs)) => {
            fail(&format!("kernel gave {} gradients for {n_in} inputs", gs.len()), err, err_len)
        }
        Ok(Err(e)) => fail(&e, err, err_len),
        Err(p) => fail(&panic_message(p), err, err_len),
    }
}
