//! After the report's selection: GLUE leaderboard submission files. GLUE's test sets are
//! unlabeled, so a study reports the official dev set and predicts the test sets for a
//! submission instead. Each reported cell of Table 1 (backbone, GLUE task, method at
//! `train.sharing`) predicts its task's test file, and `mnli` also AX's diagnostic set, with
//! the kept (best dev epoch) bundle of the first seed of its chosen learning rate; the files
//! go to `<report>/glue_submission/<backbone>/<method>/<TASK>.tsv`, named and formatted as the
//! leaderboard expects (`adalbert_tasks::submission`).
//!
//! A file's text is cached under the bundle (whose name holds its training item's key) and
//! the test file's sha256, so rewriting the report does not predict again.

use std::path::{Path, PathBuf};

use adalbert_model::checkpoint::sha256_file;
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Backbone, EncoderConfig, TaskBundle, TaskModel, TrainMode};
use adalbert_tasks::submission::{submission_file_name, submission_text};
use adalbert_tasks::{official_tests, task_spec};
use adalbert_train::eval::predict;
use serde::Serialize;

use crate::cache::Cache;
use crate::config::Experiment;
use crate::error::{Context, ExperimentError, Result};
use crate::select::select_all;
use crate::stages::train::TrainRecord;

/// Batch size of the test predictions.
const PREDICT_BATCH: usize = 64;

/// The folder under the report that holds the submission files.
pub const SUBMISSION_DIR: &str = "glue_submission";

/// Everything a submission file depends on (its cache key).
#[derive(Serialize)]
struct SubmitKey<'a> {
    /// The bundle's file name, which holds its training item's key.
    bundle: &'a str,
    task: &'a str,
    test_sha256: &'a str,
    max_len: usize,
    tool: &'a str,
}

/// A bundle with the backbone it runs on, loaded on the first cache miss.
struct Loaded {
    backbone: Backbone,
    bundle: TaskBundle,
    config: EncoderConfig,
    tokenizer: Tokenizer,
}

/// Writes the submission files of every reported GLUE cell under `<report_dir>/glue_submission`;
/// returns their paths (none for an offline-suite study).
pub fn write_all(
    exp: &Experiment,
    records: &[TrainRecord],
    cache: &Cache,
    report_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let main: Vec<&TrainRecord> = records
        .iter()
        .filter(|r| {
            r.compressed.is_none()
                && r.sharing == exp.train.sharing
                && exp.tasks.names.contains(&r.task)
                && exp.tasks.methods.contains(&r.method)
                && task_spec(&r.task).is_ok_and(|s| s.is_glue())
        })
        .collect();
    let mut written = Vec::new();
    for cell in select_all(&main) {
        let r = cell.first();
        let data = exp.data_for(&r.task);
        let tests = official_tests(&r.task, Some(&data))
            .context(|| format!("loading the GLUE test files of `{}`", r.task))?;
        let dir = report_dir
            .join(SUBMISSION_DIR)
            .join(&r.backbone)
            .join(r.method.replace([':', ',', '='], "-"));
        let bundle_name = r
            .bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut loaded: Option<Loaded> = None;
        for test in tests {
            let source = test.sources.first().cloned().unwrap_or_default();
            let sha = sha256_file(&source)?;
            let key = Cache::key(
                "submit",
                &SubmitKey {
                    bundle: &bundle_name,
                    task: &test.task.name,
                    test_sha256: &sha,
                    max_len: exp.train.max_len,
                    tool: env!("CARGO_PKG_VERSION"),
                },
            )?;
            let text = match cache.read::<String>(&key) {
                Some(text) => text,
                None => {
                    if loaded.is_none() {
                        loaded = Some(load(exp, r)?);
                    }
                    let Some(l) = loaded.as_ref() else { continue };
                    let own;
                    let backbone = if l.bundle.meta.mode == TrainMode::Full {
                        own = l.bundle.full_backbone(&l.config)?;
                        &own
                    } else {
                        &l.backbone
                    };
                    let params = l.bundle.task_params(&l.config)?;
                    let model = TaskModel {
                        backbone,
                        task: &params,
                        layout: &l.bundle.meta.layout,
                    };
                    // AX is scored with the MNLI model: same labels, its own file name.
                    let preds = predict(
                        &model,
                        &l.tokenizer,
                        &test.task,
                        &test.examples,
                        PREDICT_BATCH,
                    )
                    .context(|| {
                        format!(
                            "predicting {} with {}",
                            source.display(),
                            r.bundle.display()
                        )
                    })?;
                    let text = submission_text(&test.task, &test.examples, &preds)?;
                    cache.put(&key, &text)?;
                    text
                }
            };
            let path = dir.join(submission_file_name(&test.task)?);
            adalbert_core::files::write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
    }
    Ok(written)
}

fn load(exp: &Experiment, r: &TrainRecord) -> Result<Loaded> {
    let model_dir = &exp
        .backbone(&r.backbone)
        .ok_or_else(|| ExperimentError::Bundle {
            path: r.bundle.clone(),
            reason: format!("backbone `{}` is not in the experiment", r.backbone),
        })?
        .path;
    let config = EncoderConfig::from_path(model_dir)
        .context(|| format!("loading the config of {}", model_dir.display()))?;
    let bundle = TaskBundle::load(&r.bundle)?;
    let (backbone, _) = Backbone::from_dir(model_dir)
        .context(|| format!("loading model from {}", model_dir.display()))?;
    let tokenizer = Tokenizer::from_dir(model_dir, exp.train.max_len)?;
    Ok(Loaded {
        backbone,
        bundle,
        config,
        tokenizer,
    })
}
