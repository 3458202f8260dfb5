//! The study on GLUE (issue 15, item 9), at tiny scale: synthetic GLUE-format files for every
//! task, written in the layouts of the tasks crate's GLUE fixtures (their headers and their
//! first row as a template, with generated sentences and labels), a tiny random ALBERT, one
//! seed, one epoch, head-only training. GLUE's test files are unlabeled, so the study selects
//! on a seeded slice of train.tsv, reports the official dev set, and predicts the test files
//! into leaderboard submission files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use adalbert_experiment::config::Experiment;
use adalbert_experiment::stages::train::TrainRecord;
use adalbert_experiment::{run, testing, Mode, RunOptions, RunOutcome};
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Backbone, TaskBundle, TaskModel};
use adalbert_tasks::glue::GlueTask;
use adalbert_tasks::{load_dataset, load_study, Split};

/// Rows per generated file.
const TRAIN_ROWS: usize = 30;
const DEV_ROWS: usize = 12;
const TEST_ROWS: usize = 7;

const STUDY: &str = r#"
name = "tiny-glue"
glue_dir = "@GLUE@"
split_seed = 4
glue_select_fraction = 0.2
seeds = [1]

[[backbones]]
name = "albert"
path = "@MODEL@"

[train]
epochs = 1
batch = 8
max_len = 24

[train.lr_grid]
head = [1e-2]

[tasks]
names = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli"]
methods = ["head"]

[compress]
method = "head"
plans = ["int8"]
faults = ["none"]
"#;

/// The trained tasks with the official metric names each must report.
const TASKS: [(&str, &[&str]); 10] = [
    ("cola", &["matthews_correlation"]),
    ("sst2", &["accuracy"]),
    ("mrpc", &["accuracy", "f1"]),
    ("stsb", &["pearson", "spearmanr"]),
    ("qqp", &["accuracy", "f1"]),
    ("mnli", &["accuracy"]),
    ("mnli-mm", &["accuracy"]),
    ("qnli", &["accuracy"]),
    ("rte", &["accuracy"]),
    ("wnli", &["accuracy"]),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/tests/fixtures/glue")
}

/// A sentence of the tiny model's words; `positive` decides whether it praises.
fn sentence(i: usize, positive: bool) -> String {
    let w = &testing::WORDS;
    let judge = if positive {
        [w[2], w[9], w[11]][i % 3]
    } else {
        [w[3], w[10]][i % 2]
    };
    format!(
        "{} {} {} {}",
        w[i % 2],
        w[4 + i % 2],
        w[6 + (i / 2) % 2],
        judge
    )
}

