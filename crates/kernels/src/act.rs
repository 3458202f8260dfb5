//! Elementwise activations and their derivatives as branch-free polynomials: scalar forms
//! for the portable path, and explicit AVX-512 forms (`avx512`) that use fused multiply-adds,
//! `vscalefps` for 2^n and a refined `vrcp14ps` instead of a division (Rust never contracts
//! `a * b + c` into an FMA on its own, and `vdivps` is slow enough to dominate a GELU).
//!
//! Accuracy (checked in the tests against libm): `exp` within 2 ulp on [-87, 88];
//! `erf` within 6e-7 absolute (Abramowitz & Stegun 7.1.26 with our `exp`); `tanh` within
//! 3e-7 absolute.

use super::{multiversion, par_rows, Isa};
use crate::scratch::output_buffer;

/// An activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// GELU, exact form `0.5 x (1 + erf(x / sqrt 2))`.
    GeluErf,
    /// GELU, tanh approximation `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

/// Elements per parallel task of the elementwise passes ([`apply_copy`], [`act_grad_par`]).
pub const CHUNK: usize = 16384;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`, with inputs above 88 clamped and exactly 0 below -87. The zero matters: a
/// masked softmax entry or a GELU tail of about 1e-38 (what the clamp alone gives) makes
/// the products that consume it denormal, and every denormal costs a microcode assist in
/// the matrix multiply (padded training batches are full of them).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let underflow = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes expf polynomial on |r| <= ln2/2.
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    p = p * r * r + r + 1.0;
    // 2^n from the integer in the low mantissa bits of n + 1.5 * 2^23 (no float->int
    // conversion, which keeps the loop vectorizable).
    let n_int = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits(n_int.wrapping_add(127) << 23);
    if underflow {
        0.0
    } else {
        p * scale
    }
}

/// erf(x), Abramowitz & Stegun 7.1.26.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// tanh(x) = 1 - 2 / (e^{2x} + 1).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// GELU, exact (erf) form.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU, tanh approximation (`gelu_new`).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + tanh(C * (x + 0.044_715 * x * x * x)))
}

/// Applies `act` to every element of `x` in place.
pub fn apply(isa: Isa, act: Act, x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && isa.available() {
        // SAFETY: the CPU reports AVX-512F and AVX-512DQ (`available`).
        unsafe { avx512::apply(act, x) };
        return;
    }
    let _ = isa;
    match act {
        Act::GeluErf => x.iter_mut().for_each(|v| *v = gelu_erf(*v)),
        Act::GeluTanh => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Act::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// `act(x)` as a new buffer, on the rayon pool (each chunk copied while in cache).
pub fn apply_copy(isa: Isa, act: Act, x: &[f32]) -> Vec<f32> {
    let mut y = output_buffer(x.len());
    par_rows(&mut y, 1, CHUNK, |i0, yc| {
        let len = yc.len();
        yc.copy_from_slice(&x[i0..i0 + len]);
        apply(isa, act, yc);
    });
    y
}

/// d/dx of GELU's erf form: `Phi(x) + x phi(x)`.
#[inline(always)]
pub fn gelu_erf_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

/// d/dx of GELU's tanh form `0.5 x (1 + tanh(u))`, `u = c (x + 0.044715 x^3)`.
#[inline(always)]
pub fn gelu_tanh_grad(x: f32) -> f32 {
    const C: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    let t = tanh(C * (x + A * x * x * x));
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * A * x * x)
}

/// `dx = dy * act'(x)`, elementwise on the calling thread.
///
/// # Panics
/// If `x`, `dy` and `dx` differ in length.
pub fn act_grad(isa: Isa, act: Act, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(
        x.len() == dy.len() && dx.len() == x.len(),
        "act_grad: lengths differ"
    );
    match act {
        Act::Relu => {
            for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
                *o = if v > 0.0 { d } else { 0.0 };
            }
        }
        Act::GeluErf => {
            multiversion!(isa, gelu_erf_grad_avx512, (x: &[f32], dy: &[f32], dx: &mut [f32]) {
                for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
                    *o = d * gelu_erf_grad(v);
                }
            })
        }
        Act::GeluTanh => {
            multiversion!(isa, gelu_tanh_grad_avx512, (x: &[f32], dy: &[f32], dx: &mut [f32]) {
                for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
                    *o = d * gelu_tanh_grad(v);
                }
            })
        }
    }
}

