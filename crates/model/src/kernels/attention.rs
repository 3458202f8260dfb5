//! Fused multi-head self-attention for inference.
//!
//! Reads one head's query, key and value columns straight out of the fused QKV projection
//! `[tokens, 3H]` and writes that head's context columns of `[tokens, H]`. Per
//! (sequence, head): pack `K_h` (S x d) as the right-hand side, `scores = Q_h K_h^T`,
//! then per row `softmax(scale * scores + mask)` in place, pack `V_h`, and `context = P V_h`.
//! The packed buffers and the score matrix live in per-thread scratch, so a forward pass
//! allocates nothing here after the first call.

use std::cell::RefCell;

use super::bf16::{self, gemm_amx_serial, AmxB};
use super::gemm::{gemm_serial, Epilogue, PackedB};
use super::{act, par_for, Isa, SendPtr};

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

#[derive(Default)]
struct Scratch {
    k: PackedB,
    v: PackedB,
    k16: AmxB,
    v16: AmxB,
    scores: Vec<f32>,
    /// Per query row, 1 / (sum of its unnormalized probabilities).
    inv: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Which arithmetic the two products use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Products {
    F32,
    /// bf16 operands on AMX, fp32 accumulation (softmax stays fp32).
    Amx,
}

/// `row = exp(row - max(row))`, returning `1 / sum(row)`: the softmax without its last
/// pass, which is applied to the much smaller `P V` product instead. In 16-lane chunks so
/// each pass vectorizes (the max and the sum keep 16 partial results, not one serial chain).
fn softmax_row_portable(row: &mut [f32]) -> f32 {
    const L: usize = 16;
    let full = row.len() - row.len() % L;
    let mut max = [f32::NEG_INFINITY; L];
    for ch in row[..full].chunks_exact(L) {
        for l in 0..L {
            max[l] = max[l].max(ch[l]);
        }
    }
    let m = row[full..]
        .iter()
        .chain(&max)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = [0.0f32; L];
    for ch in row[..full].chunks_exact_mut(L) {
        for l in 0..L {
            ch[l] = act::exp(ch[l] - m);
            sum[l] += ch[l];
        }
    }
    let mut total: f32 = sum.iter().sum();
    for v in row[full..].iter_mut() {
        *v = act::exp(*v - m);
        total += *v;
    }
    1.0 / total
}

/// Unnormalized softmax of each `seq`-long row of `scores` (already scaled and masked by
/// the `Q K^T` epilogue); `inv[r]` gets row `r`'s normalizer.
fn softmax_rows(isa: Isa, scores: &mut [f32], seq: usize, inv: &mut [f32]) {
    let rows = scores.chunks_exact_mut(seq).zip(inv);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        for (row, inv) in rows {
            // SAFETY: `Isa::Avx512` is only selected when the CPU reports AVX-512F/DQ.
            *inv = unsafe { softmax_row_avx512(row) };
        }
        return;
    }
    let _ = isa;
    for (row, inv) in rows {
        *inv = softmax_row_portable(row);
    }
}

/// `out[r, 0..d] *= inv[r]` for rows at stride `ld`: the softmax's normalization, applied
/// to the context rows (d values each) instead of the probabilities (S values each).
fn scale_rows(out: &mut [f32], ld: usize, d: usize, inv: &[f32]) {
    for (r, &s) in inv.iter().enumerate() {
        for v in &mut out[r * ld..r * ld + d] {
            *v *= s;
        }
    }
}

/// [`softmax_row_portable`] with explicit AVX-512: max, then `exp(x - max)` with the sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn softmax_row_avx512(row: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = row.len();
    let p = row.as_mut_ptr();
    let tail = n % 16;
    let full = n - tail;
    let tail_mask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < full {
        mx = _mm512_max_ps(mx, _mm512_loadu_ps(p.add(i)));
        i += 16;
    }
    if tail > 0 {
        mx = _mm512_mask_max_ps(
            mx,
            tail_mask,
            mx,
            _mm512_maskz_loadu_ps(tail_mask, p.add(full)),
        );
    }
    let m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    let mut sum = _mm512_setzero_ps();
    i = 0;
    while i < full {
        let e = act::avx512::exp(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), m));
        _mm512_storeu_ps(p.add(i), e);
        sum = _mm512_add_ps(sum, e);
        i += 16;
    }
    if tail > 0 {
        let v = _mm512_maskz_loadu_ps(tail_mask, p.add(full));
        let e = _mm512_maskz_mov_ps(tail_mask, act::avx512::exp(_mm512_sub_ps(v, m)));
        _mm512_mask_storeu_ps(p.add(full), tail_mask, e);
        sum = _mm512_add_ps(sum, e);
    }
    1.0 / _mm512_reduce_add_ps(sum)
}

/// `out[b*S + s, h*d..(h+1)*d] = softmax(Q K^T / sqrt(d) + mask) V` for every sequence `b`
/// and head `h`. `qkv` is `[B*S, 3H]` (query, key, value blocks of H columns each),
/// `mask_bias` is `[B, S]` (0 for tokens, a large negative number for padding), `out` is
/// `[B*S, H]`.
pub fn attention(isa: Isa, qkv: &[f32], mask_bias: &[f32], shape: AttentionShape, out: &mut [f32]) {
    run(isa, qkv, mask_bias, shape, out, Products::F32)
}

