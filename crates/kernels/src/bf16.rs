//! The compressed inference path: bf16 weights, bf16 x bf16 -> fp32 products on Intel AMX.
//!
//! Weights are rounded to bf16 (round to nearest even) and packed once into AMX tiles: per 16
//! output columns and 32 input features, one 16 x 64-byte tile whose row `p` holds, for each
//! column, the pair of weights for inputs `2p` and `2p + 1` (the layout `tdpbf16ps` reads).
//! Activations are rounded to bf16 per matrix multiply; products accumulate in fp32, and bias,
//! residual, LayerNorm, softmax and GELU stay fp32.
//!
//! Dispatch at run time: AMX-BF16 needs the CPU bits (CPUID leaf 7: AMX-BF16, AMX-TILE), the
//! kernel's permission to use tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, Linux) and
//! AVX-512 for the epilogue. Elsewhere the same bf16-rounded weights are widened back to fp32
//! and run through [`super::gemm`], so every CPU gets the compressed model's numbers (minus the
//! activation rounding) and its speed where AMX exists. The AMX instructions are emitted with
//! `asm!` (Rust's AMX intrinsics are not stable); the tile registers are never touched by
//! compiled code, so no register state crosses an `asm!` boundary except the tiles themselves.

use std::sync::OnceLock;

use super::gemm::{self, Epilogue, PackedB};
#[cfg(target_arch = "x86_64")]
use super::transpose16x16;
use super::{act, lane_masks, par_for, Isa, SendPtr};

/// Rounds to bf16 (nearest even; NaN stays NaN).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        0x7FC0
    } else {
        rounded
    }
}

/// Widens a bf16 value to f32 (exact).
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Whether the AMX-BF16 kernels can run here: the CPU has AMX and the AVX-512 the epilogues
/// use, and Linux granted tile permission (checked once).
pub fn amx_available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| crate::amx::available(crate::amx::Unit::Bf16))
}

/// Which bf16 kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bf16Isa {
    /// No bf16 instructions: the bf16-rounded weights widened to fp32 on the fp32 kernels.
    Widened,
    /// AVX-512 BF16 (`vdpbf16ps`): bf16 pairs multiplied into fp32 lanes, a 12 x 32 tile.
    Avx512Bf16,
    /// AMX-BF16 tiles (`tdpbf16ps`).
    Amx,
}

impl Bf16Isa {
    /// Every kernel, best first.
    pub const ALL: [Bf16Isa; 3] = [Bf16Isa::Amx, Bf16Isa::Avx512Bf16, Bf16Isa::Widened];

    /// The best kernel this CPU runs.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Bf16Isa::Widened)
    }

    /// Whether this CPU (and OS, for AMX) runs `self`.
    pub fn available(self) -> bool {
        match self {
            Bf16Isa::Widened => true,
            Bf16Isa::Avx512Bf16 => Isa::Avx512.available() && avx512bf16_available(),
            Bf16Isa::Amx => amx_available(),
        }
    }

    /// `self` where it runs, else [`Bf16Isa::Widened`].
    pub fn or_widened(self) -> Self {
        if self.available() {
            self
        } else {
            Bf16Isa::Widened
        }
    }

    /// The name (`widened`, `avx512-bf16`, `amx`).
    pub fn name(self) -> &'static str {
        match self {
            Bf16Isa::Widened => "widened",
            Bf16Isa::Avx512Bf16 => "avx512-bf16",
            Bf16Isa::Amx => "amx",
        }
    }

    /// The kernel named `name` (as [`Bf16Isa::name`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Weights `W[n, k]` as the right-hand side `B = W^T`, in bf16.
pub struct PackedBf16 {
    k: usize,
    n: usize,
    repr: Repr,
}

enum Repr {
    Amx(AmxB),
    /// bf16 pairs for `vdpbf16ps` (AVX-512 BF16 without AMX).
    Pairs(PairsB),
    /// bf16-rounded weights widened to fp32 for the fp32 kernels (CPUs without AMX).
    Widened(PackedB),
}

impl PackedBf16 {
    /// Packs the weight `W[n, k]` for the best bf16 kernel of this CPU ([`Bf16Isa::detect`])
    /// where `isa` is AVX-512, else as [`PackedBf16::widened`].
    ///
    /// # Panics
    /// If `w` holds fewer than `n * k` values.
    pub fn from_weight(isa: Isa, w: &[f32], n: usize, k: usize) -> Self {
        let kernel = if isa == Isa::Avx512 {
            Bf16Isa::detect()
        } else {
            Bf16Isa::Widened
        };
        Self::for_kernel(kernel, w, n, k)
    }

    /// Packs the weight `W[n, k]` for `kernel` (the widened fp32 form where the CPU lacks it).
    ///
    /// # Panics
    /// If `w` holds fewer than `n * k` values.
    pub fn for_kernel(kernel: Bf16Isa, w: &[f32], n: usize, k: usize) -> Self {
        assert!(w.len() >= n * k, "bf16 pack: source too short");
        let repr = match kernel.or_widened() {
            Bf16Isa::Widened => return Self::widened(w, n, k),
            Bf16Isa::Avx512Bf16 => Repr::Pairs(PairsB::from_weight(w, n, k)),
            Bf16Isa::Amx => {
                let mut b = AmxB::default();
                b.pack_nk(w, k, n, k);
                Repr::Amx(b)
            }
        };
        Self { k, n, repr }
    }

    /// The kernel this matrix runs on.
    pub fn kernel(&self) -> Bf16Isa {
        match self.repr {
            Repr::Amx(_) => Bf16Isa::Amx,
            Repr::Pairs(_) => Bf16Isa::Avx512Bf16,
            Repr::Widened(_) => Bf16Isa::Widened,
        }
    }

    /// The fallback for CPUs without AMX: the bf16-rounded weights widened back to fp32, so
    /// the compressed model computes the same function everywhere (minus activation rounding).
    ///
    /// # Panics
    /// If `w` holds fewer than `n * k` values.
    pub fn widened(w: &[f32], n: usize, k: usize) -> Self {
        assert!(w.len() >= n * k, "bf16 pack: source too short");
        let rounded: Vec<f32> = w[..n * k].iter().map(|&v| from_bf16(to_bf16(v))).collect();
        Self {
            k,
            n,
            repr: Repr::Widened(PackedB::from_weight(&rounded, n, k)),
        }
    }

    /// Rows of `B` (the weight's input width).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B` (the weight's output width).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether this matrix runs on AMX.
    pub fn is_amx(&self) -> bool {
        matches!(self.repr, Repr::Amx(_))
    }
}

/// A right-hand side `B[k, n]` in AMX tiles: per 16 columns (`nb`) and 32 rows of B (`kc`),
/// one 16 x 64-byte tile whose row `p` holds, for each column `j`, the pair
/// `(B[32 kc + 2p][16 nb + j], B[32 kc + 2p + 1][16 nb + j])` (the layout `tdpbf16ps` reads).
/// Tiles are stored `[nb][kc]`, so one 16-column block's tiles are contiguous; `k` and `n` are
/// zero-padded to multiples of 32.
#[derive(Clone, Debug, Default)]
pub struct AmxB {
    k: usize,
    n: usize,
    kp: usize,
    np: usize,
    tiles: Vec<u16>,
}

impl AmxB {
    fn reset(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        self.kp = k.div_ceil(32) * 32;
        self.np = n.div_ceil(32) * 32;
        // The packers write every element of every tile (padding included), so the buffer
        // is only grown, never cleared.
        self.tiles.resize(self.kp * self.np, 0);
    }

    fn tile_mut(&mut self, nb: usize, kc: usize) -> &mut [u16] {
        let at = (nb * (self.kp / 32) + kc) * 512;
        &mut self.tiles[at..at + 512]
    }

