//! AdaptivFloat (Tambe et al., arXiv 1909.13271, DAC 2020), as defined in
//! docs/sources.md#adaptivfloat (the range and underflow rules of EdgeBERT's hardware).
//!
//! An `n`-bit word holds a sign, `e` exponent bits and `m = n - 1 - e` mantissa bits.
//! One bias per tensor, `bias = floor(log2(max|W|)) - (2^e - 1)`, places the top of the
//! exponent range at the tensor's largest magnitude. With stored exponent `E` and
//! mantissa `M` a word means `±2^(bias + E) * (1 + M / 2^m)`, except that the word with
//! `E = 0, M = 0` is reserved for zero; there are no denormals. Hence
//! `min = 2^bias (1 + 2^-m)` and `max = 2^(bias + 2^e - 1) (2 - 2^-m)`.
//!
//! Quantization: `|w| < min/2 -> 0`; `min/2 <= |w| < min -> ±min`; `|w| > max -> ±max`;
//! otherwise the mantissa is rounded to `m` bits half to even (a carry moves to the
//! next exponent). The comparisons use `|w|` before rounding, as EdgeBERT's `set_value` does.
//!
//! Word layout: sign in bit `n-1`, exponent in bits `m..n-1`, mantissa in bits `0..m`,
//! so AdaptivFloat(8, 3) words are EdgeBERT's 1/3/4 words. Zero always encodes as
//! word 0 (the negative zero word also decodes to 0.0).
//!
//! Encoding works on the IEEE-754 bits of `|w|`: adding the half-to-even rounding
//! constant to the f32 pattern and shifting by `23 - m` rounds the mantissa and carries
//! into the exponent in one integer add, so the inner loop has no data-dependent
//! branch. This needs `min` to be a normal f32, so the bias is clamped to `>= -126`
//! (only a tensor with `max|W| < 2^-119` or so would notice).

use crate::error::{check_len, out_of_range, Result};

/// Smallest bias for which `2^bias` is a normal f32 (see module docs).
const MIN_BIAS: i32 = -126;

/// A fitted AdaptivFloat format: widths and the per-tensor exponent bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivFloat {
    bits: u32,
    exp_bits: u32,
    bias: i32,
}

impl AdaptivFloat {
    /// A format with an explicit `bias`; fails on widths outside `bits` 2..=16,
    /// `exp_bits` 1..=7 with at least zero mantissa bits, or a bias that would put
    /// `min` below the normal f32 range or `max` above it.
    pub fn with_bias(bits: u8, exp_bits: u8, bias: i32) -> Result<Self> {
        validate_widths(bits, exp_bits)?;
        let top = bias + (1 << exp_bits) - 1;
        if bias < MIN_BIAS || top > 127 {
            return Err(out_of_range(
                "adaptivfloat.bias",
                bias,
                format!("{MIN_BIAS}..={}", 127 - (1 << exp_bits) + 1),
            ));
        }
        Ok(AdaptivFloat {
            bits: u32::from(bits),
            exp_bits: u32::from(exp_bits),
            bias,
        })
    }

    /// Fits the bias to `data` (docs/sources.md#adaptivfloat); an all-zero tensor gets the bias of
    /// `max|W| = 1`, which is harmless because every word is then the zero word.
    pub fn fit(bits: u8, exp_bits: u8, data: &[f32]) -> Result<Self> {
        validate_widths(bits, exp_bits)?;
        let bias = fitted_bias(exp_bits, data).max(MIN_BIAS);
        Self::with_bias(bits, exp_bits, bias)
    }

    /// Total word width `n`.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Exponent width `e`.
    pub fn exp_bits(&self) -> u32 {
        self.exp_bits
    }

    /// Mantissa width `m = n - 1 - e`.
    pub fn mant_bits(&self) -> u32 {
        self.bits - 1 - self.exp_bits
    }

    /// The per-tensor exponent bias.
    pub fn bias(&self) -> i32 {
        self.bias
    }

    /// Smallest non-zero magnitude, `2^bias (1 + 2^-m)`.
    pub fn min_value(&self) -> f32 {
        self.decode_word(1)
    }

    /// Largest magnitude, `2^(bias + 2^e - 1) (2 - 2^-m)`.
    pub fn max_value(&self) -> f32 {
        self.decode_word(self.mag_mask())
    }

    /// Quantizes one value to its word.
    #[inline]
    pub fn encode_one(&self, w: f32) -> u32 {
        self.encoder().encode(w)
    }

