//! Independent bit flips at a fixed rate: a simple model of SRAM or DRAM soft errors,
//! where each stored bit is its own cell.

use rand_chacha::rand_core::Rng;

use super::sampling::GeometricSkip;
use super::FaultCounts;
use crate::bits::PackedBits;
use crate::error::{out_of_range, Result};

/// Fails unless `rate` is a probability in `[0, 1]`.
pub fn validate_rate(rate: f64) -> Result<()> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(out_of_range(
            "bitflip.rate",
            rate,
            "a probability in [0, 1]",
        ))
    }
}

/// Flips each bit of `bits` independently with probability `rate`.
pub fn inject_bitflips<R: Rng>(
    bits: &mut PackedBits,
    rate: f64,
    rng: &mut R,
) -> Result<FaultCounts> {
    validate_rate(rate)?;
    let n = bits.len() as u64;
    let mut counts = FaultCounts {
        bits: n,
        cells: n,
        ..FaultCounts::default()
    };
    let mut walk = GeometricSkip::new(rate, n);
    while let Some(pos) = walk.next_event(rng) {
        bits.flip(pos as usize);
        counts.flipped_cells += 1;
        counts.flipped_bits += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn flips_expected_number_and_they_show_in_the_data() {
        let mut bits = PackedBits::zeros(4_000_000);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let c = inject_bitflips(&mut bits, 1e-3, &mut rng).unwrap();
        // Mean 4000, sd ~63.
        assert!((c.flipped_bits as f64 - 4000.0).abs() < 320.0, "{c:?}");
        assert_eq!(bits.count_ones() as u64, c.flipped_bits);
        assert_eq!(c.cells, 4_000_000);
    }

    #[test]
    fn same_seed_same_faults_and_rate_checked() {
        let run = |seed| {
            let mut bits = PackedBits::zeros(100_000);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            inject_bitflips(&mut bits, 1e-2, &mut rng).unwrap();
            bits
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
        let mut bits = PackedBits::zeros(8);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(inject_bitflips(&mut bits, 1.5, &mut rng).is_err());
        assert_eq!(
            inject_bitflips(&mut bits, 1.0, &mut rng)
                .unwrap()
                .flipped_bits,
            8
        );
    }
}