    /// `B = W^T` for `W[n, k]` with row stride `ldw` (a weight, or the keys of attention).
    ///
    /// # Panics
    /// If `w` is too short for `n` rows of `k` values at stride `ldw`.
    pub fn pack_nk(&mut self, w: &[f32], ldw: usize, n: usize, k: usize) {
        assert!(
            n == 0 || k == 0 || w.len() >= (n - 1) * ldw + k,
            "bf16 pack_nk: source too short"
        );
        self.pack(
            k,
            n,
            |kk, col| w[col * ldw + kk],
            |nb, kc, tile| {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `pack` calls this only where the CPU reports AVX-512 BF16/BW and for
                // a full tile, whose 16 rows x 32 values lie inside `w` (the length assert).
                unsafe {
                    transpose_tile_avx512(w.as_ptr().add(nb * 16 * ldw + kc * 32), ldw, tile)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (nb, kc, tile);
            },
        );
    }

    /// `B[k, n]` given row-major with row stride `ldb` (the values of attention).
    ///
    /// # Panics
    /// If `b` is too short for `k` rows of `n` values at stride `ldb`.
    pub fn pack_kn(&mut self, b: &[f32], ldb: usize, k: usize, n: usize) {
        assert!(
            n == 0 || k == 0 || b.len() >= (k - 1) * ldb + n,
            "bf16 pack_kn: source too short"
        );
        self.pack(
            k,
            n,
            |kk, col| b[kk * ldb + col],
            |nb, kc, tile| {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `pack` calls this only where the CPU reports AVX-512 BF16/BW and for
                // a full tile, whose 32 rows x 16 values lie inside `b` (the length assert).
                unsafe {
                    interleave_tile_avx512(b.as_ptr().add(kc * 32 * ldb + nb * 16), ldb, tile)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (nb, kc, tile);
            },
        );
    }

    /// Fills every tile: full tiles with `vector(nb, kc, tile)` where the CPU has AVX-512
    /// BF16, the rest (and every tile elsewhere) element by element from `get(kk, col)` =
    /// `B[kk][col]`, zero past `k` and `n`.
    fn pack(
        &mut self,
        k: usize,
        n: usize,
        get: impl Fn(usize, usize) -> f32,
        vector: impl Fn(usize, usize, &mut [u16]),
    ) {
        self.reset(k, n);
        let simd = avx512bf16_available();
        for nb in 0..self.np / 16 {
            for kc in 0..self.kp / 32 {
                let full = (nb + 1) * 16 <= n && (kc + 1) * 32 <= k;
                let tile = self.tile_mut(nb, kc);
                if full && simd {
                    vector(nb, kc, tile);
                    continue;
                }
                for p in 0..16 {
                    for j in 0..16 {
                        for half in 0..2 {
                            let (col, kk) = (nb * 16 + j, kc * 32 + 2 * p + half);
                            tile[p * 32 + j * 2 + half] = if col < n && kk < k {
                                to_bf16(get(kk, col))
                            } else {
                                0
                            };
                        }
                    }
                }
            }
        }
    }
}

/// The 512 bits of a bf16 vector as integer lanes (a bit-for-bit reinterpretation).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bf16_bits(v: std::arch::x86_64::__m512bh) -> std::arch::x86_64::__m512i {
    // SAFETY: both are 64-byte plain-data SIMD vectors; every bit pattern is valid in each.
    unsafe { std::mem::transmute::<std::arch::x86_64::__m512bh, std::arch::x86_64::__m512i>(v) }
}

/// One tile of [`AmxB::pack_nk`]: 16 rows of 32 floats at `src` (stride `ld`) become 16
/// rows of 16 bf16 pairs, then a 16 x 16 transpose of those 32-bit pairs.
///
/// # Safety
/// The CPU supports AVX-512F/BW/BF16; `src` holds 16 rows of 32 floats at stride `ld`.
///
/// # Panics
/// If `tile` holds fewer than 512 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn transpose_tile_avx512(src: *const f32, ld: usize, tile: &mut [u16]) {
    use std::arch::x86_64::*;
    assert!(tile.len() >= 512, "bf16 pack: tile too short");
    let mut r = [_mm512_setzero_si512(); 16];
    for (j, row) in r.iter_mut().enumerate() {
        // SAFETY: row j's 32 floats lie inside `src` (the contract).
        let (lo, hi) = unsafe {
            let p = src.add(j * ld);
            (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
        };
        *row = bf16_bits(_mm512_cvtne2ps_pbh(hi, lo));
    }
    let out = tile.as_mut_ptr() as *mut __m512i;
    for (i, row) in transpose16x16(&r).iter().enumerate() {
        // SAFETY: 16 stores of 64 bytes fill the tile's 512 values (asserted above).
        unsafe { _mm512_storeu_si512(out.add(i), *row) };
    }
}

/// One tile of [`AmxB::pack_kn`]: tile row `p` interleaves rows `2p` and `2p + 1` of the
/// 32 x 16 block at `src` (stride `ld`).
///
/// # Safety
/// The CPU supports AVX-512F/BW/BF16; `src` holds 32 rows of 16 floats at stride `ld`.
///
/// # Panics
/// If `tile` holds fewer than 512 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave_tile_avx512(src: *const f32, ld: usize, tile: &mut [u16]) {
    use std::arch::x86_64::*;
    assert!(tile.len() >= 512, "bf16 pack: tile too short");
    // [a0..a15, b0..b15] -> [a0, b0, a1, b1, ...]
    let idx = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    let out = tile.as_mut_ptr() as *mut __m512i;
    for p in 0..16 {
        // SAFETY: rows 2p and 2p + 1 (16 floats each) lie inside `src` (the contract).
        let (a, b) = unsafe {
            (
                _mm512_loadu_ps(src.add(2 * p * ld)),
                _mm512_loadu_ps(src.add((2 * p + 1) * ld)),
            )
        };
        let ab = bf16_bits(_mm512_cvtne2ps_pbh(b, a));
        // SAFETY: store p of 16 fills values 32p..32p + 32 of the tile (asserted above).
        unsafe { _mm512_storeu_si512(out.add(p), _mm512_permutexvar_epi16(idx, ab)) };
    }
}

/// `C = epilogue(A * B)` on AMX, on the calling thread only (inside parallel tasks such as
/// attention's per-head work).
///
/// # Panics
/// If AMX is not available ([`amx_available`]), a stride is shorter than its row, `a` or
/// `c` is too short for `m` rows, or the bias is shorter than `n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_amx_serial(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &AmxB,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    // SAFETY: C is a live, initialized slice of `c.len()` floats, borrowed mutably.
    unsafe { gemm_amx_serial_raw(isa, m, a, lda, b, c.as_mut_ptr(), c.len(), ldc, ep) }
}

