//! The parts of a task that a study reads: where it trains, where it selects (learning rate,
//! epoch) and what it reports. The one place that decides this for every task, so the
//! experiment's stages never pick splits themselves.
//!
//! - Offline suite: its seeded train / dev / test split (train, select on dev, report test).
//! - GLUE: `test.tsv` is unlabeled (scored by the leaderboard only), so the standard protocol
//!   for GLUE studies applies: a seeded slice of `train.tsv` is the selection split, training
//!   uses the rest of `train.tsv`, and the official labeled `dev.tsv` (MNLI's
//!   `dev_matched.tsv` for `mnli`, `dev_mismatched.tsv` for `mnli-mm`) is the reported split,
//!   which no selection reads. The unlabeled test files are predicted for a leaderboard
//!   submission ([`official_tests`]); AX's diagnostic set is predicted with the `mnli` model.

use std::path::Path;

use adalbert_core::rng::permutation;

use crate::dataset::{load_dataset, Dataset, Dropped};
use crate::error::{Error, Result};
use crate::glue::GlueTask;
use crate::registry::task_spec;
use crate::split::Split;
use crate::task::{TaskSource, TaskSpec};

/// Default fraction of `train.tsv` held out for selection on GLUE.
pub const DEFAULT_SELECT_FRACTION: f64 = 0.1;
/// Default cap on the selection slice: enough for a stable dev metric, without taking tens
/// of thousands of MNLI/QQP examples away from training.
pub const DEFAULT_SELECT_MAX: usize = 2000;

/// How the selection slice of a GLUE training file is cut: `round(n * fraction)` examples,
/// at most `max`, at least 1, and never all of them (training keeps at least one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlueSelection {
    pub fraction: f64,
    pub max: usize,
}

impl Default for GlueSelection {
    fn default() -> Self {
        Self {
            fraction: DEFAULT_SELECT_FRACTION,
            max: DEFAULT_SELECT_MAX,
        }
    }
}

impl GlueSelection {
    /// Why the values cannot cut a slice, if they cannot: `(field, reason)`.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if !(self.fraction > 0.0 && self.fraction < 1.0) {
            return Err((
                "fraction",
                format!("= {}: must be a number in (0, 1)", self.fraction),
            ));
        }
        if self.max == 0 {
            return Err(("max", "= 0: the selection slice needs examples".into()));
        }
        Ok(())
    }

    /// The selection slice size of a training file of `n` examples.
    pub fn size(&self, task: &str, n: usize) -> Result<usize> {
        self.check().map_err(|(field, reason)| Error::Selection {
            task: task.to_string(),
            message: format!("{field} {reason}"),
        })?;
        if n < 2 {
            return Err(Error::Selection {
                task: task.to_string(),
                message: format!(
                    "train.tsv has {n} example(s); a selection slice and a training rest need at least 2"
                ),
            });
        }
        let k = (n as f64 * self.fraction).round() as usize;
        Ok(k.clamp(1, self.max).min(n - 1))
    }
}

/// The three parts of a task a study reads.
#[derive(Debug, Clone)]
pub struct StudyData {
    /// What training reads.
    pub train: Dataset,
    /// What selection (learning rate, early stopping) reads.
    pub select: Dataset,
    /// What the tables report; no selection reads it.
    pub report: Dataset,
}

/// The split the study reports for `spec`: the offline suite's test split, or GLUE's labeled
/// dev file (its test file is unlabeled).
pub fn report_split(spec: &TaskSpec) -> Split {
    match spec.source {
        TaskSource::Glue(_) => Split::Dev,
        TaskSource::Offline(_) | TaskSource::Files => Split::Test,
    }
}

