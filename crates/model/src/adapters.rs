//! Task-specific parameters: bottleneck adapters, LoRA, per-task LayerNorms and the head.
//!
//! A task never changes a backbone tensor. What it owns is a flat set of named tensors
//! (`task.layers.{k}.output_adapter.down.weight`, `classifier.weight`, ...) so a task bundle is
//! just those tensors plus metadata, and switching task swaps only them.

use std::collections::HashMap;
use std::fmt;

use adalbert_core::rng::Normal;
use candle_core::{Device, Tensor};

use crate::albert::{activate, activate_t, Backbone, Names};
use crate::config::{Activation, EncoderConfig};
use crate::error::{ModelError, Result};
use crate::nn::{Ctx, LayerNorm, Linear};

/// Where a task's adapter sits in each layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// Two bottlenecks per layer: after the attention projection and after the FFN output.
    Houlsby,
    /// One bottleneck per layer, after the FFN output.
    Pfeiffer,
    /// One bottleneck beside the FFN, reading the FFN's input.
    Parallel,
    /// Low-rank updates of the query and value projections.
    Lora,
}

/// A parsed adapter spec such as `houlsby:64`, `pfeiffer:32,act=gelu` or `lora:r=8,alpha=16`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterSpec {
    pub kind: AdapterKind,
    /// Bottleneck width m, or LoRA rank r.
    pub size: usize,
    /// LoRA scaling numerator (update scaled by alpha / r); ignored by bottlenecks.
    pub alpha: f64,
    /// Bottleneck non-linearity.
    pub activation: Activation,
}

impl AdapterSpec {
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: String| ModelError::AdapterSpec {
            spec: spec.to_string(),
            reason,
        };
        let (kind_s, rest) = spec.split_once(':').ok_or_else(|| {
            bad("expected KIND:SIZE, e.g. houlsby:64, pfeiffer:64, parallel:64, lora:r=8".into())
        })?;
        let kind = match kind_s {
            "houlsby" => AdapterKind::Houlsby,
            "pfeiffer" => AdapterKind::Pfeiffer,
            "parallel" => AdapterKind::Parallel,
            "lora" => AdapterKind::Lora,
            other => {
                return Err(bad(format!(
                    "unknown kind `{other}`: expected houlsby, pfeiffer, parallel or lora"
                )))
            }
        };
        let mut size = None;
        let mut alpha = None;
        let mut activation = Activation::Relu;
        for item in rest.split(',') {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => ("size", item.trim()),
            };
            match k {
                "size" | "m" | "r" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| bad(format!("size `{v}` is not a positive integer")))?;
                    if n == 0 || n > 8192 {
                        return Err(bad(format!("size {n} must be in 1..=8192")));
                    }
                    size = Some(n);
                }
                "alpha" => {
                    let a: f64 = v
                        .parse()
                        .ok()
                        .filter(|a: &f64| a.is_finite() && *a > 0.0)
                        .ok_or_else(|| bad(format!("alpha `{v}` is not a positive number")))?;
                    alpha = Some(a);
                }
                "act" => {
                    activation = match v {
                        "swish" | "silu" => {
                            return Err(bad(
                                "act swish is not supported; use relu, gelu or gelu_new".into(),
                            ))
                        }
                        other => Activation::parse(other).ok_or_else(|| {
                            bad(format!("act `{other}`: expected relu, gelu or gelu_new"))
                        })?,
                    }
                }
                other => return Err(bad(format!("unknown option `{other}`"))),
            }
        }
        let size = size.ok_or_else(|| bad("missing size".into()))?;
        if alpha.is_some() && kind != AdapterKind::Lora {
            return Err(bad("alpha applies to lora only".into()));
        }
        Ok(Self {
            kind,
            size,
            alpha: alpha.unwrap_or(size as f64),
            activation,
        })
    }

    /// Trainable adapter parameters attached to one layer application of hidden size `h`.
    pub fn params_per_application(&self, h: usize) -> usize {
        let bottleneck = 2 * h * self.size + self.size + h;
        match self.kind {
            AdapterKind::Houlsby => 2 * bottleneck,
            AdapterKind::Pfeiffer | AdapterKind::Parallel => bottleneck,
            AdapterKind::Lora => 2 * 2 * h * self.size,
        }
    }
}

