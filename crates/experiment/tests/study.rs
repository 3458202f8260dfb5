//! The study machinery at tiny scale (issue 15): two backbones (a tiny BERT and a tiny ALBERT),
//! a learning-rate grid chosen on dev, two training seeds, early stopping, the adapter kind,
//! size and sharing sweep, compress-then-train next to fp32-trained bundles on the compressed
//! backbone, and every reported number on the test split, which no selection reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adalbert_experiment::config::Experiment;
use adalbert_experiment::stages::train::TrainRecord;
use adalbert_experiment::{run, testing, Mode, RunOptions, RunOutcome};
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Backbone, TaskBundle, TaskModel};
use adalbert_tasks::{load_dataset, Split};

const STUDY: &str = r#"
name = "tiny-study"
data = "@DATA@"
split_seed = 5
seeds = [1, 2, 3]
scale = "reduced"

[[backbones]]
name = "bert"
path = "@BERT@"

[[backbones]]
name = "albert"
path = "@ALBERT@"

[reduced]
seeds = [1, 2]
epochs = 3
max_test = 4

[train]
epochs = 6
batch = 8
max_len = 16
patience = 1

[train.lr_grid]
full = [1e-4, 3e-3]
adapter = [1e-3, 1e-2]
head = [1e-2]

[tasks]
names = ["movie-polarity"]
methods = ["houlsby:4", "full", "head"]

[sweep]
tasks = ["movie-polarity"]
kinds = ["houlsby", "pfeiffer"]
sizes = [2]
sharing = ["per-application", "shared"]
lr = 1e-2
seeds = 1

[compress]
method = "houlsby:4"
train_on_compressed = true
lr = 1e-2
plans = ["int8", "int8+prune=0.5+bitmask"]
faults = ["none", "mlc:bpc=3"]
seeds = 2
"#;

