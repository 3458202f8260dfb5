//! The int8 inference path: weights quantized per output channel, activations per row,
//! integer products with 32-bit accumulation.
//!
//! Weights `W[n, k]` are quantized once, symmetrically per output channel (row `j` of `W`):
//! `s_j = max|W[j, :]| / 127`, `q = round(W / s_j)` in `[-127, 127]`. Each left-hand side is
//! quantized when a product starts, symmetrically per row: `t_i = max|A[i, :]| / 127`,
//! `a = round(A / t_i)`, stored as the unsigned byte `a + 128` because the instructions
//! multiply unsigned by signed bytes. The shift comes back out exactly in the epilogue:
//! `sum_k (a + 128) q = sum_k a q + 128 * sum_k q`, and `128 * sum_k q` is kept per column.
//! Products accumulate in `i32` (at most `255 * 127 * k`: no overflow below `k = 66000`).
//!
//! The epilogue of every tile does, in registers: subtract the shift, convert, scale by
//! `t_i * s_j` (and `alpha`), add the bias, apply the activation, store fp32 (or add to C).
//!
//! Kernels ([`Int8Isa`], picked at run time):
//! - [`Int8Isa::Avx512Vnni`]: `vpdpbusd` on 512-bit registers, a 12 x 32 register tile.
//! - [`Int8Isa::AvxVnni`]: the VEX form `vpdpbusd` on 256-bit registers (AVX2 machines with
//!   AVX-VNNI), a 3 x 32 tile.
//! - [`Int8Isa::Amx`]: `tdpbusd` on AMX tiles, 32 x 32 per step, where the CPU has AMX-INT8
//!   and Linux grants tile data.
//! - [`Int8Isa::Portable`]: plain Rust on `i32`, any CPU.
//!
//! One packed layout serves all four ([`PackedI8`]): panels of [`NR`] = 32 columns; inside a
//! panel, for each group of 4 consecutive inputs, 32 columns x 4 bytes (128 bytes). A VNNI
//! step loads the 128 bytes as its two (or four) vectors; an AMX B tile is 16 such groups of
//! 16 columns, read with a 128-byte row stride. `k` is zero-padded to a multiple of 64 (one
//! AMX tile row) and `n` to whole panels.
//!
//! All of them compute exactly the same integers, so their outputs differ only in the last
//! float roundings of the epilogue (and the activation's polynomial).

use super::act::{self, Act};
use super::gemm::{check_args, Epilogue, RowNorm, Split};
use super::norm;
use super::{par_for, Isa, SendPtr};

/// Columns per packed panel.
pub const NR: usize = 32;
/// Inputs per packed row of a panel: what one `vpdpbusd` lane multiplies.
const GROUP: usize = 4;
/// `k` is padded to this (one AMX tile row of bytes).
const K_ALIGN: usize = 64;
/// Rows per register tile of the AVX-512 and portable kernels.
const MR: usize = 12;
/// Rows per register tile of the AVX-VNNI kernel (4 x 3 accumulators of 16 registers).
const MR_AVX2: usize = 3;
/// Rows per step of the AMX kernel (two tiles of 16).
const MR_AMX: usize = 32;

/// Which int8 kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 with AVX-VNNI (`vpdpbusd` on `ymm`).
    AvxVnni,
    /// AVX-512 F/BW/DQ/VL with AVX512-VNNI (`vpdpbusd` on `zmm`).
    Avx512Vnni,
    /// AMX-INT8 tiles (`tdpbusd`), AVX-512 for the epilogue.
    Amx,
}

impl Int8Isa {
    /// Every kernel, best first.
    pub const ALL: [Int8Isa; 4] = [
        Int8Isa::Amx,
        Int8Isa::Avx512Vnni,
        Int8Isa::AvxVnni,
        Int8Isa::Portable,
    ];