/// Writes `rows` rows of one GLUE file in the layout of its fixture: the fixture's header (or
/// none, for CoLA's labeled files) and its first row as a template whose text, label and
/// index fields are replaced.
fn write_like_fixture(task: GlueTask, split: Split, out: &Path, rows: usize, salt: usize) {
    let name = task.file_name(split).unwrap();
    let fixture = fixtures().join(task.folder_name()).join(name);
    let text = std::fs::read_to_string(&fixture).unwrap();
    let mut lines = text.lines();
    let headerless = task == GlueTask::Cola && split != Split::Test;
    let header: Vec<String> = if headerless {
        vec![]
    } else {
        lines
            .next()
            .unwrap()
            .split('\t')
            .map(String::from)
            .collect()
    };
    let template: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    let col = |n: &str| header.iter().position(|h| h == n);
    let mut body = String::new();
    if !headerless {
        body.push_str(&header.join("\t"));
        body.push('\n');
    }
    for r in 0..rows {
        let i = r + salt;
        let positive = !(i * 7 + salt).is_multiple_of(3);
        let mut f = template.clone();
        let label = match task.label_tokens() {
            Some(tokens) => tokens[(i + usize::from(positive)) % tokens.len()].to_string(),
            None => format!(
                "{:.3}",
                (i % 11) as f64 * 0.45 + if positive { 0.3 } else { 0.0 }
            ),
        };
        if headerless {
            f[1] = label;
            f[3] = sentence(i, positive);
        } else {
            for (k, c) in [
                "sentence",
                "sentence1",
                "question",
                "question1",
                "#1 String",
            ]
            .into_iter()
            .enumerate()
            {
                if let Some(j) = col(c) {
                    f[j] = sentence(i + k, positive);
                }
            }
            for c in ["sentence2", "question2", "#2 String"] {
                if let Some(j) = col(c) {
                    f[j] = sentence(i * 3 + 1, !positive);
                }
            }
            if split != Split::Test {
                for c in ["label", "Quality", "is_duplicate", "score", "gold_label"] {
                    if let Some(j) = col(c) {
                        f[j] = label.clone();
                    }
                }
            }
            for c in ["index", "id"] {
                if let Some(j) = col(c) {
                    f[j] = (1000 + r).to_string();
                }
            }
        }
        body.push_str(&f.join("\t"));
        body.push('\n');
    }
    let dir = out.join(task.folder_name());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

/// Synthetic GLUE under `root`: every task's train/dev/test files (MNLI's matched and
/// mismatched ones) and AX's diagnostic set.
fn write_glue(root: &Path) {
    for (k, task) in GlueTask::ALL.into_iter().enumerate() {
        if task == GlueTask::Ax {
            write_like_fixture(task, Split::Test, root, TEST_ROWS, 50);
            continue;
        }
        for (split, rows, salt) in [
            (Split::Train, TRAIN_ROWS, 0),
            (Split::Dev, DEV_ROWS, 100),
            (Split::Test, TEST_ROWS, 200),
        ] {
            write_like_fixture(task, split, root, rows, salt + k);
        }
    }
}

fn write_study(dir: &Path) -> PathBuf {
    let (glue, model) = (dir.join("glue"), dir.join("albert"));
    write_glue(&glue);
    adalbert_model::testing::write_tiny_albert(&model, &testing::WORDS).unwrap();
    let path = dir.join("glue.toml");
    std::fs::write(
        &path,
        STUDY
            .replace("@GLUE@", &glue.display().to_string())
            .replace("@MODEL@", &model.display().to_string()),
    )
    .unwrap();
    path
}

fn records(out: &Path) -> Vec<TrainRecord> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(out.join("cache")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("train-")
        {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            v.push(serde_json::from_value(json["value"].clone()).unwrap());
        }
    }
    v
}

/// What identifies an example's content.
fn content(e: &adalbert_tasks::Example) -> (String, String, Option<String>, String) {
    (
        e.id.clone(),
        e.text_a.clone(),
        e.text_b.clone(),
        format!("{:?}", e.label),
    )
}

