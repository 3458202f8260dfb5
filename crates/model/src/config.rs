//! The encoder configuration, read from a Hugging Face `config.json`.
//!
//! ALBERT and BERT are one architecture here: BERT is ALBERT with one layer group per layer,
//! E = H, no E->H projection and erf GELU. [`EncoderConfig`] is the shape ([`ModelShape`],
//! shared with the storage arithmetic and the simulator) plus what only running the model
//! needs: activation, LayerNorm epsilon, dropout and label names.

use std::path::Path;

use serde_json::Value;

pub use adalbert_core::{Activation, Family, ModelShape};

use crate::error::{ModelError, Result};

/// The generalized ALBERT/BERT encoder configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EncoderConfig {
    /// The shape-deciding fields (sizes, groups, family).
    #[serde(flatten)]
    pub shape: ModelShape,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    /// Label names of a sequence-classification checkpoint, in id order (may be empty).
    pub labels: Vec<String>,
}

impl EncoderConfig {
    /// Reads `config.json` from a checkpoint directory or a file path.
    pub fn from_path(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ModelError::Io {
            path: file.clone(),
            source,
        })?;
        Self::from_json(&text, &file)
    }

    /// Parses the JSON text of a Hugging Face config; `source` only names it in errors.
    pub fn from_json(text: &str, source: &Path) -> Result<Self> {
        let err = |reason: String| ModelError::Config {
            path: source.to_path_buf(),
            reason,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("expected a JSON object".into()))?;
        let shape = ModelShape::from_object(obj, &source.display().to_string())?;
        if let Some(p) = obj.get("position_embedding_type").and_then(Value::as_str) {
            if p != "absolute" {
                return Err(err(format!(
                    "position_embedding_type `{p}` is not supported (only \"absolute\")"
                )));
            }
        }
        let opt_f64 = |key: &str, default: f64| -> Result<f64> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(f) => f
                    .as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        err(format!(
                            "field `{key}` must be a non-negative number, found {f}"
                        ))
                    }),
            }
        };
        let act_name =
            obj.get("hidden_act")
                .and_then(Value::as_str)
                .unwrap_or(match shape.family {
                    Family::Albert => "gelu_new",
                    Family::Bert => "gelu",
                });
        let hidden_act = Activation::parse(act_name).ok_or_else(|| {
            err(format!(
                "unsupported hidden_act `{act_name}`: expected gelu_new, gelu_pytorch_tanh, gelu or relu"
            ))
        })?;
        Ok(Self {
            shape,
            hidden_act,
            layer_norm_eps: opt_f64("layer_norm_eps", 1e-12)?,
            hidden_dropout_prob: opt_f64("hidden_dropout_prob", 0.0)?,
            attention_probs_dropout_prob: opt_f64("attention_probs_dropout_prob", 0.0)?,
            labels: read_labels(obj).map_err(err)?,
        })
    }

    /// albert-base-v2, for arithmetic without weights.
    pub fn albert_base() -> Self {
        Self::builtin("albert-base", Activation::GeluNew, 0.0)
    }

    /// bert-base-uncased.
    pub fn bert_base() -> Self {
        Self::builtin("bert-base", Activation::Gelu, 0.1)
    }

    fn builtin(name: &str, hidden_act: Activation, dropout: f64) -> Self {
        Self {
            shape: ModelShape::builtin(name).unwrap_or_else(|| unreachable!("built-in {name}")),
            hidden_act,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: dropout,
            labels: vec![],
        }
    }
}

fn read_labels(obj: &serde_json::Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let Some(map) = obj.get("id2label").and_then(Value::as_object) else {
        return Ok(vec![]);
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (k, v) in map {
        let id: usize = k
            .parse()
            .map_err(|_| format!("id2label key `{k}` is not an integer"))?;
        let name = v
            .as_str()
            .ok_or_else(|| format!("id2label[{k}] is not a string"))?;
        pairs.push((id, name.to_string()));
    }
    pairs.sort();
    if pairs.iter().enumerate().any(|(i, (id, _))| *id != i) {
        return Err("id2label ids must be 0..n without gaps".into());
    }
    Ok(pairs.into_iter().map(|(_, n)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EncoderConfig> {
        EncoderConfig::from_json(text, Path::new("config.json"))
    }

    #[test]
    fn bert_maps_to_one_group_per_layer() {
        let c = parse(
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":3,
            "num_attention_heads":2,"intermediate_size":16}"#,
        )
        .unwrap();
        assert_eq!(c.shape.embedding_size, 8);
        assert_eq!(c.shape.num_hidden_groups, 3);
        assert_eq!(c.hidden_act, Activation::Gelu);
        assert!(!c.shape.has_projection());
    }

    #[test]
    fn malformed_configs_name_the_problem() {
        let e = parse("{").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        let e = parse(r#"{"model_type":"gpt2"}"#).unwrap_err().to_string();
        assert!(e.contains("gpt2"), "{e}");
        let e = parse(r#"{"model_type":"albert","hidden_size":8}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_hidden_layers"), "{e}");
        let e = parse(
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":9,"num_hidden_layers":3,
            "num_attention_heads":2,"intermediate_size":16}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("num_attention_heads") && e.contains("divisor"),
            "{e}"
        );
        let e = parse(
            r#"{"model_type":"bert","vocab_size":-1,"hidden_size":8,"num_hidden_layers":3,
            "num_attention_heads":2,"intermediate_size":16}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("vocab_size"), "{e}");
    }
}
