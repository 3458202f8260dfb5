//! Single-precision matrix multiply on pre-packed right-hand sides.
//!
//! `C[m, n] = act(alpha * sum_k A[m, k] * B[k, n] + bias[n]) (+ C[m, n] when accumulating)`.
//!
//! `B` is packed once ([`PackedB`]): column panels of [`NR`] = 32 columns, each stored K-major
//! (`panel[k][0..32]`), zero-padded past `n`. A linear layer's weight `W[n, k]` is packed at
//! load, so the forward pass never transposes or copies weights. `A` is read in place
//! through its row stride, so views such as one head's columns of the fused QKV projection
//! need no copy.
//!
//! The register tile is [`MR`] x [`NR`] = 12 x 32: 24 AVX-512 accumulators, two panel
//! loads and twelve broadcasts of `A` per `k`. Work is split over the rayon pool in blocks
//! of [`MC`] rows times groups of panels (a group's slice of B sized to stay in L2); inside
//! a block the row tiles are outermost, so each tile's strip of A stays in L1 while it meets
//! every panel of the group.

use super::act::{self, Act};
use super::norm::{self, Norm};
use super::{par_for, Isa, SendPtr};

/// Columns per packed panel (two 16-lane vectors).
pub const NR: usize = 32;
/// Rows per register tile.
pub const MR: usize = 12;
/// Rows per parallel work block.
pub const MC: usize = 96;
/// Depth of one pass over K. Every pass ends in a C load/add/store epilogue and a drained
/// FMA pipeline, so passes should be long: 384 is one pass for a 384-wide layer, and the
/// 12 x 384 strip of A and the 48 KiB panel slice then stream from L2, which the hardware
/// prefetchers keep up with.
pub const KC: usize = 384;
/// Bytes of packed B one column group may hold (half of a 2 MiB L2).
const L2_B_BYTES: usize = 1 << 20;

/// The right-hand side `B[k, n]`, packed in 32-column K-major panels.
#[derive(Clone, Debug, Default)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Rows of `B` (the product's inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B` (the product's output width).
    pub fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Sizes the buffer for `k x n`. The packers write every valid column, so only the
    /// zero padding of a partial last panel needs clearing (attention repacks K and V per
    /// head, where zero-filling whole buffers would be a visible share of its time).
    fn reset(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        let len = n.div_ceil(NR) * k * NR;
        self.data.resize(len, 0.0);
        if !n.is_multiple_of(NR) {
            let (last, valid) = (n / NR, n % NR);
            let panel = &mut self.data[last * k * NR..(last + 1) * k * NR];
            for row in panel.chunks_exact_mut(NR) {
                row[valid..].fill(0.0);
            }
        }
    }

    /// Packs `B = W^T` for a dense weight `W[n, k]` (PyTorch's `[out, in]`).
    ///
    /// # Panics
    /// If `w` holds fewer than `n * k` values.
    pub fn from_weight(w: &[f32], n: usize, k: usize) -> Self {
        let mut p = Self::default();
        p.pack_nk(w, k, n, k);
        p
    }

    /// Packs `B = W^T` for `W[n, k]` with row stride `ldw`, reusing this buffer.
    ///
    /// # Panics
    /// If `w` is too short for `n` rows of `k` values at stride `ldw`.
    pub fn pack_nk(&mut self, w: &[f32], ldw: usize, n: usize, k: usize) {
        assert!(
            n == 0 || k == 0 || w.len() >= (n - 1) * ldw + k,
            "pack_nk: source too short"
        );
        self.reset(k, n);
        // 16 x 16 blocks by vector transposes (attention repacks every head's keys per
        // forward, where the element-by-element loop is slow).
        let (n16, k16) = if Isa::Avx512.available() {
            (n / 16 * 16, k / 16 * 16)
        } else {
            (0, 0)
        };
        #[cfg(target_arch = "x86_64")]
        for c0 in (0..n16).step_by(16) {
            let (panel, j0) = (c0 / NR, c0 % NR);
            let dst = &mut self.data[panel * k * NR..(panel + 1) * k * NR];
            for k0 in (0..k16).step_by(16) {
                // SAFETY: AVX-512F checked (n16 > 0 only then); rows c0..c0 + 16 of `w` hold
                // columns k0..k0 + 16 (the assert above), and the panel holds rows
                // k0..k0 + 16 of 32 values, from column j0 <= 16.
                unsafe { transpose_block(&w[c0 * ldw + k0..], ldw, &mut dst[k0 * NR + j0..]) };
            }
        }
        for col in 0..n {
            let (panel, j) = (col / NR, col % NR);
            let dst = &mut self.data[panel * k * NR..(panel + 1) * k * NR];
            let done = if col < n16 { k16 } else { 0 };
            for (kk, &v) in w[col * ldw..col * ldw + k].iter().enumerate().skip(done) {
                dst[kk * NR + j] = v;
            }
        }
    }

    /// Packs `B[k, n]` given row-major with row stride `ldb`, reusing this buffer.
    ///
    /// # Panics
    /// If `b` is too short for `k` rows of `n` values at stride `ldb`.
    pub fn pack_kn(&mut self, b: &[f32], ldb: usize, k: usize, n: usize) {
        assert!(
            n == 0 || k == 0 || b.len() >= (k - 1) * ldb + n,
            "pack_kn: source too short"
        );
        self.reset(k, n);
        for panel in 0..self.panels() {
            let c0 = panel * NR;
            let w = NR.min(n - c0);
            let dst = &mut self.data[panel * k * NR..(panel + 1) * k * NR];
            for kk in 0..k {
                dst[kk * NR..kk * NR + w].copy_from_slice(&b[kk * ldb + c0..kk * ldb + c0 + w]);
            }
        }
    }
}