/// [`act_grad`] on the rayon pool, into `dx`.
///
/// # Panics
/// If `x`, `dy` and `dx` differ in length.
pub fn act_grad_par(isa: Isa, act: Act, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(
        x.len() == dy.len() && dx.len() == x.len(),
        "act_grad_par: lengths differ"
    );
    par_rows(dx, 1, CHUNK, |i0, dc| {
        let span = i0..i0 + dc.len();
        act_grad(isa, act, &x[span.clone()], &dy[span], dc);
    });
}

/// The same functions on 16 lanes. Each matches its scalar form above to a few ulp (tested).
/// Every function here is compiled for AVX-512F and AVX-512DQ, which the CPU must support.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{Act, LN2_HI, LN2_LO, LOG2E};
    use std::arch::x86_64::*;

    /// `e^x` per lane, like [`super::exp`] (exactly 0 below -87).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub fn exp(x: __m512) -> __m512 {
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        // n = round(x / ln2), r = x - n ln2 (in two parts), e^x = 2^n e^r.
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let p = _mm512_fmadd_ps(
            p,
            _mm512_mul_ps(r, r),
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n))
    }

    /// `1 / d` per lane: `vrcp14ps` plus one Newton step (relative error ~1e-8).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn recip(d: __m512) -> __m512 {
        let r = _mm512_rcp14_ps(d);
        _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)))
    }

    /// erf, Abramowitz & Stegun 7.1.26 (as [`super::erf`]).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub fn erf(x: __m512) -> __m512 {
        let sign = _mm512_set1_ps(-0.0);
        let a = _mm512_andnot_ps(sign, x);
        let t = recip(_mm512_fmadd_ps(
            a,
            _mm512_set1_ps(0.327_591_1),
            _mm512_set1_ps(1.0),
        ));
        let mut p = _mm512_set1_ps(1.061_405_4);
        for c in [-1.453_152_1, 1.421_413_8, -0.284_496_72, 0.254_829_6] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
        }
        let p = _mm512_mul_ps(p, t);
        let e = exp(_mm512_mul_ps(_mm512_xor_ps(a, sign), a));
        let y = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0));
        _mm512_or_ps(y, _mm512_and_ps(x, sign))
    }

    /// GELU, exact (erf) form.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub fn gelu_erf(x: __m512) -> __m512 {
        let half_x = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
        let e = erf(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        _mm512_fmadd_ps(half_x, e, half_x)
    }

    /// GELU, tanh form: `0.5 x (1 + tanh(u)) = x - x / (e^{2u} + 1)`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    pub fn gelu_tanh(x: __m512) -> __m512 {
        const C: f32 = 0.797_884_6; // sqrt(2 / pi)
        let x2 = _mm512_mul_ps(x, x);
        let u = _mm512_mul_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(C)),
            _mm512_fmadd_ps(x2, _mm512_set1_ps(0.044_715), _mm512_set1_ps(1.0)),
        );
        let d = _mm512_add_ps(exp(_mm512_add_ps(u, u)), _mm512_set1_ps(1.0));
        _mm512_fnmadd_ps(x, recip(d), x)
    }

    /// Applies `act` to every element of `x` in place.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(crate) fn apply(act: Act, x: &mut [f32]) {
        // Closures inherit the enclosing target features, so each body inlines into `map`.
        // SAFETY: this function is compiled for AVX-512F, so the CPU has it, which is all
        // `map` needs.
        unsafe {
            match act {
                Act::GeluErf => map(x, |v| gelu_erf(v)),
                Act::GeluTanh => map(x, |v| gelu_tanh(v)),
                Act::Relu => map(x, |v| _mm512_max_ps(v, _mm512_setzero_ps())),
            }
        }
    }

    /// `x[i] = f(x[i])`, 16 lanes at a time, the tail under a mask.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[inline(always)]
    unsafe fn map(x: &mut [f32], f: impl Fn(__m512) -> __m512) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: lanes i..i + 16 lie inside `x`; AVX-512F by the caller's contract.
            unsafe { _mm512_storeu_ps(p.add(i), f(_mm512_loadu_ps(p.add(i)))) };
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            // SAFETY: the mask covers only lanes i..n, inside `x`; masked-off lanes are
            // neither read nor written.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, p.add(i));
                _mm512_mask_storeu_ps(p.add(i), m, f(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_erf_tanh_match_libm() {
        let mut worst = (0.0f32, 0.0f32, 0.0f32);
        let mut x = -20.0f32;
        while x < 20.0 {
            let e = (exp(x) - x.exp()).abs() / x.exp();
            worst.0 = worst.0.max(e);
            if x.abs() < 3.0 {
                worst.1 = worst.1.max((erf(x) - erf_ref(x)).abs());
            } else {
                worst.1 = worst.1.max((erf(x).abs() - 1.0).abs() - 2.3e-5);
            }
            worst.2 = worst.2.max((tanh(x) - x.tanh()).abs());
            x += 0.001;
        }
        assert!(worst.0 < 3e-7, "exp rel err {}", worst.0);
        assert!(worst.1 < 6e-7, "erf abs err {}", worst.1);
        assert!(worst.2 < 4e-7, "tanh abs err {}", worst.2);
        // Exactly zero below -87: a tiny normal here turns into denormals downstream.
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-87.5), 0.0);
        assert!(exp(-86.9) > 0.0);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    /// erf by its Maclaurin series in f64 (|x| < 3).
    fn erf_ref(x: f32) -> f32 {
        let x = x as f64;
        let mut sum = 0.0f64;
        let mut term = x;
        let mut n = 0.0f64;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
    }

    #[test]
    fn both_isas_agree() {
        let src: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.013).collect();
        for act in [Act::GeluErf, Act::GeluTanh, Act::Relu] {
            let mut a = src.clone();
            apply(Isa::Portable, act, &mut a);
            if Isa::Avx512.available() {
                let mut b = src.clone();
                apply(Isa::Avx512, act, &mut b);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-6);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_lanes_match_scalar_forms() {
        use std::arch::x86_64::*;
        if !Isa::Avx512.available() {
            return;
        }
        let mut x = -100.0f32;
        let mut worst = [0.0f32; 4];
        while x < 100.0 {
            let xs: [f32; 16] = std::array::from_fn(|i| x + i as f32 * 0.0007);
            let mut got = [[0.0f32; 16]; 4];
            // SAFETY: AVX-512F/DQ checked above.
            unsafe {
                let v = _mm512_loadu_ps(xs.as_ptr());
                _mm512_storeu_ps(got[0].as_mut_ptr(), avx512::exp(v));
                _mm512_storeu_ps(got[1].as_mut_ptr(), avx512::erf(v));
                _mm512_storeu_ps(got[2].as_mut_ptr(), avx512::gelu_erf(v));
                _mm512_storeu_ps(got[3].as_mut_ptr(), avx512::gelu_tanh(v));
            }
            for (l, &xl) in xs.iter().enumerate() {
                let want = [exp(xl), erf(xl), gelu_erf(xl), gelu_tanh(xl)];
                for f in 0..4 {
                    let err = (got[f][l] - want[f]).abs() / want[f].abs().max(1.0);
                    worst[f] = worst[f].max(err);
                }
            }
            x += 0.0113;
        }
        // exp relative; erf absolute; GELU relative to max(|y|, 1).
        assert!(worst[0] < 4e-7, "exp {}", worst[0]);
        assert!(worst[1] < 8e-7, "erf {}", worst[1]);
        assert!(worst[2] < 4e-7, "gelu {}", worst[2]);
        assert!(worst[3] < 6e-7, "gelu_new {}", worst[3]);
        // exp is exactly 0 below -87 on every lane (no denormal-making tails).
        let mut lanes = [0.0f32; 16];
        // SAFETY: AVX-512F/DQ checked above.
        unsafe {
            let v = _mm512_setr_ps(
                -1e30, -100.0, -87.5, -86.9, 0.0, 1.0, -1.0, 88.0, -88.0, -90.0, -87.01, -50.0,
                2.0, 3.0, -3.0, 100.0,
            );
            _mm512_storeu_ps(lanes.as_mut_ptr(), avx512::exp(v));
        }
        for (i, &want_zero) in [
            true, true, true, false, false, false, false, false, true, true, true,
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(lanes[i] == 0.0, want_zero, "lane {i}: {}", lanes[i]);
        }
        // Tails stay finite and exact where GELU saturates.
        let mut t = vec![-1e30f32, -100.0, 100.0, 1e30, 0.0, -0.0];
        apply(Isa::Avx512, Act::GeluTanh, &mut t);
        assert_eq!(&t[..5], &[-0.0, -0.0, 100.0, 1e30, 0.0][..]);
        let mut t = vec![-1e30f32, -100.0, 100.0, 1e30];
        apply(Isa::Avx512, Act::GeluErf, &mut t);
        assert_eq!(t, vec![-0.0, -0.0, 100.0, 1e30]);
    }
}
