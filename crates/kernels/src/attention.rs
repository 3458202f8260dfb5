//! Fused multi-head self-attention on one fused QKV projection.
//!
//! Reads one head's query, key and value columns straight out of the fused projection
//! `[tokens, 3H]` and writes that head's context columns of `[tokens, H]`. Per
//! (sequence, head): pack `K_h` (S x d) as the right-hand side, `scores = Q_h K_h^T`,
//! then per row `softmax(scale * scores + mask)` in place, pack `V_h`, and `context = P V_h`.
//! The packed buffers and the score matrix live in per-thread scratch, so a forward pass
//! allocates nothing here after the first call.
//!
//! [`attention`] and [`attention_bf16`] are the inference forms. [`train_forward`] keeps the
//! probabilities and applies dropout to them, and [`train_backward`] turns the context
//! gradient into the gradient of the fused projection.

use std::cell::RefCell;

use super::bf16::{self, gemm_amx_serial, gemm_amx_serial_raw, AmxB};
use super::elementwise::{mul_into, transpose};
use super::gemm::{gemm_serial, gemm_serial_raw, Epilogue, PackedB};
use super::scratch::{output_buffer, with_task_scratch, TaskScratch};
use super::softmax;
use super::{act, par_for, Isa, SendPtr};

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    /// The hidden width `heads * head_dim`.
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Where task `t` (sequence `t / heads`, head `t % heads`) works: its sequence, the
    /// offset of its head's first query column in `qkv [B*S, 3H]` (the key and value columns
    /// follow at `+H` and `+2H`), and that of its first context column in `[B*S, H]`.
    fn head(&self, t: usize) -> (usize, usize, usize) {
        let (b, head) = (t / self.heads, t % self.heads);
        let (d, h) = (self.head_dim, self.hidden());
        (
            b,
            b * self.seq * 3 * h + head * d,
            b * self.seq * h + head * d,
        )
    }

    /// Checks the buffers of one call: `qkv` is `[B*S, 3H]`, `mask_bias` `[B, S]`.
    fn check(&self, qkv: &[f32], mask_bias: &[f32]) {
        let tokens = self.batch * self.seq;
        assert_eq!(
            qkv.len(),
            tokens * 3 * self.hidden(),
            "attention: qkv shape"
        );
        assert_eq!(mask_bias.len(), tokens, "attention: mask shape");
    }
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
    if isa == Isa::Avx512 && isa.available() {
        for (row, inv) in rows {
            // SAFETY: the CPU reports AVX-512F/DQ (`available`).
            *inv = unsafe { softmax_row_avx512(row) };
        }
        return;
    }
    let _ = isa;
    for (row, inv) in rows {
        *inv = softmax_row_portable(row);
    }
}

/// `out[r * ld .. r * ld + d] *= inv[r]` for each row `r`: the softmax's normalization,
/// applied to the context rows (d values each) instead of the probabilities (S values each).
///
/// # Safety
/// For every row `r < inv.len()`, the `d` floats at `out + r * ld` are valid for reads and
/// writes, and no one else accesses them during the call.
unsafe fn scale_rows(out: *mut f32, ld: usize, d: usize, inv: &[f32]) {
    for (r, &s) in inv.iter().enumerate() {
        // SAFETY: row r's d values are this caller's (the contract above).
        let row = unsafe { std::slice::from_raw_parts_mut(out.add(r * ld), d) };
        for v in row {
            *v *= s;
        }
    }
}

