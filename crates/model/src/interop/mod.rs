//! Task bundles to and from the adapter formats users already have: PEFT's LoRA adapters
//! ([`peft`]) and AdapterHub's bottleneck adapters with their heads ([`adapterhub`]).
//!
//! Both ecosystems attach their parameters to the modules of a Hugging Face
//! `BertForSequenceClassification` / `AlbertForSequenceClassification`, so this module holds
//! the one table of those module paths ([`HfNames`]) and of how ALBERT's shared layer meets
//! adalbert's [`Sharing`]: the other libraries attach one parameter set to each *stored* layer
//! (ALBERT's one shared layer gets one set, used by every application), while a bundle may
//! hold one set per *application*. A mapping is made only when it is exact (logits equal up to
//! float rounding); everything else is refused with an [`ModelError::Interop`] naming the file,
//! the field and why.

pub mod adapterhub;
pub mod peft;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::Value;

use crate::adapters::{Projection, Sharing, Sublayer, TaskLayout};
use crate::bundle::{BackboneId, BundleMeta, TaskBundle, TrainMode, BUNDLE_FORMAT};
use crate::config::{EncoderConfig, Family};
use crate::error::{ModelError, Result};

/// The other ecosystem a bundle goes to or comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Peft,
    AdapterHub,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Peft => "peft",
            Self::AdapterHub => "adapterhub",
        }
    }
}

/// An export's files before they are written: JSON documents and safetensors files, by name.
#[derive(Debug, Default)]
pub struct ExportFiles {
    pub json: Vec<(String, Value)>,
    pub tensors: Vec<(String, HashMap<String, Tensor>)>,
}

impl ExportFiles {
    /// The names of the files [`ExportFiles::write`] creates.
    pub fn file_names(&self) -> Vec<&str> {
        let json = self.json.iter().map(|(n, _)| n.as_str());
        json.chain(self.tensors.iter().map(|(n, _)| n.as_str()))
            .collect()
    }

    /// Writes the directory `out` whole or not at all
    /// ([`adalbert_core::files::write_dir_atomic`]); an existing `out` is replaced.
    pub fn write(&self, out: &Path) -> Result<()> {
        adalbert_core::files::write_dir_atomic(out, |dir| -> Result<()> {
            for (name, value) in &self.json {
                let text = serde_json::to_string_pretty(value)
                    .map_err(|e| ModelError::Input(format!("cannot encode {name} as JSON: {e}")))?;
                adalbert_core::files::write_atomic(&dir.join(name), text.as_bytes())?;
            }
            for (name, tensors) in &self.tensors {
                crate::bundle::save_tensors(
                    &dir.join(name),
                    tensors,
                    HashMap::from([("format".to_string(), "pt".to_string())]),
                )?;
            }
            Ok(())
        })
    }
}

/// What an import makes: a task bundle's metadata and tensors.
#[derive(Debug)]
pub struct Imported {
    pub meta: BundleMeta,
    pub tensors: HashMap<String, Tensor>,
}

impl Imported {
    /// Writes the bundle atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        TaskBundle::save(&self.meta, &self.tensors, path)
    }
}

/// Where a Hugging Face `*ForSequenceClassification` model keeps the parts a task owns.
pub(crate) struct HfNames<'a> {
    config: &'a EncoderConfig,
}

impl<'a> HfNames<'a> {
    pub fn new(config: &'a EncoderConfig) -> Self {
        Self { config }
    }