    /// Decodes one word (only its low `n` bits are read).
    #[inline]
    pub fn decode_word(&self, code: u32) -> f32 {
        let m = self.mant_bits();
        let mag = code & self.mag_mask();
        let sign = (code >> (self.bits - 1)) & 1;
        let exp_base = (self.bias + 127) as u32;
        let f = ((mag + (exp_base << m)) << (23 - m)) | (sign << 31);
        if mag == 0 {
            0.0
        } else {
            f32::from_bits(f)
        }
    }

    /// Encodes `data` into words (`codes.len() == data.len()`).
    pub fn encode(&self, data: &[f32], codes: &mut [u32]) -> Result<()> {
        check_len("adaptivfloat codes", data.len(), codes.len())?;
        let enc = self.encoder();
        for (c, &w) in codes.iter_mut().zip(data) {
            *c = enc.encode(w);
        }
        Ok(())
    }

    /// Decodes words into values (`out.len() == codes.len()`).
    pub fn decode(&self, codes: &[u32], out: &mut [f32]) -> Result<()> {
        check_len("adaptivfloat values", codes.len(), out.len())?;
        for (v, &c) in out.iter_mut().zip(codes) {
            *v = self.decode_word(c);
        }
        Ok(())
    }

    /// Mask of the magnitude (exponent and mantissa) bits.
    fn mag_mask(&self) -> u32 {
        (1 << (self.bits - 1)) - 1
    }

    /// Precomputes the constants of the encoding loop.
    fn encoder(&self) -> Encoder {
        let m = self.mant_bits();
        let shift = 23 - m;
        Encoder {
            // Halving a normal f32 is exact, so min/2 is compared without error.
            half_min: (self.min_value() * 0.5).to_bits(),
            min: self.min_value().to_bits(),
            max: self.max_value().to_bits(),
            max_code: self.mag_mask(),
            shift,
            round_half: if shift == 0 {
                0
            } else {
                (1 << (shift - 1)) - 1
            },
            odd_mask: u32::from(shift != 0),
            exp_offset: ((self.bias + 127) as u32) << m,
            sign_shift: 32 - self.bits,
        }
    }
}

/// Constants of the branch-free encoding loop (all magnitudes as f32 bit patterns,
/// which order like the values they stand for).
struct Encoder {
    half_min: u32,
    min: u32,
    max: u32,
    max_code: u32,
    shift: u32,
    round_half: u32,
    odd_mask: u32,
    exp_offset: u32,
    sign_shift: u32,
}

impl Encoder {
    #[inline(always)]
    fn encode(&self, w: f32) -> u32 {
        let bits = w.to_bits();
        let a = bits & 0x7FFF_FFFF;
        let sign = (bits >> 31) << (31 - self.sign_shift);
        let odd = (a >> self.shift) & self.odd_mask;
        let rounded = (a + self.round_half + odd) >> self.shift;
        let mut mag = rounded.wrapping_sub(self.exp_offset);
        mag = if a > self.max { self.max_code } else { mag };
        mag = if a < self.min { 1 } else { mag };
        let word = sign | mag;
        if a < self.half_min {
            0
        } else {
            word
        }
    }
}

/// Checks `bits` 2..=16, `exp_bits` 1..=8 and `m = bits - 1 - exp_bits` in 0..=23.
fn validate_widths(bits: u8, exp_bits: u8) -> Result<()> {
    if !(2..=16).contains(&bits) {
        return Err(out_of_range("adaptivfloat.bits", bits, "2..=16"));
    }
    // 2^e - 1 exponent steps above the bias must stay inside f32's normal exponents
    // (-126..=127) for the bit-level encoder, which e = 8 cannot.
    if !(1..=7).contains(&exp_bits) || exp_bits > bits - 1 {
        return Err(out_of_range(
            "adaptivfloat.exp_bits",
            exp_bits,
            format!(
                "1..={} (at most bits - 1, and at most 7 so the exponent range fits f32)",
                (bits - 1).min(7)
            ),
        ));
    }
    Ok(())
}

/// `floor(log2(max|W|)) - (2^e - 1)`, from the f32 exponent field for exactness.
fn fitted_bias(exp_bits: u8, data: &[f32]) -> i32 {
    let max_abs = data.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    let top = floor_log2(max_abs).unwrap_or(0);
    top - ((1 << exp_bits) - 1)
}

