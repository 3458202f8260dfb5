//! The model shape: the `config.json` fields that fix an ALBERT or BERT encoder's tensors,
//! and every count derived from them (parameters by part, checkpoint tensors, task
//! parameters). Model loading, storage arithmetic and the hardware simulator all read it.
//!
//! ALBERT and BERT are one architecture: BERT is ALBERT with one layer group per layer
//! (`num_hidden_groups = num_hidden_layers`), `E = H` and no E->H projection
//! (`embedding_hidden_mapping_in`); [`Family`] decides only the checkpoint's tensor names.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::adapter::{AdapterSpec, Sharing};
use crate::error::{CoreError, Result};
use crate::site::Site;

/// Which checkpoint layout (tensor names) the weights follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Albert,
    Bert,
}

/// Built-in shapes as (name, config.json text), for arithmetic without a checkpoint. Each file
/// names its source in `_source` (docs/sources.md#model-configurations; the counts they give:
/// docs/sources.md#parameter-counts).
pub const BUILTIN_MODELS: [(&str, &str); 3] = [
    (
        "albert-base",
        include_str!("../data/models/albert-base.json"),
    ),
    ("bert-base", include_str!("../data/models/bert-base.json")),
    ("minilm", include_str!("../data/models/minilm.json")),
];

/// The shape-deciding fields of an encoder's `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelShape {
    pub family: Family,
    pub vocab_size: usize,
    /// E: width of the (factorized) embeddings; equals `hidden_size` for BERT.
    pub embedding_size: usize,
    /// H.
    pub hidden_size: usize,
    /// Layer applications per group pass (ALBERT re-applies shared groups).
    pub num_hidden_layers: usize,
    /// Distinct layer groups stored (1 for ALBERT-base, `num_hidden_layers` for BERT).
    pub num_hidden_groups: usize,
    /// Layers inside each group.
    pub inner_group_num: usize,
    pub num_attention_heads: usize,
    /// FFN inner width.
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
}

/// Parameter counts of an encoder, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Word, position and token-type tables plus their LayerNorm.
    pub embeddings: usize,
    /// ALBERT's E->H projection weight and bias (0 for BERT).
    pub projection: usize,
    /// All distinct transformer layers (a shared group counts once however often applied).
    pub encoder: usize,
    /// Pooler weight and bias (H x H + H).
    pub pooler: usize,
}

impl ParamCounts {
    /// Everything but the pooler (what a pooler-free sentence encoder stores).
    pub fn backbone(&self) -> usize {
        self.embeddings + self.projection + self.encoder
    }

    pub fn total(&self) -> usize {
        self.backbone() + self.pooler
    }
}

/// One checkpoint tensor of an encoder, known from the shape alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorShape {
    /// Hugging Face key without a task-model prefix (`AlbertModel` / `BertModel` naming).
    pub name: String,
    /// Row-major; linear weights are `[out, in]`.
    pub shape: Vec<usize>,
}

