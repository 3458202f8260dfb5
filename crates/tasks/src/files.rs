//! Users' own data: a task read from CSV, TSV or JSON Lines files instead of the registry.
//!
//! [`DataFiles`] is the one description of such a task, shared by the command line
//! (`--train-file`, `--validation-file`, `--test-file`, `--format`, `--text-column`,
//! `--text-pair-column`, `--label-column`, `--labels`, `--task-type`, `--task`) and by
//! experiment files (`[[tasks.files]]`, same keys with `_` for `-`). [`DataFiles::resolve`]
//! reads the training file once to fix the label set and the task kind and returns a
//! [`FileTask`], whose [`FileTask::load`] reads one split into a [`Dataset`] like any other
//! task's.
//!
//! Formats, chosen by `format` or else by the file's extension:
//! - `csv` (`.csv`): RFC 4180, a header row, `"` quoting (fields may hold commas, quotes and
//!   newlines);
//! - `tsv` (`.tsv`, `.tab`): a header row, tab-separated, *no* quoting at all, as GLUE's files
//!   (a bare `"` is text), so a field cannot hold a tab or a newline;
//! - `jsonl` (`.jsonl`, `.ndjson`, `.json`): one JSON object per line; columns are keys; a
//!   label may be a string, a number or a boolean.
//!
//! Labels. With `labels` given, they are the classes in that order (class index = position)
//! and a label outside them is an error. Otherwise the training file decides:
//! - every label an integer (`-1`, `0`, `7`): classification, classes in numeric order (so
//!   `10` comes after `9`);
//! - every label a decimal number (`0.5`, `3.0`, `1e-2`): regression;
//! - integers and decimals mixed (`0`, `0.5`, `1`): an error, because both readings are
//!   plausible and a wrong guess trains the wrong head silently; `task_type` settles it;
//! - anything else (some label is not a number): classification, classes sorted by their
//!   bytes.
//!
//! `task_type = classification` always reads labels as class names (sorted as above);
//! `task_type = regression` needs every label to be a number.
//!
//! Metrics follow the offline suite: accuracy for classification, Pearson and Spearman
//! (model selection on their mean) for regression, as STS-B.
//!
//! Every error names the file and the 1-based line, and where a field is concerned its
//! column: a missing column (listing the columns found), an empty text, a label outside the
//! set, a non-number regression label, a field that is not UTF-8, a file with no examples.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::example::{Example, Label};
use crate::registry::task_spec;
use crate::split::Split;
use crate::task::{Metric, TaskKind, TaskSource, TaskSpec};
use crate::tsv;

/// The layout of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-separated with `"` quoting and a header row.
    Csv,
    /// Tab-separated, unquoted, with a header row.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl FileFormat {
    /// Lower-case name, as accepted by [`FileFormat::from_str`].
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Tsv => "tsv",
            FileFormat::Jsonl => "jsonl",
        }
    }

    /// The format a file's extension implies, if any.
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(FileFormat::Csv),
            "tsv" | "tab" => Some(FileFormat::Tsv),
            "jsonl" | "ndjson" | "json" => Some(FileFormat::Jsonl),
            _ => None,
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileFormat {
    type Err = Error;

    /// `csv`, `tsv` or `jsonl` (`json` and `ndjson` also mean JSON Lines), any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(FileFormat::Csv),
            "tsv" => Ok(FileFormat::Tsv),
            "jsonl" | "json" | "ndjson" => Ok(FileFormat::Jsonl),
            _ => Err(Error::Options(format!(
                "unknown --format `{s}`; valid: csv, tsv, jsonl"
            ))),
        }
    }
}

/// Whether labels are classes or numbers; overrides the guess from the training file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Labels are class names.
    Classification,
    /// Labels are real numbers.
    Regression,
}

impl FromStr for TaskType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "classification" => Ok(TaskType::Classification),
            "regression" => Ok(TaskType::Regression),
            _ => Err(Error::Options(format!(
                "unknown --task-type `{s}`; valid: classification, regression"
            ))),
        }
    }
}