/// `floor(log2(x))` for finite `x > 0`, exact also for subnormals; `None` for 0.
pub(crate) fn floor_log2(x: f32) -> Option<i32> {
    if x.is_nan() || x <= 0.0 || x.is_infinite() {
        return None;
    }
    let bits = x.to_bits();
    let field = (bits >> 23) as i32;
    if field > 0 {
        Some(field - 127)
    } else {
        // Subnormal: value = mantissa * 2^-149.
        Some(31 - (bits & 0x7F_FFFF).leading_zeros() as i32 - 149)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn af83() -> AdaptivFloat {
        // max|W| = 3.0 -> floor(log2 3) = 1 -> bias = 1 - 7 = -6.
        AdaptivFloat::fit(8, 3, &[3.0, -0.1, 0.5]).unwrap()
    }

    #[test]
    fn fit_and_range_match_reference_formulas() {
        let f = af83();
        assert_eq!(f.bias(), -6);
        assert_eq!(f.mant_bits(), 4);
        assert_eq!(f.min_value(), 0.015625 * 1.0625); // 2^-6 (1 + 2^-4)
        assert_eq!(f.max_value(), 2.0 * 1.9375); // 2^(-6+7) (2 - 2^-4)
        assert_eq!(floor_log2(1.0), Some(0));
        assert_eq!(floor_log2(0.999_999_94), Some(-1));
        assert_eq!(floor_log2(f32::from_bits(1)), Some(-149));
        assert_eq!(floor_log2(0.0), None);
    }

    #[test]
    fn golden_values_af8e3() {
        let f = af83();
        let min = 0.015625f32 * 1.0625; // 2^-6 (1 + 2^-4), exact
        let cases: [(f32, u32, f32); 12] = [
            (0.0, 0x00, 0.0),
            (0.008, 0x00, 0.0),     // < min/2 = 0.00830078125 -> zero
            (-0.0083, 0x00, 0.0),   // just below -min/2 in magnitude -> zero
            (0.0085, 0x01, min),    // min/2 <= |w| < min -> min
            (-0.0166, 0x81, -min),  // negative side, still below min
            (3.0, 0x78, 3.0),       // E = 7, M = 8
            (-5.0, 0xFF, -3.875),   // clamp to -max
            (3.9, 0x7F, 3.875),     // above max -> max
            (1.03125, 0x60, 1.0),   // mantissa 0.5 ulp: tie to even (0)
            (1.09375, 0x62, 1.125), // mantissa 1.5 ulp: tie to even (2)
            (1.96875, 0x70, 2.0),   // 15.5 ulp rounds up, carry into exponent
            (0.015625, 0x01, min),  // 2^bias itself is the reserved word -> min
        ];
        for (w, code, value) in cases {
            let c = f.encode_one(w);
            assert_eq!(c, code, "encode {w}");
            assert_eq!(f.decode_word(c), value, "decode {w}");
        }
        assert_eq!(f.decode_word(0x80), 0.0, "negative zero word decodes to 0");
    }

    #[test]
    fn golden_values_af4e2() {
        // n=4, e=2, m=1; max|W| = 0.75 -> floor(log2) = -1 -> bias = -4.
        let f = AdaptivFloat::fit(4, 2, &[0.75, -0.2]).unwrap();
        assert_eq!(f.bias(), -4);
        assert_eq!(f.min_value(), 0.0625 * 1.5);
        assert_eq!(f.max_value(), 0.5 * 1.5);
        assert_eq!(f.encode_one(0.25), 0b0100); // E=2, M=0
                                                // -1.25 * 2^-2: the mantissa is half a step above 1.0, a tie, so it rounds to
                                                // the even M = 0.
        assert_eq!(f.encode_one(-0.3125), 0b1100);
        assert_eq!(f.decode_word(0b1100), -0.25);
    }

    #[test]
    fn round_trip_is_identity_on_the_grid() {
        for (n, e) in [(8, 3), (6, 2), (5, 2), (4, 2), (8, 4), (16, 5)] {
            let f = AdaptivFloat::fit(n, e, &[1.7]).unwrap();
            for code in 0..(1u32 << n) {
                let v = f.decode_word(code);
                let back = f.encode_one(v);
                let expect = if code & f.mag_mask() == 0 { 0 } else { code };
                assert_eq!(back, expect, "n {n} e {e} code {code:#x}");
            }
        }
    }

    #[test]
    fn rejects_bad_widths() {
        assert!(AdaptivFloat::fit(8, 0, &[1.0]).is_err());
        assert!(AdaptivFloat::fit(8, 8, &[1.0]).is_err());
        assert!(AdaptivFloat::fit(17, 3, &[1.0]).is_err());
        assert!(AdaptivFloat::with_bias(8, 3, 121).is_err());
    }
}
