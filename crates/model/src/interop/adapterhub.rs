//! AdapterHub bottleneck adapters with their classification head (`adapter_config.json`,
//! `adapter.safetensors`, `head_config.json`, `model_head.safetensors`, as the `adapters`
//! package 1.3 writes with `save_adapter(dir, name, with_head=True, use_safetensors=True)`;
//! import also reads its default `pytorch_adapter.bin` / `pytorch_model_head.bin`). Fixtures:
//! tools/interop/make_adapterhub_fixture.py.
//!
//! # Why the math is the same
//!
//! At the end of a sublayer with input `x` and output `y` (after its dense map and dropout),
//! the `adapters` package (`methods/bottleneck.py`, `methods/modeling.py`) computes, for one
//! adapter:
//!
//! ```text
//! pre_forward:   h = y; if original_ln_before { h = LN(h + x) }; residual = h (or y if
//!                residual_before_ln)                  -- parallel adapters: h = residual = x
//! forward:       out = scaling * up(act(down(ln_before?(h)))) [* gate] ; sequential: + residual
//!                (ln_after: a new LayerNorm around that sum)
//! post_forward:  parallel: out = out + y;  if original_ln_after { out = LN(out + x) }
//! ```
//!
//! With `original_ln_before = false`, `original_ln_after = true`, no `ln_before`/`ln_after`,
//! no gating and `scaling` 1 this is `LN(x + y + up(act(down(y))))` for a sequential adapter
//! and `LN(x + y + up(act(down(x))))` for a parallel one: adalbert's
//! `LayerNorm'(x + s(y + p(x)))` with `s` (Houlsby's and Pfeiffer's places) or `p` (the
//! parallel adapter) and the backbone's own LayerNorm. A `scaling` `c` is `up` scaled by `c`
//! (weight and bias), folded in on import. So adalbert's kinds are these explicit BnConfigs:
//!
//! | adalbert  | mh_adapter | output_adapter | is_parallel | AdapterHub preset it differs from |
//! |-----------|------------|----------------|-------------|-----------------------------------|
//! | houlsby   | true       | true           | false       | `double_seq_bn` (non_linearity)   |
//! | pfeiffer  | false      | true           | false       | `seq_bn` (original_ln_before)     |
//! | parallel  | false      | true           | true        | `par_bn` (scaling 4.0)            |
//!
//! AdapterHub's `seq_bn` (Pfeiffer et al.) has `original_ln_before = true`: it adds the
//! sublayer's LayerNorm *before* the adapter as well, which adalbert's pfeiffer placement
//! (Houlsby's FFN-output adapter alone) does not have, so it is refused on import.
//!
//! AdapterHub keeps the model's LayerNorms frozen and has no place for per-task copies, so a
//! bundle with `layer_norms` copies is refused on export (`adalbert train` trains them with
//! an adapter unless given `--no-layer-norms`). Its adapters attach to the model's stored layers: ALBERT's one shared
//! layer gets one adapter, adalbert's `shared` sharing.
//!
//! The head: `layers: 1` is `Linear(dropout(z))` on the pooler output (`use_pooler: true`,
//! adalbert's `pooler` pooling) or on the `[CLS]` state (`use_pooler: false`, `cls`
//! pooling); `layers: 2` with `activation_function: tanh` on the `[CLS]` state is
//! `Linear(dropout(tanh(Linear'(dropout(z)))))`, i.e. a per-task pooler copy (adalbert's
//! `--train-pooler`) then the classifier. Mean pooling has no AdapterHub head.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::{json, Value};

use super::{
    bundle_tensor, check_mode, imported_meta, label_names, read_json, read_weights, spread_stored,
    task_layer_per_stored, ExportFiles, Format, HfNames, Imported, Source,
};
use crate::adapters::{AdapterKind, AdapterSpec, Pooling, Site, Sublayer, TaskLayout, TaskParams};
use crate::backbone::Backbone;
use crate::bundle::{BackboneId, TaskBundle};
use crate::config::{Activation, EncoderConfig, Family};
use crate::error::{ModelError, Result};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter.safetensors";
pub const HEAD_CONFIG_FILE: &str = "head_config.json";
pub const HEAD_WEIGHTS_FILE: &str = "model_head.safetensors";
/// The `adapters` version whose layout this writes.
const VERSION: &str = "adapters.1.3.0";

