//! Errors of the shared vocabulary: a spec that does not parse, a config field that is
//! missing or out of range, a file that cannot be read or written.
//!
//! A wrapped cause is returned by `source()` and not repeated in the message, so an error
//! chain printed by the binary names each cause once.

use std::path::PathBuf;

/// An error of this crate; every variant names its input (file, field or spec text).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A spec string that does not follow its grammar.
    #[error("invalid {what} `{input}`: {reason}")]
    Spec {
        what: &'static str,
        input: String,
        reason: String,
    },
    /// A configuration field that is missing or has a bad value.
    #[error("{origin}: field `{field}`: expected {expected}")]
    Field {
        origin: String,
        field: String,
        expected: String,
    },
    /// A name that is not one of the known ones.
    #[error("unknown {what} `{name}` (known: {known})")]
    Unknown {
        what: &'static str,
        name: String,
        known: String,
    },
    /// A file that cannot be read or written.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output path that names an existing directory.
    #[error("{} is a directory; expected a file path", path.display())]
    IsDirectory { path: PathBuf },
    /// An output path that cannot or must not be written (checked before work starts).
    #[error("output {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    /// Rows that cannot be written as CSV.
    #[error("cannot write CSV for {}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

pub type Result<T> = std::result::Result<T, CoreError>;