impl fmt::Display for AdapterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            AdapterKind::Houlsby => "houlsby",
            AdapterKind::Pfeiffer => "pfeiffer",
            AdapterKind::Parallel => "parallel",
            AdapterKind::Lora => "lora",
        };
        if self.kind == AdapterKind::Lora {
            write!(f, "lora:r={},alpha={}", self.size, self.alpha)
        } else {
            let act = match self.activation {
                Activation::Relu => "relu",
                Activation::Gelu => "gelu",
                Activation::GeluNew => "gelu_new",
            };
            write!(f, "{kind}:{},act={act}", self.size)
        }
    }
}

/// Whether each layer application has its own adapters, or all share one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    #[default]
    PerApplication,
    Shared,
}

impl Sharing {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "per-application" => Ok(Self::PerApplication),
            "shared" => Ok(Self::Shared),
            other => Err(ModelError::AdapterSpec {
                spec: other.to_string(),
                reason: "sharing must be `per-application` or `shared`".into(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerApplication => "per-application",
            Self::Shared => "shared",
        }
    }
}

/// `up(act(down(x)))`: the residual bottleneck of Houlsby et al.
#[derive(Clone, Debug)]
pub struct Bottleneck {
    pub down: Linear,
    pub up: Linear,
    pub activation: Activation,
}

impl Bottleneck {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.up
            .forward(&activate(&self.down.forward(x)?, self.activation)?)
    }

    pub fn forward_residual(&self, x: &Tensor) -> Result<Tensor> {
        Ok((x + self.forward(x)?)?)
    }

    /// [`Bottleneck::forward`] on the fused training ops when `ctx` uses them.
    pub fn forward_t(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let down = self.down.forward_t(x, ctx)?;
        self.up
            .forward_t(&activate_t(&down, self.activation, ctx)?, ctx)
    }

    /// [`Bottleneck::forward_residual`] on the fused training ops when `ctx` uses them.
    pub fn forward_residual_t(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        Ok((x + self.forward_t(x, ctx)?)?)
    }
}

/// Low-rank update `(alpha / r) * B A x` of a frozen projection.
#[derive(Clone, Debug)]
pub struct Lora {
    /// [r, H]
    pub a: Tensor,
    /// [H, r]
    pub b: Tensor,
    pub scale: f64,
}

impl Lora {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let down = x.broadcast_matmul(&self.a.t()?)?;
        Ok((down.broadcast_matmul(&self.b.t()?)? * self.scale)?)
    }
}

/// A task's parameters for one layer application.
#[derive(Clone, Debug, Default)]
pub struct TaskLayer {
    pub attention_adapter: Option<Bottleneck>,
    pub output_adapter: Option<Bottleneck>,
    pub parallel_adapter: Option<Bottleneck>,
    pub lora_query: Option<Lora>,
    pub lora_value: Option<Lora>,
    pub attention_layer_norm: Option<LayerNorm>,
    pub full_layer_layer_norm: Option<LayerNorm>,
}

/// What a task owns besides the frozen backbone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskLayout {
    /// `None` for head-only training.
    pub adapter: Option<AdapterSpec>,
    pub sharing: Sharing,
    /// Per-task copies of every LayerNorm (the adapter recipe trains them).
    pub layer_norms: bool,
    /// Per-task copy of the pooler.
    pub pooler: bool,
    /// Classifier outputs (1 for regression).
    pub num_labels: usize,
    /// What the head reads: the pooler output (as Hugging Face's task models), the mean of
    /// the token states (sentence encoders such as all-MiniLM-L6-v2 were trained for it), or
    /// the raw `[CLS]` state.
    #[serde(default)]
    pub pooling: Pooling,
}

