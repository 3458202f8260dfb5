//! A tiny experiment end to end through the real binary: tiny random ALBERT, tiny offline-suite
//! fixtures, one compression plan, one simulation. Every report file must exist, every CSV
//! row must appear verbatim in report.md, and `--resume` must reuse the finished items.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_model(dir: &Path) {
    let words = [
        "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great", "awful", "fun",
    ];
    adalbert_model::testing::write_tiny_albert(dir, &words).unwrap();
}

fn experiment(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    tiny_model(&model);
    let data = root().join("crates/tasks/tests/fixtures/assets");
    let text = format!(
        r#"
name = "tiny"
model = "{}"
data = "{}"
seeds = [3]
note = "tiny end-to-end test"

[train]
epochs = 1
batch = 8
max_len = 16

[tasks]
names = ["movie-polarity", "movie-rating"]
methods = ["houlsby:4", "head"]

[sweep]
tasks = ["movie-polarity"]
kind = "houlsby"
sizes = [2, 4]

[compress]
method = "houlsby:4"
plans = ["int8", "af6e3+prune=0.5+bitmask"]
faults = ["none", "mlc:bpc=3"]
fault_seeds = 2

[simulate]
models = ["albert-base"]
adapter = "houlsby:64"
plan = "edgebert8+prune=0.5:emb+bitmask"
bits_per_cell = 2
max_tasks = 2
"#,
        model.display(),
        data.display()
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Splits one CSV line, honouring double-quoted cells.
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

fn run(exp: &Path, out: &Path, resume: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adalbert"));
    cmd.arg("run").arg(exp).arg("--out").arg(out);
    if resume {
        cmd.arg("--resume");
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "adalbert run failed: {stderr}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn tiny_experiment_writes_a_consistent_report_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let out = dir.path().join("out");
    let stdout = run(&exp, &out, false);
    assert!(stdout.contains("Table 1 | movie-polarity"), "{stdout}");
    let report_dir = out.join("report");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
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
        let text = std::fs::read_to_string(report_dir.join(f)).unwrap();
        for line in text.lines().skip(1) {
            let md_row = format!("| {} |", csv_cells(line).join(" | "));
            assert!(md.contains(&md_row), "{f}: row not in report.md: {md_row}");
            rows += 1;
        }
    }
    // 2 tasks x 2 methods + 1 sweep size, 2 tasks x 2 plans x 2 fault specs, 2 N x 4 policies.
    assert!(rows >= 4 + 2 + 8 + 8, "only {rows} rows");
    assert!(md.contains("backbone sha256") && md.contains("git revision"));
    let t1 = std::fs::read_to_string(report_dir.join("table1_tasks.csv")).unwrap();
    let t2 = std::fs::read_to_string(report_dir.join("table2_compression.csv")).unwrap();
    // Resume: every item comes from the cache, the tables are identical.
    let again = run(&exp, &out, true);
    assert!(again.contains("report written"));
    assert_eq!(
        t1,
        std::fs::read_to_string(report_dir.join("table1_tasks.csv")).unwrap()
    );
    assert_eq!(
        t2,
        std::fs::read_to_string(report_dir.join("table2_compression.csv")).unwrap()
    );
}

#[test]
fn invalid_experiment_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = 1", "epochs = \"one\"");
    std::fs::write(&exp, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .arg("run")
        .arg(&exp)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("epochs"), "{err}");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("epochs = \"one\"", "epochs = 1")
        .replace("\"head\"]", "\"tail\"]");
    std::fs::write(&exp, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .arg("run")
        .arg(&exp)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("tasks.methods"),
        "{err}"
    );
}