/// [`softmax_row_portable`] with explicit AVX-512: max, then `exp(x - max)` with the sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn softmax_row_avx512(row: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = row.len();
    let p = row.as_mut_ptr();
    let tail = n % 16;
    let full = n - tail;
    let tail_mask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    // Full vectors cover lanes i..i + 16 <= full <= n, the masked ones only the tail lanes
    // full..n, all inside `row`.
    while i < full {
        // SAFETY: lanes i..i + 16 inside `row` (see above).
        let v = unsafe { _mm512_loadu_ps(p.add(i)) };
        mx = _mm512_max_ps(mx, v);
        i += 16;
    }
    if tail > 0 {
        // SAFETY: masked tail load inside `row` (see above).
        let v = unsafe { _mm512_maskz_loadu_ps(tail_mask, p.add(full)) };
        mx = _mm512_mask_max_ps(mx, tail_mask, mx, v);
    }
    let m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    let mut sum = _mm512_setzero_ps();
    i = 0;
    while i < full {
        // SAFETY: lanes i..i + 16 inside `row` (see above).
        let e = act::avx512::exp(_mm512_sub_ps(unsafe { _mm512_loadu_ps(p.add(i)) }, m));
        // SAFETY: as the load.
        unsafe { _mm512_storeu_ps(p.add(i), e) };
        sum = _mm512_add_ps(sum, e);
        i += 16;
    }
    if tail > 0 {
        // SAFETY: masked tail load inside `row` (see above).
        let v = unsafe { _mm512_maskz_loadu_ps(tail_mask, p.add(full)) };
        let e = _mm512_maskz_mov_ps(tail_mask, act::avx512::exp(_mm512_sub_ps(v, m)));
        // SAFETY: masked tail store inside `row`.
        unsafe { _mm512_mask_storeu_ps(p.add(full), tail_mask, e) };
        sum = _mm512_add_ps(sum, e);
    }
    1.0 / _mm512_reduce_add_ps(sum)
}

/// `out[b*S + s, h*d..(h+1)*d] = softmax(Q K^T / sqrt(d) + mask) V` for every sequence `b`
/// and head `h`. `qkv` is `[B*S, 3H]` (query, key, value blocks of H columns each),
/// `mask_bias` is `[B, S]` (0 for tokens, a large negative number for padding), `out` is
/// `[B*S, H]`.
///
/// # Panics
/// If a buffer does not have the size `shape` gives it.
pub fn attention(isa: Isa, qkv: &[f32], mask_bias: &[f32], shape: AttentionShape, out: &mut [f32]) {
    run(isa, qkv, mask_bias, shape, out, Products::F32)
}

/// [`attention`] for the compressed path: `Q K^T` and `P V` with bf16 operands on AMX where
/// `isa` is AVX-512 and the CPU has AMX ([`bf16::amx_available`]), in fp32 otherwise.
///
/// # Panics
/// If a buffer does not have the size `shape` gives it.
pub fn attention_bf16(
    isa: Isa,
    qkv: &[f32],
    mask_bias: &[f32],
    shape: AttentionShape,
    out: &mut [f32],
) {
    let products = if isa == Isa::Avx512 && bf16::amx_available() {
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
    shape.check(qkv, mask_bias);
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = shape;
    let h = shape.hidden();
    let tokens = batch * seq;
    assert_eq!(out.len(), tokens * h, "attention: output shape");
    let scale = 1.0 / (d as f32).sqrt();
    let (op, olen) = (SendPtr(out.as_mut_ptr()), out.len());
    par_for(batch * heads, |t| {
        let (b, base, o0) = shape.head(t);
        let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
        let mask = &mask_bias[b * seq..(b + 1) * seq];
        // This task's output: d columns of S rows at stride h, from `o`.
        let (o, olen) = (op.ptr().wrapping_add(o0), olen - o0);
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
                    // SAFETY: the S rows of d columns at stride h from `o` lie inside `out`
                    // (`olen` floats from `o`), and only this (b, head) task accesses them.
                    unsafe { gemm_serial_raw(isa, seq, scores, seq, &s.v, o, olen, h, &none) };
                }
                Products::Amx => {
                    s.k16.pack_nk(k, 3 * h, seq, d);
                    gemm_amx_serial(isa, seq, q, 3 * h, &s.k16, scores, seq, &ep);
                    softmax_rows(isa, scores, seq, inv);
                    s.v16.pack_kn(v, 3 * h, seq, d);
                    // SAFETY: as for the fp32 product.
                    unsafe {
                        gemm_amx_serial_raw(isa, seq, scores, seq, &s.v16, o, olen, h, &none)
                    };
                }
            }
            // SAFETY: the same d columns of S rows, still this task's alone.
            unsafe { scale_rows(o, h, d, inv) };
        });
    });
}