/// `dst[i * NR + j] = src[j * lds + i]` for a 16 x 16 block.
///
/// # Safety
/// AVX-512F is available; `src` holds 16 rows of 16 at stride `lds`, `dst` 16 rows of 16 at
/// stride `NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_block(src: &[f32], lds: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(src.len() >= 15 * lds + 16 && dst.len() >= 15 * NR + 16);
    let mut rows = [_mm512_setzero_si512(); 16];
    for (j, row) in rows.iter_mut().enumerate() {
        // SAFETY: row j's 16 values lie inside `src` (the contract).
        *row = _mm512_castps_si512(unsafe { _mm512_loadu_ps(src.as_ptr().add(j * lds)) });
    }
    for (i, col) in super::transpose16x16(&rows).iter().enumerate() {
        // SAFETY: row i's 16 values lie inside `dst` (the contract).
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add(i * NR), _mm512_castsi512_ps(*col)) };
    }
}

/// What happens to each output tile after the multiply.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// Multiplies the product (before the bias).
    pub alpha: f32,
    /// Added per column; length >= n.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub act: Option<Act>,
    /// Add the result to C instead of overwriting it.
    pub accumulate: bool,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            bias: None,
            act: None,
            accumulate: false,
        }
    }
}

impl<'a> Epilogue<'a> {
    /// Only a bias.
    pub fn bias(bias: &'a [f32]) -> Self {
        Self {
            bias: Some(bias),
            ..Self::default()
        }
    }
}

fn check(m: usize, a: &[f32], lda: usize, b: &PackedB, clen: usize, ldc: usize, ep: &Epilogue) {
    check_args(m, b.k, b.n, a, lda, clen, ldc, ep);
}

/// Bounds of `C[m, n] = A[m, k] * B[k, n]` with row strides `lda` and `ldc` (also used by the
/// bf16 products, whose right-hand sides are packed differently).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_args(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    clen: usize,
    ldc: usize,
    ep: &Epilogue,
) {
    assert!(lda >= k && ldc >= n, "gemm: stride shorter than a row");
    if m > 0 {
        assert!(a.len() >= (m - 1) * lda + k, "gemm: A too short");
        assert!(clen >= (m - 1) * ldc + n, "gemm: C too short");
    }
    if let Some(bias) = ep.bias {
        assert!(bias.len() >= n, "gemm: bias too short");
    }
}

/// A LayerNorm applied to whole rows of C after the product: `C = LayerNorm(C + residual)`,
/// `residual` shaped like C (`m x n`, contiguous).
#[derive(Clone, Copy)]
pub struct RowNorm<'a> {
    pub norm: &'a Norm,
    pub residual: &'a [f32],
}

