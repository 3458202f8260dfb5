//! Storage arithmetic: exact bit counts of stored tensors.
//!
//! Payload bits: dense `numel * bits`, bit-mask `nnz * bits + numel` (one mask bit per
//! element). Parameter counts and checkpoint tensor shapes come from the model shape
//! (`adalbert_core::ModelShape`); [`crate::Plan::planned_storage`] gives a tensor's storage
//! under a plan from its role and size alone. Per-tensor side information (scales, zero points, bias
//! registers) is counted apart in `metadata_bits` so the payload matches the
//! reference formula exactly. Megabytes are decimal (1 MB = 10^6 bytes).

use serde::{Deserialize, Serialize};

pub use crate::bitmask::bitmask_bits;

/// Bits of a dense tensor: `numel * bits`.
pub fn dense_bits(numel: u64, bits_per_value: u32) -> u64 {
    numel * u64::from(bits_per_value)
}

/// Decimal megabytes of `bits` bits.
pub fn megabytes(bits: u64) -> f64 {
    bits as f64 / 8.0 / 1e6
}

/// Storage of one tensor, or a sum over tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// Elements.
    pub numel: u64,
    /// Elements stored as non-zero codes (all of them when dense).
    pub nnz: u64,
    /// Bits of the code stream.
    pub value_bits: u64,
    /// Bits of the mask (0 when dense).
    pub mask_bits: u64,
    /// Bits of scales, zero points and bias registers.
    pub metadata_bits: u64,
}

impl Storage {
    /// The payload of docs/sources.md#bit-mask-storage: value bits plus mask bits.
    pub fn payload_bits(&self) -> u64 {
        self.value_bits + self.mask_bits
    }

    /// Payload plus metadata.
    pub fn total_bits(&self) -> u64 {
        self.payload_bits() + self.metadata_bits
    }

    /// Payload in whole bytes (rounded up).
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bits().div_ceil(8)
    }
}

impl std::ops::AddAssign for Storage {
    fn add_assign(&mut self, o: Self) {
        self.numel += o.numel;
        self.nnz += o.nnz;
        self.value_bits += o.value_bits;
        self.mask_bits += o.mask_bits;
        self.metadata_bits += o.metadata_bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn albert_8bit_half_density_is_7_30_mb_vs_11_68_dense() {
        let n = adalbert_core::ModelShape::builtin("albert-base")
            .unwrap()
            .param_counts()
            .total() as u64;
        let nnz = n - crate::prune::prune_count(n as usize, 0.5) as u64;
        let sparse = bitmask_bits(n, nnz, 8);
        assert_eq!(sparse, 58_417_920);
        assert_eq!(sparse / 8, 7_302_240);
        assert_eq!(format!("{:.2}", megabytes(sparse)), "7.30");
        let dense = dense_bits(n, 8);
        assert_eq!(dense / 8, 11_683_584);
        assert_eq!(format!("{:.2}", megabytes(dense)), "11.68");
    }

    #[test]
    fn storage_sums_and_rounds_bytes_up() {
        let mut s = Storage {
            numel: 3,
            nnz: 1,
            value_bits: 4,
            mask_bits: 3,
            metadata_bits: 8,
        };
        assert_eq!(
            (s.payload_bits(), s.payload_bytes(), s.total_bits()),
            (7, 1, 15)
        );
        s += s;
        assert_eq!((s.numel, s.payload_bits(), s.payload_bytes()), (6, 14, 2));
    }
}
