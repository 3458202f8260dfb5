//! Metric names: the ones Hugging Face `evaluate` writes (`accuracy`, `f1`,
//! `matthews_correlation`, `pearson`, `spearmanr`; docs/sources.md#glue-metrics), so adalbert's
//! results line up with theirs column for column.
//!
//! Earlier versions wrote `mcc` for the Matthews correlation. Results, bundles, run states and
//! CSV files written then still exist (a `--resume` reads them back), so every reader of stored
//! metric names passes them through [`current_name`].

use std::collections::BTreeMap;

/// Names earlier versions wrote, and the name each has now.
pub const RENAMED: &[(&str, &str)] = &[("mcc", "matthews_correlation")];

/// The current name of a metric that may have been stored under an old name.
pub fn current_name(name: &str) -> &str {
    RENAMED
        .iter()
        .find(|(old, _)| *old == name)
        .map_or(name, |(_, new)| new)
}

/// `metrics` with every key under its current name ([`current_name`]).
pub fn current_names<V>(metrics: BTreeMap<String, V>) -> BTreeMap<String, V> {
    metrics
        .into_iter()
        .map(|(k, v)| (current_name(&k).to_string(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_names_are_read_as_the_current_ones() {
        assert_eq!(current_name("mcc"), "matthews_correlation");
        for name in [
            "accuracy",
            "f1",
            "matthews_correlation",
            "pearson",
            "spearmanr",
        ] {
            assert_eq!(current_name(name), name);
        }
        let m = current_names(BTreeMap::from([
            ("mcc".to_string(), 0.5),
            ("f1".into(), 0.25),
        ]));
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [
                ("f1".to_string(), 0.25),
                ("matthews_correlation".into(), 0.5)
            ]
        );
    }
}
