//! How a tensor's codes sit in memory: densely packed, or bit-mask encoded.
//!
//! [`StoredCodes`] is the physical image that storage is counted on and that faults
//! are injected into; decoding it gives back one code per element.

use serde::{Deserialize, Serialize};

use crate::bitmask::{BitmaskTensor, DecodeStats};
use crate::bits::PackedBits;
use crate::error::{check_len, Result};
use crate::formats::ZeroCodes;

/// The storage layout a plan asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Every code stored, `numel * bits` bits.
    #[default]
    Dense,
    /// Mask plus non-zero codes, `nnz * bits + numel` bits.
    Bitmask,
}

/// A tensor's codes as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredCodes {
    /// Packed codes, `bits` each.
    Dense {
        /// The packed codes.
        packed: PackedBits,
        /// Bits per code.
        bits: u32,
        /// Number of codes.
        numel: usize,
    },
    /// Bit-mask layout.
    Bitmask(BitmaskTensor),
}

impl StoredCodes {
    /// Stores `codes` of `bits` bits in `encoding`.
    pub fn encode(codes: &[u32], bits: u32, encoding: Encoding, zero: &ZeroCodes) -> Result<Self> {
        Ok(match encoding {
            Encoding::Dense => StoredCodes::Dense {
                packed: PackedBits::pack(codes, bits),
                bits,
                numel: codes.len(),
            },
            Encoding::Bitmask => StoredCodes::Bitmask(BitmaskTensor::encode(codes, bits, zero)?),
        })
    }

    /// Reads the codes back into `out`; see [`BitmaskTensor::decode`] for how a
    /// corrupted mask is handled.
    pub fn decode(&self, zero: &ZeroCodes, out: &mut [u32]) -> Result<DecodeStats> {
        match self {
            StoredCodes::Dense {
                packed,
                bits,
                numel,
            } => {
                check_len("dense decode output", *numel, out.len())?;
                packed.unpack(*bits, out);
                Ok(DecodeStats {
                    mask_ones: *numel,
                    stored_codes: *numel,
                    ..DecodeStats::default()
                })
            }
            StoredCodes::Bitmask(t) => t.decode(zero, out),
        }
    }

    /// Bits of the value stream.
    pub fn value_bits(&self) -> u64 {
        match self {
            StoredCodes::Dense { packed, .. } => packed.len() as u64,
            StoredCodes::Bitmask(t) => t.values().len() as u64,
        }
    }

    /// Bits of the mask stream (0 when dense).
    pub fn mask_bits(&self) -> u64 {
        match self {
            StoredCodes::Dense { .. } => 0,
            StoredCodes::Bitmask(t) => t.mask().len() as u64,
        }
    }

    /// Stored non-zero codes (all codes when dense).
    pub fn stored_codes(&self) -> usize {
        match self {
            StoredCodes::Dense { numel, .. } => *numel,
            StoredCodes::Bitmask(t) => t.nnz(),
        }
    }

    /// The value stream, for fault injection.
    pub fn values_mut(&mut self) -> &mut PackedBits {
        match self {
            StoredCodes::Dense { packed, .. } => packed,
            StoredCodes::Bitmask(t) => t.values_mut(),
        }
    }

    /// The mask stream, if any, for fault injection.
    pub fn mask_mut(&mut self) -> Option<&mut PackedBits> {
        match self {
            StoredCodes::Dense { .. } => None,
            StoredCodes::Bitmask(t) => Some(t.mask_mut()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_bitmask_round_trip_and_count_bits() {
        let codes = [0u32, 200, 0, 17, 255, 0];
        let zero = ZeroCodes::uniform(0, 6);
        for (enc, value_bits, mask_bits) in [(Encoding::Dense, 48, 0), (Encoding::Bitmask, 24, 6)] {
            let s = StoredCodes::encode(&codes, 8, enc, &zero).unwrap();
            assert_eq!((s.value_bits(), s.mask_bits()), (value_bits, mask_bits));
            let mut out = [1u32; 6];
            let st = s.decode(&zero, &mut out).unwrap();
            assert_eq!(out, codes);
            assert_eq!(st.missing_codes, 0);
        }
    }
}