/// The module holding a bottleneck at `sublayer`'s end inside a stored layer.
fn location(config: &EncoderConfig, sublayer: Sublayer) -> &'static str {
    match (config.shape.family, sublayer) {
        (Family::Bert, Sublayer::Attention) => "attention.output.adapters",
        (Family::Bert, Sublayer::FeedForward) => "output.adapters",
        (Family::Albert, Sublayer::Attention) => "attention.attention_adapters.adapters",
        (Family::Albert, Sublayer::FeedForward) => "output_adapters.adapters",
    }
}

/// `mh_adapter`, `output_adapter`, `is_parallel` of adalbert's bottleneck kinds.
fn placement(kind: AdapterKind) -> Option<(bool, bool, bool)> {
    match kind {
        AdapterKind::Houlsby => Some((true, true, false)),
        AdapterKind::Pfeiffer => Some((false, true, false)),
        AdapterKind::Parallel => Some((false, true, true)),
        AdapterKind::Lora => None,
    }
}

/// An adapter name AdapterHub accepts as a module key (no dots).
fn adapter_name(task: &str) -> String {
    let n: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() {
        "task".into()
    } else {
        n
    }
}

/// The model-level fields AdapterHub writes beside each config.
fn envelope(config: &EncoderConfig, base_model: &str, name: &str, inner: Value) -> Value {
    let (class, ty) = match config.shape.family {
        Family::Bert => ("BertAdapterModel", "bert"),
        Family::Albert => ("AlbertAdapterModel", "albert"),
    };
    json!({
        "config": inner,
        "hidden_size": config.shape.hidden_size,
        "model_class": class,
        "model_name": base_model,
        "model_type": ty,
        "name": name,
        "version": VERSION,
    })
}

/// The AdapterHub files of a bottleneck bundle trained on `backbone`; `base_model` is recorded
/// as `model_name`. Refuses what AdapterHub cannot express exactly (see module docs).
pub fn export(bundle: &TaskBundle, backbone: &Backbone, base_model: &str) -> Result<ExportFiles> {
    check_mode(bundle, Format::AdapterHub)?;
    let config = &backbone.config;
    let layout = &bundle.meta.layout;
    let hidden = config.shape.hidden_size;
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: bundle.path.clone(),
        field: field.into(),
        reason,
    };
    let spec = match layout.adapter {
        Some(s) if s.kind != AdapterKind::Lora => s,
        Some(s) => {
            return Err(refuse(
                "layout.adapter",
                format!("{s}: a LoRA bundle; use --format peft"),
            ))
        }
        None => {
            return Err(refuse(
                "layout.adapter",
                "none (a head-only bundle): an AdapterHub adapter needs a bottleneck adapter"
                    .into(),
            ))
        }
    };
    if layout.layer_norms {
        return Err(refuse(
            "layout.layer_norms",
            "true: the bundle trained its own copies of the LayerNorms, but AdapterHub keeps \
             the model's LayerNorms frozen and has no place for per-task copies (train with \
             `adalbert train --no-layer-norms` to keep the backbone's, or export a LoRA bundle \
             to PEFT, which can carry the copies)"
                .into(),
        ));
    }
    let (use_pooler, head_layers) = match (layout.pooling, layout.pooler) {
        (Pooling::Pooler, false) => (true, 1),
        (Pooling::Cls, false) => (false, 1),
        // The pooler copy then the classifier, on the [CLS] state (module docs).
        (Pooling::Pooler, true) => (false, 2),
        (Pooling::Cls, true) | (Pooling::Mean, _) => {
            return Err(refuse(
                "layout.pooling",
                format!(
                    "{}: AdapterHub's classification head reads the pooler output or the \
                     [CLS] state; train with --pooling pooler or cls",
                    match layout.pooling {
                        Pooling::Mean => "mean",
                        _ => "cls with a pooler copy",
                    }
                ),
            ))
        }
    };
    if !hidden.is_multiple_of(spec.size) {
        return Err(refuse(
            "layout.adapter",
            format!(
                "{spec}: AdapterHub sizes the bottleneck as hidden_size // reduction_factor, and \
                 no reduction factor gives width {} from hidden size {hidden} exactly (use a \
                 divisor of {hidden})",
                spec.size
            ),
        ));
    }
    let (mh, output, parallel) = placement(spec.kind).unwrap_or((false, true, false));
    let name = adapter_name(&bundle.meta.task);
    let stored = task_layer_per_stored(config, layout, &bundle.path, Format::AdapterHub)?;
    let mut weights = HashMap::new();
    for (path, k) in &stored {
        for site in spec.kind.sites() {
            let sublayer = match site {
                Site::Sequential(s) | Site::Parallel(s) => *s,
                _ => continue,
            };
            let ours = format!("task.layers.{k}.{}", site.name());
            let theirs = format!("{path}.{}.{name}", location(config, sublayer));
            for (from, to) in [("down", "adapter_down.0"), ("up", "adapter_up")] {
                for p in ["weight", "bias"] {
                    weights.insert(
                        format!("{theirs}.{to}.{p}"),
                        bundle_tensor(bundle, &format!("{ours}.{from}.{p}"))?,
                    );
                }
            }
        }
    }
    let dropout = bundle.meta.training["config"]["dropout"]
        .as_f64()
        .unwrap_or(0.0);
    let bn = json!({
        "mh_adapter": mh,
        "output_adapter": output,
        "reduction_factor": hidden / spec.size,
        "non_linearity": spec.activation.as_str(),
        "original_ln_before": false,
        "original_ln_after": true,
        "ln_before": false,
        "ln_after": false,
        "residual_before_ln": true,
        "adapter_residual_before_ln": false,
        "is_parallel": parallel,
        "scaling": 1.0,
        "use_gating": false,
        "init_weights": "bert",
        "init_weights_seed": null,
        "inv_adapter": null,
        "inv_adapter_reduction_factor": null,
        "cross_adapter": false,
        "leave_out": [],
        "dropout": 0.0,
        "phm_layer": false,
        "stochastic_depth": 0.0,
    });
    let mut head = HashMap::new();
    let classifier_at = if head_layers == 2 {
        head.insert(
            format!("heads.{name}.1.weight"),
            bundle_tensor(bundle, "task.pooler.weight")?,
        );
        head.insert(
            format!("heads.{name}.1.bias"),
            bundle_tensor(bundle, "task.pooler.bias")?,
        );
        4
    } else {
        1
    };
    for p in ["weight", "bias"] {
        head.insert(
            format!("heads.{name}.{classifier_at}.{p}"),
            bundle_tensor(bundle, &format!("classifier.{p}"))?,
        );
    }
    let label2id: Value = if bundle.meta.labels.is_empty() {
        Value::Null
    } else {
        bundle
            .meta
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), json!(i)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let head_cfg = json!({
        "head_type": "classification",
        "num_labels": layout.num_labels,
        "layers": head_layers,
        "activation_function": "tanh",
        "label2id": label2id,
        "use_pooler": use_pooler,
        "bias": true,
        "dropout_prob": dropout,
    });
    Ok(ExportFiles {
        json: vec![
            (CONFIG_FILE.into(), envelope(config, base_model, &name, bn)),
            (
                HEAD_CONFIG_FILE.into(),
                envelope(config, base_model, &name, head_cfg),
            ),
        ],
        tensors: vec![
            (WEIGHTS_FILE.into(), weights),
            (HEAD_WEIGHTS_FILE.into(), head),
        ],
    })
}

