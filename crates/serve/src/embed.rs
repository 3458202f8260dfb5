//! Sentence embeddings the way the model was published: its sentence-transformers pooling
//! (`1_Pooling/config.json`: mean or CLS) and normalization (a `Normalize` module in
//! `modules.json`), over the bare backbone or with one task's adapters.

use std::path::Path;

use adalbert_model::backbone::{cls_pool, mean_pool};
use adalbert_model::tokenizer::TextInput;
use adalbert_model::{Ctx, LoadedTask, ModelError, MultiTask};
use serde_json::Value;

use crate::error::ServeError;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingPooling {
    Mean,
    Cls,
}

/// The sentence-embedding recipe of a model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingConfig {
    pub pooling: EmbeddingPooling,
    /// Scale each vector to unit L2 length.
    pub normalize: bool,
}

impl Default for EmbeddingConfig {
    /// Mean pooling without normalization: sentence-transformers' default for a plain encoder.
    fn default() -> Self {
        Self {
            pooling: EmbeddingPooling::Mean,
            normalize: false,
        }
    }
}

impl EmbeddingConfig {
    /// Reads `modules.json` and its pooling module's `config.json`; a directory without them
    /// gets the default. A file that exists but is malformed is an error naming it.
    pub fn from_dir(dir: &Path) -> Result<Self, ServeError> {
        let read = |path: &Path| -> Result<Value, ServeError> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServeError::Config(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| ServeError::Config(format!("malformed {}: {e}", path.display())))
        };
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(Self::default());
        }
        let modules = read(&modules_path)?;
        let modules = modules.as_array().cloned().unwrap_or_default();
        let kind = |m: &Value| m["type"].as_str().unwrap_or("").to_string();
        let normalize = modules.iter().any(|m| kind(m).ends_with(".Normalize"));
        let mut pooling = EmbeddingPooling::Mean;
        if let Some(m) = modules.iter().find(|m| kind(m).ends_with(".Pooling")) {
            let sub = m["path"].as_str().unwrap_or("1_Pooling");
            let cfg_path = dir.join(sub).join("config.json");
            if cfg_path.is_file() {
                let cfg = read(&cfg_path)?;
                if cfg["pooling_mode_cls_token"].as_bool() == Some(true) {
                    pooling = EmbeddingPooling::Cls;
                } else if cfg["pooling_mode_mean_tokens"].as_bool() == Some(false) {
                    return Err(ServeError::Config(format!(
                        "{}: only mean and CLS pooling are supported",
                        cfg_path.display()
                    )));
                }
            }
        }
        Ok(Self { pooling, normalize })
    }
}

/// Vectors and the tokens each input used.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<usize>,
    pub truncated: Vec<bool>,
}

/// One encoder pass over `inputs` (the bare backbone, or `task`'s adapters on it), pooled
/// and normalized as `cfg` says (`normalize` overrides the model's normalization).
pub fn embed(
    mt: &MultiTask,
    task: Option<&LoadedTask>,
    inputs: &[TextInput],
    cfg: EmbeddingConfig,
    normalize: Option<bool>,
) -> Result<Embedded, ModelError> {
    let batch = mt.tokenizer.encode(inputs)?;
    let backbone = task
        .and_then(|t| t.own_backbone.as_ref())
        .unwrap_or(&mt.backbone);
    let params = task.filter(|t| t.own_backbone.is_none()).map(|t| &t.params);
    let out = backbone.forward(
        &batch.input_ids,
        &batch.token_type_ids,
        &batch.attention_mask,
        params,
        &Ctx::eval(),
    )?;
    let pooled = match cfg.pooling {
        EmbeddingPooling::Mean => mean_pool(&out.last_hidden_state, &batch.attention_mask)?,
        EmbeddingPooling::Cls => cls_pool(&out.last_hidden_state)?,
    };
    let mut vectors: Vec<Vec<f32>> = pooled.to_vec2()?;
    if normalize.unwrap_or(cfg.normalize) {
        for v in &mut vectors {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
    }
    let mask: Vec<Vec<i64>> = batch.attention_mask.to_vec2()?;
    let tokens = mask
        .iter()
        .map(|row| row.iter().filter(|&&m| m != 0).count())
        .collect();
    Ok(Embedded {
        vectors,
        tokens,
        truncated: batch.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_transformers_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            EmbeddingConfig::from_dir(dir.path()).unwrap(),
            EmbeddingConfig::default()
        );
        std::fs::write(
            dir.path().join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
               {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
               {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        let cfg = EmbeddingConfig::from_dir(dir.path()).unwrap();
        assert_eq!((cfg.pooling, cfg.normalize), (EmbeddingPooling::Mean, true));
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        let cfg = EmbeddingConfig::from_dir(dir.path()).unwrap();
        assert_eq!(cfg.pooling, EmbeddingPooling::Cls);
        std::fs::write(dir.path().join("modules.json"), "not json").unwrap();
        let e = EmbeddingConfig::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("modules.json"), "{e}");
    }
}
