//! adalbert's CPU kernels: the arithmetic of the encoder's forward and backward passes on
//! plain `f32` slices.
//!
//! What it is for: the work that decides adalbert's speed on a CPU, written once and tested
//! against straightforward references.
//!
//! - [`gemm`]: `C = act(alpha * A * B + bias) (+ C)` on right-hand sides packed once
//!   ([`gemm::PackedB`]: 32-column K-major panels), an AVX-512 12 x 32 register tile and a
//!   portable tile, split over the rayon pool; optionally with a LayerNorm over whole output
//!   rows ([`gemm::gemm_norm`]).
//! - [`bf16`]: the compressed path: bf16 weights packed into AMX tiles, `tdpbf16ps` products
//!   with fp32 accumulation (an fp32 fallback on bf16-rounded weights where AMX is missing).
//! - [`attention`]: multi-head self-attention on one fused QKV projection, per (sequence,
//!   head), without copying heads out; the inference form, and the training form that keeps
//!   the probabilities and applies dropout, with its backward pass.
//! - [`norm`], [`softmax`], [`act`]: LayerNorm (with residual), masked softmax and
//!   activations (GELU in erf and tanh form, ReLU), each with its gradient.
//! - [`linear`] and [`residual_norm`]: the slice math of the training ops: frozen linear
//!   layers packed once (forward and input gradient), the frozen feed-forward and attention
//!   blocks, trainable linear layers with weight gradients, and the sublayer end (dropout,
//!   bottleneck adapter, residual, LayerNorm) with every gradient.
//! - [`elementwise`], [`dropout`], [`scratch`], [`par_rows`]: the small parallel pieces the
//!   ops share, the seeded dropout mask, and per-thread temporaries reused between steps.
//! - [`process`]: the allocator setting that training relies on.
//!
//! What it is not for: tensors, autograd, model structure or configuration. The model crate
//! wraps these functions as candle ops and decides which of them run; nothing here reads the
//! environment or knows about checkpoints.
//!
//! Dispatch: every kernel takes an [`Isa`]. [`Isa::detect`] reports what this CPU runs;
//! AVX-512 code runs only where the CPU has it, and any other request runs the portable code
//! (plain Rust that the compiler vectorizes for the baseline target). Both give the same
//! results up to float rounding, and the tests run both where the CPU allows. AMX is used by
//! [`bf16`] where the CPU and the operating system allow it ([`bf16::amx_available`]).
//!
//! Safety policy: this is the only adalbert crate with `unsafe`. It is used for SIMD
//! intrinsics behind a run-time CPU check, for the AMX instructions (`asm!`), and for
//! parallel tasks that write disjoint parts of one buffer through a shared raw pointer.
//! Every `unsafe` block says in a `SAFETY:` comment why it is sound, every `unsafe fn` states
//! its contract in a `# Safety` section, and the public API is safe: inputs are checked
//! (documented under `# Panics`) before any pointer arithmetic relies on them.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc,
    clippy::missing_panics_doc
)]

pub mod act;
pub mod attention;
pub mod bf16;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod int8;
pub mod linear;
pub mod norm;
pub mod process;
pub mod residual_norm;
pub mod scratch;
pub mod softmax;

mod amx;
mod reduce;

/// The CPU's model name (from `/proc/cpuinfo` on Linux, else the architecture's name): every
/// speed figure names the CPU it was measured on.
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Which instruction set the kernels use.
///
/// Kernels given [`Isa::Avx512`] on a CPU without it run their portable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 with AVX-512F/BW/DQ/VL (and FMA, AVX2).
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU offers (detected once).
    pub fn detect() -> Isa {
        if avx512_available() {
            Isa::Avx512
        } else {
            Isa::Portable
        }
    }

    /// Whether this CPU can run kernels for `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx512 => avx512_available(),
        }
    }

    /// `self` where this CPU runs it, else [`Isa::Portable`]: what a kernel given `self`
    /// actually runs.
    pub fn or_portable(self) -> Isa {
        if self.available() {
            self
        } else {
            Isa::Portable
        }
    }

    /// The lowercase name (`portable`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Whether the CPU has every feature the AVX-512 kernels are compiled for (checked once).
#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("avx2")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// AVX-512 lane masks for the first `n` of 32 floats held in two 16-lane registers
/// (`n >= 32`: all lanes), for the partial last column block of a product.
pub(crate) fn lane_masks(n: usize) -> (u16, u16) {
    let bits = |k: usize| {
        if k >= 16 {
            0xFFFF
        } else {
            ((1u32 << k) - 1) as u16
        }
    };
    (bits(n), bits(n.saturating_sub(16)))
}

