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

/// `max_i |x_i|`, ignoring NaN (a comparison with NaN is false), 0 for an empty row. The
/// 16 partial maxima compile to `vmaxps`; `f32::max` folded in one chain does not vectorize,
/// and made this scan 7% of an int8 forward pass.
#[inline(always)]
pub(crate) fn max_abs16(x: &[f32]) -> f32 {
    let bigger = |m: f32, v: f32| if v > m { v } else { m };
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks
        .remainder()
        .iter()
        .fold(0.0, |m, v| bigger(m, v.abs()));
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a = bigger(*a, v.abs());
        }
    }
    acc.into_iter().fold(rest, bigger)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_abs16_finds_the_largest_magnitude_anywhere_and_skips_nan() {
        for len in [0usize, 1, 15, 16, 17, 40] {
            let mut x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let expect = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(max_abs16(&x), expect, "len {len}");
            if len > 1 {
                x[len - 1] = -9.0; // in the remainder or the last chunk
                x[0] = f32::NAN;
                assert_eq!(max_abs16(&x), 9.0, "len {len}");
            }
        }
        assert_eq!(max_abs16(&[f32::NEG_INFINITY, 1.0]), f32::INFINITY);
    }
}