    /// The base model's attribute in the task model (`bert` or `albert`).
    pub fn root(&self) -> &'static str {
        match self.config.shape.family {
            Family::Bert => "bert",
            Family::Albert => "albert",
        }
    }

    /// The family's name for messages.
    pub fn family(&self) -> &'static str {
        match self.config.shape.family {
            Family::Bert => "BERT",
            Family::Albert => "ALBERT",
        }
    }

    /// The module path of the stored layer that layer application `application` runs.
    pub fn stored_layer(&self, application: usize) -> String {
        match self.config.shape.family {
            Family::Bert => format!("bert.encoder.layer.{application}"),
            Family::Albert => {
                let (g, j) = self.config.shape.stored_layer(application);
                format!("albert.encoder.albert_layer_groups.{g}.albert_layers.{j}")
            }
        }
    }

    /// The distinct stored layers, in order of their first application, each with the
    /// applications that run it.
    pub fn stored_layers(&self) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        for a in 0..self.config.shape.applications() {
            let path = self.stored_layer(a);
            match out.iter_mut().find(|(p, _)| *p == path) {
                Some((_, apps)) => apps.push(a),
                None => out.push((path, vec![a])),
            }
        }
        out
    }

    /// An attention projection inside a layer.
    pub fn projection(&self, projection: Projection) -> &'static str {
        match (self.config.shape.family, projection) {
            (Family::Bert, Projection::Query) => "attention.self.query",
            (Family::Bert, Projection::Key) => "attention.self.key",
            (Family::Bert, Projection::Value) => "attention.self.value",
            (Family::Albert, Projection::Query) => "attention.query",
            (Family::Albert, Projection::Key) => "attention.key",
            (Family::Albert, Projection::Value) => "attention.value",
        }
    }

    /// The LayerNorm ending a sublayer inside a layer.
    pub fn layer_norm(&self, sublayer: Sublayer) -> &'static str {
        match (self.config.shape.family, sublayer) {
            (Family::Bert, Sublayer::Attention) => "attention.output.LayerNorm",
            (Family::Bert, Sublayer::FeedForward) => "output.LayerNorm",
            (Family::Albert, Sublayer::Attention) => "attention.LayerNorm",
            (Family::Albert, Sublayer::FeedForward) => "full_layer_layer_norm",
        }
    }

    /// The embeddings' LayerNorm.
    pub fn embeddings_layer_norm(&self) -> String {
        format!("{}.embeddings.LayerNorm", self.root())
    }

    /// The pooler's linear map (BERT's `BertPooler.dense`, ALBERT's `pooler`).
    pub fn pooler(&self) -> String {
        match self.config.shape.family {
            Family::Bert => "bert.pooler.dense".into(),
            Family::Albert => "albert.pooler".into(),
        }
    }
}

/// For an export: each stored layer with the bundle's task layer that fills it. A shared
/// bundle's one set goes to every stored layer (exact: every application ran it); a
/// per-application bundle maps only when each stored layer runs once, because the other
/// library keeps one set per stored layer.
pub(crate) fn task_layer_per_stored(
    config: &EncoderConfig,
    layout: &TaskLayout,
    bundle: &Path,
    format: Format,
) -> Result<Vec<(String, usize)>> {
    let names = HfNames::new(config);
    let stored = names.stored_layers();
    let mut out = Vec::with_capacity(stored.len());
    for (path, apps) in stored {
        let k = match layout.sharing {
            Sharing::Shared => 0,
            Sharing::PerApplication if apps.len() == 1 => apps[0],
            Sharing::PerApplication => {
                return Err(ModelError::Interop {
                    path: bundle.to_path_buf(),
                    field: "layout.sharing".into(),
                    reason: format!(
                        "per-application: the bundle has its own parameters for each of the {} \
                         applications of {path}, but {} attaches one set to each stored layer of \
                         the model (ALBERT's shared layer gets one); train with --sharing shared \
                         to export",
                        apps.len(),
                        format.as_str()
                    ),
                })
            }
        };
        out.push((path, k));
    }
    Ok(out)
}

/// For an import: the task-layer tensors of parameters read per stored layer (names relative
/// to `task.layers.{k}.`, in [`HfNames::stored_layers`] order). One stored layer (ALBERT's
/// shared layer) makes a shared layout; several give each application its stored layer's set.
pub(crate) fn spread_stored(
    config: &EncoderConfig,
    per_stored: &[HashMap<String, Tensor>],
) -> (Sharing, HashMap<String, Tensor>) {
    let names = HfNames::new(config);
    let mut out = HashMap::new();
    if per_stored.len() == 1 {
        for (name, t) in &per_stored[0] {
            out.insert(format!("task.layers.0.{name}"), t.clone());
        }
        return (Sharing::Shared, out);
    }
    let stored = names.stored_layers();
    for (i, (_, apps)) in stored.iter().enumerate() {
        for &a in apps {
            for (name, t) in &per_stored[i] {
                out.insert(format!("task.layers.{a}.{name}"), t.clone());
            }
        }
    }
    (Sharing::PerApplication, out)
}