/// Transposes a 16 x 16 block of 32-bit lanes: lane `j` of `out[i]` is lane `i` of `rows[j]`.
/// 32-bit then 64-bit interleaves inside 128-bit lanes, then two rounds of 128-bit shuffles.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose16x16(
    rows: &[std::arch::x86_64::__m512i; 16],
) -> [std::arch::x86_64::__m512i; 16] {
    use std::arch::x86_64::*;
    // t: pairs of rows interleaved by 32 bits; u[4g + q] holds, in 128-bit lane L, element
    // 4L + q of rows 4g..4g + 4.
    let mut t = [_mm512_setzero_si512(); 16];
    for g in 0..8 {
        t[2 * g] = _mm512_unpacklo_epi32(rows[2 * g], rows[2 * g + 1]);
        t[2 * g + 1] = _mm512_unpackhi_epi32(rows[2 * g], rows[2 * g + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_unpacklo_epi64(a, c);
        u[4 * g + 1] = _mm512_unpackhi_epi64(a, c);
        u[4 * g + 2] = _mm512_unpacklo_epi64(b, d);
        u[4 * g + 3] = _mm512_unpackhi_epi64(b, d);
    }
    // Output row 4L + q gathers lane L of u[q], u[4 + q], u[8 + q], u[12 + q].
    let mut out = [_mm512_setzero_si512(); 16];
    for q in 0..4 {
        let va = _mm512_shuffle_i32x4::<0x88>(u[q], u[4 + q]);
        let vb = _mm512_shuffle_i32x4::<0xDD>(u[q], u[4 + q]);
        let wa = _mm512_shuffle_i32x4::<0x88>(u[8 + q], u[12 + q]);
        let wb = _mm512_shuffle_i32x4::<0xDD>(u[8 + q], u[12 + q]);
        out[q] = _mm512_shuffle_i32x4::<0x88>(va, wa);
        out[4 + q] = _mm512_shuffle_i32x4::<0x88>(vb, wb);
        out[8 + q] = _mm512_shuffle_i32x4::<0xDD>(va, wa);
        out[12 + q] = _mm512_shuffle_i32x4::<0xDD>(vb, wb);
    }
    out
}

/// A raw pointer that parallel tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: a `SendPtr` is only a pointer value; every task that dereferences it writes a
// region no other task touches (each use states why), so sharing it across threads adds no
// data race.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as for `Send`.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `SendPtr`, not the field).
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }

    /// The `len` elements from offset `at`, as a slice of this task's own.
    ///
    /// # Safety
    /// `at..at + len` lies inside the buffer the pointer came from, that buffer outlives the
    /// returned slice, and no other live reference (in this or another task) overlaps it.
    pub(crate) unsafe fn slice_mut<'a>(self, at: usize, len: usize) -> &'a mut [T] {
        // SAFETY: in bounds and exclusive (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// Runs `f(i)` for `i in 0..n` on the rayon pool (inline when `n == 1` or one thread).
pub(crate) fn par_for(n: usize, f: impl Fn(usize) + Sync + Send) {
    if n <= 1 || rayon::current_num_threads() <= 1 {
        (0..n).for_each(f);
    } else {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    }
}

/// Rows per parallel task of the row-wise training kernels: about 16K values per task.
pub(crate) fn rows_per_task(width: usize) -> usize {
    (16384 / width).max(1)
}

/// Runs `f(first_row, rows)` over `out` split into blocks of `rows_per_task` rows of width
/// `width` (the last block may be shorter), on the rayon pool. The split depends on the
/// shape only, so results do not depend on the thread count.
///
/// # Panics
/// If `width` is 0.
pub fn par_rows(
    out: &mut [f32],
    width: usize,
    rows_per_task: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    assert!(width > 0, "par_rows: zero width");
    let rows_per_task = rows_per_task.max(1);
    let rows = out.len() / width;
    let tasks = rows.div_ceil(rows_per_task);
    let (ptr, len) = (SendPtr(out.as_mut_ptr()), out.len());
    par_for(tasks, |t| {
        let lo = t * rows_per_task * width;
        let hi = ((t + 1) * rows_per_task * width).min(len);
        // SAFETY: `lo..hi` lies inside `out` (clamped to its length), tasks cover disjoint
        // row ranges, and `out` is borrowed mutably for the whole call.
        let chunk = unsafe { ptr.slice_mut(lo, hi - lo) };
        f(lo / width, chunk);
    });
}

/// Runs `f(rows, block)` on the rayon pool for `blocks` consecutive row ranges that split the
/// `out.len() / width` rows of `out` evenly (`rows = b * m / blocks .. (b + 1) * m / blocks`
/// for block `b` of `m` rows; some may be empty), `block` being those rows of `out`.
///
/// # Panics
/// If `width` is 0 or `out.len()` is not a multiple of it.
pub fn par_row_ranges(
    out: &mut [f32],
    width: usize,
    blocks: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync + Send,
) {
    assert!(
        width > 0 && out.len().is_multiple_of(width),
        "par_row_ranges: {} values are not rows of {width}",
        out.len()
    );
    let m = out.len() / width;
    let ptr = SendPtr(out.as_mut_ptr());
    par_for(blocks, |b| {
        let rows = b * m / blocks..(b + 1) * m / blocks;
        // SAFETY: the ranges of different blocks are disjoint and end at or before row m,
        // inside `out`, which is borrowed mutably for the whole call.
        let block = unsafe { ptr.slice_mut(rows.start * width, rows.len() * width) };
        f(rows, block);
    });
}

/// Compiles `$body` twice: once with AVX-512 enabled (so plain Rust loops auto-vectorize to
/// 16-lane code) and once for the baseline target, and picks one by `$isa` at run time. The
/// body is safe code; only the call of the AVX-512 copy is `unsafe`, and it happens only on a
/// CPU that reports those features.
macro_rules! multiversion {
    ($isa:expr, $name:ident, ($($arg:ident : $ty:ty),*) $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        fn $name($($arg: $ty),*) $body
        fn portable($($arg: $ty),*) $body
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::Isa::Avx512 if $crate::Isa::Avx512.available() => {
                // SAFETY: the CPU reports every feature `$name` is compiled for (the guard).
                unsafe { $name($($arg),*) }
            }
            _ => portable($($arg),*),
        }
    }};
}
pub(crate) use multiversion;

/// Tells the person running the tests that a kernel was not exercised: written straight to
/// stderr (the test harness captures `eprintln!`), so `cargo test` shows it on a passing run.
#[cfg(test)]
pub(crate) fn report_skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}
