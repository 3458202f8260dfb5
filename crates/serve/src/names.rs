//! The task name rule and checking bundles given at start-up.
//!
//! A task name is used in URLs, metric labels and (with `--bundle-dir`) file names, so it is
//! restricted to what is safe in all three: 1 to 64 characters of `A-Z a-z 0-9 - _ .`,
//! starting with a letter or digit, never containing `..`. No path separator can appear, so a
//! name can never leave the directory it is looked up in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adalbert_model::{MultiTask, TaskBundle};

use crate::error::ServeError;

/// The rule, as stated in errors and documentation.
pub const TASK_NAME_RULE: &str =
    "1 to 64 of A-Z a-z 0-9 - _ ., starting with a letter or digit, without `..`";

/// Whether `name` follows [`TASK_NAME_RULE`].
pub fn valid_task_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Loads bundle files into `mt` before serving, each under the task name in its metadata.
/// Refuses (naming the file) a bundle that does not load or fails validation against the
/// backbone, a task name that breaks the rule, and two bundles for the same task. Nothing is
/// added unless every bundle passes. Returns `(task, file)` pairs in the order given.
pub fn preload(mt: &MultiTask, paths: &[PathBuf]) -> Result<Vec<(String, PathBuf)>, ServeError> {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    let mut ready = Vec::with_capacity(paths.len());
    for path in paths {
        let bundle = TaskBundle::load(path).map_err(|source| ServeError::Bundle {
            path: path.clone(),
            source,
        })?;
        let name = bundle.meta.task.clone();
        check_name(&name, path)?;
        if let Some(first) = seen.insert(name.clone(), path.as_path()) {
            return Err(ServeError::DuplicateTask {
                task: name,
                first: first.to_path_buf(),
                second: path.clone(),
            });
        }
        let loaded = mt.prepare(bundle).map_err(|source| ServeError::Bundle {
            path: path.clone(),
            source,
        })?;
        ready.push((name, path.clone(), loaded));
    }
    Ok(ready
        .into_iter()
        .map(|(name, path, loaded)| {
            mt.insert(loaded);
            (name, path)
        })
        .collect())
}

/// A start-up error if `name` (from `path`) breaks the rule.
pub fn check_name(name: &str, path: &Path) -> Result<(), ServeError> {
    if valid_task_name(name) {
        Ok(())
    } else {
        Err(ServeError::TaskName {
            task: name.to_string(),
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in ["sst2", "movie-polarity", "a.b_c-9", "X", &"a".repeat(64)] {
            assert!(valid_task_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "..",
            ".hidden",
            "a..b",
            "-x",
            "sp ace",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_task_name(bad), "{bad}");
        }
    }
}