/// A task defined by the user's own files: the options of the command line and of an
/// experiment's `[[tasks.files]]` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFiles {
    /// Task name, recorded in bundles and reports (`--task`); default: the training file's
    /// stem. It must not be a registry task's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Training examples (`--train-file`).
    #[serde(default)]
    pub train_file: Option<PathBuf>,
    /// Validation examples, used to choose the epoch (`--validation-file`); the `dev` split.
    #[serde(default)]
    pub validation_file: Option<PathBuf>,
    /// Held-out test examples (`--test-file`).
    #[serde(default)]
    pub test_file: Option<PathBuf>,
    /// File format of every file (`--format`); default: each file's extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Column of the (first) text (`--text-column`).
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Column of the second text of a pair task (`--text-pair-column`).
    #[serde(default)]
    pub text_pair_column: Option<String>,
    /// Column of the label (`--label-column`).
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// The classes, in head-output order (`--labels a,b,c`); default: found in the
    /// training file.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Classification or regression (`--task-type`); default: guessed from the labels.
    #[serde(default)]
    pub task_type: Option<TaskType>,
}

fn default_text_column() -> String {
    "text".to_string()
}

fn default_label_column() -> String {
    "label".to_string()
}

impl Default for DataFiles {
    fn default() -> Self {
        Self {
            name: None,
            train_file: None,
            validation_file: None,
            test_file: None,
            format: None,
            text_column: default_text_column(),
            text_pair_column: None,
            label_column: default_label_column(),
            labels: None,
            task_type: None,
        }
    }
}

/// The option that names a split's file, for messages.
fn split_flag(split: Split) -> &'static str {
    match split {
        Split::Train => "--train-file",
        Split::Dev => "--validation-file",
        Split::Test => "--test-file",
    }
}

impl DataFiles {
    /// Whether any file is given (so the caller should use these options at all).
    pub fn any_file(&self) -> bool {
        self.train_file.is_some() || self.validation_file.is_some() || self.test_file.is_some()
    }

    /// The file of `split`, if given.
    pub fn file(&self, split: Split) -> Option<&Path> {
        match split {
            Split::Train => self.train_file.as_deref(),
            Split::Dev => self.validation_file.as_deref(),
            Split::Test => self.test_file.as_deref(),
        }
    }

