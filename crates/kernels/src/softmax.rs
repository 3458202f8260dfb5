//! Softmax over rows for training: the masked, scaled softmax of attention scores with its
//! backward pass, and a plain in-place softmax. (The inference attention keeps its own
//! unnormalized form, see [`crate::attention`].)

use super::act;
use super::reduce::dot16;
use super::scratch::output_buffer;
use super::{multiversion, par_rows, rows_per_task, Isa};

/// `y = softmax(scale * s + mask)` for each row of `s` (width `mask.len()`).
fn masked_rows(isa: Isa, s: &[f32], mask: &[f32], scale: f32, y: &mut [f32]) {
    multiversion!(isa, softmax_avx512, (s: &[f32], mask: &[f32], scale: f32, y: &mut [f32]) {
        let t = mask.len();
        for (sr, yr) in s.chunks_exact(t).zip(y.chunks_exact_mut(t)) {
            let mut max = f32::NEG_INFINITY;
            for ((o, &v), &m) in yr.iter_mut().zip(sr).zip(mask) {
                *o = v * scale + m;
                max = max.max(*o);
            }
            let mut acc = [0.0f32; 16];
            let mut rest = 0.0f32;
            let n16 = t / 16 * 16;
            for i in (0..n16).step_by(16) {
                for j in 0..16 {
                    let e = act::exp(yr[i + j] - max);
                    yr[i + j] = e;
                    acc[j] += e;
                }
            }
            for v in &mut yr[n16..] {
                *v = act::exp(*v - max);
                rest += *v;
            }
            let inv = 1.0 / (rest + acc.iter().sum::<f32>());
            for v in yr.iter_mut() {
                *v *= inv;
            }
        }
    })
}

/// `softmax(scale * scores + mask)` over the last dimension of `scores [batch, .., t]` (each
/// batch row holding the same number of `t`-wide rows), with the additive `mask` (`batch x
/// t`) broadcast over the rows of its batch row; a new buffer, on the rayon pool.
///
/// # Panics
/// If `t` is 0, `mask` is not `batch x t`, or `scores` is not `batch` equal blocks of
/// `t`-wide rows.
pub fn masked_softmax(
    isa: Isa,
    scores: &[f32],
    mask: &[f32],
    batch: usize,
    t: usize,
    scale: f32,
) -> Vec<f32> {
    assert!(
        t > 0 && mask.len() == batch * t && scores.len().is_multiple_of(batch * t),
        "masked softmax: mask does not match the scores"
    );
    let rows_per_batch = scores.len() / (batch * t);
    let mut y = output_buffer(scores.len());
    // Tasks never straddle two batch rows, so each sees one mask row.
    let block = rows_per_task(t).min(rows_per_batch).max(1);
    let block = (1..=block)
        .rev()
        .find(|d| rows_per_batch.is_multiple_of(*d))
        .unwrap_or(1);
    par_rows(&mut y, t, block, |r0, yc| {
        let b = r0 / rows_per_batch;
        let span = r0 * t..r0 * t + yc.len();
        masked_rows(isa, &scores[span], &mask[b * t..(b + 1) * t], scale, yc);
    });
    y
}

/// `dx = scale * y * (dy - sum(dy * y))` per row of width `t` (the softmax backward, with
/// the forward's scale folded in), on the calling thread.
///
/// # Panics
/// If `y`, `dy` and `dx` differ in length.
pub fn grad_rows(isa: Isa, y: &[f32], dy: &[f32], t: usize, scale: f32, dx: &mut [f32]) {
    assert!(
        y.len() == dy.len() && dx.len() == y.len(),
        "softmax grad: lengths differ"
    );
    multiversion!(isa, softmax_grad_avx512, (y: &[f32], dy: &[f32], t: usize, scale: f32, dx: &mut [f32]) {
        for ((yr, dyr), dxr) in y.chunks_exact(t).zip(dy.chunks_exact(t)).zip(dx.chunks_exact_mut(t)) {
            let dot = dot16(yr, dyr, |a, b| a * b);
            for ((o, &yv), &d) in dxr.iter_mut().zip(yr).zip(dyr) {
                *o = scale * yv * (d - dot);
            }
        }
    })
}

/// [`grad_rows`] over all rows as a new buffer, on the rayon pool.
///
/// # Panics
/// If `t` is 0 or `y` and `dy` differ in length.
pub fn masked_softmax_backward(isa: Isa, y: &[f32], dy: &[f32], t: usize, scale: f32) -> Vec<f32> {
    assert!(
        t > 0 && dy.len() == y.len(),
        "softmax backward: shapes differ"
    );
    let mut dx = output_buffer(y.len());
    par_rows(&mut dx, t, rows_per_task(t), |r0, dxc| {
        let span = r0 * t..r0 * t + dxc.len();
        grad_rows(isa, &y[span.clone()], &dy[span], t, scale, dxc);
    });
    dx
}

/// `row = softmax(row)` for each row of width `t`, on the calling thread.
pub fn rows_in_place(isa: Isa, rows: &mut [f32], t: usize) {
    multiversion!(isa, softmax_inplace_avx512, (rows: &mut [f32], t: usize) {
        let n16 = t / 16 * 16;
        for r in rows.chunks_exact_mut(t) {
            // 16 partial maxima and sums, so both reductions vectorize.
            let mut mx = [f32::NEG_INFINITY; 16];
            for ch in r[..n16].chunks_exact(16) {
                for (m, &v) in mx.iter_mut().zip(ch) {
                    *m = m.max(v);
                }
            }
            let max = r[n16..].iter().chain(&mx).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut acc = [0.0f32; 16];
            for ch in r[..n16].chunks_exact_mut(16) {
                for (a, v) in acc.iter_mut().zip(ch.iter_mut()) {
                    *v = act::exp(*v - max);
                    *a += *v;
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for v in r[n16..].iter_mut() {
                *v = act::exp(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in r.iter_mut() {
                *v *= inv;
            }
        }
    })
}
