//! Signed fixed point Qm.n: a sign bit, `m` integer bits and `n` fraction bits, so a
//! word is `1 + m + n` bits wide (Q4.11 is 16 bits; EdgeBERT's activations are Q5.10,
//! docs/sources.md#edgebert-datapath).
//!
//! A word is the two's-complement integer `q` and means `q / 2^n`. Encoding rounds
//! `w * 2^n` half to even and saturates at `-2^(m+n)` and `2^(m+n) - 1`, so the
//! range is `[-2^m, 2^m - 2^-n]`.

use super::round_half_even_f64;
use crate::error::{check_len, out_of_range, Result};

/// A Qm.n format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedPoint {
    int_bits: u8,
    frac_bits: u8,
}

impl FixedPoint {
    /// Fails unless the word `1 + int_bits + frac_bits` is 2..=32 bits wide.
    pub fn new(int_bits: u8, frac_bits: u8) -> Result<Self> {
        let total = 1 + u32::from(int_bits) + u32::from(frac_bits);
        if !(2..=32).contains(&total) {
            return Err(out_of_range(
                "fixed.bits",
                format!("1 + {int_bits} + {frac_bits} = {total}"),
                "2..=32 bits in all",
            ));
        }
        Ok(FixedPoint {
            int_bits,
            frac_bits,
        })
    }

    /// Word width `1 + m + n`.
    pub fn bits(&self) -> u32 {
        1 + u32::from(self.int_bits) + u32::from(self.frac_bits)
    }

    /// Integer bits `m`.
    pub fn int_bits(&self) -> u8 {
        self.int_bits
    }

    /// Fraction bits `n`.
    pub fn frac_bits(&self) -> u8 {
        self.frac_bits
    }

    /// Quantizes one value to its word (low `bits()` bits of the result).
    #[inline]
    pub fn encode_one(&self, w: f32) -> u32 {
        let top = (1i64 << (self.bits() - 1)) as f64;
        let x = (f64::from(w) * self.step_inv()).clamp(-top, top - 1.0);
        let q = round_half_even_f64(x) as i64;
        (q as u32) & self.mask()
    }

    /// Decodes one word (only its low `bits()` bits are read).
    #[inline]
    pub fn decode_word(&self, code: u32) -> f32 {
        let shift = 32 - self.bits();
        let q = ((code << shift) as i32) >> shift;
        (f64::from(q) / self.step_inv()) as f32
    }

    /// Encodes `data` into words.
    pub fn encode(&self, data: &[f32], codes: &mut [u32]) -> Result<()> {
        check_len("fixed codes", data.len(), codes.len())?;
        for (c, &w) in codes.iter_mut().zip(data) {
            *c = self.encode_one(w);
        }
        Ok(())
    }

    /// Decodes words into values.
    pub fn decode(&self, codes: &[u32], out: &mut [f32]) -> Result<()> {
        check_len("fixed values", codes.len(), out.len())?;
        for (v, &c) in out.iter_mut().zip(codes) {
            *v = self.decode_word(c);
        }
        Ok(())
    }

    fn step_inv(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    fn mask(&self) -> u32 {
        (((1u64) << self.bits()) - 1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_11_golden() {
        let f = FixedPoint::new(4, 11).unwrap();
        assert_eq!(f.bits(), 16);
        // 1.5 * 2048 = 3072.
        assert_eq!(f.encode_one(1.5), 3072);
        // Ties: 0.5 step and 1.5 steps go to the even neighbour.
        assert_eq!(f.encode_one(0.5 / 2048.0), 0);
        assert_eq!(f.encode_one(1.5 / 2048.0), 2);
        assert_eq!(f.encode_one(-1.5 / 2048.0), 0xFFFE);
        // Saturation at 2^4 - 2^-11 and -2^4.
        assert_eq!(f.encode_one(100.0), 0x7FFF);
        assert_eq!(f.decode_word(0x7FFF), 16.0 - 1.0 / 2048.0);
        assert_eq!(f.encode_one(-100.0), 0x8000);
        assert_eq!(f.decode_word(0x8000), -16.0);
        assert_eq!(f.decode_word(0xFFFE), -2.0 / 2048.0);
    }

    #[test]
    fn round_trip_q1_2_all_words() {
        let f = FixedPoint::new(1, 2).unwrap();
        for code in 0..16u32 {
            assert_eq!(f.encode_one(f.decode_word(code)), code);
        }
        assert_eq!(f.decode_word(0b0111), 1.75);
        assert_eq!(f.decode_word(0b1000), -2.0);
    }

    #[test]
    fn rejects_too_wide() {
        assert!(FixedPoint::new(16, 16).is_err());
        assert!(FixedPoint::new(0, 0).is_err());
        assert!(FixedPoint::new(15, 16).is_ok());
    }
}
