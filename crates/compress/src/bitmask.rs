//! Bit-mask sparse encoding: one mask bit per element plus the non-zero codes packed
//! back to back (docs/sources.md#bit-mask-storage), as EdgeBERT stores sparse weights for
//! zero-skipping.
//!
//! Storage is exactly `nnz * bits + numel` bits. An element is "zero" when its code
//! equals its channel's zero code ([`ZeroCodes`]), which for every format but
//! asymmetric integers is code 0.
//!
//! Decoding is sequential, as in hardware: the i-th set mask bit takes the next stored
//! code. After a fault flips a mask bit, every later non-zero element of the tensor
//! takes its neighbour's code (the reason MaxNVM keeps masks in SLC cells). The
//! decoder handles that without failing: when the mask asks for more codes than are
//! stored, the missing ones decode as the zero code, and [`DecodeStats`] says how many.

use serde::Serialize;

use crate::bits::{low_mask, BitWriter, PackedBits};
use crate::error::{check_len, out_of_range, Result};
use crate::formats::ZeroCodes;

/// A tensor in bit-mask layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitmaskTensor {
    numel: usize,
    bits: u32,
    mask: PackedBits,
    values: PackedBits,
}

/// What a decode found; all zero for an intact tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    /// Set bits in the mask (elements decoded as non-zero).
    pub mask_ones: usize,
    /// Codes stored in the value stream.
    pub stored_codes: usize,
    /// Set mask bits with no stored code left (decoded as zero).
    pub missing_codes: usize,
    /// Stored codes no mask bit reached.
    pub unused_codes: usize,
}

impl BitmaskTensor {
    /// Encodes `codes` of `bits` (1..=32) bits; only each code's low `bits` bits count.
    pub fn encode(codes: &[u32], bits: u32, zero: &ZeroCodes) -> Result<Self> {
        check_bits(bits)?;
        let cmask = low_mask(bits) as u32;
        let mut mask = BitWriter::with_capacity(codes.len());
        let mut values = BitWriter::with_capacity(codes.len() * bits as usize);
        for (row, chunk) in codes.chunks(zero.row_len()).enumerate() {
            let z = zero.code(row) & cmask;
            for &c in chunk {
                let c = c & cmask;
                let nz = u32::from(c != z);
                mask.push(u64::from(nz), 1);
                // Zero elements append nothing (width 0), without a branch.
                values.push(u64::from(c * nz), bits * nz);
            }
        }
        Ok(BitmaskTensor {
            numel: codes.len(),
            bits,
            mask: mask.finish(),
            values: values.finish(),
        })
    }

    /// Decodes into `out` (`numel` codes), never failing on corrupted streams.
    pub fn decode(&self, zero: &ZeroCodes, out: &mut [u32]) -> Result<DecodeStats> {
        check_len("bitmask decode output", self.numel, out.len())?;
        let words = self.mask.words();
        let vwords = self.values.words();
        let bits = self.bits as usize;
        let stored = self.values.len() / bits;
        let limit = stored * bits;
        let vmask = low_mask(self.bits);
        let (mut pos, mut missing, mut ones) = (0usize, 0usize, 0usize);
        let mut i = 0usize;
        for (row, chunk) in out.chunks_mut(zero.row_len()).enumerate() {
            let z = zero.code(row);
            for o in chunk {
                let nz = ((words[i >> 6] >> (i & 63)) & 1) as usize;
                let in_range = pos + bits <= limit;
                let v = if in_range {
                    read(vwords, pos, vmask)
                } else {
                    z
                };
                missing += nz & usize::from(!in_range);
                ones += nz;
                *o = if nz == 1 { v } else { z };
                pos += bits * nz;
                i += 1;
            }
        }
        let used = ones - missing;
        Ok(DecodeStats {
            mask_ones: ones,
            stored_codes: stored,
            missing_codes: missing,
            unused_codes: stored.saturating_sub(used),
        })
    }

    /// Elements in the tensor.
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// Bits per stored code.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Stored (non-zero) codes.
    pub fn nnz(&self) -> usize {
        self.values.len() / self.bits as usize
    }

    /// `nnz * bits + numel`, the storage formula of docs/sources.md#bit-mask-storage.
    pub fn storage_bits(&self) -> u64 {
        bitmask_bits(self.numel as u64, self.nnz() as u64, self.bits)
    }

    /// The mask stream, one bit per element.
    pub fn mask(&self) -> &PackedBits {
        &self.mask
    }