/// The train / select / report parts of the task `name` (see the module docs).
/// `data_dir` and `split_seed` are as for [`load_dataset`]; for GLUE, `split_seed` shuffles
/// `train.tsv` to cut the selection slice (`glue` says how big). Both parts keep the file's
/// order; the training part's `dropped` records the slice and its seed.
pub fn load_study(
    name: &str,
    data_dir: Option<&Path>,
    split_seed: u64,
    glue: GlueSelection,
) -> Result<StudyData> {
    let spec = task_spec(name)?;
    match spec.source {
        TaskSource::Offline(_) => Ok(StudyData {
            train: load_dataset(name, data_dir, Split::Train, split_seed)?,
            select: load_dataset(name, data_dir, Split::Dev, split_seed)?,
            report: load_dataset(name, data_dir, Split::Test, split_seed)?,
        }),
        // A user's files name their own train / validation / test parts: the caller reads them
        // with `FileTask::load`, which needs the files' options this function does not have.
        TaskSource::Files => Err(Error::Selection {
            task: spec.name,
            message:
                "a task from data files is loaded with FileTask::load (its files are its parts)"
                    .into(),
        }),
        TaskSource::Glue(GlueTask::Ax) => Err(Error::Selection {
            task: spec.name,
            message: "AX has only a test set; it is predicted with the `mnli` model (list `mnli`)"
                .into(),
        }),
        TaskSource::Glue(_) => {
            let Dataset {
                task,
                examples,
                sources,
                ..
            } = load_dataset(name, data_dir, Split::Train, split_seed)?;
            let n = examples.len();
            let k = glue.size(&spec.name, n)?;
            let mut in_select = vec![false; n];
            for &i in &permutation(n, split_seed)[..k] {
                in_select[i] = true;
            }
            let (mut select, mut train) = (Vec::with_capacity(k), Vec::with_capacity(n - k));
            for (example, sel) in examples.into_iter().zip(in_select) {
                if sel {
                    select.push(example);
                } else {
                    train.push(example);
                }
            }
            let slice = Dropped {
                reason: format!(
                    "held out of train.tsv as the selection slice (fraction {}, at most {}, split seed {split_seed})",
                    glue.fraction, glue.max
                ),
                count: k,
            };
            let report = load_dataset(name, data_dir, Split::Dev, split_seed)?;
            Ok(StudyData {
                train: Dataset {
                    task: task.clone(),
                    split: Split::Train,
                    seed: Some(split_seed),
                    examples: train,
                    sources: sources.clone(),
                    dropped: vec![slice],
                },
                select: Dataset {
                    task,
                    split: Split::Dev,
                    seed: Some(split_seed),
                    examples: select,
                    sources,
                    dropped: Vec::new(),
                },
                report,
            })
        }
    }
}

/// The unlabeled official test sets a model of task `name` predicts for a GLUE leaderboard
/// submission: its own test file, and for `mnli` also AX's diagnostic set. Empty for the
/// offline suite (its test split is labeled and reported). `data_dir` is the GLUE root.
pub fn official_tests(name: &str, data_dir: Option<&Path>) -> Result<Vec<Dataset>> {
    let spec = task_spec(name)?;
    let TaskSource::Glue(task) = spec.source else {
        return Ok(Vec::new());
    };
    let mut v = vec![load_dataset(name, data_dir, Split::Test, 0)?];
    if task == GlueTask::Mnli {
        v.push(load_dataset(GlueTask::Ax.name(), data_dir, Split::Test, 0)?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_sizes() {
        let g = GlueSelection::default();
        assert_eq!(g.size("rte", 2490).unwrap(), 249);
        assert_eq!(g.size("mnli", 392_702).unwrap(), 2000);
        assert_eq!(g.size("wnli", 3).unwrap(), 1);
        assert_eq!(g.size("x", 2).unwrap(), 1);
        let err = g.size("cola", 1).unwrap_err().to_string();
        assert!(
            err.contains("`cola`") && err.contains("at least 2"),
            "{err}"
        );
        let bad = GlueSelection {
            fraction: 1.0,
            max: 5,
        };
        assert!(bad
            .size("rte", 100)
            .unwrap_err()
            .to_string()
            .contains("fraction"));
        assert_eq!(
            GlueSelection {
                fraction: 0.9,
                max: 100
            }
            .size("rte", 10)
            .unwrap(),
            9
        );
    }
}
