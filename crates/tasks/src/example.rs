//! One input of a task, and its label.

/// The target of an example, or a prediction for it.
///
/// The same type serves gold labels and predictions so that [`crate::evaluate`] and
/// [`crate::write_submission`] take one shape of input for every task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// Index into the task's label list ([`crate::TaskKind::Classification`]).
    Class(usize),
    /// A real-valued target ([`crate::TaskKind::Regression`]).
    Score(f32),
    /// No label: GLUE test sets are distributed without labels.
    None,
}

impl Label {
    /// The class index, if this is a class label.
    pub fn class(&self) -> Option<usize> {
        match self {
            Label::Class(c) => Some(*c),
            _ => None,
        }
    }

    /// The score, if this is a regression label.
    pub fn score(&self) -> Option<f32> {
        match self {
            Label::Score(s) => Some(*s),
            _ => None,
        }
    }
}

/// One example: a sentence or a sentence pair, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Where the example comes from, stable across runs: for GLUE the `index`/`id` column
    /// where the file has one (test files always do, and submissions need it), otherwise the
    /// 0-based row number within the split file; for offline tasks the source's own id
    /// (e.g. a VADER snippet id or `business/001.txt`), prefixed by the source name.
    pub id: String,
    /// First (or only) text.
    pub text_a: String,
    /// Second text of a pair task; `None` for single-sentence tasks.
    pub text_b: Option<String>,
    /// Gold label; [`Label::None`] on unlabeled test sets.
    pub label: Label,
}