/// The training forward of [`attention`], with the scale given: per head
/// `dropout(softmax(scale * Q K^T + mask)) V`, the heads side by side as `[B*S, H]`.
/// `drop` holds the dropout multipliers of the probabilities, `[B, heads, S, S]`. Returns the
/// context and the probabilities before dropout (`[B, heads, S, S]`), which
/// [`train_backward`] needs.
///
/// # Panics
/// If a buffer does not have the size `shape` gives it.
pub fn train_forward(
    isa: Isa,
    qkv: &[f32],
    mask_bias: &[f32],
    shape: AttentionShape,
    scale: f32,
    drop: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    shape.check(qkv, mask_bias);
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = shape;
    let h = shape.hidden();
    let ss = seq * seq;
    assert!(
        drop.is_none_or(|m| m.len() == batch * heads * ss),
        "attention: dropout mask shape"
    );
    let mut out = output_buffer(batch * seq * h);
    let mut probs = output_buffer(batch * heads * ss);
    let (op, olen) = (SendPtr(out.as_mut_ptr()), out.len());
    let pp = SendPtr(probs.as_mut_ptr());
    par_for(batch * heads, |t| {
        let (b, base, o0) = shape.head(t);
        let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
        let mask = &mask_bias[b * seq..(b + 1) * seq];
        // This task's output: d columns of S rows at stride h, from `o`.
        let (o, olen) = (op.ptr().wrapping_add(o0), olen - o0);
        // SAFETY: task t's S x S block of `probs` (t < batch * heads) is its own, and
        // `probs` outlives `par_for`.
        let pr = unsafe { pp.slice_mut(t * ss, ss) };
        with_task_scratch(|sc| {
            sc.packed.pack_nk(k, 3 * h, seq, d);
            let ep = Epilogue {
                alpha: scale,
                bias: Some(mask),
                ..Epilogue::default()
            };
            gemm_serial(isa, seq, q, 3 * h, &sc.packed, pr, seq, &ep);
            softmax::rows_in_place(isa, pr, seq);
            let pd: &[f32] = match drop {
                Some(drop) => {
                    sc.a.clear();
                    sc.a.resize(ss, 0.0);
                    mul_into(isa, pr, &drop[t * ss..(t + 1) * ss], &mut sc.a);
                    &sc.a
                }
                None => pr,
            };
            sc.packed.pack_kn(v, 3 * h, seq, d);
            // SAFETY: the S rows of d columns at stride h from `o` lie inside `out` (`olen`
            // floats from `o`), and only this (b, head) task accesses them.
            unsafe {
                gemm_serial_raw(
                    isa,
                    seq,
                    pd,
                    seq,
                    &sc.packed,
                    o,
                    olen,
                    h,
                    &Epilogue::default(),
                )
            };
        });
    });
    (out, probs)
}

/// The training backward of [`train_forward`]: the gradient of `qkv` (`[B*S, 3H]`) from the
/// context gradient `dy` (`[B*S, H]`), given the forward's probabilities `probs` and the same
/// `scale` and dropout multipliers.
///
/// # Panics
/// If a buffer does not have the size `shape` gives it.
pub fn train_backward(
    isa: Isa,
    qkv: &[f32],
    shape: AttentionShape,
    scale: f32,
    drop: Option<&[f32]>,
    probs: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = shape;
    let h = shape.hidden();
    let ss = seq * seq;
    assert!(
        qkv.len() == batch * seq * 3 * h
            && dy.len() == batch * seq * h
            && probs.len() == batch * heads * ss
            && drop.is_none_or(|m| m.len() == probs.len()),
        "attention backward: shapes differ from the forward pass"
    );
    let mut dqkv = output_buffer(qkv.len());
    let (gp, glen) = (SendPtr(dqkv.as_mut_ptr()), dqkv.len());
    par_for(batch * heads, |t| {
        let (_, base, o0) = shape.head(t);
        let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
        let dy_bh = &dy[o0..];
        let p = &probs[t * ss..(t + 1) * ss];
        let drop = drop.map(|m| &m[t * ss..(t + 1) * ss]);
        // This task's gradients: d columns of S rows at stride 3H in the query, key and
        // value blocks, from these offsets.
        let at = |off: usize| (gp.ptr().wrapping_add(off), glen - off);
        let ((dq, lq), (dk, lk), (dv, lv)) = (at(base), at(base + h), at(base + 2 * h));
        with_task_scratch(|sc| {
            let TaskScratch { packed, a, b: buf } = sc;
            let none = Epilogue::default();
            // dV = Pd^T dY, with Pd the probabilities after dropout.
            buf.clear();
            buf.resize(ss, 0.0);
            match drop {
                Some(m) => mul_into(isa, p, m, buf),
                None => buf.copy_from_slice(p),
            }
            transpose(buf, seq, seq, a);
            packed.pack_kn(dy_bh, h, seq, d);
            // SAFETY: (this and the products into dq and dk) the S rows of d columns at
            // stride 3H from each pointer lie inside `dqkv` (the length given), and only this
            // (b, head) task accesses them.
            unsafe { gemm_serial_raw(isa, seq, a, seq, packed, dv, lv, 3 * h, &none) };
            // dPd = dY V^T, then through dropout and softmax (scale folded in).
            packed.pack_nk(v, 3 * h, seq, d);
            gemm_serial(isa, seq, dy_bh, h, packed, buf, seq, &none);
            if let Some(m) = drop {
                a.clear();
                a.resize(ss, 0.0);
                mul_into(isa, buf, m, a);
                std::mem::swap(a, buf);
            }
            a.clear();
            a.resize(ss, 0.0);
            softmax::grad_rows(isa, p, buf, seq, scale, a);
            // dQ = dS K, dK = dS^T Q.
            packed.pack_kn(k, 3 * h, seq, d);
            // SAFETY: see the product into dv.
            unsafe { gemm_serial_raw(isa, seq, a, seq, packed, dq, lq, 3 * h, &none) };
            transpose(a, seq, seq, buf);
            packed.pack_kn(q, 3 * h, seq, d);
            // SAFETY: see the product into dv.
            unsafe { gemm_serial_raw(isa, seq, buf, seq, packed, dk, lk, 3 * h, &none) };
        });
    });
    dqkv
}

