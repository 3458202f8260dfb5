//! Task bundles: one safetensors file per trained task.
//!
//! A bundle holds a task's own tensors (adapters, LayerNorms, head; or a whole model for the
//! full fine-tuning baseline) and, in the safetensors header's metadata under the key
//! `adalbert`, a JSON [`BundleMeta`]: task, labels, metrics, layout, training config, seed and
//! the sha256 of the backbone weights it was trained on. Loading an adapter bundle onto another
//! backbone is refused, because its adapters only make sense beside the weights they were
//! trained with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;

use crate::adapters::TaskLayout;
use crate::error::{ModelError, Result};

pub const BUNDLE_FORMAT: u32 = 1;
const META_KEY: &str = "adalbert";

/// How the task was trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainMode {
    /// Frozen backbone + adapters, LayerNorms and head.
    Adapter,
    /// Frozen backbone + head only.
    Head,
    /// Every weight trained: the bundle carries a whole model (tensors prefixed `backbone.`).
    Full,
}

impl TrainMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adapter => "adapter",
            Self::Head => "head",
            Self::Full => "full",
        }
    }
}

/// Everything needed to reuse, audit and reproduce a trained task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleMeta {
    pub format: u32,
    pub task: String,
    /// Label names in head-output order; empty for regression.
    pub labels: Vec<String>,
    pub mode: TrainMode,
    pub layout: TaskLayout,
    /// Dev metrics of the selected checkpoint, by official name.
    pub metrics: BTreeMap<String, f64>,
    /// The training configuration, as the trainer recorded it.
    pub training: serde_json::Value,
    pub seed: u64,
    /// sha256 of the backbone weights file the task was trained on.
    pub backbone_sha256: String,
    /// Trainable parameters (for reports).
    pub trainable_params: usize,
    pub tool_version: String,
}

/// A loaded bundle.
pub struct TaskBundle {
    pub meta: BundleMeta,
    pub tensors: HashMap<String, Tensor>,
    pub path: PathBuf,
}

