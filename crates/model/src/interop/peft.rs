//! PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`) to and from task
//! bundles. Key names and config fields are those `peft` 0.21 writes (fixtures:
//! tools/interop/make_peft_fixture.py).
//!
//! PEFT wraps a `*ForSequenceClassification` model: a LoRA layer replaces `W x` by
//! `W x + (lora_alpha / r) B A x` (`lora_alpha / sqrt(r)` with `use_rslora`), stored as
//! `base_model.model.<module>.lora_A.weight [r, H]` and `lora_B.weight [H, r]`; each module
//! whose path ends with a `modules_to_save` name is trained whole and stored as
//! `base_model.model.<module>.<param>`. adalbert's LoRA is the same update on query and value
//! (`a` = `lora_A`, `b` = `lora_B`, scale `alpha / r`); the classifier, the LayerNorm copies
//! and the pooler copy are the modules to save (`classifier`, `LayerNorm` plus ALBERT's
//! `full_layer_layer_norm`, `pooler`, which match exactly those modules by suffix). The head
//! is `classifier(dropout(pooler(h)))`, which is adalbert's `pooler` pooling only.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::{json, Value};

use super::{
    bundle_tensor, check_mode, imported_meta, label_names, read_json, read_weights, spread_stored,
    task_layer_per_stored, ExportFiles, Format, HfNames, Imported, Source,
};
use crate::adapters::{
    AdapterKind, AdapterSpec, Pooling, Projection, Site, Sublayer, TaskLayout, TaskParams,
};
use crate::backbone::Backbone;
use crate::bundle::{BackboneId, TaskBundle};
use crate::config::{Activation, Family};
use crate::error::{ModelError, Result};

/// PEFT's config file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's weights file (safetensors; older versions wrote `adapter_model.bin`, also read).
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

/// The projections adalbert's LoRA adapts, with PEFT's `target_modules` names.
const TARGETS: [(Projection, &str); 2] =
    [(Projection::Query, "query"), (Projection::Value, "value")];

/// The PEFT files of a LoRA bundle trained on `backbone`; `base_model` is recorded as
/// `base_model_name_or_path`. Refuses what PEFT cannot express exactly (see module docs).
pub fn export(bundle: &TaskBundle, backbone: &Backbone, base_model: &str) -> Result<ExportFiles> {
    check_mode(bundle, Format::Peft)?;
    let config = &backbone.config;
    let layout = &bundle.meta.layout;
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: bundle.path.clone(),
        field: field.into(),
        reason,
    };
    let spec = match layout.adapter {
        Some(s) if s.kind == AdapterKind::Lora => s,
        Some(s) => {
            return Err(refuse(
                "layout.adapter",
                format!(
                    "{s} is a bottleneck adapter, which PEFT's LoRA cannot hold: use --format \
                     adapterhub"
                ),
            ))
        }
        None => {
            return Err(refuse(
                "layout.adapter",
                "none (a head-only bundle): a PEFT LoRA adapter needs LoRA weights".into(),
            ))
        }
    };
    if layout.pooling != Pooling::Pooler {
        return Err(refuse(
            "layout.pooling",
            format!(
                "{:?}: Hugging Face's *ForSequenceClassification head reads the pooler output, \
                 so only bundles trained with --pooling pooler map exactly",
                layout.pooling
            )
            .to_lowercase(),
        ));
    }
    let names = HfNames::new(config);
    let stored = task_layer_per_stored(config, layout, &bundle.path, Format::Peft)?;
    let mut out = HashMap::new();
    let mut put = |name: String, t: Tensor| {
        out.insert(format!("{PREFIX}{name}"), t);
    };
    for (path, k) in &stored {
        for (projection, _) in TARGETS {
            let site = format!("task.layers.{k}.{}", Site::Lora(projection).name());
            let module = format!("{path}.{}", names.projection(projection));
            put(
                format!("{module}.lora_A.weight"),
                bundle_tensor(bundle, &format!("{site}.a"))?,
            );
            put(
                format!("{module}.lora_B.weight"),
                bundle_tensor(bundle, &format!("{site}.b"))?,
            );
        }
        if layout.layer_norms {
            for sublayer in [Sublayer::Attention, Sublayer::FeedForward] {
                let site = format!("task.layers.{k}.{}", Site::LayerNorm(sublayer).name());
                let module = format!("{path}.{}", names.layer_norm(sublayer));
                for p in ["weight", "bias"] {
                    put(
                        format!("{module}.{p}"),
                        bundle_tensor(bundle, &format!("{site}.{p}"))?,
                    );
                }
            }
        }
    }
    let mut modules_to_save = vec!["classifier"];
    if layout.layer_norms {
        for p in ["weight", "bias"] {
            let t = bundle_tensor(bundle, &format!("task.embeddings.LayerNorm.{p}"))?;
            put(format!("{}.{p}", names.embeddings_layer_norm()), t);
        }
        modules_to_save.push("LayerNorm");
        if config.shape.family == Family::Albert {
            modules_to_save.push("full_layer_layer_norm");
        }
    }
    if layout.pooler {
        for p in ["weight", "bias"] {
            put(
                format!("{}.{p}", names.pooler()),
                bundle_tensor(bundle, &format!("task.pooler.{p}"))?,
            );
        }
        modules_to_save.push("pooler");
    }
    for p in ["weight", "bias"] {
        put(
            format!("classifier.{p}"),
            bundle_tensor(bundle, &format!("classifier.{p}"))?,
        );
    }
    let dropout = bundle.meta.training["config"]["dropout"]
        .as_f64()
        .unwrap_or(0.0);
    let config_json = json!({
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": base_model,
        "r": spec.size,
        "lora_alpha": number(spec.alpha),
        "target_modules": TARGETS.map(|(_, n)| n),
        "lora_dropout": dropout,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": modules_to_save,
        "inference_mode": true,
        "init_lora_weights": true,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": null,
        "layers_pattern": null,
        "revision": null,
    });
    Ok(ExportFiles {
        json: vec![(CONFIG_FILE.into(), config_json)],
        tensors: vec![(WEIGHTS_FILE.into(), out)],
    })
}

