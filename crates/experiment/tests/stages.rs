//! The library end to end on a tiny random ALBERT and the tiny offline-suite fixtures: a whole
//! experiment (report consistency, spreads, resume), the experiment file's errors, the one
//! compression vocabulary read from a sweep file and from an experiment, the one cache behind
//! `adalbert compress`, and the bundles both paths refuse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adalbert_experiment::config::Experiment;
use adalbert_experiment::error::chain;
use adalbert_experiment::stages::train::TrainRecord;
use adalbert_experiment::sweep::{self, Flags, Point, Progress};
use adalbert_experiment::{run, testing, Mode, RunOptions, RunOutcome};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> PathBuf {
    testing::data_dir()
}

/// The tiny experiment (tests/fixtures/tiny.toml) in `dir`, with `methods` as its methods
/// and `compress` as the body of its `[compress]` section.
fn experiment(dir: &Path, methods: &str, compress: &str) -> PathBuf {
    let path = testing::write_tiny_study(dir).unwrap();
    let template = std::fs::read_to_string(&path).unwrap();
    let section = |name: &str| {
        let start = template.find(&format!("[{name}]\n")).unwrap();
        let end = template[start..].find("\n\n").unwrap() + start;
        &template[start..end]
    };
    let text = template
        .replace(
            "methods = [\"houlsby:4\", \"head\"]",
            &format!("methods = {methods}"),
        )
        .replace(section("compress"), &format!("[compress]\n{compress}"));
    std::fs::write(&path, text).unwrap();
    path
}

const METHODS: &str = r#"["houlsby:4", "head"]"#;

const COMPRESS: &str = r#"method = "houlsby:4"
plans = ["int8", "af6e3+prune=0.5+bitmask"]
faults = ["none", "mlc:bpc=3"]
seeds = 2"#;

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Every file under `dir` with its modification time.
fn listing(dir: &Path) -> BTreeMap<PathBuf, std::time::SystemTime> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().modified().unwrap())
        })
        .collect()
}

#[test]
fn tiny_experiment_writes_a_consistent_report_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), METHODS, COMPRESS);
    let out = dir.path().join("out");
    let opts = RunOptions {
        experiment: exp.clone(),
        out: Some(out.clone()),
        resume: false,
        mode: Mode::All,
    };
    let report = |opts: &RunOptions| match run(opts).unwrap() {
        RunOutcome::Report { headlines, report } => (headlines, report),
        other => panic!("a whole run gives a report: {other:?}"),
    };
    let (first, report_md) = report(&opts);
    assert!(first
        .iter()
        .any(|h| h.starts_with("Table 1 | movie-polarity")));
    assert!(first
        .iter()
        .any(|h| h.starts_with("Table 2 | plan int8 faults mlc:bpc=3")));
    let report_dir = out.join("report");
    assert_eq!(report_md, report_dir.join("report.md"));
    let md = std::fs::read_to_string(&report_md).unwrap();
    let csvs = [
        "table1_tasks.csv",
        "sweep_adapter_size.csv",
        "table2_compression.csv",
        "table3_hardware.csv",
    ];
    for f in csvs.iter().chain(&[
        "fig_adapter_size.svg",
        "fig_compression.svg",
        "fig_tasks.svg",
    ]) {
        assert!(report_dir.join(f).is_file(), "{f} missing");
    }
    let mut rows = 0;
    for f in csvs {
        let (header, lines) = csv_rows(&report_dir.join(f));
        assert!(
            md.contains(&format!("| {} |", header.join(" | "))),
            "{f}: header"
        );
        for cells in lines {
            let md_row = format!("| {} |", cells.join(" | "));
            assert!(md.contains(&md_row), "{f}: row not in report.md: {md_row}");
            rows += 1;
        }
    }
    // 2 tasks x 2 methods + 1 sweep size, 2 tasks x 2 plans x 2 fault specs, 2 N x 4 policies.
    assert!(rows >= 4 + 2 + 8 + 8, "only {rows} rows");
    assert!(md.contains("backbone sha256") && md.contains("git revision"));
    assert!(md.contains("| fault seeds | 0..2 |"), "{md}");

    // Spreads: one training seed has none; two fault seeds have the sample sd.
    let (h1, t1) = csv_rows(&report_dir.join("table1_tasks.csv"));
    let sd1 = h1
        .iter()
        .position(|h| h == "sd (n-1)")
        .expect("Table 1 sd header");
    assert!(t1.iter().all(|r| r[sd1] == "n/a"), "{t1:?}");
    let (h2, t2) = csv_rows(&report_dir.join("table2_compression.csv"));
    let col = |name: &str| h2.iter().position(|h| h == name).unwrap();
    let (sd2, n2, faults) = (col("sd (n-1)"), col("seeds"), col("faults"));
    for r in &t2 {
        match r[faults].as_str() {
            "none" => assert_eq!((r[n2].as_str(), r[sd2].as_str()), ("1", "n/a")),
            _ => {
                assert_eq!(r[n2], "2");
                assert!(r[sd2].parse::<f64>().unwrap() >= 0.0, "{r:?}");
            }
        }
    }

    // Resume: every item comes from the cache (nothing in it is rewritten, no bundle is
    // retrained) and the tables are identical.
    let cache_before = listing(&out.join("cache"));
    let bundles_before = listing(&out.join("bundles"));
    let table1 = std::fs::read_to_string(report_dir.join("table1_tasks.csv")).unwrap();
    let table2 = std::fs::read_to_string(report_dir.join("table2_compression.csv")).unwrap();
    let (again, _) = report(&RunOptions {
        resume: true,
        ..opts
    });
    assert_eq!(again, first);
    assert_eq!(listing(&out.join("cache")), cache_before);
    assert_eq!(listing(&out.join("bundles")), bundles_before);
    for (f, before) in [
        ("table1_tasks.csv", table1),
        ("table2_compression.csv", table2),
    ] {
        assert_eq!(
            std::fs::read_to_string(report_dir.join(f)).unwrap(),
            before,
            "{f}"
        );
    }
}

