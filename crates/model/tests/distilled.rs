//! A student written by `adalbert distill` is a checkpoint Hugging Face transformers loads as
//! an `AlbertModel`, and adalbert computes on it what transformers computes.
//!
//! The fixture `tests/fixtures/albert_distilled/` was written by
//! `tools/distill/make_fixture.py`: the tiny `bert` teacher distilled for two steps by our
//! `adalbert distill` (E 8, one group applied 3 times) into `student/`, then loaded by
//! transformers' `AlbertModel.from_pretrained` (which reported no missing, unexpected or
//! mismatched key), whose state-dict keys (`expected_keys.json`), token ids and outputs
//! (`reference.*`) are committed beside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use adalbert_model::backbone::mean_pool;
use adalbert_model::tokenizer::{TextInput, Tokenizer};
use adalbert_model::{Backbone, Checkpoint, Ctx};
use candle_core::{Device, Tensor};

const TOL: f32 = 1e-4;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/albert_distilled")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn the_student_has_exactly_the_keys_albert_model_expects() {
    let dir = fixture();
    let expected: BTreeSet<String> = json(&dir.join("expected_keys.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let ck = Checkpoint::open(&dir.join("student/model.safetensors")).unwrap();
    let ours: BTreeSet<String> = ck.tensors().keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&ours).collect();
    let unexpected: Vec<_> = ours.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing {missing:?}, unexpected {unexpected:?}"
    );
    // transformers reported nothing missing, unexpected or mismatched when it wrote these.
    let info = &json(&dir.join("reference.json"))["loading_info"];
    for (kind, keys) in info.as_object().unwrap() {
        assert!(keys.as_array().unwrap().is_empty(), "{kind}: {keys}");
    }
    // A true ALBERT: factorized embedding, one shared group.
    let config = json(&dir.join("student/config.json"));
    assert_eq!(config["model_type"], "albert");
    assert!(config["embedding_size"].as_u64() < config["hidden_size"].as_u64());
    assert_eq!(config["num_hidden_groups"], 1);
}

#[test]
fn the_student_computes_what_transformers_computes() {
    let dir = fixture();
    let (backbone, _) = Backbone::from_dir(&dir.join("student")).unwrap();
    let reference =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let mask = &reference["attention_mask"];
    let out = backbone
        .forward(
            &reference["input_ids"],
            &reference["token_type_ids"],
            mask,
            None,
            &Ctx::eval(),
        )
        .unwrap();
    // Padded positions are compared too (transformers computes them the same way).
    let d = max_abs_diff(&out.last_hidden_state, &reference["last_hidden_state"]);
    assert!(d <= TOL, "last_hidden_state differs by {d}");
    let pooled = mean_pool(&out.last_hidden_state, mask).unwrap();
    let d = max_abs_diff(&pooled, &reference["mean_pooled"]);
    assert!(d <= TOL, "mean-pooled embedding differs by {d}");
}

#[test]
fn the_student_tokenizes_like_transformers() {
    let dir = fixture();
    let reference = json(&dir.join("reference.json"));
    let tok = Tokenizer::from_dir(&dir.join("student"), 16).unwrap();
    let sentences = reference["sentences"].as_array().unwrap();
    let want = reference["input_ids"].as_array().unwrap();
    assert_eq!(sentences.len(), want.len());
    for (s, ids) in sentences.iter().zip(want) {
        let text = s.as_str().unwrap().to_string();
        let b = tok.encode(&[TextInput::Single(text.clone())]).unwrap();
        let got: Vec<i64> = b
            .input_ids
            .to_dtype(candle_core::DType::I64)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<i64> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(got, want, "{text}");
    }
}
