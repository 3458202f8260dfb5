//! GLUE: the nine tasks (plus the AX diagnostic), their file layouts and readers.
//!
//! Layouts are those of the GLUE download (`train.tsv`, `dev.tsv`, `test.tsv`; MNLI has
//! `dev_matched.tsv`, `dev_mismatched.tsv`, `test_matched.tsv`, `test_mismatched.tsv`).
//! Columns are found by header name, so MNLI's dev files (which carry five annotator labels
//! more than train) need no special case; only CoLA's train/dev files have no header.
//!
//! Label orders follow the Hugging Face `glue` dataset so that heads trained here line up
//! with HF checkpoints: MNLI is `entailment, neutral, contradiction`; WNLI's `0/1` file
//! labels mean `not_entailment/entailment`.
//!
//! MNLI matched and mismatched are two task names over one training set: `mnli` reads
//! `dev_matched`/`test_matched` and writes `MNLI-m.tsv`; `mnli-mm` reads the mismatched
//! files and writes `MNLI-mm.tsv`. Both read the same `train.tsv`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::example::{Example, Label};
use crate::split::Split;
use crate::task::{Metric, TaskKind, TaskSource, TaskSpec};
use crate::tsv;

/// A GLUE task (or the AX diagnostic set, which is scored with an MNLI model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability.
    Cola,
    /// Stanford Sentiment Treebank, binary.
    Sst2,
    /// Microsoft Research Paraphrase Corpus.
    Mrpc,
    /// Semantic Textual Similarity Benchmark (regression 0..5).
    Stsb,
    /// Quora Question Pairs.
    Qqp,
    /// MultiNLI, matched dev/test.
    Mnli,
    /// MultiNLI, mismatched dev/test (same training data as [`GlueTask::Mnli`]).
    MnliMismatched,
    /// Question NLI.
    Qnli,
    /// Recognizing Textual Entailment.
    Rte,
    /// Winograd NLI.
    Wnli,
    /// The GLUE diagnostic set (test only; predicted with an MNLI model).
    Ax,
}

/// How to find a field of a row.
#[derive(Debug, Clone, Copy)]
enum Col {
    /// By header name.
    Named(&'static str),
    /// By position (files without a header).
    At(usize),
}

/// The columns of one GLUE file.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Whether the first non-blank line is a header.
    header: bool,
    /// Field count of header-less files.
    fields: Option<usize>,
    /// Id column; `None` means "use the 0-based row number".
    id: Option<Col>,
    text_a: Col,
    text_b: Option<Col>,
    /// Label column; `None` for unlabeled test files.
    label: Option<Col>,
}

impl GlueTask {
    /// Every GLUE task, in GLUE's order, then the diagnostic.
    pub const ALL: [GlueTask; 11] = [
        GlueTask::Cola,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Stsb,
        GlueTask::Qqp,
        GlueTask::Mnli,
        GlueTask::MnliMismatched,
        GlueTask::Qnli,
        GlueTask::Rte,
        GlueTask::Wnli,
        GlueTask::Ax,
    ];