/// `C = epilogue(A * B)` for `C[m, n]` with row stride `ldc`, `A[m, k]` with row stride `lda`
/// (`k`, `n` from `b`), split over the rayon pool.
///
/// # Panics
/// If a stride is shorter than its row, `a` or `c` is too short for `m` rows, or the bias
/// holds fewer than `n` values.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    check(m, a, lda, b, c.len(), ldc, ep);
    // SAFETY: C is a live, initialized slice of `c.len()` floats, borrowed mutably.
    unsafe { gemm_with(isa, m, a, lda, b, c.as_mut_ptr(), c.len(), ldc, ep, None) }
}

/// `epilogue(A * B)` as a new dense `m x n` buffer. Not zero-filled first: the product's
/// first pass stores every element without reading it (training activations are written
/// once by their product, so a zero fill would be pure overhead).
///
/// # Panics
/// As [`gemm`], and if the epilogue accumulates.
pub fn gemm_new(isa: Isa, m: usize, a: &[f32], lda: usize, b: &PackedB, ep: &Epilogue) -> Vec<f32> {
    assert!(!ep.accumulate, "gemm_new: nothing to accumulate into");
    let len = m * b.n;
    check(m, a, lda, b, len, b.n, ep);
    let mut c = Vec::with_capacity(len);
    // SAFETY: the capacity holds `len` floats; with `ldc == n` the rows cover all of them,
    // and `gemm_with` writes each through the raw pointer before any read (no accumulation,
    // and the K passes after the first read only what the first stored), so all `len` are
    // initialized when the length is set.
    unsafe {
        gemm_with(isa, m, a, lda, b, c.as_mut_ptr(), len, b.n, ep, None);
        c.set_len(len);
    }
    c
}

/// `C = LayerNorm(epilogue(A * B) + residual)` for a contiguous `C[m, n]`. Each row block
/// normalizes its rows while they are still in cache, when it spans all columns (a layer
/// of up to `L2_B_BYTES / (4 KC)` = 682 outputs); wider products normalize in a second pass.
///
/// # Panics
/// As [`gemm`], and if C, the residual or the LayerNorm are not `m x n` / `n` wide.
#[allow(clippy::too_many_arguments)]
pub fn gemm_norm(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ep: &Epilogue,
    post: RowNorm,
) {
    let n = b.n;
    assert!(
        post.residual.len() == m * n
            && c.len() == m * n
            && post.norm.gamma.len() == n
            && post.norm.beta.len() == n,
        "gemm_norm: C, residual and LayerNorm must all be {m} x {n}"
    );
    check(m, a, lda, b, c.len(), n, ep);
    // SAFETY: C is a live, initialized slice of `c.len()` floats, borrowed mutably.
    unsafe {
        gemm_with(
            isa,
            m,
            a,
            lda,
            b,
            c.as_mut_ptr(),
            c.len(),
            n,
            ep,
            Some(&post),
        )
    }
}

/// How a product's `m` rows and column panels are dealt out as parallel tasks: row blocks of
/// whole `mr`-row strips (about [`MC`] rows each) times groups of panels. With several
/// threads the block count is a multiple of the thread count and the strips are dealt out
/// evenly (1024 rows as 11 blocks of 96 left one thread a whole block behind the other).
/// Column groups give the pool enough tasks to balance (4 per thread), and keep each
/// group's slice of B small enough to stay in L2 while every row block of A passes it.
/// Shared by the fp32, bf16 and int8 products, whose panels differ only in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Split {
    m: usize,
    mr: usize,
    strips: usize,
    pub(crate) blocks: usize,
    pub(crate) groups: usize,
    per_group: usize,
    panels: usize,
}

