//! Reference parity against Hugging Face transformers.
//!
//! Fixtures under `tests/fixtures/<model>/` were written by `tools/parity/make_fixtures.py`:
//! tiny randomly initialised models saved in HF format plus the reference outputs of the same
//! inputs. Every output must match within 1e-5.

use std::path::{Path, PathBuf};

use adalbert_model::nn::Linear;
use adalbert_model::{Backbone, Checkpoint, Ctx, EncoderConfig, Weights};
use candle_core::{Device, Tensor};

const TOL: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
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

fn check(name: &str, expect_logits: bool) {
    let dir = fixture(name);
    let config = EncoderConfig::from_path(&dir).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let backbone = Backbone::load(&ck, &config).unwrap();
    let reference =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let out = backbone
        .forward(
            &reference["input_ids"],
            &reference["token_type_ids"],
            &reference["attention_mask"],
            None,
            &Ctx::eval(),
        )
        .unwrap();
    let d = max_abs_diff(&out.last_hidden_state, &reference["last_hidden_state"]);
    assert!(d <= TOL, "{name}: last_hidden_state differs by {d}");
    let pooled = out.pooler_output.expect("fixture has a pooler");
    let d = max_abs_diff(&pooled, &reference["pooler_output"]);
    assert!(d <= TOL, "{name}: pooler_output differs by {d}");
    if expect_logits {
        let logits_ref = &reference["logits"];
        // The head of `AlbertForSequenceClassification` / `BertForSequenceClassification`.
        let head = Weights::new(&ck).pp("classifier");
        let classifier =
            Linear::load(head, config.shape.hidden_size, logits_ref.dims()[1]).unwrap();
        let logits = classifier.forward(&pooled, &Ctx::eval()).unwrap();
        let d = max_abs_diff(&logits, logits_ref);
        assert!(d <= TOL, "{name}: logits differ by {d}");
    }
}

#[test]
fn albert_one_shared_group_four_applications_factorized() {
    check("albert_shared", true);
}

#[test]
fn albert_two_groups_two_inner_layers() {
    check("albert_groups", true);
}

#[test]
fn bert_from_pytorch_bin_regression_head() {
    check("bert", true);
}

#[test]
fn bert_without_prefix_relu() {
    check("bert_noprefix_relu", false);
}

#[test]
fn wrong_shape_names_tensor_and_file() {
    let dir = fixture("albert_shared");
    let mut config = EncoderConfig::from_path(&dir).unwrap();
    config.shape.intermediate_size += 1;
    let ck = Checkpoint::open(&dir).unwrap();
    let err = Backbone::load(&ck, &config).err().unwrap().to_string();
    assert!(
        err.contains("ffn.weight") && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn out_of_range_ids_and_long_inputs_are_errors() {
    let dir = fixture("albert_shared");
    let config = EncoderConfig::from_path(&dir).unwrap();
    let backbone = Backbone::load(&Checkpoint::open(&dir).unwrap(), &config).unwrap();
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[1i64, config.shape.vocab_size as i64]], &dev).unwrap();
    let types = ids.zeros_like().unwrap();
    let mask = ids.ones_like().unwrap();
    let e = backbone
        .forward(&ids, &types, &mask, None, &Ctx::eval())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("token id out of range"), "{e}");
    let long = Tensor::ones(
        (1, config.shape.max_position_embeddings + 1),
        candle_core::DType::I64,
        &dev,
    )
    .unwrap();
    let e = backbone
        .forward(
            &long,
            &long.zeros_like().unwrap(),
            &long,
            None,
            &Ctx::eval(),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("max_position_embeddings"), "{e}");
}

/// Loading reads exactly the tensors the shared shape arithmetic (storage, simulator) counts:
/// a tiny ALBERT with two groups of two layers and E != H, and a tiny BERT.
#[test]
fn a_loaded_backbone_reads_exactly_the_shapes_tensors() {
    for name in ["albert_groups", "bert"] {
        let dir = fixture(name);
        let config = EncoderConfig::from_path(&dir).unwrap();
        let ck = Checkpoint::open(&dir).unwrap();
        let vb = Weights::new(&ck);
        let backbone = Backbone::from_weights(&vb, &config).unwrap();
        let want: std::collections::BTreeSet<String> = config
            .shape
            .tensors(backbone.pooler.is_some())
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(vb.names_read(), want, "{name}");
    }
    let albert = EncoderConfig::from_path(&fixture("albert_groups"))
        .unwrap()
        .shape;
    assert!(albert.num_hidden_groups == 2 && albert.inner_group_num == 2);
    assert_ne!(albert.embedding_size, albert.hidden_size);
}
