//! Elementwise products and sums, column sums and transposes: the small passes the training
//! ops share.

use super::scratch::output_buffer;
use super::{multiversion, par_rows, Isa};

/// Elements per parallel task of the passes here.
const CHUNK: usize = 1 << 16;

/// `out[i] = a[i] * b[i]` on the calling thread.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn mul_into(isa: Isa, a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(
        a.len() == b.len() && out.len() == a.len(),
        "mul_into: lengths differ"
    );
    multiversion!(isa, mul_into_avx512, (a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x * y;
        }
    })
}

/// `a * b` elementwise as a new buffer, on the rayon pool.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn par_mul(isa: Isa, a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "par_mul: lengths differ");
    let mut out = output_buffer(a.len());
    par_rows(&mut out, 1, CHUNK, |i0, oc| {
        let span = i0..i0 + oc.len();
        mul_into(isa, &a[span.clone()], &b[span], oc);
    });
    out
}

/// `out[i] *= by[i]` on the rayon pool.
///
/// # Panics
/// If `out` and `by` differ in length.
pub fn par_scale(out: &mut [f32], by: &[f32]) {
    assert_eq!(out.len(), by.len(), "par_scale: lengths differ");
    par_rows(out, 1, CHUNK, |i0, oc| {
        let len = oc.len();
        for (v, &k) in oc.iter_mut().zip(&by[i0..i0 + len]) {
            *v *= k;
        }
    });
}

/// `out[i] = a[i] + b[i]` (or `out[i] += b[i]` when `a` is `None`) on the rayon pool.
///
/// # Panics
/// If `a` (when given), `b` and `out` differ in length.
pub fn par_add(a: Option<&[f32]>, b: &[f32], out: &mut [f32]) {
    assert!(
        b.len() == out.len() && a.is_none_or(|a| a.len() == out.len()),
        "par_add: lengths differ"
    );
    par_rows(out, 1, CHUNK, |i0, oc| {
        let span = i0..i0 + oc.len();
        match a {
            Some(a) => {
                for ((o, &x), &y) in oc.iter_mut().zip(&a[span.clone()]).zip(&b[span]) {
                    *o = x + y;
                }
            }
            None => {
                for (o, &y) in oc.iter_mut().zip(&b[span]) {
                    *o += y;
                }
            }
        }
    });
}

/// Column sums of a `rows x cols` matrix (`out` has `cols` values), added in row order.
pub fn col_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in x.chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// `dst[j][i] = src[i][j]` for a `rows x cols` matrix; `dst` is resized to fit.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) {
    dst.clear();
    dst.resize(rows * cols, 0.0);
    for (i, r) in src.chunks_exact(cols).enumerate().take(rows) {
        for (j, &v) in r.iter().enumerate() {
            dst[j * rows + i] = v;
        }
    }
}