impl TaskBundle {
    /// Writes the bundle atomically (temp file + rename), so a crash never leaves half a file.
    pub fn save(meta: &BundleMeta, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let meta_json = serde_json::to_string(meta).map_err(|e| ModelError::Bundle {
            path: path.to_path_buf(),
            reason: format!("cannot encode metadata: {e}"),
        })?;
        save_tensors(
            path,
            tensors,
            HashMap::from([(META_KEY.to_string(), meta_json)]),
        )
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses bundle bytes (e.g. an HTTP upload); `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: String| ModelError::Bundle {
            path: path.to_path_buf(),
            reason,
        };
        let st = crate::checkpoint::parse_safetensors(bytes).map_err(bad)?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("unreadable header: {e}")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| bad(format!("no `{META_KEY}` metadata: not a task bundle")))?;
        let meta: BundleMeta = serde_json::from_str(json)
            .map_err(|e| bad(format!("malformed bundle metadata: {e}")))?;
        if meta.format != BUNDLE_FORMAT {
            return Err(bad(format!(
                "bundle format {} is not supported (expected {BUNDLE_FORMAT})",
                meta.format
            )));
        }
        check_labels(&meta).map_err(bad)?;
        let tensors = f32_tensors(&st, path)?;
        Ok(Self {
            meta,
            tensors,
            path: path.to_path_buf(),
        })
    }

    /// Refuses a bundle trained on different backbone weights.
    pub fn check_backbone(&self, backbone_sha256: &str) -> Result<()> {
        if self.meta.mode != TrainMode::Full && self.meta.backbone_sha256 != backbone_sha256 {
            return Err(ModelError::Bundle {
                path: self.path.clone(),
                reason: format!(
                    "trained on backbone {} but the loaded backbone is {}: retrain the task on this backbone",
                    short(&self.meta.backbone_sha256),
                    short(backbone_sha256)
                ),
            });
        }
        Ok(())
    }

    /// The task's parameters, to run beside the shared backbone (adapter and head bundles).
    pub fn task_params(&self, config: &crate::EncoderConfig) -> Result<crate::TaskParams> {
        crate::TaskParams::from_tensors(config, &self.meta.layout, &self.tensors).map_err(|e| {
            ModelError::Bundle {
                path: self.path.clone(),
                reason: format!("does not fit this backbone's configuration: {e}"),
            }
        })
    }

    /// The bundle's own fine-tuned backbone (full fine-tuning bundles only).
    pub fn full_backbone(&self, config: &crate::EncoderConfig) -> Result<crate::Backbone> {
        let tensors: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("backbone.")
                    .map(|n| (n.to_string(), t.clone()))
            })
            .collect();
        if tensors.is_empty() {
            return Err(ModelError::Bundle {
                path: self.path.clone(),
                reason: "holds no backbone tensors (not a full fine-tuning bundle)".into(),
            });
        }
        crate::Backbone::load(
            &crate::Checkpoint::from_tensors(tensors, self.path.clone()),
            config,
        )
    }

    /// Bytes of the task's own tensors at fp32.
    pub fn bytes(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count() * 4).sum()
    }
}

/// The label list must match the classifier it names: one name per output for
/// classification, none (and one output) for regression.
fn check_labels(meta: &BundleMeta) -> std::result::Result<(), String> {
    let outputs = meta.layout.num_labels;
    let n = meta.labels.len();
    if outputs == 0 {
        return Err(
            "metadata `layout.num_labels` is 0: a classifier needs at least one output".into(),
        );
    }
    if n == 0 && outputs != 1 {
        return Err(format!(
            "metadata `labels` is empty (regression) but the classifier has {outputs} outputs"
        ));
    }
    if n != 0 && n != outputs {
        return Err(format!(
            "metadata `labels` lists {n} names but the classifier has {outputs} outputs"
        ));
    }
    Ok(())
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// All tensors of a parsed safetensors file, which must all be f32.
fn f32_tensors(st: &safetensors::SafeTensors, path: &Path) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(ModelError::Bundle {
                path: path.to_path_buf(),
                reason: format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            });
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some((index, value)) = data.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(ModelError::NonFinite {
                name,
                index,
                value: *value,
                path: path.to_path_buf(),
            });
        }
        tensors.insert(name, Tensor::from_vec(data, view.shape(), &Device::Cpu)?);
    }
    Ok(tensors)
}

/// Saves f32 tensors with string metadata atomically (training checkpoints, bundles).
pub fn save_tensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes = serialize(tensors, metadata, path)?;
    adalbert_core::files::write_atomic(path, &bytes)?;
    Ok(())
}

/// Loads what [`save_tensors`] wrote.
pub fn load_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tensors_from_bytes(&bytes, path)
}

/// [`load_tensors`] on bytes already read (`path` only names the source in errors): f32
/// tensors, all finite, and the header's string metadata.
pub fn tensors_from_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bad = |reason: String| ModelError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let st = crate::checkpoint::parse_safetensors(bytes).map_err(bad)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("unreadable header: {e}")))?;
    let md = header.metadata().clone().unwrap_or_default();
    Ok((f32_tensors(&st, path)?, md))
}

fn serialize(
    tensors: &HashMap<String, Tensor>,
    md: HashMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        raw.push((name.clone(), t.dims().to_vec(), bytes));
    }
    raw.sort_by(|a, b| a.0.cmp(&b.0));
    let views = raw
        .iter()
        .map(|(n, shape, data)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (n.as_str(), v))
                .map_err(|e| ModelError::Bundle {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{n}`: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(md)).map_err(|e| ModelError::Bundle {
        path: path.to_path_buf(),
        reason: format!("cannot serialize: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Sharing;

    fn meta() -> BundleMeta {
        BundleMeta {
            format: BUNDLE_FORMAT,
            task: "movie-polarity".into(),
            labels: vec!["negative".into(), "positive".into()],
            mode: TrainMode::Adapter,
            layout: TaskLayout {
                adapter: Some(crate::AdapterSpec::parse("houlsby:4").unwrap()),
                sharing: Sharing::PerApplication,
                layer_norms: true,
                pooler: false,
                num_labels: 2,
                pooling: crate::adapters::Pooling::Mean,
            },
            metrics: BTreeMap::from([("accuracy".into(), 0.75)]),
            training: serde_json::json!({"lr": 1e-3}),
            seed: 7,
            backbone_sha256: "abc".into(),
            trainable_params: 10,
            tool_version: "test".into(),
        }
    }

    #[test]
    fn round_trip_and_backbone_check() {
        let dir = std::env::temp_dir().join(format!("adalbert-bundle-{}", std::process::id()));
        let path = dir.join("t.bundle.safetensors");
        let t = Tensor::new(&[[1.0f32, -2.5], [3.0, 4.0]], &Device::Cpu).unwrap();
        let tensors = HashMap::from([("classifier.weight".to_string(), t)]);
        TaskBundle::save(&meta(), &tensors, &path).unwrap();
        let b = TaskBundle::load(&path).unwrap();
        assert_eq!(b.meta, meta());
        let v: Vec<Vec<f32>> = b.tensors["classifier.weight"].to_vec2().unwrap();
        assert_eq!(v, vec![vec![1.0, -2.5], vec![3.0, 4.0]]);
        assert!(b.check_backbone("abc").is_ok());
        let e = b.check_backbone("def").unwrap_err().to_string();
        assert!(e.contains("retrain"), "{e}");
        let e = TaskBundle::from_bytes(b"garbage", &path)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a valid safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Bytes of a bundle with `meta` and `tensors`, through the real writer.
    fn bundle_bytes(meta: &BundleMeta, tensors: &HashMap<String, Tensor>) -> Vec<u8> {
        let json = serde_json::to_string(meta).unwrap();
        serialize(
            tensors,
            HashMap::from([(META_KEY.to_string(), json)]),
            Path::new("x"),
        )
        .unwrap()
    }

    fn head(values: [f32; 2]) -> HashMap<String, Tensor> {
        let t = Tensor::new(&[values, [3.0, 4.0]], &Device::Cpu).unwrap();
        HashMap::from([("classifier.weight".to_string(), t)])
    }

    #[test]
    fn labels_must_match_the_classifier() {
        let p = Path::new("b.bundle.safetensors");
        let ok = bundle_bytes(&meta(), &head([1.0, 2.0]));
        assert!(TaskBundle::from_bytes(&ok, p).is_ok());
        for (labels, want) in [
            (
                vec![],
                "empty (regression) but the classifier has 2 outputs",
            ),
            (
                vec!["a".to_string()],
                "lists 1 names but the classifier has 2",
            ),
            (
                vec!["a".into(), "b".into(), "c".into()],
                "lists 3 names but the classifier has 2",
            ),
        ] {
            let m = BundleMeta { labels, ..meta() };
            let e = TaskBundle::from_bytes(&bundle_bytes(&m, &head([1.0, 2.0])), p)
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains(want) && e.contains("b.bundle.safetensors"),
                "{e}"
            );
        }
    }

    #[test]
    fn non_finite_bundle_tensors_are_refused_by_name() {
        let p = Path::new("b.bundle.safetensors");
        for bad in [f32::NAN, f32::INFINITY] {
            let e = TaskBundle::from_bytes(&bundle_bytes(&meta(), &head([1.0, bad])), p)
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("`classifier.weight`") && e.contains("element 1"),
                "{e}"
            );
        }
    }
}
