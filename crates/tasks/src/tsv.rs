//! Line-oriented reading shared by the GLUE and VADER readers.
//!
//! These files are tab-separated with no quoting at all (Python's `csv.QUOTE_NONE`): GLUE
//! sentences contain bare `"` characters that a CSV parser would take for quotes and then
//! swallow whole lines. So a line is split on `\n`, a trailing `\r` is removed (VADER uses
//! CRLF), and fields are split on `\t`; nothing else is interpreted.

use std::path::Path;

use crate::error::{Error, Result};

/// Read a whole file, turning "not found" into the caller's more helpful error.
pub(crate) fn read_bytes(path: &Path, missing: impl FnOnce() -> Error) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            missing()
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Non-blank lines of `data` with their 1-based line numbers, without line terminators.
///
/// Blank lines (typically the one after a final newline) carry no row and are skipped.
pub(crate) fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    data.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.is_empty())
}

/// Decode one line as UTF-8, dropping a leading byte-order mark.
pub(crate) fn line_str<'a>(path: &Path, number: usize, bytes: &'a [u8]) -> Result<&'a str> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        path: path.to_path_buf(),
        line: number,
        offset: e.valid_up_to(),
    })?;
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(text))
}

/// Maps a csv record's byte position to the 1-based line it starts on.
///
/// Line numbers are found from byte offsets (binary search over line starts): the csv crate's
/// own line counter does not give the line a record starts on when lines end in CRLF.
pub(crate) struct LineIndex<'a> {
    data: &'a [u8],
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let starts = std::iter::once(0)
            .chain(
                data.iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Self { data, starts }
    }

    /// The line a record at `position` starts on; 0 when the position is unknown.
    pub(crate) fn line_of(&self, position: Option<&csv::Position>) -> usize {
        position.map_or(0, |p| {
            let mut start = (p.byte() as usize).min(self.data.len());
            // A record may be reported as starting on the `\n` of the previous CRLF.
            while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
                start += 1;
            }
            self.starts.partition_point(|&s| s <= start)
        })
    }
}

/// Build a [`Error::Malformed`] for `path:line`.
pub(crate) fn malformed(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// A CSV row whose field count is not the header's: the one wording for every CSV reader.
pub(crate) fn check_width(path: &Path, line: usize, found: usize, header: usize) -> Result<()> {
    if found == header {
        return Ok(());
    }
    Err(malformed(
        path,
        line,
        format!("found {found} fields, expected {header} (as in the header)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_strip_crlf_and_skip_blank_keeping_numbers() {
        let data = b"a\tb\r\n\r\n\"c\tq\"\nlast";
        let got: Vec<(usize, &[u8])> = lines(data).collect();
        assert_eq!(
            got,
            vec![(1, &b"a\tb"[..]), (3, &b"\"c\tq\""[..]), (4, &b"last"[..])]
        );
    }

    #[test]
    fn bom_is_dropped_and_bad_utf8_is_located() {
        let p = Path::new("f.tsv");
        assert_eq!(line_str(p, 1, "\u{FEFF}x".as_bytes()).unwrap(), "x");
        let err = line_str(p, 7, b"ab\xffc").unwrap_err().to_string();
        assert!(err.contains("f.tsv:7"), "{err}");
        assert!(err.contains("offset 2"), "{err}");
    }
}