    /// The task name: `name`, else the training file's stem. A registry name is refused,
    /// because a bundle records only the name and would later be read as that task.
    pub fn task_name(&self) -> Result<String> {
        let name = match (&self.name, &self.train_file) {
            (Some(n), _) => n.trim().to_string(),
            (None, Some(f)) => f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        if name.is_empty() {
            return Err(Error::Options(
                "no task name: give --task NAME (or a --train-file, whose stem is the default)"
                    .into(),
            ));
        }
        if let Ok(spec) = task_spec(&name) {
            return Err(Error::Options(format!(
                "task name `{name}` is the registry task `{}`; give --task with another name for your own data",
                spec.name
            )));
        }
        Ok(name)
    }

    /// The format of `path`: `format` if given, else its extension.
    pub fn format_of(&self, path: &Path) -> Result<FileFormat> {
        self.format
            .or_else(|| FileFormat::from_extension(path))
            .ok_or_else(|| {
                Error::Options(format!(
                    "{}: cannot tell the format from the extension (.csv, .tsv, .jsonl); give --format csv|tsv|jsonl",
                    path.display()
                ))
            })
    }

    fn check_options(&self) -> Result<()> {
        for (flag, col) in [
            ("--text-column", Some(&self.text_column)),
            ("--text-pair-column", self.text_pair_column.as_ref()),
            ("--label-column", Some(&self.label_column)),
        ] {
            if col.is_some_and(|c| c.trim().is_empty()) {
                return Err(Error::Options(format!("{flag} is empty")));
            }
        }
        if self.text_pair_column.as_ref() == Some(&self.text_column) {
            return Err(Error::Options(format!(
                "--text-pair-column is the same column as --text-column (`{}`)",
                self.text_column
            )));
        }
        if let Some(labels) = &self.labels {
            if self.task_type == Some(TaskType::Regression) {
                return Err(Error::Options(
                    "--labels lists classes but --task-type is regression".into(),
                ));
            }
            if labels.is_empty() || labels.iter().any(|l| l.trim().is_empty()) {
                return Err(Error::Options(
                    "--labels has an empty name; give class names separated by commas".into(),
                ));
            }
            let mut seen = BTreeSet::new();
            for l in labels {
                if !seen.insert(l.trim()) {
                    return Err(Error::Options(format!("--labels lists `{l}` twice")));
                }
            }
        }
        Ok(())
    }

    /// Fix the task: read the training file to find the label set and the kind (see the
    /// module documentation), unless `labels` or `task_type = regression` make that
    /// unnecessary.
    pub fn resolve(&self) -> Result<FileTask> {
        self.resolve_with(|path| self.read_rows(path, Split::Train))
    }

    /// [`DataFiles::resolve`] with the training file's bytes given instead of read (the fuzz
    /// target's entry point: the same parsing, no file system).
    pub fn resolve_from_bytes(&self, train: &[u8]) -> Result<FileTask> {
        self.resolve_with(|path| self.rows_of(path, train))
    }

    fn resolve_with(
        &self,
        train_rows: impl FnOnce(&Path) -> Result<Vec<RawRow>>,
    ) -> Result<FileTask> {
        self.check_options()?;
        let name = self.task_name()?;
        let kind = match (&self.labels, self.task_type) {
            (Some(labels), _) => TaskKind::Classification {
                labels: labels.iter().map(|l| l.trim().to_string()).collect(),
            },
            (None, Some(TaskType::Regression)) => TaskKind::Regression,
            (None, task_type) => {
                let path = self.train_file.as_deref().ok_or_else(|| {
                    Error::Options(
                        "the label set comes from --train-file; without one, give --labels (or --task-type regression)".into(),
                    )
                })?;
                let rows = train_rows(path)?;
                infer_kind(path, &self.label_column, &rows, task_type)?
            }
        };
        Ok(self.with_kind(name, kind))
    }

    /// A task whose name and kind are already known (e.g. recorded in a bundle): no file is
    /// read to find them; labels outside `kind`'s classes are errors when a split is loaded.
    pub fn with_kind(&self, name: String, kind: TaskKind) -> FileTask {
        let (metrics, primary) = match kind {
            TaskKind::Classification { .. } => (vec![Metric::Accuracy], Metric::Accuracy),
            TaskKind::Regression => (
                vec![Metric::Pearson, Metric::Spearman],
                Metric::CombinedScore,
            ),
        };
        let files: Vec<String> = [&self.train_file, &self.validation_file, &self.test_file]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        let spec = TaskSpec {
            name,
            kind,
            is_pair: self.text_pair_column.is_some(),
            metrics,
            primary,
            source: TaskSource::Files,
            description: format!("user data files ({})", files.join(", ")),
        };
        FileTask {
            spec,
            files: self.clone(),
        }
    }

    /// The rows of one file, checked for columns, UTF-8 and empty texts.
    fn read_rows(&self, path: &Path, split: Split) -> Result<Vec<RawRow>> {
        self.format_of(path)?;
        let data = read_split(path, split)?;
        self.rows_of(path, &data)
    }

    /// The rows of `data`, the contents of `path`.
    fn rows_of(&self, path: &Path, data: &[u8]) -> Result<Vec<RawRow>> {
        let format = self.format_of(path)?;
        let rows = match format {
            FileFormat::Csv => read_delimited(path, data, b',', true, self)?,
            FileFormat::Tsv => read_delimited(path, data, b'\t', false, self)?,
            FileFormat::Jsonl => read_jsonl(path, data, self)?,
        };
        if rows.is_empty() {
            return Err(Error::Empty {
                path: path.to_path_buf(),
                expected: match format {
                    FileFormat::Jsonl => {
                        format!("JSON objects with keys {}", self.columns().join(", "))
                    }
                    _ => format!(
                        "{} rows below a header with columns {}",
                        format.name(),
                        self.columns().join(", ")
                    ),
                },
            });
        }
        Ok(rows)
    }

    /// The columns read, in order (text, pair text, label).
    fn columns(&self) -> Vec<&str> {
        let mut v = vec![self.text_column.as_str()];
        v.extend(self.text_pair_column.as_deref());
        v.push(self.label_column.as_str());
        v
    }
}

/// A file-backed task: its spec and where each split is read from.
#[derive(Debug, Clone, PartialEq)]
pub struct FileTask {
    /// The task's definition; `source` is [`TaskSource::Files`].
    pub spec: TaskSpec,
    /// The options it was made from.
    pub files: DataFiles,
}

impl FileTask {
    /// Read one split from its file. An example's id is the 1-based line its row starts on.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        let path = self.path_of(split)?;
        self.files.format_of(path)?;
        let data = read_split(path, split)?;
        self.parse(split, &data)
    }

    /// [`FileTask::load`] with the split's bytes given instead of read (the fuzz target's
    /// entry point); errors still name the split's file.
    pub fn parse(&self, split: Split, data: &[u8]) -> Result<Dataset> {
        let path = self.path_of(split)?;
        let rows = self.files.rows_of(path, data)?;
        let column = &self.files.label_column;
        let mut examples = Vec::with_capacity(rows.len());
        for row in rows {
            let label = label_of(path, column, &row, &self.spec.kind)?;
            examples.push(Example {
                id: row.line.to_string(),
                text_a: row.text_a,
                text_b: row.text_b,
                label,
            });
        }
        Ok(Dataset {
            task: self.spec.clone(),
            split,
            seed: None,
            examples,
            sources: vec![path.to_path_buf()],
            dropped: Vec::new(),
        })
    }

