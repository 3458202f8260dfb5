//! What a task is: its output kind, inputs, metrics and where its data comes from.

use std::fmt;

use crate::glue::GlueTask;
use crate::suite::OfflineTask;

/// The output of a task, which decides the classifier head and the loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// Single-label classification; [`crate::Label::Class`] indexes `labels`.
    Classification {
        /// Label names, in class-index order (the head's output order).
        labels: Vec<String>,
    },
    /// Real-valued output (one head output); [`crate::Label::Score`].
    Regression,
}

/// An official metric. [`Metric::name`] gives the name used in reports and by
/// [`crate::evaluate`]: the names HF `evaluate`'s GLUE metric writes
/// (docs/sources.md#glue-metrics). Stored results may use an older name
/// (`adalbert_core::metric::current_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Fraction of exact matches.
    Accuracy,
    /// F1 of the positive class (class index 1).
    F1,
    /// Matthews correlation coefficient.
    Mcc,
    /// Pearson correlation of scores.
    Pearson,
    /// Spearman rank correlation of scores (ties get average ranks).
    Spearman,
    /// Mean of the task's other metrics; only reported when a task has more than one.
    CombinedScore,
}

impl Metric {
    /// Report name: `accuracy`, `f1`, `matthews_correlation`, `pearson`, `spearmanr`,
    /// `combined_score`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Mcc => "matthews_correlation",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearmanr",
            Metric::CombinedScore => "combined_score",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a task's data comes from; decides which reader [`crate::load_task`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskSource {
    /// A GLUE task, read from its TSV folder.
    Glue(GlueTask),
    /// An offline-suite task, built from the files under `assets/data`.
    Offline(OfflineTask),
    /// The user's own data files ([`crate::DataFiles`]); not in the registry, so read with
    /// [`crate::FileTask::load`] rather than [`crate::load_task`].
    Files,
}

/// Everything the training and evaluation code needs to know about a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Canonical name (e.g. `sst2`, `mnli-mm`, `movie-polarity`).
    pub name: String,
    /// Classification with its label names, or regression.
    pub kind: TaskKind,
    /// Whether examples carry a second text (`text_b`).
    pub is_pair: bool,
    /// Official metrics, in report order (without `combined_score`).
    pub metrics: Vec<Metric>,
    /// The metric used for model selection: the only metric, or
    /// [`Metric::CombinedScore`] when there are several.
    pub primary: Metric,
    /// Data source.
    pub source: TaskSource,
    /// One line on what the task is; derived tasks say that they are not GLUE.
    pub description: String,
}

impl TaskSpec {
    /// Number of head outputs: the label count, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        match &self.kind {
            TaskKind::Classification { labels } => labels.len(),
            TaskKind::Regression => 1,
        }
    }

    /// Label names of a classification task; empty for regression.
    pub fn labels(&self) -> &[String] {
        match &self.kind {
            TaskKind::Classification { labels } => labels,
            TaskKind::Regression => &[],
        }
    }

    /// Whether this is one of the GLUE tasks (or the AX diagnostic).
    pub fn is_glue(&self) -> bool {
        matches!(self.source, TaskSource::Glue(_))
    }
}
