//! LayerNorm over rows, optionally fused with the residual add before it.

use super::{multiversion, par_for, Isa, SendPtr};

/// A LayerNorm's parameters as plain vectors.
#[derive(Clone, Debug)]
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

/// Sum of a slice with 16 independent partial sums (vectorizes; also more accurate than
/// one running sum).
#[inline(always)]
fn sum16(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    let mut s: f32 = rest.iter().map(|&v| f(v)).sum();
    s += acc.iter().sum::<f32>();
    s
}

/// `x[r] = LayerNorm(x[r] + residual[r])` for each row of width `gamma.len()`.
#[inline(always)]
fn rows_generic(x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
    let h = norm.gamma.len();
    for (r, row) in x.chunks_exact_mut(h).enumerate() {
        if let Some(res) = residual {
            for (v, &q) in row.iter_mut().zip(&res[r * h..(r + 1) * h]) {
                *v += q;
            }
        }
        let mean = sum16(row, |v| v) / h as f32;
        let var = sum16(row, |v| (v - mean) * (v - mean)) / h as f32;
        let inv = 1.0 / (var + norm.eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// [`add_layer_norm`] on the calling thread.
pub(crate) fn rows(isa: Isa, x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
    multiversion!(isa, rows_avx512, (x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
        rows_generic(x, residual, norm)
    })
}

/// `x = LayerNorm(x + residual)` row by row (`residual` has x's shape), split over threads
/// for large inputs.
pub fn add_layer_norm(isa: Isa, x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
    let h = norm.gamma.len();
    assert!(
        h > 0 && x.len().is_multiple_of(h),
        "layer norm: width mismatch"
    );
    if let Some(r) = residual {
        assert_eq!(r.len(), x.len(), "layer norm: residual shape");
    }
    let n_rows = x.len() / h;
    const ROWS_PER_TASK: usize = 64;
    if n_rows <= ROWS_PER_TASK {
        rows(isa, x, residual, norm);
        return;
    }
    let tasks = n_rows.div_ceil(ROWS_PER_TASK);
    let (xp, xlen) = (SendPtr(x.as_mut_ptr()), x.len());
    par_for(tasks, |t| {
        let lo = t * ROWS_PER_TASK * h;
        let hi = ((t + 1) * ROWS_PER_TASK * h).min(xlen);
        let p = xp;
        // SAFETY: tasks cover disjoint row ranges of x.
        let xs = unsafe { std::slice::from_raw_parts_mut(p.0.add(lo), hi - lo) };
        rows(isa, xs, residual.map(|r| &r[lo..hi]), norm);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_rows_with_residual_on_every_isa() {
        let h = 37;
        let norm = Norm {
            gamma: (0..h).map(|i| 1.0 + i as f32 * 0.01).collect(),
            beta: (0..h).map(|i| i as f32 * -0.02).collect(),
            eps: 1e-12,
        };
        let x: Vec<f32> = (0..h * 130)
            .map(|i| ((i * 7919) % 101) as f32 * 0.1)
            .collect();
        let r: Vec<f32> = (0..h * 130)
            .map(|i| ((i * 31) % 17) as f32 * 0.05)
            .collect();
        let mut want = x.clone();
        for (row, rr) in want.chunks_exact_mut(h).zip(r.chunks_exact(h)) {
            let v: Vec<f64> = row.iter().zip(rr).map(|(a, b)| (a + b) as f64).collect();
            let mean = v.iter().sum::<f64>() / h as f64;
            let var = v.iter().map(|q| (q - mean) * (q - mean)).sum::<f64>() / h as f64;
            for (j, o) in row.iter_mut().enumerate() {
                *o = ((v[j] - mean) / (var + 1e-12).sqrt() * norm.gamma[j] as f64
                    + norm.beta[j] as f64) as f32;
            }
        }
        for isa in [Isa::Portable, Isa::Avx512] {
            if !isa.available() {
                continue;
            }
            let mut got = x.clone();
            add_layer_norm(isa, &mut got, Some(&r), &norm);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{isa:?}: {a} vs {b}");
            }
        }
    }
}