fn write_study(dir: &Path) -> PathBuf {
    let (bert, albert) = (dir.join("bert"), dir.join("albert"));
    adalbert_model::testing::write_tiny_bert(&bert, &testing::WORDS).unwrap();
    adalbert_model::testing::write_tiny_albert(&albert, &testing::WORDS).unwrap();
    let text = STUDY
        .replace("@DATA@", &testing::data_dir().display().to_string())
        .replace("@BERT@", &bert.display().to_string())
        .replace("@ALBERT@", &albert.display().to_string());
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| {
            let x = x.unwrap();
            header
                .iter()
                .cloned()
                .zip(x.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

/// Every cached training record of the run folder, with its cache file.
fn records(out: &Path) -> Vec<(PathBuf, TrainRecord)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(out.join("cache")).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("train-")
        {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v.push((p, serde_json::from_value(json["value"].clone()).unwrap()));
    }
    v
}

fn report(exp: &Path, out: &Path, resume: bool) -> String {
    match run(&RunOptions {
        experiment: exp.to_path_buf(),
        out: Some(out.to_path_buf()),
        resume,
        mode: Mode::All,
    })
    .unwrap()
    {
        RunOutcome::Report { report, .. } => std::fs::read_to_string(report).unwrap(),
        other => panic!("a whole run gives a report: {other:?}"),
    }
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

#[test]
fn tiny_study_selects_on_dev_reports_test_on_two_backbones_and_trains_on_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let exp_path = write_study(dir.path());
    let (exp, _) = Experiment::load(&exp_path).unwrap();
    // The reduced scale replaced seeds, epochs and the test cap.
    assert_eq!(exp.seeds, [1, 2]);
    assert_eq!(exp.train.epochs, 3);
    assert_eq!(exp.train.max_test, Some(4));
    let out = dir.path().join("out");
    let md = report(&exp_path, &out, false);
    let rep = out.join("report");

    // Every row of every CSV is in report.md.
    for f in [
        "table1_tasks.csv",
        "lr_selection.csv",
        "dev_curve_full.csv",
        "sweep_adapter_size.csv",
        "table2_compression.csv",
        "interpretation.csv",
    ] {
        let (header, rows) = csv(&rep.join(f));
        assert!(md.contains(&format!("| {} |", header.join(" | "))), "{f}");
        assert!(!rows.is_empty(), "{f} is empty");
        for r in rows {
            let cells: Vec<String> = header.iter().map(|h| r[h].clone()).collect();
            let line = format!("| {} |", cells.join(" | "));
            assert!(md.contains(&line), "{f}: {line}");
        }
    }
    for f in [
        "fig_dev_curve.svg",
        "fig_adapter_size.svg",
        "fig_compression.svg",
    ] {
        assert!(rep.join(f).is_file(), "{f}");
    }
    assert!(md.contains("**Scale: reduced.**"), "{md}");
    assert!(md.contains("## Interpretation") && md.contains("What this does not show"));

    let recs = records(&out);
    let main = |b: &str, m: &str| -> Vec<&TrainRecord> {
        recs.iter()
            .map(|(_, r)| r)
            .filter(|r| {
                r.backbone == b
                    && r.method == m
                    && r.compressed.is_none()
                    && r.sharing == "per-application"
            })
            .collect()
    };

    // Table 1: both backbones x 3 methods, plus the averages; two seeds with a sample sd.
    let (_, t1) = csv(&rep.join("table1_tasks.csv"));
    assert_eq!(t1.len(), 2 * 3 + 2 * 3, "{t1:?}");
    let (_, lrs) = csv(&rep.join("lr_selection.csv"));
    for row in t1.iter().filter(|r| r["task"] == "movie-polarity") {
        assert_eq!(row["seeds"], "2");
        assert!(num(&row["sd (n-1)"]) >= 0.0);
        let (b, m) = (row["backbone"].as_str(), row["method"].as_str());
        // The chosen learning rate has the best mean dev metric of the cell's grid
        // (ties: the first listed)...
        let cands: Vec<&BTreeMap<String, String>> = lrs
            .iter()
            .filter(|r| r["backbone"] == b && r["method"] == m && r["sharing"] == "per-application")
            .collect();
        assert_eq!(cands.len(), if m == "head" { 1 } else { 2 });
        let best = cands
            .iter()
            .map(|r| num(&r["dev mean"]))
            .fold(f64::NEG_INFINITY, f64::max);
        let chosen: Vec<_> = cands.iter().filter(|r| r["chosen"] == "yes").collect();
        assert_eq!(chosen.len(), 1);
        assert_eq!(num(&chosen[0]["dev mean"]), best);
        assert_eq!(chosen[0]["lr"], row["lr"]);
        // ... and the value is the test metric of that learning rate's runs.
        let lr: f64 = num(&row["lr"]);
        let at: Vec<&TrainRecord> = main(b, m).into_iter().filter(|r| r.lr == lr).collect();
        assert_eq!(at.len(), 2);
        let mean = at.iter().map(|r| r.test_value).sum::<f64>() / 2.0;
        assert_eq!(row["value"], format!("{mean:.4}"));
        for r in &at {
            assert_eq!((r.dev_examples, r.test_examples), (5, 4));
            assert!(r.epochs_run <= 3 && r.best_epoch >= 1 && r.best_epoch <= r.epochs_run);
            assert_eq!(r.dev_curve.len(), r.epochs_run);
            assert_eq!(r.dev_value, r.dev_curve[r.best_epoch - 1]);
        }
    }

    // The test number is the bundle evaluated on the test split, checked independently.
    let r = main("bert", "houlsby:4")[0];
    let bundle =
        TaskBundle::load(&out.join("bundles").join(r.bundle.file_name().unwrap())).unwrap();
    let (bb, _) = Backbone::from_dir(&dir.path().join("bert")).unwrap();
    let params = bundle.task_params(&bb.config).unwrap();
    let model = TaskModel {
        backbone: &bb,
        task: &params,
        layout: &bundle.meta.layout,
    };
    let tok = Tokenizer::from_dir(&dir.path().join("bert"), 16).unwrap();
    let mut test =
        load_dataset("movie-polarity", Some(&testing::data_dir()), Split::Test, 5).unwrap();
    test.examples.truncate(4);
    let m =
        adalbert_train::eval::evaluate_model(&model, &tok, &test.task, &test.examples, 64).unwrap();
    let acc = m.iter().find(|(k, _)| *k == "accuracy").unwrap().1;
    assert_eq!(acc, r.test_value);

    // The sweep: both kinds on both backbones; sharing variants on the ALBERT only.
    let (_, sw) = csv(&rep.join("sweep_adapter_size.csv"));
    let cells: Vec<(String, String, String)> = sw
        .iter()
        .map(|r| {
            (
                r["backbone"].clone(),
                r["adapter"].clone(),
                r["sharing"].clone(),
            )
        })
        .collect();
    for kind in ["houlsby", "pfeiffer"] {
        assert!(cells.contains(&("bert".into(), kind.into(), "per-application".into())));
        assert!(cells.contains(&("albert".into(), kind.into(), "per-application".into())));
        assert!(cells.contains(&("albert".into(), kind.into(), "shared".into())));
        assert!(!cells.contains(&("bert".into(), kind.into(), "shared".into())));
    }
    assert!(sw.iter().all(|r| r["seeds"] == "1"));

    // Table 2: on both backbones, the fp32-trained bundle over 2 fault seeds and the method
    // trained on each compressed backbone (one training seed x the fault seeds).
    let (_, t2) = csv(&rep.join("table2_compression.csv"));
    assert_eq!(t2.len(), 2 * 2 * 2, "{t2:?}");
    for r in &t2 {
        let n = if r["faults"] == "none" { "1" } else { "2" };
        assert_eq!(
            (r["seeds"].as_str(), r["runs trained compressed"].as_str()),
            (n, n)
        );
        let d = num(&r["trained compressed"]) - num(&r["mean"]);
        assert_eq!(r["recovered"], format!("{d:.4}"));
    }
    // A compress-then-train bundle was trained on the compressed weights, not the fp32 ones.
    // Bundles record the backbone by content.
    let fp32_sha = adalbert_model::Checkpoint::open(&dir.path().join("albert"))
        .unwrap()
        .content_sha256()
        .unwrap();
    let on = recs
        .iter()
        .map(|(_, r)| r)
        .find(|r| r.backbone == "albert" && r.compressed.is_some())
        .unwrap();
    let b = TaskBundle::load(&out.join("bundles").join(on.bundle.file_name().unwrap())).unwrap();
    assert_ne!(b.meta.backbone_sha256, fp32_sha);
    assert_eq!(
        TaskBundle::load(
            &out.join("bundles")
                .join(main("albert", "houlsby:4")[0].bundle.file_name().unwrap())
        )
        .unwrap()
        .meta
        .backbone_sha256,
        fp32_sha
    );

    // No test value influences a selection: rewrite every cached test value (reversing its
    // order against dev), rebuild the report from the cache, and the choices stay.
    let chosen_before: Vec<String> = lrs
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["backbone"], r["method"], r["sharing"], r["lr"], r["chosen"]
            )
        })
        .collect();
    for (path, _) in &recs {
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let dev = json["value"]["dev_value"].as_f64().unwrap();
        json["value"]["test_value"] = serde_json::json!(1.0 - dev);
        std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
    }
    report(&exp_path, &out, true);
    let (_, lrs_after) = csv(&rep.join("lr_selection.csv"));
    let chosen_after: Vec<String> = lrs_after
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["backbone"], r["method"], r["sharing"], r["lr"], r["chosen"]
            )
        })
        .collect();
    assert_eq!(chosen_after, chosen_before);
    let (_, t1_after) = csv(&rep.join("table1_tasks.csv"));
    let row = t1_after
        .iter()
        .find(|r| r["backbone"] == "bert" && r["method"] == "full" && r["task"] == "movie-polarity")
        .unwrap();
    assert_eq!(row["value"], format!("{:.4}", 1.0 - num(&row["dev"])));
}

