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