/// The attention-distribution distillation loss (MiniLM, arXiv 2002.10957; TinyBERT,
/// arXiv 1909.10351, docs/sources.md#distillation): for every sequence, head and query row
/// `i`, `KL(target_i || P_i)` with `P = softmax(scale * Q K^T + mask)` from the fused
/// projection `qkv` (`[B*S, 3H]`), weighted by `row_weight[b * S + i]` and summed.
/// `target` is `[B, heads, S, S]` (the teacher's probabilities). Returns the student's
/// probabilities (for [`kl_backward`]) and the loss.
///
/// The probabilities are computed again here rather than taken from the attention op: the
/// product `Q K^T` is a few percent of a layer's work, and a separate op keeps the loss a
/// plain node of the autograd graph. Each row's log-normalizer is recovered from its largest
/// probability (`lse = max(z) - ln(max P)`, exact, and `max P >= 1/S` never underflows), so
/// the in-place vectorized softmax serves both.
///
/// # Panics
/// If a buffer does not have the size `shape` gives it.
pub fn kl_forward(
    isa: Isa,
    qkv: &[f32],
    mask_bias: &[f32],
    shape: AttentionShape,
    scale: f32,
    target: &[f32],
    row_weight: &[f32],
) -> (Vec<f32>, f64) {
    shape.check(qkv, mask_bias);
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = shape;
    let h = shape.hidden();
    let ss = seq * seq;
    assert!(
        target.len() == batch * heads * ss && row_weight.len() == batch * seq,
        "attention KL: target or row weights shape"
    );
    let mut probs = output_buffer(batch * heads * ss);
    let mut partial = vec![0.0f64; batch * heads];
    let pp = SendPtr(probs.as_mut_ptr());
    let lp = SendPtr(partial.as_mut_ptr());
    par_for(batch * heads, |t| {
        let (b, base, _) = shape.head(t);
        let (q, k) = (&qkv[base..], &qkv[base + h..]);
        let mask = &mask_bias[b * seq..(b + 1) * seq];
        let weights = &row_weight[b * seq..(b + 1) * seq];
        let tg = &target[t * ss..(t + 1) * ss];
        // SAFETY: task t's S x S block of `probs` and its one slot of `partial` are its own,
        // and both buffers outlive `par_for`.
        let (pr, slot) = unsafe { (pp.slice_mut(t * ss, ss), lp.slice_mut(t, 1)) };
        with_task_scratch(|sc| {
            sc.packed.pack_nk(k, 3 * h, seq, d);
            let ep = Epilogue {
                alpha: scale,
                bias: Some(mask),
                ..Epilogue::default()
            };
            gemm_serial(isa, seq, q, 3 * h, &sc.packed, pr, seq, &ep);
            // Per row: sum_j T (ln T - z), sum_j T and max z, before the softmax overwrites z.
            sc.a.clear();
            for (i, (z, t_row)) in pr.chunks_exact(seq).zip(tg.chunks_exact(seq)).enumerate() {
                let (mut cross, mut mass) = (0.0f64, 0.0f64);
                if weights[i] != 0.0 {
                    for (&zj, &tj) in z.iter().zip(t_row) {
                        if tj > 0.0 {
                            cross += tj as f64 * ((tj as f64).ln() - zj as f64);
                            mass += tj as f64;
                        }
                    }
                }
                let zmax = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                sc.a.extend([cross as f32, mass as f32, zmax]);
            }
            softmax::rows_in_place(isa, pr, seq);
            let mut loss = 0.0f64;
            for (i, (p_row, row)) in pr.chunks_exact(seq).zip(sc.a.chunks_exact(3)).enumerate() {
                if weights[i] == 0.0 {
                    continue;
                }
                let pmax = p_row.iter().fold(0.0f32, |a, &b| a.max(b)) as f64;
                let lse = row[2] as f64 - pmax.ln();
                loss += weights[i] as f64 * (row[0] as f64 + row[1] as f64 * lse);
            }
            slot[0] = loss;
        });
    });
    // Summed in task order, so the loss does not depend on the thread count.
    (probs, partial.iter().sum())
}

