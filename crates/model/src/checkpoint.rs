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
    /// Read through simulated faulty memory: a flipped exponent bit can make a weight NaN or
    /// infinite, which is then a measured outcome to compute with, not a corrupt file.
    simulated_faults: bool,
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
        Self {
            path,
            tensors,
            simulated_faults: false,
        }
    }

    /// Tensors as read through simulated faulty memory (compression with fault injection):
    /// the model computes with non-finite values instead of refusing them.
    pub fn with_simulated_faults(raw: HashMap<String, Tensor>, path: PathBuf) -> Self {
        Self {
            simulated_faults: true,
            ..Self::from_tensors(raw, path)
        }
    }

    /// Whether non-finite values are a simulated fault's outcome ([`Self::with_simulated_faults`]).
    pub fn simulated_faults(&self) -> bool {
        self.simulated_faults
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor as stored (names normalized), for training all weights.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// The backbone's identity by content ([`content_sha256`] of its tensors).
    pub fn content_sha256(&self) -> Result<String> {
        content_sha256(&self.tensors).map_err(|reason| ModelError::Weights {
            path: self.path.clone(),
            reason,
        })
    }
}

/// sha256 identifying a checkpoint by what it holds rather than by its file bytes, so the same
/// weights saved as `pytorch_model.bin` (a pickle) and as `model.safetensors` are the same
/// backbone; task bundles record it (`backbone_sha256`).
///
/// Layout: the tag `adalbert-backbone-v1\n`, then for every tensor in name order (sorted, so
/// the order a file happens to store them in does not matter): the name's byte length and
/// bytes, the dtype's length and name (`f32`, `f16`, ...: an f16 copy of the same weights is a
/// different backbone, because a bundle's adapters were trained beside the other values), the
/// rank and each dimension, and the element bytes, little-endian, as stored (no conversion).
/// Lengths are u64 little-endian, so no two different tensor sets hash the same bytes.
/// Names are the ones the model reads (the `albert.`/`bert.` task-model prefix dropped, TF-era
/// `gamma`/`beta` renamed: see [`Checkpoint::open`]), which both file formats share.
pub fn content_sha256(tensors: &HashMap<String, Tensor>) -> std::result::Result<String, String> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    h.update(b"adalbert-backbone-v1\n");
    for name in names {
        let t = &tensors[name];
        let dtype = t.dtype().as_str();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((dtype.len() as u64).to_le_bytes());
        h.update(dtype.as_bytes());
        h.update((t.rank() as u64).to_le_bytes());
        for d in t.dims() {
            h.update((*d as u64).to_le_bytes());
        }
        h.update(le_bytes(t).map_err(|e| format!("tensor `{name}`: {e}"))?);
    }
    Ok(hex(&h.finalize()))
}

/// A tensor's elements as little-endian bytes in their own dtype.
fn le_bytes(t: &Tensor) -> std::result::Result<Vec<u8>, String> {
    fn bytes<T: candle_core::WithDType, const N: usize>(
        t: &Tensor,
        to_le: impl Fn(T) -> [u8; N],
    ) -> std::result::Result<Vec<u8>, String> {
        let v: Vec<T> = t
            .flatten_all()
            .and_then(|f| f.to_vec1())
            .map_err(|e| e.to_string())?;
        Ok(v.into_iter().flat_map(to_le).collect())
    }
    use candle_core::DType;
    match t.dtype() {
        DType::U8 => bytes(t, |x: u8| [x]),
        DType::U32 => bytes(t, u32::to_le_bytes),
        DType::I16 => bytes(t, i16::to_le_bytes),
        DType::I32 => bytes(t, i32::to_le_bytes),
        DType::I64 => bytes(t, i64::to_le_bytes),
        DType::BF16 => bytes(t, half::bf16::to_le_bytes),
        DType::F16 => bytes(t, half::f16::to_le_bytes),
        DType::F32 => bytes(t, f32::to_le_bytes),
        DType::F64 => bytes(t, f64::to_le_bytes),
        other => Err(format!(
            "dtype {} cannot be hashed (not a checkpoint dtype adalbert reads)",
            other.as_str()
        )),
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
    safetensors_tensors(&bytes, file)
}

/// The tensors of safetensors bytes, as [`Checkpoint::open`] reads a `model.safetensors`
/// (any dtype, names as stored); `file` only names the source in errors. Public so the
/// header reader can be fuzzed on bytes (`fuzz/`) through the code the loader runs.
pub fn safetensors_tensors(bytes: &[u8], file: &Path) -> Result<HashMap<String, Tensor>> {
    // Validate the header with the safetensors crate first: its errors say what is wrong
    // (truncated header, bad offsets) and it never panics on malformed input.
    parse_safetensors(bytes).map_err(|reason| ModelError::Weights {
        path: file.to_path_buf(),
        reason,
    })?;
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| ModelError::Weights {
        path: file.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Parses a safetensors buffer; the error says what is wrong and, where one tensor is at fault
/// (its shape and dtype need more or fewer bytes than its data offsets hold), names it: the
/// safetensors crate reports that case without the name.
pub(crate) fn parse_safetensors(
    bytes: &[u8],
) -> std::result::Result<safetensors::SafeTensors<'_>, String> {
    safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        let detail = tensor_at_fault(bytes).unwrap_or_else(|| e.to_string());
        format!("not a valid safetensors file: {detail}")
    })
}

