//! Number formats: each quantizes `f32` values onto its grid, encodes them to integer
//! codes (the bits that would sit in memory) and decodes codes back.
//!
//! [`Format`] names a format and its widths (what a plan asks for); [`Codec`] is a
//! format fitted to one tensor (scales, bias), ready to encode and decode. Codes are
//! always carried as `u32` holding the low [`Codec::bits`] bits, whatever the format,
//! so the bit-mask codec and fault injection handle every format alike.
//!
//! Decoders read only the low `bits` bits of each code and never fail on a code
//! value: a code corrupted by a memory fault decodes to whatever that bit pattern
//! means, as it would in hardware.

pub mod adaptivfloat;
pub mod edgebert;
pub mod fixed;
pub mod half;
pub mod int;

use serde::{Deserialize, Serialize};

use self::adaptivfloat::AdaptivFloat;
use self::edgebert::{BiasFit, EdgeBert8};
use self::fixed::FixedPoint;
use self::half::HalfKind;
use self::int::{IntQuantizer, IntSpec};
use crate::error::{check_len, Result};

/// A number format as a plan names it. Its string form (`int8`, `af8e3`, ...) is
/// described in [`crate::plan`]; serde uses that string form too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Format {
    /// Plain IEEE f32 (no quantization; 32-bit codes are the f32 bits).
    Fp32,
    /// IEEE binary16.
    Fp16,
    /// bfloat16.
    Bf16,
    /// Uniform integer.
    Int(IntSpec),
    /// AdaptivFloat with `bits` total and `exp_bits` exponent bits.
    AdaptivFloat {
        /// Word width `n`, 2..=16.
        bits: u8,
        /// Exponent width `e`, 1..=8.
        exp_bits: u8,
    },
    /// EdgeBERT's 8-bit 1/3/4 encoding with a 3-bit bias register.
    EdgeBert8,
    /// Signed fixed point Qm.n.
    Fixed {
        /// Integer bits `m`.
        int_bits: u8,
        /// Fraction bits `n`.
        frac_bits: u8,
    },
}

impl Format {
    /// Bits per stored code.
    pub fn bits(&self) -> u32 {
        match *self {
            Format::Fp32 => 32,
            Format::Fp16 | Format::Bf16 => 16,
            Format::Int(s) => u32::from(s.bits),
            Format::AdaptivFloat { bits, .. } => u32::from(bits),
            Format::EdgeBert8 => 8,
            Format::Fixed {
                int_bits,
                frac_bits,
            } => 1 + u32::from(int_bits) + u32::from(frac_bits),
        }
    }

    /// Checks widths without data, so that a bad plan fails before any work.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Format::Int(s) => s.validate(),
            Format::AdaptivFloat { bits, exp_bits } => {
                AdaptivFloat::with_bias(bits, exp_bits, 0).map(|_| ())
            }
            Format::Fixed {
                int_bits,
                frac_bits,
            } => FixedPoint::new(int_bits, frac_bits).map(|_| ()),
            Format::Fp32 | Format::Fp16 | Format::Bf16 | Format::EdgeBert8 => Ok(()),
        }
    }
}

/// A format fitted to one tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Codec {
    /// f32 bit patterns.
    Fp32,
    /// fp16 or bf16 bit patterns.
    Half(HalfKind),
    /// Uniform integer with per-tensor or per-channel scales.
    Int(IntQuantizer),
    /// AdaptivFloat with a fitted bias.
    AdaptivFloat(AdaptivFloat),
    /// EdgeBERT bytes with a fitted 3-bit bias register.
    EdgeBert(EdgeBert8),
    /// Fixed point.
    Fixed(FixedPoint),
}