    /// The best kernel this CPU runs.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Int8Isa::Portable)
    }

    /// Whether this CPU (and OS, for AMX) runs `self`.
    pub fn available(self) -> bool {
        match self {
            Int8Isa::Portable => true,
            Int8Isa::AvxVnni => avx_vnni_available(),
            Int8Isa::Avx512Vnni => avx512_vnni_available(),
            Int8Isa::Amx => {
                avx512_vnni_available() && crate::amx::available(crate::amx::Unit::Int8)
            }
        }
    }

    /// `self` where it runs, else the portable kernel: what a product given `self` runs.
    pub fn or_portable(self) -> Self {
        if self.available() {
            self
        } else {
            Int8Isa::Portable
        }
    }

    /// The name (`portable`, `avx-vnni`, `avx512-vnni`, `amx`).
    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::Portable => "portable",
            Int8Isa::AvxVnni => "avx-vnni",
            Int8Isa::Avx512Vnni => "avx512-vnni",
            Int8Isa::Amx => "amx",
        }
    }

    /// The kernel named `name` (as [`Int8Isa::name`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The fp32 kernels' instruction set next to this one (for activations and LayerNorm).
    pub fn fp32_isa(self) -> Isa {
        match self {
            Int8Isa::Avx512Vnni | Int8Isa::Amx => Isa::Avx512,
            Int8Isa::AvxVnni | Int8Isa::Portable => Isa::Portable,
        }
    }

    fn mr(self) -> usize {
        match self {
            Int8Isa::Amx => MR_AMX,
            Int8Isa::AvxVnni => MR_AVX2,
            Int8Isa::Avx512Vnni | Int8Isa::Portable => MR,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_vnni_available() -> bool {
    Isa::Avx512.available() && std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(target_arch = "x86_64")]
fn avx_vnni_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("avxvnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_vnni_available() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn avx_vnni_available() -> bool {
    false
}

/// Symmetric int8 quantization of one row: the scale `max|x| / 127` and the multiplier
/// `127 / max|x|` (both 0 for an all-zero row).
fn row_scale(x: &[f32]) -> (f32, f32) {
    scale_of_max(crate::reduce::max_abs16(x))
}

/// [`row_scale`] from the row's largest magnitude.
fn scale_of_max(max: f32) -> (f32, f32) {
    if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (0.0, 0.0)
    }
}

/// `round(x * inv)` to nearest even, as `vcvtps2dq` rounds.
#[inline(always)]
fn quantize(x: f32, inv: f32) -> i32 {
    (x * inv).round_ties_even().clamp(-127.0, 127.0) as i32
}

/// The weight `W[n, k]` as the right-hand side `B = W^T`, quantized per output channel.
#[derive(Clone, Debug, Default)]
pub struct PackedI8 {
    k: usize,
    n: usize,
    /// `k` padded to [`K_ALIGN`].
    kp: usize,
    /// Panels of `kp / 4` groups x 32 columns x 4 bytes.
    data: Vec<i8>,
    /// Per column (padded to whole panels with 0): the weight scale `s_j`.
    scale: Vec<f32>,
    /// Per column (padded): `128 * sum_k q[k][j]`, the unsigned shift's share.
    shift: Vec<i32>,
}

impl PackedI8 {
    /// Quantizes and packs `W[n, k]` (PyTorch's `[out, in]`).
    ///
    /// # Panics
    /// If `w` holds fewer than `n * k` values.
    pub fn from_weight(w: &[f32], n: usize, k: usize) -> Self {
        assert!(w.len() >= n * k, "int8 pack: source too short");
        let kp = k.div_ceil(K_ALIGN) * K_ALIGN;
        let np = n.div_ceil(NR) * NR;
        let mut p = Self {
            k,
            n,
            kp,
            data: vec![0; np * kp],
            scale: vec![0.0; np],
            shift: vec![0; np],
        };
        for col in 0..n {
            let row = &w[col * k..(col + 1) * k];
            let (s, inv) = row_scale(row);
            p.scale[col] = s;
            let (panel, j) = (col / NR, col % NR);
            let mut sum = 0i32;
            for (kk, &v) in row.iter().enumerate() {
                let q = quantize(v, inv);
                sum += q;
                p.data[panel * kp * NR + (kk / GROUP) * NR * GROUP + j * GROUP + kk % GROUP] =
                    q as i8;
            }
            p.shift[col] = 128 * sum;
        }
        p
    }

    /// Rows of `B` (the weight's input width).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B` (the weight's output width).
    pub fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// The weight the products use, `q * s_j`, as `W'[n, k]` (for references and tests).
    pub fn dequantized(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.n * self.k];
        for col in 0..self.n {
            let (panel, j) = (col / NR, col % NR);
            for kk in 0..self.k {
                let q = self.data
                    [panel * self.kp * NR + (kk / GROUP) * NR * GROUP + j * GROUP + kk % GROUP];
                w[col * self.k + kk] = q as f32 * self.scale[col];
            }
        }
        w
    }
}

/// A left-hand side quantized per row: `m` rows (padded to whole AMX steps) of `kp` bytes.
#[derive(Default)]
struct QuantRows {
    data: Vec<u8>,
    scale: Vec<f32>,
}

/// Rows per parallel quantization task.
const QUANT_ROWS: usize = 64;

impl QuantRows {
    /// Quantizes `A[m, k]` (row stride `lda`) into `kp`-byte rows, `mp` of them; padding
    /// (columns past `k`, rows past `m`) holds the zero point 128.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        isa: Int8Isa,
        m: usize,
        mp: usize,
        a: &[f32],
        lda: usize,
        k: usize,
        kp: usize,
    ) {
        self.data.resize(mp * kp, 128);
        self.scale.resize(mp, 0.0);
        let (dp, sp) = (
            SendPtr(self.data.as_mut_ptr()),
            SendPtr(self.scale.as_mut_ptr()),
        );
        let simd = isa.fp32_isa() == Isa::Avx512 && Isa::Avx512.available();
        let tasks = mp.div_ceil(QUANT_ROWS);
        let work = |t: usize| {
            let rows = t * QUANT_ROWS..((t + 1) * QUANT_ROWS).min(mp);
            // SAFETY: task t writes only rows `rows` of both buffers (disjoint between
            // tasks), inside them (`mp` rows, resized above), which outlive `par_for`.
            let (data, scale) = unsafe {
                (
                    dp.slice_mut(rows.start * kp, rows.len() * kp),
                    sp.slice_mut(rows.start, rows.len()),
                )
            };
            for ((r, out), s) in rows.zip(data.chunks_exact_mut(kp)).zip(scale) {
                if r >= m {
                    out.fill(128);
                    *s = 0.0;
                    continue;
                }
                let x = &a[r * lda..r * lda + k];
                out[k..].fill(128);
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: the CPU has AVX-512 (`simd`); `x` and `out` hold k values.
                    let (scale, inv) = scale_of_max(unsafe { avx512::max_abs(x) });
                    *s = scale;
                    // SAFETY: as above.
                    unsafe { avx512::quantize_row(x, inv, &mut out[..k]) };
                    continue;
                }
                let _ = simd;
                let (scale, inv) = row_scale(x);
                *s = scale;
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (quantize(v, inv) + 128) as u8;
                }
            }
        };
        if m * k < 1 << 16 {
            (0..tasks).for_each(work);
        } else {
            par_for(tasks, work);
        }
    }
}

thread_local! {
    /// The quantized left-hand side of the product running on this thread.
    static QUANT: std::cell::RefCell<QuantRows> = std::cell::RefCell::new(QuantRows::default());
}

/// `C = epilogue(A * B)` with int8 products, split over the rayon pool. `alpha`, bias,
/// activation and accumulation act as for [`super::gemm::gemm`].
///
/// # Panics
/// If a stride is shorter than its row, `a` or `c` is too short for `m` rows, or the bias
/// holds fewer than `n` values.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Int8Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedI8,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
) {
    check_args(m, b.k, b.n, a, lda, c.len(), ldc, ep);
    // SAFETY: C is a live, initialized slice of `c.len()` floats, borrowed mutably.
    unsafe { gemm_with(isa, m, a, lda, b, c.as_mut_ptr(), c.len(), ldc, ep, None) }
}

