//! Users' own data end to end: `train` on a CSV, `eval` on a TSV, `predict` with the bundle
//! alone, and bad files refused with the file, line and column named. Runs the real binary
//! on the tiny random ALBERT, so it takes seconds.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{adalbert, ok};

const WORDS: [&str; 10] = [
    "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great",
];

fn refused(o: Output, wanted: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in wanted {
        assert!(err.contains(w), "`{w}` not in: {err}");
    }
    err
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `n` rows of `(text, label)`: good/great sentences are `yes`, bad/not ones `no`.
fn rows(n: usize, offset: usize) -> Vec<(String, &'static str)> {
    let subjects = ["the film", "a movie", "the movie", "a film"];
    (0..n)
        .map(|i| {
            let subject = subjects[(i + offset) % subjects.len()];
            if (i + offset).is_multiple_of(2) {
                (format!("{subject} was good"), "yes")
            } else {
                (format!("{subject} is not great , bad"), "no")
            }
        })
        .collect()
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn train_eval_predict_on_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = dir.join("model");
    adalbert_model::testing::write_tiny_albert(&model, &WORDS).unwrap();
    let mut csv = String::from("id,sentence,label\n");
    for (i, (text, label)) in rows(20, 0).iter().enumerate() {
        // Quoted, since the texts hold commas.
        csv.push_str(&format!("{i},\"{text}\",{label}\n"));
    }
    let train = write(&dir.join("reviews.csv"), &csv);
    let mut tsv = String::from("sentence\tlabel\n");
    for (text, label) in rows(8, 1) {
        tsv.push_str(&format!("{text}\t{label}\n"));
    }
    let dev = write(&dir.join("dev.tsv"), &tsv);
    let test = write(&dir.join("test.tsv"), &tsv);
    let bundle = dir.join("reviews.bundle.safetensors");
    let out = ok(adalbert(&[
        "train",
        "--model",
        &s(&model),
        "--train-file",
        &s(&train),
        "--validation-file",
        &s(&dev),
        "--test-file",
        &s(&test),
        "--text-column",
        "sentence",
        "--mode",
        "head",
        "--pooling",
        "mean",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--max-len",
        "16",
        "--out",
        &s(&bundle),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["meta"]["task"], "reviews", "{v}");
    assert_eq!(v["meta"]["labels"], serde_json::json!(["no", "yes"]), "{v}");
    let acc = v["test"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{v}");

    // eval on the TSV with the bundle's labels; the metric is a fraction of 8 examples.
    let out = ok(adalbert(&[
        "eval",
        "--model",
        &s(&model),
        "--bundle",
        &s(&bundle),
        "--test-file",
        &s(&test),
        "--text-column",
        "sentence",
        "--max-len",
        "16",
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let eval_acc = m["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&eval_acc), "{m}");
    assert_eq!((eval_acc * 8.0).fract(), 0.0, "{m}");
    // The same bundle on the same file as `train --test-file` scored it.
    assert_eq!(eval_acc, acc, "{m} vs {v}");

    // predict needs neither the files nor the registry: the bundle carries its labels.
    let out = ok(adalbert(&[
        "predict",
        "--model",
        &s(&model),
        "--bundle",
        &s(&bundle),
        "--max-len",
        "16",
        "--json",
        "the film was good",
    ]));
    let p: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let label = p["reviews"][0]["label"].as_str().unwrap().to_string();
    assert!(["no", "yes"].contains(&label.as_str()), "{p}");

    // eval without files cannot find a registry task of that name, and says what to do.
    refused(
        adalbert(&["eval", "--model", &s(&model), "--bundle", &s(&bundle)]),
        &["`reviews` is not a registry task", "--test-file"],
    );
    // A label the bundle does not know, in the evaluated file.
    let bad = write(
        &dir.join("bad.tsv"),
        "sentence\tlabel\nthe film was good\tyes\na movie\tmaybe\n",
    );
    refused(
        adalbert(&[
            "eval",
            "--model",
            &s(&model),
            "--bundle",
            &s(&bundle),
            "--test-file",
            &s(&bad),
            "--text-column",
            "sentence",
        ]),
        &[
            "bad.tsv:3: column `label`",
            "`maybe` is not one of",
            "no, yes",
        ],
    );
    // --labels that contradict the bundle.
    refused(
        adalbert(&[
            "eval",
            "--model",
            &s(&model),
            "--bundle",
            &s(&bundle),
            "--test-file",
            &s(&test),
            "--text-column",
            "sentence",
            "--labels",
            "yes,no",
        ]),
        &["--labels yes,no differs", "no,yes"],
    );
}

#[test]
fn bad_training_files_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = dir.join("model");
    adalbert_model::testing::write_tiny_albert(&model, &WORDS).unwrap();
    let dev = write(&dir.join("dev.csv"), "text,label\nthe film,a\n");
    let out = dir.join("b.bundle.safetensors");
    let train = |file: &Path, extra: &[&str]| {
        let mut a = vec![
            "train".to_string(),
            "--model".into(),
            s(&model),
            "--train-file".into(),
            s(file),
            "--validation-file".into(),
            s(&dev),
            "--mode".into(),
            "head".into(),
            "--epochs".into(),
            "1".into(),
            "--out".into(),
            s(&out),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        adalbert(&refs)
    };
    let f = write(&dir.join("cols.csv"), "sentence,label\nthe film,a\n");
    refused(
        train(&f, &[]),
        &[
            "cols.csv:1: no column `text`",
            "--text-column",
            "sentence, label",
        ],
    );
    let f = write(&dir.join("header.tsv"), "text\tlabel\n");
    refused(train(&f, &[]), &["header.tsv: no examples found"]);
    let f = write(
        &dir.join("mixed.jsonl"),
        "{\"text\": \"the film\", \"label\": 1}\n{\"text\": \"a movie\", \"label\": 0.5}\n",
    );
    refused(
        train(&f, &[]),
        &[
            "mixed.jsonl",
            "column `label` mixes integer labels",
            "--task-type",
        ],
    );
    let f = write(
        &dir.join("outside.csv"),
        "text,label\nthe film,a\na movie,b\n",
    );
    refused(
        train(&f, &["--labels", "a,c"]),
        &["outside.csv:3: column `label`", "`b` is not one of", "a, c"],
    );
    let f = write(&dir.join("sst2.csv"), "text,label\nthe film,a\n");
    refused(train(&f, &[]), &["registry task `sst2`", "--task"]);
    refused(train(&f, &["--task", "mine", "--data", "x"]), &["--data"]);
    assert!(!out.exists(), "a refused run wrote {}", out.display());
}
