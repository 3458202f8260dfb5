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
