//! Results cached by a hash of their inputs, written atomically, so `--resume` skips finished
//! work and an interrupted run loses nothing that finished.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

pub struct Cache {
    dir: PathBuf,
    resume: bool,
}

impl Cache {
    pub fn new(dir: PathBuf, resume: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir, resume })
    }

    /// Short hex hash of any serializable description of a result's inputs.
    pub fn key(inputs: &impl Serialize) -> String {
        let json = serde_json::to_string(inputs).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, stage: &str, key: &str) -> PathBuf {
        self.dir.join(format!("{stage}-{key}.json"))
    }

    /// The cached result, when resuming and it exists.
    pub fn get<T: DeserializeOwned>(&self, stage: &str, key: &str) -> Option<T> {
        if !self.resume {
            return None;
        }
        let text = std::fs::read_to_string(self.path(stage, key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn put<T: Serialize>(&self, stage: &str, key: &str, value: &T) -> anyhow::Result<()> {
        let path = self.path(stage, key);
        let json = serde_json::to_vec_pretty(value)?;
        write_atomic(&path, &json)
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    adalbert_core::files::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
