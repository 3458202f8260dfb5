//! Random sampling helpers shared by the fault models, plus `erfc`.
//!
//! Fault rates are tiny (about 1e-8 per cell for 2-bit MLC RRAM), so drawing one
//! Bernoulli variable per cell would spend almost all the time confirming that nothing
//! happened. [`GeometricSkip`] instead draws the gap to the next event directly:
//! with `U` uniform in (0, 1], `floor(ln U / ln(1 - p))` is geometric with success
//! probability `p`, which is exactly the distribution of the number of Bernoulli(p)
//! failures before the next success. Cost is proportional to the number of faults.

use rand_chacha::rand_core::Rng;

/// A uniform draw in `[0, 1)` with 53 random bits.
#[inline]
pub(crate) fn uniform01<R: Rng>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Walks the positions of independent Bernoulli(`p`) events among `n` trials.
pub struct GeometricSkip {
    ln_q: f64,
    p: f64,
    next: u64,
    n: u64,
}

impl GeometricSkip {
    /// Starts a walk over `n` trials with event probability `p` (clamped to [0, 1]).
    pub fn new(p: f64, n: u64) -> Self {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        GeometricSkip {
            ln_q: (-p).ln_1p(),
            p,
            next: 0,
            n,
        }
    }

    /// Index of the next event, or `None` when the trials are used up.
    pub fn next_event<R: Rng>(&mut self, rng: &mut R) -> Option<u64> {
        if self.p <= 0.0 || self.next >= self.n {
            return None;
        }
        let gap = if self.p >= 1.0 {
            0.0
        } else {
            ((1.0 - uniform01(rng)).ln() / self.ln_q).floor()
        };
        let remaining = (self.n - self.next) as f64;
        if gap >= remaining {
            self.next = self.n;
            return None;
        }
        let at = self.next + gap as u64;
        self.next = at + 1;
        Some(at)
    }
}

/// Complementary error function, accurate to about 1e-11 relative (x >= 0;
/// negative x uses `2 - erfc(-x)`).
///
/// For `x < 3` it is `1 - erf(x)` with erf from its all-positive series
/// `erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))`, which has no
/// cancellation; the subtraction costs at most five digits (erfc(3) is 2.2e-5). For
/// `x >= 3` the Laplace continued fraction
/// `erfc(x) = e^(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))` is
/// evaluated bottom-up with more terms than double precision needs.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 3.0 {
        1.0 - erf_series(x)
    } else {
        erfc_continued_fraction(x)
    }
}

/// erf(x) for 0 <= x < 3 from the positive-term series.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    for n in 0..200 {
        term *= 2.0 * x2 / (2 * n + 3) as f64;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum * (-x2).exp() * std::f64::consts::FRAC_2_SQRT_PI
}

/// Continued fraction for x >= 3, 60 levels (far more than needed at x = 3).
fn erfc_continued_fraction(x: f64) -> f64 {
    let mut tail = x;
    for k in (1..=60).rev() {
        tail = x + (k as f64 / 2.0) / tail;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn erfc_matches_tabulated_values() {
        let cases = [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (2.0, 0.004_677_734_981_047_266),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_034_8e-12),
            (-1.0, 1.842_700_792_949_715),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 1e-11,
                "erfc({x}) = {got}, want {want}"
            );
        }
        assert!(erfc(2.999_999_999) > erfc(3.0));
    }

    #[test]
    fn geometric_skip_hits_expected_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (p, n) = (1e-3, 10_000_000u64);
        let mut walk = GeometricSkip::new(p, n);
        let (mut count, mut last) = (0u64, None);
        while let Some(i) = walk.next_event(&mut rng) {
            assert!(i < n && last.is_none_or(|l| i > l));
            last = Some(i);
            count += 1;
        }
        // Mean 10_000, sd 100: allow 5 sd.
        assert!((count as f64 - 10_000.0).abs() < 500.0, "count {count}");
        let mut all = GeometricSkip::new(1.0, 5);
        let v: Vec<u64> = std::iter::from_fn(|| all.next_event(&mut rng)).collect();
        assert_eq!(v, [0, 1, 2, 3, 4]);
        assert_eq!(GeometricSkip::new(0.0, 5).next_event(&mut rng), None);
    }
}