/// [`gemm_amx_serial`] on a C given as a pointer (see [`gemm::gemm_serial_raw`] for why).
/// Only the `m x n` rectangle at `c` (row stride `ldc`) is read or written.
///
/// # Safety
/// `clen` floats from `c` are valid for reads and writes, and no one else accesses the
/// rectangle's elements during the call.
///
/// # Panics
/// As [`gemm_amx_serial`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_amx_serial_raw(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &AmxB,
    c: *mut f32,
    clen: usize,
    ldc: usize,
    ep: &Epilogue,
) {
    assert!(amx_available(), "gemm_amx_serial: AMX not available");
    let (k, n) = (b.k, b.n);
    gemm::check_args(m, k, n, a, lda, clen, ldc, ep);
    if m == 0 || n == 0 {
        return;
    }
    let sh = AmxShape {
        m,
        k,
        n,
        kp: b.kp,
        np: b.np,
    };
    let mp = m.div_ceil(32) * 32;
    let run = |a16: &mut Vec<u16>| {
        if a16.len() < mp * sh.kp {
            a16.resize(mp * sh.kp, 0);
        }
        for rb in 0..mp / 16 {
            convert_block(
                rb * 16,
                sh,
                a,
                lda,
                &mut a16[rb * 16 * sh.kp..(rb + 1) * 16 * sh.kp],
            );
        }
        // SAFETY: AMX is available (asserted); A's tiles cover the padded rows and k, B's
        // the padded k and n, C's bounds are checked above, and the rectangle is this
        // caller's (the contract).
        unsafe {
            amx::block(
                0..mp,
                0..sh.np / 32,
                sh,
                a16,
                &b.tiles,
                Out::F32 { c, len: clen, ldc },
                ep,
            )
        };
        if let Some(act_fn) = ep.act {
            for r in 0..m {
                // SAFETY: row r's n values lie inside C (checked) and in this caller's
                // rectangle, written by the product above.
                let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), n) };
                act::apply(isa, act_fn, row);
            }
        }
    };
    A16.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        Err(_) => run(&mut Vec::new()),
    })
}

/// `C = epilogue(A * B)` with bf16 products, split over the rayon pool.
///
/// # Panics
/// If a stride is shorter than its row, `a` or `c` is too short for `m` rows, or the bias
/// is shorter than `n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedBf16,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    let (tiles, kp, np) = match &b.repr {
        Repr::Widened(p) => return gemm::gemm(isa, m, a, lda, p, c, ldc, ep),
        Repr::Pairs(p) => return pairs_gemm(isa, m, a, lda, p, b.k, b.n, c, ldc, ep),
        Repr::Amx(b) => (&b.tiles, b.kp, b.np),
    };
    let (k, n) = (b.k, b.n);
    gemm::check_args(m, k, n, a, lda, c.len(), ldc, ep);
    if m == 0 || n == 0 {
        return;
    }
    let shape = AmxShape { m, k, n, kp, np };
    // A in bf16 AMX tiles, in a per-thread buffer reused across calls (a fresh one if this
    // thread's is in use by an outer call).
    A16.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run_amx(isa, shape, a, lda, tiles, c, ldc, ep, &mut buf),
        Err(_) => run_amx(isa, shape, a, lda, tiles, c, ldc, ep, &mut Vec::new()),
    })
}

/// A right-hand side `B[k, n]` in bf16 pairs for `vdpbf16ps`: panels of 32 columns; inside
/// a panel, for each pair of inputs `(2g, 2g + 1)`, 32 columns x 2 values (128 bytes), so one
/// step of the kernel loads the pair for all 32 columns as two vectors. `k` is zero-padded to
/// a multiple of [`PAIRS_K_ALIGN`], `n` to whole panels.
#[derive(Clone, Debug, Default)]
pub struct PairsB {
    kp: usize,
    data: Vec<u16>,
}

/// `k` padding of [`PairsB`]: four pairs, the kernel's unrolled step.
const PAIRS_K_ALIGN: usize = 8;
/// Rows per register tile of the `vdpbf16ps` kernel.
const PAIRS_MR: usize = 12;

impl PairsB {
    /// `B = W^T` for `W[n, k]`, rounded to bf16.
    fn from_weight(w: &[f32], n: usize, k: usize) -> Self {
        let kp = k.div_ceil(PAIRS_K_ALIGN) * PAIRS_K_ALIGN;
        let mut data = vec![0u16; n.div_ceil(32) * 32 * kp];
        for col in 0..n {
            let (panel, j) = (col / 32, col % 32);
            for (kk, &v) in w[col * k..(col + 1) * k].iter().enumerate() {
                data[panel * kp * 32 + (kk / 2) * 64 + j * 2 + kk % 2] = to_bf16(v);
            }
        }
        Self { kp, data }
    }
}

/// Rounds rows `A[m, k]` (stride `lda`) to bf16 rows of `kp` values, zeros past `k`.
fn round_rows(isa: Isa, m: usize, a: &[f32], lda: usize, k: usize, kp: usize, out: &mut Vec<u16>) {
    out.resize(m * kp, 0);
    let (op, total) = (SendPtr(out.as_mut_ptr()), m * kp);
    const ROWS: usize = 64;
    let work = |t: usize| {
        let rows = t * ROWS..((t + 1) * ROWS).min(m);
        // SAFETY: task t writes only its rows of `out` (disjoint between tasks), inside the
        // `m * kp` values it was resized to, and `out` outlives the loop.
        let dst = unsafe { op.slice_mut(rows.start * kp, rows.len() * kp) };
        debug_assert!(rows.end * kp <= total);
        super::multiversion!(isa, round_avx512, (rows: std::ops::Range<usize>, dst: &mut [u16], a: &[f32], lda: usize, k: usize, kp: usize) {
            for (r, row) in rows.zip(dst.chunks_exact_mut(kp)) {
                for (d, &x) in row.iter_mut().zip(&a[r * lda..r * lda + k]) {
                    *d = to_bf16(x);
                }
                row[k..].fill(0);
            }
        })
    };
    let tasks = m.div_ceil(ROWS);
    if m * k < 1 << 16 {
        (0..tasks).for_each(work);
    } else {
        par_for(tasks, work);
    }
}

/// `C = epilogue(A * B)` on `vdpbf16ps`, split over the rayon pool; the caller checked the
/// arguments' bounds for `m x k` times `k x n`.
#[allow(clippy::too_many_arguments)]
fn pairs_gemm(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PairsB,
    k: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    gemm::check_args(m, k, n, a, lda, c.len(), ldc, ep);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        Bf16Isa::Avx512Bf16.available(),
        "bf16 gemm: pairs exist only where AVX-512 BF16 does"
    );
    let (cp, clen) = (SendPtr(c.as_mut_ptr()), c.len());
    let run = |a16: &mut Vec<u16>| {
        round_rows(isa, m, a, lda, k, b.kp, a16);
        let a16 = &*a16;
        let panels = n.div_ceil(32);
        let split = gemm::Split::new(m, PAIRS_MR, panels, b.kp * 64, 2 * m * n * k);
        split.run(|rows, pans| {
            #[cfg(target_arch = "x86_64")]
            for r in rows.clone().step_by(PAIRS_MR) {
                let mr = PAIRS_MR.min(rows.end - r);
                for p in pans.clone() {
                    let mut acc = [0f32; 32 * 32];
                    // SAFETY: AVX-512 BF16 is available (asserted); rows r..r + mr of `a16`
                    // (kp values each) and panel p (kp * 32 values) are inside their buffers.
                    unsafe {
                        pairs::tile(
                            mr,
                            &a16[r * b.kp..],
                            b.kp,
                            &b.data[p * b.kp * 32..],
                            &mut acc,
                        )
                    };
                    // SAFETY: AVX-512F; rows r..r + mr, columns 32p..min(32p + 32, n) of C are
                    // inside it (`check_args`) and this task's (disjoint rectangles); the
                    // bias holds n values.
                    unsafe {
                        simd::epilogue(
                            &acc,
                            mr,
                            p * 32,
                            n,
                            cp.ptr().add(r * ldc),
                            clen - r * ldc,
                            ldc,
                            ep,
                        )
                    };
                }
            }
            if let Some(act_fn) = ep.act {
                let (c0, c1) = (pans.start * 32, (pans.end * 32).min(n));
                for r in rows {
                    // SAFETY: row r, columns c0..c1 are inside C and this task's, written above.
                    let row = unsafe { cp.slice_mut(r * ldc + c0, c1 - c0) };
                    act::apply(isa, act_fn, row);
                }
            }
        });
    };
    A16.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        Err(_) => run(&mut Vec::new()),
    })
}

/// The `vdpbf16ps` register tile.
#[cfg(target_arch = "x86_64")]
mod pairs {
    use super::PAIRS_MR;
    use std::arch::x86_64::*;