impl Split {
    /// The split of `m` rows (strips of `mr`) and `panels` panels of `panel_bytes` each, for
    /// a product of `flops` operations (small ones stay on one thread).
    pub(crate) fn new(
        m: usize,
        mr: usize,
        panels: usize,
        panel_bytes: usize,
        flops: usize,
    ) -> Self {
        let threads = rayon::current_num_threads();
        let parallel = threads > 1 && flops >= 1 << 18;
        let strips = m.div_ceil(mr);
        let mut blocks = strips.div_ceil((MC / mr).max(1)).max(1);
        if parallel && blocks >= threads {
            blocks = blocks.div_ceil(threads) * threads;
        }
        let for_balance = if parallel {
            (4 * threads).div_ceil(blocks)
        } else {
            1
        };
        let for_cache = (panels * panel_bytes).div_ceil(L2_B_BYTES);
        let groups = for_balance.max(for_cache).clamp(1, panels.max(1));
        let per_group = panels.div_ceil(groups).max(1);
        let groups = panels.div_ceil(per_group).max(1);
        Self {
            m,
            mr,
            strips,
            blocks,
            groups,
            per_group,
            panels,
        }
    }

    /// Rows of block `blk` (whole strips; the last one may be short, some may be empty).
    pub(crate) fn rows(&self, blk: usize) -> std::ops::Range<usize> {
        let at = |b: usize| (b * self.strips / self.blocks * self.mr).min(self.m);
        at(blk)..at(blk + 1)
    }

    /// Runs `f(rows, panels)` for every task on the rayon pool, group-major, so that a
    /// thread's consecutive tasks share one slice of B.
    pub(crate) fn run(
        &self,
        f: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync + Send,
    ) {
        par_for(self.blocks * self.groups, |t| {
            let (g, blk) = (t / self.blocks, t % self.blocks);
            let pans = g * self.per_group..((g + 1) * self.per_group).min(self.panels);
            f(self.rows(blk), pans);
        });
    }
}

/// The parallel product behind [`gemm`], [`gemm_norm`] and [`gemm_new`]. The caller has run
/// [`check`] on these arguments.
///
/// # Safety
/// `c` is valid for writes of `clen` floats (and for reads where `ep.accumulate`), and no
/// one else accesses them during the call. C is written through the pointer only, every
/// element of the `m x n` rows before it is read, so it may start uninitialized unless
/// accumulating.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    clen: usize,
    ldc: usize,
    ep: &Epilogue,
    post: Option<&RowNorm>,
) {
    let isa = isa.or_portable();
    if m == 0 || b.n == 0 {
        return;
    }
    let split = Split::new(m, MR, b.panels(), b.k * NR * 4, 2 * m * b.n * b.k);
    let cp = SendPtr(c);
    let in_block = if split.groups == 1 { post } else { None };
    split.run(|rows, pans| {
        // SAFETY: `check` bounded A and C for all m rows, `isa` is available
        // (`or_portable`), and tasks write disjoint (row block, panel group) rectangles of C;
        // a task with `in_block` spans all columns (one group), so its whole rows are its own.
        unsafe {
            block(
                isa,
                rows,
                pans,
                a,
                lda,
                b,
                cp.ptr(),
                clen,
                ldc,
                ep,
                in_block,
            )
        };
    });
    if let (Some(post), None) = (post, in_block) {
        // SAFETY: `gemm_norm` passes a contiguous C of `clen` floats, every one written by
        // now, and this call has it to itself.
        let c = unsafe { std::slice::from_raw_parts_mut(c, clen) };
        norm::add_layer_norm(isa, c, Some(post.residual), post.norm);
    }
}

/// `C = epilogue(A * B)` on the calling thread only (for use inside parallel tasks).
///
/// # Panics
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    // SAFETY: C is a live, initialized slice of `c.len()` floats, borrowed mutably.
    unsafe { gemm_serial_raw(isa, m, a, lda, b, c.as_mut_ptr(), c.len(), ldc, ep) }
}

/// [`gemm_serial`] on a C given as a pointer, for parallel tasks that each own some columns
/// of shared rows (one attention head's columns): they cannot hold overlapping `&mut`
/// slices. Only the `m x n` rectangle at `c` (row stride `ldc`) is read or written.
///
/// # Safety
/// `clen` floats from `c` are valid for reads and writes, and no one else accesses the
/// rectangle's elements during the call.
///
/// # Panics
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_serial_raw(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    clen: usize,
    ldc: usize,
    ep: &Epilogue,
) {
    check(m, a, lda, b, clen, ldc, ep);
    if m == 0 || b.n == 0 {
        return;
    }
    let isa = isa.or_portable();
    // SAFETY: bounds checked above, `isa` is available, and the rectangle is this caller's
    // (the contract).
    unsafe { block(isa, 0..m, 0..b.panels(), a, lda, b, c, clen, ldc, ep, None) }
}