/// `C = LayerNorm(epilogue(A * B) + residual)` for a contiguous `C[m, n]`; each row block
/// normalizes its rows while they are in cache when it spans every column.
///
/// # Panics
/// As [`gemm`], and if C, the residual or the LayerNorm are not `m x n` / `n` wide.
#[allow(clippy::too_many_arguments)]
pub fn gemm_norm(
    isa: Int8Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedI8,
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
        "int8 gemm_norm: C, residual and LayerNorm must all be {m} x {n}"
    );
    check_args(m, b.k, n, a, lda, c.len(), n, ep);
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

/// The parallel product behind [`gemm`] and [`gemm_norm`]; `check_args` passed.
///
/// # Safety
/// `c` is valid for reads and writes of `clen` floats and no one else accesses them during
/// the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with(
    isa: Int8Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedI8,
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
    let mp = m.div_ceil(MR_AMX) * MR_AMX;
    let run = |q: &mut QuantRows| {
        q.fill(isa, m, mp, a, lda, b.k, b.kp);
        let q = &*q;
        let split = Split::new(m, isa.mr(), b.panels(), b.kp * NR, 2 * m * b.n * b.k);
        let in_block = if split.groups == 1 { post } else { None };
        let cp = SendPtr(c);
        let fisa = isa.fp32_isa();
        split.run(|rows, pans| {
            if rows.is_empty() {
                return;
            }
            let out = Out {
                c: cp.ptr(),
                clen,
                ldc,
            };
            // SAFETY: `check_args` bounded C for all m rows, `isa` is available
            // (`or_portable`), the quantized rows cover `mp >= rows.end` rows of `kp`
            // bytes, and tasks write disjoint (row block, panel group) rectangles of C.
            unsafe { block(isa, rows.clone(), pans.clone(), q, b, out, ep) };
            let (c0, c1) = (pans.start * NR, (pans.end * NR).min(b.n));
            if let Some(act_fn) = ep
                .act
                .filter(|_| isa == Int8Isa::Portable || isa == Int8Isa::AvxVnni)
            {
                for r in rows.clone() {
                    // SAFETY: row r, columns c0..c1 are inside C and this task's, written
                    // by the product above.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(cp.ptr().add(r * ldc + c0), c1 - c0)
                    };
                    act::apply(fisa, act_fn, row);
                }
            }
            if let Some(post) = in_block {
                let span = rows.start * b.n..rows.end * b.n;
                // SAFETY: C is contiguous (`gemm_norm`) and these whole rows are this
                // task's (one column group), all written above.
                let rows_c =
                    unsafe { std::slice::from_raw_parts_mut(cp.ptr().add(span.start), span.len()) };
                norm::add_layer_norm_serial(fisa, rows_c, Some(&post.residual[span]), post.norm);
            }
        });
        if let (Some(post), None) = (post, in_block) {
            // SAFETY: `gemm_norm` passes a contiguous C of `clen` floats, all written by now,
            // and this call has it to itself.
            let c = unsafe { std::slice::from_raw_parts_mut(c, clen) };
            norm::add_layer_norm(fisa, c, Some(post.residual), post.norm);
        }
    };
    QUANT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut q) => run(&mut q),
        Err(_) => run(&mut QuantRows::default()),
    })
}

/// Where a product writes: fp32 C with row stride `ldc` (`clen` floats from `c`).
#[derive(Clone, Copy)]
struct Out {
    c: *mut f32,
    clen: usize,
    ldc: usize,
}

/// One register tile's operands.
struct Tile<'a> {
    /// Groups of 4 inputs (`kp / 4`).
    groups: usize,
    /// First quantized row of A (row stride `lda` bytes).
    a: *const u8,
    lda: usize,
    /// The packed panel (`groups * 128` bytes).
    b: *const i8,
    /// Top-left of the C tile (row stride `ldc`).
    c: *mut f32,
    ldc: usize,
    /// Valid columns in this panel (1..=NR).
    ncols: usize,
    /// This tile's row scales (`mr` values) and the panel's column scales and shifts (32).
    row_scale: &'a [f32],
    col_scale: &'a [f32],
    shift: &'a [i32],
    /// `ncols` values when given.
    bias: Option<&'a [f32]>,
    alpha: f32,
    accumulate: bool,
}

/// Rows `rows` and panels `pans` of C on the calling thread.
///
/// # Safety
/// `isa` is available; `q` holds quantized rows up to `rows.end` (rounded up to the kernel's
/// row step) of `b.kp` bytes; `out` holds the product's rows at stride `ldc` with `check_args`
/// passed, and this rectangle is the caller's alone.
unsafe fn block(
    isa: Int8Isa,
    rows: std::ops::Range<usize>,
    pans: std::ops::Range<usize>,
    q: &QuantRows,
    b: &PackedI8,
    out: Out,
    ep: &Epilogue,
) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if isa == Int8Isa::Amx {
        // SAFETY: the caller's contract; AMX-INT8 and AVX-512 are available.
        unsafe { amx::block(rows, pans, q, b, out, ep) };
        return;
    }
    let mr = isa.mr();
    for r in rows.clone().step_by(mr) {
        let rows_here = mr.min(rows.end - r);
        for p in pans.clone() {
            let c0 = p * NR;
            let ncols = NR.min(b.n - c0);
            let tile = Tile {
                groups: b.kp / GROUP,
                a: q.data[r * b.kp..].as_ptr(),
                lda: b.kp,
                b: b.data[p * b.kp * NR..].as_ptr(),
                c: out.c.wrapping_add(r * out.ldc + c0),
                ldc: out.ldc,
                ncols,
                row_scale: &q.scale[r..r + rows_here],
                col_scale: &b.scale[c0..c0 + NR],
                shift: &b.shift[c0..c0 + NR],
                bias: ep.bias.map(|bias| &bias[c0..c0 + ncols]),
                alpha: ep.alpha,
                accumulate: ep.accumulate,
            };
            debug_assert!(r * out.ldc + c0 + (rows_here - 1) * out.ldc + ncols <= out.clen);
            // SAFETY: the tile's rows of A (inside `q`), its panel (inside `b.data`) and its
            // rectangle of C (inside `out`, the caller's) are in bounds; the ISA is available.
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Int8Isa::Avx512Vnni | Int8Isa::Amx => avx512::tile(rows_here, &tile, ep.act),
                    #[cfg(target_arch = "x86_64")]
                    Int8Isa::AvxVnni => avx2::tile(rows_here, &tile),
                    _ => portable_tile(rows_here, &tile),
                }
            }
        }
    }
}