#[test]
fn glue_study_selects_on_a_train_slice_reports_dev_and_writes_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let exp_path = write_study(dir.path());
    let (exp, _) = Experiment::load(&exp_path).unwrap();
    let glue = dir.path().join("glue");
    let out = dir.path().join("out");
    let outcome = run(&RunOptions {
        experiment: exp_path.clone(),
        out: Some(out.clone()),
        resume: false,
        mode: Mode::All,
    })
    .unwrap();
    let RunOutcome::Report { report, .. } = outcome else {
        panic!("a whole run gives a report")
    };
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("**GLUE:** \"test\" in every table below is the official GLUE dev set")
            && md.contains("a fraction 0.2 of it, at most 2000 examples, split seed 4"),
        "{md}"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), TASKS.len());

    for (task, names) in TASKS {
        let r = recs.iter().find(|r| r.task == task).unwrap();
        // Every reported metric is official, finite and in range, on the official dev set.
        let reported: BTreeSet<&str> = r
            .test_metrics
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "combined_score")
            .collect();
        assert_eq!(
            reported,
            names.iter().copied().collect::<BTreeSet<&str>>(),
            "{task}"
        );
        for (k, &v) in &r.test_metrics {
            let range = if ["accuracy", "f1"].contains(&k.as_str()) {
                0.0..=1.0
            } else {
                -1.0..=1.0
            };
            assert!(v.is_finite() && range.contains(&v), "{task} {k} = {v}");
        }
        assert!(
            r.test_value.is_finite() && r.dev_value.is_finite(),
            "{task}"
        );
        assert_eq!(r.test_examples, DEV_ROWS, "{task}: test is dev.tsv");
        // The selection slice and the training rest are disjoint and together train.tsv.
        let parts = load_study(task, Some(&glue), 4, exp.glue_selection()).unwrap();
        let whole = load_dataset(task, Some(&glue), Split::Train, 0).unwrap();
        assert_eq!(parts.select.examples.len(), 6, "{task}: 20% of 30");
        assert_eq!(
            (r.train_examples, r.dev_examples),
            (TRAIN_ROWS - 6, 6),
            "{task}"
        );
        let sel: Vec<_> = parts.select.examples.iter().map(content).collect();
        let rest: Vec<_> = parts.train.examples.iter().map(content).collect();
        assert!(sel.iter().all(|e| !rest.contains(e)), "{task}: overlap");
        let mut both: Vec<_> = sel.iter().chain(&rest).cloned().collect();
        let mut all: Vec<_> = whole.examples.iter().map(content).collect();
        both.sort();
        all.sort();
        assert_eq!(both, all, "{task}");
        let report_ids: Vec<_> = parts.report.examples.iter().map(content).collect();
        let dev = load_dataset(task, Some(&glue), Split::Dev, 0).unwrap();
        assert_eq!(
            report_ids,
            dev.examples.iter().map(content).collect::<Vec<_>>()
        );
        assert!(
            r.selection.as_deref().unwrap().contains("split seed 4"),
            "{task}"
        );
    }
    // Another split seed cuts another slice.
    let other = load_study("rte", Some(&glue), 5, exp.glue_selection()).unwrap();
    let this = load_study("rte", Some(&glue), 4, exp.glue_selection()).unwrap();
    assert_ne!(
        other
            .select
            .examples
            .iter()
            .map(content)
            .collect::<Vec<_>>(),
        this.select.examples.iter().map(content).collect::<Vec<_>>()
    );

    // A submission file per task (AX with the MNLI model), named, headed and sized as the
    // leaderboard expects, one row per test example with its index.
    let sub = out.join("report/glue_submission/albert/head");
    let mut files: Vec<String> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "AX.tsv",
            "CoLA.tsv",
            "MNLI-m.tsv",
            "MNLI-mm.tsv",
            "MRPC.tsv",
            "QNLI.tsv",
            "QQP.tsv",
            "RTE.tsv",
            "SST-2.tsv",
            "STS-B.tsv",
            "WNLI.tsv"
        ]
    );
    for task in GlueTask::ALL {
        let text = std::fs::read_to_string(sub.join(task.submission_file_name())).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("index\tprediction"), "{task:?}");
        let rows: Vec<(&str, &str)> = lines.map(|l| l.split_once('\t').unwrap()).collect();
        assert_eq!(rows.len(), TEST_ROWS, "{task:?}");
        for (k, (index, pred)) in rows.iter().enumerate() {
            assert_eq!(*index, (1000 + k).to_string(), "{task:?}");
            match task.label_tokens() {
                Some(tokens) => assert!(tokens.contains(pred), "{task:?}: {pred}"),
                None => assert!((0.0..=5.0).contains(&pred.parse::<f64>().unwrap())),
            }
        }
    }

    // The RTE and AX files are the kept bundles' predictions, checked independently.
    let (bb, _) = Backbone::from_dir(&dir.path().join("albert")).unwrap();
    let tok = Tokenizer::from_dir(&dir.path().join("albert"), 24).unwrap();
    for (task, data, file) in [
        ("rte", "rte", "RTE.tsv"),
        ("mnli", "ax", "AX.tsv"),
        ("stsb", "stsb", "STS-B.tsv"),
    ] {
        let r = recs.iter().find(|r| r.task == task).unwrap();
        let bundle =
            TaskBundle::load(&out.join("bundles").join(r.bundle.file_name().unwrap())).unwrap();
        let params = bundle.task_params(&bb.config).unwrap();
        let model = TaskModel {
            backbone: &bb,
            task: &params,
            layout: &bundle.meta.layout,
        };
        let test = load_dataset(data, Some(&glue), Split::Test, 0).unwrap();
        let preds =
            adalbert_train::eval::predict(&model, &tok, &test.task, &test.examples, 64).unwrap();
        let want = adalbert_tasks::submission::submission_text(&test.task, &test.examples, &preds)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(sub.join(file)).unwrap(),
            want,
            "{file}"
        );
    }

    // The compress stage evaluates on the reported split (GLUE dev) too.
    let t2 = std::fs::read_to_string(out.join("report/table2_compression.csv")).unwrap();
    assert!(t2.lines().count() > 1, "{t2}");
}