/// The BnConfig settings adalbert maps, checked (module docs): the kind, its activation and
/// the factor folded into `up`.
fn bn_settings(bn: &Value, file: &Path) -> Result<(AdapterKind, Activation, f64)> {
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: file.to_path_buf(),
        field: format!("config.{field}"),
        reason,
    };
    if !bn.is_object() {
        return Err(refuse(
            "",
            format!(
                "{bn}: a named preset; adalbert reads the full config dict that save_adapter \
                 writes"
            ),
        ));
    }
    // A bottleneck config has no `architecture` (AdapterConfig reads None as BnConfig).
    if let Some(a) = bn["architecture"].as_str() {
        return Err(refuse(
            "architecture",
            format!("{a}: adalbert maps bottleneck adapters only (LoRA: use --format peft)"),
        ));
    }
    let flag = |field: &str, default: bool| bn[field].as_bool().unwrap_or(default);
    let fixed: [(&str, bool, bool, &str); 6] = [
        ("original_ln_before", false, true, "(AdapterHub's seq_bn / Pfeiffer) adds the sublayer's LayerNorm before the adapter, which adalbert's pfeiffer placement does not have"),
        ("original_ln_after", true, false, "leaves out the sublayer's residual and LayerNorm after the adapter, which every adalbert placement applies"),
        ("ln_before", false, true, "adds a new LayerNorm before the bottleneck, which adalbert's adapters do not have"),
        ("ln_after", false, true, "adds a new LayerNorm after the bottleneck, which adalbert's adapters do not have"),
        ("use_gating", false, true, "gates the adapter by a learned sigmoid, which adalbert's adapters do not have"),
        ("phm_layer", false, true, "uses parameterized hypercomplex (Compacter) projections, not plain linear maps"),
    ];
    for (field, default, bad, why) in fixed {
        if flag(field, default) == bad {
            return Err(refuse(field, format!("{bad}: {why}")));
        }
    }
    if !bn["inv_adapter"].is_null() {
        return Err(refuse(
            "inv_adapter",
            format!(
                "{}: an invertible adapter on the embeddings, which adalbert does not have",
                bn["inv_adapter"]
            ),
        ));
    }
    if bn["leave_out"].as_array().is_some_and(|l| !l.is_empty()) {
        return Err(refuse(
            "leave_out",
            format!(
                "{}: adapters left out of some layers; adalbert's adapters are in every layer",
                bn["leave_out"]
            ),
        ));
    }
    let (mh, output, parallel) = (
        flag("mh_adapter", false),
        flag("output_adapter", false),
        flag("is_parallel", false),
    );
    let kind = AdapterKind::ALL
        .into_iter()
        .find(|k| placement(*k) == Some((mh, output, parallel)))
        .ok_or_else(|| {
            refuse(
                if output {
                    "mh_adapter"
                } else {
                    "output_adapter"
                },
                format!(
                    "mh_adapter {mh}, output_adapter {output}, is_parallel {parallel}: adalbert \
                     has sequential adapters after attention and FFN (houlsby) or after the FFN \
                     (pfeiffer), and a parallel one beside the FFN (parallel)"
                ),
            )
        })?;
    let act_name = bn["non_linearity"]
        .as_str()
        .unwrap_or("(missing)")
        .to_lowercase();
    let activation = Activation::parse(&act_name).ok_or_else(|| {
        refuse(
            "non_linearity",
            format!("{act_name}: adalbert's adapters use relu, gelu or gelu_new"),
        )
    })?;
    let scaling = match &bn["scaling"] {
        Value::Null => 1.0,
        v => v.as_f64().filter(|s| s.is_finite()).ok_or_else(|| {
            refuse(
                "scaling",
                format!(
                    "{v}: a learned scaling is not mapped; a constant factor is (folded into \
                     the up-projection)"
                ),
            )
        })?,
    };
    Ok((kind, activation, scaling))
}

