//! The one place a spread over seeds is computed. Every mean and spread in every table
//! (Table 1 over training seeds, Table 2 and the compression sweep over fault seeds) comes
//! from [`Summary::of`].
//!
//! The spread is the sample standard deviation (divisor n - 1): the seeds are a sample of the
//! runs one could have made, and the population formula (divisor n) understates their spread,
//! most at the two or three seeds studies use. With a single value it is undefined, printed as
//! [`UNDEFINED`], never as 0, which would read as "no spread measured".

/// Column header of every spread column.
pub const SD_HEADER: &str = "sd (n-1)";

/// How an undefined spread (fewer than two values) is printed.
pub const UNDEFINED: &str = "n/a";

/// Mean, sample standard deviation, range and count of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    /// NaN for no values.
    pub mean: f64,
    /// Sample standard deviation (n - 1); `None` for fewer than two values.
    pub sd: Option<f64>,
    /// NaN for no values.
    pub min: f64,
    /// NaN for no values.
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Self {
                n,
                mean: f64::NAN,
                sd: None,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = (n > 1).then(|| {
            let ss = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
            (ss / (n - 1) as f64).sqrt()
        });
        Self {
            n,
            mean,
            sd,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// The spread with `decimals` digits, or [`UNDEFINED`].
    pub fn sd_text(&self, decimals: usize) -> String {
        match self.sd {
            None => UNDEFINED.into(),
            Some(s) if s.is_nan() => "nan".into(),
            Some(s) => format!("{s:.decimals$}"),
        }
    }
}

/// The mean of `values` (NaN for none).
pub fn mean(values: &[f64]) -> f64 {
    Summary::of(values).mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; 5 / 3 -> sd 1.2909944.
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.n, 4);
        assert_eq!(s.mean, 2.5);
        assert!((s.sd.unwrap() - 1.290_994_448_7).abs() < 1e-9);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert_eq!(s.sd_text(4), "1.2910");
        // Two values: sd = |a - b| / sqrt(2), not |a - b| / 2.
        let s = Summary::of(&[0.2, 0.8]);
        assert!((s.sd.unwrap() - 0.6 / 2f64.sqrt()).abs() < 1e-12);
        assert!((s.mean - 0.5).abs() < 1e-12);
        // Constant values: defined and zero.
        assert_eq!(Summary::of(&[2.0, 2.0, 2.0]).sd, Some(0.0));
    }

    #[test]
    fn one_value_has_no_spread_and_none_has_no_mean() {
        let s = Summary::of(&[0.75]);
        assert_eq!((s.n, s.mean, s.sd), (1, 0.75, None));
        assert_eq!(s.sd_text(4), UNDEFINED);
        let e = Summary::of(&[]);
        assert_eq!(e.n, 0);
        assert!(e.mean.is_nan() && e.min.is_nan() && e.max.is_nan());
        assert_eq!(e.sd_text(2), UNDEFINED);
        assert!(mean(&[]).is_nan());
        assert_eq!(mean(&[1.0, 2.0]), 1.5);
    }

    #[test]
    fn nan_values_propagate() {
        let s = Summary::of(&[f64::NAN, 1.0]);
        assert!(s.mean.is_nan());
        assert_eq!(s.sd_text(4), "nan");
    }
}