    /// `acc[i][0..32] = sum_k A[i][k] B[k][0..32]` for `mr` (1..=12) rows of bf16 `a`
    /// (stride `lda`) and one panel `b`.
    ///
    /// # Safety
    /// The CPU supports AVX-512F/BW/BF16; `a` holds `mr` rows of `lda` values with `lda` a
    /// multiple of 8; `b` holds `lda * 32` values.
    ///
    /// # Panics
    /// If `a` or `b` is shorter than that.
    pub(super) unsafe fn tile(
        mr: usize,
        a: &[u16],
        lda: usize,
        b: &[u16],
        acc: &mut [f32; 32 * 32],
    ) {
        assert!(
            (1..=PAIRS_MR).contains(&mr) && a.len() >= (mr - 1) * lda + lda && b.len() >= lda * 32,
            "bf16 pairs tile: operands too short"
        );
        // SAFETY: bounds asserted; the CPU's features are the caller's contract.
        unsafe {
            match mr {
                12 => kernel::<12>(a, lda, b, acc),
                11 => kernel::<11>(a, lda, b, acc),
                10 => kernel::<10>(a, lda, b, acc),
                9 => kernel::<9>(a, lda, b, acc),
                8 => kernel::<8>(a, lda, b, acc),
                7 => kernel::<7>(a, lda, b, acc),
                6 => kernel::<6>(a, lda, b, acc),
                5 => kernel::<5>(a, lda, b, acc),
                4 => kernel::<4>(a, lda, b, acc),
                3 => kernel::<3>(a, lda, b, acc),
                2 => kernel::<2>(a, lda, b, acc),
                _ => kernel::<1>(a, lda, b, acc),
            }
        }
    }

    /// 32 bf16 values as the instruction's operand type (a bit-for-bit reinterpretation).
    #[inline(always)]
    fn as_bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 64-byte plain-data SIMD vectors; every bit pattern is valid in each.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    /// Per pair of inputs: two 64-byte panel loads, `R` broadcasts of a 4-byte pair of A,
    /// `2R` `vdpbf16ps`; unrolled by four pairs.
    ///
    /// # Safety
    /// As [`tile`], with `mr == R` and the bounds it asserts.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn kernel<const R: usize>(a: &[u16], lda: usize, b: &[u16], acc: &mut [f32; 32 * 32]) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let (a, b) = (a.as_ptr(), b.as_ptr());
        // SAFETY: (the k loop) A reads row i < R at values < lda, B reads inside its
        // lda * 32 values; lda is a multiple of 8, so the loop by 8 values ends exactly.
        unsafe {
            let mut kk = 0;
            while kk < lda {
                for u in 0..4 {
                    let bu = b.add((kk / 2 + u) * 64);
                    let b0 = as_bh(_mm512_loadu_si512(bu as *const __m512i));
                    let b1 = as_bh(_mm512_loadu_si512(bu.add(32) as *const __m512i));
                    for i in 0..R {
                        let pair = (a.add(i * lda + kk + 2 * u) as *const i32).read_unaligned();
                        let av = as_bh(_mm512_set1_epi32(pair));
                        lo[i] = _mm512_dpbf16_ps(lo[i], av, b0);
                        hi[i] = _mm512_dpbf16_ps(hi[i], av, b1);
                    }
                }
                kk += 8;
            }
            for i in 0..R {
                _mm512_storeu_ps(acc.as_mut_ptr().add(i * 32), lo[i]);
                _mm512_storeu_ps(acc.as_mut_ptr().add(i * 32 + 16), hi[i]);
            }
        }
    }
}

thread_local! {
    static A16: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sizes of one AMX product: `m x k` times `k x n`, with `k` and `n` padded to 32.
#[derive(Clone, Copy)]
struct AmxShape {
    m: usize,
    k: usize,
    n: usize,
    kp: usize,
    np: usize,
}

/// Where a product's 32 x 32 output blocks go.
#[derive(Clone, Copy)]
enum Out {
    /// fp32 `C` with row stride `ldc` (`len` floats).
    F32 { c: *mut f32, len: usize, ldc: usize },
    /// bf16 AMX tiles of the next product's left-hand side (`[m / 16][n / 32][16][32]`,
    /// `kp` = this product's padded `n`), after the epilogue's activation.
    Tiles { t: *mut u16, kp: usize },
}
// SAFETY: an `Out` is only pointers; the tasks of `compute` that share it write disjoint
// blocks of the output.
unsafe impl Send for Out {}
// SAFETY: as for `Send`.
unsafe impl Sync for Out {}

/// Rows of A per parallel task (a multiple of 32, the register block's height).
const ROWS_PER_TASK: usize = 128;

#[allow(clippy::too_many_arguments)]
fn run_amx(
    isa: Isa,
    sh: AmxShape,
    a: &[f32],
    lda: usize,
    tiles: &[u16],
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    a16: &mut Vec<u16>,
) {
    convert_all(sh, a, lda, a16);
    let out = Out::F32 {
        c: c.as_mut_ptr(),
        len: c.len(),
        ldc,
    };
    // SAFETY: `gemm` checked C's bounds for these m rows and n columns, borrows it mutably,
    // and `tiles` came from a `Repr::Amx`, which exists only where AMX is available.
    unsafe { compute(isa, sh, a16, tiles, out, ep) };
}

/// A (`m x k` fp32) into `a16` as bf16 AMX tiles, rows padded to 32, one 16-row block per task.
fn convert_all(sh: AmxShape, a: &[f32], lda: usize, a16: &mut Vec<u16>) {
    let mp = sh.m.div_ceil(32) * 32;
    if a16.len() < mp * sh.kp {
        a16.resize(mp * sh.kp, 0);
    }
    let ap = SendPtr(a16.as_mut_ptr());
    par_for(mp / 16, |rb| {
        // SAFETY: task rb writes only its own 16-row block, inside the buffer (resized to
        // `mp * kp` above), which outlives `par_for`.
        let block = unsafe { ap.slice_mut(rb * 16 * sh.kp, 16 * sh.kp) };
        convert_block(rb * 16, sh, a, lda, block);
    });
}

/// The product of `a16` (A in tiles, at least `mp * kp` values) and the packed B, split over
/// the pool by row tasks and column groups.
///
/// # Safety
/// AMX is available ([`amx_available`]); `tiles` is a packed B of `sh.kp x sh.np`; `out` is
/// valid for writes of the `m x n` result (an `Out::F32` with C's bounds checked by
/// `gemm::check_args`, or `Out::Tiles` of `m.div_ceil(32) * 32 * kp` values), and no one
/// else accesses it during the call.
///
/// # Panics
/// If `a16` is shorter than the padded A.
unsafe fn compute(isa: Isa, sh: AmxShape, a16: &[u16], tiles: &[u16], out: Out, ep: &Epilogue) {
    let mp = sh.m.div_ceil(32) * 32;
    assert!(a16.len() >= mp * sh.kp, "bf16 gemm: A tiles too short");
    let row_tasks = mp.div_ceil(ROWS_PER_TASK);
    let col_blocks = sh.np / 32;
    let threads = rayon::current_num_threads();
    // Column groups: enough tasks to balance the pool, and each group's B tiles within
    // half of L2 so that every row task's pass finds them cached.
    let for_balance = if threads <= 1 {
        1
    } else {
        (4 * threads).div_ceil(row_tasks)
    };
    let for_cache = (col_blocks * sh.kp * 64).div_ceil(1 << 20);
    let groups = for_balance.max(for_cache).clamp(1, col_blocks);
    let per_group = col_blocks.div_ceil(groups);
    let groups = col_blocks.div_ceil(per_group);
    // Group-major task order: a thread's consecutive tasks share one group of B tiles.
    par_for(row_tasks * groups, |t| {
        let (g, rt) = (t / row_tasks, t % row_tasks);
        let rows = rt * ROWS_PER_TASK..((rt + 1) * ROWS_PER_TASK).min(mp);
        let cols = g * per_group..((g + 1) * per_group).min(col_blocks);
        // SAFETY: AMX is available and the output valid (the contract); tasks write
        // disjoint (row task, column group) rectangles of it.
        unsafe {
            amx::block(rows, cols.clone(), sh, a16, tiles, out, ep);
        }
        if let (Some(act_fn), Out::F32 { c, ldc, .. }) = (ep.act, out) {
            let (r0, r1) = (rt * ROWS_PER_TASK, ((rt + 1) * ROWS_PER_TASK).min(sh.m));
            let (c0, c1) = (cols.start * 32, (cols.end * 32).min(sh.n));
            for r in r0..r1 {
                // SAFETY: row r, columns c0..c1 lie inside C and belong to this task.
                let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc + c0), c1 - c0) };
                act::apply(isa, act_fn, row);
            }
        }
    });
}

