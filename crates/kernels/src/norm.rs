//! LayerNorm over rows: the inference form (in place, optionally fused with the residual add
//! before it), and the training forward and backward (gradients for the input, gamma and
//! beta).

use super::reduce::{dot16, row_stats};
use super::scratch::output_buffer;
use super::{multiversion, par_rows, rows_per_task, Isa, SendPtr};

/// A LayerNorm's parameters as plain vectors.
#[derive(Clone, Debug)]
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
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
        let (mean, inv) = row_stats(row, norm.eps);
        for ((v, &g), &b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// [`add_layer_norm`] on the calling thread (for use inside parallel tasks).
///
/// # Panics
/// As [`add_layer_norm`].
pub fn add_layer_norm_serial(isa: Isa, x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
    check(x, residual, norm);
    multiversion!(isa, rows_avx512, (x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
        rows_generic(x, residual, norm)
    })
}

fn check(x: &[f32], residual: Option<&[f32]>, norm: &Norm) {
    let h = norm.gamma.len();
    assert!(
        h > 0 && x.len().is_multiple_of(h) && norm.beta.len() == h,
        "layer norm: width mismatch"
    );
    if let Some(r) = residual {
        assert_eq!(r.len(), x.len(), "layer norm: residual shape");
    }
}

/// `x = LayerNorm(x + residual)` row by row (`residual` has x's shape), split over threads
/// for large inputs.
///
/// # Panics
/// If `x` is not whole rows of `norm.gamma.len()` (> 0) values, `beta` differs in width from
/// `gamma`, or `residual` differs in length from `x`.
pub fn add_layer_norm(isa: Isa, x: &mut [f32], residual: Option<&[f32]>, norm: &Norm) {
    check(x, residual, norm);
    let h = norm.gamma.len();
    const ROWS_PER_TASK: usize = 64;
    if x.len() / h <= ROWS_PER_TASK {
        add_layer_norm_serial(isa, x, residual, norm);
        return;
    }
    par_rows(x, h, ROWS_PER_TASK, |r0, xs| {
        let res = residual.map(|r| &r[r0 * h..r0 * h + xs.len()]);
        add_layer_norm_serial(isa, xs, res, norm);
    });
}

/// `y = LayerNorm(x)` for rows of width `g.len()` on the calling thread.
fn forward_rows(isa: Isa, x: &[f32], g: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
    multiversion!(isa, ln_forward_avx512, (x: &[f32], g: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
        let h = g.len();
        for (xr, yr) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
            let (mean, rstd) = row_stats(xr, eps);
            for (((o, &v), &gg), &bb) in yr.iter_mut().zip(xr).zip(g).zip(b) {
                *o = (v - mean) * rstd * gg + bb;
            }
        }
    })
}

/// `LayerNorm(x)` over rows of width `gamma.len()`, as a new buffer, on the rayon pool.
///
/// # Panics
/// If `gamma` is empty, `beta` differs from it in length, or `x` is not whole rows.
pub fn layer_norm(isa: Isa, x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let h = gamma.len();
    assert!(
        h > 0 && beta.len() == h && x.len().is_multiple_of(h),
        "layer norm: width mismatch"
    );
    let mut y = output_buffer(x.len());
    par_rows(&mut y, h, rows_per_task(h), |r0, yc| {
        let xc = &x[r0 * h..r0 * h + yc.len()];
        forward_rows(isa, xc, gamma, beta, eps, yc);
    });
    y
}

/// One block of rows of the LayerNorm backward: `dx` for each row, and this block's
/// partial sums of `dgamma = sum dy * xhat` and `dbeta = sum dy` (in `part`, `2 * h`).
fn backward_rows(
    isa: Isa,
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    eps: f32,
    dx: &mut [f32],
    part: &mut [f32],
) {
    multiversion!(isa, ln_backward_avx512, (x: &[f32], g: &[f32], dy: &[f32], eps: f32, dx: &mut [f32], part: &mut [f32]) {
        let h = g.len();
        let inv_h = 1.0 / h as f32;
        let (dgamma, dbeta) = part.split_at_mut(h);
        for ((xr, dyr), dxr) in x.chunks_exact(h).zip(dy.chunks_exact(h)).zip(dx.chunks_exact_mut(h)) {
            let (mean, rstd) = row_stats(xr, eps);
            // xhat = (x - mean) * rstd, dxhat = dy * gamma.
            let sum_dxhat = dot16(dyr, g, |d, gg| d * gg);
            let sum_dxhat_xhat = {
                let mut acc = [0.0f32; 16];
                let mut rest = 0.0f32;
                let n16 = h / 16 * 16;
                for i in (0..n16).step_by(16) {
                    for j in 0..16 {
                        acc[j] += dyr[i + j] * g[i + j] * (xr[i + j] - mean);
                    }
                }
                for i in n16..h {
                    rest += dyr[i] * g[i] * (xr[i] - mean);
                }
                (rest + acc.iter().sum::<f32>()) * rstd
            };
            let (m1, m2) = (sum_dxhat * inv_h, sum_dxhat_xhat * inv_h);
            for i in 0..h {
                let xhat = (xr[i] - mean) * rstd;
                dxr[i] = rstd * (dyr[i] * g[i] - m1 - xhat * m2);
                dgamma[i] += dyr[i] * xhat;
                dbeta[i] += dyr[i];
            }
        }
    })
}

/// The LayerNorm backward over all rows of `x` (width `gamma.len()`), on the rayon pool:
/// writes `dx`, and adds `dgamma` then `dbeta` into `dgamma_dbeta` (`2 * h`), reduced over row
/// blocks in a fixed order (deterministic for any thread count).
///
/// # Panics
/// If `gamma` is empty, `x` is not whole rows, `dy` and `dx` differ in length from `x`, or
/// `dgamma_dbeta` does not hold `2 * gamma.len()` values.
pub fn layer_norm_backward(
    isa: Isa,
    eps: f32,
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma_dbeta: &mut [f32],
) {
    let h = gamma.len();
    assert!(
        h > 0
            && x.len().is_multiple_of(h)
            && dy.len() == x.len()
            && dx.len() == x.len()
            && dgamma_dbeta.len() == 2 * h,
        "layer norm backward: shapes disagree"
    );
    let rows = x.len() / h;
    let block = rows_per_task(h);
    let tasks = rows.div_ceil(block);
    let mut parts = vec![0.0f32; tasks * 2 * h];
    let pp = SendPtr(parts.as_mut_ptr());
    par_rows(dx, h, block, |r0, dxc| {
        let t = r0 / block;
        // SAFETY: task t owns partial-sum slot t of `parts` (t < tasks), which lives until
        // after `par_rows` returns.
        let part = unsafe { pp.slice_mut(t * 2 * h, 2 * h) };
        let span = r0 * h..r0 * h + dxc.len();
        backward_rows(isa, &x[span.clone()], gamma, &dy[span], eps, dxc, part);
    });
    // Fixed-order reduction of the per-block partial sums (deterministic).
    for part in parts.chunks_exact(2 * h) {
        for (o, &v) in dgamma_dbeta.iter_mut().zip(part) {
            *o += v;
        }
    }
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