    fn path_of(&self, split: Split) -> Result<&Path> {
        self.files.file(split).ok_or_else(|| {
            Error::Options(format!(
                "task `{}` has no {} split: give {}",
                self.spec.name,
                split.name(),
                split_flag(split)
            ))
        })
    }
}

/// The bytes of a split's file; a missing file names the flag that gave it.
fn read_split(path: &Path, split: Split) -> Result<Vec<u8>> {
    tsv::read_bytes(path, || Error::MissingDataFile {
        path: path.to_path_buf(),
        flag: split_flag(split).to_string(),
    })
}

/// One row as read: texts and the label's text, before the label is interpreted.
#[derive(Debug, Clone, PartialEq)]
struct RawRow {
    line: usize,
    text_a: String,
    text_b: Option<String>,
    label: String,
}

fn field_error(path: &Path, line: usize, column: &str, message: impl Into<String>) -> Error {
    Error::Field {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        message: message.into(),
    }
}

/// Check a text field: not blank.
fn checked_text(path: &Path, line: usize, column: &str, text: String) -> Result<String> {
    if text.trim().is_empty() {
        return Err(field_error(path, line, column, "empty text"));
    }
    Ok(text)
}

/// Check a label field: not blank; surrounding spaces are dropped.
fn checked_label(path: &Path, line: usize, column: &str, label: &str) -> Result<String> {
    let label = label.trim();
    if label.is_empty() {
        return Err(field_error(path, line, column, "empty label"));
    }
    Ok(label.to_string())
}

/// CSV (quoted) or TSV (unquoted) with a header row.
fn read_delimited(
    path: &Path,
    data: &[u8],
    delimiter: u8,
    quoting: bool,
    opts: &DataFiles,
) -> Result<Vec<RawRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        .quoting(quoting)
        .flexible(true)
        .from_reader(data);
    let lines = tsv::LineIndex::new(data);
    // Reading from memory, a csv error is a malformed record (e.g. a quote left open).
    let csv_error = |e: csv::Error| {
        let line = lines.line_of(e.position()).max(1);
        tsv::malformed(path, line, format!("CSV error: {e}"))
    };
    let header = reader.byte_headers().map_err(csv_error)?.clone();
    let mut names = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let h = if i == 0 {
            h.strip_prefix("\u{FEFF}".as_bytes()).unwrap_or(h)
        } else {
            h
        };
        let name = std::str::from_utf8(h).map_err(|e| Error::NotUtf8 {
            path: path.to_path_buf(),
            line: 1,
            offset: e.valid_up_to(),
        })?;
        names.push(name.trim().to_string());
    }
    let column = |name: &str, flag: &str| {
        names
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::MissingColumn {
                path: path.to_path_buf(),
                line: 1,
                column: name.to_string(),
                flag: flag.into(),
                found: names.join(", ").into(),
            })
    };
    let text_at = column(&opts.text_column, "--text-column")?;
    let pair_at = match &opts.text_pair_column {
        Some(c) => Some(column(c, "--text-pair-column")?),
        None => None,
    };
    let label_at = column(&opts.label_column, "--label-column")?;

    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(csv_error)?;
        let line = lines.line_of(record.position());
        // A blank line (e.g. trailing) carries no row.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        tsv::check_width(path, line, record.len(), names.len())?;
        let field = |at: usize| -> Result<&str> {
            let name = &names[at];
            std::str::from_utf8(&record[at]).map_err(|e| {
                field_error(
                    path,
                    line,
                    name,
                    format!(
                        "not valid UTF-8 (byte {} of the field); the file must be UTF-8",
                        e.valid_up_to()
                    ),
                )
            })
        };
        let text_a = checked_text(path, line, &names[text_at], field(text_at)?.to_string())?;
        let text_b = match pair_at {
            Some(at) => Some(checked_text(
                path,
                line,
                &names[at],
                field(at)?.to_string(),
            )?),
            None => None,
        };
        let label = checked_label(path, line, &names[label_at], field(label_at)?)?;
        rows.push(RawRow {
            line,
            text_a,
            text_b,
            label,
        });
    }
    Ok(rows)
}

