//! Data splits and the seeded shuffle that builds the offline suite's splits.
//!
//! The shuffle uses adalbert's own generator (`adalbert_core::rng`) rather than `rand`, because a split
//! must stay identical for a given seed forever: a trained bundle records the seed, and a later
//! evaluation must see the same dev and test examples. A dependency upgrade that changes the
//! stream of `rand` would silently leak training examples into the test set.

use std::fmt;
use std::str::FromStr;

use adalbert_core::rng::{shuffle, SplitMix64};

use crate::error::Error;

/// Which part of a task's data to load.
///
/// MNLI has two dev and two test sets; they are selected by task name (`mnli` reads the
/// matched files, `mnli-mm` the mismatched ones), so one split enum serves all tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training data.
    Train,
    /// Development (validation) data: GLUE `dev.tsv`, used for model selection.
    Dev,
    /// Test data: GLUE `test.tsv` (unlabeled) or the offline suite's held-out labeled part.
    Test,
}

impl Split {
    /// Lower-case name, as accepted by [`Split::from_str`].
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = Error;

    /// Accepts `train`, `dev`/`validation`/`val`, `test` (any case).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "dev" | "validation" | "val" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            _ => Err(Error::UnknownSplit(s.to_string())),
        }
    }
}

/// Fractions of the offline suite's train / dev / test parts. Test and dev each get
/// `round(n * 0.1)` examples, train the rest.
pub const SPLIT_FRACTIONS: (f64, f64, f64) = (0.8, 0.1, 0.1);

/// Shuffle `items` with `seed` and return the part that belongs to `split`
/// ([`SPLIT_FRACTIONS`]). The three parts of one seed are disjoint and cover every item.
pub fn seeded_split<T>(mut items: Vec<T>, split: Split, seed: u64) -> Vec<T> {
    let mut rng = SplitMix64::new(seed);
    shuffle(&mut items, &mut rng);
    let n = items.len();
    let n_dev = (n as f64 * SPLIT_FRACTIONS.1).round() as usize;
    let n_test = (n as f64 * SPLIT_FRACTIONS.2).round() as usize;
    let n_train = n.saturating_sub(n_dev + n_test);
    let (start, end) = match split {
        Split::Train => (0, n_train),
        Split::Dev => (n_train, n_train + n_dev),
        Split::Test => (n_train + n_dev, n),
    };
    items.into_iter().skip(start).take(end - start).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_disjoint_and_cover() {
        let items: Vec<u32> = (0..1003).collect();
        let mut all: Vec<u32> = [Split::Train, Split::Dev, Split::Test]
            .iter()
            .flat_map(|&s| seeded_split(items.clone(), s, 7))
            .collect();
        assert_eq!(seeded_split(items.clone(), Split::Dev, 7).len(), 100);
        assert_eq!(seeded_split(items.clone(), Split::Test, 7).len(), 100);
        assert_eq!(seeded_split(items.clone(), Split::Train, 7).len(), 803);
        all.sort_unstable();
        assert_eq!(all, items);
        assert_ne!(
            seeded_split(items.clone(), Split::Dev, 7),
            seeded_split(items, Split::Dev, 8)
        );
    }

    #[test]
    fn split_names_parse() {
        assert_eq!("validation".parse::<Split>().unwrap(), Split::Dev);
        assert_eq!("TEST".parse::<Split>().unwrap(), Split::Test);
        assert!("holdout".parse::<Split>().is_err());
    }
}
