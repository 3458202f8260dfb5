//! EdgeBERT's 8-bit weight encoding (harvard-acc/EdgeBERT `hw/cmod/include/Spec.h` and
//! `AdpfloatSpec.h`; docs/sources.md#edgebert-weight-encoding): AdaptivFloat(8, 3) with a
//! 3-bit per-tensor exponent-bias register.
//!
//! A byte is `s eee mmmm` (sign in bit 7, exponent in bits 4..7, mantissa in bits
//! 0..4) and means `±2^(bias + E) (1 + M/16)`; byte `0x00` (and `0x80`) is zero, there
//! are no denormals. The hardware stores the bias as an unsigned 3-bit field
//! `bias_stored` in 0..=7 and uses
//!
//! ```text
//! bias = bias_stored + BIAS_OFFSET      (BIAS_OFFSET = -10, so bias is in -10..=-3)
//! ```
//!
//! (EdgeBERT's tooling writes `stored = bias + 10`.) The representable top exponent
//! `bias + 7` is thus in -3..=4: a tensor fits the register exactly when
//! `floor(log2(max|W|))` is in -3..=4, i.e. `0.125 <= max|W| < 32`.
//!
//! Out of range, the AdaptivFloat bias is clamped to the register and the clamp is
//! reported in [`BiasFit`]: a tensor with `max|W| < 0.125` uses bias -10 (its largest
//! values keep full precision, its smallest flush to zero earlier than AdaptivFloat
//! would), and a tensor with `max|W| >= 32` uses bias -3 (its largest values saturate
//! at `2^4 * 1.9375 = 31`).

use serde::Serialize;

use super::adaptivfloat::{floor_log2, AdaptivFloat};
use crate::error::{check_len, out_of_range, Result};

/// Added to the stored 3-bit bias to get the exponent bias (EdgeBERT's `kAdpfloatOffset`).
pub const BIAS_OFFSET: i32 = -10;
/// Largest value of the 3-bit bias register.
pub const MAX_STORED_BIAS: u8 = 7;

/// How a tensor's wanted bias was mapped onto the 3-bit register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BiasFit {
    /// The AdaptivFloat bias `floor(log2(max|W|)) - 7` the tensor asks for.
    pub wanted: i32,
    /// The bias actually used, `stored + BIAS_OFFSET`.
    pub used: i32,
    /// The 3-bit register value.
    pub stored: u8,
    /// True when `wanted` was outside -10..=-3 and had to be clamped.
    pub clamped: bool,
}

/// The EdgeBERT 8-bit format with a fitted bias register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeBert8 {
    inner: AdaptivFloat,
    fit: BiasFit,
}

impl EdgeBert8 {
    /// The format for a given 3-bit register value (0..=7).
    pub fn from_stored_bias(stored: u8) -> Result<Self> {
        if stored > MAX_STORED_BIAS {
            return Err(out_of_range("edgebert.bias_stored", stored, "0..=7"));
        }
        let used = i32::from(stored) + BIAS_OFFSET;
        Ok(EdgeBert8 {
            inner: AdaptivFloat::with_bias(8, 3, used)?,
            fit: BiasFit {
                wanted: used,
                used,
                stored,
                clamped: false,
            },
        })
    }

    /// Fits the register to `data`, clamping (and reporting) when out of range.
    /// An all-zero tensor gets `stored = 0` without a clamp being reported.
    pub fn fit(data: &[f32]) -> Result<Self> {
        let max_abs = data.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let wanted = floor_log2(max_abs).map_or(BIAS_OFFSET, |t| t - 7);
        let stored = (wanted - BIAS_OFFSET).clamp(0, i32::from(MAX_STORED_BIAS)) as u8;
        let mut f = Self::from_stored_bias(stored)?;
        f.fit.wanted = wanted;
        f.fit.clamped = wanted != f.fit.used;
        Ok(f)
    }

    /// How the bias was chosen.
    pub fn bias_fit(&self) -> BiasFit {
        self.fit
    }

    /// The 3-bit register value.
    pub fn stored_bias(&self) -> u8 {
        self.fit.stored
    }

    /// The same format seen as AdaptivFloat(8, 3).
    pub fn as_adaptivfloat(&self) -> AdaptivFloat {
        self.inner
    }

