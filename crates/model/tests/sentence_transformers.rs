//! adalbert's sentence embeddings on the real all-MiniLM-L6-v2 equal sentence-transformers'
//! `SentenceTransformer(dir).encode(texts)` within 1e-5 (fixture: tools/parity/make_st_fixture.py).
//!
//! Variant `published` is assets/minilm as fetched (mean pooling, Normalize, max_seq_length
//! 256, with a text of 137 tokens and one of 315); the others swap only the
//! sentence-transformers files (other pooling modes in both config spellings, no Normalize,
//! other length limits) next to links to the same weights.

use std::path::{Path, PathBuf};

use adalbert_model::sentence::{embed, SentenceConfig};
use adalbert_model::tokenizer::TextInput;
use adalbert_model::Backbone;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    let dir = root().join("assets/minilm");
    assert!(
        dir.join("1_Pooling/config.json").is_file(),
        "{} lacks 1_Pooling/config.json: run scripts/fetch-assets (make test does this)",
        dir.display()
    );
    dir
}

/// A folder with links to every file of the model except its sentence-transformers files,
/// plus `files` (relative path -> JSON content).
fn variant_dir(model: &Path, files: &serde_json::Map<String, Value>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let skip = ["modules.json", "sentence_bert_config.json"];
        if entry.path().is_file() && !skip.contains(&name.to_str().unwrap()) {
            std::os::unix::fs::symlink(
                entry.path().canonicalize().unwrap(),
                tmp.path().join(&name),
            )
            .unwrap();
        }
    }
    for (rel, content) in files {
        let p = tmp.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, serde_json::to_string_pretty(content).unwrap()).unwrap();
    }
    tmp
}

#[test]
fn embeddings_match_sentence_transformers() {
    let model = model_dir();
    let path = root().join("crates/model/tests/fixtures/st_reference.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let texts: Vec<&str> = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let counts: Vec<u64> = fixture["token_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let (backbone, _) = Backbone::from_dir(&model).unwrap();
    let positions = backbone.config.shape.max_position_embeddings;
    let mut worst = Vec::new();
    for variant in fixture["variants"].as_array().unwrap() {
        let name = variant["name"].as_str().unwrap();
        let files = variant["files"].as_object().unwrap();
        let tmp = (!files.is_empty()).then(|| variant_dir(&model, files));
        let dir = tmp.as_ref().map_or(model.as_path(), |t| t.path());
        let cfg = SentenceConfig::from_dir(dir).unwrap();
        let max_len = cfg.max_len(128, positions);
        assert_eq!(
            max_len as u64,
            variant["max_seq_length"].as_u64().unwrap(),
            "{name}"
        );
        let tok = cfg.tokenizer(dir, max_len).unwrap();
        let which: Vec<usize> = variant["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        let inputs: Vec<TextInput> = which
            .iter()
            .map(|&i| TextInput::Single(texts[i].to_string()))
            .collect();
        let got = embed(&backbone, None, &tok, &inputs, &cfg, None).unwrap();
        for (k, &i) in which.iter().enumerate() {
            let used = counts[i].min(max_len as u64);
            assert_eq!(got.tokens[k] as u64, used, "{name}: tokens of text {i}");
            assert_eq!(
                got.truncated[k],
                counts[i] > max_len as u64,
                "{name}: text {i}"
            );
        }
        let want = variant["embeddings"].as_array().unwrap();
        assert_eq!(got.vectors.len(), want.len(), "{name}");
        let mut max_diff = 0f32;
        for (g, w) in got.vectors.iter().zip(want) {
            let w = w.as_array().unwrap();
            assert_eq!(g.len(), w.len(), "{name}: dimension");
            for (x, y) in g.iter().zip(w) {
                max_diff = max_diff.max((x - y.as_f64().unwrap() as f32).abs());
            }
        }
        eprintln!(
            "{name}: pooling {}, normalize {}, max_len {max_len}, max |diff| {max_diff:.2e}",
            cfg.pooling_name(),
            cfg.normalize
        );
        worst.push((name.to_string(), max_diff));
    }
    assert_eq!(worst.len(), 5);
    for (name, d) in worst {
        assert!(
            d < 1e-5,
            "{name}: max |ours - sentence-transformers| = {d:e}"
        );
    }
}

/// The published folder: unit vectors, 256 tokens; a folder without sentence-transformers
/// files keeps adalbert's earlier behaviour (mean, not normalized, the caller's limit).
#[test]
fn published_settings_and_the_plain_default() {
    let cfg = SentenceConfig::from_dir(&model_dir()).unwrap();
    assert_eq!((cfg.pooling_name().as_str(), cfg.normalize), ("mean", true));
    assert_eq!((cfg.max_seq_length, cfg.do_lower_case), (Some(256), false));
    let plain = root().join("crates/model/tests/fixtures/bert_noprefix_relu");
    let cfg = SentenceConfig::from_dir(&plain).unwrap();
    assert_eq!(cfg, SentenceConfig::default());
    assert_eq!(cfg.max_len(128, 64), 64);
}