    /// The mask stream, for fault injection.
    pub fn mask_mut(&mut self) -> &mut PackedBits {
        &mut self.mask
    }

    /// The packed non-zero codes.
    pub fn values(&self) -> &PackedBits {
        &self.values
    }

    /// The packed non-zero codes, for fault injection.
    pub fn values_mut(&mut self) -> &mut PackedBits {
        &mut self.values
    }
}

/// Storage of a bit-mask tensor: `nnz * bits_per_value + numel` bits
/// (docs/sources.md#bit-mask-storage).
pub fn bitmask_bits(numel: u64, nnz: u64, bits_per_value: u32) -> u64 {
    nnz * u64::from(bits_per_value) + numel
}

/// Reads `vmask`'s width of bits at `pos`; needs `pos + width <= len` so the word
/// after `pos / 64` exists (the padding word guarantees it).
#[inline(always)]
fn read(words: &[u64], pos: usize, vmask: u64) -> u32 {
    let idx = pos >> 6;
    let pair = (u128::from(words[idx + 1]) << 64) | u128::from(words[idx]);
    (((pair >> (pos & 63)) as u64) & vmask) as u32
}

fn check_bits(bits: u32) -> Result<()> {
    if (1..=32).contains(&bits) {
        Ok(())
    } else {
        Err(out_of_range("bitmask.bits", bits, "1..=32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_mask_and_packed_values() {
        let codes = [0u32, 0xA, 0, 0, 0x5, 0xF, 0, 0x1];
        let t = BitmaskTensor::encode(&codes, 4, &ZeroCodes::uniform(0, 8)).unwrap();
        assert_eq!(t.nnz(), 4);
        assert_eq!(t.mask().words()[0], 0b1011_0010);
        assert_eq!(t.values().words()[0], 0x1F5A);
        assert_eq!(t.storage_bits(), 4 * 4 + 8);
        let mut out = [9u32; 8];
        let s = t.decode(&ZeroCodes::uniform(0, 8), &mut out).unwrap();
        assert_eq!(out, codes);
        assert_eq!(
            s,
            DecodeStats {
                mask_ones: 4,
                stored_codes: 4,
                ..Default::default()
            }
        );
    }

    #[test]
    fn per_row_zero_codes_round_trip() {
        // Row 0 zero code 3, row 1 zero code 0 (asymmetric per-channel integers).
        let zero = ZeroCodes::per_row(vec![3, 0], 3);
        let codes = [3u32, 4, 3, 0, 3, 0];
        let t = BitmaskTensor::encode(&codes, 3, &zero).unwrap();
        assert_eq!(t.nnz(), 2);
        let mut out = [0u32; 6];
        t.decode(&zero, &mut out).unwrap();
        assert_eq!(out, codes);
    }

    #[test]
    fn mask_fault_shifts_later_codes_and_is_reported() {
        let zero = ZeroCodes::uniform(0, 4);
        let mut t = BitmaskTensor::encode(&[7, 0, 5, 6], 8, &zero).unwrap();
        t.mask_mut().flip(1); // element 1 now claims a code
        let mut out = [0u32; 4];
        let s = t.decode(&zero, &mut out).unwrap();
        assert_eq!(out, [7, 5, 6, 0], "codes shift by one; the last runs out");
        assert_eq!((s.mask_ones, s.missing_codes, s.unused_codes), (4, 1, 0));
        t.mask_mut().flip(1);
        t.mask_mut().flip(0); // element 0 loses its code
        let s = t.decode(&zero, &mut out).unwrap();
        assert_eq!(out, [0, 0, 7, 5]);
        assert_eq!((s.mask_ones, s.missing_codes, s.unused_codes), (2, 0, 1));
    }

    #[test]
    fn round_trips_odd_widths_across_words() {
        let codes: Vec<u32> = (0..1000u32)
            .map(|i| if i % 3 == 0 { 0 } else { (i * 7919) % 8191 })
            .collect();
        let zero = ZeroCodes::uniform(0, codes.len());
        let t = BitmaskTensor::encode(&codes, 13, &zero).unwrap();
        assert_eq!(t.nnz(), 666);
        assert_eq!(t.storage_bits(), 666 * 13 + 1000);
        let mut out = vec![0u32; 1000];
        t.decode(&zero, &mut out).unwrap();
        assert_eq!(out, codes);
    }
}
