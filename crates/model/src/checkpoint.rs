//! Loading checkpoint tensors from a Hugging Face model directory.
//!
//! Accepts `model.safetensors` (preferred) or `pytorch_model.bin`, with or without the
//! `albert.`/`bert.` prefix that task models (e.g. `AlbertForSequenceClassification`) add.
//! Modules read it through [`crate::weights::Weights`], which checks every shape.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// All tensors of one checkpoint file, keyed by their names without the model prefix.
pub struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Opens the weights of a model directory (or a weights file given directly).
    pub fn open(path: &Path) -> Result<Self> {
        let file = weights_file(path)?;
        let raw = if file.extension().is_some_and(|e| e == "safetensors") {
            load_safetensors(&file)?
        } else {
            load_pth(&file)?
        };
        Ok(Self::from_tensors(raw, file))
    }

    /// Wraps tensors already in memory (tests, task bundles); `path` names them in errors.
    pub fn from_tensors(raw: HashMap<String, Tensor>, path: PathBuf) -> Self {
        let mut tensors = HashMap::with_capacity(raw.len());
        for (name, t) in raw {
            tensors.insert(normalize_name(&name), t);
        }
        Self { path, tensors }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor as stored (names normalized), for training all weights.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }
}

/// The weights file inside a model directory.
pub fn weights_file(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory"),
        });
    }
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| ModelError::NoWeights {
            dir: path.to_path_buf(),
        })
}

/// sha256 of a file, hex-encoded: identifies a backbone for task bundles.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The pooling a checkpoint directory was made for: mean pooling for a sentence-transformers
/// checkpoint (it ships `modules.json` or `sentence_bert_config.json`; it was trained for mean
/// pooling), else the pooler, as Hugging Face task models use.
pub fn default_pooling(dir: &Path) -> crate::Pooling {
    if dir.join("sentence_bert_config.json").is_file() || dir.join("modules.json").is_file() {
        crate::Pooling::Mean
    } else {
        crate::Pooling::Pooler
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Drops the task-model prefix and renames TF-era LayerNorm parameters (`gamma`/`beta`).
fn normalize_name(name: &str) -> String {
    let stripped = name
        .strip_prefix("albert.")
        .or_else(|| name.strip_prefix("bert."))
        .unwrap_or(name);
    if let Some(base) = stripped.strip_suffix(".gamma") {
        format!("{base}.weight")
    } else if let Some(base) = stripped.strip_suffix(".beta") {
        format!("{base}.bias")
    } else {
        stripped.to_string()
    }
}

fn load_safetensors(file: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(file).map_err(|source| ModelError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    // Validate the header with the safetensors crate first: its errors say what is wrong
    // (truncated header, bad offsets) and it never panics on malformed input.
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Weights {
        path: file.to_path_buf(),
        reason: format!("not a valid safetensors file: {e}"),
    })?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| ModelError::Weights {
        path: file.to_path_buf(),
        reason: e.to_string(),
    })
}

fn load_pth(file: &Path) -> Result<HashMap<String, Tensor>> {
    let list = candle_core::pickle::read_all(file).map_err(|e| ModelError::Weights {
        path: file.to_path_buf(),
        reason: format!("not a readable PyTorch checkpoint: {e}"),
    })?;
    Ok(list.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_tf_names_are_normalized() {
        assert_eq!(
            normalize_name("albert.embeddings.LayerNorm.gamma"),
            "embeddings.LayerNorm.weight"
        );
        assert_eq!(
            normalize_name("bert.pooler.dense.bias"),
            "pooler.dense.bias"
        );
        assert_eq!(normalize_name("classifier.weight"), "classifier.weight");
    }

    #[test]
    fn truncated_safetensors_is_an_error() {
        let dir = std::env::temp_dir().join(format!("adalbert-trunc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("model.safetensors");
        std::fs::write(&f, [8u8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
        let e = Checkpoint::open(&dir).err().unwrap().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
