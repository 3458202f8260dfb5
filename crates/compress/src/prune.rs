//! Magnitude pruning at an exact target sparsity, per tensor or across tensors.
//!
//! For `numel` candidate elements and sparsity `s` in `[0, 1)`, exactly
//! `k = round(s * numel)` elements end up pruned (rounding half away from zero): the
//! `k` smallest by magnitude. Elements already zero count among them, as they are the
//! smallest. Ties at the cut are broken by storage order: among elements whose
//! magnitude equals the k-th smallest, those earlier in the slice (and, for global
//! pruning, in earlier tensors) are pruned first. So the count is exact and the result
//! is deterministic. Pruned elements are set to `+0.0`.
//!
//! The cut is found with a selection (`select_nth_unstable`) over the magnitudes' bit
//! patterns, one `u32` per element, so global pruning of BERT-base needs ~440 MB of
//! scratch, not a sort of (value, index) pairs.

use serde::{Deserialize, Serialize};

use crate::error::{out_of_range, Result};

/// What one pruning call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneStats {
    /// Candidate elements.
    pub numel: usize,
    /// Elements pruned (`round(sparsity * numel)`), including ones already zero.
    pub pruned: usize,
    /// Magnitude of the largest pruned element (0 when nothing was pruned).
    pub threshold: f32,
}

/// `round(sparsity * numel)`, the exact number of elements pruned.
pub fn prune_count(numel: usize, sparsity: f64) -> usize {
    ((sparsity * numel as f64).round() as usize).min(numel)
}

/// Fails unless `sparsity` is finite and in `[0, 1)`.
pub fn validate_sparsity(sparsity: f64) -> Result<()> {
    if (0.0..1.0).contains(&sparsity) {
        Ok(())
    } else {
        Err(out_of_range("prune.sparsity", sparsity, "[0, 1)"))
    }
}

/// Prunes the `round(sparsity * len)` smallest-magnitude elements of one tensor.
pub fn magnitude_prune(data: &mut [f32], sparsity: f64) -> Result<PruneStats> {
    magnitude_prune_global(&mut [data], sparsity)
}

/// Prunes the `round(sparsity * total)` smallest-magnitude elements across all
/// `tensors` taken together (one global threshold).
pub fn magnitude_prune_global(tensors: &mut [&mut [f32]], sparsity: f64) -> Result<PruneStats> {
    validate_sparsity(sparsity)?;
    let numel: usize = tensors.iter().map(|t| t.len()).sum();
    let k = prune_count(numel, sparsity);
    if k == 0 {
        return Ok(PruneStats {
            numel,
            ..PruneStats::default()
        });
    }
    let cut = kth_smallest_magnitude(tensors, k);
    let below: usize = tensors
        .iter()
        .map(|t| t.iter().filter(|w| magnitude(**w) < cut).count())
        .sum();
    let mut ties_left = k - below;
    for t in tensors.iter_mut() {
        for w in t.iter_mut() {
            let m = magnitude(*w);
            let tie = m == cut && ties_left > 0;
            ties_left -= usize::from(tie);
            if m < cut || tie {
                *w = 0.0;
            }
        }
    }
    Ok(PruneStats {
        numel,
        pruned: k,
        threshold: f32::from_bits(cut),
    })
}

/// Bit pattern of `|w|`; for non-negative floats it orders like the value.
#[inline]
fn magnitude(w: f32) -> u32 {
    w.to_bits() & 0x7FFF_FFFF
}

/// The k-th smallest magnitude (1-based `k`) as a bit pattern.
fn kth_smallest_magnitude(tensors: &[&mut [f32]], k: usize) -> u32 {
    let mut mags: Vec<u32> = tensors
        .iter()
        .flat_map(|t| t.iter().map(|w| magnitude(*w)))
        .collect();
    let (_, kth, _) = mags.select_nth_unstable(k - 1);
    *kth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_exact_count_with_ties_in_storage_order() {
        // Magnitude 0.1 appears three times (indices 1, 3, 6). 50% of 8 = 4 pruned:
        // 0.05 and all three 0.1s.
        let mut w = [0.3, -0.1, 0.05, 0.1, -0.7, 0.2, -0.1, 0.9];
        let s = magnitude_prune(&mut w, 0.5).unwrap();
        assert_eq!(s.pruned, 4);
        assert_eq!(s.threshold, 0.1);
        assert_eq!(w, [0.3, 0.0, 0.0, 0.0, -0.7, 0.2, 0.0, 0.9]);
        // 3 of 8 (37.5%): 0.05 and the first two 0.1 ties; index 6 survives.
        let mut w = [0.3, -0.1, 0.05, 0.1, -0.7, 0.2, -0.1, 0.9];
        magnitude_prune(&mut w, 0.375).unwrap();
        assert_eq!(w, [0.3, 0.0, 0.0, 0.0, -0.7, 0.2, -0.1, 0.9]);
    }

    #[test]
    fn count_rounds_and_zeros_count_as_smallest() {
        assert_eq!(prune_count(10, 0.25), 3); // 2.5 rounds away from zero
        assert_eq!(prune_count(7, 0.5), 4); // 3.5 -> 4
        assert_eq!(prune_count(11_683_584, 0.5), 5_841_792);
        let mut w = [0.0, 0.0, 0.4, -0.2, 0.3];
        let s = magnitude_prune(&mut w, 0.6).unwrap();
        assert_eq!(s.pruned, 3);
        assert_eq!(w, [0.0, 0.0, 0.4, 0.0, 0.3]);
    }

    #[test]
    fn global_uses_one_threshold_across_tensors() {
        let mut a = [1.0f32, 2.0, 3.0, 4.0];
        let mut b = [0.5f32, 5.0, 0.25, 6.0];
        let s = magnitude_prune_global(&mut [&mut a, &mut b], 0.5).unwrap();
        assert_eq!((s.numel, s.pruned, s.threshold), (8, 4, 2.0));
        assert_eq!(a, [0.0, 0.0, 3.0, 4.0]);
        assert_eq!(b, [0.0, 5.0, 0.0, 6.0]);
    }

    #[test]
    fn rejects_sparsity_outside_unit_interval() {
        for s in [-0.1, 1.0, 1.5, f64::NAN] {
            let e = magnitude_prune(&mut [1.0], s).unwrap_err();
            assert!(e.to_string().contains("prune.sparsity"), "{e}");
        }
        let mut w = [1.0, 2.0];
        assert_eq!(magnitude_prune(&mut w, 0.0).unwrap().pruned, 0);
        assert_eq!(w, [1.0, 2.0]);
    }
}