#[test]
fn missing_glue_files_and_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let exp_path = write_study(dir.path());
    let text = std::fs::read_to_string(&exp_path).unwrap();
    let err = |text: &str| {
        std::fs::write(&exp_path, text).unwrap();
        adalbert_experiment::error::chain(&Experiment::load(&exp_path).unwrap_err())
    };
    // A missing test file (predicted for the submission) and AX's file are named.
    let rte_test = dir.path().join("glue/RTE/test.tsv");
    std::fs::rename(&rte_test, dir.path().join("moved.tsv")).unwrap();
    let e = err(&text);
    assert!(
        e.contains(&rte_test.display().to_string()) && e.contains("rte test"),
        "{e}"
    );
    std::fs::rename(dir.path().join("moved.tsv"), &rte_test).unwrap();
    let ax = dir.path().join("glue/diagnostic/diagnostic.tsv");
    std::fs::rename(&ax, dir.path().join("moved.tsv")).unwrap();
    let e = err(&text);
    assert!(
        e.contains(&ax.display().to_string()) && e.contains("mnli"),
        "{e}"
    );
    std::fs::rename(dir.path().join("moved.tsv"), &ax).unwrap();
    // A missing GLUE root and a missing model folder.
    let e = err(&text.replace("/glue\"", "/nowhere\""));
    assert!(
        e.contains("glue_dir") && e.contains("nowhere: not found"),
        "{e}"
    );
    let e = err(&text.replace("/albert\"", "/no-model\""));
    assert!(
        e.contains("no-model") && e.contains("no config.json"),
        "{e}"
    );
    // AX is not trained; a mix with the offline suite is refused; the slice is checked.
    let e = err(&text.replace("\"wnli\"]", "\"wnli\", \"ax\"]"));
    assert!(e.contains("`ax` has no training data"), "{e}");
    let e = err(&text.replace("\"wnli\"]", "\"wnli\", \"movie-polarity\"]"));
    assert!(e.contains("mixes the GLUE task"), "{e}");
    let e = err(&text.replace("glue_select_fraction = 0.2", "glue_select_fraction = 1.5"));
    assert!(e.contains("glue_select_fraction"), "{e}");

    // configs/glue.toml: without the user's checkpoint its first missing path is named; with
    // models and data where it says (tiny ones here) it is a valid study.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/glue.toml");
    let e = adalbert_experiment::error::chain(&Experiment::load(&config).unwrap_err());
    assert!(
        e.contains("models/albert-base-v2") && e.contains("no config.json"),
        "{e}"
    );
    let bert = dir.path().join("bert");
    adalbert_model::testing::write_tiny_bert(&bert, &testing::WORDS).unwrap();
    let ours = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "\"models/albert-base-v2\"",
            &format!("{:?}", dir.path().join("albert")),
        )
        .replace("\"models/bert-base-uncased\"", &format!("{bert:?}"))
        .replace(
            "glue_dir = \"glue\"",
            &format!("glue_dir = {:?}", dir.path().join("glue")),
        )
        .replace("max_len = 128", "max_len = 24");
    std::fs::write(&exp_path, ours).unwrap();
    let (exp, _) = Experiment::load(&exp_path).unwrap();
    assert_eq!(exp.seeds, [1, 2, 3]);
    assert_eq!(exp.backbones.len(), 2);
    assert!(exp.is_glue());
    assert!(adalbert_experiment::check(&exp_path).unwrap() > 0);
}
