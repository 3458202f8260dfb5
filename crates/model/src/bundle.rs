//! Task bundles: one safetensors file per trained task.
//!
//! A bundle holds a task's own tensors (adapters, LayerNorms, head; or a whole model for the
//! full fine-tuning baseline) and, in the safetensors header's metadata under the key
//! `adalbert`, a JSON [`BundleMeta`]: task, labels, metrics, layout, training config, seed and
//! the identity of the backbone it was trained on (its content hash, and its name and revision
//! when known). Loading an adapter bundle onto another backbone is refused, because its
//! adapters only make sense beside the weights they were trained with.
//!
//! Format 2 records the backbone by content ([`crate::checkpoint::content_sha256`]), so the
//! same weights as `.bin` or `.safetensors` match. Format 1 bundles (earlier versions) recorded
//! the sha256 of the weights *file*; they still load, and are checked against the loaded
//! backbone's file hash ([`BackboneId`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;

use crate::adapters::TaskLayout;
use crate::error::{ModelError, Result};

/// The format bundles are written in: 2 since the backbone is identified by content.
pub const BUNDLE_FORMAT: u32 = 2;
/// Format 1: `backbone_sha256` is the sha256 of the backbone's weights file. Still read.
pub const BUNDLE_FORMAT_FILE_HASH: u32 = 1;
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
    /// The backbone the task was trained on: from format 2 its content hash
    /// ([`crate::checkpoint::content_sha256`], or for compressed weights
    /// [`crate::compression::weights_sha256`]); in format 1 bundles the sha256 of its weights
    /// file.
    pub backbone_sha256: String,
    /// The backbone's name (e.g. `albert-base-v2`) when known: `--model-name`, the checkpoint's
    /// `config.json` `_name_or_path`, or its README's `base_model`. For people and reports;
    /// loading checks the hash only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The backbone's revision (a Hugging Face commit) when known from its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
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
        let mut meta: BundleMeta = serde_json::from_str(json)
            .map_err(|e| bad(format!("malformed bundle metadata: {e}")))?;
        // Bundles of earlier versions may name metrics by their old names.
        meta.metrics = adalbert_core::metric::current_names(std::mem::take(&mut meta.metrics));
        if meta.format != BUNDLE_FORMAT && meta.format != BUNDLE_FORMAT_FILE_HASH {
            return Err(bad(format!(
                "bundle format {} is not supported (expected {BUNDLE_FORMAT_FILE_HASH} or \
                 {BUNDLE_FORMAT})",
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

    /// Refuses a bundle trained on different backbone weights: the content hash must match,
    /// or, for a format 1 bundle, the hash of the weights file the backbone was read from.
    pub fn check_backbone(&self, backbone: &BackboneId) -> Result<()> {
        if self.meta.mode == TrainMode::Full || self.meta.backbone_sha256 == backbone.sha256 {
            return Ok(());
        }
        if self.meta.format == BUNDLE_FORMAT_FILE_HASH
            && backbone.file_sha256()? == Some(self.meta.backbone_sha256.as_str())
        {
            return Ok(());
        }
        let name = |n: &Option<String>| n.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
        Err(ModelError::Bundle {
            path: self.path.clone(),
            reason: format!(
                "trained on backbone {}{} but the loaded backbone is {}{}: retrain the task on \
                 this backbone",
                short(&self.meta.backbone_sha256),
                name(&self.meta.model_name),
                short(&backbone.sha256),
                name(&backbone.model_name),
            ),
        })
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

/// What a loaded backbone is, to check bundles against ([`TaskBundle::check_backbone`]).
#[derive(Debug, Clone)]
pub struct BackboneId {
    /// Content hash: [`crate::checkpoint::content_sha256`] of a checkpoint, or
    /// [`crate::compression::weights_sha256`] of compressed weights.
    pub sha256: String,
    /// Name of the backbone, when known ([`describe_backbone`]); for messages and bundles.
    pub model_name: Option<String>,
    /// Revision, when known ([`describe_backbone`]).
    pub revision: Option<String>,
    /// The weights file the backbone was read from, if any: format 1 bundles name it by its
    /// file hash, computed on the first such bundle only.
    file: Option<PathBuf>,
    file_sha256: OnceLock<String>,
}

impl BackboneId {
    /// The identity of a checkpoint read from a model directory (`model_dir` may be the
    /// weights file itself): its content hash, plus name and revision when the directory says.
    pub fn of_checkpoint(ck: &crate::Checkpoint, model_dir: &Path) -> Result<Self> {
        let (model_name, revision) = describe_backbone(model_dir);
        Ok(Self {
            sha256: ck.content_sha256()?,
            model_name,
            revision,
            file: ck.path().is_file().then(|| ck.path().to_path_buf()),
            file_sha256: OnceLock::new(),
        })
    }

    /// Weights that exist only in memory (e.g. a compressed backbone), known by `sha256`.
    pub fn of_weights(sha256: String) -> Self {
        Self {
            sha256,
            model_name: None,
            revision: None,
            file: None,
            file_sha256: OnceLock::new(),
        }
    }

    /// sha256 of the weights file (what format 1 bundles recorded); `None` for in-memory
    /// weights.
    pub fn file_sha256(&self) -> Result<Option<&str>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        if self.file_sha256.get().is_none() {
            let sha = crate::checkpoint::sha256_file(file)?;
            let _ = self.file_sha256.set(sha);
        }
        Ok(self.file_sha256.get().map(String::as_str))
    }
}

/// The name and revision of the backbone in `model_dir`, when it says: the name from
/// `config.json`'s `_name_or_path` when that is a hub id (`owner/name` or `name`, not a local
/// path), else from `README.md`'s front matter `base_model` (a string or the first of a list);
/// the revision from a Hugging Face cache path (`.../snapshots/<commit>/`). Best effort: an
/// unreadable or unusual file just leaves the field unknown.
pub fn describe_backbone(model_dir: &Path) -> (Option<String>, Option<String>) {
    let dir = if model_dir.is_file() {
        model_dir.parent().unwrap_or(model_dir)
    } else {
        model_dir
    };
    let from_config = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["_name_or_path"].as_str().map(str::to_string))
        .filter(|n| is_hub_id(n));
    let name = from_config.or_else(|| {
        std::fs::read_to_string(dir.join("README.md"))
            .ok()
            .and_then(|s| front_matter_base_model(&s))
    });
    let revision = dir.canonicalize().ok().and_then(|d| snapshot_revision(&d));
    (name, revision)
}

/// `owner/name` or `name` as the Hugging Face hub spells ids; not an absolute or relative path.
fn is_hub_id(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let parts: Vec<&str> = s.split('/').collect();
    !s.is_empty()
        && parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(ok_char) && !p.starts_with('.'))
}

/// `base_model` of a model card's YAML front matter (`---` ... `---`): `base_model: x` or the
/// first item of a `base_model:` list.
fn front_matter_base_model(readme: &str) -> Option<String> {
    let mut lines = readme.lines();
    if lines.next()?.trim() != "---" {
        return None;
    }
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "---").collect();
    let unquote = |v: &str| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    let i = body.iter().position(|l| l.starts_with("base_model:"))?;
    let value = body[i]["base_model:".len()..].trim();
    let name = if value.is_empty() {
        let item = body.get(i + 1)?.trim_start();
        unquote(item.strip_prefix("- ")?)
    } else {
        unquote(value)
    };
    is_hub_id(&name).then_some(name)
}

/// The commit of a Hugging Face cache snapshot folder (`.../snapshots/<40 hex digits>`).
fn snapshot_revision(dir: &Path) -> Option<String> {
    let commit = dir.file_name()?.to_str()?;
    let parent = dir.parent()?.file_name()?.to_str()?;
    (parent == "snapshots" && commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| commit.to_string())
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
            model_name: Some("albert-base-v2".into()),
            revision: None,
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
        assert!(b
            .check_backbone(&BackboneId::of_weights("abc".into()))
            .is_ok());
        let e = b
            .check_backbone(&BackboneId::of_weights("def".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retrain") && e.contains("(albert-base-v2)"),
            "{e}"
        );
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

    #[test]
    fn unknown_formats_are_refused() {
        let p = Path::new("b.bundle.safetensors");
        let m = BundleMeta {
            format: 3,
            ..meta()
        };
        let e = TaskBundle::from_bytes(&bundle_bytes(&m, &head([1.0, 2.0])), p)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bundle format 3 is not supported"), "{e}");
    }

    #[test]
    fn hub_ids_front_matter_and_snapshot_revisions() {
        assert!(is_hub_id("albert-base-v2") && is_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        for path in ["/tmp/model", "./m", "", "a/b/c", "../x", "a b"] {
            assert!(!is_hub_id(path), "{path}");
        }
        let card = "---\nlicense: mit\nbase_model: \"google/bert_uncased_L-2_H-128_A-2\"\n---\n# x";
        assert_eq!(
            front_matter_base_model(card).as_deref(),
            Some("google/bert_uncased_L-2_H-128_A-2")
        );
        let list = "---\nbase_model:\n- albert/albert-base-v2\n- other/x\ntags: [a]\n---\n";
        assert_eq!(
            front_matter_base_model(list).as_deref(),
            Some("albert/albert-base-v2")
        );
        // No front matter, or the key only in the body: unknown.
        assert_eq!(front_matter_base_model("# card\nbase_model: x\n"), None);
        assert_eq!(
            front_matter_base_model("---\nlicense: mit\n---\nbase_model: x\n"),
            None
        );
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = Path::new("/c/models--albert--albert-base-v2/snapshots").join(commit);
        assert_eq!(snapshot_revision(&snap).as_deref(), Some(commit));
        assert_eq!(snapshot_revision(Path::new("/c/snapshots/main")), None);
        assert_eq!(snapshot_revision(&Path::new("/c/other").join(commit)), None);
    }
}
