//! `adalbert run` end to end through the real binary: tiny random ALBERT, tiny offline-suite
//! fixtures, two compression plans, one simulation. The binary prints the headline rows and the
//! report path, `--resume` reuses the finished items, `--check` only validates, and an invalid
//! file is an error naming the key. (The report's contents are tested in the experiment crate.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The experiment crate's tiny experiment, on a tiny random ALBERT written into `dir`.
fn experiment(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    let words = [
        "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great", "awful", "fun",
    ];
    adalbert_model::testing::write_tiny_albert(&model, &words).unwrap();
    let data = root().join("crates/tasks/tests/fixtures/assets");
    let template =
        std::fs::read_to_string(root().join("crates/experiment/tests/fixtures/tiny.toml")).unwrap();
    let text = template
        .replace("MODEL", &model.display().to_string())
        .replace("DATA", &data.display().to_string());
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
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
        "  (5/5) movie-polarity / houlsby:2 / seed 3",
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
            "max_tasks = 2",
            format!("max_tasks = 2\ndse_space = \"{}\"", space.display()),
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
