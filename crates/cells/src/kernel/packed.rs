//! MKL's packed GEMM, for a right operand that many products share.
//!
//! A GEMM first copies its right operand into the block layout its inner loop
//! reads. libtorch's `mm` does that on every call, and a kernel's time loop
//! multiplies by the same `W_hh` at every step, so each step repacks it. MKL
//! can pack a matrix once (`cblas_sgemm_pack`) and run products on the packed
//! copy (`cblas_sgemm_compute`), which is what oneDNN's fused RNN behind
//! `nn.LSTM` does with its recurrent weights.
//!
//! libtorch's x86-64 Linux builds link MKL statically and export those
//! routines for f32 (not the f64 ones). They are looked up by name at run time,
//! once, so that the crate builds and runs against a libtorch without MKL
//! (macOS, aarch64): there [`mkl`] is `None` and the kernels keep libtorch's
//! GEMM. MKL runs on libtorch's intra-op threads: `at::set_num_threads` (tch's
//! `set_num_threads`, `--threads`) sets MKL's thread count too.

use std::alloc::Layout;
use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

// MKL's CBLAS enums (`mkl_cblas.h`).
const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const PACKED: c_int = 151;
const B_MATRIX: c_int = 162;

// The LP64 interface (`MKL_INT` is `int`), the one libtorch links; sizes that
// do not fit an `int` are left to libtorch's GEMM.
type GetSizeFn = unsafe extern "C" fn(c_int, c_int, c_int, c_int) -> usize;
type PackFn = unsafe extern "C" fn(
    c_int,      // layout
    c_int,      // identifier
    c_int,      // trans
    c_int,      // m
    c_int,      // n
    c_int,      // k
    f32,        // alpha
    *const f32, // src
    c_int,      // ld
    *mut f32,   // dest
);
type ComputeFn = unsafe extern "C" fn(
    c_int,      // layout
    c_int,      // transa
    c_int,      // transb
    c_int,      // m
    c_int,      // n
    c_int,      // k
    *const f32, // a
    c_int,      // lda
    *const f32, // b
    c_int,      // ldb
    f32,        // beta
    *mut f32,   // c
    c_int,      // ldc
);

/// MKL's f32 packed-GEMM routines, as found in the running process.
pub(crate) struct Mkl {
    get_size: GetSizeFn,
    pack: PackFn,
    compute: ComputeFn,
}

/// The routines when the loaded libtorch exports all three, looked up once.
pub(crate) fn mkl() -> Option<&'static Mkl> {
    static MKL: OnceLock<Option<Mkl>> = OnceLock::new();
    MKL.get_or_init(lookup).as_ref()
}

#[cfg(unix)]
fn lookup() -> Option<Mkl> {
    let sym = |name: &std::ffi::CStr| {
        // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the libraries
        // the process loaded (libtorch among them).
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    let get_size = sym(c"cblas_sgemm_pack_get_size")?;
    let pack = sym(c"cblas_sgemm_pack")?;
    let compute = sym(c"cblas_sgemm_compute")?;
    // SAFETY: MKL's documented C signatures for these names.
    unsafe {
        Some(Mkl {
            get_size: std::mem::transmute::<*mut c_void, GetSizeFn>(get_size),
            pack: std::mem::transmute::<*mut c_void, PackFn>(pack),
            compute: std::mem::transmute::<*mut c_void, ComputeFn>(compute),
        })
    }
}

#[cfg(not(unix))]
fn lookup() -> Option<Mkl> {
    None
}

/// A row-major f32 right operand `B [k, n]` packed by MKL for products
/// `C [m, n] (+)= A [m, k] B`, in a 64-byte aligned buffer freed on drop.
pub(crate) struct PackedB {
    mkl: &'static Mkl,
    buf: NonNull<u8>,
    layout: Layout,
    m: c_int,
    n: c_int,
    k: c_int,
}

impl PackedB {
    /// Packs `B = w` (`transpose`: `B = w^T`), `w` a contiguous row-major
    /// `[rows, cols]`, for products with `m` rows. `None` when a size is zero or
    /// does not fit MKL's `int`.
    ///
    /// # Safety
    /// `w` points to `rows * cols` readable f32s.
    pub unsafe fn new(
        mkl: &'static Mkl,
        w: *const f32,
        (rows, cols): (usize, usize),
        transpose: bool,
        m: usize,
    ) -> Option<Self> {
        let (k, n) = if transpose { (cols, rows) } else { (rows, cols) };
        let int = |v: usize| c_int::try_from(v).ok().filter(|&v| v > 0);
        let (m, n, k, ld) = (int(m)?, int(n)?, int(k)?, int(cols)?);
        let bytes = (mkl.get_size)(B_MATRIX, m, n, k);
        // MKL's packed layout depends on the buffer's address: aligned as its
        // own allocator would, never moved.
        let layout = Layout::from_size_align(bytes.max(1), 64).ok()?;
        let buf = NonNull::new(std::alloc::alloc(layout))
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let trans = if transpose { TRANS } else { NO_TRANS };
        (mkl.pack)(ROW_MAJOR, B_MATRIX, trans, m, n, k, 1.0, w, ld, buf.as_ptr() as *mut f32);
        #[cfg(test)]
        PACKS.with(|c| c.set(c.get() + 1));
        Some(Self { mkl, buf, layout, m, n, k })
    }

    /// `c = a B`, or `c += a B` when `accumulate`: `a` holds `m` rows of `k`
    /// with row starts `lda` apart, `c` `m` rows of `n` starting `ldc` apart.
    ///
    /// # Safety
    /// `a` and `c` cover those rows (`lda >= k`, `ldc >= n`) and do not overlap.
    pub unsafe fn product(
        &self,
        a: *const f32,
        lda: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let int = |v: usize| c_int::try_from(v).expect("a leading dimension fits an int");
        let (lda, ldc) = (int(lda), int(ldc));
        assert!(lda >= self.k && ldc >= self.n, "leading dimensions {lda}, {ldc} too short");
        let beta = if accumulate { 1.0 } else { 0.0 };
        let b = self.buf.as_ptr() as *const f32;
        let Self { m, n, k, .. } = *self;
        (self.mkl.compute)(ROW_MAJOR, NO_TRANS, PACKED, m, n, k, a, lda, b, n, beta, c, ldc);
    }
}

impl Drop for PackedB {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.buf.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
thread_local! {
    /// Matrices packed on this thread: tests see which path a kernel took.
    pub(crate) static PACKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
