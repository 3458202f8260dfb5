//! Typed errors of the model crate. Every variant names the file or tensor it concerns, so a
//! user can act on the message without reading code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A shared-vocabulary error (spec grammar, model shape, file writing).
    #[error(transparent)]
    Core(#[from] adalbert_core::CoreError),
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("no weights in {dir}: expected model.safetensors or pytorch_model.bin")]
    NoWeights { dir: PathBuf },
    #[error("cannot load weights from {path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("tensor `{name}` is missing from {path} (expected shape {expected:?})")]
    MissingTensor {
        name: String,
        expected: Vec<usize>,
        path: PathBuf,
    },
    #[error("tensor `{name}` in {path} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        path: PathBuf,
    },
    #[error("tensor `{name}` in {path} is {found}, expected a float type (F32, F16, BF16 or F64): an integer tensor is not a weight")]
    WrongDtype {
        name: String,
        found: String,
        path: PathBuf,
    },
    #[error("tensor `{name}` in {path}: element {index} is {value}; weights must be finite numbers (the file is corrupt or was saved from a diverged run)")]
    NonFinite {
        name: String,
        index: usize,
        value: f32,
        path: PathBuf,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("invalid adapter spec `{spec}`: {reason}")]
    AdapterSpec { spec: String, reason: String },
    /// A PEFT or AdapterHub file, or a bundle to export, that cannot be mapped exactly: names
    /// the file, the field (config key, tensor or bundle layout entry) and why.
    #[error("{}: `{field}`: {reason}", path.display())]
    Interop {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("task bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;
