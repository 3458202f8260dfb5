//! Test support for the workspace's crates (behind the `testing` feature, which their
//! dev-dependencies enable): a tiny ALBERT model directory (the committed
//! `albert_shared` parity fixture: vocab 99, H 32, one shared layer applied 4 times, E 16) with a
//! WordPiece vocabulary, so training, serving and pipeline tests can tokenize text, and the tiny
//! BERT (the `bert` fixture) with the same kind of vocabulary, a teacher for distillation tests.

use std::path::Path;

/// Copies the tiny ALBERT into `dir` and writes a 99-token `vocab.txt`: the special tokens, then
/// `words`, then filler tokens `w<N>`.
pub fn write_tiny_albert(dir: &Path, words: &[&str]) -> std::io::Result<()> {
    write_tiny(dir, "albert_shared", words)
}

/// Copies the tiny BERT (the committed `bert` parity fixture: vocab 99, H 32, 3 layers) into
/// `dir` with the same `vocab.txt` as [`write_tiny_albert`]: a second backbone for tests of
/// studies on a BERT and an ALBERT, and a teacher for distillation tests.
pub fn write_tiny_bert(dir: &Path, words: &[&str]) -> std::io::Result<()> {
    write_tiny(dir, "bert", words)
}

fn write_tiny(dir: &Path, fixture: &str, words: &[&str]) -> std::io::Result<()> {
    let fixture = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(fixture);
    std::fs::create_dir_all(dir)?;
    std::fs::copy(fixture.join("config.json"), dir.join("config.json"))?;
    // The weights file the fixture has (the BERT's is a PyTorch pickle).
    for f in ["model.safetensors", "pytorch_model.bin"] {
        if fixture.join(f).is_file() {
            std::fs::copy(fixture.join(f), dir.join(f))?;
        }
    }
    write_vocab(dir, words)
}

/// The 99-token WordPiece `vocab.txt`: the special tokens, then `words`, then `w<N>` fillers.
fn write_vocab(dir: &Path, words: &[&str]) -> std::io::Result<()> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    vocab.extend(words.iter().map(|w| w.to_string()));
    while vocab.len() < 99 {
        vocab.push(format!("w{}", vocab.len()));
    }
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n"))
}