/// [`attention`] for the compressed path: `Q K^T` and `P V` with bf16 operands on AMX
/// (fp32 where AMX is missing).
pub fn attention_bf16(
    isa: Isa,
    qkv: &[f32],
    mask_bias: &[f32],
    shape: AttentionShape,
    out: &mut [f32],
) {
    let products = if bf16::amx_available() {
        Products::Amx
    } else {
        Products::F32
    };
    run(isa, qkv, mask_bias, shape, out, products)
}

fn run(
    isa: Isa,
    qkv: &[f32],
    mask_bias: &[f32],
    shape: AttentionShape,
    out: &mut [f32],
    products: Products,
) {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = shape;
    let h = heads * d;
    let tokens = batch * seq;
    assert_eq!(qkv.len(), tokens * 3 * h, "attention: qkv shape");
    assert_eq!(mask_bias.len(), tokens, "attention: mask shape");
    assert_eq!(out.len(), tokens * h, "attention: output shape");
    let scale = 1.0 / (d as f32).sqrt();
    let (op, olen) = (SendPtr(out.as_mut_ptr()), out.len());
    par_for(batch * heads, |t| {
        let (b, head) = (t / heads, t % heads);
        let base = b * seq * 3 * h;
        let q = &qkv[base + head * d..];
        let k = &qkv[base + h + head * d..];
        let v = &qkv[base + 2 * h + head * d..];
        let mask = &mask_bias[b * seq..(b + 1) * seq];
        let o0 = b * seq * h + head * d;
        let p = op;
        // SAFETY: each (b, head) task writes only its own d columns of its own S rows.
        let o = unsafe { std::slice::from_raw_parts_mut(p.0.add(o0), olen - o0) };
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            // Every score is overwritten by the first product, so the buffer only grows.
            if s.scores.len() < seq * seq {
                s.scores.resize(seq * seq, 0.0);
            }
            s.inv.resize(seq, 0.0);
            let (scores, inv) = (&mut s.scores[..seq * seq], &mut s.inv[..]);
            // Scale and additive mask (one value per key = per column) in the epilogue.
            let ep = Epilogue {
                alpha: scale,
                bias: Some(mask),
                ..Epilogue::default()
            };
            let none = Epilogue::default();
            match products {
                Products::F32 => {
                    s.k.pack_nk(k, 3 * h, seq, d);
                    gemm_serial(isa, seq, q, 3 * h, &s.k, scores, seq, &ep);
                    softmax_rows(isa, scores, seq, inv);
                    s.v.pack_kn(v, 3 * h, seq, d);
                    gemm_serial(isa, seq, scores, seq, &s.v, o, h, &none);
                }
                Products::Amx => {
                    s.k16.pack_nk(k, 3 * h, seq, d);
                    gemm_amx_serial(isa, seq, q, 3 * h, &s.k16, scores, seq, &ep);
                    softmax_rows(isa, scores, seq, inv);
                    s.v16.pack_kn(v, 3 * h, seq, d);
                    gemm_amx_serial(isa, seq, scores, seq, &s.v16, o, h, &none);
                }
            }
            scale_rows(o, h, d, inv);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in f64, straight from the definition.
    fn reference(qkv: &[f32], mask: &[f32], sh: AttentionShape) -> Vec<f32> {
        let (s, d, h) = (sh.seq, sh.head_dim, sh.heads * sh.head_dim);
        let mut out = vec![0.0f32; sh.batch * s * h];
        for b in 0..sh.batch {
            for head in 0..sh.heads {
                let at = |t: usize, part: usize, j: usize| {
                    qkv[(b * s + t) * 3 * h + part * h + head * d + j] as f64
                };
                for i in 0..s {
                    let scores: Vec<f64> = (0..s)
                        .map(|t| {
                            (0..d).map(|j| at(i, 0, j) * at(t, 1, j)).sum::<f64>()
                                / (d as f64).sqrt()
                                + mask[b * s + t] as f64
                        })
                        .collect();
                    let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|v| (v - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..d {
                        let v: f64 = (0..s).map(|t| e[t] / z * at(t, 2, j)).sum();
                        out[(b * s + i) * h + head * d + j] = v as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_with_padding_on_every_isa() {
        // seq 19: a 16-lane chunk plus a masked tail; the second sequence has 5 pad tokens.
        let sh = AttentionShape {
            batch: 2,
            seq: 19,
            heads: 3,
            head_dim: 8,
        };
        let h = sh.heads * sh.head_dim;
        let tokens = sh.batch * sh.seq;
        let qkv: Vec<f32> = (0..tokens * 3 * h)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)
            .collect();
        let mask: Vec<f32> = (0..tokens)
            .map(|t| if t >= sh.seq + 14 { f32::MIN } else { 0.0 })
            .collect();
        let want = reference(&qkv, &mask, sh);
        for isa in [Isa::Portable, Isa::Avx512] {
            if !isa.available() {
                continue;
            }
            let mut out = vec![f32::NAN; tokens * h];
            attention(isa, &qkv, &mask, sh, &mut out);
            for (i, (x, y)) in out.iter().zip(&want).enumerate() {
                assert!((x - y).abs() < 1e-5, "{isa:?} [{i}]: {x} vs {y}");
            }
        }
        // bf16 operands: within a few bf16 roundings of the values (|v| <= 1.5).
        let mut out = vec![f32::NAN; tokens * h];
        attention_bf16(Isa::detect(), &qkv, &mask, sh, &mut out);
        let worst = out
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 0.05, "bf16 attention off by {worst}");
    }
}
