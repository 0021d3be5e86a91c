//! # reasonembed-mkl
//!
//! Intel oneMKL for reasonembed, on x86_64 Linux only. Depending on this crate
//! turns on candle's `mkl` feature there (so candle's f32 matrix products and
//! vectorised maths run on MKL) and links MKL statically from the pinned PyPI
//! wheel (`crates/mkl-src`). It adds what candle does not call:
//!
//! * [`gemm`] in bf16: MKL's `cblas_gemm_bf16bf16f32`, bf16 inputs, f32 output.
//!   MKL picks the kernel at run time: AMX tiles where the CPU has them,
//!   AVX512-BF16 otherwise, and a conversion path on older CPUs.
//!   f32 runs on `cblas_sgemm`; both take strided operands ([`Mat`]).
//! * [`PackedB`] and [`gemm_packed`]: a weight packed once in MKL's layout,
//!   for products that reuse it.
//! * [`configure_threads`]: caps MKL's OpenMP threads at the size of the rayon
//!   pool that candle's other CPU kernels use, once per process;
//!   [`sequential`] runs MKL on one thread inside a rayon worker.
//!
//! On other targets nothing is linked, [`LINKED`] is false, and candle keeps
//! its pure-Rust kernels.

// Brings the link directives of the MKL archives into every binary that uses
// this crate (a dependency that is never named is not linked).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
extern crate intel_mkl_src;

/// Whether MKL is linked into this build.
pub const LINKED: bool = cfg!(all(target_arch = "x86_64", target_os = "linux"));

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod ffi {
    use std::os::raw::{c_char, c_int};

    // CBLAS enum values (mkl_cblas.h).
    pub const ROW_MAJOR: c_int = 101;
    pub const NO_TRANS: c_int = 111;
    pub const TRANS: c_int = 112;
    pub const PACKED: c_int = 151;
    pub const B_MATRIX: c_int = 162;

    unsafe extern "C" {
        // MKL_INT is a 32-bit int in the LP64 interface we link; MKL_BF16 is
        // an unsigned 16-bit integer holding bf16 bits.
        pub fn cblas_gemm_bf16bf16f32(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const u16,
            lda: c_int,
            b: *const u16,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        pub fn cblas_sgemm(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        pub fn cblas_sgemm_pack_get_size(identifier: c_int, m: c_int, n: c_int, k: c_int) -> usize;
        pub fn cblas_sgemm_pack(
            layout: c_int,
            identifier: c_int,
            trans: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            src: *const f32,
            ld: c_int,
            dest: *mut f32,
        );
        pub fn cblas_sgemm_compute(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        pub fn cblas_gemm_bf16bf16f32_pack_get_size(identifier: c_int, m: c_int, n: c_int, k: c_int) -> usize;
        pub fn cblas_gemm_bf16bf16f32_pack(
            layout: c_int,
            identifier: c_int,
            trans: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            src: *const u16,
            ld: c_int,
            dest: *mut u16,
        );
        pub fn cblas_gemm_bf16bf16f32_compute(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const u16,
            lda: c_int,
            b: *const u16,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        pub fn MKL_malloc(size: usize, align: c_int) -> *mut std::ffi::c_void;
        pub fn MKL_free(ptr: *mut std::ffi::c_void);
        pub fn MKL_Set_Num_Threads(n: c_int);
        pub fn MKL_Set_Num_Threads_Local(n: c_int) -> c_int;
        pub fn MKL_Get_Max_Threads() -> c_int;
        pub fn MKL_Get_Version_String(buf: *mut c_char, len: c_int);
    }
}

/// A row-major matrix inside a slice: `rows × cols`, row `i` starting at
/// `data[i · stride]` (a column block of a wider matrix has `stride > cols`).
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A densely packed `rows × cols` matrix.
    pub fn dense(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }
}

/// The output of a GEMM: a row-major f32 matrix inside a slice, as [`Mat`].
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a> MatMut<'a> {
    pub fn dense(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }
}

/// Whether a matrix of these dimensions fits its slice (the last row needs
/// only `cols` values).
fn fits(len: usize, rows: usize, cols: usize, stride: usize) -> bool {
    stride >= cols.max(1) && (rows == 0 || cols == 0 || (rows - 1) * stride + cols <= len)
}

/// How `B` of a GEMM is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BLayout {
    /// `B` is `k × n`: `C = A·B`.
    KByN,
    /// `B` is `n × k` (a linear layer's weight): `C = A·Bᵀ`.
    NByK,
}

/// How `A` of a GEMM is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ALayout {
    /// `A` is `m × k`: `C = A·op(B)`.
    MByK,
    /// `A` is `k × m`: `C = Aᵀ·op(B)`.
    KByM,
}

