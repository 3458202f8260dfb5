//! Model configurations: the HF `config.json` fields that decide tensor shapes, for ALBERT and
//! BERT as one architecture (BERT = ALBERT with one group per layer, E = H, no E->H projection).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{field_err, HwError, Result};

/// Built-in configs as (name, JSON), embedded so they are found from any directory.
pub const BUILTIN_MODELS: [(&str, &str); 3] = [
    (
        "albert-base",
        include_str!("../data/models/albert-base.json"),
    ),
    ("bert-base", include_str!("../data/models/bert-base.json")),
    ("minilm", include_str!("../data/models/minilm.json")),
];

/// ALBERT-style (shared groups, factorised embedding) or BERT-style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Albert,
    Bert,
}

/// The shape-deciding fields of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelConfig {
    pub name: String,
    pub model_type: ModelType,
    pub vocab_size: u64,
    pub embedding_size: u64,
    pub hidden_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub intermediate_size: u64,
    pub num_hidden_groups: u64,
    pub inner_group_num: u64,
    pub max_position_embeddings: u64,
    pub type_vocab_size: u64,
}

impl ModelConfig {
    /// A built-in name, a directory holding `config.json`, or a path to a config file.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if let Some((name, json)) = BUILTIN_MODELS.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_json_str(json, name, &format!("built-in model {name}"));
        }
        let path = Path::new(name_or_path);
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        if !file.exists() {
            return Err(HwError::Unknown {
                what: "model (built-in name, directory with config.json, or config file)",
                name: name_or_path.to_string(),
                known: BUILTIN_MODELS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let text = std::fs::read_to_string(&file).map_err(|source| HwError::Io {
            path: file.clone(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_json_str(&text, &name, &file.display().to_string())
    }

    /// Parse an HF config.json; `origin` names it in errors.
    pub fn from_json_str(text: &str, name: &str, origin: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| HwError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let model_type = match v.get("model_type").and_then(Value::as_str) {
            Some("albert") => ModelType::Albert,
            Some("bert") => ModelType::Bert,
            Some(other) => {
                return Err(field_err(
                    origin,
                    "model_type",
                    format!("\"albert\" or \"bert\", found \"{other}\""),
                ))
            }
            None => {
                return Err(field_err(
                    origin,
                    "model_type",
                    "a string \"albert\" or \"bert\" (field missing)",
                ))
            }
        };
        let get = |field: &str| -> Result<u64> {
            match v.get(field) {
                Some(x) => x.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    field_err(origin, field, format!("a positive integer, found {x}"))
                }),
                None => Err(field_err(
                    origin,
                    field,
                    "a positive integer (field missing)",
                )),
            }
        };
        let hidden_size = get("hidden_size")?;
        let num_hidden_layers = get("num_hidden_layers")?;
        let (embedding_size, num_hidden_groups, inner_group_num) = match model_type {
            ModelType::Albert => (
                get("embedding_size")?,
                get("num_hidden_groups")?,
                get("inner_group_num")?,
            ),
            ModelType::Bert => (hidden_size, num_hidden_layers, 1),
        };
        let cfg = ModelConfig {
            name: name.to_string(),
            model_type,
            vocab_size: get("vocab_size")?,
            embedding_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads: get("num_attention_heads")?,
            intermediate_size: get("intermediate_size")?,
            num_hidden_groups,
            inner_group_num,
            max_position_embeddings: get("max_position_embeddings")?,
            type_vocab_size: get("type_vocab_size")?,
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(field_err(
                origin,
                "num_attention_heads",
                "a divisor of hidden_size",
            ));
        }
        if !self
            .num_hidden_layers
            .is_multiple_of(self.num_hidden_groups)
        {
            return Err(field_err(
                origin,
                "num_hidden_groups",
                "a divisor of num_hidden_layers",
            ));
        }
        Ok(())
    }

    /// How many times each distinct layer of a group runs per inference.
    pub fn applications_per_group(&self) -> u64 {
        self.num_hidden_layers / self.num_hidden_groups
    }

    /// Transformer layer executions per inference.
    pub fn layer_executions(&self) -> u64 {
        self.num_hidden_layers * self.inner_group_num
    }

    /// Distinct (stored) transformer layers.
    pub fn distinct_layers(&self) -> u64 {
        self.num_hidden_groups * self.inner_group_num
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        let a = ModelConfig::resolve("albert-base").unwrap();
        assert_eq!(
            (
                a.embedding_size,
                a.num_hidden_groups,
                a.applications_per_group()
            ),
            (128, 1, 12)
        );
        let b = ModelConfig::resolve("bert-base").unwrap();
        assert_eq!(
            (b.embedding_size, b.num_hidden_groups, b.inner_group_num),
            (768, 12, 1)
        );
        let m = ModelConfig::resolve("minilm").unwrap();
        assert_eq!(
            (m.hidden_size, m.num_hidden_layers, m.intermediate_size),
            (384, 6, 1536)
        );
    }

    #[test]
    fn missing_field_is_named() {
        let json = r#"{"model_type": "albert", "vocab_size": 30000, "hidden_size": 768}"#;
        let err = ModelConfig::from_json_str(json, "x", "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cfg.json") && err.contains("num_hidden_layers"),
            "{err}"
        );
        let json = r#"{"model_type": "gpt2"}"#;
        let err = ModelConfig::from_json_str(json, "x", "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("model_type") && err.contains("gpt2"), "{err}");
    }

    #[test]
    fn a_directory_with_config_json_resolves() {
        let dir = std::env::temp_dir().join(format!("adalbert-hw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = BUILTIN_MODELS[2]
            .1
            .replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 3");
        std::fs::write(dir.join("config.json"), json).unwrap();
        let cfg = ModelConfig::resolve(dir.to_str().unwrap()).unwrap();
        assert_eq!(
            (cfg.model_type, cfg.num_hidden_layers, cfg.embedding_size),
            (ModelType::Bert, 3, 384)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_model_lists_builtins() {
        let err = ModelConfig::resolve("no-such-model")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("albert-base") && err.contains("minilm"),
            "{err}"
        );
    }
}
