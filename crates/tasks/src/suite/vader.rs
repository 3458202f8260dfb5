//! Reader of the VADER ground-truth snippet files: `id \t mean_rating \t text` per line, no
//! header, CRLF line ends, sometimes a byte-order mark. Not quoted (a `"` is a character).

use std::path::Path;

use crate::error::{Error, Result};
use crate::tsv;

/// One rated snippet.
#[derive(Debug, Clone)]
pub struct Snippet {
    pub id: String,
    /// Mean of the human ratings, -4 (most negative) .. 4 (most positive).
    pub rating: f32,
    pub text: String,
}

/// Read every snippet of `path`, in file order. A bad line is an error naming file and line.
pub(crate) fn read(path: &Path) -> Result<Vec<Snippet>> {
    let data = tsv::read_bytes(path, || Error::MissingAsset {
        path: path.to_path_buf(),
        what: "VADER ground-truth snippets (vadersentiment 3.3.2, hutto_ICWSM_2014.tar.gz)"
            .to_string(),
    })?;
    parse(path, &data)
}

/// The snippets of a VADER file's bytes; `path` only names the file in errors.
pub(crate) fn parse(path: &Path, data: &[u8]) -> Result<Vec<Snippet>> {
    let mut snippets = Vec::new();
    for (number, bytes) in tsv::lines(data) {
        let line = tsv::line_str(path, number, bytes)?;
        let fields: Vec<&str> = line.split('\t').collect();
        let [id, rating, text] = fields[..] else {
            return Err(tsv::malformed(
                path,
                number,
                format!(
                    "found {} tab-separated fields, expected 3 (id, mean rating, text)",
                    fields.len()
                ),
            ));
        };
        let rating = match rating.trim().parse::<f32>() {
            Ok(r) if (-4.0..=4.0).contains(&r) => r,
            _ => {
                return Err(tsv::malformed(
                    path,
                    number,
                    format!("mean rating `{rating}` is not a number in -4..4"),
                ))
            }
        };
        snippets.push(Snippet {
            id: id.trim().to_string(),
            rating,
            text: text.trim().to_string(),
        });
    }
    if snippets.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            expected: "lines `id \\t mean_rating \\t text`".to_string(),
        });
    }
    Ok(snippets)
}