/// What a GEMM does with the `C` it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `C = α·A·B`: `C`'s previous values are ignored.
    Overwrite,
    /// `C += α·A·B` (e.g. `C` pre-filled with a bias).
    Accumulate,
}

/// Checks the operands of a GEMM and gives MKL's (m, n, k, lda, ldb, ldc);
/// `None` when the product is empty.
fn gemm_args<T>(name: &str, a: (&Mat<T>, ALayout), b: &Mat<T>, b_layout: BLayout, c: &MatMut) -> Option<[i32; 6]> {
    if !LINKED {
        panic!("{name}: MKL is not linked into this build");
    }
    let (a, a_layout) = a;
    let (m, k) = match a_layout {
        ALayout::MByK => (a.rows, a.cols),
        ALayout::KByM => (a.cols, a.rows),
    };
    let (bk, n) = match b_layout {
        BLayout::KByN => (b.rows, b.cols),
        BLayout::NByK => (b.cols, b.rows),
    };
    assert!(
        bk == k && c.rows == m && c.cols == n,
        "{name}: A {a_layout:?} {m}×{k}, B {b_layout:?} {}×{}, C {}×{} do not match",
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    assert!(
        fits(a.data.len(), a.rows, a.cols, a.stride)
            && fits(b.data.len(), b.rows, b.cols, b.stride)
            && fits(c.data.len(), c.rows, c.cols, c.stride),
        "{name}: a matrix does not fit its slice"
    );
    if m == 0 || n == 0 || k == 0 {
        return None;
    }
    let dim = |d: usize| i32::try_from(d).unwrap_or_else(|_| panic!("{name}: dimension {d} exceeds i32"));
    Some([dim(m), dim(n), dim(k), dim(a.stride), dim(b.stride), dim(c.stride)])
}

/// `C = α·A·op(B)` when `k` is 0: nothing to multiply.
fn empty_product(c: MatMut, output: Output) {
    if output == Output::Overwrite {
        for row in c.data.chunks_mut(c.stride.max(1)).take(c.rows) {
            row[..c.cols].fill(0.0);
        }
    }
}

/// `C = α·A·op(B)` (or `C += …`), accumulated in f32: MKL's `cblas_sgemm`
/// for f32 inputs, `cblas_gemm_bf16bf16f32` for bf16 ones (as their bits).
///
/// # Panics
/// If MKL is not linked ([`LINKED`] is false), the shapes do not match, a
/// matrix does not fit its slice, or a dimension exceeds `i32`.
pub fn gemm<T: Element>(alpha: f32, a: Mat<T>, b: Mat<T>, b_layout: BLayout, c: MatMut, output: Output) {
    gemm_with(alpha, a, ALayout::MByK, b, b_layout, c, output)
}

/// [`gemm`] with `A` stored either way: `C = α·op(A)·op(B)`. The backward
/// pass of a linear layer needs `Aᵀ` (a weight's gradient is `dYᵀ·X`).
pub fn gemm_with<T: Element>(
    alpha: f32,
    a: Mat<T>,
    a_layout: ALayout,
    b: Mat<T>,
    b_layout: BLayout,
    c: MatMut,
    output: Output,
) {
    let Some([m, n, k, lda, ldb, ldc]) = gemm_args("gemm", (&a, a_layout), &b, b_layout, &c) else {
        return empty_product(c, output);
    };
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: gemm_args checked that every matrix fits its slice with its
    // stride, so MKL reads and writes inside them; C is borrowed mutably, so
    // it aliases neither input; T::KIND names the type the pointers hold.
    unsafe {
        let (a, b, c) = (a.data.as_ptr(), b.data.as_ptr(), c.data.as_mut_ptr());
        let trans_a = match a_layout {
            ALayout::MByK => ffi::NO_TRANS,
            ALayout::KByM => ffi::TRANS,
        };
        let (layout, trans_b, beta) = (ffi::ROW_MAJOR, trans(b_layout), beta(output));
        match T::KIND {
            ElementType::F32 => ffi::cblas_sgemm(
                layout,
                trans_a,
                trans_b,
                m,
                n,
                k,
                alpha,
                a.cast(),
                lda,
                b.cast(),
                ldb,
                beta,
                c,
                ldc,
            ),
            ElementType::Bf16 => ffi::cblas_gemm_bf16bf16f32(
                layout,
                trans_a,
                trans_b,
                m,
                n,
                k,
                alpha,
                a.cast(),
                lda,
                b.cast(),
                ldb,
                beta,
                c,
                ldc,
            ),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    let _ = (m, n, k, lda, ldb, ldc, alpha);
}

/// The element types of MKL's products: f32, and bf16 as its bits (`u16`).
pub trait Element: Copy + Send + Sync + 'static {
    const KIND: ElementType;
}

impl Element for f32 {
    const KIND: ElementType = ElementType::F32;
}

/// bf16 values as their bits.
impl Element for u16 {
    const KIND: ElementType = ElementType::Bf16;
}

/// Which [`Element`] a matrix holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    Bf16,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn trans(b_layout: BLayout) -> std::os::raw::c_int {
    match b_layout {
        BLayout::KByN => ffi::NO_TRANS,
        BLayout::NByK => ffi::TRANS,
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn beta(output: Output) -> f32 {
    match output {
        Output::Overwrite => 0.0,
        Output::Accumulate => 1.0,
    }
}

/// `B` of `C = A·op(B)` in MKL's internal packed layout, made once for
/// GEMMs that reuse it (a layer's weight): each later product skips the
/// repacking of `B` that a plain GEMM does on every call. Packed on one
/// thread, for products computed on one thread ([`sequential`]).
#[derive(Debug)]
pub struct PackedB {
    ptr: std::ptr::NonNull<u8>,
    n: usize,
    k: usize,
    kind: ElementType,
}

// SAFETY: the buffer is owned, written once by MKL in `pack_*`, and only
// read afterwards.
unsafe impl Send for PackedB {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for PackedB {}

impl Drop for PackedB {
    fn drop(&mut self) {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        // SAFETY: allocated by MKL_malloc in `pack` and freed once here.
        unsafe {
            ffi::MKL_free(self.ptr.as_ptr().cast())
        };
    }
}

/// The `(n, k)` of `B` as `op(B)` is `k × n`.
fn b_dims<T>(b: &Mat<T>, b_layout: BLayout) -> (usize, usize) {
    match b_layout {
        BLayout::KByN => (b.cols, b.rows),
        BLayout::NByK => (b.rows, b.cols),
    }
}

impl PackedB {
    /// Packs `b` (`k × n` or `n × k`).
    ///
    /// # Panics
    /// As [`gemm`], or if MKL cannot allocate the buffer.
    pub fn new<T: Element>(b: Mat<T>, b_layout: BLayout) -> Self {
        if !LINKED {
            panic!("PackedB: MKL is not linked into this build");
        }
        let (n, k) = b_dims(&b, b_layout);
        assert!(
            n > 0 && k > 0 && fits(b.data.len(), b.rows, b.cols, b.stride),
            "PackedB: an empty matrix, or one that does not fit its slice"
        );
        let dim = |d: usize| i32::try_from(d).unwrap_or_else(|_| panic!("PackedB: dimension {d} exceeds i32"));
        let (n32, k32, ld) = (dim(n), dim(k), dim(b.stride));
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        // SAFETY: MKL sizes the buffer for a k × n B (m does not enter B's
        // layout; 1 is passed), allocates it 64-byte aligned, and reads `b`
        // within the bounds checked above; packing runs on this thread only.
        unsafe {
            let bytes = match T::KIND {
                ElementType::F32 => ffi::cblas_sgemm_pack_get_size(ffi::B_MATRIX, 1, n32, k32),
                ElementType::Bf16 => ffi::cblas_gemm_bf16bf16f32_pack_get_size(ffi::B_MATRIX, 1, n32, k32),
            };
            let ptr = std::ptr::NonNull::new(ffi::MKL_malloc(bytes, 64).cast::<u8>())
                .unwrap_or_else(|| panic!("PackedB: MKL could not allocate {bytes} bytes"));
            let (src, dest, trans) = (b.data.as_ptr(), ptr.as_ptr(), trans(b_layout));
            sequential(|| match T::KIND {
                ElementType::F32 => ffi::cblas_sgemm_pack(
                    ffi::ROW_MAJOR,
                    ffi::B_MATRIX,
                    trans,
                    1,
                    n32,
                    k32,
                    1.0,
                    src.cast(),
                    ld,
                    dest.cast(),
                ),
                ElementType::Bf16 => ffi::cblas_gemm_bf16bf16f32_pack(
                    ffi::ROW_MAJOR,
                    ffi::B_MATRIX,
                    trans,
                    1,
                    n32,
                    k32,
                    src.cast(),
                    ld,
                    dest.cast(),
                ),
            });
            Self {
                ptr,
                n,
                k,
                kind: T::KIND,
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        unreachable!("LINKED is false: {:?}", (n32, k32, ld))
    }

    pub fn kind(&self) -> ElementType {
        self.kind
    }

    /// `(n, k)`: `op(B)` is `k × n`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }
}

/// `C = A·op(B)` (or `C += …`) with `B` packed: f32 `A` for an f32 pack,
/// bf16 bits for a bf16 one.
///
/// # Panics
/// If the types or shapes do not match, or a matrix does not fit its slice.
pub fn gemm_packed<T: Element>(a: Mat<T>, b: &PackedB, c: MatMut, output: Output) {
    assert_eq!(T::KIND, b.kind, "gemm_packed: the input's type differs from the pack's");
    let (n, k) = b.dims();
    let (m, lda, ldc) = (a.rows, a.stride, c.stride);
    assert!(
        a.cols == k && c.rows == m && c.cols == n,
        "gemm_packed: A {m}×{}, packed B {k}×{n}, C {}×{} do not match",
        a.cols,
        c.rows,
        c.cols
    );
    assert!(
        fits(a.data.len(), m, k, lda) && fits(c.data.len(), m, n, ldc),
        "gemm_packed: a matrix does not fit its slice"
    );
    if m == 0 {
        return;
    }
    let dim = |d: usize| i32::try_from(d).unwrap_or_else(|_| panic!("gemm_packed: dimension {d} exceeds i32"));
    let [m, n, k, lda, ldc] = [m, n, k, lda, ldc].map(dim);
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: the shapes and slices are checked above, the pack holds a
    // k × n B of the same element type, and C is borrowed mutably.
    unsafe {
        let (a_ptr, b_ptr, c_ptr) = (a.data.as_ptr(), b.ptr.as_ptr(), c.data.as_mut_ptr());
        match T::KIND {
            ElementType::F32 => ffi::cblas_sgemm_compute(
                ffi::ROW_MAJOR,
                ffi::NO_TRANS,
                ffi::PACKED,
                m,
                n,
                k,
                a_ptr.cast(),
                lda,
                b_ptr.cast(),
                0,
                beta(output),
                c_ptr,
                ldc,
            ),
            ElementType::Bf16 => ffi::cblas_gemm_bf16bf16f32_compute(
                ffi::ROW_MAJOR,
                ffi::NO_TRANS,
                ffi::PACKED,
                m,
                n,
                k,
                1.0,
                a_ptr.cast(),
                lda,
                b_ptr.cast(),
                0,
                beta(output),
                c_ptr,
                ldc,
            ),
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    let _ = (m, n, k, lda, ldc, output);
}

/// Runs `f` with MKL on one thread in the calling thread only: for GEMMs
/// issued from rayon workers that already split the work, where MKL's own
/// OpenMP team would oversubscribe the cores (and spin after each call).
pub fn sequential<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // SAFETY: a plain integer argument; the setting is thread-local and
        // restored below (0 returns the thread to the global setting).
        let previous = unsafe { ffi::MKL_Set_Num_Threads_Local(1) };
        let out = f();
        // SAFETY: as above.
        unsafe { ffi::MKL_Set_Num_Threads_Local(previous) };
        out
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    f()
}

/// The number of threads MKL's next call may use (0 when MKL is not linked).
pub fn max_threads() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: no arguments; MKL reads its settings.
    return unsafe { ffi::MKL_Get_Max_Threads() }.max(0) as usize;
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    0
}

/// Sets the number of threads of MKL's later calls, for the whole process.
pub fn set_threads(n: usize) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: a plain integer argument.
    unsafe {
        ffi::MKL_Set_Num_Threads(i32::try_from(n.max(1)).unwrap_or(i32::MAX))
    };
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    let _ = n;
}

/// MKL's version string, e.g. "Intel(R) oneAPI Math Kernel Library Version
/// 2026.2-Product Build …", or `None` when MKL is not linked.
pub fn version() -> Option<String> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let mut buf = vec![0u8; 256];
        // SAFETY: MKL writes at most `len` bytes, NUL-terminated.
        unsafe { ffi::MKL_Get_Version_String(buf.as_mut_ptr().cast(), buf.len() as i32) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Some(String::from_utf8_lossy(&buf[..end]).trim().to_string())
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    None
}

/// How many threads MKL should use, decided once per process and applied by
/// [`configure_threads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadPolicy {
    /// `MKL_NUM_THREADS` or `OMP_NUM_THREADS` is set: MKL obeys it as is.
    FromEnvironment,
    /// Capped at the rayon pool's size (`RAYON_NUM_THREADS`, else the CPUs
    /// this process may use, cgroup quotas included).
    Capped { mkl_default: usize, threads: usize },
}

/// Caps MKL's OpenMP threads at the rayon pool's size, once per process; the
/// later calls return what the first one decided.
///
/// candle runs its element-wise kernels, norms and softmax on rayon and its
/// matrix products on MKL's OpenMP team; the two never run at the same time in
/// one forward pass, so both pools may use every core. MKL's own default is
/// the number of physical cores it sees, which ignores `RAYON_NUM_THREADS`
/// and cgroup CPU quotas: on a 2-CPU container of a large host it would start
/// one thread per host core. Setting `MKL_NUM_THREADS` (or `OMP_NUM_THREADS`)
/// overrides this. Call it before the first matrix product (loading a model
/// does).
pub fn configure_threads() -> ThreadPolicy {
    static POLICY: std::sync::OnceLock<ThreadPolicy> = std::sync::OnceLock::new();
    *POLICY.get_or_init(|| {
        let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
        if set("MKL_NUM_THREADS") || set("OMP_NUM_THREADS") {
            return ThreadPolicy::FromEnvironment;
        }
        let mkl_default = max_threads();
        let threads = rayon::current_num_threads().max(1);
        if LINKED && threads < mkl_default {
            set_threads(threads);
        }
        ThreadPolicy::Capped {
            mkl_default,
            threads: threads.min(mkl_default.max(1)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact on small integers: every product and sum below is representable.
    #[test]
    fn gemms_match_the_definition() {
        if !LINKED {
            return;
        }
        let (m, n, k) = (5, 7, 3);
        let bits = |v: f32| (v.to_bits() >> 16) as u16;
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 - 3.0).collect(); // n × k
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect(); // k × n
        let expected: Vec<f32> = (0..m * n)
            .map(|i| 2.0 * (0..k).map(|j| a[(i / n) * k + j] * w[(i % n) * k + j]).sum::<f32>())
            .collect();
        let plus_one: Vec<f32> = expected.iter().map(|v| v + 1.0).collect();
        let a16: Vec<u16> = a.iter().map(|&v| bits(v)).collect();
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect(); // k × m
        for (b, layout) in [(&w, BLayout::NByK), (&wt, BLayout::KByN)] {
            let (rows, cols) = if layout == BLayout::NByK { (n, k) } else { (k, n) };
            let b16: Vec<u16> = b.iter().map(|&v| bits(v)).collect();
            for (fill, output, want) in [
                (f32::NAN, Output::Overwrite, &expected),
                (1.0, Output::Accumulate, &plus_one),
            ] {
                let mut c = vec![fill; m * n];
                let (a, b) = (Mat::dense(&a, m, k), Mat::dense(b, rows, cols));
                gemm(2.0, a, b, layout, MatMut::dense(&mut c, m, n), output);
                assert_eq!(&c, want, "f32 {layout:?} {output:?}");
                let mut c = vec![fill; m * n];
                let (a, b) = (Mat::dense(&a16, m, k), Mat::dense(&b16, rows, cols));
                gemm(2.0, a, b, layout, MatMut::dense(&mut c, m, n), output);
                assert_eq!(&c, want, "bf16 {layout:?} {output:?}");
                let mut c = vec![fill; m * n];
                let f32_b = if layout == BLayout::NByK { &w } else { &wt };
                let (a, b) = (Mat::dense(&at, k, m), Mat::dense(f32_b, rows, cols));
                gemm_with(2.0, a, ALayout::KByM, b, layout, MatMut::dense(&mut c, m, n), output);
                assert_eq!(&c, want, "f32 Aᵀ {layout:?} {output:?}");
            }
        }
    }

    /// Column blocks of wider matrices: A is the middle 3 of 8 columns, C
    /// the last 7 of 10; the values around C stay as they were.
    #[test]
    fn strided_operands_touch_only_their_block() {
        if !LINKED {
            return;
        }
        let (m, n, k) = (4, 7, 3);
        let wide: Vec<f32> = (0..m * 8).map(|i| (i % 9) as f32 - 4.0).collect();
        let a: Vec<f32> = (0..m * k).map(|i| wide[(i / k) * 8 + 2 + i % k]).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut dense = vec![0.0; m * n];
        gemm(
            1.0,
            Mat::dense(&a, m, k),
            Mat::dense(&w, n, k),
            BLayout::NByK,
            MatMut::dense(&mut dense, m, n),
            Output::Overwrite,
        );
        let mut c = vec![-1.0f32; m * 10];
        let block = MatMut::strided(&mut c[3..], m, n, 10);
        gemm(
            1.0,
            Mat::strided(&wide[2..], m, k, 8),
            Mat::dense(&w, n, k),
            BLayout::NByK,
            block,
            Output::Overwrite,
        );
        for (i, v) in c.iter().enumerate() {
            let (r, col) = (i / 10, i % 10);
            let want = if col >= 3 { dense[r * n + col - 3] } else { -1.0 };
            assert_eq!(*v, want, "row {r} column {col}");
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_matrix_past_its_slice_is_refused() {
        let a = vec![0.0f32; 11];
        let mut c = vec![0.0f32; 16];
        gemm(
            1.0,
            Mat::dense(&a, 4, 3),
            Mat::dense(&a, 4, 3),
            BLayout::NByK,
            MatMut::dense(&mut c, 4, 4),
            Output::Overwrite,
        );
    }

    /// A pack made once serves products of any number of rows, and gives
    /// what the plain GEMM gives.
    #[test]
    fn packed_weights_give_the_plain_product() {
        if !LINKED {
            return;
        }
        let (n, k) = (40, 24);
        let bits = |v: f32| (v.to_bits() >> 16) as u16;
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w16: Vec<u16> = w.iter().map(|&v| bits(v)).collect();
        let (p32, p16) = (
            PackedB::new(Mat::dense(&w, n, k), BLayout::NByK),
            PackedB::new(Mat::dense(&w16, n, k), BLayout::NByK),
        );
        for m in [1, 7, 64, 300] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let a16: Vec<u16> = a.iter().map(|&v| bits(v)).collect();
            let mut want = vec![0.0; m * n];
            let c = MatMut::dense(&mut want, m, n);
            gemm(
                1.0,
                Mat::dense(&a, m, k),
                Mat::dense(&w, n, k),
                BLayout::NByK,
                c,
                Output::Overwrite,
            );
            for output in [Output::Overwrite, Output::Accumulate] {
                let start = if output == Output::Overwrite { f32::NAN } else { 0.0 };
                let mut got = vec![start; m * n];
                gemm_packed(Mat::dense(&a, m, k), &p32, MatMut::dense(&mut got, m, n), output);
                assert_eq!(got, want, "f32, {m} rows, {output:?}");
                let mut got = vec![start; m * n];
                gemm_packed(Mat::dense(&a16, m, k), &p16, MatMut::dense(&mut got, m, n), output);
                assert_eq!(got, want, "bf16, {m} rows, {output:?}");
            }
        }
    }

    #[test]
    fn sequential_restores_the_threads() {
        let before = max_threads();
        assert_eq!(sequential(max_threads), if LINKED { 1 } else { 0 });
        assert_eq!(max_threads(), before);
    }

    #[test]
    fn threads_are_capped_at_the_rayon_pool() {
        let policy = configure_threads();
        if LINKED && policy != ThreadPolicy::FromEnvironment {
            assert!(max_threads() <= rayon::current_num_threads());
            assert!(version().unwrap().contains("Math Kernel Library"), "{:?}", version());
        }
    }
}