/// Activations kept in AMX tile layout between two products (see [`ffn`]).
#[derive(Default)]
pub struct Tiles16(Vec<u16>);

/// `C = act(A W1^T + b1) W2^T + b2` for the compressed path's feed-forward block, where the
/// intermediate never exists in fp32: the first product's epilogue applies bias and
/// activation in registers and writes bf16 tiles that the second product reads as they are
/// (at 8 x 128 tokens this saves, per layer, a 6 MiB fp32 write, its re-read and its
/// conversion). Both weights must be on AMX ([`PackedBf16::is_amx`]), `w2.k() == w1.n()`,
/// `A` is `m x w1.k()` and `C` is `m x w2.n()`, both dense.
///
/// # Panics
/// If a weight is not on AMX, the shapes disagree, a bias is too short, or `ep1`
/// accumulates.
#[allow(clippy::too_many_arguments)]
pub fn ffn(
    isa: Isa,
    m: usize,
    a: &[f32],
    w1: &PackedBf16,
    ep1: &Epilogue,
    w2: &PackedBf16,
    c: &mut [f32],
    ep2: &Epilogue,
    mid: &mut Tiles16,
) {
    let (Repr::Amx(b1), Repr::Amx(b2)) = (&w1.repr, &w2.repr) else {
        panic!("bf16 ffn: both weights must be packed for AMX");
    };
    assert_eq!(b2.k, b1.n, "bf16 ffn: inner sizes differ");
    assert!(a.len() >= m * b1.k, "bf16 ffn: A too short");
    assert!(c.len() >= m * b2.n, "bf16 ffn: C too short");
    assert!(
        ep1.bias.is_none_or(|b| b.len() >= b1.n),
        "bf16 ffn: bias 1 too short"
    );
    assert!(
        ep2.bias.is_none_or(|b| b.len() >= b2.n),
        "bf16 ffn: bias 2 too short"
    );
    assert!(
        !ep1.accumulate,
        "bf16 ffn: the intermediate cannot accumulate"
    );
    if m == 0 {
        return;
    }
    let sh1 = AmxShape {
        m,
        k: b1.k,
        n: b1.n,
        kp: b1.kp,
        np: b1.np,
    };
    let sh2 = AmxShape {
        m,
        k: b2.k,
        n: b2.n,
        kp: b2.kp,
        np: b2.np,
    };
    let mp = m.div_ceil(32) * 32;
    if mid.0.len() < mp * sh2.kp {
        mid.0.resize(mp * sh2.kp, 0);
    }
    let mid_out = Out::Tiles {
        t: mid.0.as_mut_ptr(),
        kp: sh2.kp,
    };
    let first = |buf: &mut Vec<u16>| {
        convert_all(sh1, a, b1.k, buf);
        // SAFETY: both weights are `Repr::Amx`, which exists only where AMX is available;
        // `mid` holds the padded intermediate (resized above) and is borrowed mutably.
        unsafe { compute(isa, sh1, buf, &b1.tiles, mid_out, ep1) };
    };
    A16.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => first(&mut buf),
        Err(_) => first(&mut Vec::new()),
    });
    let out = Out::F32 {
        c: c.as_mut_ptr(),
        len: c.len(),
        ldc: b2.n,
    };
    // SAFETY: as above; C holds the m x n2 result (asserted) and is borrowed mutably.
    unsafe { compute(isa, sh2, &mid.0, &b2.tiles, out, ep2) };
}