fn load_err(path: &Path) -> String {
    chain(&Experiment::load(path).unwrap_err())
}

#[test]
fn invalid_experiment_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), METHODS, COMPRESS);
    let original = std::fs::read_to_string(&exp).unwrap();
    let broken = |from: &str, to: &str| {
        assert!(original.contains(from), "{from}");
        std::fs::write(&exp, original.replace(from, to)).unwrap();
        load_err(&exp)
    };
    let e = broken("epochs = 1", "epochs = \"one\"");
    assert!(e.contains("epochs"), "{e}");
    let e = broken("\"head\"]", "\"tail\"]");
    assert!(e.contains("tasks.methods"), "{e}");
    let e = broken("seeds = 2", "fault_seeds = 2");
    assert!(e.contains("fault_seeds"), "the old name is refused: {e}");
    let e = broken("seeds = 2", "seeds = 0");
    assert!(e.contains("compress") && e.contains("seeds"), "{e}");
    let e = broken("\"int8\",", "\"int12\",");
    assert!(e.contains("compress") && e.contains("int12"), "{e}");
    let e = broken("method = \"houlsby:4\"", "method = \"houlsby:8\"");
    assert!(e.contains("compress.method"), "{e}");
    std::fs::write(&exp, &original).unwrap();
    let full = experiment(
        dir.path(),
        r#"["houlsby:4", "full"]"#,
        &COMPRESS.replace("houlsby:4", "full"),
    );
    let e = load_err(&full);
    assert!(
        e.contains("compress.method") && e.contains("full fine-tuning"),
        "{e}"
    );
}

/// What identifies a point, in comparable form.
fn identity(points: &[Point]) -> Vec<String> {
    points
        .iter()
        .map(|p| {
            format!(
                "{} = {} | {} = {} | seed {} | recovery {} on {:?}",
                p.plan_text,
                p.plan,
                p.faults_text,
                p.faults,
                p.seed,
                p.recover_epochs,
                p.recover_train
            )
        })
        .collect()
}

#[test]
fn a_group_reads_the_same_in_a_sweep_file_and_in_an_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let keys = r#"formats = ["int8", "af8e3"]
sparsity = [0.0, 0.5]
encodings = ["dense", "bitmask"]
prune = "global"
plans = ["fp32"]
faults = ["none", "mlc:bpc=3", "mlc:bpc=2:mask=mlc"]
seeds = 2
first_seed = 4"#;
    let sweep_path = dir.path().join("sweep.toml");
    std::fs::write(
        &sweep_path,
        format!(
            "model = \"m\"\nbundles = [\"b.safetensors\"]\nout = \"o\"\n\n[[group]]\nname = \"compress\"\n{keys}\n"
        ),
    )
    .unwrap();
    let (from_sweep, _) = sweep::load_sweep_file(&sweep_path).unwrap();
    let exp = experiment(
        dir.path(),
        METHODS,
        &format!("method = \"houlsby:4\"\n{keys}"),
    );
    let (from_experiment, _) = Experiment::load(&exp).unwrap();
    let section = from_experiment.compress.unwrap();
    assert_eq!(section.groups, from_sweep.groups);
    let a = identity(&sweep::expand(&from_sweep.groups).unwrap());
    let b = identity(&sweep::expand(&section.groups).unwrap());
    assert_eq!(a, b);
    // fp32 + 2 formats x 2 sparsities x 2 encodings; none once, 2 seeds of mlc:bpc=3, and the
    // mask=mlc spec only on the 4 bit-mask plans.
    assert_eq!(a.len(), 9 * 3 + 4 * 2);
    assert!(
        a[1].contains("mlc:bpc=3 = ") && a[1].contains("seed 4 "),
        "{}",
        a[1]
    );

    // [[compress.group]] tables add groups after the section's own.
    let exp = experiment(
        dir.path(),
        METHODS,
        "method = \"houlsby:4\"\nplans = [\"int8\"]\n\n[[compress.group]]\nname = \"pruning\"\nformats = [\"fp32\"]\nsparsity = [0.5]",
    );
    let (e, _) = Experiment::load(&exp).unwrap();
    let names: Vec<&str> = e
        .compress
        .as_ref()
        .unwrap()
        .groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["compress", "pruning"]);
}