/// A bundle from the AdapterHub adapter (with its head) in `adapter_dir`, for `backbone`
/// (identified by `id`). The task is named `task`, else the adapter's name, else `folder`;
/// `labels` default to the head's `label2id`.
pub fn import(
    adapter_dir: &Path,
    backbone: &Backbone,
    id: &BackboneId,
    task: Option<String>,
    folder: String,
    labels: Option<Vec<String>>,
) -> Result<Imported> {
    let config = &backbone.config;
    let hidden = config.shape.hidden_size;
    let names = HfNames::new(config);
    let cfg_path = adapter_dir.join(CONFIG_FILE);
    let cfg = read_json(&cfg_path)?;
    check_envelope(&cfg, &cfg_path, config, &names)?;
    let (kind, activation, scaling) = bn_settings(&cfg["config"], &cfg_path)?;
    let name = cfg["name"].as_str().unwrap_or_default().to_string();
    let (file, weights) = read_weights(adapter_dir, &[WEIGHTS_FILE, "pytorch_adapter.bin"])?;
    let refuse = |file: &Path, field: &str, reason: String| ModelError::Interop {
        path: file.to_path_buf(),
        field: field.into(),
        reason,
    };
    // The bottleneck width, from the first down-projection (checked against every other).
    let width = weights
        .iter()
        .find(|(k, _)| k.ends_with(".adapter_down.0.weight"))
        .map(|(_, t)| t.dims()[0])
        .ok_or_else(|| {
            refuse(
                &file,
                "adapter_down.0.weight",
                "no down-projection in the file".into(),
            )
        })?;
    let mut used = 0;
    let mut per_stored = Vec::new();
    for (path, _) in names.stored_layers() {
        let mut layer = HashMap::new();
        for site in kind.sites() {
            let sublayer = match site {
                Site::Sequential(s) | Site::Parallel(s) => *s,
                _ => continue,
            };
            let theirs = format!("{path}.{}.{name}", location(config, sublayer));
            for (to, from, shape) in [
                ("down.weight", "adapter_down.0.weight", vec![width, hidden]),
                ("down.bias", "adapter_down.0.bias", vec![width]),
                ("up.weight", "adapter_up.weight", vec![hidden, width]),
                ("up.bias", "adapter_up.bias", vec![hidden]),
            ] {
                let key = format!("{theirs}.{from}");
                let t = weights.get(&key).ok_or_else(|| {
                    refuse(
                        &file,
                        &key,
                        format!(
                            "missing: a {kind:?} adapter on --model ({}) needs it in every \
                             layer; the adapter was made for another base model",
                            names.family()
                        )
                        .to_lowercase(),
                    )
                })?;
                if t.dims() != shape.as_slice() {
                    return Err(refuse(
                        &file,
                        &key,
                        format!(
                            "shape {:?}, expected {shape:?} for --model (hidden size {hidden})",
                            t.dims()
                        ),
                    ));
                }
                used += 1;
                // scaling * up(z) is up with weight and bias scaled: folded in here.
                let t = if to.starts_with("up") && scaling != 1.0 {
                    (t * scaling)?
                } else {
                    t.clone()
                };
                layer.insert(format!("{}.{to}", site.name()), t);
            }
        }
        per_stored.push(layer);
    }
    if used != weights.len() {
        let mapped: Vec<String> = names
            .stored_layers()
            .iter()
            .flat_map(|(p, _)| {
                [Sublayer::Attention, Sublayer::FeedForward]
                    .map(|s| format!("{p}.{}.{name}.", location(config, s)))
            })
            .collect();
        let extra = weights
            .keys()
            .find(|k| !mapped.iter().any(|m| k.starts_with(m.as_str())))
            .or_else(|| weights.keys().next())
            .cloned()
            .unwrap_or_default();
        return Err(refuse(
            &file,
            &extra,
            format!(
                "not a module adalbert maps for this config ({kind:?} on --model, {}), or a \
                 layer --model does not have",
                names.family()
            )
            .to_lowercase(),
        ));
    }
    let (sharing, mut tensors) = spread_stored(config, &per_stored);
    let head = read_head(adapter_dir, config, &mut tensors)?;
    let spec = AdapterSpec {
        kind,
        size: width,
        alpha: width as f64,
        activation,
    };
    let layout = TaskLayout {
        adapter: Some(spec),
        sharing,
        layer_norms: false,
        pooler: head.pooler,
        num_labels: head.num_labels,
        pooling: head.pooling,
    };
    TaskParams::from_tensors(config, &layout, &tensors)?;
    let labels = match labels {
        Some(l) => label_names(Some(l), head.num_labels, &head.file)?,
        None if head.num_labels > 1 && head.labels.len() == head.num_labels => head.labels,
        None => label_names(None, head.num_labels, &head.file)?,
    };
    let task = task
        .or_else(|| (!name.is_empty()).then(|| name.clone()))
        .unwrap_or(folder);
    let source = Source {
        format: Format::AdapterHub,
        dir: adapter_dir,
        config: json!({"adapter": cfg, "head": head.config}),
    };
    let meta = imported_meta(source, task, labels, layout, config, id);
    Ok(Imported { meta, tensors })
}

