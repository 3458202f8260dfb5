//! Seeded random streams: every random process in adalbert draws from here.
//!
//! One generator, SplitMix64 (Steele, Lea and Flood, OOPSLA 2014): its output sequence is fixed
//! by its definition, so a seed recorded in an output reproduces the run on any machine and
//! any thread count. The state advances by a constant, so the draw after `i` steps is
//! computable directly ([`SplitMix64::at`]): parallel code fills long masks with exactly the
//! values a serial draw would give.
//!
//! # Streams
//! Independent uses of one user seed must not share draws. Each user derives its own stream:
//!
//! | user | stream |
//! |---|---|
//! | offline-suite split (`tasks`) | `SplitMix64::new(split_seed)` |
//! | derived pair task pairing (`tasks`) | `SplitMix64::new(split_seed ^ streams::PAIRING)` |
//! | epoch shuffles, training subsets (`train`) | [`permutation`] with [`salted`] seeds |
//! | adapter and head initialization (`model`) | [`Normal::new`] (its own stream constant) |
//! | dropout masks (`model`) | `SplitMix64::new(training seed)`, drawn with [`SplitMix64::at`] |
//! | per-tensor fault seeds (`compress`) | [`derive_seed`] of the fault seed and tensor index |
//!
//! Changing any of these changes results that caches and committed reports hold: do not.

/// Stream constants that separate uses of one seed.
pub mod streams {
    /// Pairs of the derived sentence-pair task ("pairing!").
    pub const PAIRING: u64 = 0x7061_6972_696e_6721;
    /// Gaussian initialization of task parameters.
    pub const INIT: u64 = 0x5DEE_CE66_D1CE_4E5B;
}

/// The SplitMix64 generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The state increment (the golden-ratio constant of the algorithm).
    pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The current state (the seed before any draw).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// SplitMix64's output function of a state.
    #[inline(always)]
    pub fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The draw number `i` (0-based) of a generator in `state`, without drawing.
    #[inline(always)]
    pub fn at(state: u64, i: u64) -> u64 {
        Self::mix(state.wrapping_add((i + 1).wrapping_mul(Self::GAMMA)))
    }

    /// Moves the generator past `n` draws.
    pub fn skip(&mut self, n: u64) {
        self.state = self.state.wrapping_add(n.wrapping_mul(Self::GAMMA));
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        Self::mix(self.state)
    }

    /// Uniform integer in `0..bound`, by rejection so there is no modulo bias.
    ///
    /// # Panics
    /// If `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SplitMix64::below needs a positive bound");
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }

    /// Uniform in the open interval (0, 1), from the top 53 bits (never 0, so `ln` is finite).
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in [0, 1) with 24 bits, exactly representable in `f32`: the form used for
    /// dropout masks, so every instruction set computes the same mask.
    #[inline(always)]
    pub fn unit_f32(x: u64) -> f32 {
        (x >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Fisher-Yates shuffle driven by `rng`.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, &mut SplitMix64::new(seed));
    idx
}

/// A seed for one purpose (`salt`) of a user seed, as the training loop derives its epoch
/// and subset shuffles.
pub fn salted(seed: u64, salt: u64) -> u64 {
    seed.wrapping_mul(SplitMix64::GAMMA) ^ salt.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// An independent seed for item `index` of a master seed (e.g. one per tensor), so each
/// item's draws do not depend on how many the others made: SplitMix64's output function of
/// `master ^ (index + 1) * GAMMA`.
pub fn derive_seed(master: u64, index: u64) -> u64 {
    SplitMix64::mix(master ^ (index.wrapping_add(1)).wrapping_mul(SplitMix64::GAMMA))
}

/// Gaussian draws by Box-Muller (one normal per two uniforms) over SplitMix64.
#[derive(Debug, Clone)]
pub struct Normal {
    rng: SplitMix64,
}

impl Normal {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed ^ streams::INIT),
        }
    }

    /// One draw from N(0, std^2).
    pub fn sample(&mut self, std: f64) -> f64 {
        let (u1, u2) = (self.rng.next_open01(), self.rng.next_open01());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std
    }

    /// `n` draws from N(0, std^2) as `f32`.
    pub fn vec_f32(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n).map(|_| self.sample(std) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_reference_stream() {
        // First outputs of SplitMix64 seeded with 0, as published with the algorithm.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn random_access_equals_serial_draws() {
        let mut r = SplitMix64::new(17);
        for i in 0..10 {
            assert_eq!(SplitMix64::at(17, i), r.next_u64());
        }
        let mut s = SplitMix64::new(17);
        s.skip(10);
        assert_eq!(s.next_u64(), SplitMix64::at(17, 10));
    }

    #[test]
    fn permutation_is_seeded_and_complete() {
        let a = permutation(100, 3);
        assert_eq!(a, permutation(100, 3));
        assert_ne!(a, permutation(100, 4));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn normal_has_the_asked_spread() {
        let v = Normal::new(1).vec_f32(20_000, 0.02);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 1e-3, "{mean}");
        assert!((var.sqrt() - 0.02).abs() < 5e-4, "{}", var.sqrt());
    }

    #[test]
    fn derived_seeds_are_distinct_and_reference_anchored() {
        // With master 0, item 0 is the first output of the reference stream.
        assert_eq!(derive_seed(0, 0), 0xE220_A839_7B1D_CDAF);
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|i| derive_seed(42, i)).collect();
        assert_eq!(seeds.len(), 1000);
        assert_ne!(derive_seed(42, 0), derive_seed(43, 0));
    }
}