/// The epilogue of a tile's rows from `i32` accumulators (without the activation, which the
/// caller applies to whole rows): `C (+)= alpha * t_i * s_j * (acc - shift_j) + bias_j`.
///
/// # Safety
/// The `acc.len() x t.ncols` rectangle at `t.c` (stride `t.ldc`) is valid for writes (and
/// reads when accumulating) and accessed by no one else.
#[inline(always)]
unsafe fn finish_rows(acc: &[[i32; NR]], t: &Tile) {
    for (i, row) in acc.iter().enumerate() {
        let rs = t.alpha * t.row_scale[i];
        for (j, &v) in row.iter().enumerate().take(t.ncols) {
            let mut y = (v - t.shift[j]) as f32 * (rs * t.col_scale[j]);
            if let Some(bias) = t.bias {
                y += bias[j];
            }
            // SAFETY: element (i, j) of the rectangle (the contract).
            unsafe {
                let o = t.c.add(i * t.ldc + j);
                *o = if t.accumulate { *o + y } else { y };
            }
        }
    }
}

/// Plain-Rust tile for any CPU.
///
/// # Safety
/// `t.a` holds `mr` rows of `4 * t.groups` bytes at stride `t.lda`, `t.b` holds
/// `t.groups * 128` bytes, and the `mr x t.ncols` rectangle at `t.c` is as
/// [`finish_rows`] needs.
unsafe fn portable_tile(mr: usize, t: &Tile) {
    let mut acc = [[0i32; NR]; MR];
    let kb = t.groups * GROUP;
    // SAFETY: the panel's `groups * 128` bytes (the contract).
    let b = unsafe { std::slice::from_raw_parts(t.b, kb * NR) };
    for (i, row) in acc.iter_mut().enumerate().take(mr) {
        // SAFETY: row i < mr of A, `kb` bytes (the contract).
        let a = unsafe { std::slice::from_raw_parts(t.a.add(i * t.lda), kb) };
        for (a4, b4) in a.chunks_exact(GROUP).zip(b.chunks_exact(GROUP * NR)) {
            for (acc_j, bj) in row.iter_mut().zip(b4.chunks_exact(GROUP)) {
                let mut s = 0i32;
                for (&x, &w) in a4.iter().zip(bj) {
                    s += x as i32 * w as i32;
                }
                *acc_j += s;
            }
        }
    }
    // SAFETY: the contract.
    unsafe { finish_rows(&acc[..mr], t) }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::lane_masks;
    use super::{Act, Tile, MR, NR};
    use crate::act;
    use std::arch::x86_64::*;

    /// `max_i |x_i|`, as [`crate::reduce::max_abs16`]: a NaN lane is ignored (`vmaxps`
    /// returns its second operand, the running maximum, when either is NaN).
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_abs(x: &[f32]) -> f32 {
        let (mut m0, mut m1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut chunks = x.chunks_exact(32);
        for c in &mut chunks {
            // SAFETY: each chunk holds 32 floats.
            unsafe {
                m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())), m0);
                m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(c.as_ptr().add(16))), m1);
            }
        }
        for (half, acc) in chunks.remainder().chunks(16).zip([&mut m0, &mut m1]) {
            let mask = ((1u32 << half.len()) - 1) as u16;
            // SAFETY: the mask selects the `half.len()` (1..=16) floats of `half`.
            let v = unsafe { _mm512_maskz_loadu_ps(mask, half.as_ptr()) };
            *acc = _mm512_max_ps(_mm512_abs_ps(v), *acc);
        }
        _mm512_reduce_max_ps(_mm512_max_ps(m0, m1))
    }

    /// `out[i] = round(x[i] * inv) + 128` as bytes.
    ///
    /// # Safety
    /// The CPU supports AVX-512F/BW; `out` holds at least `x.len()` bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_row(x: &[f32], inv: f32, out: &mut [u8]) {
        let n = x.len();
        debug_assert!(out.len() >= n);
        let (vinv, shift) = (_mm512_set1_ps(inv), _mm512_set1_epi32(128));
        let mut i = 0;
        while i < n {
            let left = n - i;
            let mask: __mmask16 = if left >= 16 {
                0xFFFF
            } else {
                ((1u32 << left) - 1) as u16
            };
            // SAFETY: the mask selects lanes i..min(i + 16, n) of `x` and of `out` (the
            // contract); masked-off lanes are neither read nor written.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
                // Round to nearest even (the default rounding mode), as the portable form.
                let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), shift);
                _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i) as *mut i8, mask, q);
            }
            i += 16;
        }
    }

    /// Dispatches to the tile specialized for `mr` rows (1..=12).
    ///
    /// # Safety
    /// The CPU supports AVX-512F/BW/DQ and AVX512-VNNI, and `t` describes memory as for
    /// [`super::portable_tile`].
    pub(super) unsafe fn tile(mr: usize, t: &Tile, act: Option<Act>) {
        debug_assert!((1..=MR).contains(&mr));
        // SAFETY: the caller's contract is each kernel's.
        unsafe {
            match mr {
                12 => kernel::<12>(t, act),
                11 => kernel::<11>(t, act),
                10 => kernel::<10>(t, act),
                9 => kernel::<9>(t, act),
                8 => kernel::<8>(t, act),
                7 => kernel::<7>(t, act),
                6 => kernel::<6>(t, act),
                5 => kernel::<5>(t, act),
                4 => kernel::<4>(t, act),
                3 => kernel::<3>(t, act),
                2 => kernel::<2>(t, act),
                _ => kernel::<1>(t, act),
            }
        }
    }

    /// The `R x 32` register tile: per group of 4 inputs, two 64-byte panel loads, `R`
    /// broadcasts of 4 bytes of A, `2R` `vpdpbusd`.
    ///
    /// # Safety
    /// As [`tile`], with `mr == R`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,fma")]
    unsafe fn kernel<const R: usize>(t: &Tile, act: Option<Act>) {
        let mut lo = [_mm512_setzero_si512(); R];
        let mut hi = [_mm512_setzero_si512(); R];
        let mut rows = [t.a; R];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = t.a.wrapping_add(i * t.lda);
        }
        let mut b = t.b;
        // SAFETY: (the k loop) every load reads A at row i < R, byte < 4 * groups, and the
        // panel inside its groups * 128 bytes (the contract); `groups` is a multiple of 16,
        // so the loop unrolled by 4 ends exactly.
        unsafe {
            macro_rules! step {
                ($u:expr) => {{
                    let bu = b.add($u * NR * 4);
                    let b0 = _mm512_loadu_si512(bu as *const __m512i);
                    let b1 = _mm512_loadu_si512(bu.add(64) as *const __m512i);
                    for i in 0..R {
                        let av =
                            _mm512_set1_epi32((rows[i].add($u * 4) as *const i32).read_unaligned());
                        lo[i] = _mm512_dpbusd_epi32(lo[i], av, b0);
                        hi[i] = _mm512_dpbusd_epi32(hi[i], av, b1);
                    }
                }};
            }
            let mut left = t.groups;
            while left >= 4 {
                step!(0);
                step!(1);
                step!(2);
                step!(3);
                for r in rows.iter_mut() {
                    *r = r.add(16);
                }
                b = b.add(4 * NR * 4);
                left -= 4;
            }
        }
        // SAFETY: the contract (AVX-512, this tile's rectangle).
        unsafe { epilogue(&lo, &hi, t, act) }
    }

    /// The epilogue of `R` rows held as two 16-lane `i32` halves each, with the activation
    /// in registers.
    ///
    /// # Safety
    /// The CPU supports AVX-512F/DQ; the `R x t.ncols` rectangle at `t.c` is valid for writes
    /// (and reads when accumulating) and accessed by no one else; `t.row_scale` holds `R`
    /// values.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn epilogue<const R: usize>(
        lo: &[__m512i; R],
        hi: &[__m512i; R],
        t: &Tile,
        act: Option<Act>,
    ) {
        let (m_lo, m_hi) = lane_masks(t.ncols);
        // SAFETY: the column scales and shifts hold 32 values (whole panels are padded); the
        // masks cover only the bias's `ncols` values.
        let (cs_lo, cs_hi, sh_lo, sh_hi, bias_lo, bias_hi) = unsafe {
            let (bias_lo, bias_hi) = match t.bias {
                Some(bias) => (
                    _mm512_maskz_loadu_ps(m_lo, bias.as_ptr()),
                    _mm512_maskz_loadu_ps(m_hi, bias.as_ptr().wrapping_add(16)),
                ),
                None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            };
            (
                _mm512_loadu_ps(t.col_scale.as_ptr()),
                _mm512_loadu_ps(t.col_scale.as_ptr().add(16)),
                _mm512_loadu_si512(t.shift.as_ptr() as *const __m512i),
                _mm512_loadu_si512(t.shift.as_ptr().add(16) as *const __m512i),
                bias_lo,
                bias_hi,
            )
        };
        let f = |v: __m512| match act {
            Some(Act::GeluErf) => act::avx512::gelu_erf(v),
            Some(Act::GeluTanh) => act::avx512::gelu_tanh(v),
            Some(Act::Relu) => _mm512_max_ps(v, _mm512_setzero_ps()),
            None => v,
        };
        for i in 0..R {
            let rs = _mm512_set1_ps(t.alpha * t.row_scale[i]);
            let x0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo[i], sh_lo));
            let x1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi[i], sh_hi));
            let v0 = f(_mm512_fmadd_ps(x0, _mm512_mul_ps(rs, cs_lo), bias_lo));
            let v1 = f(_mm512_fmadd_ps(x1, _mm512_mul_ps(rs, cs_hi), bias_hi));
            let c = t.c.wrapping_add(i * t.ldc);
            // SAFETY: the masks cover row i's `ncols` values of the rectangle (the contract);
            // masked-off addresses may lie past the end, hence `wrapping_add`.
            unsafe {
                let (mut v0, mut v1) = (v0, v1);
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{finish_rows, Tile, MR_AVX2, NR};
    use std::arch::x86_64::*;

    /// Dispatches to the tile specialized for `mr` rows (1..=3).
    ///
    /// # Safety
    /// The CPU supports AVX2 and AVX-VNNI, and `t` describes memory as for
    /// [`super::portable_tile`].
    pub(super) unsafe fn tile(mr: usize, t: &Tile) {
        debug_assert!((1..=MR_AVX2).contains(&mr));
        // SAFETY: the caller's contract is each kernel's.
        unsafe {
            match mr {
                3 => kernel::<3>(t),
                2 => kernel::<2>(t),
                _ => kernel::<1>(t),
            }
        }
    }

    /// The `R x 32` tile on 256-bit registers: four accumulators per row, the panel read
    /// as memory operands; the epilogue is [`finish_rows`] (the activation follows per row).
    ///
    /// # Safety
    /// As [`tile`], with `mr == R`.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn kernel<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_si256(); 4]; R];
        // SAFETY: every load reads A at row i < R, byte < 4 * groups, and the panel inside
        // its groups * 128 bytes (the contract).
        unsafe {
            for g in 0..t.groups {
                let bg = t.b.add(g * NR * 4) as *const __m256i;
                let bv = [
                    _mm256_loadu_si256(bg),
                    _mm256_loadu_si256(bg.add(1)),
                    _mm256_loadu_si256(bg.add(2)),
                    _mm256_loadu_si256(bg.add(3)),
                ];
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_epi32(
                        (t.a.add(i * t.lda + g * 4) as *const i32).read_unaligned(),
                    );
                    for (a, &b) in row.iter_mut().zip(&bv) {
                        *a = _mm256_dpbusd_avx_epi32(*a, av, b);
                    }
                }
            }
        }
        let mut out = [[0i32; NR]; R];
        for (o, row) in out.iter_mut().zip(&acc) {
            for (q, v) in row.iter().enumerate() {
                // SAFETY: 8 lanes into this row's 32 values.
                unsafe { _mm256_storeu_si256(o.as_mut_ptr().add(8 * q) as *mut __m256i, *v) };
            }
        }
        // SAFETY: the contract.
        unsafe { finish_rows(&out, t) }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use super::super::gemm::Epilogue;
    use super::{avx512, block_tile, Out, PackedI8, QuantRows, NR};
    use crate::amx::prefetch_tile;
    use std::arch::asm;
    use std::arch::x86_64::*;

    #[repr(C, align(64))]
    struct Accumulators([i32; 32 * 32]);

    /// Rows `rows` (whole 32-row steps of the padded A) and panels `pans` of C: per 32 rows
    /// and panel, 2 x 2 tiles of 16 x 16 `i32` accumulators, each k chunk of 64 inputs one
    /// `tdpbusd` per tile (A tiles straight from the quantized rows, stride `kp`; B tiles
    /// from the panel, stride 128), then the AVX-512 epilogue.
    ///
    /// # Safety
    /// AMX-INT8 (tile permission granted) and AVX-512 VNNI are available; `q` holds the
    /// quantized rows up to `rows.end` rounded up to 32 (`QuantRows::fill` pads to whole
    /// 32-row steps); `out` holds the product's rows with `check_args` passed, and this
    /// rectangle is the caller's alone.
    pub(super) unsafe fn block(
        rows: std::ops::Range<usize>,
        pans: std::ops::Range<usize>,
        q: &QuantRows,
        b: &PackedI8,
        out: Out,
        ep: &Epilogue,
    ) {
        let kp = b.kp;
        let kchunks = kp / 64;
        let mut tmp = Accumulators([0; 32 * 32]);
        // SAFETY: the tile configuration is a valid palette-1 layout; every tile load reads
        // inside `q.data` (rows r0..r0 + 32 <= the padded row count, bytes < kp) or the panel
        // (16 groups x 128 bytes per k chunk, chunks < kchunks); prefetches are hints that
        // never fault; the stores go to `tmp`; only this function touches the tile
        // registers, from `ldtilecfg` to `tilerelease`.
        unsafe {
            let cfg = crate::amx::config();
            asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack));
            let mut r0 = rows.start;
            while r0 < rows.end {
                let a0 = q.data.as_ptr().add(r0 * kp);
                let a1 = q.data.as_ptr().add((r0 + 16) * kp);
                for p in pans.clone() {
                    let panel = b.data.as_ptr().add(p * kp * NR);
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack)
                    );
                    for kc in 0..kchunks {
                        let b0 = panel.add(kc * 16 * NR * 4);
                        prefetch_tile(b0.wrapping_add(16 * NR * 4), 64);
                        prefetch_tile(b0.wrapping_add(16 * NR * 4 + 1024), 64);
                        prefetch_tile(a0.wrapping_add((kc + 1) * 64), kp);
                        prefetch_tile(a1.wrapping_add((kc + 1) * 64), kp);
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tdpbusd tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbusd tmm1, tmm4, tmm7",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tdpbusd tmm2, tmm5, tmm6",
                            "tdpbusd tmm3, tmm5, tmm7",
                            a0 = in(reg) a0.add(kc * 64),
                            a1 = in(reg) a1.add(kc * 64),
                            b0 = in(reg) b0,
                            b1 = in(reg) b0.add(64),
                            sa = in(reg) kp,
                            sb = in(reg) NR * 4,
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
                    let valid = 32.min(rows.end - r0);
                    for i0 in (0..valid).step_by(8) {
                        let n_rows = 8.min(valid - i0);
                        let mut lo = [_mm512_setzero_si512(); 8];
                        let mut hi = [_mm512_setzero_si512(); 8];
                        for i in 0..n_rows {
                            let row = tmp.0.as_ptr().add((i0 + i) * 32);
                            lo[i] = _mm512_loadu_si512(row as *const __m512i);
                            hi[i] = _mm512_loadu_si512(row.add(16) as *const __m512i);
                        }
                        let tile = block_tile(r0 + i0, n_rows, p, q, b, out, ep);
                        // Rows past `n_rows` in `lo`/`hi` are zeros the epilogue of `n_rows`
                        // rows never reaches.
                        match n_rows {
                            8 => avx512::epilogue::<8>(&lo, &hi, &tile, ep.act),
                            _ => {
                                for i in 0..n_rows {
                                    let one = block_tile(r0 + i0 + i, 1, p, q, b, out, ep);
                                    avx512::epilogue::<1>(&[lo[i]], &[hi[i]], &one, ep.act);
                                }
                            }
                        }
                    }
                }
                r0 += 32;
            }
            asm!("tilerelease", options(nostack));
        }
    }
}