/// `model_type` and `hidden_size` of the file must be those of --model.
fn check_envelope(cfg: &Value, file: &Path, config: &EncoderConfig, names: &HfNames) -> Result<()> {
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: file.to_path_buf(),
        field: field.into(),
        reason,
    };
    if let Some(t) = cfg["model_type"].as_str() {
        if t != names.root() {
            return Err(refuse(
                "model_type",
                format!(
                    "{t}: the adapter was made for another architecture (--model is {})",
                    names.family()
                ),
            ));
        }
    }
    if let Some(h) = cfg["hidden_size"].as_u64() {
        if h as usize != config.shape.hidden_size {
            return Err(refuse(
                "hidden_size",
                format!(
                    "{h}: the adapter was made for another base model (--model has hidden size \
                     {})",
                    config.shape.hidden_size
                ),
            ));
        }
    }
    Ok(())
}

/// What the head maps to.
struct Head {
    file: std::path::PathBuf,
    config: Value,
    num_labels: usize,
    labels: Vec<String>,
    pooling: Pooling,
    pooler: bool,
}

/// Reads the classification head into `tensors` (`classifier.*`, and `task.pooler.*` for a
/// 2-layer tanh head on the [CLS] state).
fn read_head(
    dir: &Path,
    config: &EncoderConfig,
    tensors: &mut HashMap<String, Tensor>,
) -> Result<Head> {
    let hidden = config.shape.hidden_size;
    let cfg_path = dir.join(HEAD_CONFIG_FILE);
    if !cfg_path.is_file() {
        return Err(ModelError::Interop {
            path: dir.to_path_buf(),
            field: HEAD_CONFIG_FILE.into(),
            reason: "missing: save the adapter with its head (save_adapter(..., with_head=True)); \
                     a bundle needs the classifier"
                .into(),
        });
    }
    let cfg = read_json(&cfg_path)?;
    let refuse = |field: &str, reason: String| ModelError::Interop {
        path: cfg_path.clone(),
        field: format!("config.{field}"),
        reason,
    };
    let h = &cfg["config"];
    let head_type = h["head_type"].as_str().unwrap_or("(missing)");
    if head_type != "classification" {
        return Err(refuse(
            "head_type",
            format!("{head_type}: adalbert's heads are classification (or 1-output regression)"),
        ));
    }
    let num_labels = h["num_labels"]
        .as_u64()
        .filter(|n| *n >= 1)
        .ok_or_else(|| refuse("num_labels", format!("{}: expected >= 1", h["num_labels"])))?
        as usize;
    let layers = h["layers"].as_u64().unwrap_or(0);
    let use_pooler = h["use_pooler"].as_bool().unwrap_or(false);
    let act = h["activation_function"].as_str().unwrap_or("");
    let (pooling, pooler) = match (layers, use_pooler) {
        (1, true) => (Pooling::Pooler, false),
        (1, false) => (Pooling::Cls, false),
        (2, false) if act == "tanh" => (Pooling::Pooler, true),
        (2, false) => {
            return Err(refuse(
                "activation_function",
                format!("{act}: a 2-layer head maps (as a pooler copy) only with tanh"),
            ))
        }
        _ => {
            return Err(refuse(
                "layers",
                format!(
                    "{layers} with use_pooler {use_pooler}: adalbert's head is one linear layer \
                     on the pooler output or [CLS] state, or a pooler copy (2 layers, tanh, on \
                     [CLS]) then one"
                ),
            ))
        }
    };
    let has_bias = h["bias"].as_bool().unwrap_or(true);
    let name = cfg["name"].as_str().unwrap_or_default();
    let (file, w) = read_weights(dir, &[HEAD_WEIGHTS_FILE, "pytorch_model_head.bin"])?;
    let get = |idx: usize, p: &str, shape: &[usize]| -> Result<Tensor> {
        let key = format!("heads.{name}.{idx}.{p}");
        match w.get(&key) {
            Some(t) if t.dims() == shape => Ok(t.clone()),
            Some(t) => Err(ModelError::Interop {
                path: file.clone(),
                field: key,
                reason: format!("shape {:?}, expected {shape:?} for --model", t.dims()),
            }),
            // A head without bias is one with a zero bias.
            None if p == "bias" && !has_bias => Ok(Tensor::zeros(
                shape,
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )?),
            None => Err(ModelError::Interop {
                path: file.clone(),
                field: key,
                reason: "missing from the head weights".into(),
            }),
        }
    };
    let mut expected = 2;
    let classifier_at = if pooler {
        tensors.insert(
            "task.pooler.weight".into(),
            get(1, "weight", &[hidden, hidden])?,
        );
        tensors.insert("task.pooler.bias".into(), get(1, "bias", &[hidden])?);
        expected += 2;
        4
    } else {
        1
    };
    tensors.insert(
        "classifier.weight".into(),
        get(classifier_at, "weight", &[num_labels, hidden])?,
    );
    tensors.insert(
        "classifier.bias".into(),
        get(classifier_at, "bias", &[num_labels])?,
    );
    if !has_bias {
        expected -= if pooler { 2 } else { 1 };
    }
    if w.len() != expected {
        let extra = w
            .keys()
            .find(|k| !k.starts_with(&format!("heads.{name}.")))
            .or_else(|| w.keys().next())
            .cloned()
            .unwrap_or_default();
        return Err(ModelError::Interop {
            path: file.clone(),
            field: extra,
            reason: format!("the head has {} tensors, expected {expected}", w.len()),
        });
    }
    let mut labels: Vec<(String, u64)> = h["label2id"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().map(|i| (k.clone(), i)))
                .collect()
        })
        .unwrap_or_default();
    labels.sort_by_key(|(_, i)| *i);
    let in_order = labels.iter().enumerate().all(|(i, (_, j))| i as u64 == *j);
    let labels = if in_order {
        labels.into_iter().map(|(k, _)| k).collect()
    } else {
        Vec::new()
    };
    Ok(Head {
        file,
        config: cfg,
        num_labels,
        labels,
        pooling,
        pooler,
    })
}