/// The sentence representation fed to the classifier head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    #[default]
    Pooler,
    Mean,
    Cls,
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pooler" => Ok(Self::Pooler),
            "mean" => Ok(Self::Mean),
            "cls" => Ok(Self::Cls),
            other => Err(ModelError::Input(format!(
                "pooling `{other}`: expected pooler, mean or cls"
            ))),
        }
    }
}

/// All of one task's parameters, ready to run beside a [`Backbone`].
#[derive(Clone, Debug)]
pub struct TaskParams {
    pub layers: Vec<TaskLayer>,
    pub sharing: Sharing,
    pub embeddings_layer_norm: Option<LayerNorm>,
    pub pooler: Option<Linear>,
    pub classifier: Linear,
}

impl TaskParams {
    /// The task layer used at layer application `application`.
    pub fn layer(&self, application: usize) -> Option<&TaskLayer> {
        match self.sharing {
            Sharing::Shared => self.layers.first(),
            Sharing::PerApplication => self.layers.get(application),
        }
    }

    /// Builds the task from named tensors (bundle contents or trainable variables).
    pub fn from_tensors(
        config: &EncoderConfig,
        layout: &TaskLayout,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let src = TensorSource { tensors };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let mut layers = Vec::new();
        for k in 0..layout.task_layer_count(config) {
            let p = format!("task.layers.{k}");
            let mut layer = TaskLayer::default();
            if let Some(spec) = &layout.adapter {
                let bottleneck = |name: &str| -> Result<Bottleneck> {
                    Ok(Bottleneck {
                        down: src.linear(&format!("{p}.{name}.down"), h, spec.size)?,
                        up: src.linear(&format!("{p}.{name}.up"), spec.size, h)?,
                        activation: spec.activation,
                    })
                };
                let lora = |name: &str| -> Result<Lora> {
                    Ok(Lora {
                        a: src.get(&format!("{p}.{name}.a"), &[spec.size, h])?,
                        b: src.get(&format!("{p}.{name}.b"), &[h, spec.size])?,
                        scale: spec.alpha / spec.size as f64,
                    })
                };
                match spec.kind {
                    AdapterKind::Houlsby => {
                        layer.attention_adapter = Some(bottleneck("attention_adapter")?);
                        layer.output_adapter = Some(bottleneck("output_adapter")?);
                    }
                    AdapterKind::Pfeiffer => {
                        layer.output_adapter = Some(bottleneck("output_adapter")?)
                    }
                    AdapterKind::Parallel => {
                        layer.parallel_adapter = Some(bottleneck("parallel_adapter")?)
                    }
                    AdapterKind::Lora => {
                        layer.lora_query = Some(lora("lora_query")?);
                        layer.lora_value = Some(lora("lora_value")?);
                    }
                }
            }
            if layout.layer_norms {
                layer.attention_layer_norm =
                    Some(src.layer_norm(&format!("{p}.attention.LayerNorm"), h, eps)?);
                layer.full_layer_layer_norm =
                    Some(src.layer_norm(&format!("{p}.full_layer_layer_norm"), h, eps)?);
            }
            layers.push(layer);
        }
        let embeddings_layer_norm = if layout.layer_norms {
            Some(src.layer_norm("task.embeddings.LayerNorm", config.embedding_size, eps)?)
        } else {
            None
        };
        let pooler = if layout.pooler {
            Some(src.linear("task.pooler", h, h)?)
        } else {
            None
        };
        Ok(Self {
            layers,
            sharing: layout.sharing,
            embeddings_layer_norm,
            pooler,
            classifier: src.linear("classifier", h, layout.num_labels)?,
        })
    }
}

impl TaskLayout {
    /// Number of task-layer parameter sets: one per layer application, or one if shared.
    pub fn task_layer_count(&self, config: &EncoderConfig) -> usize {
        let needs_layers = self.adapter.is_some() || self.layer_norms;
        match (needs_layers, self.sharing) {
            (false, _) => 0,
            (true, Sharing::Shared) => 1,
            (true, Sharing::PerApplication) => config.num_hidden_layers * config.inner_group_num,
        }
    }