/// The weights of an adapter directory: the first of `names` that exists, read with its
/// stored names and converted to f32 (non-finite values refused).
pub(crate) fn read_weights(
    dir: &Path,
    names: &[&str],
) -> Result<(PathBuf, HashMap<String, Tensor>)> {
    let file = names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ModelError::Interop {
            path: dir.to_path_buf(),
            field: names.join(" or "),
            reason: "no weights file in the adapter directory".into(),
        })?;
    let raw = crate::checkpoint::read_weights_file(&file)?;
    let mut out = HashMap::with_capacity(raw.len());
    for (name, t) in raw {
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(ModelError::WrongDtype {
                name,
                found: format!("{:?}", t.dtype()),
                path: file.clone(),
            });
        }
        let t = t.to_dtype(DType::F32)?;
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                name,
                index,
                value,
                path: file.clone(),
            });
        }
        out.insert(name, t);
    }
    Ok((file, out))
}

/// Reads and parses a JSON file of an adapter directory.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Interop {
        path: path.to_path_buf(),
        field: "(file)".into(),
        reason: format!("not valid JSON: {e}"),
    })
}

/// The label names of an imported head with `num_labels` outputs: `labels` when given (one
/// per output), else Hugging Face's `LABEL_{i}`; none for a single output (regression).
pub(crate) fn label_names(
    labels: Option<Vec<String>>,
    num_labels: usize,
    source: &Path,
) -> Result<Vec<String>> {
    match labels {
        Some(l) if l.len() == num_labels && num_labels > 1 => Ok(l),
        Some(l) => Err(ModelError::Interop {
            path: source.to_path_buf(),
            field: "classifier".into(),
            reason: format!(
                "the head has {num_labels} output(s) but {} label name(s) were given{}",
                l.len(),
                if num_labels == 1 {
                    " (one output is a regression head: give no labels)"
                } else {
                    ""
                }
            ),
        }),
        None if num_labels == 1 => Ok(Vec::new()),
        None => Ok((0..num_labels).map(|i| format!("LABEL_{i}")).collect()),
    }
}

/// Where an imported adapter came from, recorded in its bundle.
pub(crate) struct Source<'a> {
    pub format: Format,
    pub dir: &'a Path,
    /// The adapter's config as read.
    pub config: Value,
}

/// The metadata of an imported bundle: adapter mode on the backbone `id`, the source recorded
/// under `training.imported_from` (format, directory and its config as read).
pub(crate) fn imported_meta(
    source: Source,
    task: String,
    labels: Vec<String>,
    layout: TaskLayout,
    config: &EncoderConfig,
    id: &BackboneId,
) -> BundleMeta {
    BundleMeta {
        format: BUNDLE_FORMAT,
        task,
        labels,
        mode: TrainMode::Adapter,
        trainable_params: layout.param_count(config),
        layout,
        metrics: Default::default(),
        training: serde_json::json!({
            "imported_from": {
                "format": source.format.as_str(),
                "adapter": source.dir.display().to_string(),
                "config": source.config,
            }
        }),
        seed: 0,
        backbone_sha256: id.sha256.clone(),
        model_name: id.model_name.clone(),
        revision: id.revision.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Refuses an export of a bundle that is not an adapter or head bundle (a full fine-tune
/// carries a whole model, not adapters).
pub(crate) fn check_mode(bundle: &TaskBundle, format: Format) -> Result<()> {
    if bundle.meta.mode == TrainMode::Full {
        return Err(ModelError::Interop {
            path: bundle.path.clone(),
            field: "mode".into(),
            reason: format!(
                "full: a fully fine-tuned model is a whole checkpoint, not a {} adapter; save \
                 its weights as a model instead",
                format.as_str()
            ),
        });
    }
    Ok(())
}

/// A bundle tensor the layout promises (a missing one means a corrupt bundle).
pub(crate) fn bundle_tensor(bundle: &TaskBundle, name: &str) -> Result<Tensor> {
    bundle
        .tensors
        .get(name)
        .cloned()
        .ok_or_else(|| ModelError::Bundle {
            path: bundle.path.clone(),
            reason: format!("tensor `{name}` is missing (its layout needs it)"),
        })
}
