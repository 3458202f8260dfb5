//! Typed errors of the experiment crate. Every variant names the file, key or item it
//! concerns; lower-level errors keep their own type and are reached through `source()`, so a
//! printed chain names each cause once.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A key of an experiment file, a sweep file or the flag form with a bad value.
    #[error("{origin}: `{key}` {reason}")]
    Config {
        origin: String,
        key: String,
        reason: String,
    },
    /// A TOML file that does not parse, or has an unknown or mistyped key.
    #[error("invalid {what} {}", path.display())]
    Toml {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A file that cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A task bundle that cannot be evaluated on the shared, compressed backbone.
    #[error("{}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },
    /// What was being done when the wrapped error happened.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<ExperimentError>,
    },
    #[error(transparent)]
    Core(#[from] adalbert_core::CoreError),
    #[error(transparent)]
    Model(#[from] adalbert_model::ModelError),
    #[error(transparent)]
    Train(#[from] adalbert_train::TrainError),
    #[error(transparent)]
    Task(#[from] adalbert_tasks::Error),
    #[error(transparent)]
    Compress(#[from] adalbert_compress::CompressError),
    #[error(transparent)]
    Compression(#[from] adalbert_model::compression::CompressionError),
    #[error(transparent)]
    Hw(#[from] adalbert_hw::HwError),
    /// A `--shard I/N` value that is not a shard.
    #[error("--shard {value}: {reason}")]
    Shard { value: String, reason: String },
    /// An output folder that belongs to another experiment or another plan; `path` is the
    /// file that says so.
    #[error("{}: {reason}", path.display())]
    OutDir { path: PathBuf, reason: String },
    /// Items of the plan with no result in the cache (`--merge` before every shard finished).
    #[error("{summary}\n{}", missing.join("\n"))]
    Missing {
        summary: String,
        /// One line per missing item (or group of them), then what to run.
        missing: Vec<String>,
    },
    /// A value that cannot be described as JSON (a cache key or record).
    #[error("cannot encode a cache record")]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, ExperimentError>;

/// Adds what was being done to any error this crate wraps.
pub(crate) trait Context<T> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<ExperimentError>> Context<T> for std::result::Result<T, E> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| ExperimentError::Context {
            context: what().into(),
            source: Box::new(e.into()),
        })
    }
}

/// The error and its causes, joined by `: ` (as anyhow's `{:#}` prints them).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        parts.push(e.to_string());
        next = e.source();
    }
    parts.join(": ")
}
