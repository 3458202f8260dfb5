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
use super::{act, par_for, Isa, SendPtr};

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

#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Whether the AMX-BF16 kernels can run here (checked once; asks Linux for tile permission).
pub fn amx_available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| Isa::detect() == Isa::Avx512 && amx::request())
}

/// Weights `W[n, k]` as the right-hand side `B = W^T`, in bf16.
pub struct PackedBf16 {
    k: usize,
    n: usize,
    repr: Repr,
}

enum Repr {
    /// AMX tiles: `[n / 32 * 2 col blocks][k / 32 chunks][16 rows][16 cols][2]`.
    Amx {
        tiles: Vec<u16>,
        kp: usize,
        np: usize,
    },
    /// bf16-rounded weights widened to fp32 for the fp32 kernels (CPUs without AMX).
    Widened(PackedB),
}

impl PackedBf16 {
    pub fn from_weight(w: &[f32], n: usize, k: usize, isa: Isa) -> Self {
        assert!(w.len() >= n * k, "bf16 pack: source too short");
        if !amx_available() {
            let rounded: Vec<f32> = w[..n * k].iter().map(|&v| from_bf16(to_bf16(v))).collect();
            let _ = isa;
            return Self {
                k,
                n,
                repr: Repr::Widened(PackedB::from_weight(&rounded, n, k)),
            };
        }
        let kp = k.div_ceil(32) * 32;
        let np = n.div_ceil(32) * 32;
        let kchunks = kp / 32;
        let mut tiles = vec![0u16; np * kp];
        for col in 0..n {
            let (nb, j) = (col / 16, col % 16);
            for kk in 0..k {
                let (kc, within) = (kk / 32, kk % 32);
                let (p, half) = (within / 2, within % 2);
                tiles[((nb * kchunks + kc) * 16 + p) * 32 + j * 2 + half] =
                    to_bf16(w[col * k + kk]);
            }
        }
        Self {
            k,
            n,
            repr: Repr::Amx { tiles, kp, np },
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether this matrix runs on AMX.
    pub fn is_amx(&self) -> bool {
        matches!(self.repr, Repr::Amx { .. })
    }
}

/// `C = epilogue(A * B)` with bf16 products, split over the rayon pool.
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
        Repr::Amx { tiles, kp, np } => (tiles, *kp, *np),
    };
    let (k, n) = (b.k, b.n);
    assert!(lda >= k && ldc >= n, "bf16 gemm: stride shorter than a row");
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k, "bf16 gemm: A too short");
    assert!(c.len() >= (m - 1) * ldc + n, "bf16 gemm: C too short");
    if let Some(bias) = ep.bias {
        assert!(bias.len() >= n, "bf16 gemm: bias too short");
    }
    // A in bf16, rows padded to a multiple of 32 and columns to kp (zeros), in a per-thread
    // buffer reused across calls (a fresh one if this thread's is in use by an outer call).
    let mp = m.div_ceil(32) * 32;
    A16.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run_amx(
            isa, m, k, n, mp, kp, np, a, lda, tiles, c, ldc, ep, &mut buf,
        ),
        Err(_) => run_amx(
            isa,
            m,
            k,
            n,
            mp,
            kp,
            np,
            a,
            lda,
            tiles,
            c,
            ldc,
            ep,
            &mut Vec::new(),
        ),
    })
}