#[test]
fn study_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_study(dir.path());
    let original = std::fs::read_to_string(&path).unwrap();
    let broken = |from: &str, to: &str| {
        assert!(original.contains(from), "{from}");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        adalbert_experiment::error::chain(&Experiment::load(&path).unwrap_err())
    };
    let e = broken("scale = \"reduced\"", "scale = \"medium\"");
    assert!(e.contains("scale"), "{e}");
    let e = broken("name = \"albert\"", "name = \"bert\"");
    assert!(e.contains("backbones.name") && e.contains("twice"), "{e}");
    let e = broken("lr = 1e-2\nplans", "lr = 5e-2\nplans");
    assert!(e.contains("compress.lr"), "{e}");
    let e = broken("seeds = 1\n", "seeds = 4\n");
    assert!(e.contains("sweep.seeds"), "{e}");
    let e = broken("full = [1e-4, 3e-3]", "full = [1e-4, 1e-4]");
    assert!(
        e.contains("train.lr_grid.full") && e.contains("twice"),
        "{e}"
    );
    let e = broken("seeds = 2\n", "seeds = 2\nrecover_epochs = 1\n");
    assert!(e.contains("train_on_compressed"), "{e}");
    let e = broken(
        "[[backbones]]\nname = \"bert\"",
        "model = \"x\"\n[[backbones]]\nname = \"bert\"",
    );
    assert!(e.contains("not both"), "{e}");
}