/// JSON Lines: one object per non-blank line; columns are keys.
fn read_jsonl(path: &Path, data: &[u8], opts: &DataFiles) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    for (line, bytes) in tsv::lines(data) {
        let text = tsv::line_str(path, line, bytes)?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| tsv::malformed(path, line, format!("not a JSON object: {e}")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(tsv::malformed(
                path,
                line,
                "not a JSON object (expected {\"text\": ..., \"label\": ...})",
            ));
        };
        let get = |name: &str, flag: &str| {
            object.get(name).ok_or_else(|| Error::MissingColumn {
                path: path.to_path_buf(),
                line,
                column: name.to_string(),
                flag: flag.into(),
                found: object.keys().cloned().collect::<Vec<_>>().join(", ").into(),
            })
        };
        let string = |name: &str, flag: &str| -> Result<String> {
            match get(name, flag)? {
                serde_json::Value::String(s) => checked_text(path, line, name, s.clone()),
                other => Err(field_error(
                    path,
                    line,
                    name,
                    format!("expected a string, found {other}"),
                )),
            }
        };
        let text_a = string(&opts.text_column, "--text-column")?;
        let text_b = match &opts.text_pair_column {
            Some(c) => Some(string(c, "--text-pair-column")?),
            None => None,
        };
        let name = &opts.label_column;
        let label = match get(name, "--label-column")? {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(field_error(
                    path,
                    line,
                    name,
                    format!("expected a string, number or boolean label, found {other}"),
                ))
            }
        };
        let label = checked_label(path, line, name, &label)?;
        rows.push(RawRow {
            line,
            text_a,
            text_b,
            label,
        });
    }
    Ok(rows)
}

/// How a label's text reads as a number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Numeric {
    /// An integer (`-3`, `10`).
    Int(i64),
    /// A decimal number that is not written as an integer (`0.5`, `3.0`, `1e-2`) and is
    /// finite as the 32-bit float a regression label is stored in.
    Decimal,
    /// Not a number (including `nan`, `inf` and `1e39`, which overflows 32 bits: words here).
    No,
}

fn numeric(label: &str) -> Numeric {
    if let Ok(i) = label.parse::<i64>() {
        return Numeric::Int(i);
    }
    let has_digit = label.bytes().any(|b| b.is_ascii_digit());
    match label.parse::<f32>() {
        Ok(v) if v.is_finite() && has_digit => Numeric::Decimal,
        _ => Numeric::No,
    }
}

/// The kind the training file's labels imply (module documentation: "Labels").
fn infer_kind(
    path: &Path,
    column: &str,
    rows: &[RawRow],
    task_type: Option<TaskType>,
) -> Result<TaskKind> {
    if task_type == Some(TaskType::Regression) {
        return Ok(TaskKind::Regression);
    }
    let first_int = rows
        .iter()
        .find(|r| matches!(numeric(&r.label), Numeric::Int(_)));
    let first_decimal = rows.iter().find(|r| numeric(&r.label) == Numeric::Decimal);
    let any_word = rows.iter().any(|r| numeric(&r.label) == Numeric::No);
    if task_type.is_none() && !any_word {
        match (first_int, first_decimal) {
            (None, Some(_)) => return Ok(TaskKind::Regression),
            (Some(i), Some(d)) => {
                return Err(Error::MixedLabels {
                    path: path.to_path_buf(),
                    column: column.to_string(),
                    first: Box::new(crate::error::MixedLabelLines {
                        int_line: i.line,
                        int_value: i.label.clone(),
                        float_line: d.line,
                        float_value: d.label.clone(),
                    }),
                })
            }
            _ => {}
        }
    }
    let set: BTreeSet<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    let mut labels: Vec<&str> = set.into_iter().collect();
    let ints: Option<Vec<i64>> = labels
        .iter()
        .map(|l| match numeric(l) {
            Numeric::Int(i) => Some(i),
            _ => None,
        })
        .collect();
    if let Some(ints) = ints {
        // By value; ties (`1` and `01`) by their bytes.
        let mut pairs: Vec<(i64, &str)> = ints.into_iter().zip(labels).collect();
        pairs.sort_unstable();
        labels = pairs.into_iter().map(|(_, l)| l).collect();
    }
    Ok(TaskKind::Classification {
        labels: labels.into_iter().map(str::to_string).collect(),
    })
}