/// An integral f64 as a JSON integer (PEFT types `lora_alpha` as int), else as a float.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The `adapter_config.json` settings adalbert maps, checked.
struct LoraSettings {
    r: usize,
    /// adalbert's alpha: the update is scaled by `alpha / r`.
    alpha: f64,
    targets: Vec<Projection>,
}

fn settings(cfg: &Value, file: &Path) -> Result<LoraSettings> {
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: file.to_path_buf(),
        field: field.into(),
        reason,
    };
    let peft_type = cfg["peft_type"].as_str().unwrap_or("(missing)");
    if peft_type != "LORA" {
        return Err(refuse(
            "peft_type",
            format!("{peft_type}: adalbert maps LoRA adapters only"),
        ));
    }
    let task_type = cfg["task_type"].as_str().unwrap_or("(missing)");
    if task_type != "SEQ_CLS" {
        return Err(refuse(
            "task_type",
            format!(
                "{task_type}: adalbert's task head is sequence classification (SEQ_CLS, a \
                 classifier on the pooler output)"
            ),
        ));
    }
    let r = cfg["r"]
        .as_u64()
        .filter(|&r| r >= 1 && r as usize <= adalbert_core::adapter::MAX_ADAPTER_SIZE)
        .ok_or_else(|| refuse("r", format!("{}: expected a rank in 1..=8192", cfg["r"])))?
        as usize;
    let lora_alpha = cfg["lora_alpha"]
        .as_f64()
        .filter(|a| a.is_finite() && *a > 0.0)
        .ok_or_else(|| {
            refuse(
                "lora_alpha",
                format!("{}: expected a positive number", cfg["lora_alpha"]),
            )
        })?;
    // rsLoRA scales by alpha / sqrt(r); adalbert by alpha' / r, so alpha' = alpha * sqrt(r).
    let alpha = if cfg["use_rslora"].as_bool() == Some(true) {
        lora_alpha * (r as f64).sqrt()
    } else {
        lora_alpha
    };
    let flag_refusals: [(&str, &str); 4] = [
        ("use_dora", "DoRA rescales each weight column by a learned magnitude, which adalbert's LoRA does not have"),
        ("lora_bias", "a LoRA bias term, which adalbert's LoRA does not have"),
        ("fan_in_fan_out", "transposed (Conv1D) weights, which BERT and ALBERT do not use"),
        ("use_qalora", "quantization-aware LoRA, which adalbert does not implement"),
    ];
    for (field, why) in flag_refusals {
        if cfg[field].as_bool() == Some(true) {
            return Err(refuse(field, format!("true: {why}")));
        }
    }
    if let Some(bias) = cfg["bias"].as_str().filter(|b| *b != "none") {
        return Err(refuse(
            "bias",
            format!("{bias}: PEFT trains the model's biases too, which adalbert keeps frozen"),
        ));
    }
    for field in ["rank_pattern", "alpha_pattern"] {
        if cfg[field].as_object().is_some_and(|o| !o.is_empty()) {
            return Err(refuse(
                field,
                format!(
                    "{}: per-module ranks or alphas; adalbert's LoRA has one rank and alpha",
                    cfg[field]
                ),
            ));
        }
    }
    let nonnull_refusals: [(&str, &str); 7] = [
        (
            "layers_to_transform",
            "LoRA on only some layers; adalbert's LoRA is in every layer",
        ),
        (
            "layers_pattern",
            "LoRA on only some layers; adalbert's LoRA is in every layer",
        ),
        (
            "exclude_modules",
            "LoRA left out of some modules; adalbert's LoRA is in every layer",
        ),
        (
            "layer_replication",
            "layers repeated into a deeper model, which the backbone is not",
        ),
        (
            "target_parameters",
            "LoRA on raw parameters rather than modules",
        ),
        (
            "trainable_token_indices",
            "trained embedding rows, which adalbert keeps frozen",
        ),
        (
            "alora_invocation_tokens",
            "activated LoRA, which adalbert does not implement",
        ),
    ];
    for (field, why) in nonnull_refusals {
        let v = &cfg[field];
        if !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()) {
            return Err(refuse(field, format!("{v}: {why}")));
        }
    }
    let list = cfg["target_modules"].as_array().ok_or_else(|| {
        refuse(
            "target_modules",
            format!(
                "{}: expected a list of module names (a regular expression is not mapped)",
                cfg["target_modules"]
            ),
        )
    })?;
    let mut targets = Vec::new();
    for t in list {
        let name = t.as_str().unwrap_or_default();
        let last = name.rsplit('.').next().unwrap_or_default();
        match TARGETS.iter().find(|(_, n)| *n == last) {
            Some((p, _)) => targets.push(*p),
            None => {
                return Err(refuse(
                    "target_modules",
                    format!(
                        "{t}: adalbert's LoRA adapts only the attention `query` and `value` \
                         projections (key, dense, intermediate and output layers have no LoRA \
                         site)"
                    ),
                ))
            }
        }
    }
    if let Some(list) = cfg["modules_to_save"].as_array() {
        for m in list {
            let name = m.as_str().unwrap_or_default();
            let known = [
                "classifier",
                "score",
                "LayerNorm",
                "full_layer_layer_norm",
                "pooler",
            ];
            if !known.contains(&name) {
                return Err(refuse(
                    "modules_to_save",
                    format!(
                        "{m}: a bundle owns only the classifier, the LayerNorms and the pooler \
                         besides its adapter (known: classifier, LayerNorm, \
                         full_layer_layer_norm, pooler)"
                    ),
                ));
            }
        }
    }
    Ok(LoraSettings { r, alpha, targets })
}