/// The gradient of [`kl_forward`]'s loss, times `grad`, with respect to `qkv`: per row
/// `dz = grad * row_weight * (P - T)`, then `dQ = scale * dz K` and `dK = scale * dz^T Q`;
/// the value block gets zeros.
///
/// # Panics
/// If a buffer does not have the size `shape` gives it.
#[allow(clippy::too_many_arguments)]
pub fn kl_backward(
    isa: Isa,
    qkv: &[f32],
    shape: AttentionShape,
    scale: f32,
    probs: &[f32],
    target: &[f32],
    row_weight: &[f32],
    grad: f32,
) -> Vec<f32> {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = shape;
    let h = shape.hidden();
    let ss = seq * seq;
    assert!(
        qkv.len() == batch * seq * 3 * h
            && probs.len() == batch * heads * ss
            && target.len() == probs.len()
            && row_weight.len() == batch * seq,
        "attention KL backward: shapes differ from the forward pass"
    );
    // Zeros: the value block has no gradient from this loss.
    let mut dqkv = vec![0.0f32; qkv.len()];
    let (gp, glen) = (SendPtr(dqkv.as_mut_ptr()), dqkv.len());
    par_for(batch * heads, |t| {
        let (b, base, _) = shape.head(t);
        let (q, k) = (&qkv[base..], &qkv[base + h..]);
        let p = &probs[t * ss..(t + 1) * ss];
        let tg = &target[t * ss..(t + 1) * ss];
        let weights = &row_weight[b * seq..(b + 1) * seq];
        let at = |off: usize| (gp.ptr().wrapping_add(off), glen - off);
        let ((dq, lq), (dk, lk)) = (at(base), at(base + h));
        with_task_scratch(|sc| {
            let TaskScratch { packed, a, b: buf } = sc;
            let none = Epilogue::default();
            a.clear();
            a.resize(ss, 0.0);
            for (i, ((o, pr), tr)) in a
                .chunks_exact_mut(seq)
                .zip(p.chunks_exact(seq))
                .zip(tg.chunks_exact(seq))
                .enumerate()
            {
                let w = grad * scale * weights[i];
                if w != 0.0 {
                    for ((o, &pv), &tv) in o.iter_mut().zip(pr).zip(tr) {
                        *o = w * (pv - tv);
                    }
                }
            }
            // dQ = dS K, dK = dS^T Q.
            packed.pack_kn(k, 3 * h, seq, d);
            // SAFETY: (both products) the S rows of d columns at stride 3H from each pointer
            // lie inside `dqkv` (the length given), and only this (b, head) task accesses
            // them.
            unsafe { gemm_serial_raw(isa, seq, a, seq, packed, dq, lq, 3 * h, &none) };
            transpose(a, seq, seq, buf);
            packed.pack_kn(q, 3 * h, seq, d);
            // SAFETY: see the product into dq.
            unsafe { gemm_serial_raw(isa, seq, buf, seq, packed, dk, lk, 3 * h, &none) };
        });
    });
    dqkv
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
