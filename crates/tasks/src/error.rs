//! The one error type of this crate.
//!
//! Every variant that comes from a file names the file, and where a line is known, the line
//! (1-based, as an editor shows it), so that a user can open the file and see the problem
//! without a debugger.

use std::path::PathBuf;

/// Errors raised while resolving tasks, reading data, scoring or writing submissions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shared-vocabulary error (file writing).
    #[error(transparent)]
    Core(#[from] adalbert_core::CoreError),
    /// The task name is not in the registry.
    #[error("unknown task `{name}`; valid names: {valid}")]
    UnknownTask {
        /// The name as given.
        name: String,
        /// Comma-separated canonical names, for the message.
        valid: String,
    },

    /// The split name could not be parsed.
    #[error("unknown split `{0}`; valid splits: train, dev, test")]
    UnknownSplit(String),

    /// A GLUE data file is absent from the task folder.
    #[error("{}: not found; expected the GLUE {task} {split} file here (GLUE data is not fetched by this project: download it and point --data at the task folder)", path.display())]
    MissingGlueFile {
        /// The path that was looked for.
        path: PathBuf,
        /// Canonical task name.
        task: String,
        /// Split name.
        split: String,
    },

    /// An offline-suite asset is absent.
    #[error("{}: not found ({what}); run scripts/fetch-assets to fetch it", path.display())]
    MissingAsset {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is, in words.
        what: String,
    },

    /// The file exists but could not be read or written.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A line of a data file is not valid UTF-8.
    #[error("{}:{line}: not valid UTF-8 (byte offset {offset} within the line); the file must be UTF-8", path.display())]
    NotUtf8 {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Byte offset of the first invalid byte within the line.
        offset: usize,
    },

    /// A row does not have the expected shape or content.
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number (0 when the whole file is concerned, e.g. it is empty).
        line: usize,
        /// What was found and what was expected.
        message: String,
    },

    /// The data source yielded no examples at all.
    #[error("{}: no examples found; expected {expected}", path.display())]
    Empty {
        /// The file or folder concerned.
        path: PathBuf,
        /// What should have been there.
        expected: String,
    },

    /// A data file given by the user (`--train-file`, ...) does not exist.
    #[error("{}: not found (given as {flag})", path.display())]
    MissingDataFile {
        /// The path as given.
        path: PathBuf,
        /// The flag or config key that named it.
        flag: String,
    },

    /// A user data file lacks a column the options name.
    #[error("{}:{line}: no column `{column}` (named by {flag}); columns found: {found}", path.display())]
    MissingColumn {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line: the header (1) for CSV/TSV, the row for JSON Lines.
        line: usize,
        /// The column looked for.
        column: String,
        /// The option that named the column (`--text-column`, ...).
        flag: Box<str>,
        /// The columns (or JSON keys) that are there, comma-separated (boxed strings keep
        /// this crate's `Result`s, and those of the crates wrapping it, small).
        found: Box<str>,
    },

    /// One field of a user data file is unusable (empty text, a label outside the label
    /// set, a regression label that is not a number, bytes that are not UTF-8, ...).
    #[error("{}:{line}: column `{column}`: {message}", path.display())]
    Field {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The column's name.
        column: String,
        /// What was found and what was expected.
        message: String,
    },

    /// The training file's label column mixes integers and decimal numbers, so neither
    /// "classes" nor "regression" is a safe guess.
    #[error("{}: column `{column}` mixes integer labels (line {}: `{}`) and decimal labels (line {}: `{}`); give --task-type regression to read every label as a number, or --task-type classification to read them as class names", path.display(), first.int_line, first.int_value, first.float_line, first.float_value)]
    MixedLabels {
        /// The training file.
        path: PathBuf,
        /// The label column.
        column: String,
        /// The first integer and the first decimal label (boxed: a rare error should not
        /// make every `Result` of this crate, and of those wrapping it, larger).
        first: Box<MixedLabelLines>,
    },

    /// The data-file options do not fit together (or a file task cannot be loaded by name).
    #[error("data files: {0}")]
    Options(String),

    /// Predictions and gold labels cannot be scored together.
    #[error("cannot score task `{task}`: {message}")]
    Metric {
        /// Canonical task name.
        task: String,
        /// What was wrong, e.g. a length mismatch or a label of the wrong kind.
        message: String,
    },

    /// A prediction cannot be written into a GLUE submission file.
    #[error("cannot write a GLUE submission for `{task}`: {message}")]
    Submission {
        /// Canonical task name.
        task: String,
        /// What was wrong.
        message: String,
    },

    /// A study's selection slice of a GLUE training file cannot be cut as asked.
    #[error("cannot cut the selection slice of `{task}`: {message}")]
    Selection {
        /// Canonical task name.
        task: String,
        /// What was wrong.
        message: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where [`Error::MixedLabels`] found its first integer and first decimal label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixedLabelLines {
    /// First line holding an integer label.
    pub int_line: usize,
    /// That label.
    pub int_value: String,
    /// First line holding a decimal label.
    pub float_line: usize,
    /// That label.
    pub float_value: String,
}