/// The first tensor of a safetensors header whose shape and dtype disagree with its byte
/// range, described; `None` if the header is unreadable or every entry is consistent.
fn tensor_at_fault(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..end)?).ok()?;
    let mut entries: Vec<(&String, &serde_json::Value)> = header
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .collect();
    // In file order, so the first inconsistent entry is the one reported.
    let start_of = |v: &serde_json::Value| v["data_offsets"][0].as_u64().unwrap_or(u64::MAX);
    entries.sort_by_key(|&(_, v)| start_of(v));
    for (name, info) in entries {
        let dtype = info["dtype"].as_str()?;
        let bits: u128 = match dtype {
            "F4" => 4,
            "F6_E2M3" | "F6_E3M2" => 6,
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
            "I16" | "U16" | "F16" | "BF16" => 16,
            "I32" | "U32" | "F32" => 32,
            "I64" | "U64" | "F64" => 64,
            _ => return Some(format!("tensor `{name}` has unknown dtype `{dtype}`")),
        };
        let shape: Vec<u64> = info["shape"]
            .as_array()?
            .iter()
            .map(serde_json::Value::as_u64)
            .collect::<Option<_>>()?;
        let (s, e) = (
            info["data_offsets"][0].as_u64()?,
            info["data_offsets"][1].as_u64()?,
        );
        let elements = shape
            .iter()
            .try_fold(1u128, |acc, &d| acc.checked_mul(u128::from(d)));
        let needed = elements
            .and_then(|n| n.checked_mul(bits))
            .map(|b| b.div_ceil(8));
        let held = e.checked_sub(s).map(u128::from);
        if needed != held || held.is_none() {
            let needed = needed.map_or("more than 2^128".to_string(), |n| n.to_string());
            return Some(format!(
                "tensor `{name}`: shape {shape:?} of {dtype} needs {needed} bytes, but its data offsets [{s}, {e}] hold {}",
                held.map_or("none (end before start)".to_string(), |h| h.to_string())
            ));
        }
    }
    None
}

/// The tensors of one weights file, `.safetensors` or a PyTorch pickle (`.bin`), with their
/// names as stored (no prefix stripped) and their stored dtypes: for adapter files of other
/// ecosystems, whose names [`Checkpoint`] must not normalize.
pub fn read_weights_file(file: &Path) -> Result<HashMap<String, Tensor>> {
    if file.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(file)
    } else {
        load_pth(file)
    }
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

    /// A safetensors file with one F32 tensor whose header may lie about its shape.
    fn one_tensor_file(name: &str, shape: &[usize], dtype: &str, data_bytes: usize) -> Vec<u8> {
        let header = serde_json::json!({
            name: {"dtype": dtype, "shape": shape, "data_offsets": [0, data_bytes]}
        })
        .to_string();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(vec![0u8; data_bytes]);
        out
    }

    #[test]
    fn a_byte_count_mismatch_names_the_tensor() {
        // 2 x 3 F32 needs 24 bytes; the file holds 20.
        let bytes = one_tensor_file("encoder.dense.weight", &[2, 3], "F32", 20);
        let e = parse_safetensors(&bytes).err().unwrap();
        assert!(
            e.contains("`encoder.dense.weight`") && e.contains("24 bytes") && e.contains("20"),
            "{e}"
        );
        // A dtype whose size disagrees (I64 needs 48 bytes) is named the same way.
        let bytes = one_tensor_file("w", &[2, 3], "I64", 24);
        let e = parse_safetensors(&bytes).err().unwrap();
        assert!(e.contains("`w`") && e.contains("I64"), "{e}");
        // A consistent file parses.
        let bytes = one_tensor_file("w", &[2, 3], "F32", 24);
        assert!(parse_safetensors(&bytes).is_ok());
        // Through the loader, the file is named too.
        let dir = tempfile_dir("mismatch");
        let f = dir.join("model.safetensors");
        std::fs::write(&f, one_tensor_file("pooler.weight", &[4, 4], "F32", 60)).unwrap();
        let e = Checkpoint::open(&dir).err().unwrap().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("`pooler.weight`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("adalbert-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
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
