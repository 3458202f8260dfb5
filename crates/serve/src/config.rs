//! Server settings and their limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ServeError;

/// Everything the server can be told; [`Default`] is what `adalbert serve` uses unless flags
/// say otherwise.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Bearer token for the admin routes (`PUT`/`DELETE /v1/tasks/{task}`); `None` leaves them
    /// open, which is only sensible on loopback.
    pub token: Option<String>,
    /// How long the batching worker waits for more requests after the first one of a batch.
    pub batch_window: Duration,
    /// Most inputs (rows) in one model pass.
    pub max_batch: usize,
    /// Most requests waiting for the worker; one more is refused with 503 and `Retry-After`.
    pub queue_depth: usize,
    /// Largest prediction request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest bundle upload (`PUT /v1/tasks/{task}`), in bytes (413 beyond).
    pub max_bundle_bytes: usize,
    /// Most inputs in one request (413 beyond).
    pub max_inputs: usize,
    /// Time from a request's arrival to its answer before it is given up with 504.
    pub timeout: Duration,
    /// A directory of bundles served by name (`NAME.bundle.safetensors` or
    /// `NAME.safetensors`), each loaded on its first request.
    pub bundle_dir: Option<PathBuf>,
    /// Directories `POST /v1/tasks/{task}/load` may read bundles from (the bundle directory is
    /// always allowed).
    pub load_dirs: Vec<PathBuf>,
    /// Most tasks in memory; beyond it the least recently used task that can be reloaded from
    /// its file is unloaded. `None`: no limit.
    pub max_loaded_tasks: Option<usize>,
    /// Tasks never evicted (loaded at start-up).
    pub pinned: Vec<String>,
    /// Name of the backbone, accepted as the `model` of `/v1/embeddings` and shown by `/info`.
    pub model_name: String,
    /// Sentence-embedding pooling and normalization (the model's sentence-transformers files).
    pub embedding: crate::embed::SentenceConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            token: None,
            batch_window: Duration::from_millis(5),
            max_batch: 32,
            queue_depth: 256,
            max_body_bytes: 1 << 20,
            max_bundle_bytes: 512 << 20,
            max_inputs: 64,
            timeout: Duration::from_secs(30),
            bundle_dir: None,
            load_dirs: Vec::new(),
            max_loaded_tasks: None,
            pinned: Vec::new(),
            model_name: "adalbert".into(),
            embedding: crate::embed::SentenceConfig::default(),
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |what: &str| Err(ServeError::Config(format!("{what} must be at least 1")));
        if self.max_batch == 0 {
            return bad("max batch");
        }
        if self.queue_depth == 0 {
            return bad("queue depth");
        }
        if self.max_inputs == 0 {
            return bad("max inputs");
        }
        if self.max_body_bytes == 0 || self.max_bundle_bytes == 0 {
            return bad("body limits");
        }
        if self.timeout.is_zero() {
            return bad("timeout");
        }
        if self.max_loaded_tasks == Some(0) {
            return bad("--max-loaded-tasks");
        }
        if let Some(n) = self.max_loaded_tasks {
            if self.pinned.len() > n {
                return Err(ServeError::Config(format!(
                    "{} pinned tasks do not fit in --max-loaded-tasks {n}",
                    self.pinned.len()
                )));
            }
        }
        for dir in self.bundle_dir.iter().chain(&self.load_dirs) {
            if !dir.is_dir() {
                return Err(ServeError::Config(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ServeError::Config("the admin token is empty".into()));
        }
        Ok(())
    }
}