/// One rectangle of C: rows `rows`, column panels `pans`; with `post`, the LayerNorm of
/// whole rows `rows` of a contiguous C.
///
/// # Safety
/// [`check`] passed for these arguments with all `m >= rows.end` rows; `isa` is available on
/// this CPU; `c` points to `clen` floats that hold all rows of C at stride `ldc`, valid for
/// writes (and reads where accumulating or after the first K pass); no other thread accesses
/// this rectangle (with `post`: these whole rows) during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    isa: Isa,
    rows: std::ops::Range<usize>,
    pans: std::ops::Range<usize>,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    clen: usize,
    ldc: usize,
    ep: &Epilogue,
    post: Option<&RowNorm>,
) {
    let k = b.k;
    let first_col = pans.start * NR;
    let last_col = (pans.end * NR).min(b.n);
    // Row tiles outermost: a tile's strip of A (12 x 384) stays in L1 while it meets every
    // panel of the group, which streams from L2.
    let tile_at = |r: usize, p: usize, k0: usize, kc: usize| {
        let first = k0 == 0;
        let c0 = p * NR;
        let ncols = NR.min(b.n - c0);
        let mr = MR.min(rows.end - r);
        let c_off = r * ldc + c0;
        debug_assert!(c_off + (mr - 1) * ldc + ncols <= clen);
        let tile = Tile {
            k: kc,
            a: a[r * lda + k0..].as_ptr(),
            lda,
            b: b.data[p * k * NR + k0 * NR..].as_ptr(),
            next_panel: k * NR,
            // The first row tile meets each panel first; the others would re-request lines
            // already on their way and spend load slots doing it.
            prefetch: r == rows.start,
            // In bounds: `c_off` is inside C's `clen` floats (the debug assertion, which
            // `check` guarantees).
            c: c.wrapping_add(c_off),
            ldc,
            ncols,
            bias: if first {
                ep.bias.map(|bias| &bias[c0..c0 + ncols])
            } else {
                None
            },
            alpha: ep.alpha,
            accumulate: ep.accumulate || !first,
        };
        // SAFETY: the tile's rows of A, its panel of B and its mr x ncols rectangle of C
        // are in bounds (`check`, and the panel holds k * NR floats per panel), the rectangle
        // is this caller's (the contract), and AVX-512 is available when `isa` says so.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => avx512::tile(mr, &tile),
                _ => portable_tile(mr, &tile),
            }
        }
    };
    // K in passes of KC, later passes adding to C; at least one, so that even k = 0 stores
    // every element (bias only).
    let mut k0 = 0;
    loop {
        let kc = KC.min(k - k0);
        for r in rows.clone().step_by(MR) {
            for p in pans.clone() {
                tile_at(r, p, k0, kc);
            }
        }
        k0 += kc;
        if k0 >= k {
            break;
        }
    }
    // The activation runs once per row over this block's columns (long contiguous spans
    // vectorize well), while the block is still in cache.
    if let Some(act_fn) = ep.act {
        let span = last_col - first_col;
        for r in rows.clone() {
            // SAFETY: row r's columns first_col..last_col are inside C and in this caller's
            // rectangle, and were all written by the K passes above.
            let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc + first_col), span) };
            act::apply(isa, act_fn, out);
        }
    }
    // Whole rows (the caller checked this block spans all columns and C is contiguous).
    if let Some(post) = post {
        let n = b.n;
        let span = rows.start * n..rows.end * n;
        // SAFETY: C is contiguous (ldc == n) and these whole rows are this caller's (the
        // contract), all written above.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(span.start), span.len()) };
        norm::add_layer_norm_serial(isa, out, Some(&post.residual[span]), post.norm);
    }
}