/// The label of one row under `kind`.
fn label_of(path: &Path, column: &str, row: &RawRow, kind: &TaskKind) -> Result<Label> {
    match kind {
        TaskKind::Classification { labels } => labels
            .iter()
            .position(|l| *l == row.label)
            .map(Label::Class)
            .ok_or_else(|| {
                field_error(
                    path,
                    row.line,
                    column,
                    format!(
                        "label `{}` is not one of the task's labels ({})",
                        row.label,
                        labels.join(", ")
                    ),
                )
            }),
        TaskKind::Regression => match row.label.parse::<f32>() {
            Ok(v) if v.is_finite() && numeric(&row.label) != Numeric::No => Ok(Label::Score(v)),
            _ => Err(field_error(
                path,
                row.line,
                column,
                format!(
                    "label `{}` is not a number (finite as a 32-bit float); a regression task needs numeric labels",
                    row.label
                ),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn opts(train: &Path) -> DataFiles {
        DataFiles {
            train_file: Some(train.to_path_buf()),
            ..DataFiles::default()
        }
    }

    fn err_of(r: Result<impl fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn csv_classification_with_sorted_labels_quotes_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "reviews.csv",
            b"\xEF\xBB\xBFid,text,label\r\n1,\"good, really \"\"good\"\"\",pos\r\n2,\"two\nlines\",neg\r\n3,meh,neutral\r\n",
        );
        let task = opts(&p).resolve().unwrap();
        assert_eq!(task.spec.name, "reviews");
        assert_eq!(task.spec.labels(), ["neg", "neutral", "pos"]);
        assert_eq!(task.spec.metrics, vec![Metric::Accuracy]);
        assert!(!task.spec.is_pair);
        let ds = task.load(Split::Train).unwrap();
        let got: Vec<(&str, &str, Label)> = ds
            .examples
            .iter()
            .map(|e| (e.id.as_str(), e.text_a.as_str(), e.label))
            .collect();
        assert_eq!(
            got,
            vec![
                ("2", "good, really \"good\"", Label::Class(2)),
                ("3", "two\nlines", Label::Class(0)),
                ("5", "meh", Label::Class(1)),
            ]
        );
        assert!(task.load(Split::Dev).is_err());
    }

    #[test]
    fn tsv_is_unquoted_and_pairs_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "pairs.tsv",
            b"q\tp\tscore\n\"quoted\" start\tsecond\t0.5\nplain\tother\t4.25\n",
        );
        let files = DataFiles {
            text_column: "q".into(),
            text_pair_column: Some("p".into()),
            label_column: "score".into(),
            ..opts(&p)
        };
        let task = files.resolve().unwrap();
        assert_eq!(task.spec.kind, TaskKind::Regression);
        assert_eq!(task.spec.metrics, vec![Metric::Pearson, Metric::Spearman]);
        assert_eq!(task.spec.primary, Metric::CombinedScore);
        assert!(task.spec.is_pair);
        let ex = task.load(Split::Train).unwrap().examples;
        assert_eq!(ex[0].text_a, "\"quoted\" start");
        assert_eq!(ex[0].text_b.as_deref(), Some("second"));
        assert_eq!(ex[1].label, Label::Score(4.25));
    }

    #[test]
    fn jsonl_numbers_and_integer_classes_sort_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.jsonl",
            b"{\"text\": \"a\", \"label\": 10}\n\n{\"text\": \"b\", \"label\": 9}\n{\"text\": \"c\", \"label\": \"2\"}\n",
        );
        let task = opts(&p).resolve().unwrap();
        assert_eq!(task.spec.labels(), ["2", "9", "10"]);
        let labels: Vec<Label> = task
            .load(Split::Train)
            .unwrap()
            .examples
            .iter()
            .map(|e| e.label)
            .collect();
        assert_eq!(
            labels,
            vec![Label::Class(2), Label::Class(1), Label::Class(0)]
        );
    }

    #[test]
    fn given_labels_fix_the_order_and_reject_others() {
        let dir = tempfile::tempdir().unwrap();
        let train = write(dir.path(), "tr.csv", b"text,label\nx,b\ny,a\n");
        let dev = write(dir.path(), "dev.csv", b"text,label\nx,b\ny,c\n");
        let files = DataFiles {
            labels: Some(vec!["b".into(), "a".into()]),
            validation_file: Some(dev.clone()),
            ..opts(&train)
        };
        let task = files.resolve().unwrap();
        assert_eq!(task.spec.labels(), ["b", "a"]);
        assert_eq!(
            task.load(Split::Train).unwrap().examples[1].label,
            Label::Class(1)
        );
        let err = err_of(task.load(Split::Dev));
        assert!(err.contains("dev.csv:3"), "{err}");
        assert!(err.contains("column `label`"), "{err}");
        assert!(
            err.contains("`c` is not one of") && err.contains("b, a"),
            "{err}"
        );
    }

    #[test]
    fn mixed_int_and_decimal_labels_are_an_error_unless_a_type_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.csv", b"text,label\na,0\nb,0.5\nc,1\n");
        let err = err_of(opts(&p).resolve());
        assert!(err.contains("m.csv"), "{err}");
        assert!(err.contains("column `label`"), "{err}");
        assert!(
            err.contains("line 2: `0`") && err.contains("line 3: `0.5`"),
            "{err}"
        );
        assert!(err.contains("--task-type"), "{err}");
        let reg = DataFiles {
            task_type: Some(TaskType::Regression),
            ..opts(&p)
        };
        let ex = reg.resolve().unwrap().load(Split::Train).unwrap().examples;
        assert_eq!(ex[1].label, Label::Score(0.5));
        let cls = DataFiles {
            task_type: Some(TaskType::Classification),
            ..opts(&p)
        };
        assert_eq!(cls.resolve().unwrap().spec.labels(), ["0", "0.5", "1"]);
    }

    #[test]
    fn regression_rejects_a_word_label_naming_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.tsv", b"text\ty\na\t1.5\nb\thigh\n");
        let files = DataFiles {
            label_column: "y".into(),
            task_type: Some(TaskType::Regression),
            ..opts(&p)
        };
        let err = err_of(files.resolve().unwrap().load(Split::Train));
        assert!(err.contains("r.tsv:3: column `y`"), "{err}");
        assert!(err.contains("`high` is not a number"), "{err}");
        // Without --task-type, a word among numbers makes classes.
        let guess = DataFiles {
            label_column: "y".into(),
            ..opts(&p)
        };
        assert_eq!(guess.resolve().unwrap().spec.labels(), ["1.5", "high"]);
    }

    #[test]
    fn a_label_beyond_32_bit_floats_is_a_word_not_a_score() {
        // 1e39 is finite as f64 but overflows the f32 a score is stored in: guessing
        // regression from it used to make a task whose own training file then failed to load.
        let bytes = b"text,label\na,0.5\nb,1e39\n";
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "big.csv", bytes);
        let task = opts(&p).resolve().unwrap();
        assert_eq!(task.spec.labels(), ["0.5", "1e39"]);
        assert_eq!(task.load(Split::Train).unwrap().examples.len(), 2);
        assert_eq!(
            opts(&p).resolve_from_bytes(bytes).unwrap(),
            task,
            "bytes and file must resolve alike"
        );
        let forced = DataFiles {
            task_type: Some(TaskType::Regression),
            ..opts(&p)
        };
        let err = err_of(forced.resolve().unwrap().parse(Split::Train, bytes));
        assert!(err.contains("big.csv:3"), "{err}");
        assert!(err.contains("finite as a 32-bit float"), "{err}");
    }

    #[test]
    fn missing_column_lists_the_columns_found_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("a.csv", &b"sentence,label\nx,1\n"[..]),
            ("a.tsv", &b"sentence\tlabel\nx\t1\n"[..]),
            ("a.jsonl", &b"{\"sentence\": \"x\", \"label\": 1}\n"[..]),
        ] {
            let p = write(dir.path(), name, bytes);
            let err = err_of(opts(&p).resolve());
            assert!(err.contains(&format!("{name}:1")), "{err}");
            assert!(err.contains("no column `text`"), "{err}");
            assert!(err.contains("--text-column"), "{err}");
            assert!(
                err.contains("columns found: ") && err.contains("sentence"),
                "{err}"
            );
        }
        let p = write(dir.path(), "b.csv", b"text,lab\nx,1\n");
        let err = err_of(opts(&p).resolve());
        assert!(err.contains("b.csv:1: no column `label`"), "{err}");
        assert!(
            err.contains("--label-column") && err.contains("text, lab"),
            "{err}"
        );
    }

    #[test]
    fn header_only_and_empty_files_have_no_examples() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("h.csv", &b"text,label\n"[..]),
            ("h.tsv", &b"text\tlabel\r\n\r\n"[..]),
            ("h.jsonl", &b"\n\n"[..]),
        ] {
            let p = write(dir.path(), name, bytes);
            let err = err_of(opts(&p).resolve());
            assert!(err.contains(name), "{err}");
            assert!(err.contains("no examples found"), "{err}");
            assert!(err.contains("text, label"), "{err}");
        }
    }

    #[test]
    fn empty_text_empty_label_and_non_utf8_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 6] = [
            (
                "e.csv",
                b"text,label\nok,a\n  ,b\n",
                "e.csv:3: column `text`: empty text",
            ),
            (
                "l.csv",
                b"text,label\nok,a\nfine,\n",
                "l.csv:3: column `label`: empty label",
            ),
            (
                "u.csv",
                b"text,label\nok,a\nbad \xff byte,b\n",
                "u.csv:3: column `text`: not valid UTF-8",
            ),
            (
                "u.tsv",
                b"text\tlabel\nok\ta\nfine\tb\xfe\n",
                "u.tsv:3: column `label`: not valid UTF-8",
            ),
            (
                "u.jsonl",
                b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"\xff\", \"label\": \"a\"}\n",
                "u.jsonl:2: not valid UTF-8",
            ),
            (
                "e.jsonl",
                b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \" \", \"label\": \"a\"}\n",
                "e.jsonl:2: column `text`: empty text",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = write(dir.path(), name, bytes);
            let err = err_of(opts(&p).resolve());
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn malformed_rows_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "f.csv", b"text,label\nx,a\ny,b,extra\n");
        let err = err_of(opts(&p).resolve());
        assert!(err.contains("f.csv:3: found 3 fields, expected 2"), "{err}");
        let p = write(
            dir.path(),
            "j.jsonl",
            b"{\"text\": \"x\", \"label\": 1}\n[1, 2]\n",
        );
        let err = err_of(opts(&p).resolve());
        assert!(err.contains("j.jsonl:2: not a JSON object"), "{err}");
        let p = write(
            dir.path(),
            "n.jsonl",
            b"{\"text\": \"x\", \"label\": null}\n",
        );
        let err = err_of(opts(&p).resolve());
        assert!(err.contains("n.jsonl:1: column `label`"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "sst2.csv", b"text,label\nx,a\n");
        let err = err_of(opts(&p).resolve());
        assert!(
            err.contains("registry task `sst2`") && err.contains("--task"),
            "{err}"
        );
        let p = write(dir.path(), "data.txt", b"text,label\nx,a\n");
        let err = err_of(opts(&p).resolve());
        assert!(
            err.contains("data.txt") && err.contains("--format"),
            "{err}"
        );
        let files = DataFiles {
            format: Some(FileFormat::Csv),
            ..opts(&p)
        };
        assert_eq!(files.resolve().unwrap().spec.name, "data");
        let dup = DataFiles {
            labels: Some(vec!["a".into(), "a".into()]),
            ..files.clone()
        };
        assert!(err_of(dup.resolve()).contains("--labels lists `a` twice"));
        let missing = DataFiles {
            train_file: Some(dir.path().join("nope.csv")),
            ..DataFiles::default()
        };
        let err = err_of(missing.resolve());
        assert!(
            err.contains("nope.csv: not found (given as --train-file)"),
            "{err}"
        );
        assert_eq!("JSON".parse::<FileFormat>().unwrap(), FileFormat::Jsonl);
        assert!("xml".parse::<FileFormat>().is_err());
        assert_eq!(
            "Regression".parse::<TaskType>().unwrap(),
            TaskType::Regression
        );
    }

    #[test]
    fn a_known_kind_reads_files_without_a_training_file() {
        let dir = tempfile::tempdir().unwrap();
        let test = write(dir.path(), "t.tsv", b"text\tlabel\nx\tyes\ny\tno\n");
        let files = DataFiles {
            test_file: Some(test),
            ..DataFiles::default()
        };
        assert!(err_of(files.resolve()).contains("--task"));
        let task = files.with_kind(
            "mine".into(),
            TaskKind::Classification {
                labels: vec!["no".into(), "yes".into()],
            },
        );
        let ds = task.load(Split::Test).unwrap();
        assert_eq!(ds.examples[0].label, Label::Class(1));
        assert_eq!(ds.split, Split::Test);
    }

    #[test]
    fn the_toml_form_uses_the_same_keys() {
        let text = r#"{"name": "mine", "train_file": "a.csv", "labels": ["x", "y"], "task_type": "classification", "format": "tsv"}"#;
        let files: DataFiles = serde_json::from_str(text).unwrap();
        assert_eq!(files.text_column, "text");
        assert_eq!(files.label_column, "label");
        assert_eq!(files.format, Some(FileFormat::Tsv));
        assert!(serde_json::from_str::<DataFiles>(r#"{"train": "a.csv"}"#).is_err());
    }
}