    /// Canonical task name.
    pub fn name(self) -> &'static str {
        match self {
            GlueTask::Cola => "cola",
            GlueTask::Sst2 => "sst2",
            GlueTask::Mrpc => "mrpc",
            GlueTask::Stsb => "stsb",
            GlueTask::Qqp => "qqp",
            GlueTask::Mnli => "mnli",
            GlueTask::MnliMismatched => "mnli-mm",
            GlueTask::Qnli => "qnli",
            GlueTask::Rte => "rte",
            GlueTask::Wnli => "wnli",
            GlueTask::Ax => "ax",
        }
    }

    /// Other accepted spellings (compared after lower-casing and removing `-`/`_`).
    pub(crate) fn aliases(self) -> &'static [&'static str] {
        match self {
            GlueTask::Mnli => &["mnli-m", "mnli-matched"],
            GlueTask::MnliMismatched => &["mnli-mismatched"],
            GlueTask::Ax => &["diagnostic"],
            _ => &[],
        }
    }

    /// Folder name in the GLUE download (`SST-2`, `STS-B`, ...).
    pub fn folder_name(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Stsb => "STS-B",
            GlueTask::Qqp => "QQP",
            GlueTask::Mnli | GlueTask::MnliMismatched => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
            GlueTask::Wnli => "WNLI",
            GlueTask::Ax => "diagnostic",
        }
    }

    /// File name of `split` inside the task folder; `None` where GLUE has no such split
    /// (AX is test-only).
    pub fn file_name(self, split: Split) -> Option<&'static str> {
        match (self, split) {
            (GlueTask::Ax, Split::Test) => Some("diagnostic.tsv"),
            (GlueTask::Ax, _) => None,
            (GlueTask::Mnli, Split::Dev) => Some("dev_matched.tsv"),
            (GlueTask::Mnli, Split::Test) => Some("test_matched.tsv"),
            (GlueTask::MnliMismatched, Split::Dev) => Some("dev_mismatched.tsv"),
            (GlueTask::MnliMismatched, Split::Test) => Some("test_mismatched.tsv"),
            (_, Split::Train) => Some("train.tsv"),
            (_, Split::Dev) => Some("dev.tsv"),
            (_, Split::Test) => Some("test.tsv"),
        }
    }

    /// File name that the GLUE leaderboard expects in a submission archive.
    pub fn submission_file_name(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA.tsv",
            GlueTask::Sst2 => "SST-2.tsv",
            GlueTask::Mrpc => "MRPC.tsv",
            GlueTask::Stsb => "STS-B.tsv",
            GlueTask::Qqp => "QQP.tsv",
            GlueTask::Mnli => "MNLI-m.tsv",
            GlueTask::MnliMismatched => "MNLI-mm.tsv",
            GlueTask::Qnli => "QNLI.tsv",
            GlueTask::Rte => "RTE.tsv",
            GlueTask::Wnli => "WNLI.tsv",
            GlueTask::Ax => "AX.tsv",
        }
    }

    /// Label tokens as written in the data files and in submissions, in class-index order;
    /// `None` for STS-B (a score).
    pub fn label_tokens(self) -> Option<&'static [&'static str]> {
        match self {
            GlueTask::Cola | GlueTask::Sst2 | GlueTask::Mrpc | GlueTask::Qqp | GlueTask::Wnli => {
                Some(&["0", "1"])
            }
            GlueTask::Mnli | GlueTask::MnliMismatched | GlueTask::Ax => {
                Some(&["entailment", "neutral", "contradiction"])
            }
            GlueTask::Qnli | GlueTask::Rte => Some(&["entailment", "not_entailment"]),
            GlueTask::Stsb => None,
        }
    }

    /// Human label names in class-index order (HF `glue` names).
    fn label_names(self) -> Option<&'static [&'static str]> {
        match self {
            GlueTask::Cola => Some(&["unacceptable", "acceptable"]),
            GlueTask::Sst2 => Some(&["negative", "positive"]),
            GlueTask::Mrpc => Some(&["not_equivalent", "equivalent"]),
            GlueTask::Qqp => Some(&["not_duplicate", "duplicate"]),
            GlueTask::Wnli => Some(&["not_entailment", "entailment"]),
            other => other.label_tokens(),
        }
    }

    /// The task's definition.
    pub fn spec(self) -> TaskSpec {
        let metrics = match self {
            GlueTask::Cola | GlueTask::Ax => vec![Metric::Mcc],
            GlueTask::Mrpc | GlueTask::Qqp => vec![Metric::Accuracy, Metric::F1],
            GlueTask::Stsb => vec![Metric::Pearson, Metric::Spearman],
            _ => vec![Metric::Accuracy],
        };
        let primary = if metrics.len() > 1 {
            Metric::CombinedScore
        } else {
            metrics[0]
        };
        let kind = match self.label_names() {
            Some(names) => TaskKind::Classification {
                labels: names.iter().map(|s| s.to_string()).collect(),
            },
            None => TaskKind::Regression,
        };
        let description = match self {
            GlueTask::Cola => "GLUE CoLA: grammatical acceptability of a sentence",
            GlueTask::Sst2 => "GLUE SST-2: binary sentiment of a movie-review sentence",
            GlueTask::Mrpc => "GLUE MRPC: are two news sentences paraphrases",
            GlueTask::Stsb => "GLUE STS-B: semantic similarity of two sentences, 0..5",
            GlueTask::Qqp => "GLUE QQP: are two Quora questions duplicates",
            GlueTask::Mnli => "GLUE MNLI (matched dev/test): entailment, neutral or contradiction",
            GlueTask::MnliMismatched => {
                "GLUE MNLI (mismatched dev/test): entailment, neutral or contradiction"
            }
            GlueTask::Qnli => "GLUE QNLI: does the sentence answer the question",
            GlueTask::Rte => "GLUE RTE: does sentence 1 entail sentence 2",
            GlueTask::Wnli => "GLUE WNLI: pronoun-resolution entailment",
            GlueTask::Ax => "GLUE diagnostic (AX): NLI test set, predicted with an MNLI model",
        };
        TaskSpec {
            name: self.name().to_string(),
            kind,
            is_pair: !matches!(self, GlueTask::Cola | GlueTask::Sst2),
            metrics,
            primary,
            source: TaskSource::Glue(self),
            description: description.to_string(),
        }
    }

    fn layout(self, split: Split) -> Layout {
        use Col::{At, Named};
        let labeled = split != Split::Test;
        let named = |id: Option<&'static str>, a, b: Option<&'static str>, label| Layout {
            header: true,
            fields: None,
            id: id.map(Named),
            text_a: Named(a),
            text_b: b.map(Named),
            label: if labeled { Some(Named(label)) } else { None },
        };
        match (self, labeled) {
            (GlueTask::Cola, true) => Layout {
                header: false,
                fields: Some(4),
                id: None,
                text_a: At(3),
                text_b: None,
                label: Some(At(1)),
            },
            (GlueTask::Cola, false) => named(Some("index"), "sentence", None, ""),
            (GlueTask::Sst2, true) => named(None, "sentence", None, "label"),
            (GlueTask::Sst2, false) => named(Some("index"), "sentence", None, ""),
            (GlueTask::Mrpc, true) => named(None, "#1 String", Some("#2 String"), "Quality"),
            (GlueTask::Mrpc, false) => named(Some("index"), "#1 String", Some("#2 String"), ""),
            (GlueTask::Stsb, _) => named(Some("index"), "sentence1", Some("sentence2"), "score"),
            (GlueTask::Qqp, _) => named(Some("id"), "question1", Some("question2"), "is_duplicate"),
            (GlueTask::Mnli | GlueTask::MnliMismatched, _) => {
                named(Some("index"), "sentence1", Some("sentence2"), "gold_label")
            }
            (GlueTask::Qnli, _) => named(Some("index"), "question", Some("sentence"), "label"),
            (GlueTask::Rte | GlueTask::Wnli | GlueTask::Ax, _) => {
                named(Some("index"), "sentence1", Some("sentence2"), "label")
            }
        }
    }
}

