//! Helpers shared by the CLI's integration tests: run the built binary, insist on success.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (fixtures and configs are named from there).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `adalbert ARGS` to completion (no backtraces, so stderr is the user's message).
pub fn adalbert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adalbert"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The stdout of a run that must have succeeded (its stderr is the failure message).
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Trains a tiny bundle of `task` (an offline-suite task of the test fixture data), spelling
/// the flags of `extra` as given (old or new names).
pub fn train_tiny(model: &Path, task: &str, out: &Path, extra: &[&str]) {
    let data = root().join("crates/tasks/tests/fixtures/assets");
    let mut a = vec![
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--task",
        task,
        "--adapter",
        "houlsby:2",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--max-len",
        "16",
        "--max-train",
        "32",
        "--max-eval",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    a.extend_from_slice(extra);
    // Mean pooling, the tiny models have no trained pooler; `extra` may choose another.
    if !extra.contains(&"--pooling") {
        a.extend(["--pooling", "mean"]);
    }
    ok(adalbert(&a));
}