impl TensorShape {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What one task adds beside the frozen backbone (adapter-ALBERT's task-specific part).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskShape {
    /// `None` for head-only training.
    pub adapter: Option<AdapterSpec>,
    pub sharing: Sharing,
    /// Per-task copies of every LayerNorm.
    pub layer_norms: bool,
    /// Per-task copy of the pooler.
    pub pooler: bool,
    /// Classifier outputs (1 for regression).
    pub num_labels: usize,
}

impl ModelShape {
    /// A built-in name (see [`BUILTIN_MODELS`]).
    pub fn builtin(name: &str) -> Option<Self> {
        BUILTIN_MODELS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, json)| Self::from_json(json, &format!("built-in model {n}")))
            .and_then(Result::ok)
    }

    /// Refuses a sequence length the model cannot run: 0, or more tokens than it has
    /// position embeddings (simulating or training such a length would describe no real run).
    pub fn check_seq_len(&self, seq_len: u64) -> Result<()> {
        let positions = self.max_position_embeddings as u64;
        if seq_len == 0 || seq_len > positions {
            return Err(CoreError::Spec {
                what: "sequence length",
                input: seq_len.to_string(),
                reason: format!(
                    "expected 1..={positions} tokens (the model's max_position_embeddings)"
                ),
            });
        }
        Ok(())
    }

    /// A built-in name, a directory holding `config.json`, or a path to a config file.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if let Some(s) = Self::builtin(name_or_path) {
            return Ok(s);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(CoreError::Unknown {
                what: "model (a built-in name, a directory with config.json, or a config file)",
                name: name_or_path.to_string(),
                known: BUILTIN_MODELS.map(|(n, _)| n).join(", "),
            });
        }
        Self::from_path(path)
    }

    /// Reads `config.json` from a checkpoint directory or a file path.
    pub fn from_path(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| CoreError::Io {
            action: "cannot read",
            path: file.clone(),
            source,
        })?;
        Self::from_json(&text, &file.display().to_string())
    }

    /// Parses a Hugging Face config; `origin` names it in errors. Fields Hugging Face gives
    /// defaults to may be missing (ALBERT: `embedding_size` 128, one group of one layer; both:
    /// 512 positions, 2 token types).
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| field(origin, "(file)", format!("JSON ({e})")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| field(origin, "(file)", "a JSON object".into()))?;
        Self::from_object(obj, origin)
    }

    /// [`ModelShape::from_json`] on an already parsed object.
    pub fn from_object(obj: &Map<String, Value>, origin: &str) -> Result<Self> {
        let family = match obj.get("model_type").and_then(Value::as_str) {
            Some("albert") => Family::Albert,
            Some("bert") => Family::Bert,
            Some(other) => {
                return Err(field(
                    origin,
                    "model_type",
                    format!("\"albert\" or \"bert\", found unsupported \"{other}\""),
                ))
            }
            None => {
                return Err(field(
                    origin,
                    "model_type",
                    "\"albert\" or \"bert\" (missing)".into(),
                ))
            }
        };
        let positive = |key: &str| -> Result<usize> {
            match obj.get(key) {
                None => Err(field(origin, key, "a positive integer (missing)".into())),
                Some(x) => x
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map(|n| n as usize)
                    .ok_or_else(|| field(origin, key, format!("a positive integer, found {x}"))),
            }
        };
        let or_default = |key: &str, default: usize| -> Result<usize> {
            if obj.contains_key(key) {
                positive(key)
            } else {
                Ok(default)
            }
        };
        let hidden_size = positive("hidden_size")?;
        let num_hidden_layers = positive("num_hidden_layers")?;
        let (embedding_size, num_hidden_groups, inner_group_num) = match family {
            Family::Albert => (
                or_default("embedding_size", 128)?,
                or_default("num_hidden_groups", 1)?,
                or_default("inner_group_num", 1)?,
            ),
            Family::Bert => (hidden_size, num_hidden_layers, 1),
        };
        let shape = Self {
            family,
            vocab_size: positive("vocab_size")?,
            embedding_size,
            hidden_size,
            num_hidden_layers,
            num_hidden_groups,
            inner_group_num,
            num_attention_heads: positive("num_attention_heads")?,
            intermediate_size: positive("intermediate_size")?,
            max_position_embeddings: or_default("max_position_embeddings", 512)?,
            type_vocab_size: or_default("type_vocab_size", 2)?,
        };
        shape.validate(origin)?;
        Ok(shape)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(field(
                origin,
                "num_attention_heads",
                format!(
                    "a divisor of hidden_size {}, found {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if !self
            .num_hidden_layers
            .is_multiple_of(self.num_hidden_groups)
        {
            return Err(field(
                origin,
                "num_hidden_groups",
                format!(
                    "a divisor of num_hidden_layers {}, found {}",
                    self.num_hidden_layers, self.num_hidden_groups
                ),
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Layer applications per group: Hugging Face maps application `i` to group
    /// `i / (layers / groups)`.
    pub fn layers_per_group(&self) -> usize {
        self.num_hidden_layers / self.num_hidden_groups
    }

    /// Transformer layer executions per inference (where per-application adapters attach).
    pub fn applications(&self) -> usize {
        self.num_hidden_layers * self.inner_group_num
    }

    /// The stored layer that layer application `application` runs, as (group, layer inside
    /// the group): application `i * inner_group_num + j` is layer `j` of group
    /// `i / layers_per_group()`.
    pub fn stored_layer(&self, application: usize) -> (usize, usize) {
        let (i, j) = (
            application / self.inner_group_num,
            application % self.inner_group_num,
        );
        (i / self.layers_per_group(), j)
    }

    /// Distinct (stored) transformer layers.
    pub fn distinct_layers(&self) -> usize {
        self.num_hidden_groups * self.inner_group_num
    }

    /// Whether the checkpoint has an E->H projection (every ALBERT has one, BERT none).
    pub fn has_projection(&self) -> bool {
        self.family == Family::Albert
    }

    /// Parameters of one transformer layer: Q, K, V and output projections with biases, the
    /// attention LayerNorm, FFN in and out with biases, the output LayerNorm.
    pub fn layer_params(&self) -> usize {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        (4 * (h * h + h) + 2 * h) + (h * f + f + f * h + h + 2 * h)
    }

    /// Parameter counts by part (the pooler counted whether or not a checkpoint ships one).
    pub fn param_counts(&self) -> ParamCounts {
        let (e, h) = (self.embedding_size, self.hidden_size);
        let tables = self.vocab_size + self.max_position_embeddings + self.type_vocab_size;
        ParamCounts {
            embeddings: tables * e + 2 * e,
            projection: if self.has_projection() { e * h + h } else { 0 },
            encoder: self.distinct_layers() * self.layer_params(),
            pooler: h * h + h,
        }
    }

    /// Checkpoint prefix of layer `j` of group `g`.
    pub fn layer_prefix(&self, g: usize, j: usize) -> String {
        match self.family {
            Family::Albert => format!("encoder.albert_layer_groups.{g}.albert_layers.{j}"),
            Family::Bert => format!("encoder.layer.{}", g * self.inner_group_num + j),
        }
    }

    /// Every stored tensor with its checkpoint key and shape (the pooler last, when
    /// `with_pooler`), so storage can be computed without weights.
    pub fn tensors(&self, with_pooler: bool) -> Vec<TensorShape> {
        let (e, h, f) = (
            self.embedding_size,
            self.hidden_size,
            self.intermediate_size,
        );
        let mut out = Vec::new();
        for (name, rows) in [
            ("word_embeddings", self.vocab_size),
            ("position_embeddings", self.max_position_embeddings),
            ("token_type_embeddings", self.type_vocab_size),
        ] {
            out.push(TensorShape {
                name: format!("embeddings.{name}.weight"),
                shape: vec![rows, e],
            });
        }
        push_norm(&mut out, "embeddings.LayerNorm", e);
        if self.has_projection() {
            push_linear(&mut out, "encoder.embedding_hidden_mapping_in", h, e);
        }
        let names = self.family.module_names();
        for g in 0..self.num_hidden_groups {
            for j in 0..self.inner_group_num {
                let p = self.layer_prefix(g, j);
                for m in [names.query, names.key, names.value, names.dense] {
                    push_linear(&mut out, &format!("{p}.{m}"), h, h);
                }
                push_norm(&mut out, &format!("{p}.{}", names.attention_layer_norm), h);
                push_linear(&mut out, &format!("{p}.{}", names.ffn), f, h);
                push_linear(&mut out, &format!("{p}.{}", names.ffn_output), h, f);
                push_norm(&mut out, &format!("{p}.{}", names.full_layer_layer_norm), h);
            }
        }
        if with_pooler {
            push_linear(&mut out, names.pooler, h, h);
        }
        out
    }

    /// Task-layer parameter sets a task of `task` holds: one per layer application, one if
    /// shared, none if it has neither adapters nor LayerNorms.
    pub fn task_layers(&self, task: &TaskShape) -> usize {
        match (task.adapter.is_some() || task.layer_norms, task.sharing) {
            (false, _) => 0,
            (true, Sharing::Shared) => 1,
            (true, Sharing::PerApplication) => self.applications(),
        }
    }

    /// Trainable parameters of one task: adapters and LayerNorms per task layer, the
    /// embeddings' LayerNorm, an optional pooler, the classifier.
    pub fn task_params(&self, task: &TaskShape) -> usize {
        let h = self.hidden_size;
        let norms: usize = Site::LAYER_NORMS.iter().map(|s| s.params(h, 0)).sum();
        let per_layer = task.adapter.map_or(0, |s| s.params_per_application(h))
            + if task.layer_norms { norms } else { 0 };
        let mut n = self.task_layers(task) * per_layer;
        if task.layer_norms {
            n += 2 * self.embedding_size;
        }
        if task.pooler {
            n += h * h + h;
        }
        n + task.num_labels * h + task.num_labels
    }
}

/// Module names inside a layer, as each family's checkpoint spells them.
pub struct ModuleNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub dense: &'static str,
    pub attention_layer_norm: &'static str,
    pub ffn: &'static str,
    pub ffn_output: &'static str,
    pub full_layer_layer_norm: &'static str,
    pub pooler: &'static str,
}

impl Family {
    /// The names of the modules of one layer (relative to its prefix) and of the pooler.
    pub fn module_names(self) -> ModuleNames {
        match self {
            Family::Albert => ModuleNames {
                query: "attention.query",
                key: "attention.key",
                value: "attention.value",
                dense: "attention.dense",
                attention_layer_norm: "attention.LayerNorm",
                ffn: "ffn",
                ffn_output: "ffn_output",
                full_layer_layer_norm: "full_layer_layer_norm",
                pooler: "pooler",
            },
            Family::Bert => ModuleNames {
                query: "attention.self.query",
                key: "attention.self.key",
                value: "attention.self.value",
                dense: "attention.output.dense",
                attention_layer_norm: "attention.output.LayerNorm",
                ffn: "intermediate.dense",
                ffn_output: "output.dense",
                full_layer_layer_norm: "output.LayerNorm",
                pooler: "pooler.dense",
            },
        }
    }
}

fn push_linear(out: &mut Vec<TensorShape>, prefix: &str, out_dim: usize, in_dim: usize) {
    out.push(TensorShape {
        name: format!("{prefix}.weight"),
        shape: vec![out_dim, in_dim],
    });
    out.push(TensorShape {
        name: format!("{prefix}.bias"),
        shape: vec![out_dim],
    });
}

fn push_norm(out: &mut Vec<TensorShape>, prefix: &str, dim: usize) {
    for part in ["weight", "bias"] {
        out.push(TensorShape {
            name: format!("{prefix}.{part}"),
            shape: vec![dim],
        });
    }
}

fn field(origin: &str, field: &str, expected: String) -> CoreError {
    CoreError::Field {
        origin: origin.to_string(),
        field: field.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequence_lengths_beyond_the_positions_are_refused() {
        let m = super::ModelShape::resolve("albert-base").unwrap();
        m.check_seq_len(1).unwrap();
        m.check_seq_len(512).unwrap();
        for bad in [0, 513, 100_000] {
            let e = m.check_seq_len(bad).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()) && e.contains("1..=512"), "{e}");
        }
    }

    use super::*;

    fn albert() -> ModelShape {
        ModelShape::builtin("albert-base").unwrap()
    }

    #[test]
    fn albert_and_bert_base_counts_match_hand_arithmetic() {
        let a = albert().param_counts();
        // (30000 + 512 + 2) * 128 + 2 * 128; 128 * 768 + 768; layer; 768 * 768 + 768.
        assert_eq!(
            (a.embeddings, a.projection, a.encoder, a.pooler),
            (3_906_048, 99_072, 7_087_872, 590_592)
        );
        assert_eq!(a.total(), 11_683_584);
        let b = ModelShape::builtin("bert-base").unwrap().param_counts();
        assert_eq!((b.embeddings, b.projection), (23_837_184, 0));
        assert_eq!(b.total(), 109_482_240);
        let m = ModelShape::builtin("minilm").unwrap();
        assert_eq!(
            (m.hidden_size, m.num_hidden_layers, m.num_hidden_groups),
            (384, 6, 6)
        );
        // all-MiniLM-L6-v2's safetensors file holds these 22,713,216 weights (its pooler
        // included) plus the 512-entry `position_ids` buffer.
        assert_eq!(m.param_counts().total(), 22_713_216);
    }

    #[test]
    fn tensors_sum_to_the_counts_and_use_checkpoint_names() {
        for name in ["albert-base", "bert-base", "minilm"] {
            let s = ModelShape::builtin(name).unwrap();
            let sum: usize = s.tensors(true).iter().map(TensorShape::numel).sum();
            assert_eq!(sum, s.param_counts().total(), "{name}");
        }
        let t = albert().tensors(true);
        assert_eq!(t.len(), 3 + 2 + 2 + 16 + 2);
        assert_eq!(t[5].name, "encoder.embedding_hidden_mapping_in.weight");
        assert_eq!(t[5].shape, [768, 128]);
        let b = ModelShape::builtin("bert-base").unwrap().tensors(false);
        assert!(b
            .iter()
            .any(|t| t.name == "encoder.layer.11.output.LayerNorm.bias"));
        assert!(!b.iter().any(|t| t.name.starts_with("pooler")));
    }

    #[test]
    fn task_counts_match_the_adapter_arithmetic() {
        let spec = AdapterSpec::parse("houlsby:64").unwrap();
        let shared = TaskShape {
            adapter: Some(spec),
            sharing: Sharing::Shared,
            layer_norms: false,
            pooler: false,
            num_labels: 2,
        };
        assert_eq!(albert().task_params(&shared), 198_272 + 2 * 768 + 2);
        let per_app = TaskShape {
            sharing: Sharing::PerApplication,
            layer_norms: true,
            ..shared
        };
        // 12 applications x (adapters + 3,072 LayerNorm params) + embedding LN + head.
        assert_eq!(
            albert().task_params(&per_app),
            12 * (198_272 + 3_072) + 256 + 1_538
        );
    }

    #[test]
    fn bad_configs_name_file_and_field() {
        let e = ModelShape::from_json("{", "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cfg.json") && e.contains("JSON"), "{e}");
        let e = ModelShape::from_json(r#"{"model_type":"gpt2"}"#, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model_type") && e.contains("gpt2"), "{e}");
        let e = ModelShape::from_json(r#"{"model_type":"albert","hidden_size":8}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.json") && e.contains("num_hidden_layers"),
            "{e}"
        );
        let e = ModelShape::from_json(
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":9,"num_hidden_layers":3,
            "num_attention_heads":2,"intermediate_size":16}"#,
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("num_attention_heads") && e.contains("divisor"),
            "{e}"
        );
        let e = ModelShape::resolve("no-such-model")
            .unwrap_err()
            .to_string();
        assert!(e.contains("albert-base") && e.contains("minilm"), "{e}");
    }
}