/// The [`Tile`] of rows `r..r + rows` and panel `p` for an epilogue (no A or B: the
/// products are done).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn block_tile<'a>(
    r: usize,
    rows: usize,
    p: usize,
    q: &'a QuantRows,
    b: &'a PackedI8,
    out: Out,
    ep: &Epilogue<'a>,
) -> Tile<'a> {
    let c0 = p * NR;
    let ncols = NR.min(b.n - c0);
    Tile {
        groups: 0,
        a: std::ptr::null(),
        lda: 0,
        b: std::ptr::null(),
        c: out.c.wrapping_add(r * out.ldc + c0),
        ldc: out.ldc,
        ncols,
        row_scale: &q.scale[r..r + rows],
        col_scale: &b.scale[c0..c0 + NR],
        shift: &b.shift[c0..c0 + NR],
        bias: ep.bias.map(|bias| &bias[c0..c0 + ncols]),
        alpha: ep.alpha,
        accumulate: ep.accumulate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norm::Norm;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / (1u32 << 24) as f32
                    - 0.5
            })
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_max_abs_agrees_with_the_portable_scan() {
        if !Isa::Avx512.available() {
            return;
        }
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 384, 1537] {
            let mut x = data(len, 7);
            // SAFETY: AVX-512 is available (checked above).
            let fast = |x: &[f32]| unsafe { avx512::max_abs(x) };
            assert_eq!(fast(&x), crate::reduce::max_abs16(&x), "len {len}");
            if len > 1 {
                x[len - 1] = -3.0;
                x[len / 2] = f32::NAN;
                assert_eq!(fast(&x), 3.0, "len {len} with a NaN");
            }
        }
    }

    /// The product straight from the definition: quantize each row of A, multiply the
    /// integers in i64, rescale; then alpha, bias and the scalar activation.
    fn reference(m: usize, k: usize, a: &[f32], b: &PackedI8, ep: &Epilogue) -> Vec<f32> {
        let n = b.n;
        let w = b.dequantized();
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            let row = &a[i * k..(i + 1) * k];
            let (s, inv) = row_scale(row);
            let qa: Vec<f64> = row
                .iter()
                .map(|&x| quantize(x, inv) as f64 * s as f64)
                .collect();
            for j in 0..n {
                let dot: f64 = (0..k).map(|kk| qa[kk] * w[j * k + kk] as f64).sum();
                let mut v = ep.alpha as f64 * dot + ep.bias.map_or(0.0, |bias| bias[j] as f64);
                v = match ep.act {
                    Some(Act::GeluErf) => act::gelu_erf(v as f32) as f64,
                    Some(Act::GeluTanh) => act::gelu_tanh(v as f32) as f64,
                    Some(Act::Relu) => v.max(0.0),
                    None => v,
                };
                c[i * n + j] = v as f32;
            }
        }
        c
    }

    fn available() -> Vec<Int8Isa> {
        let all: Vec<Int8Isa> = Int8Isa::ALL.into_iter().filter(|i| i.available()).collect();
        for isa in Int8Isa::ALL {
            if !isa.available() {
                crate::report_skip(&format!(
                    "int8 kernel {}: this CPU (or OS) lacks it",
                    isa.name()
                ));
            }
        }
        all
    }

    #[test]
    fn weights_quantize_per_output_channel() {
        let (n, k) = (3, 5);
        let w = [
            0.5, -1.0, 0.25, 0.0, 1.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, //
            100.0, -50.0, 25.0, 1.0, -100.0,
        ];
        let p = PackedI8::from_weight(&w, n, k);
        assert_eq!(p.scale[..3], [1.0 / 127.0, 0.0, 100.0 / 127.0]);
        let d = p.dequantized();
        for (x, y) in d.iter().zip(&w) {
            // Half a step of the row's scale at most.
            assert!((x - y).abs() <= 0.5 * 100.0 / 127.0 + 1e-6, "{x} vs {y}");
        }
        assert_eq!(d[5..10], [0.0; 5]);
        // The extremes are exact: +-127 times the scale.
        assert_eq!(d[10], 100.0);
        assert_eq!(d[14], -100.0);
    }

    #[test]
    fn every_kernel_gives_hand_computed_products() {
        // Row 0 and both weight rows have max |x| = 127, so every scale is exactly 1 and the
        // quantized values are the inputs: the results are exact integers.
        //   C[0,0] = 127*127 + (-64)*1 + 1*(-2) + 0*3 = 16063, + bias 0.5
        //   C[0,1] = 127*0 + (-64)*(-127) + 1*10 + 0*5 = 8138, - bias 1
        // Row 1 has max 0.5: t = 0.5/127, q = [127, 64 (63.5 to even), -127, 0]:
        //   C[1,0] = (127*127 + 64*1 + (-127)*(-2)) * 0.5/127 = 16447/254, + 0.5
        //   C[1,1] = (64*(-127) + (-127)*10) * 0.5/127 = -9398/254 = -37, - 1;
        //   ReLU then gives 0 there.
        let a = [127.0, -64.0, 1.0, 0.0, 0.5, 0.25, -0.5, 0.0];
        let w = [127.0, 1.0, -2.0, 3.0, 0.0, -127.0, 10.0, 5.0];
        let bias = [0.5, -1.0];
        let packed = PackedI8::from_weight(&w, 2, 4);
        let plain = Epilogue::bias(&bias);
        let relu = Epilogue {
            act: Some(Act::Relu),
            ..Epilogue::bias(&bias)
        };
        let want = [16063.5, 8137.0, 16447.0 / 254.0 + 0.5, -38.0];
        for isa in available() {
            let mut c = [f32::NAN; 4];
            gemm(isa, 2, &a, 4, &packed, &mut c, 2, &plain);
            assert_eq!(c[..2], want[..2], "{}: exact row", isa.name());
            for (x, y) in c.iter().zip(&want).skip(2) {
                assert!((x - y).abs() < 1e-4, "{}: {x} vs {y}", isa.name());
            }
            gemm(isa, 2, &a, 4, &packed, &mut c, 2, &relu);
            assert_eq!(c[3], 0.0, "{}: ReLU", isa.name());
        }
        // The largest sums: k = 4096 products of 127 * 127 (plus the shift's 128 * 127 each)
        // stay inside i32; ones times ones give k.
        let k = 4096;
        let packed = PackedI8::from_weight(&vec![1.0; 3 * k], 3, k);
        for isa in available() {
            let mut c = [0.0f32; 6];
            gemm(
                isa,
                2,
                &vec![1.0; 2 * k],
                k,
                &packed,
                &mut c,
                3,
                &Epilogue::default(),
            );
            for x in c {
                assert!((x - k as f32).abs() < 1e-3, "{}: {x} vs {k}", isa.name());
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_integer_reference() {
        let isas = available();
        // Shapes: partial panels, k not a multiple of 4 or 64, row counts around every
        // kernel's step, a product split into column groups, and one with several blocks.
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (33, 70, 40),
            (100, 384, 96),
            (5, 384, 64),
            (70, 1536, 100),
        ] {
            let a = data(m * k, 1);
            let w = data(n * k, 2);
            let bias = data(n, 3);
            let packed = PackedI8::from_weight(&w, n, k);
            for act_fn in [None, Some(Act::GeluErf), Some(Act::Relu)] {
                let ep = Epilogue {
                    alpha: 0.5,
                    bias: Some(&bias),
                    act: act_fn,
                    accumulate: false,
                };
                let want = reference(m, k, &a, &packed, &ep);
                for &isa in &isas {
                    let mut c = vec![f32::NAN; m * n];
                    gemm(isa, m, &a, k, &packed, &mut c, n, &ep);
                    for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                        assert!(
                            (x - y).abs() < 1e-4 * (1.0 + y.abs()),
                            "{} {m}x{k}x{n} {act_fn:?} [{i}]: {x} vs {y}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strided_accumulating_products_leave_other_columns_alone() {
        let (m, k, n, lda, ldc) = (29, 100, 45, 107, 50);
        let a = data(m * lda, 4);
        let w = data(n * k, 5);
        let packed = PackedI8::from_weight(&w, n, k);
        let dense: Vec<f32> = (0..m * k).map(|i| a[(i / k) * lda + i % k]).collect();
        let want = reference(m, k, &dense, &packed, &Epilogue::default());
        for isa in available() {
            let mut c = vec![1.0f32; m * ldc];
            let ep = Epilogue {
                accumulate: true,
                ..Epilogue::default()
            };
            gemm(isa, m, &a, lda, &packed, &mut c, ldc, &ep);
            for i in 0..m {
                for j in 0..ldc {
                    let got = c[i * ldc + j];
                    let exp = if j < n { want[i * n + j] + 1.0 } else { 1.0 };
                    assert!(
                        (got - exp).abs() < 1e-4,
                        "{} {i},{j}: {got} vs {exp}",
                        isa.name()
                    );
                }
            }
        }
    }

    #[test]
    fn int8_error_against_fp32_is_within_the_quantization_bound() {
        // The quantized product differs from the fp32 one by at most (per element)
        // sum_k |a||dw| + |da||w| + |da||dw|, with |da| <= t_i / 2 and |dw| <= s_j / 2.
        let (m, k, n) = (20, 384, 50);
        let a = data(m * k, 6);
        let w = data(n * k, 7);
        let packed = PackedI8::from_weight(&w, n, k);
        let mut got = vec![0.0; m * n];
        gemm(
            Int8Isa::detect(),
            m,
            &a,
            k,
            &packed,
            &mut got,
            n,
            &Epilogue::default(),
        );
        for i in 0..m {
            let row = &a[i * k..(i + 1) * k];
            let (t, _) = row_scale(row);
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                let (s, _) = row_scale(wr);
                let exact: f32 = row.iter().zip(wr).map(|(x, y)| x * y).sum();
                let bound: f32 = row
                    .iter()
                    .zip(wr)
                    .map(|(x, y)| x.abs() * s / 2.0 + t / 2.0 * y.abs() + t * s / 4.0)
                    .sum();
                let d = (got[i * n + j] - exact).abs();
                assert!(d <= bound * 1.001 + 1e-5, "[{i},{j}]: {d} > {bound}");
            }
        }
    }

    #[test]
    fn fused_layer_norm_matches_product_then_norm() {
        for &(m, k, n, threads) in &[(30, 20, 40, 1), (200, 64, 100, 4)] {
            let (a, w, bias) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            let residual = data(m * n, 4);
            let ln = Norm {
                gamma: data(n, 5).iter().map(|g| 1.0 + g).collect(),
                beta: data(n, 6),
                eps: 1e-5,
            };
            let packed = PackedI8::from_weight(&w, n, k);
            let ep = Epilogue::bias(&bias);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for isa in available() {
                let mut want = vec![0.0; m * n];
                pool.install(|| gemm(isa, m, &a, k, &packed, &mut want, n, &ep));
                norm::add_layer_norm(Isa::Portable, &mut want, Some(&residual), &ln);
                let mut got = vec![f32::NAN; m * n];
                let post = RowNorm {
                    norm: &ln,
                    residual: &residual,
                };
                pool.install(|| gemm_norm(isa, m, &a, k, &packed, &mut got, &ep, post));
                for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "{} {m}x{n} [{i}]: {x} vs {y}",
                        isa.name()
                    );
                }
            }
        }
    }

    #[test]
    fn simd_quantization_equals_the_scalar_form() {
        if !Isa::Avx512.available() {
            crate::report_skip("int8 AVX-512 quantizer: this CPU lacks AVX-512");
            return;
        }
        let (m, k) = (40, 77);
        let mut a = data(m * k, 9);
        a[5] = 0.0; // ties and exact values
        a[k + 3] = 2.5 * a[k..2 * k].iter().fold(0.0f32, |x, v| x.max(v.abs())) / 127.0;
        let (mut simd, mut plain) = (QuantRows::default(), QuantRows::default());
        simd.fill(Int8Isa::Avx512Vnni, m, 64, &a, k, k, 128);
        plain.fill(Int8Isa::Portable, m, 64, &a, k, k, 128);
        assert_eq!(simd.data, plain.data);
        assert_eq!(simd.scale, plain.scale);
        assert!(plain.data[..k].iter().all(|&b| b >= 1));
    }

    #[test]
    fn names_round_trip_and_detection_is_available() {
        for isa in Int8Isa::ALL {
            assert_eq!(Int8Isa::parse(isa.name()), Some(isa));
        }
        assert!(Int8Isa::detect().available());
        assert_eq!(Int8Isa::parse("sse"), None);
    }
}
