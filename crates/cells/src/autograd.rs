//! What PyTorch shows of autograd from Python and tch does not: a tensor's
//! `grad_fn` name (`t.grad_fn`) and weak references (`weakref.ref(t)`).
//!
//! They let a test see which path produced a tensor (the sequence kernel's
//! node or the step-by-step ops) and whether a finished step's graph was
//! freed: a graph is held by the tensors that came out of it, so a weak
//! reference to an output that outlives every strong one means the graph
//! (and every tensor saved for its backward) is alive through a cycle.

use std::ffi::{c_char, c_int, c_void};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn rnnlab_grad_fn_name(t: *const C_tensor, out: *mut c_char, len: usize) -> c_int;
    fn rnnlab_weak_new(t: *const C_tensor) -> *mut c_void;
    fn rnnlab_weak_alive(w: *const c_void) -> c_int;
    fn rnnlab_weak_free(w: *mut c_void);
}

/// The name of the autograd node that made `t` (PyTorch's `t.grad_fn`), or
/// `None` for a leaf or a tensor made without gradient tracking. The sequence
/// kernels' node is named after `RustFunction`.
pub fn grad_fn_name(t: &Tensor) -> Option<String> {
    let mut buf = [0 as c_char; 256];
    // SAFETY: `t` is a live tensor; the bridge writes at most `buf.len()` bytes.
    let has = unsafe { rnnlab_grad_fn_name(t.as_ptr(), buf.as_mut_ptr(), buf.len()) };
    (has != 0).then(|| super::kernel::message(&buf))
}

/// A weak reference to a tensor: it does not keep the tensor alive, and says
/// whether something else still does (Python's `weakref.ref(t)`).
pub struct WeakTensor(*mut c_void);

impl WeakTensor {
    pub fn new(t: &Tensor) -> Self {
        // SAFETY: `t` is a live tensor; the bridge returns an owned weak pointer.
        Self(unsafe { rnnlab_weak_new(t.as_ptr()) })
    }

    /// Whether any strong reference (a `Tensor`, or an autograd node that
    /// saved it) still holds the tensor.
    pub fn is_alive(&self) -> bool {
        // SAFETY: the pointer is ours until drop.
        unsafe { rnnlab_weak_alive(self.0) != 0 }
    }
}

impl Drop for WeakTensor {
    fn drop(&mut self) {
        // SAFETY: made by `rnnlab_weak_new`, freed once.
        unsafe { rnnlab_weak_free(self.0) }
    }
}
