//! Dropout masks from a SplitMix64 stream, filled in parallel.
//!
//! Element `i` of a mask drawn at generator state `s` comes from the state `s + (i + 1) G`
//! (`G` = [`GAMMA`]), which SplitMix64 computes directly, so the mask is filled in parallel
//! (and vectorized) with the values a serial draw would give. Integer arithmetic and exact
//! conversions only, so every instruction set gives the same mask.
//!
//! The generator is `adalbert_core::rng`'s SplitMix64 (this leaf crate depends on no other
//! adalbert crate, so it carries the step and output function itself; a test in the model
//! crate checks that the two agree).

use super::scratch::output_buffer;
use super::{multiversion, par_rows, Isa};

/// SplitMix64's state increment.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function of the state `z`.
#[inline(always)]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in [0, 1) from the top 24 bits of `x`.
#[inline(always)]
pub fn unit_f32(x: u64) -> f32 {
    (x >> 40) as f32 / (1u64 << 24) as f32
}

/// `out[i] = 0` if draw `i + 1` after `state` is below `p`, else `keep`: every element of
/// `out` is written.
fn fill(isa: Isa, state: u64, p: f32, keep: f32, out: &mut [f32]) {
    multiversion!(isa, fill_avx512, (state: u64, p: f32, keep: f32, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            let z = state.wrapping_add((i as u64 + 1).wrapping_mul(GAMMA));
            let u = unit_f32(mix(z));
            *o = if u < p { 0.0 } else { keep };
        }
    })
}

/// The `n` inverted-dropout multipliers (0 with probability `p`, else `1 / (1 - p)`) drawn
/// after generator state `state`, on the rayon pool. The generator's next state is
/// `state + n * GAMMA` (wrapping).
pub fn mask(isa: Isa, state: u64, p: f32, n: usize) -> Vec<f32> {
    let keep = 1.0 / (1.0 - p);
    let mut mask = output_buffer(n);
    par_rows(&mut mask, 1, 1 << 15, |i0, chunk| {
        fill(
            isa,
            state.wrapping_add((i0 as u64).wrapping_mul(GAMMA)),
            p,
            keep,
            chunk,
        );
    });
    mask
}
