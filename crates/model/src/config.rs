//! The encoder configuration, read from a Hugging Face `config.json`.
//!
//! ALBERT and BERT are one architecture here (REFERENCE §2): BERT is ALBERT with one layer group
//! per layer, E = H, no E->H projection and erf GELU. [`EncoderConfig`] holds the generalized
//! form; [`Family`] only decides the checkpoint's tensor names.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// Which checkpoint layout (tensor names) the weights follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Albert,
    Bert,
}

/// Hidden activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`), ALBERT's default.
    GeluNew,
    /// exact erf form (`gelu`), BERT's default.
    Gelu,
    Relu,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluNew),
            "gelu" => Some(Self::Gelu),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }
}

/// The generalized ALBERT/BERT encoder configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EncoderConfig {
    pub family: Family,
    pub vocab_size: usize,
    /// E: width of the (factorized) embeddings. Equals `hidden_size` for BERT.
    pub embedding_size: usize,
    pub hidden_size: usize,
    /// Number of layer applications (ALBERT re-applies shared groups).
    pub num_hidden_layers: usize,
    pub num_hidden_groups: usize,
    pub inner_group_num: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
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
        let usize_field = |key: &str| -> Result<usize> {
            let f = obj
                .get(key)
                .ok_or_else(|| err(format!("missing field `{key}` (a positive integer)")))?;
            match f.as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(err(format!(
                    "field `{key}` must be a positive integer, found {f}"
                ))),
            }
        };
        let opt_usize = |key: &str, default: usize| -> Result<usize> {
            if obj.contains_key(key) {
                usize_field(key)
            } else {
                Ok(default)
            }
        };
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
        let model_type = obj
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing field `model_type` (\"albert\" or \"bert\")".into()))?;
        let family = match model_type {
            "albert" => Family::Albert,
            "bert" => Family::Bert,
            other => {
                return Err(err(format!(
                    "unsupported model_type `{other}`: expected \"albert\" or \"bert\""
                )))
            }
        };
        if let Some(p) = obj.get("position_embedding_type").and_then(Value::as_str) {
            if p != "absolute" {
                return Err(err(format!(
                    "position_embedding_type `{p}` is not supported (only \"absolute\")"
                )));
            }
        }
        let hidden_size = usize_field("hidden_size")?;
        let num_hidden_layers = usize_field("num_hidden_layers")?;
        let (embedding_size, num_hidden_groups, inner_group_num) = match family {
            Family::Albert => (
                opt_usize("embedding_size", 128)?,
                opt_usize("num_hidden_groups", 1)?,
                opt_usize("inner_group_num", 1)?,
            ),
            Family::Bert => (hidden_size, num_hidden_layers, 1),
        };
        let num_attention_heads = usize_field("num_attention_heads")?;
        if hidden_size % num_attention_heads != 0 {
            return Err(err(format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            )));
        }
        if num_hidden_layers % num_hidden_groups != 0 {
            return Err(err(format!(
                "num_hidden_layers {num_hidden_layers} is not a multiple of num_hidden_groups {num_hidden_groups}"
            )));
        }
        let act_name = obj
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or(match family {
                Family::Albert => "gelu_new",
                Family::Bert => "gelu",
            });
        let hidden_act = Activation::parse(act_name).ok_or_else(|| {
            err(format!(
                "unsupported hidden_act `{act_name}`: expected gelu_new, gelu_pytorch_tanh, gelu or relu"
            ))
        })?;
        Ok(Self {
            family,
            vocab_size: usize_field("vocab_size")?,
            embedding_size,
            hidden_size,
            num_hidden_layers,
            num_hidden_groups,
            inner_group_num,
            num_attention_heads,
            intermediate_size: usize_field("intermediate_size")?,
            hidden_act,
            max_position_embeddings: opt_usize("max_position_embeddings", 512)?,
            type_vocab_size: opt_usize("type_vocab_size", 2)?,
            layer_norm_eps: opt_f64("layer_norm_eps", 1e-12)?,
            hidden_dropout_prob: opt_f64("hidden_dropout_prob", 0.0)?,
            attention_probs_dropout_prob: opt_f64("attention_probs_dropout_prob", 0.0)?,
            labels: read_labels(obj).map_err(err)?,
        })
    }

    /// Built-in albert-base-v2 configuration (REFERENCE §2), for arithmetic without weights.
    pub fn albert_base() -> Self {
        Self {
            family: Family::Albert,
            vocab_size: 30000,
            embedding_size: 128,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_hidden_groups: 1,
            inner_group_num: 1,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::GeluNew,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            labels: vec![],
        }
    }

    /// Built-in bert-base-uncased configuration.
    pub fn bert_base() -> Self {
        Self {
            family: Family::Bert,
            vocab_size: 30522,
            embedding_size: 768,
            num_hidden_groups: 12,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            ..Self::albert_base()
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Layer applications per group: HF maps application `i` to group `i / (layers / groups)`.
    pub fn layers_per_group(&self) -> usize {
        self.num_hidden_layers / self.num_hidden_groups
    }

    /// Whether the checkpoint has an E->H projection (every ALBERT has one, BERT none).
    pub fn has_projection(&self) -> bool {
        self.family == Family::Albert
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
        assert_eq!(c.embedding_size, 8);
        assert_eq!(c.num_hidden_groups, 3);
        assert_eq!(c.hidden_act, Activation::Gelu);
        assert!(!c.has_projection());
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
        assert!(e.contains("multiple of num_attention_heads"), "{e}");
        let e = parse(
            r#"{"model_type":"bert","vocab_size":-1,"hidden_size":8,"num_hidden_layers":3,
            "num_attention_heads":2,"intermediate_size":16}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("vocab_size"), "{e}");
    }
}
