//! An experiment on the user's own data files (`[[tasks.files]]`): trained, compressed and
//! reported like a registry task, keyed by the files' contents, and refused with the key and
//! the file's line when a file is bad.

use std::path::{Path, PathBuf};

use adalbert_experiment::config::Experiment;
use adalbert_experiment::error::chain;
use adalbert_experiment::{run, testing, Mode, RunOptions, RunOutcome};

/// Rows over the tiny model's vocabulary: good/fun sentences are `pos`, bad/awful ones `neg`.
fn rows(n: usize, offset: usize) -> Vec<(String, &'static str)> {
    let subjects = ["the film", "a movie", "the movie", "a film"];
    (0..n)
        .map(|i| {
            let subject = subjects[(i + offset) % subjects.len()];
            if (i + offset).is_multiple_of(2) {
                (format!("{subject} was good fun"), "pos")
            } else {
                (format!("{subject} is awful , bad"), "neg")
            }
        })
        .collect()
}

/// The model, the three files (CSV train, TSV validation, JSON Lines test) and an
/// experiment file training `head` on them and compressing it; returns the file's path.
fn study(dir: &Path, files_table: Option<&str>) -> PathBuf {
    testing::write_tiny_study(dir).unwrap();
    let mut csv = String::from("sentence,label\n");
    for (text, label) in rows(24, 0) {
        csv.push_str(&format!("\"{text}\",{label}\n"));
    }
    std::fs::write(dir.join("train.csv"), csv).unwrap();
    let mut tsv = String::from("sentence\tlabel\n");
    let mut jsonl = String::new();
    for (text, label) in rows(8, 1) {
        tsv.push_str(&format!("{text}\t{label}\n"));
        jsonl.push_str(&format!(
            "{{\"sentence\": \"{text}\", \"label\": \"{label}\"}}\n"
        ));
    }
    std::fs::write(dir.join("dev.tsv"), tsv).unwrap();
    std::fs::write(dir.join("test.jsonl"), jsonl).unwrap();
    let d = dir.display();
    let table = files_table.map_or_else(
        || {
            format!(
                r#"[[tasks.files]]
name = "mine"
train_file = "{d}/train.csv"
validation_file = "{d}/dev.tsv"
test_file = "{d}/test.jsonl"
text_column = "sentence""#
            )
        },
        str::to_string,
    );
    let text = format!(
        r#"name = "own"
model = "{d}/model"
data = "{data}"
seeds = [3]

[train]
epochs = 1
batch = 8
max_len = 16

[tasks]
names = ["mine"]
methods = ["head"]

{table}

[compress]
method = "head"
plans = ["int8"]
faults = ["none"]
seeds = 1
"#,
        data = testing::data_dir().display()
    );
    let path = dir.join("own.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_files_task_runs_end_to_end_and_is_keyed_by_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = study(dir.path(), None);
    let (exp, _) = Experiment::load(&path).unwrap();
    let task = &exp.file_task("mine").unwrap().task;
    assert_eq!(task.spec.labels(), ["neg", "pos"]);
    let outcome = run(&RunOptions {
        experiment: path.clone(),
        out: Some(dir.path().join("out")),
        resume: false,
        mode: Mode::All,
    })
    .unwrap();
    let RunOutcome::Report { headlines, report } = outcome else {
        panic!("a whole run gives a report");
    };
    assert!(
        headlines.iter().any(|h| h.starts_with("Table 1 | mine")),
        "{headlines:?}"
    );
    assert!(
        headlines
            .iter()
            .any(|h| h.starts_with("Table 2 | plan int8")),
        "{headlines:?}"
    );
    let md = std::fs::read_to_string(report).unwrap();
    assert!(md.contains("| mine |"), "{md}");

    // The training key follows the files' contents: editing the test file changes it.
    let sha = adalbert_model::checkpoint::sha256_file(&dir.path().join("model/model.safetensors"))
        .unwrap();
    let key = |exp: &Experiment| {
        let items = adalbert_experiment::stages::train::items(exp, &[]);
        adalbert_experiment::stages::train::key(exp, &items[0], &sha)
            .unwrap()
            .hex()
            .to_string()
    };
    let before = key(&exp);
    assert_eq!(key(&Experiment::load(&path).unwrap().0), before);
    let test = dir.path().join("test.jsonl");
    let mut text = std::fs::read_to_string(&test).unwrap();
    text.push_str("{\"sentence\": \"the film was fun\", \"label\": \"pos\"}\n");
    std::fs::write(&test, text).unwrap();
    assert_ne!(key(&Experiment::load(&path).unwrap().0), before);
}

#[test]
fn bad_files_tables_name_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let load_err = |table: &str| {
        let path = study(dir.path(), Some(table));
        chain(&Experiment::load(&path).unwrap_err())
    };
    let e = load_err(&format!(
        "[[tasks.files]]\nname = \"mine\"\ntrain_file = \"{d}/train.csv\"\nvalidation_file = \"{d}/dev.tsv\"\ntext_column = \"sentence\""
    ));
    assert!(
        e.contains("tasks.files.test_file") && e.contains("`mine`"),
        "{e}"
    );
    let e = load_err(&format!(
        "[[tasks.files]]\nname = \"mine\"\ntrain_file = \"{d}/train.csv\"\nvalidation_file = \"{d}/dev.tsv\"\ntest_file = \"{d}/test.jsonl\""
    ));
    assert!(e.contains("tasks.files"), "{e}");
    assert!(e.contains("train.csv:1: no column `text`"), "{e}");
    let e = load_err(&format!(
        "[[tasks.files]]\nname = \"mine\"\ntrain_file = \"{d}/train.csv\"\nvalidation_file = \"{d}/dev.tsv\"\ntest_file = \"{d}/test.jsonl\"\ntext_column = \"sentence\"\nlabels = [\"pos\"]"
    ));
    assert!(
        e.contains("train.csv:3: column `label`") && e.contains("`neg`"),
        "{e}"
    );
    let e = load_err(&format!(
        "[[tasks.files]]\nname = \"other\"\ntrain_file = \"{d}/train.csv\"\nvalidation_file = \"{d}/dev.tsv\"\ntest_file = \"{d}/test.jsonl\"\ntext_column = \"sentence\""
    ));
    assert!(e.contains("tasks.names") && e.contains("`mine`"), "{e}");
    assert!(e.contains("[[tasks.files]] tasks: other"), "{e}");
    let e = load_err(&format!(
        "[[tasks.files]]\nname = \"mine\"\ntrain = \"{d}/train.csv\""
    ));
    assert!(e.contains("unknown field `train`"), "{e}");
}
