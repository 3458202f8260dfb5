//! IEEE fp16 and bfloat16 storage through the `half` crate (docs/sources.md#other-number-formats).
//!
//! Conversion rounds to nearest even. Unlike an IEEE cast, values beyond the largest
//! finite number saturate to it (fp16: ±65504, bf16: ±3.3895e38) instead of becoming
//! infinities, because an infinite weight would poison every activation downstream.
//! Negative zero is stored as positive zero so that word 0 is the only zero code (the
//! bit-mask codec relies on a single zero code).

use ::half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::error::{check_len, Result};

/// Which 16-bit float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HalfKind {
    /// IEEE binary16: 5 exponent bits, 10 mantissa bits.
    Fp16,
    /// bfloat16: 8 exponent bits, 7 mantissa bits.
    Bf16,
}

impl HalfKind {
    /// Quantizes one value to its 16-bit pattern.
    #[inline]
    pub fn encode_one(self, w: f32) -> u32 {
        let code = match self {
            HalfKind::Fp16 => {
                let m = f16::MAX.to_f32();
                f16::from_f32(w.clamp(-m, m)).to_bits()
            }
            HalfKind::Bf16 => {
                let m = bf16::MAX.to_f32();
                bf16::from_f32(w.clamp(-m, m)).to_bits()
            }
        };
        if code == 0x8000 {
            0
        } else {
            u32::from(code)
        }
    }

    /// Decodes one 16-bit pattern (higher bits of `code` are ignored).
    #[inline]
    pub fn decode_word(self, code: u32) -> f32 {
        let b = code as u16;
        match self {
            HalfKind::Fp16 => f16::from_bits(b).to_f32(),
            HalfKind::Bf16 => bf16::from_bits(b).to_f32(),
        }
    }

    /// Encodes `data` into 16-bit words.
    pub fn encode(self, data: &[f32], codes: &mut [u32]) -> Result<()> {
        check_len("half codes", data.len(), codes.len())?;
        for (c, &w) in codes.iter_mut().zip(data) {
            *c = self.encode_one(w);
        }
        Ok(())
    }

    /// Decodes 16-bit words into values.
    pub fn decode(self, codes: &[u32], out: &mut [f32]) -> Result<()> {
        check_len("half values", codes.len(), out.len())?;
        for (v, &c) in out.iter_mut().zip(codes) {
            *v = self.decode_word(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_golden() {
        let h = HalfKind::Fp16;
        assert_eq!(h.encode_one(1.0), 0x3C00);
        assert_eq!(h.encode_one(-2.0), 0xC000);
        assert_eq!(h.encode_one(-0.0), 0);
        assert_eq!(h.encode_one(1e6), 0x7BFF, "saturates at 65504");
        assert_eq!(h.decode_word(0x7BFF), 65504.0);
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
        assert_eq!(h.encode_one(1.0 + 1.0 / 2048.0), 0x3C00);
        assert_eq!(h.encode_one(1.0 + 3.0 / 2048.0), 0x3C02);
    }

    #[test]
    fn bf16_golden() {
        let h = HalfKind::Bf16;
        assert_eq!(h.encode_one(1.0), 0x3F80);
        assert_eq!(h.encode_one(-3.0), 0xC040);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: goes to 1.0.
        assert_eq!(h.encode_one(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(h.decode_word(0x3F81), 1.0 + 1.0 / 128.0);
        assert_eq!(h.encode_one(f32::MAX), 0x7F7F);
    }

    #[test]
    fn round_trip_all_finite_words() {
        for h in [HalfKind::Fp16, HalfKind::Bf16] {
            for code in 0..=0xFFFFu32 {
                let v = h.decode_word(code);
                if v.is_finite() && code != 0x8000 {
                    assert_eq!(h.encode_one(v), code, "{h:?} {code:#x}");
                }
            }
        }
    }
}