impl Codec {
    /// Fits `format` to `data`; `row_len` is the channel length used by per-channel
    /// integer formats (see [`crate::NamedTensor::row_len`]).
    pub fn fit(format: &Format, data: &[f32], row_len: usize) -> Result<Codec> {
        Ok(match *format {
            Format::Fp32 => Codec::Fp32,
            Format::Fp16 => Codec::Half(HalfKind::Fp16),
            Format::Bf16 => Codec::Half(HalfKind::Bf16),
            Format::Int(spec) => Codec::Int(IntQuantizer::fit(spec, data, row_len)?),
            Format::AdaptivFloat { bits, exp_bits } => {
                Codec::AdaptivFloat(AdaptivFloat::fit(bits, exp_bits, data)?)
            }
            Format::EdgeBert8 => Codec::EdgeBert(EdgeBert8::fit(data)?),
            Format::Fixed {
                int_bits,
                frac_bits,
            } => Codec::Fixed(FixedPoint::new(int_bits, frac_bits)?),
        })
    }

    /// Bits per code.
    pub fn bits(&self) -> u32 {
        match self {
            Codec::Fp32 => 32,
            Codec::Half(_) => 16,
            Codec::Int(q) => u32::from(q.spec().bits),
            Codec::AdaptivFloat(f) => f.bits(),
            Codec::EdgeBert(_) => 8,
            Codec::Fixed(f) => f.bits(),
        }
    }

    /// Encodes `data` into `codes` (same length).
    pub fn encode(&self, data: &[f32], codes: &mut [u32]) -> Result<()> {
        match self {
            Codec::Fp32 => {
                check_len("fp32 codes", data.len(), codes.len())?;
                for (c, &w) in codes.iter_mut().zip(data) {
                    // -0.0 is stored as +0.0 so that 0 is the only zero code.
                    *c = (w + 0.0).to_bits();
                }
                Ok(())
            }
            Codec::Half(h) => h.encode(data, codes),
            Codec::Int(q) => q.encode(data, codes),
            Codec::AdaptivFloat(f) => f.encode(data, codes),
            Codec::EdgeBert(f) => f.as_adaptivfloat().encode(data, codes),
            Codec::Fixed(f) => f.encode(data, codes),
        }
    }

    /// Decodes `codes` into `out` (same length).
    pub fn decode(&self, codes: &[u32], out: &mut [f32]) -> Result<()> {
        match self {
            Codec::Fp32 => {
                check_len("fp32 values", codes.len(), out.len())?;
                for (v, &c) in out.iter_mut().zip(codes) {
                    *v = f32::from_bits(c);
                }
                Ok(())
            }
            Codec::Half(h) => h.decode(codes, out),
            Codec::Int(q) => q.decode(codes, out),
            Codec::AdaptivFloat(f) => f.decode(codes, out),
            Codec::EdgeBert(f) => f.as_adaptivfloat().decode(codes, out),
            Codec::Fixed(f) => f.decode(codes, out),
        }
    }

    /// Fake quantization: replaces each value by the grid value it encodes to.
    pub fn quantize(&self, data: &mut [f32]) -> Result<()> {
        let mut codes = vec![0u32; data.len()];
        self.encode(data, &mut codes)?;
        self.decode(&codes, data)
    }

    /// The code(s) that stand for 0.0; pruned weights encode to these, and the
    /// bit-mask codec leaves them out.
    pub fn zero_codes(&self, numel: usize) -> ZeroCodes {
        match self {
            Codec::Int(q) => ZeroCodes::per_row(q.zero_codes(), q.row_len()),
            _ => ZeroCodes::uniform(0, numel),
        }
    }

    /// Bits of per-tensor side information (scales, zero points, bias register),
    /// reported apart from the payload formula of docs/sources.md#bit-mask-storage.
    pub fn metadata_bits(&self) -> u64 {
        match self {
            Codec::Int(q) => q.metadata_bits(),
            Codec::AdaptivFloat(_) => 8,
            Codec::EdgeBert(_) => 3,
            Codec::Fp32 | Codec::Half(_) | Codec::Fixed(_) => 0,
        }
    }

    /// The EdgeBERT bias fit, when this is an EdgeBERT codec.
    pub fn edgebert_bias(&self) -> Option<BiasFit> {
        match self {
            Codec::EdgeBert(f) => Some(f.bias_fit()),
            _ => None,
        }
    }
}

