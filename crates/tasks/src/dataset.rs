//! Loading a task's split by name: the entry point the training code calls.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::example::Example;
use crate::glue::{glue_file, read_glue};
use crate::registry::task_spec;
use crate::split::Split;
use crate::suite::{self, DEFAULT_DATA_DIR};
use crate::task::{TaskSource, TaskSpec};

/// Rows left out while building a split, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Why, including whether the count is for this split or for the whole source.
    pub reason: String,
    /// How many.
    pub count: usize,
}

/// One split of one task, with what is needed to reproduce it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The task.
    pub task: TaskSpec,
    /// Which split.
    pub split: Split,
    /// The seed that shuffled the offline suite's source before splitting; `None` for GLUE,
    /// whose splits are fixed files. Record it next to any result.
    pub seed: Option<u64>,
    /// The examples, in split order.
    pub examples: Vec<Example>,
    /// Files or folders the examples were read from.
    pub sources: Vec<PathBuf>,
    /// Rows left out (filters, undecodable rows).
    pub dropped: Vec<Dropped>,
}

impl Dataset {
    /// Examples per class index (empty for regression tasks), for label-balance reports.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.task.labels().len()];
        for example in &self.examples {
            if let Some(c) = example.label.class() {
                if let Some(slot) = counts.get_mut(c) {
                    *slot += 1;
                }
            }
        }
        counts
    }
}

/// Load one split of a task by name, with provenance.
///
/// - GLUE names: `data_dir` is the task folder (e.g. `glue/SST-2`; the GLUE root also
///   works); without it, `glue/<Folder>` under the current directory. `seed` is unused
///   (GLUE splits are fixed files) and recorded as `None`.
/// - Offline-suite names: `data_dir` is the assets folder (default [`DEFAULT_DATA_DIR`]);
///   the source is shuffled with `seed` and cut 80/10/10. Same seed, same split.
///
/// A missing file is an error naming it (and, for offline assets, saying that
/// `scripts/fetch-assets` fetches it).
pub fn load_dataset(
    name: &str,
    data_dir: Option<&Path>,
    split: Split,
    seed: u64,
) -> Result<Dataset> {
    let task = task_spec(name)?;
    match task.source {
        TaskSource::Glue(glue) => {
            let dir = data_dir.map_or_else(
                || Path::new("glue").join(glue.folder_name()),
                Path::to_path_buf,
            );
            let examples = read_glue(glue, &dir, split)?;
            let source = glue_file(glue, &dir, split)?;
            Ok(Dataset {
                task,
                split,
                seed: None,
                examples,
                sources: vec![source],
                dropped: Vec::new(),
            })
        }
        TaskSource::Offline(offline) => {
            let dir = data_dir.unwrap_or(Path::new(DEFAULT_DATA_DIR));
            let (examples, dropped) = suite::build(offline, dir, split, seed)?;
            Ok(Dataset {
                task,
                split,
                seed: Some(seed),
                examples,
                sources: offline.source_paths(dir),
                dropped,
            })
        }
        // The registry holds no file-backed task; this arm only keeps the match total.
        TaskSource::Files => Err(crate::Error::Options(format!(
            "task `{}` is read from data files; load it with DataFiles::resolve",
            task.name
        ))),
    }
}

/// Load one split of a task by name: [`load_dataset`] without the provenance.
pub fn load_task(
    name: &str,
    data_dir: Option<&Path>,
    split: Split,
    seed: u64,
) -> Result<Vec<Example>> {
    Ok(load_dataset(name, data_dir, split, seed)?.examples)
}