    /// Initial values of every task tensor: adapters near identity (up-projections zero),
    /// LayerNorm and pooler copies of the backbone's, a small random classifier. Seeded.
    pub fn init_tensors(&self, backbone: &Backbone, seed: u64) -> Result<HashMap<String, Tensor>> {
        let config = &backbone.config;
        let h = config.hidden_size;
        let dev = Device::Cpu;
        let mut rng = Normal::new(seed);
        let mut out = HashMap::new();
        let names = Names(config.family);
        for k in 0..self.task_layer_count(config) {
            let p = format!("task.layers.{k}");
            if let Some(spec) = &self.adapter {
                let m = spec.size;
                let mut bottleneck =
                    |name: &str, out: &mut HashMap<String, Tensor>| -> Result<()> {
                        out.insert(
                            format!("{p}.{name}.down.weight"),
                            normal_tensor(&mut rng, &[m, h], 0.02, &dev)?,
                        );
                        out.insert(
                            format!("{p}.{name}.down.bias"),
                            Tensor::zeros(m, candle_core::DType::F32, &dev)?,
                        );
                        out.insert(
                            format!("{p}.{name}.up.weight"),
                            Tensor::zeros((h, m), candle_core::DType::F32, &dev)?,
                        );
                        out.insert(
                            format!("{p}.{name}.up.bias"),
                            Tensor::zeros(h, candle_core::DType::F32, &dev)?,
                        );
                        Ok(())
                    };
                match spec.kind {
                    AdapterKind::Houlsby => {
                        bottleneck("attention_adapter", &mut out)?;
                        bottleneck("output_adapter", &mut out)?;
                    }
                    AdapterKind::Pfeiffer => bottleneck("output_adapter", &mut out)?,
                    AdapterKind::Parallel => bottleneck("parallel_adapter", &mut out)?,
                    AdapterKind::Lora => {
                        for name in ["lora_query", "lora_value"] {
                            out.insert(
                                format!("{p}.{name}.a"),
                                normal_tensor(&mut rng, &[m, h], 0.02, &dev)?,
                            );
                            out.insert(
                                format!("{p}.{name}.b"),
                                Tensor::zeros((h, m), candle_core::DType::F32, &dev)?,
                            );
                        }
                    }
                }
            }
            if self.layer_norms {
                let layer = backbone_layer_for(backbone, k);
                let _ = &names;
                copy_ln(
                    &mut out,
                    &format!("{p}.attention.LayerNorm"),
                    &layer.attention.layer_norm,
                );
                copy_ln(
                    &mut out,
                    &format!("{p}.full_layer_layer_norm"),
                    &layer.full_layer_layer_norm,
                );
            }
        }
        if self.layer_norms {
            copy_ln(
                &mut out,
                "task.embeddings.LayerNorm",
                &backbone.embeddings.layer_norm,
            );
        }
        if self.pooler {
            let pooler = backbone.pooler.as_ref().ok_or_else(|| {
                ModelError::Input("the backbone has no pooler to copy for a per-task pooler".into())
            })?;
            out.insert("task.pooler.weight".into(), pooler.dense.weight.copy()?);
            if let Some(b) = &pooler.dense.bias {
                out.insert("task.pooler.bias".into(), b.copy()?);
            }
        }
        out.insert(
            "classifier.weight".into(),
            normal_tensor(&mut rng, &[self.num_labels, h], 0.02, &dev)?,
        );
        out.insert(
            "classifier.bias".into(),
            Tensor::zeros(self.num_labels, candle_core::DType::F32, &dev)?,
        );
        Ok(out)
    }

    /// Trainable parameter count of this layout on `config`.
    pub fn param_count(&self, config: &EncoderConfig) -> usize {
        let h = config.hidden_size;
        let per_layer = self
            .adapter
            .as_ref()
            .map_or(0, |s| s.params_per_application(h))
            + if self.layer_norms { 4 * h } else { 0 };
        let mut n = self.task_layer_count(config) * per_layer;
        if self.layer_norms {
            n += 2 * config.embedding_size;
        }
        if self.pooler {
            n += h * h + h;
        }
        n + self.num_labels * h + self.num_labels
    }
}