/// A bundle from the PEFT adapter in `adapter_dir`, for the backbone `backbone` (identified by
/// `id`); `task` names it, `labels` name the classifier's outputs (default `LABEL_{i}`).
pub fn import(
    adapter_dir: &Path,
    backbone: &Backbone,
    id: &BackboneId,
    task: String,
    labels: Option<Vec<String>>,
) -> Result<Imported> {
    let config = &backbone.config;
    let hidden = config.shape.hidden_size;
    let cfg_path = adapter_dir.join(CONFIG_FILE);
    let cfg = read_json(&cfg_path)?;
    let s = settings(&cfg, &cfg_path)?;
    let (file, weights) = read_weights(adapter_dir, &[WEIGHTS_FILE, "adapter_model.bin"])?;
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: file.clone(),
        field: field.into(),
        reason,
    };
    let names = HfNames::new(config);
    let other = if names.root() == "bert" {
        "albert"
    } else {
        "bert"
    };
    if let Some(key) = weights
        .keys()
        .find(|k| k.starts_with(&format!("{PREFIX}{other}.")))
    {
        return Err(refuse(
            key,
            format!(
                "a module of {}: the adapter was made for another architecture (--model is {})",
                other.to_uppercase(),
                names.family()
            ),
        ));
    }
    // Every tensor must land somewhere: `taken` marks what was mapped.
    let mut taken: HashMap<&str, bool> = weights.keys().map(|k| (k.as_str(), false)).collect();
    let mut get = |name: &str, shape: &[usize]| -> Result<Option<Tensor>> {
        let key = format!("{PREFIX}{name}");
        let Some(t) = weights.get(&key) else {
            return Ok(None);
        };
        taken.insert(
            weights
                .get_key_value(&key)
                .map(|(k, _)| k.as_str())
                .unwrap_or(""),
            true,
        );
        if t.dims() != shape {
            return Err(ModelError::Interop {
                path: file.clone(),
                field: key,
                reason: format!(
                    "shape {:?}, but --model ({}, hidden size {hidden}) needs {shape:?}: the \
                     adapter was made for another base model",
                    t.dims(),
                    names.family()
                ),
            });
        }
        Ok(Some(t.clone()))
    };
    let stored = names.stored_layers();
    let mut per_stored = Vec::with_capacity(stored.len());
    let mut any_norm = false;
    for (path, _) in &stored {
        let mut layer = HashMap::new();
        for (projection, _) in TARGETS {
            let module = format!("{path}.{}", names.projection(projection));
            let a = get(&format!("{module}.lora_A.weight"), &[s.r, hidden])?;
            let b = get(&format!("{module}.lora_B.weight"), &[hidden, s.r])?;
            let site = Site::Lora(projection).name();
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                // A projection PEFT did not target has no update: B = 0 is that, exactly.
                (None, None) if !s.targets.contains(&projection) => (
                    Tensor::zeros(
                        (s.r, hidden),
                        candle_core::DType::F32,
                        &candle_core::Device::Cpu,
                    )?,
                    Tensor::zeros(
                        (hidden, s.r),
                        candle_core::DType::F32,
                        &candle_core::Device::Cpu,
                    )?,
                ),
                _ => {
                    return Err(refuse(
                        &format!("{PREFIX}{module}.lora_A.weight"),
                        format!(
                            "missing: --model has {} layer(s) and each needs LoRA on {}; the \
                             adapter was made for another base model",
                            stored.len(),
                            names.projection(projection)
                        ),
                    ))
                }
            };
            layer.insert(format!("{site}.a"), a);
            layer.insert(format!("{site}.b"), b);
        }
        for sublayer in [Sublayer::Attention, Sublayer::FeedForward] {
            let module = format!("{path}.{}", names.layer_norm(sublayer));
            let w = get(&format!("{module}.weight"), &[hidden])?;
            let b = get(&format!("{module}.bias"), &[hidden])?;
            if let (Some(w), Some(b)) = (w, b) {
                let site = Site::LayerNorm(sublayer).name();
                layer.insert(format!("{site}.weight"), w);
                layer.insert(format!("{site}.bias"), b);
                any_norm = true;
            }
        }
        per_stored.push(layer);
    }
    let e = config.shape.embedding_size;
    let emb_ln = (
        get(&format!("{}.weight", names.embeddings_layer_norm()), &[e])?,
        get(&format!("{}.bias", names.embeddings_layer_norm()), &[e])?,
    );
    let pooler = (
        get(&format!("{}.weight", names.pooler()), &[hidden, hidden])?,
        get(&format!("{}.bias", names.pooler()), &[hidden])?,
    );
    let classifier_w = weights.get(&format!("{PREFIX}classifier.weight")).cloned();
    let num_labels = match classifier_w.as_ref().map(|t| t.dims().to_vec()) {
        Some(d) if d.len() == 2 && d[1] == hidden && d[0] >= 1 => d[0],
        Some(d) => {
            return Err(refuse(
                &format!("{PREFIX}classifier.weight"),
                format!("shape {d:?}: expected [num_labels, {hidden}] for --model"),
            ))
        }
        None => {
            return Err(refuse(
                &format!("{PREFIX}classifier.weight"),
                "missing: the classifier is not among the saved modules (modules_to_save), so \
                 the head would be random"
                    .into(),
            ))
        }
    };
    let classifier = (
        get("classifier.weight", &[num_labels, hidden])?,
        get("classifier.bias", &[num_labels])?,
    );
    if let Some((key, _)) = taken.iter().find(|(_, used)| !**used) {
        let root = names.root();
        let reason = if !key.starts_with(&format!("{PREFIX}{root}.")) && key.contains("bert.") {
            format!(
                "not a module of --model: the adapter was made for another architecture \
                 (--model is {})",
                names.family()
            )
        } else {
            "not a module adalbert maps (LoRA on query/value, the classifier, LayerNorms, the \
             pooler), or a layer --model does not have"
                .to_string()
        };
        return Err(refuse(key, reason));
    }
    // Partial LayerNorm copies are completed with the backbone's own (exactly the module
    // PEFT left untouched).
    let (sharing, mut tensors) = spread_stored(config, &per_stored);
    let layer_norms = any_norm || emb_ln.0.is_some();
    if layer_norms {
        let task_layers = match sharing {
            crate::adapters::Sharing::Shared => 1,
            crate::adapters::Sharing::PerApplication => config.shape.applications(),
        };
        for k in 0..task_layers {
            for sublayer in [Sublayer::Attention, Sublayer::FeedForward] {
                let site = format!("task.layers.{k}.{}", Site::LayerNorm(sublayer).name());
                if !tensors.contains_key(&format!("{site}.weight")) {
                    let ln = backbone.encoder.layer(k).layer_norm(sublayer);
                    tensors.insert(format!("{site}.weight"), ln.weight.clone());
                    tensors.insert(format!("{site}.bias"), ln.bias.clone());
                }
            }
        }
        let ln = &backbone.embeddings.layer_norm;
        let (w, b) = match emb_ln {
            (Some(w), Some(b)) => (w, b),
            _ => (ln.weight.clone(), ln.bias.clone()),
        };
        tensors.insert("task.embeddings.LayerNorm.weight".into(), w);
        tensors.insert("task.embeddings.LayerNorm.bias".into(), b);
    }
    let has_pooler = matches!(pooler, (Some(_), Some(_)));
    if let (Some(w), Some(b)) = pooler {
        tensors.insert("task.pooler.weight".into(), w);
        tensors.insert("task.pooler.bias".into(), b);
    }
    match classifier {
        (Some(w), Some(b)) => {
            tensors.insert("classifier.weight".into(), w);
            tensors.insert("classifier.bias".into(), b);
        }
        _ => {
            return Err(refuse(
                &format!("{PREFIX}classifier.bias"),
                "missing: the classifier's bias is not in the adapter".into(),
            ))
        }
    }
    let layout = TaskLayout {
        adapter: Some(AdapterSpec {
            kind: AdapterKind::Lora,
            size: s.r,
            alpha: s.alpha,
            activation: Activation::Relu,
        }),
        sharing,
        layer_norms,
        pooler: has_pooler,
        num_labels,
        pooling: Pooling::Pooler,
    };
    // The same check a bundle load makes: every tensor the layout needs, at its shape.
    TaskParams::from_tensors(config, &layout, &tensors)?;
    let labels = label_names(labels, num_labels, &file)?;
    let source = Source {
        format: Format::Peft,
        dir: adapter_dir,
        config: cfg,
    };
    let meta = imported_meta(source, task, labels, layout, config, id);
    Ok(Imported { meta, tensors })
}