/// Path of `split`'s file for `task` under `task_dir`.
///
/// Accepts the GLUE root as well: when the file is not in `task_dir` itself but in
/// `task_dir/<folder>` (e.g. `glue/SST-2/train.tsv` given `glue/`), that one is used.
pub fn glue_file(task: GlueTask, task_dir: &Path, split: Split) -> Result<PathBuf> {
    let name = task
        .file_name(split)
        .ok_or_else(|| Error::MissingGlueFile {
            path: task_dir.to_path_buf(),
            task: task.name().to_string(),
            split: format!("{split} (GLUE has no {split} split for this task)"),
        })?;
    let direct = task_dir.join(name);
    let nested = task_dir.join(task.folder_name()).join(name);
    Ok(if !direct.exists() && nested.exists() {
        nested
    } else {
        direct
    })
}

/// Read one split of a GLUE task from its folder (e.g. `glue/SST-2/`).
///
/// Any malformed row is an error naming the file and line: a wrong field count, an
/// unknown label, a score that is not a number in 0..5, or text that is not UTF-8.
pub fn read_glue(task: GlueTask, task_dir: &Path, split: Split) -> Result<Vec<Example>> {
    let (examples, _) = read_impl(task, task_dir, split, false)?;
    Ok(examples)
}

/// Like [`read_glue`], but rows that fail to parse are skipped and returned as errors
/// instead of stopping the read (file-level problems still fail). Useful for the public
/// QQP training file, which is known to hold a few broken rows.
pub fn read_glue_skipping(
    task: GlueTask,
    task_dir: &Path,
    split: Split,
) -> Result<(Vec<Example>, Vec<Error>)> {
    read_impl(task, task_dir, split, true)
}

fn read_impl(
    task: GlueTask,
    task_dir: &Path,
    split: Split,
    skip_bad_rows: bool,
) -> Result<(Vec<Example>, Vec<Error>)> {
    let path = glue_file(task, task_dir, split)?;
    let data = tsv::read_bytes(&path, || Error::MissingGlueFile {
        path: path.clone(),
        task: task.name().to_string(),
        split: split.to_string(),
    })?;
    parse_glue(task, split, &path, &data, skip_bad_rows)
}

