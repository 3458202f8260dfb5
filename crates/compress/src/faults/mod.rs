//! Memory fault injection on stored codes: MLC RRAM read faults and independent bit
//! flips.
//!
//! Faults act on the bits as stored ([`crate::layout::StoredCodes`]): a dense layout's
//! packed codes, or a bit-mask layout's mask and packed non-zero codes, which can sit
//! in different cells (the mask in single-level cells by default, as MaxNVM advises).
//! Every injection takes a seed, builds a ChaCha8 stream from it, and reports the seed
//! with the counts, so any fault pattern can be reproduced.

pub mod bitflip;
pub mod mlc;
pub mod sampling;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{out_of_range, Result};
use crate::layout::StoredCodes;
use bitflip::inject_bitflips;
use mlc::{LevelCoding, MlcModel, Threshold};

/// Counts of one injection over one bit stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Bits in the stream.
    pub bits: u64,
    /// Cells holding them (bits / bits-per-cell, rounded up).
    pub cells: u64,
    /// Cells read wrongly.
    pub flipped_cells: u64,
    /// Bits that changed.
    pub flipped_bits: u64,
}

impl std::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, o: Self) {
        self.bits += o.bits;
        self.cells += o.cells;
        self.flipped_cells += o.flipped_cells;
        self.flipped_bits += o.flipped_bits;
    }
}

/// Faults injected into one stored tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultReport {
    /// The seed of the ChaCha8 stream used.
    pub seed: u64,
    /// Faults in the value (code) stream.
    pub values: FaultCounts,
    /// Faults in the mask stream (zero for dense layouts).
    pub mask: FaultCounts,
}

impl FaultReport {
    /// Value and mask counts together.
    pub fn total(&self) -> FaultCounts {
        let mut t = self.values;
        t += self.mask;
        t
    }
}

/// Which cells hold a bit-mask layout's mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskCells {
    /// Single-level cells (the 1 bit/cell RRAM model).
    #[default]
    Slc,
    /// The same multi-level cells as the values.
    Mlc,
}

/// The MLC RRAM read-fault settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlcSpec {
    /// Bits per cell, 1..=3.
    pub bits_per_cell: u8,
    /// Bits-to-level mapping.
    pub coding: LevelCoding,
    /// Cells for the bit-mask layout's mask.
    pub mask: MaskCells,
    /// Multiplies every level's sigma (1 = the published model).
    pub sigma_scale: f64,
    /// Decision threshold placement.
    pub threshold: Threshold,
}

impl Default for MlcSpec {
    fn default() -> Self {
        MlcSpec {
            bits_per_cell: 2,
            coding: LevelCoding::Binary,
            mask: MaskCells::Slc,
            sigma_scale: 1.0,
            threshold: Threshold::Intersection,
        }
    }
}

impl MlcSpec {
    /// The model for the value cells.
    pub fn model(&self) -> Result<MlcModel> {
        self.model_with_bpc(self.bits_per_cell)
    }

    fn model_with_bpc(&self, bpc: u8) -> Result<MlcModel> {
        let base = MlcModel::rram(bpc, self.threshold)?;
        if self.sigma_scale == 1.0 {
            Ok(base)
        } else {
            base.with_sigma_scale(self.sigma_scale, self.threshold)
        }
    }
}

/// A fault model, as `--faults` names it (grammar in [`crate::plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultSpec {
    /// No faults.
    #[default]
    None,
    /// MLC RRAM read faults.
    Mlc(MlcSpec),
    /// Independent bit flips at `rate` per stored bit (SRAM/DRAM).
    Bitflip {
        /// Flip probability per bit.
        rate: f64,
    },
}

impl FaultSpec {
    /// Checks parameters without data.
    pub fn validate(&self) -> Result<()> {
        match self {
            FaultSpec::None => Ok(()),
            FaultSpec::Mlc(m) => m.model().map(|_| ()),
            FaultSpec::Bitflip { rate } => bitflip::validate_rate(*rate),
        }
    }
}

/// Injects `spec`'s faults into a stored tensor with a ChaCha8 stream seeded by `seed`.
pub fn inject(stored: &mut StoredCodes, spec: &FaultSpec, seed: u64) -> Result<FaultReport> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = FaultReport {
        seed,
        ..FaultReport::default()
    };
    match spec {
        FaultSpec::None => {}
        FaultSpec::Bitflip { rate } => {
            report.values = inject_bitflips(stored.values_mut(), *rate, &mut rng)?;
            if let Some(mask) = stored.mask_mut() {
                report.mask = inject_bitflips(mask, *rate, &mut rng)?;
            }
        }
        FaultSpec::Mlc(m) => {
            let model = m.model()?;
            report.values = model.inject(stored.values_mut(), m.coding, &mut rng);
            if let Some(mask) = stored.mask_mut() {
                let mask_model = match m.mask {
                    MaskCells::Slc => m.model_with_bpc(1)?,
                    MaskCells::Mlc => model,
                };
                report.mask = mask_model.inject(mask, m.coding, &mut rng);
            }
        }
    }
    Ok(report)
}

pub use adalbert_core::rng::derive_seed;

/// Fails unless `bits_per_cell` is 1..=3 (used by the spec parser).
pub(crate) fn validate_bpc(bpc: u8) -> Result<()> {
    if (1..=3).contains(&bpc) {
        Ok(())
    } else {
        Err(out_of_range("mlc.bpc", bpc, "1, 2 or 3"))
    }
}
