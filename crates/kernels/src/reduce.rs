//! Row reductions with 16 independent partial sums: they vectorize (one serial chain of
//! additions does not), and are more accurate than one running sum.

/// `sum_i f(x_i)`.
#[inline(always)]
pub(crate) fn sum16(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// `sum_i f(a_i, b_i)`.
#[inline(always)]
pub(crate) fn dot16(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += f(x, y);
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// Mean and `1 / sqrt(variance + eps)` of a row, in two passes (as candle's composite
/// LayerNorm computes them).
#[inline(always)]
pub(crate) fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let h = row.len() as f32;
    let mean = sum16(row, |v| v) / h;
    let var = sum16(row, |v| (v - mean) * (v - mean)) / h;
    (mean, 1.0 / (var + eps).sqrt())
}
