//! Task names: the one place that maps what a user types to a [`TaskSpec`].

use crate::error::{Error, Result};
use crate::glue::GlueTask;
use crate::suite::OfflineTask;
use crate::task::TaskSpec;

/// Canonical names of every task, GLUE first.
pub fn task_names() -> Vec<&'static str> {
    GlueTask::ALL
        .iter()
        .map(|t| t.name())
        .chain(OfflineTask::ALL.iter().map(|t| t.name()))
        .collect()
}

/// Lower-case and drop `-`, `_` and spaces, so `SST-2`, `sst_2` and `sst2` all match.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Look up a task by name. Accepts the canonical names of [`task_names`] and common
/// spellings (`SST-2`, `STS-B`, `MNLI-m`, `mnli_mismatched`, `Movie_Polarity`, ...).
/// An unknown name is an error that lists the valid names.
pub fn task_spec(name: &str) -> Result<TaskSpec> {
    let key = normalize(name);
    for task in GlueTask::ALL {
        if normalize(task.name()) == key || task.aliases().iter().any(|a| normalize(a) == key) {
            return Ok(task.spec());
        }
    }
    for task in OfflineTask::ALL {
        if normalize(task.name()) == key {
            return Ok(task.spec());
        }
    }
    Err(Error::UnknownTask {
        name: name.to_string(),
        valid: task_names().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Metric, TaskKind};

    #[test]
    fn spellings_resolve_to_canonical_names() {
        for (given, canonical) in [
            ("SST-2", "sst2"),
            ("sts-b", "stsb"),
            ("STS_B", "stsb"),
            ("CoLA", "cola"),
            ("MNLI-m", "mnli"),
            ("mnli_matched", "mnli"),
            ("MNLI-mm", "mnli-mm"),
            ("mnli-mismatched", "mnli-mm"),
            ("movie_polarity", "movie-polarity"),
            ("Derived-Same-Polarity", "derived-same-polarity"),
        ] {
            assert_eq!(task_spec(given).unwrap().name, canonical, "{given}");
        }
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = task_spec("sst3").unwrap_err().to_string();
        assert!(err.contains("`sst3`"), "{err}");
        assert!(err.contains("sst2") && err.contains("bbc-topic") && err.contains("mnli-mm"));
    }

    #[test]
    fn specs_carry_official_metrics() {
        let stsb = task_spec("stsb").unwrap();
        assert_eq!(stsb.kind, TaskKind::Regression);
        assert_eq!(stsb.metrics, vec![Metric::Pearson, Metric::Spearman]);
        assert_eq!(stsb.primary, Metric::CombinedScore);
        assert!(stsb.is_pair);
        let cola = task_spec("cola").unwrap();
        assert_eq!(cola.primary, Metric::Mcc);
        assert!(!cola.is_pair);
        let mrpc = task_spec("mrpc").unwrap();
        assert_eq!(mrpc.metrics, vec![Metric::Accuracy, Metric::F1]);
        assert_eq!(mrpc.labels(), ["not_equivalent", "equivalent"]);
        let mnli = task_spec("mnli").unwrap();
        assert_eq!(mnli.labels(), ["entailment", "neutral", "contradiction"]);
        assert_eq!(
            task_spec("wnli").unwrap().labels(),
            ["not_entailment", "entailment"]
        );
        assert_eq!(task_spec("bbc-topic").unwrap().num_outputs(), 5);
        assert_eq!(task_spec("movie-rating").unwrap().num_outputs(), 1);
        let derived = task_spec("derived-same-polarity").unwrap();
        assert!(derived.is_pair && !derived.is_glue());
        assert!(derived.description.contains("NOT GLUE"));
        assert_eq!(task_names().len(), 18);
    }
}
