//! adalbert's own CPU kernels for the inference (eval) forward pass.
//!
//! candle stays the framework: checkpoints load into candle tensors, training runs candle's
//! differentiable ops, and the public API takes and returns candle tensors. For inference
//! ([`crate::nn::Ctx::train`] == false) the encoder runs on these kernels instead, which
//! remove what the profile showed dominating candle's forward: an AVX2-only matrix multiply
//! on transposed weight views, a `contiguous()` copy per head split, a scalar `erf` GELU and
//! thread-pool barriers around every elementwise op.
//!
//! - [`gemm`]: `C = act(alpha * A * B + bias) (+ C)` on weights packed once at load
//!   ([`gemm::PackedB`], panels of 32 output columns, K-major), an AVX-512 12x32 register
//!   tile and a portable tile, split over threads by rows and column panels.
//! - [`attention`]: fused per-(sequence, head) attention: `Q K^T`, scale, additive mask,
//!   softmax and `P V` on one head's slices of the fused QKV projection, no copies of Q.
//! - [`norm`]: residual add + LayerNorm in one pass over each row.
//! - [`act`]: vectorizable `exp`, GELU (erf and tanh forms) and ReLU.
//! - [`bf16`]: the compressed path: bf16 weights packed into AMX tiles and `tdpbf16ps`
//!   products (with an fp32 fallback on bf16-rounded weights where AMX is missing).
//! - [`encoder`]: the eval forward of a whole [`crate::Backbone`] (with task adapters) on
//!   these kernels.
//!
//! None of these kernels has a backward pass, so they only run when no gradient is needed.
//!
//! CPU dispatch happens at run time ([`Isa::detect`]): AVX-512F machines get the
//! hand-written AVX-512 tile and AVX-512-compiled elementwise kernels. On other CPUs the
//! default ([`crate::Kernels::Auto`]) keeps candle's ops, whose matrix multiply has its own
//! AVX2/NEON dispatch and beats our plain-Rust tile there; the portable versions of our
//! kernels (same results up to float rounding; the tests run both) are used when asked for
//! and by the bf16 path's fallback. `ADALBERT_KERNELS=portable` forces the portable kernels,
//! `ADALBERT_KERNELS=candle` turns the fast path off (candle ops everywhere) and
//! `ADALBERT_KERNELS=bf16` selects the compressed path ([`bf16`]) for every eval forward.

pub mod act;
pub mod attention;
pub mod bf16;
pub(crate) mod encoder;
pub mod gemm;
pub mod norm;

use std::sync::OnceLock;

/// Which instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 with AVX-512F (and FMA).
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU offers (cached), unless `ADALBERT_KERNELS=portable`.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            if portable_requested() {
                return Isa::Portable;
            }
            if Isa::Avx512.available() {
                Isa::Avx512
            } else {
                Isa::Portable
            }
        })
    }

    /// Whether this CPU can run kernels for `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx512 => avx512_available(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx512 => "avx512",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// Whether `ADALBERT_KERNELS=candle` turned the fast path off.
pub fn fast_path_disabled() -> bool {
    std::env::var("ADALBERT_KERNELS").is_ok_and(|v| v == "candle")
}

/// Whether `ADALBERT_KERNELS=portable` asked for the portable kernels.
pub fn portable_requested() -> bool {
    std::env::var("ADALBERT_KERNELS").is_ok_and(|v| v == "portable")
}

/// Whether `ADALBERT_KERNELS=bf16` asked for the compressed (bf16) inference path.
pub fn compressed_requested() -> bool {
    std::env::var("ADALBERT_KERNELS").is_ok_and(|v| v == "bf16")
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
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: every user writes disjoint regions, checked by the caller's index arithmetic.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Runs `f(i)` for `i in 0..n` on the rayon pool (inline when `n == 1` or one thread).
pub(crate) fn par_for(n: usize, f: impl Fn(usize) + Sync + Send) {
    if n <= 1 || rayon::current_num_threads() <= 1 {
        (0..n).for_each(f);
    } else {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    }
}

/// Compiles `$body` twice: once with AVX-512 enabled (so plain Rust loops auto-vectorize to
/// 16-lane code) and once for the baseline target, and picks one by `$isa` at run time.
macro_rules! multiversion {
    ($isa:expr, $name:ident, ($($arg:ident : $ty:ty),*) $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn $name($($arg: $ty),*) $body
        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn $name($($arg: $ty),*) $body
        fn portable($($arg: $ty),*) $body
        match $isa {
            // SAFETY: `Isa::Avx512` is only selected when the CPU reports these features.
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::Isa::Avx512 => unsafe { $name($($arg),*) },
            _ => portable($($arg),*),
        }
    }};
}
pub(crate) use multiversion;