/// The zero code of each channel: one code for the whole tensor, or one per run of
/// `row_len` elements (asymmetric per-channel integers have a zero point per row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZeroCodes {
    codes: Vec<u32>,
    row_len: usize,
}

impl ZeroCodes {
    /// The same zero code for all `numel` elements.
    pub fn uniform(code: u32, numel: usize) -> Self {
        ZeroCodes {
            codes: vec![code],
            row_len: numel.max(1),
        }
    }

    /// One zero code per run of `row_len` elements.
    pub fn per_row(codes: Vec<u32>, row_len: usize) -> Self {
        ZeroCodes {
            codes,
            row_len: row_len.max(1),
        }
    }

    /// Elements per run sharing one zero code.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Zero code of run `row`; runs past the end reuse the last code.
    pub fn code(&self, row: usize) -> u32 {
        self.codes
            .get(row)
            .or(self.codes.last())
            .copied()
            .unwrap_or(0)
    }
}

/// The low bits of `round_half_even(x)` in two's complement, for `|x| <= 2^22`.
///
/// After `x + 1.5 * 2^23` the f32 mantissa holds `2^22 + round(x)`, so the integer is
/// read straight from the bit pattern: no float-to-int conversion (whose saturating
/// semantics would block vectorization) and no branch.
#[inline(always)]
pub(crate) fn rounded_low_bits(x: f32) -> u32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC).to_bits()
}

/// Rounds half to even without a libm call, for `|x| <= 2^51`: adding and removing
/// `1.5 * 2^52` leaves the nearest integer under the default rounding mode.
#[inline(always)]
pub(crate) fn round_half_even_f64(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    (x + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_free_rounding_is_half_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (2.4, 2),
            (-127.5, -128),
        ];
        for (x, r) in cases {
            assert_eq!(rounded_low_bits(x) & 0xFF, (r as u32) & 0xFF, "{x}");
            assert_eq!(round_half_even_f64(f64::from(x)), f64::from(r), "{x}");
        }
        assert_eq!(rounded_low_bits(-1.0) & 0xF, 0xF);
    }

    #[test]
    fn codec_round_trips_every_format() {
        let data: Vec<f32> = (0..48)
            .map(|i| ((i * 29 % 48) as f32 - 17.0) * 0.031)
            .collect();
        let formats = [
            Format::Fp32,
            Format::Fp16,
            Format::Bf16,
            Format::Int(IntSpec {
                bits: 4,
                symmetric: false,
                per_channel: true,
            }),
            Format::AdaptivFloat {
                bits: 6,
                exp_bits: 2,
            },
            Format::EdgeBert8,
            Format::Fixed {
                int_bits: 2,
                frac_bits: 5,
            },
        ];
        for f in formats {
            let codec = Codec::fit(&f, &data, 12).unwrap();
            assert_eq!(codec.bits(), f.bits());
            let mut q = data.clone();
            codec.quantize(&mut q).unwrap();
            let mut codes = vec![0; 48];
            codec.encode(&q, &mut codes).unwrap();
            let mut back = vec![0.0; 48];
            codec.decode(&codes, &mut back).unwrap();
            assert_eq!(q, back, "{f:?}: quantize is idempotent through codes");
            assert!(codes.iter().all(|&c| u64::from(c) < 1u64 << codec.bits()));
        }
    }

    #[test]
    fn zero_codes_per_row_for_asymmetric_int() {
        let spec = IntSpec {
            bits: 4,
            symmetric: false,
            per_channel: true,
        };
        // Row 0 range [-1, 14] -> z = 1; row 1 range [0, 15] -> z = 0.
        let codec = Codec::fit(&Format::Int(spec), &[-1.0, 14.0, 0.0, 15.0], 2).unwrap();
        let z = codec.zero_codes(4);
        assert_eq!((z.code(0), z.code(1), z.row_len()), (1, 0, 2));
        assert_eq!(codec.metadata_bits(), 2 * (32 + 4));
    }
}