/// Rows `r0..r0 + 16` of A as AMX tiles: `block[kc][row][0..32] = bf16(A[r0 + row][32 kc..])`,
/// zeros past `k` and past `m`.
fn convert_block(r0: usize, sh: AmxShape, a: &[f32], lda: usize, block: &mut [u16]) {
    let rows = 16.min(sh.m.saturating_sub(r0));
    assert!(block.len() >= 16 * sh.kp, "bf16 convert: block too short");
    assert!(
        rows == 0 || a.len() >= (r0 + rows - 1) * lda + sh.k,
        "bf16 convert: A too short"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512bf16_available() {
        // SAFETY: the CPU reports AVX-512 BF16/BW/F; bounds asserted above.
        unsafe { convert_block_avx512(r0, rows, sh, a, lda, block) };
        return;
    }
    let kchunks = sh.kp / 32;
    for row in 0..16 {
        for kc in 0..kchunks {
            let dst = &mut block[(kc * 16 + row) * 32..(kc * 16 + row + 1) * 32];
            for (j, d) in dst.iter_mut().enumerate() {
                let col = kc * 32 + j;
                *d = if row < rows && col < sh.k {
                    to_bf16(a[(r0 + row) * lda + col])
                } else {
                    0
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512bf16_available() -> bool {
    static BF16: OnceLock<bool> = OnceLock::new();
    *BF16.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512f")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512bf16_available() -> bool {
    false
}

/// [`convert_block`] with `vcvtne2ps2bf16` (32 floats to bf16, round to nearest even, per
/// instruction); the last chunk of each row loads under a mask.
///
/// # Safety
/// The CPU supports AVX-512F/BW/BF16; `block` holds `16 * sh.kp` values and `a` the rows
/// `r0..r0 + rows` of `sh.k` values at stride `lda` (both as `convert_block` asserts).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn convert_block_avx512(
    r0: usize,
    rows: usize,
    sh: AmxShape,
    a: &[f32],
    lda: usize,
    block: &mut [u16],
) {
    use std::arch::x86_64::*;
    let kchunks = sh.kp / 32;
    let dst = block.as_mut_ptr();
    for row in 0..16 {
        if row >= rows {
            for kc in 0..kchunks {
                // SAFETY: 32 values of row `row` in chunk kc, inside `block` (the contract).
                unsafe {
                    _mm512_storeu_si512(
                        dst.add((kc * 16 + row) * 32) as *mut __m512i,
                        _mm512_setzero_si512(),
                    )
                };
            }
            continue;
        }
        let src = a.as_ptr().wrapping_add((r0 + row) * lda);
        for kc in 0..kchunks {
            let left = sh.k - kc * 32;
            // SAFETY: full chunks read 32 values of this row of A, inside `a` (the contract);
            // a partial last chunk reads only its `left` values under the masks (the address
            // of the masked-off upper half may lie past the end, hence `wrapping_add`).
            let (lo, hi) = unsafe {
                if left >= 32 {
                    (
                        _mm512_loadu_ps(src.add(kc * 32)),
                        _mm512_loadu_ps(src.add(kc * 32 + 16)),
                    )
                } else {
                    let (m_lo, m_hi) = lane_masks(left);
                    (
                        _mm512_maskz_loadu_ps(m_lo, src.add(kc * 32)),
                        _mm512_maskz_loadu_ps(m_hi, src.wrapping_add(kc * 32 + 16)),
                    )
                }
            };
            let packed = bf16_bits(_mm512_cvtne2ps_pbh(hi, lo));
            // SAFETY: 32 values of row `row` in chunk kc, inside `block` (the contract).
            unsafe { _mm512_storeu_si512(dst.add((kc * 16 + row) * 32) as *mut __m512i, packed) };
        }
    }
}

/// The fp32 epilogues the AMX and `vdpbf16ps` kernels share.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::gemm::Epilogue;
    use super::super::lane_masks;

    /// The epilogue's bias for columns `c0..c0 + 32` (zero in masked-off lanes and without
    /// a bias), as two 16-lane halves.
    ///
    /// # Safety
    /// The CPU supports AVX-512F, and the lanes the masks select (columns `c0..c0 + ncols`)
    /// lie inside the bias (`check_args` checked it holds `n` values).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn bias_pair(
        ep: &Epilogue,
        c0: usize,
        m_lo: u16,
        m_hi: u16,
    ) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
        use std::arch::x86_64::*;
        match ep.bias {
            // SAFETY: the masked loads touch only the selected lanes (the contract); the
            // addresses are formed with `wrapping_add` as they may lie past the end.
            Some(bias) => unsafe {
                let p = bias.as_ptr();
                (
                    _mm512_maskz_loadu_ps(m_lo, p.wrapping_add(c0)),
                    _mm512_maskz_loadu_ps(m_hi, p.wrapping_add(c0 + 16)),
                )
            },
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        }
    }

    /// `C[i][c0..c0 + 32] (+)= alpha * acc[i] + bias` for the valid rows and columns.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `clen` floats from `c` hold `rows` rows of the output at
    /// stride `ldc`, of which columns `c0..min(c0 + 32, n)` are the caller's alone; the bias
    /// holds `n` values.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn epilogue(
        acc: &[f32; 32 * 32],
        rows: usize,
        c0: usize,
        n: usize,
        c: *mut f32,
        clen: usize,
        ldc: usize,
        ep: &Epilogue,
    ) {
        use std::arch::x86_64::*;
        let ncols = 32.min(n.saturating_sub(c0));
        let (m_lo, m_hi) = lane_masks(ncols);
        // SAFETY: AVX-512F, and the masks select columns inside the bias (the contract).
        let (bias_lo, bias_hi) = unsafe { bias_pair(ep, c0, m_lo, m_hi) };
        let alpha = _mm512_set1_ps(ep.alpha);
        for (i, row) in acc.chunks_exact(32).enumerate().take(rows) {
            let (row_lo, row_hi) = row.split_at(16);
            // SAFETY: 16 floats each, inside this row of `acc`.
            let (x_lo, x_hi) = unsafe {
                (
                    _mm512_loadu_ps(row_lo.as_ptr()),
                    _mm512_loadu_ps(row_hi.as_ptr()),
                )
            };
            let mut v0 = _mm512_fmadd_ps(x_lo, alpha, bias_lo);
            let mut v1 = _mm512_fmadd_ps(x_hi, alpha, bias_hi);
            debug_assert!(i * ldc + c0 + ncols <= clen);
            // SAFETY: the masks select row i's columns c0..c0 + ncols, inside C and the
            // caller's (the contract); the masked-off upper half's address may lie past the
            // end, hence `wrapping_add`.
            unsafe {
                let out = c.add(i * ldc + c0);
                if ep.accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m_lo, out));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m_hi, out.wrapping_add(16)));
                }
                _mm512_mask_storeu_ps(out, m_lo, v0);
                _mm512_mask_storeu_ps(out.wrapping_add(16), m_hi, v1);
            }
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use super::super::gemm::Epilogue;
    use super::super::{act, lane_masks};
    use super::simd::{bias_pair, epilogue};
    use super::{bf16_bits, AmxShape, Out};
    use crate::act::Act;
    use crate::amx::prefetch_tile;
    use std::arch::asm;

    /// Rows `rows` (multiples of 32 within the padded A) and 32-column blocks `cols` of C.
    ///
    /// Loop order: each 32-row slice of A (two tile rows, `2 * kp * 32` bytes: 48 KiB at
    /// k = 384) stays in L1 while the column blocks of B stream past it sequentially from L2.
    ///
    /// # Safety
    /// AMX is available ([`super::amx_available`]: CPU, AVX-512 and the kernel's tile
    /// permission); `a16` is A in tiles (see `convert_block`) for at least `rows.end` padded
    /// rows, `tiles` the packed weights of `sh.kp x sh.np`, `cols.end <= sh.np / 32`; `out`
    /// holds the `m` valid rows of `n` columns (at stride `ldc`, `Out::F32`) or the padded
    /// tiles of the next product (`Out::Tiles`), and no one else accesses this call's
    /// rectangle of it.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        sh: AmxShape,
        a16: &[u16],
        tiles: &[u16],
        out: Out,
        ep: &Epilogue,
    ) {
        // SAFETY: the tile configuration is a valid palette-1 layout; every tile load and
        // prefetch address below is formed inside `a16` and `tiles` (the contract's sizes:
        // row blocks r0, r0 + 16 < rows.end, column blocks cb < cols.end, k chunks < kchunks),
        // except the next-chunk prefetches, which are hints that never fault and use
        // `wrapping_add`; the stores go to `tmp`, 32 x 32 floats of this frame, and to this
        // call's rectangle of `out` through the epilogues, whose contracts hold (AVX-512 and
        // AVX-512 BF16 come with AMX). Only this function touches the tile registers, from
        // `ldtilecfg` to `tilerelease`.
        unsafe {
            let cfg = crate::amx::config();
            asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack));
            let kchunks = sh.kp / 32;
            let mut tmp = Accumulators([0f32; 32 * 32]);
            // Column blocks per pass: their B tiles (kp * 64 bytes each) fit in a quarter of L2,
            // so every 32-row slice of A multiplies them while they stay cached.
            let chunk = (L2_B_BYTES / (sh.kp * 64)).max(1);
            let mut first = cols.start;
            while first < cols.end {
                let pass = first..(first + chunk).min(cols.end);
                first = pass.end;
                let mut r0 = rows.start;
                while r0 < rows.end {
                    // Tiles of the two 16-row blocks: contiguous 1 KiB each, one per k chunk.
                    let a0 = a16.as_ptr().add(r0 * sh.kp);
                    let a1 = a16.as_ptr().add((r0 + 16) * sh.kp);
                    for cb in pass.clone() {
                        let b0 = tiles.as_ptr().add((2 * cb) * kchunks * 512);
                        let b1 = tiles.as_ptr().add((2 * cb + 1) * kchunks * 512);
                        asm!(
                            "tilezero tmm0",
                            "tilezero tmm1",
                            "tilezero tmm2",
                            "tilezero tmm3",
                            options(nostack)
                        );
                        for kc in 0..kchunks {
                            // The next chunk's B tiles (2 KiB) into L1 while this chunk multiplies:
                            // without it every B tile load waits on L2.
                            prefetch_tile(b0.wrapping_add((kc + 1) * 512), 64);
                            prefetch_tile(b1.wrapping_add((kc + 1) * 512), 64);
                            prefetch_tile(a0.wrapping_add((kc + 1) * 512), 64);
                            prefetch_tile(a1.wrapping_add((kc + 1) * 512), 64);
                            asm!(
                                "tileloadd tmm4, [{a0} + {s}*1]",
                                "tileloadd tmm6, [{b0} + {s}*1]",
                                "tdpbf16ps tmm0, tmm4, tmm6",
                                "tileloadd tmm7, [{b1} + {s}*1]",
                                "tdpbf16ps tmm1, tmm4, tmm7",
                                "tileloadd tmm5, [{a1} + {s}*1]",
                                "tdpbf16ps tmm2, tmm5, tmm6",
                                "tdpbf16ps tmm3, tmm5, tmm7",
                                a0 = in(reg) a0.add(kc * 512),
                                a1 = in(reg) a1.add(kc * 512),
                                b0 = in(reg) b0.add(kc * 512),
                                b1 = in(reg) b1.add(kc * 512),
                                s = in(reg) 64usize,
                                options(nostack),
                            );
                        }
                        let t = tmp.0.as_mut_ptr();
                        asm!(
                            "tilestored [{t0} + {s}*1], tmm0",
                            "tilestored [{t1} + {s}*1], tmm1",
                            "tilestored [{t2} + {s}*1], tmm2",
                            "tilestored [{t3} + {s}*1], tmm3",
                            t0 = in(reg) t,
                            t1 = in(reg) t.add(16),
                            t2 = in(reg) t.add(16 * 32),
                            t3 = in(reg) t.add(16 * 32 + 16),
                            s = in(reg) 128usize,
                            options(nostack),
                        );
                        let c0 = cb * 32;
                        let valid_rows = 32.min(sh.m.saturating_sub(r0));
                        match out {
                            Out::F32 { c, len, ldc } => epilogue(
                                &tmp.0,
                                valid_rows,
                                c0,
                                sh.n,
                                c.add(r0 * ldc),
                                len - r0 * ldc,
                                ldc,
                                ep,
                            ),
                            Out::Tiles { t, kp } => epilogue_tiles(&tmp.0, r0, cb, sh.n, t, kp, ep),
                        }
                    }
                    r0 += 32;
                }
            }
            asm!("tilerelease", options(nostack));
        }
    }

    /// Bytes of packed B one pass keeps hot (a quarter of a 2 MiB L2).
    const L2_B_BYTES: usize = 512 * 1024;

    #[repr(C, align(64))]
    struct Accumulators([f32; 32 * 32]);

    /// `act(alpha * acc + bias)` of one 32 x 32 block, rounded to bf16 into the two tiles
    /// (rows `r0..r0 + 32`, k chunk `cb`) of the next product's left-hand side. Columns past
    /// `n` come out as `act(0) = 0` (zero weights, masked bias): the padding the next product
    /// needs; rows past `m` only ever meet output rows that are discarded.
    ///
    /// # Safety
    /// The CPU supports AVX-512F/DQ/BW/BF16; `t` holds the padded tiles of the next product
    /// (`kp` values per row, rows up to `r0 + 32`), this block of them is the caller's alone,
    /// and the bias holds `n` values.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512bf16")]
    unsafe fn epilogue_tiles(
        acc: &[f32; 32 * 32],
        r0: usize,
        cb: usize,
        n: usize,
        t: *mut u16,
        kp: usize,
        ep: &Epilogue,
    ) {
        use std::arch::x86_64::*;
        let c0 = cb * 32;
        let ncols = 32.min(n.saturating_sub(c0));
        let (m_lo, m_hi) = lane_masks(ncols);
        // SAFETY: AVX-512F, and the masks select columns inside the bias (the contract).
        let (bias_lo, bias_hi) = unsafe { bias_pair(ep, c0, m_lo, m_hi) };
        let alpha = _mm512_set1_ps(ep.alpha);
        let f = |v: __m512| match ep.act {
            Some(Act::GeluErf) => act::avx512::gelu_erf(v),
            Some(Act::GeluTanh) => act::avx512::gelu_tanh(v),
            Some(Act::Relu) => _mm512_max_ps(v, _mm512_setzero_ps()),
            None => v,
        };
        for (i, row) in acc.chunks_exact(32).enumerate() {
            let r = r0 + i;
            let (row_lo, row_hi) = row.split_at(16);
            // SAFETY: 16 floats each, inside this row of `acc`.
            let (x_lo, x_hi) = unsafe {
                (
                    _mm512_loadu_ps(row_lo.as_ptr()),
                    _mm512_loadu_ps(row_hi.as_ptr()),
                )
            };
            let lo = f(_mm512_fmadd_ps(x_lo, alpha, bias_lo));
            let hi = f(_mm512_fmadd_ps(x_hi, alpha, bias_hi));
            let packed = bf16_bits(_mm512_cvtne2ps_pbh(hi, lo));
            // SAFETY: row r's 32 values of k chunk cb in the next product's tiles, inside
            // `t` and this caller's (the contract).
            unsafe {
                let dst = t.add((r / 16) * 16 * kp + (cb * 16 + r % 16) * 32);
                _mm512_storeu_si512(dst as *mut __m512i, packed);
            }
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod amx {
    use super::super::gemm::Epilogue;

    /// Never called: AMX is never available on this target.
    ///
    /// # Safety
    /// None needed; it panics.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        _rows: std::ops::Range<usize>,
        _cols: std::ops::Range<usize>,
        _sh: super::AmxShape,
        _a16: &[u16],
        _tiles: &[u16],
        _out: super::Out,
        _ep: &Epilogue,
    ) {
        unreachable!("AMX is never reported available on this target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::Act;

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0); // tie -> even
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }

    #[test]
    fn bf16_gemm_matches_fp32_within_bf16_error() {
        // The last shape spans two row tasks and two column passes (see `L2_B_BYTES`).
        for &(m, k, n) in &[(1, 5, 3), (33, 70, 40), (100, 384, 96), (300, 1536, 200)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
            let ep = Epilogue::bias(&bias);
            let mut want = vec![0.0; m * n];
            gemm::gemm(
                Isa::Portable,
                m,
                &a,
                k,
                &PackedB::from_weight(&w, n, k),
                &mut want,
                n,
                &ep,
            );
            let packed = PackedBf16::from_weight(Isa::detect(), &w, n, k);
            let mut got = vec![0.0; m * n];
            gemm(Isa::detect(), m, &a, k, &packed, &mut got, n, &ep);
            // Each product has relative error <= 2^-8 per operand.
            let tol = k as f32 * 2.0 * 2f32.powi(-8);
            for (x, y) in got.iter().zip(&want) {
                assert!(
                    (x - y).abs() < tol,
                    "{m}x{k}x{n} amx={}: {x} vs {y}",
                    packed.is_amx()
                );
            }
        }
    }

    /// The tile layout straight from its definition.
    fn reference_tiles(k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Vec<u16> {
        let (kp, np) = (k.div_ceil(32) * 32, n.div_ceil(32) * 32);
        let mut t = vec![0u16; kp * np];
        for col in 0..n {
            for kk in 0..k {
                let (nb, j, kc, p, half) = (col / 16, col % 16, kk / 32, kk % 32 / 2, kk % 2);
                t[((nb * (kp / 32) + kc) * 16 + p) * 32 + j * 2 + half] = to_bf16(get(kk, col));
            }
        }
        t
    }

    #[test]
    fn vector_packers_match_the_tile_definition() {
        // 70 x 50 has full tiles (vector path) and ragged edges (scalar path).
        let (rows, cols, ld) = (70, 50, 53);
        let src: Vec<f32> = (0..rows * ld).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut b = AmxB::default();
        // Keys: W[n = rows, k = cols] -> B = W^T, B[kk][col] = W[col][kk].
        b.pack_nk(&src, ld, rows, cols);
        assert_eq!(
            b.tiles,
            reference_tiles(cols, rows, |kk, col| src[col * ld + kk])
        );
        // Values: B[k = rows, n = cols] row-major.
        b.pack_kn(&src, ld, rows, cols);
        assert_eq!(
            b.tiles,
            reference_tiles(rows, cols, |kk, col| src[kk * ld + col])
        );
    }

    #[test]
    fn serial_amx_product_matches_fp32() {
        if !amx_available() {
            crate::report_skip("bf16 serial AMX product: this CPU (or OS) lacks AMX-BF16");
            return;
        }
        let (m, k, n, lda) = (45, 64, 40, 70);
        let a: Vec<f32> = (0..m * lda)
            .map(|i| ((i * 31 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let bkn: Vec<f32> = (0..k * n)
            .map(|i| ((i * 17 % 83) as f32 - 41.0) / 41.0)
            .collect();
        let mask: Vec<f32> = (0..n).map(|j| if j > 30 { -1e4 } else { 0.0 }).collect();
        let ep = Epilogue {
            alpha: 0.25,
            bias: Some(&mask),
            ..Epilogue::default()
        };
        let mut pk = PackedB::default();
        pk.pack_kn(&bkn, n, k, n);
        let mut want = vec![0.0; m * n];
        gemm::gemm(Isa::Portable, m, &a, lda, &pk, &mut want, n, &ep);
        let mut b = AmxB::default();
        b.pack_kn(&bkn, n, k, n);
        let mut got = vec![0.0; m * n];
        gemm_amx_serial(Isa::detect(), m, &a, lda, &b, &mut got, n, &ep);
        let tol = 0.25 * k as f32 * 2.0 * 2f32.powi(-8);
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < tol, "{x} vs {y}");
        }
    }

    #[test]
    fn fused_ffn_equals_two_products() {
        if !amx_available() {
            crate::report_skip("bf16 fused AMX FFN: this CPU (or OS) lacks AMX-BF16");
            return;
        }
        // 70 rows (a partial 32-row block), inner width 100 (a partial k chunk in between).
        let (m, h, f) = (70, 48, 100);
        let x: Vec<f32> = (0..m * h)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w1: Vec<f32> = (0..f * h)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 90.0)
            .collect();
        let w2: Vec<f32> = (0..h * f)
            .map(|i| ((i * 29 % 89) as f32 - 44.0) / 90.0)
            .collect();
        let b1: Vec<f32> = (0..f).map(|i| i as f32 * 0.01 - 0.3).collect();
        let b2: Vec<f32> = (0..h).map(|i| 0.2 - i as f32 * 0.01).collect();
        let (p1, p2) = (
            PackedBf16::from_weight(Isa::detect(), &w1, f, h),
            PackedBf16::from_weight(Isa::detect(), &w2, h, f),
        );
        for act_fn in [Act::GeluErf, Act::GeluTanh, Act::Relu] {
            let ep1 = Epilogue {
                bias: Some(&b1),
                act: Some(act_fn),
                ..Epilogue::default()
            };
            let ep2 = Epilogue::bias(&b2);
            let mut inter = vec![0.0; m * f];
            let mut want = vec![0.0; m * h];
            gemm(Isa::detect(), m, &x, h, &p1, &mut inter, f, &ep1);
            gemm(Isa::detect(), m, &inter, f, &p2, &mut want, h, &ep2);
            let mut got = vec![f32::NAN; m * h];
            ffn(
                Isa::detect(),
                m,
                &x,
                &p1,
                &ep1,
                &p2,
                &mut got,
                &ep2,
                &mut Tiles16::default(),
            );
            // Same bf16 roundings of the same values; only the GELU's last bits may differ.
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5, "{act_fn:?} [{i}]: {a} vs {b}");
            }
        }
    }

    #[test]
    fn pairs_layout_matches_its_definition() {
        let (n, k) = (40, 13);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.31).sin()).collect();
        let p = PairsB::from_weight(&w, n, k);
        assert_eq!(p.kp, 16);
        assert_eq!(p.data.len(), 64 * 16);
        for col in 0..64 {
            for kk in 0..p.kp {
                let want = if col < n && kk < k {
                    to_bf16(w[col * k + kk])
                } else {
                    0
                };
                let at = (col / 32) * p.kp * 32 + (kk / 2) * 64 + (col % 32) * 2 + kk % 2;
                assert_eq!(p.data[at], want, "col {col} k {kk}");
            }
        }
        let a: Vec<f32> = (0..3 * 20).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut a16 = vec![7u16; 1];
        round_rows(Isa::detect(), 3, &a, 20, 13, 16, &mut a16);
        for r in 0..3 {
            for kk in 0..16 {
                let want = if kk < 13 { to_bf16(a[r * 20 + kk]) } else { 0 };
                assert_eq!(a16[r * 16 + kk], want);
            }
        }
    }

    #[test]
    fn every_bf16_kernel_matches_the_rounded_reference() {
        for &(m, k, n) in &[(1, 5, 3), (13, 70, 40), (100, 384, 96), (30, 1536, 70)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
            let r = |v: f32| from_bf16(to_bf16(v)) as f64;
            for kernel in Bf16Isa::ALL {
                if !kernel.available() {
                    crate::report_skip(&format!(
                        "bf16 kernel {}: this CPU (or OS) lacks it",
                        kernel.name()
                    ));
                    continue;
                }
                let packed = PackedBf16::for_kernel(kernel, &w, n, k);
                assert_eq!(packed.kernel(), kernel);
                for act_fn in [None, Some(Act::GeluErf)] {
                    let ep = Epilogue {
                        alpha: 0.5,
                        bias: Some(&bias),
                        act: act_fn,
                        accumulate: false,
                    };
                    let mut got = vec![f32::NAN; m * n];
                    gemm(Isa::detect(), m, &a, k, &packed, &mut got, n, &ep);
                    for i in 0..m {
                        for j in 0..n {
                            // The widened kernel keeps A in fp32: compare with A unrounded.
                            let ra = |v: f32| {
                                if kernel == Bf16Isa::Widened {
                                    v as f64
                                } else {
                                    r(v)
                                }
                            };
                            let dot: f64 =
                                (0..k).map(|kk| ra(a[i * k + kk]) * r(w[j * k + kk])).sum();
                            let mut want = (0.5 * dot + bias[j] as f64) as f32;
                            if act_fn.is_some() {
                                want = act::gelu_erf(want);
                            }
                            let x = got[i * n + j];
                            assert!(
                                (x - want).abs() < 1e-4 * (1.0 + want.abs()) * (k as f32).sqrt(),
                                "{} {m}x{k}x{n} [{i},{j}]: {x} vs {want}",
                                kernel.name()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_names_round_trip() {
        for k in Bf16Isa::ALL {
            assert_eq!(Bf16Isa::parse(k.name()), Some(k));
        }
        assert!(Bf16Isa::detect().available());
        assert_eq!(
            PackedBf16::from_weight(Isa::Portable, &[1.0; 4], 2, 2).kernel(),
            Bf16Isa::Widened
        );
    }

    #[test]
    fn fallback_without_amx_uses_the_rounded_weights() {
        let (m, k, n) = (7, 40, 20);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.13).cos()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.07).sin() * 1.37).collect();
        let rounded: Vec<f32> = w.iter().map(|&v| from_bf16(to_bf16(v))).collect();
        assert_ne!(rounded, w, "the test weights must not be bf16-exact");
        let mut want = vec![0.0; m * n];
        let ep = Epilogue::default();
        gemm::gemm(
            Isa::Portable,
            m,
            &a,
            k,
            &PackedB::from_weight(&rounded, n, k),
            &mut want,
            n,
            &ep,
        );
        let packed = PackedBf16::widened(&w, n, k);
        assert!(!packed.is_amx());
        for isa in [Isa::Portable, Isa::Avx512] {
            if !isa.available() {
                crate::report_skip(&format!(
                    "widened bf16 on {}: this CPU lacks it",
                    isa.name()
                ));
                continue;
            }
            let mut got = vec![0.0; m * n];
            gemm(isa, m, &a, k, &packed, &mut got, n, &ep);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5, "{isa:?}: {x} vs {y}");
            }
        }
    }
}
