//! `adalbert run` end to end through the real binary: tiny random ALBERT, tiny offline-suite
//! fixtures, two compression plans, one simulation. The binary prints the headline rows and the
//! report path, `--resume` reuses the finished items, `--check` only validates, and an invalid
//! file is an error naming the key. Shards run as separate processes on different thread
//! counts and merge into the report of one process; bad shard values, an early merge and a
//! foreign output folder are errors with exit code 1. (The report's contents are tested in
//! the experiment crate.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use adalbert_experiment::report::compare::differences;

/// The experiment crate's tiny experiment, on a tiny random ALBERT written into `dir`.
fn experiment(dir: &Path) -> PathBuf {
    adalbert_experiment::testing::write_tiny_study(dir).unwrap()
}

fn adalbert(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .args(args)
        .output()
        .unwrap()
}

/// stdout and stderr of a successful command.
fn outputs(o: Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "adalbert failed: {stderr}");
    (String::from_utf8_lossy(&o.stdout).into_owned(), stderr)
}

#[test]
fn run_prints_the_headlines_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let out = dir.path().join("out");
    let run = |resume: bool| {
        let mut args = vec![Path::new("run"), &exp, Path::new("--out"), &out];
        if resume {
            args.push(Path::new("--resume"));
        }
        outputs(adalbert(&args))
    };
    let (first, progress) = run(false);
    for line in [
        "[1/4] train: 5 item(s)",
        "  (5/5) model / movie-polarity / houlsby:2 / lr 0.001 / seed 3",
        "[2/4] compress and faults",
        "  plan af6e3+prune=0.5+bitmask | faults mlc:bpc=3 | seed 1",
        "[4/4] report",
    ] {
        assert!(progress.contains(line), "{line}: {progress}");
    }
    for head in [
        "Table 1 | movie-polarity: houlsby:4 accuracy ",
        "Table 2 | plan int8 faults mlc:bpc=3: mean metric over tasks ",
        "Table 3 | albert-base N=2: adapter-hetero vs albert-dram ",
    ] {
        assert!(first.contains(head), "{head}: {first}");
    }
    let report = out.join("report/report.md");
    assert!(first.ends_with(&format!("report written to {}\n", report.display())));
    assert!(report.is_file());
    let (again, progress) = run(true);
    assert_eq!(again, first, "a resumed run prints the same rows");
    assert!(
        !progress.contains("  plan "),
        "nothing is recomputed: {progress}"
    );
    let (check, _) = outputs(adalbert(&[Path::new("run"), &exp, Path::new("--check")]));
    assert!(check.contains("is valid: 5 training item(s)"), "{check}");
}

#[test]
fn invalid_experiment_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let original = std::fs::read_to_string(&exp).unwrap();
    for (from, to, key) in [
        ("epochs = 1", "epochs = \"one\"", "epochs"),
        ("\"head\"]", "\"tail\"]", "tasks.methods"),
        ("seeds = 2", "fault_seeds = 2", "fault_seeds"),
    ] {
        std::fs::write(&exp, original.replace(from, to)).unwrap();
        let o = adalbert(&[Path::new("run"), &exp]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(key), "{key}: {err}");
    }
}

/// `run --check` validates every value a run will use, and a run refuses them before its
/// first stage (no "[1/4]" line, no output folder).
#[test]
fn check_and_run_refuse_every_bad_value_before_the_first_stage() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let original = std::fs::read_to_string(&exp).unwrap();
    let space = dir.path().join("no-such-space.toml");
    let dse_line = original
        .lines()
        .find(|l| l.starts_with("dse_space"))
        .expect("the tiny study names a design space");
    let cases: Vec<(&str, String, &str)> = vec![
        ("batch = 8", "batch = 0".into(), "train.batch"),
        ("epochs = 1", "epochs = 0".into(), "train.epochs"),
        (
            "max_len = 16",
            "max_len = 16\nlr_adapter = -0.001".into(),
            "train.lr_adapter",
        ),
        (
            "max_len = 16",
            "max_len = 16\nlr_head = nan".into(),
            "train.lr_head",
        ),
        ("max_len = 16", "max_len = 100".into(), "train.max_len"),
        (
            "max_len = 16",
            "max_len = 16\nmax_eval = 0".into(),
            "train.max_eval",
        ),
        (
            "models = [\"albert-base\"]",
            "models = [\"albert-huge\"]".into(),
            "simulate.models",
        ),
        (
            "max_tasks = 2",
            "max_tasks = 2\nseq_len = 100000".into(),
            "simulate.seq_len",
        ),
        (
            dse_line,
            format!("dse_space = \"{}\"", space.display()),
            "no-such-space.toml",
        ),
        (
            "seeds = 2",
            "seeds = 2\nmax_eval = 0".into(),
            "compress.max_eval",
        ),
    ];
    for (from, to, key) in &cases {
        assert!(original.contains(from), "{from}");
        std::fs::write(&exp, original.replacen(from, to, 1)).unwrap();
        let check = adalbert(&[Path::new("run"), &exp, Path::new("--check")]);
        let err = String::from_utf8_lossy(&check.stderr);
        assert_eq!(check.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        let out = dir.path().join("out");
        let run = adalbert(&[Path::new("run"), &exp, Path::new("--out"), &out]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(key) && !err.contains("[1/4]"), "{key}: {err}");
        assert!(
            !out.exists(),
            "{key}: a refused run wrote {}",
            out.display()
        );
    }
}

