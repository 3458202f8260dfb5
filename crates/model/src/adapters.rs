//! Task-specific parameters: bottleneck adapters, LoRA, per-task LayerNorms and the head.
//!
//! A task never changes a backbone tensor. What it owns is a flat set of named tensors
//! (`task.layers.{k}.output_adapter.down.weight`, `classifier.weight`, ...) so a task bundle is
//! just those tensors plus metadata, and switching task swaps only them.

use std::collections::HashMap;
use std::path::Path;

pub use adalbert_core::{AdapterKind, AdapterSpec, Sharing};

use adalbert_core::rng::Normal;
use adalbert_core::TaskShape;
use candle_core::{Device, Tensor};

use crate::albert::{activate, activate_t, Backbone};
use crate::config::{Activation, EncoderConfig};
use crate::error::{ModelError, Result};
use crate::nn::{Ctx, LayerNorm, Linear};
use crate::weights::Weights;

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
        let vb = Weights::from_tensors(tensors, Path::new("task parameters"));
        let h = config.shape.hidden_size;
        let eps = config.layer_norm_eps;
        let mut layers = Vec::new();
        for k in 0..layout.task_layer_count(config) {
            let vb = vb.pp(format!("task.layers.{k}"));
            let mut layer = TaskLayer::default();
            if let Some(spec) = &layout.adapter {
                let bottleneck = |name: &str| -> Result<Bottleneck> {
                    Ok(Bottleneck {
                        down: Linear::load(vb.pp(name).pp("down"), h, spec.size)?,
                        up: Linear::load(vb.pp(name).pp("up"), spec.size, h)?,
                        activation: spec.activation,
                    })
                };
                let lora = |name: &str| -> Result<Lora> {
                    Ok(Lora {
                        a: vb.pp(name).get("a", &[spec.size, h])?,
                        b: vb.pp(name).get("b", &[h, spec.size])?,
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
                    Some(LayerNorm::load(vb.pp("attention.LayerNorm"), h, eps)?);
                layer.full_layer_layer_norm =
                    Some(LayerNorm::load(vb.pp("full_layer_layer_norm"), h, eps)?);
            }
            layers.push(layer);
        }
        let embeddings_layer_norm = if layout.layer_norms {
            let width = config.shape.embedding_size;
            Some(LayerNorm::load(vb.pp("task.embeddings.LayerNorm"), width, eps)?)
        } else {
            None
        };
        let pooler = if layout.pooler {
            Some(Linear::load(vb.pp("task.pooler"), h, h)?)
        } else {
            None
        };
        Ok(Self {
            layers,
            sharing: layout.sharing,
            embeddings_layer_norm,
            pooler,
            classifier: Linear::load(vb.pp("classifier"), h, layout.num_labels)?,
        })
    }
}

impl TaskLayout {
    /// The counting view of this layout (shared with the simulator's arithmetic).
    pub fn task_shape(&self) -> TaskShape {
        TaskShape {
            adapter: self.adapter,
            sharing: self.sharing,
            layer_norms: self.layer_norms,
            pooler: self.pooler,
            num_labels: self.num_labels,
        }
    }

    /// Number of task-layer parameter sets: one per layer application, or one if shared.
    pub fn task_layer_count(&self, config: &EncoderConfig) -> usize {
        config.shape.task_layers(&self.task_shape())
    }

    /// Initial values of every task tensor: adapters near identity (up-projections zero),
    /// LayerNorm and pooler copies of the backbone's, a small random classifier. Seeded.
    pub fn init_tensors(&self, backbone: &Backbone, seed: u64) -> Result<HashMap<String, Tensor>> {
        let config = &backbone.config;
        let h = config.shape.hidden_size;
        let dev = Device::Cpu;
        let mut rng = Normal::new(seed);
        let mut out = HashMap::new();
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
        config.shape.task_params(&self.task_shape())
    }
}

/// The backbone layer that task layer `k` accompanies (for copying its LayerNorms).
fn backbone_layer_for(backbone: &Backbone, k: usize) -> &crate::albert::AlbertLayer {
    let c = &backbone.config;
    let i = k / c.shape.inner_group_num;
    let j = k % c.shape.inner_group_num;
    let g = (i / c.shape.layers_per_group()).min(c.shape.num_hidden_groups - 1);
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

/// A seeded N(0, std^2) tensor (the task-initialization stream of `adalbert_core::rng`).
fn normal_tensor(rng: &mut Normal, shape: &[usize], std: f64, dev: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Ok(Tensor::from_vec(rng.vec_f32(n, std), shape, dev)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_counts_match_reference_arithmetic() {
        let c = EncoderConfig::albert_base();
        let spec = AdapterSpec::parse("houlsby:64").unwrap();
        let shared = TaskLayout {
            adapter: Some(spec),
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
