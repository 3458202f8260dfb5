//! Fused multi-head self-attention for inference.
//!
//! Reads one head's query, key and value columns straight out of the fused QKV projection
//! `[tokens, 3H]` and writes that head's context columns of `[tokens, H]`. Per
//! (sequence, head): pack `K_h` (S x d) as the right-hand side, `scores = Q_h K_h^T`,
//! then per row `softmax(scale * scores + mask)` in place, pack `V_h`, and `context = P V_h`.
//! The packed buffers and the score matrix live in per-thread scratch, so a forward pass
//! allocates nothing here after the first call.

use std::cell::RefCell;

use super::gemm::{gemm_serial, Epilogue, PackedB};
use super::{act, multiversion, par_for, Isa, SendPtr};

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

struct Scratch {
    k: PackedB,
    v: PackedB,
    scores: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        k: PackedB::default(),
        v: PackedB::default(),
        scores: Vec::new(),
    });
}

/// `row = softmax(scale * row + mask)`, in 16-lane chunks so each pass vectorizes
/// (the max and the sum keep 16 partial results instead of one serial chain).
#[inline(always)]
fn softmax_row_generic(row: &mut [f32], mask: &[f32], scale: f32) {
    const L: usize = 16;
    let n = row.len();
    let full = n - n % L;
    let mut max = [f32::NEG_INFINITY; L];
    for (ch, mk) in row[..full]
        .chunks_exact_mut(L)
        .zip(mask[..full].chunks_exact(L))
    {
        for l in 0..L {
            ch[l] = ch[l] * scale + mk[l];
            max[l] = max[l].max(ch[l]);
        }
    }
    let mut m = max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for (v, &mk) in row[full..].iter_mut().zip(&mask[full..]) {
        *v = *v * scale + mk;
        m = m.max(*v);
    }
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
    let inv = 1.0 / total;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

fn softmax_rows(isa: Isa, scores: &mut [f32], seq: usize, mask: &[f32], scale: f32) {
    multiversion!(isa, softmax_avx512, (scores: &mut [f32], seq: usize, mask: &[f32], scale: f32) {
        for row in scores.chunks_exact_mut(seq) {
            softmax_row_generic(row, mask, scale);
        }
    })
}

/// `out[b*S + s, h*d..(h+1)*d] = softmax(Q K^T / sqrt(d) + mask) V` for every sequence `b`
/// and head `h`. `qkv` is `[B*S, 3H]` (query, key, value blocks of H columns each),
/// `mask_bias` is `[B, S]` (0 for tokens, a large negative number for padding), `out` is
/// `[B*S, H]`.
pub fn attention(isa: Isa, qkv: &[f32], mask_bias: &[f32], shape: AttentionShape, out: &mut [f32]) {
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
            s.k.pack_nk(k, 3 * h, seq, d);
            s.scores.clear();
            s.scores.resize(seq * seq, 0.0);
            gemm_serial(
                isa,
                seq,
                q,
                3 * h,
                &s.k,
                &mut s.scores,
                seq,
                &Epilogue::default(),
            );
            softmax_rows(isa, &mut s.scores, seq, mask, scale);
            s.v.pack_kn(v, 3 * h, seq, d);
            gemm_serial(isa, seq, &s.scores, seq, &s.v, o, h, &Epilogue::default());
        });
    });
}