/// `adalbert run` with `args`, with `RAYON_NUM_THREADS` set when given.
fn adalbert_threads(args: &[&str], threads: Option<usize>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adalbert"));
    c.args(args);
    if let Some(n) = threads {
        c.env("RAYON_NUM_THREADS", n.to_string());
    }
    c.output().unwrap()
}

/// stderr of a command that must fail with exit code 1.
fn refused(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    err
}

#[test]
fn shards_in_separate_processes_merge_into_the_report_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let exp = exp.to_str().unwrap();
    let single = dir.path().join("single");
    let sharded = dir.path().join("sharded");
    let (single, sharded) = (single.to_str().unwrap(), sharded.to_str().unwrap());
    outputs(adalbert_threads(&["run", exp, "--out", single], None));

    // The plan, as JSON: every item once, each in one shard.
    let (json, _) = outputs(adalbert_threads(
        &["run", exp, "--out", sharded, "--list-items", "--json"],
        None,
    ));
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["total_items"], 19);
    assert_eq!(plan["items"].as_array().unwrap().len(), 19);
    assert!(plan["items"][0]["estimated_cpu_s"].as_f64().unwrap() > 0.0);

    // Each shard in its own process, on 1, 2 and 3 threads.
    for (i, threads) in [(1, 1), (2, 2), (3, 3)] {
        let s = format!("{i}/3");
        let (text, _) = outputs(adalbert_threads(
            &["run", exp, "--out", sharded, "--list-items", "--shard", &s],
            None,
        ));
        assert!(text.contains(&format!("shard {s}: ")), "{text}");
        if i == 3 {
            // Before the last shard: the merge names it, with exit code 1.
            let err = refused(adalbert_threads(
                &["run", exp, "--out", sharded, "--merge"],
                None,
            ));
            assert!(
                err.contains("shard 3/3: ") && err.contains("--merge again"),
                "{err}"
            );
        }
        let (done, progress) = outputs(adalbert_threads(
            &["run", exp, "--out", sharded, "--shard", &s],
            Some(threads),
        ));
        assert!(
            progress.contains(&format!("shard {s} of experiment `tiny`")),
            "{progress}"
        );
        assert!(done.contains(&format!("shard {s} done: ")), "{done}");
        assert!(done.contains(" --merge"), "{done}");
    }
    let (merged, _) = outputs(adalbert_threads(
        &["run", exp, "--out", sharded, "--merge"],
        None,
    ));
    let report = Path::new(sharded).join("report");
    assert!(merged.ends_with(&format!(
        "report written to {}\n",
        report.join("report.md").display()
    )));
    assert_eq!(
        differences(&Path::new(single).join("report"), &report).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn bad_shards_early_merges_and_foreign_folders_exit_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let exp = exp.to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (bad, says) in [
        ("0/3", "numbered from 1"),
        ("4/3", "1..=3"),
        ("1/0", "at least 1"),
        ("a/b", "expected I/N"),
    ] {
        for extra in [&[][..], &["--list-items"][..]] {
            let mut args = vec!["run", exp, "--out", out, "--shard", bad];
            args.extend(extra);
            let err = refused(adalbert_threads(&args, None));
            assert!(
                err.contains(&format!("--shard {bad}: ")) && err.contains(says),
                "{err}"
            );
        }
    }
    let err = refused(adalbert_threads(
        &["run", exp, "--out", out, "--merge"],
        None,
    ));
    assert!(
        err.contains("19 of 19 items") && err.contains("--resume"),
        "{err}"
    );

    outputs(adalbert_threads(
        &["run", exp, "--out", out, "--shard", "1/2"],
        None,
    ));
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string(exp).unwrap();
    std::fs::write(&other, text.replace("name = \"tiny\"", "name = \"other\"")).unwrap();
    let other = other.to_str().unwrap();
    for mode in ["--merge", "--resume"] {
        let err = refused(adalbert_threads(&["run", other, "--out", out, mode], None));
        assert!(
            err.contains(&format!("{out}/plan.json")) && err.contains("experiment `tiny`"),
            "{err}"
        );
    }
}
