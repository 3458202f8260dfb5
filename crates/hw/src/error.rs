//! Typed errors: each names the file or spec, the field and what was expected, so a user can fix
//! the input without reading the simulator's code.

use std::path::PathBuf;

/// Everything that can go wrong while loading inputs, mapping or simulating.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A TOML or JSON document did not parse into the expected shape.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A field is missing or holds a value outside what the model accepts.
    #[error("{origin}: field `{field}`: expected {expected}")]
    Field {
        origin: String,
        field: String,
        expected: String,
    },
    /// A command-line style spec string (adapter, plan, policy...) is malformed.
    #[error("invalid {what} `{input}`: expected {expected}")]
    Spec {
        what: &'static str,
        input: String,
        expected: String,
    },
    /// A name (model, cell row, policy) is not one of the known ones.
    #[error("unknown {what} `{name}`; known: {known}")]
    Unknown {
        what: &'static str,
        name: String,
        known: String,
    },
    /// A mapping places more data in a memory than its capacity allows.
    #[error(
        "policy {policy}: {memory} needs {needed_mb:.3} MB but its capacity is {capacity_mb:.3} MB \
         (raise the capacity in the architecture file or use \"auto\")"
    )]
    Capacity {
        policy: String,
        memory: &'static str,
        needed_mb: f64,
        capacity_mb: f64,
    },
    /// A shared-vocabulary error: adapter spec, model shape.
    #[error(transparent)]
    Core(#[from] adalbert_core::CoreError),
    /// A compression plan that does not parse or validate.
    #[error(transparent)]
    Compress(#[from] adalbert_compress::CompressError),
    /// Writing an output (CSV, SVG, report) failed.
    #[error("cannot write {path}: {message}")]
    Output { path: PathBuf, message: String },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, HwError>;

/// Shorthand for a [`HwError::Field`].
pub(crate) fn field_err(origin: &str, field: &str, expected: impl Into<String>) -> HwError {
    HwError::Field {
        origin: origin.to_string(),
        field: field.to_string(),
        expected: expected.into(),
    }
}

/// Reads a data file, naming it in the error.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| HwError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a TOML document; `origin` names it in the error.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| HwError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}