    /// Quantizes one value to its byte.
    #[inline]
    pub fn encode_byte(&self, w: f32) -> u8 {
        self.inner.encode_one(w) as u8
    }

    /// Decodes one byte.
    #[inline]
    pub fn decode_byte(&self, b: u8) -> f32 {
        self.inner.decode_word(u32::from(b))
    }

    /// Encodes `data` into bytes (`out.len() == data.len()`).
    pub fn encode_bytes(&self, data: &[f32], out: &mut [u8]) -> Result<()> {
        check_len("edgebert bytes", data.len(), out.len())?;
        for (o, &w) in out.iter_mut().zip(data) {
            *o = self.encode_byte(w);
        }
        Ok(())
    }

    /// Decodes bytes into values (`out.len() == bytes.len()`).
    pub fn decode_bytes(&self, bytes: &[u8], out: &mut [f32]) -> Result<()> {
        check_len("edgebert values", bytes.len(), out.len())?;
        for (v, &b) in out.iter_mut().zip(bytes) {
            *v = self.decode_byte(b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_tensor_matches_adaptivfloat() {
        // max 3.0 -> wanted bias -6 -> stored 4.
        let data = [3.0f32, -0.5, 0.01, 0.0];
        let f = EdgeBert8::fit(&data).unwrap();
        let fit = f.bias_fit();
        assert_eq!(
            (fit.wanted, fit.used, fit.stored, fit.clamped),
            (-6, -6, 4, false)
        );
        let af = AdaptivFloat::fit(8, 3, &data).unwrap();
        for &w in &data {
            assert_eq!(u32::from(f.encode_byte(w)), af.encode_one(w));
        }
        // 0.5 = 2^-1: E = -1 - (-6) = 5, M = 0; sign bit set.
        assert_eq!(f.encode_byte(-0.5), 0b1101_0000);
        assert_eq!(f.decode_byte(0b0111_1000), 3.0);
        assert_eq!(f.decode_byte(0x00), 0.0);
        assert_eq!(f.decode_byte(0x80), 0.0);
    }

    #[test]
    fn small_tensor_clamps_to_lowest_bias() {
        // max 0.05 -> floor(log2) = -5 -> wanted -12 < -10.
        let f = EdgeBert8::fit(&[0.05, -0.001]).unwrap();
        let fit = f.bias_fit();
        assert_eq!(
            (fit.wanted, fit.used, fit.stored, fit.clamped),
            (-12, -10, 0, true)
        );
        // min = 2^-10 * 1.0625 = 0.00103759765625, so 0.001 (>= min/2) becomes -min.
        assert_eq!(f.decode_byte(f.encode_byte(-0.001)), -0.001_037_597_7);
        // 0.05 = 1.6 * 2^-5 -> E = 5, M = round(9.6) = 10 -> 1.625 * 2^-5.
        assert_eq!(f.encode_byte(0.05), 0b0101_1010);
        assert_eq!(f.decode_byte(0b0101_1010), 0.050_781_25);
    }

    #[test]
    fn large_tensor_clamps_to_highest_bias_and_saturates() {
        // max 100 -> floor(log2) = 6 -> wanted -1 > -3.
        let f = EdgeBert8::fit(&[100.0, 1.0]).unwrap();
        let fit = f.bias_fit();
        assert_eq!(
            (fit.wanted, fit.used, fit.stored, fit.clamped),
            (-1, -3, 7, true)
        );
        assert_eq!(f.encode_byte(100.0), 0x7F);
        assert_eq!(f.decode_byte(0x7F), 31.0);
        assert_eq!(f.decode_byte(0xFF), -31.0);
    }

    #[test]
    fn every_byte_round_trips() {
        for stored in 0..=7 {
            let f = EdgeBert8::from_stored_bias(stored).unwrap();
            for b in 0..=255u8 {
                let back = f.encode_byte(f.decode_byte(b));
                let expect = if b & 0x7F == 0 { 0 } else { b };
                assert_eq!(back, expect, "stored {stored} byte {b:#04x}");
            }
        }
        assert!(EdgeBert8::from_stored_bias(8).is_err());
    }
}