/// The rows of one GLUE file's bytes, as [`read_glue`] (or, with `skip_bad_rows`,
/// [`read_glue_skipping`]) reads them from disk; `path` only names the file in errors.
/// Public so the reader can be fuzzed on bytes (`fuzz/`).
pub fn parse_glue(
    task: GlueTask,
    split: Split,
    path: &Path,
    data: &[u8],
    skip_bad_rows: bool,
) -> Result<(Vec<Example>, Vec<Error>)> {
    let path = path.to_path_buf();
    let layout = task.layout(split);
    let mut lines = tsv::lines(data);
    let columns = if layout.header {
        let (number, bytes) = lines.next().ok_or_else(|| Error::Empty {
            path: path.clone(),
            expected: "a header line and rows".to_string(),
        })?;
        let header: Vec<&str> = tsv::line_str(&path, number, bytes)?.split('\t').collect();
        Columns::from_header(&path, number, &header, &layout)?
    } else {
        Columns::positional(&layout)
    };

    let mut examples = Vec::new();
    let mut skipped = Vec::new();
    for (row, (number, bytes)) in lines.enumerate() {
        match parse_row(task, &path, number, bytes, row, &columns) {
            Ok(example) => examples.push(example),
            Err(e) if skip_bad_rows => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    if examples.is_empty() {
        return Err(Error::Empty {
            path,
            expected: format!("rows of GLUE {} {split}", task.name()),
        });
    }
    Ok((examples, skipped))
}

/// Resolved field positions of one file.
struct Columns {
    count: usize,
    id: Option<usize>,
    text_a: usize,
    text_b: Option<usize>,
    label: Option<usize>,
}

impl Columns {
    fn positional(layout: &Layout) -> Self {
        let at = |c: Col| match c {
            Col::At(i) => i,
            Col::Named(_) => unreachable!("header-less layouts use positions"),
        };
        Columns {
            count: layout.fields.unwrap_or(0),
            id: layout.id.map(at),
            text_a: at(layout.text_a),
            text_b: layout.text_b.map(at),
            label: layout.label.map(at),
        }
    }

    fn from_header(path: &Path, line: usize, header: &[&str], layout: &Layout) -> Result<Self> {
        let find = |c: Col| -> Result<usize> {
            match c {
                Col::At(i) => Ok(i),
                Col::Named(name) => header.iter().position(|h| *h == name).ok_or_else(|| {
                    tsv::malformed(
                        path,
                        line,
                        format!(
                            "header has no `{name}` column (found: {}); is this the right GLUE file?",
                            header.join(", ")
                        ),
                    )
                }),
            }
        };
        Ok(Columns {
            count: header.len(),
            id: layout.id.map(find).transpose()?,
            text_a: find(layout.text_a)?,
            text_b: layout.text_b.map(find).transpose()?,
            label: layout.label.map(find).transpose()?,
        })
    }
}

fn parse_row(
    task: GlueTask,
    path: &Path,
    number: usize,
    bytes: &[u8],
    row: usize,
    columns: &Columns,
) -> Result<Example> {
    let line = tsv::line_str(path, number, bytes)?;
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != columns.count {
        return Err(tsv::malformed(
            path,
            number,
            format!(
                "found {} tab-separated fields, expected {}",
                fields.len(),
                columns.count
            ),
        ));
    }
    let label = match columns.label {
        None => Label::None,
        Some(i) => parse_label(task, path, number, fields[i])?,
    };
    Ok(Example {
        id: match columns.id {
            Some(i) => fields[i].to_string(),
            None => row.to_string(),
        },
        text_a: fields[columns.text_a].to_string(),
        text_b: columns.text_b.map(|i| fields[i].to_string()),
        label,
    })
}

fn parse_label(task: GlueTask, path: &Path, line: usize, field: &str) -> Result<Label> {
    match task.label_tokens() {
        Some(tokens) => tokens
            .iter()
            .position(|t| *t == field)
            .map(Label::Class)
            .ok_or_else(|| {
                tsv::malformed(
                    path,
                    line,
                    format!(
                        "label `{field}` is not one of {} for GLUE {}",
                        tokens.join(", "),
                        task.name()
                    ),
                )
            }),
        None => match field.parse::<f32>() {
            Ok(v) if (0.0..=5.0).contains(&v) => Ok(Label::Score(v)),
            _ => Err(tsv::malformed(
                path,
                line,
                format!("score `{field}` is not a number in 0..5"),
            )),
        },
    }
}
