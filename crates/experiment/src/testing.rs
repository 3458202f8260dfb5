//! The tiny study (`tests/fixtures/tiny.toml`): a tiny random ALBERT
//! ([`adalbert_model::testing`]) and the tiny offline-suite fixtures of the tasks crate. The
//! tests of this crate and of the CLI, the `tiny_study` example and `make test-slurm` all run
//! it; it takes seconds. Paths point into this source tree.

use std::path::{Path, PathBuf};

/// The words of the tiny model's vocabulary (the fixtures' sentences use them).
pub const WORDS: [&str; 12] = [
    "the", "a", "good", "bad", "film", "movie", "is", "was", "not", "great", "awful", "fun",
];

/// The tiny offline-suite fixtures.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/tests/fixtures/assets")
}

/// The tiny experiment file's text, on the model in `model`.
pub fn tiny_toml(model: &Path) -> String {
    let dse = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo-dse.toml");
    include_str!("../tests/fixtures/tiny.toml")
        .replace("MODEL", &model.display().to_string())
        .replace("DATA", &data_dir().display().to_string())
        .replace("DSE", &dse.display().to_string())
}

/// Writes the tiny ALBERT into `<dir>/model` (unless there) and the tiny experiment file into
/// `<dir>/tiny.toml`; returns the file's path.
pub fn write_tiny_study(dir: &Path) -> std::io::Result<PathBuf> {
    let model = dir.join("model");
    if !model.join("config.json").is_file() {
        adalbert_model::testing::write_tiny_albert(&model, &WORDS)?;
    }
    let path = dir.join("tiny.toml");
    std::fs::write(&path, tiny_toml(&model))?;
    Ok(path)
}