/// One register tile's operands.
struct Tile<'a> {
    k: usize,
    /// First row of A (row stride `lda`).
    a: *const f32,
    lda: usize,
    /// The packed panel, `k * NR` floats.
    b: *const f32,
    /// Distance (in floats) from `b` to the same rows of the next panel, prefetched into L2
    /// while this tile runs (a hint only: it may point past the end of B).
    next_panel: usize,
    /// Whether this tile issues those prefetches.
    prefetch: bool,
    /// Top-left of the C tile (row stride `ldc`).
    c: *mut f32,
    ldc: usize,
    /// Valid columns in this panel (1..=NR).
    ncols: usize,
    /// `ncols` values when given.
    bias: Option<&'a [f32]>,
    alpha: f32,
    accumulate: bool,
}

/// Plain-Rust tile for any CPU.
///
/// # Safety
/// `t.a` holds `mr` rows of `t.k` floats at stride `t.lda`, `t.b` holds `t.k * NR` floats,
/// and the `mr x t.ncols` rectangle at `t.c` (stride `t.ldc`) is valid for writes (and reads
/// when accumulating) and accessed by no one else.
unsafe fn portable_tile(mr: usize, t: &Tile) {
    let mut acc = [[0.0f32; NR]; MR];
    for kk in 0..t.k {
        // SAFETY: row kk of the panel, inside its k * NR floats.
        let bk = unsafe { std::slice::from_raw_parts(t.b.add(kk * NR), NR) };
        for (i, row) in acc.iter_mut().enumerate().take(mr) {
            // SAFETY: row i < mr, column kk < k of A.
            let av = unsafe { *t.a.add(i * t.lda + kk) };
            for (acc_j, &b_j) in row.iter_mut().zip(bk) {
                *acc_j += av * b_j;
            }
        }
    }
    // Raw reads and writes: C may be uninitialized before the first pass (see `gemm_new`).
    for (i, row) in acc.iter().enumerate().take(mr) {
        for (j, &r) in row.iter().enumerate().take(t.ncols) {
            let mut v = t.alpha * r;
            if let Some(bias) = t.bias {
                v += bias[j];
            }
            // SAFETY: element (i, j) of the rectangle (i < mr, j < ncols), read only when
            // accumulating, i.e. after it was written.
            unsafe {
                let o = t.c.add(i * t.ldc + j);
                o.write(if t.accumulate { o.read() + v } else { v });
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::lane_masks;
    use super::{Tile, MR, NR};
    use std::arch::x86_64::*;

    /// Dispatches to the tile specialized for `mr` rows (1..=12).
    ///
    /// # Safety
    /// The CPU supports AVX-512F and FMA, and `t` describes memory as for
    /// [`super::portable_tile`].
    pub(super) unsafe fn tile(mr: usize, t: &Tile) {
        debug_assert!((1..=MR).contains(&mr));
        // SAFETY: the caller's contract is each kernel's.
        unsafe {
            match mr {
                12 => kernel::<12>(t),
                11 => kernel::<11>(t),
                10 => kernel::<10>(t),
                9 => kernel::<9>(t),
                8 => kernel::<8>(t),
                7 => kernel::<7>(t),
                6 => kernel::<6>(t),
                5 => kernel::<5>(t),
                4 => kernel::<4>(t),
                3 => kernel::<3>(t),
                2 => kernel::<2>(t),
                _ => kernel::<1>(t),
            }
        }
    }

    /// The `R x 32` register tile.
    ///
    /// # Safety
    /// As [`tile`], with `mr == R`.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn kernel<const R: usize>(t: &Tile) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        // Row pointers of A; they advance along k and end at most one past their rows.
        let mut rows = [t.a; R];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = t.a.wrapping_add(i * t.lda);
        }
        let mut b = t.b;
        // SAFETY: (the k loop) every load reads A at row i < R, column < k, and the panel at
        // row < k (its k * NR floats), inside the memory the contract gives; prefetches are
        // hints that never fault.
        unsafe {
            // One k step: two panel loads, R broadcasts, 2R FMAs. Unrolled by 4 so the
            // twelve row pointers advance once per four steps (the steps use address
            // displacements).
            macro_rules! step {
                ($u:expr) => {{
                    let bu = b.add($u * NR);
                    // When the weights stream from L3 (small batches), fetching the next
                    // panel while this one's row tiles run from cache overlaps transfer and
                    // arithmetic.
                    if t.prefetch {
                        let next = bu.wrapping_add(t.next_panel) as *const i8;
                        _mm_prefetch::<_MM_HINT_T1>(next);
                        _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(64));
                    }
                    let b0 = _mm512_loadu_ps(bu);
                    let b1 = _mm512_loadu_ps(bu.add(16));
                    for i in 0..R {
                        let av = _mm512_set1_ps(*rows[i].add($u));
                        lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                        hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
                    }
                }};
            }
            let mut left = t.k;
            while left >= 4 {
                step!(0);
                step!(1);
                step!(2);
                step!(3);
                for r in rows.iter_mut() {
                    *r = r.add(4);
                }
                b = b.add(4 * NR);
                left -= 4;
            }
            while left > 0 {
                step!(0);
                for r in rows.iter_mut() {
                    *r = r.add(1);
                }
                b = b.add(NR);
                left -= 1;
            }
        }
        // Column masks for a partial last panel; masked-off lanes are neither read nor
        // written, and their addresses are formed with `wrapping_add` (they may lie past the
        // end of the buffer).
        let (m_lo, m_hi) = lane_masks(t.ncols);
        let alpha = _mm512_set1_ps(t.alpha);
        let (bias_lo, bias_hi) = match t.bias {
            // SAFETY: the masks cover only the bias's `ncols` values.
            Some(bias) => unsafe {
                (
                    _mm512_maskz_loadu_ps(m_lo, bias.as_ptr()),
                    _mm512_maskz_loadu_ps(m_hi, bias.as_ptr().wrapping_add(16)),
                )
            },
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for i in 0..R {
            let c = t.c.wrapping_add(i * t.ldc);
            let mut v0 = _mm512_fmadd_ps(lo[i], alpha, bias_lo);
            let mut v1 = _mm512_fmadd_ps(hi[i], alpha, bias_hi);
            // SAFETY: the masks cover row i's `ncols` values of the rectangle, which the
            // contract gives this call (read only when accumulating, i.e. after a write).
            unsafe {
                if t.accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m_lo, c));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m_hi, c.wrapping_add(16)));
                }
                _mm512_mask_storeu_ps(c, m_lo, v0);
                _mm512_mask_storeu_ps(c.wrapping_add(16), m_hi, v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, k: usize, n: usize, a: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * w[j * k + kk] as f64;
                }
                c[i * n + j] = (0.5 * s) as f32 + bias[j];
            }
        }
        c
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / (1u32 << 24) as f32
                    - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_reference_for_odd_shapes_on_every_isa() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (100, 65, 70),
            (5, 384, 64),
            (200, 16, 96),
        ] {
            let a = data(m * k, 1);
            let w = data(n * k, 2);
            let bias = data(n, 3);
            let want = reference(m, k, n, &a, &w, &bias);
            let packed = PackedB::from_weight(&w, n, k);
            for isa in [Isa::Portable, Isa::Avx512] {
                if !isa.available() {
                    continue;
                }
                let mut c = vec![1.0f32; m * n];
                let ep = Epilogue {
                    alpha: 0.5,
                    bias: Some(&bias),
                    ..Epilogue::default()
                };
                gemm(isa, m, &a, k, &packed, &mut c, n, &ep);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4, "{isa:?} {m}x{k}x{n}: {x} vs {y}");
                }
                // Accumulate into a strided C with spare columns left untouched.
                let ldc = n + 3;
                let mut c2 = vec![1.0f32; m * ldc];
                gemm_serial(
                    isa,
                    m,
                    &a,
                    k,
                    &packed,
                    &mut c2,
                    ldc,
                    &Epilogue {
                        accumulate: true,
                        ..ep
                    },
                );
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c2[i * ldc + j];
                        let exp = if j < n { want[i * n + j] + 1.0 } else { 1.0 };
                        assert!(
                            (got - exp).abs() < 1e-4,
                            "{isa:?} acc {i},{j}: {got} vs {exp}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn new_buffer_product_equals_in_place_product() {
        // k = 0 included: the product is then the bias alone, and every element is written.
        for &(m, k, n) in &[(13, 7, 33), (100, 400, 70), (5, 0, 40)] {
            let (a, w, bias) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            let packed = PackedB::from_weight(&w, n, k);
            let ep = Epilogue {
                alpha: 0.5,
                bias: Some(&bias),
                act: Some(Act::Relu),
                ..Epilogue::default()
            };
            for isa in [Isa::Portable, Isa::Avx512] {
                if !isa.available() {
                    continue;
                }
                let mut want = vec![f32::NAN; m * n];
                gemm(isa, m, &a, k, &packed, &mut want, n, &ep);
                assert!(want.iter().all(|v| v.is_finite()), "{isa:?} {m}x{k}x{n}");
                assert_eq!(
                    gemm_new(isa, m, &a, k, &packed, &ep),
                    want,
                    "{isa:?} {m}x{k}x{n}"
                );
            }
        }
    }

    #[test]
    fn fused_layer_norm_matches_product_then_norm() {
        // (m, k, n, threads): one block spanning every column (normalized in the block), and
        // a product split into column groups over four threads (normalized in a second pass).
        for &(m, k, n, threads) in &[(30, 20, 40, 1), (200, 64, 100, 4)] {
            let (a, w, bias) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            let residual = data(m * n, 4);
            let ln = Norm {
                gamma: data(n, 5).iter().map(|g| 1.0 + g).collect(),
                beta: data(n, 6),
                eps: 1e-5,
            };
            let mut want = reference(m, k, n, &a, &w, &bias);
            for (row, res) in want.chunks_exact_mut(n).zip(residual.chunks_exact(n)) {
                let v: Vec<f64> = row.iter().zip(res).map(|(x, r)| (x + r) as f64).collect();
                let mean = v.iter().sum::<f64>() / n as f64;
                let var = v.iter().map(|q| (q - mean).powi(2)).sum::<f64>() / n as f64;
                for (j, o) in row.iter_mut().enumerate() {
                    let z = (v[j] - mean) / (var + 1e-5).sqrt();
                    *o = (z * ln.gamma[j] as f64 + ln.beta[j] as f64) as f32;
                }
            }
            let packed = PackedB::from_weight(&w, n, k);
            let ep = Epilogue {
                alpha: 0.5,
                bias: Some(&bias),
                ..Epilogue::default()
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for isa in [Isa::Portable, Isa::Avx512] {
                if !isa.available() {
                    continue;
                }
                let mut c = vec![f32::NAN; m * n];
                let post = RowNorm {
                    norm: &ln,
                    residual: &residual,
                };
                pool.install(|| gemm_norm(isa, m, &a, k, &packed, &mut c, &ep, post));
                for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                    assert!((x - y).abs() < 1e-4, "{isa:?} {m}x{n} [{i}]: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn repacking_a_reused_buffer_leaves_no_stale_padding() {
        let mut p = PackedB::default();
        p.pack_nk(&data(40 * 9, 7), 9, 40, 9);
        // Smaller, ragged: the old buffer's values must not leak into the padding.
        let w = data(35 * 9, 8);
        p.pack_nk(&w, 9, 35, 9);
        assert_eq!(p.data, PackedB::from_weight(&w, 35, 9).data);
        let b = data(9 * 35, 9);
        p.pack_kn(&b, 35, 9, 35);
        let mut fresh = PackedB::default();
        fresh.pack_kn(&b, 35, 9, 35);
        assert_eq!(p.data, fresh.data);
    }

    #[test]
    fn pack_kn_equals_pack_nk_of_the_transpose() {
        // 37 x 50: whole 16 x 16 blocks (vector transposes on AVX-512) plus ragged edges.
        let (k, n) = (37, 50);
        let b = data(k * n, 5);
        let mut wt = vec![0.0; n * k];
        for kk in 0..k {
            for j in 0..n {
                wt[j * k + kk] = b[kk * n + j];
            }
        }
        let mut p = PackedB::default();
        p.pack_kn(&b, n, k, n);
        assert_eq!(p.data, PackedB::from_weight(&wt, n, k).data);
    }
}
