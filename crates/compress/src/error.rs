//! The one error type of the crate.
//!
//! Every variant names the field or tensor at fault and what was expected, so that a
//! CLI user who typed a bad plan, or a caller that passed a mis-shaped tensor, can fix
//! the input without reading this crate's source.

use thiserror::Error;

/// Errors returned by every fallible function of `adalbert-compress`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CompressError {
    /// A numeric parameter (bits, sparsity, rate, ...) is outside its valid range.
    #[error("{field} = {value} is out of range: expected {expected}")]
    OutOfRange {
        /// The parameter, e.g. `int.bits`.
        field: &'static str,
        /// The offending value as written.
        value: String,
        /// The valid range, in words.
        expected: String,
    },
    /// A tensor's data length does not match the product of its shape.
    #[error("tensor `{tensor}`: shape {shape:?} holds {expected} elements but data has {actual}")]
    ShapeMismatch {
        /// Tensor name.
        tensor: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Length of the data.
        actual: usize,
    },
    /// A tensor holds NaN or an infinity, which no format here can encode.
    #[error("tensor `{tensor}`: element {index} is {value}, expected a finite number")]
    NonFinite {
        /// Tensor name.
        tensor: String,
        /// Flat index of the first non-finite element.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// Two buffers that must be the same length are not.
    #[error("{what}: length {actual}, expected {expected}")]
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// A plan or fault specification string could not be parsed.
    #[error("invalid {kind} spec `{spec}`: {reason}")]
    Spec {
        /// `plan`, `format`, `prune` or `faults`.
        kind: &'static str,
        /// The text that failed.
        spec: String,
        /// What was expected instead.
        reason: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, CompressError>;

/// Builds an [`CompressError::OutOfRange`] without repeating `to_string` at call sites.
pub(crate) fn out_of_range(
    field: &'static str,
    value: impl ToString,
    expected: impl ToString,
) -> CompressError {
    CompressError::OutOfRange {
        field,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Fails unless `actual == expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(CompressError::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}
