//! Writing a Hugging Face ALBERT checkpoint directory: what `transformers`'
//! `AlbertModel.from_pretrained` and sentence-transformers load.
//!
//! The directory holds `config.json` (`model_type` "albert" with `embedding_size`,
//! `num_hidden_groups` and `inner_group_num`), `model.safetensors` with `AlbertModel`'s key
//! names (no `albert.` prefix, as a base model saves them), the tokenizer files of the model
//! it was made from, sentence-transformers' `modules.json`, `sentence_bert_config.json` and
//! `1_Pooling/config.json` (mean pooling, so [`crate::checkpoint::default_pooling`] and
//! sentence-transformers pool as the source model did), and any extra files the caller adds
//! (e.g. distillation's `distill.json`). The directory is written atomically as a whole
//! ([`adalbert_core::files::write_dir_atomic`]): a crash leaves the old directory or the
//! complete new one.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::{json, Value};

use crate::config::{EncoderConfig, Family};
use crate::error::{ModelError, Result};

/// Tokenizer files copied from the source model when present.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The `config.json` of an ALBERT with `config`'s shape; `pad_token_id` is copied from the
/// source model's config (`source_config`) when it has one.
pub fn albert_config_json(config: &EncoderConfig, source_config: Option<&Value>) -> Value {
    let s = &config.shape;
    let mut v = json!({
        "architectures": ["AlbertModel"],
        "model_type": "albert",
        "vocab_size": s.vocab_size,
        "embedding_size": s.embedding_size,
        "hidden_size": s.hidden_size,
        "num_hidden_layers": s.num_hidden_layers,
        "num_hidden_groups": s.num_hidden_groups,
        "inner_group_num": s.inner_group_num,
        "num_attention_heads": s.num_attention_heads,
        "intermediate_size": s.intermediate_size,
        "hidden_act": config.hidden_act.as_str(),
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "max_position_embeddings": s.max_position_embeddings,
        "type_vocab_size": s.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "initializer_range": 0.02,
        "classifier_dropout_prob": 0.1,
        "position_embedding_type": "absolute",
    });
    if let Some(pad) = source_config.and_then(|c| c.get("pad_token_id")) {
        v["pad_token_id"] = pad.clone();
    }
    v
}

/// Writes an ALBERT checkpoint directory at `out` (created if needed): `tensors` must be
/// exactly `config`'s checkpoint tensors with the pooler ([`adalbert_core::ModelShape::tensors`]);
/// tokenizer and sentence-transformers files come from `source_dir`; `extra` are further
/// `(file name, contents)` pairs.
pub fn write_albert_dir(
    out: &Path,
    config: &EncoderConfig,
    tensors: &HashMap<String, Tensor>,
    source_dir: &Path,
    extra: &[(&str, String)],
) -> Result<()> {
    if config.shape.family != Family::Albert {
        return Err(ModelError::Input(
            "only an ALBERT shape can be written as an ALBERT checkpoint".into(),
        ));
    }
    check_tensors(config, tensors, out)?;
    // The whole directory appears at once: a reader (or a resumed run) never finds a config
    // without its weights.
    adalbert_core::files::write_dir_atomic(out, |staged| {
        fill_albert_dir(staged, config, tensors, source_dir, extra)
    })
}

/// The files of [`write_albert_dir`], written into `out`.
fn fill_albert_dir(
    out: &Path,
    config: &EncoderConfig,
    tensors: &HashMap<String, Tensor>,
    source_dir: &Path,
    extra: &[(&str, String)],
) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(out.join("1_Pooling")).map_err(io(out))?;
    let source_config: Option<Value> = std::fs::read_to_string(source_dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let write = |name: &str, text: &str| -> Result<()> {
        adalbert_core::files::write_atomic(&out.join(name), text.as_bytes())?;
        Ok(())
    };
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    write(
        "config.json",
        &pretty(&albert_config_json(config, source_config.as_ref())),
    )?;
    crate::bundle::save_tensors(
        &out.join("model.safetensors"),
        tensors,
        HashMap::from([("format".to_string(), "pt".to_string())]),
    )?;
    for name in TOKENIZER_FILES {
        let from = source_dir.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(io(&from))?;
            adalbert_core::files::write_atomic(&out.join(name), &bytes)?;
        }
    }
    let max_seq_length = std::fs::read_to_string(source_dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("max_seq_length").cloned())
        .unwrap_or(json!(256));
    write(
        "sentence_bert_config.json",
        &pretty(&json!({"max_seq_length": max_seq_length, "do_lower_case": false})),
    )?;
    write(
        "modules.json",
        &pretty(&json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ])),
    )?;
    write(
        "1_Pooling/config.json",
        &pretty(&json!({
            "word_embedding_dimension": config.shape.hidden_size,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        })),
    )?;
    for (name, text) in extra {
        write(name, text)?;
    }
    Ok(())
}

/// `tensors` must hold exactly the checkpoint tensors of `config` (with the pooler), with
/// their shapes, so the directory loads with no missing or unexpected keys.
fn check_tensors(
    config: &EncoderConfig,
    tensors: &HashMap<String, Tensor>,
    out: &Path,
) -> Result<()> {
    let want = config.shape.tensors(true);
    for t in &want {
        match tensors.get(&t.name) {
            None => {
                return Err(ModelError::MissingTensor {
                    name: t.name.clone(),
                    expected: t.shape.clone(),
                    path: out.to_path_buf(),
                })
            }
            Some(x) if x.dims() != t.shape.as_slice() => {
                return Err(ModelError::WrongShape {
                    name: t.name.clone(),
                    expected: t.shape.clone(),
                    found: x.dims().to_vec(),
                    path: out.to_path_buf(),
                })
            }
            Some(_) => {}
        }
    }
    if tensors.len() != want.len() {
        let known: std::collections::HashSet<&str> = want.iter().map(|t| t.name.as_str()).collect();
        let extra: Vec<&String> = tensors
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .collect();
        return Err(ModelError::Input(format!(
            "tensors that an ALBERT checkpoint does not have: {extra:?}"
        )));
    }
    Ok(())
}