/// Trains one bundle of `task` on `model` with the experiment's own train stage.
fn trained(dir: &Path, methods: &str) -> Vec<TrainRecord> {
    let exp = experiment(dir, methods, COMPRESS);
    let (exp, _) = Experiment::load(&exp).unwrap();
    let cache = adalbert_experiment::Cache::new(dir.join("out/cache"), false).unwrap();
    let sha =
        adalbert_model::checkpoint::sha256_file(&dir.join("model/model.safetensors")).unwrap();
    adalbert_experiment::stages::train::items(&exp, &[])
        .iter()
        .filter(|i| i.task == "movie-polarity" && !i.method.starts_with("houlsby:2"))
        .map(|i| {
            adalbert_experiment::stages::train::run_item(
                &exp,
                i,
                &sha,
                &dir.join("out"),
                &cache,
                &[],
            )
            .unwrap()
        })
        .collect()
}

fn flags(model: &Path, bundles: Vec<PathBuf>, out: &Path) -> Flags {
    Flags {
        model: Some(model.to_path_buf()),
        bundles,
        plans: vec!["fp32".into(), "int4+prune=0.5+bitmask".into()],
        faults: vec!["none".into(), "mlc:bpc=3:sigma=2".into()],
        seeds: 2,
        first_seed: 5,
        max_len: 16,
        data: Some(data()),
        out: Some(out.to_path_buf()),
        ..Flags::default()
    }
}

#[test]
fn compress_refuses_full_and_foreign_bundles_and_trusts_only_sound_cache_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = trained(dir.path(), r#"["houlsby:4", "full"]"#);
    let bundle = |m: &str| {
        records
            .iter()
            .find(|r| r.method == m)
            .unwrap()
            .bundle
            .clone()
    };
    let model = dir.path().join("model");
    let out = dir.path().join("cmp");

    // The error of a sweep of `bundle` on `model`.
    let refused = |model: &Path, bundle: PathBuf| {
        let (s, r) = flags(model, vec![bundle], &out).into_sweep().unwrap();
        let err = sweep::run_sweep(&s, &r, false, Progress::Hidden).err();
        chain(&err.expect("the sweep is refused"))
    };
    let e = refused(&model, bundle("full"));
    assert!(e.contains("full fine-tuning"), "{e}");

    // Another backbone (same vocabulary, other weights) refuses the bundle by its sha256.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let fixture = root().join("crates/model/tests/fixtures/albert_groups");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), other.join(f)).unwrap();
    }
    std::fs::copy(model.join("vocab.txt"), other.join("vocab.txt")).unwrap();
    let e = refused(&other, bundle("houlsby:4"));
    assert!(e.contains("retrain"), "{e}");

    // Rows come point-major with their seeds; resume reads every row back.
    let (s, r) = flags(&model, vec![bundle("houlsby:4")], &out)
        .into_sweep()
        .unwrap();
    let first = sweep::run_sweep(&s, &r, false, Progress::Hidden)
        .unwrap()
        .rows;
    let seeds: Vec<u64> = first.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, [5, 5, 6, 5, 5, 6]);
    let (header, lines) = csv_rows(&r.csv);
    assert_eq!((header[0].as_str(), lines.len()), ("group", 6));
    let seconds = |rows: &[sweep::Row]| rows.iter().map(|r| r.seconds).collect::<Vec<_>>();
    let again = sweep::run_sweep(&s, &r, true, Progress::Hidden)
        .unwrap()
        .rows;
    // Read back through JSON: equal up to the last bit of a decimal round trip.
    for (a, b) in seconds(&again).iter().zip(seconds(&first)) {
        assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
    }

    // A corrupt record is recomputed (new timing, same result); the others are read back.
    let cache_dir = out.join("cache");
    let mut records: Vec<PathBuf> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("compress-")
        })
        .collect();
    records.sort();
    assert_eq!(records.len(), 6);
    let victim = &records[0];
    let text = std::fs::read_to_string(victim).unwrap();
    let victim_seconds: f64 = serde_json::from_str::<serde_json::Value>(&text).unwrap()["value"]
        ["seconds"]
        .as_f64()
        .unwrap();
    std::fs::write(victim, &text[..text.len() / 2]).unwrap();
    let healed = sweep::run_sweep(&s, &r, true, Progress::Hidden)
        .unwrap()
        .rows;
    let changed: Vec<usize> = (0..6)
        .filter(|&i| healed[i].seconds != again[i].seconds)
        .collect();
    assert_eq!(changed.len(), 1, "only the corrupt record is recomputed");
    assert_eq!(again[changed[0]].seconds, victim_seconds);
    assert_eq!(healed[changed[0]].value, again[changed[0]].value);
    assert!(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(victim).unwrap())
            .is_ok()
    );
}
