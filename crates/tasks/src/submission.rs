//! GLUE leaderboard submission files.
//!
//! One file per task, named as the leaderboard expects (`CoLA.tsv`, `SST-2.tsv`,
//! `MNLI-m.tsv`, `MNLI-mm.tsv`, `AX.tsv`, ...), with a header `index\tprediction` and one
//! line per test example: the example's GLUE index, then the label as GLUE writes it
//! (`entailment`/`not_entailment` for RTE and QNLI, MNLI's three names for MNLI and AX,
//! `0`/`1` for the others, a score clipped to [0, 5] for STS-B).
//!
//! Files are written to a temporary name in the same folder and renamed into place, so an
//! interrupted run never leaves a truncated file that looks complete.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::example::{Example, Label};
use crate::task::{TaskSource, TaskSpec};

/// The submission file name of a GLUE task spec; an error for non-GLUE tasks.
pub fn submission_file_name(spec: &TaskSpec) -> Result<&'static str> {
    match spec.source {
        TaskSource::Glue(task) => Ok(task.submission_file_name()),
        TaskSource::Offline(_) | TaskSource::Files => Err(Error::Submission {
            task: spec.name.clone(),
            message: "only GLUE tasks have leaderboard submission files".to_string(),
        }),
    }
}

/// Render the submission text (header and rows) without writing it.
pub fn submission_text(spec: &TaskSpec, examples: &[Example], preds: &[Label]) -> Result<String> {
    let fail = |message: String| Error::Submission {
        task: spec.name.clone(),
        message,
    };
    let TaskSource::Glue(task) = spec.source else {
        return Err(fail(
            "only GLUE tasks have leaderboard submission files".into(),
        ));
    };
    if examples.len() != preds.len() {
        return Err(fail(format!(
            "{} examples but {} predictions",
            examples.len(),
            preds.len()
        )));
    }
    let mut text = String::from("index\tprediction\n");
    for (i, (example, pred)) in examples.iter().zip(preds).enumerate() {
        if example.id.is_empty() || example.id.contains(['\t', '\n', '\r']) {
            return Err(fail(format!(
                "example #{i} has id {:?}, which cannot be a GLUE index",
                example.id
            )));
        }
        let value = match (task.label_tokens(), pred) {
            (Some(tokens), Label::Class(c)) => match tokens.get(*c) {
                Some(token) => (*token).to_string(),
                None => {
                    return Err(fail(format!(
                        "prediction #{i} is class {c}, but the task has {} classes",
                        tokens.len()
                    )))
                }
            },
            (None, Label::Score(s)) if s.is_finite() => format!("{:.3}", s.clamp(0.0, 5.0)),
            (_, other) => {
                return Err(fail(format!(
                    "prediction #{i} is {other:?}, which does not fit this task"
                )))
            }
        };
        text.push_str(&example.id);
        text.push('\t');
        text.push_str(&value);
        text.push('\n');
    }
    Ok(text)
}

/// Write the submission file of `spec` into `dir` (created if needed), atomically; returns
/// the file's path. `examples` are the test examples (their `id` is GLUE's index) and
/// `preds` the predictions in the same order.
pub fn write_submission(
    dir: &Path,
    spec: &TaskSpec,
    examples: &[Example],
    preds: &[Label],
) -> Result<PathBuf> {
    let name = submission_file_name(spec)?;
    let text = submission_text(spec, examples, preds)?;
    let path = dir.join(name);
    adalbert_core::files::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}