thread_local! {
    static A16: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[allow(clippy::too_many_arguments)]
fn run_amx(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    mp: usize,
    kp: usize,
    np: usize,
    a: &[f32],
    lda: usize,
    tiles: &[u16],
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    a16: &mut Vec<u16>,
) {
    if a16.len() < mp * kp {
        a16.resize(mp * kp, 0);
    }
    let a16 = &mut a16[..mp * kp];
    // Zero the padding (the buffer may hold an earlier call's values).
    if kp > k {
        for row in a16[..m * kp].chunks_exact_mut(kp) {
            row[k..].fill(0);
        }
    }
    a16[m * kp..].fill(0);
    convert_rows(m, k, a, lda, a16, kp);

    const ROWS_PER_TASK: usize = 96;
    let row_tasks = mp.div_ceil(ROWS_PER_TASK);
    let col_blocks = np / 32;
    let threads = rayon::current_num_threads();
    let groups = if threads <= 1 {
        1
    } else {
        (4 * threads).div_ceil(row_tasks).clamp(1, col_blocks)
    };
    let per_group = col_blocks.div_ceil(groups);
    let groups = col_blocks.div_ceil(per_group);
    let cp = SendPtr(c.as_mut_ptr());
    let clen = c.len();
    let a16 = &*a16;
    par_for(row_tasks * groups, |t| {
        let (rt, g) = (t / groups, t % groups);
        let rows = rt * ROWS_PER_TASK..((rt + 1) * ROWS_PER_TASK).min(mp);
        let cols = g * per_group..((g + 1) * per_group).min(col_blocks);
        let c = cp;
        // SAFETY: AMX is available (checked when packing); tasks write disjoint rectangles
        // of C inside the bounds checked above.
        unsafe {
            amx::block(rows, cols, m, n, kp, a16, tiles, c.0, clen, ldc, ep);
        }
        if let Some(act_fn) = ep.act {
            let (r0, r1) = (rt * ROWS_PER_TASK, ((rt + 1) * ROWS_PER_TASK).min(m));
            let (c0, c1) = (g * per_group * 32, ((g + 1) * per_group * 32).min(n));
            for r in r0..r1 {
                // SAFETY: row r, columns c0..c1 belong to this task.
                let row = unsafe { std::slice::from_raw_parts_mut(c.0.add(r * ldc + c0), c1 - c0) };
                act::apply(isa, act_fn, row);
            }
        }
    });
}

/// `dst[r][0..k] = bf16(src[r][0..k])` for `m` rows (the padding stays zero).
fn convert_rows(m: usize, k: usize, src: &[f32], lda: usize, dst: &mut [u16], kp: usize) {
    super::multiversion!(Isa::detect(), convert_avx512, (m: usize, k: usize, src: &[f32], lda: usize, dst: &mut [u16], kp: usize) {
        for r in 0..m {
            for (d, &s) in dst[r * kp..r * kp + k].iter_mut().zip(&src[r * lda..r * lda + k]) {
                *d = to_bf16(s);
            }
        }
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use super::super::gemm::Epilogue;
    use std::arch::asm;

    /// CPUID bits for AMX-BF16 and AMX-TILE, then Linux's permission for tile data.
    pub(super) fn request() -> bool {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let (bf16, tile) = ((leaf7.edx >> 22) & 1 == 1, (leaf7.edx >> 24) & 1 == 1);
        if !(bf16 && tile) {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) only changes this process's
        // permission to use AMX state; it clobbers rcx and r11 like every syscall.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
                 in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// Palette 1, all eight tiles 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    fn config() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
        }
        TileConfig(c)
    }

    /// Rows `rows` (multiples of 32 within the padded A) and 32-column blocks `cols` of C.
    ///
    /// # Safety
    /// AMX is enabled for this process; `a16` is `[mp, kp]` bf16, `tiles` the packed weights,
    /// `c` holds `m` rows of `n` valid columns at stride `ldc`, and no one else writes this
    /// rectangle.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        m: usize,
        n: usize,
        kp: usize,
        a16: &[u16],
        tiles: &[u16],
        c: *mut f32,
        clen: usize,
        ldc: usize,
        ep: &Epilogue,
    ) {
        let cfg = config();
        asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack));
        let kchunks = kp / 32;
        let a_stride = kp * 2;
        let mut tmp = [0f32; 32 * 32];
        for cb in cols {
            let b0 = tiles.as_ptr().add((2 * cb) * kchunks * 512);
            let b1 = tiles.as_ptr().add((2 * cb + 1) * kchunks * 512);
            let mut r0 = rows.start;
            while r0 < rows.end {
                let a0 = a16.as_ptr().add(r0 * kp);
                let a1 = a16.as_ptr().add((r0 + 16) * kp);
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack)
                );
                for kc in 0..kchunks {
                    asm!(
                        "tileloadd tmm4, [{a0} + {s}*1]",
                        "tileloadd tmm5, [{a1} + {s}*1]",
                        "tileloadd tmm6, [{b0} + {bs}*1]",
                        "tileloadd tmm7, [{b1} + {bs}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a0.add(kc * 32),
                        a1 = in(reg) a1.add(kc * 32),
                        b0 = in(reg) b0.add(kc * 512),
                        b1 = in(reg) b1.add(kc * 512),
                        s = in(reg) a_stride,
                        bs = in(reg) 64usize,
                        options(nostack),
                    );
                }
                let t = tmp.as_mut_ptr();
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
                // Epilogue on the valid rows and columns of this 32 x 32 block.
                let c0 = cb * 32;
                let ncols = 32.min(n.saturating_sub(c0));
                for i in 0..32.min(m.saturating_sub(r0)) {
                    let off = (r0 + i) * ldc + c0;
                    debug_assert!(off + ncols <= clen);
                    let out = std::slice::from_raw_parts_mut(c.add(off), ncols);
                    let acc = &tmp[i * 32..i * 32 + ncols];
                    match ep.bias {
                        Some(bias) => {
                            for ((o, &v), &bj) in out.iter_mut().zip(acc).zip(&bias[c0..c0 + ncols])
                            {
                                let y = ep.alpha * v + bj;
                                *o = if ep.accumulate { *o + y } else { y };
                            }
                        }
                        None => {
                            for (o, &v) in out.iter_mut().zip(acc) {
                                let y = ep.alpha * v;
                                *o = if ep.accumulate { *o + y } else { y };
                            }
                        }
                    }
                }
                r0 += 32;
            }
        }
        asm!("tilerelease", options(nostack));
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod amx {
    use super::super::gemm::Epilogue;

    pub(super) fn request() -> bool {
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        _rows: std::ops::Range<usize>,
        _cols: std::ops::Range<usize>,
        _m: usize,
        _n: usize,
        _kp: usize,
        _a16: &[u16],
        _tiles: &[u16],
        _c: *mut f32,
        _clen: usize,
        _ldc: usize,
        _ep: &Epilogue,
    ) {
        unreachable!("AMX is never reported available on this target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0); // tie -> even
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }

    #[test]
    fn bf16_gemm_matches_fp32_within_bf16_error() {
        for &(m, k, n) in &[(1, 5, 3), (33, 70, 40), (100, 384, 96)] {
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
            let packed = PackedBf16::from_weight(&w, n, k, Isa::detect());
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
}