/// The backbone layer that task layer `k` accompanies (for copying its LayerNorms).
fn backbone_layer_for(backbone: &Backbone, k: usize) -> &crate::albert::AlbertLayer {
    let c = &backbone.config;
    let i = k / c.inner_group_num;
    let j = k % c.inner_group_num;
    let g = (i / c.layers_per_group()).min(c.num_hidden_groups - 1);
    &backbone.encoder.albert_layer_groups[g].albert_layers[j]
}

fn copy_ln(out: &mut HashMap<String, Tensor>, name: &str, ln: &LayerNorm) {
    // `copy` cannot fail for CPU tensors of this size; fall back to sharing on error.
    out.insert(
        format!("{name}.weight"),
        ln.weight.copy().unwrap_or_else(|_| ln.weight.clone()),
    );
    out.insert(
        format!("{name}.bias"),
        ln.bias.copy().unwrap_or_else(|_| ln.bias.clone()),
    );
}

struct TensorSource<'a> {
    tensors: &'a HashMap<String, Tensor>,
}

impl TensorSource<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                expected: shape.to_vec(),
                path: "task parameters".into(),
            })?;
        if t.dims() != shape {
            return Err(ModelError::WrongShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
                path: "task parameters".into(),
            });
        }
        Ok(t.clone())
    }

    fn linear(&self, name: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        Ok(Linear::new(
            self.get(&format!("{name}.weight"), &[out_dim, in_dim])?,
            Some(self.get(&format!("{name}.bias"), &[out_dim])?),
        ))
    }

    fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.weight"), &[dim])?,
            bias: self.get(&format!("{name}.bias"), &[dim])?,
            eps,
        })
    }
}

/// A seeded N(0, std^2) tensor (the task-initialization stream of `adalbert_core::rng`).
fn normal_tensor(rng: &mut Normal, shape: &[usize], std: f64, dev: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Ok(Tensor::from_vec(rng.vec_f32(n, std), shape, dev)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_reject() {
        let s = AdapterSpec::parse("houlsby:64").unwrap();
        assert_eq!((s.kind, s.size), (AdapterKind::Houlsby, 64));
        assert_eq!(s.params_per_application(768), 198_272);
        let l = AdapterSpec::parse("lora:r=8,alpha=16").unwrap();
        assert_eq!((l.kind, l.size, l.alpha), (AdapterKind::Lora, 8, 16.0));
        let g = AdapterSpec::parse("pfeiffer:32,act=gelu").unwrap();
        assert_eq!(g.activation, Activation::Gelu);
        assert_eq!(AdapterSpec::parse(&g.to_string()).unwrap(), g);
        for bad in [
            "houlsby",
            "houlsby:0",
            "foo:3",
            "houlsby:x",
            "pfeiffer:8,alpha=2",
            "lora:r=4,bogus=1",
        ] {
            let e = AdapterSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn layout_counts_match_reference_arithmetic() {
        let c = EncoderConfig::albert_base();
        let spec = AdapterSpec::parse("houlsby:64").unwrap();
        let shared = TaskLayout {
            adapter: Some(spec.clone()),
            sharing: Sharing::Shared,
            layer_norms: false,
            pooler: false,
            num_labels: 2,
            pooling: Pooling::Pooler,
        };
        assert_eq!(shared.param_count(&c), 198_272 + 2 * 768 + 2);
        let per_app = TaskLayout {
            sharing: Sharing::PerApplication,
            layer_norms: true,
            ..shared
        };
        // 12 applications x (adapters + 3,072 LayerNorm params) + embedding LN + head.
        assert_eq!(
            per_app.param_count(&c),
            12 * (198_272 + 3_072) + 256 + 1_538
        );
    }
}
