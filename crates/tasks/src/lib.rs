//! Tasks for adalbert: what a task is, where its examples come from, and how it is scored.
//!
//! This crate is for everything about tasks that does not involve a model:
//! - a registry of task definitions ([`task_spec`]): the nine GLUE tasks (MNLI twice, as
//!   `mnli` for matched and `mnli-mm` for mismatched dev/test; plus the `ax` diagnostic)
//!   and the offline suite built from assets fetched by `scripts/fetch-assets`;
//! - readers for GLUE's TSV files ([`read_glue`]) and builders of the offline suite with
//!   seeded train/dev/test splits, both behind [`load_task`] / [`load_dataset`];
//! - the official metrics, matching scikit-learn/SciPy ([`evaluate`]);
//! - GLUE leaderboard submission files ([`write_submission`]);
//! - users' own CSV, TSV or JSON Lines files as a task ([`DataFiles`] -> [`FileTask`]).
//! - what a study trains, selects and reports on for each task ([`load_study`]): the offline
//!   suite's seeded splits, or for GLUE a seeded selection slice of `train.tsv` and the
//!   official dev set reported (its test set is unlabeled).
//!
//! Label orders (class index = position; they fix the classifier head's output order):
//! - GLUE, as the HF `glue` dataset: CoLA `unacceptable, acceptable`; SST-2 `negative,
//!   positive`; MRPC `not_equivalent, equivalent`; QQP `not_duplicate, duplicate`; MNLI and
//!   AX `entailment, neutral, contradiction`; QNLI and RTE `entailment, not_entailment`;
//!   WNLI `not_entailment, entailment`; STS-B is regression (0..5).
//! - Offline suite: polarity tasks `negative, positive`; `tweet-sentiment` `negative,
//!   neutral, positive`; `bbc-topic` `business, entertainment, politics, sports, tech`;
//!   `derived-same-polarity` `different, same`; `movie-rating` is regression (-4..4).
//!
//! It is not for tokenization, batching or anything that touches tensors (that is the
//! `model` and `train` crates' job), and it depends on no ML framework, so tools that only
//! need data or metrics stay light.
//!
//! ```no_run
//! use adalbert_tasks::{evaluate, load_task, task_spec, Label, Split};
//! # fn main() -> Result<(), adalbert_tasks::Error> {
//! let spec = task_spec("movie-polarity")?;
//! let dev = load_task(&spec.name, None, Split::Dev, 42)?;
//! let golds: Vec<Label> = dev.iter().map(|e| e.label).collect();
//! let preds = vec![Label::Class(1); dev.len()];
//! for (name, value) in evaluate(&spec, &preds, &golds)? {
//!     println!("{name} {value:.4}");
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod dataset;
mod error;
mod example;
pub mod files;
pub mod glue;
pub mod metrics;
mod registry;
pub mod split;
pub mod study;
pub mod submission;
pub mod suite;
mod task;
mod tsv;

pub use dataset::{load_dataset, load_task, Dataset, Dropped};
pub use error::{Error, MixedLabelLines, Result};
pub use example::{Example, Label};
pub use files::{DataFiles, FileFormat, FileTask, TaskType};
pub use glue::{parse_glue, read_glue, read_glue_skipping, GlueTask};
pub use metrics::{evaluate, metric_value};
pub use registry::{task_names, task_spec};
pub use split::Split;
pub use study::{load_study, official_tests, report_split, GlueSelection, StudyData};
pub use submission::{submission_file_name, write_submission};
pub use suite::OfflineTask;
pub use task::{Metric, TaskKind, TaskSource, TaskSpec};
