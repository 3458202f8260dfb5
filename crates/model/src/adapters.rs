//! Task-specific parameters: bottleneck adapters, LoRA, per-task LayerNorms and the head.
//!
//! A task never changes a backbone tensor. What it owns is a flat set of named tensors
//! (`task.layers.{k}.output_adapter.down.weight`, `classifier.weight`, ...) so a task bundle is
//! just those tensors plus metadata, and switching task swaps only them.
//!
//! Where each parameter attaches is [`adalbert_core::site`]: an adapter kind is the list of
//! sites it fills ([`AdapterKind::sites`]), and a [`TaskLayer`] holds its parameters by site.
//! Loading ([`TaskParams::from_tensors`]) and initializing ([`TaskLayout::init_tensors`]) walk
//! those sites; every execution path reads them back through [`TaskLayer::lora`] and
//! [`SublayerEnd`]. A new kind made of these sites is one row in that table; a new kind of
//! site (say, scaling vectors) also needs its math in each path.

use std::collections::HashMap;
use std::path::Path;

pub use adalbert_core::{AdapterKind, AdapterSpec, Projection, Sharing, Site, Sublayer};

use adalbert_core::rng::Normal;
use adalbert_core::TaskShape;
use candle_core::{DType, Device, Tensor};

use crate::backbone::Backbone;
use crate::config::{Activation, EncoderConfig};
use crate::error::{ModelError, Result};
use crate::nn::{activate, Ctx, LayerNorm, Linear};
use crate::weights::Weights;

/// `up(act(down(x)))`: the bottleneck of Houlsby et al., at a [`Site::Parallel`] or
/// [`Site::Sequential`].
#[derive(Clone, Debug)]
pub struct Bottleneck {
    pub down: Linear,
    pub up: Linear,
    pub activation: Activation,
}

impl Bottleneck {
    /// Loads `down [m, H]` and `up [H, m]` (with biases) from the site's prefix `vb`.
    pub fn load(vb: Weights, hidden: usize, spec: &AdapterSpec) -> Result<Self> {
        Ok(Self {
            down: Linear::load(vb.pp("down"), hidden, spec.size)?,
            up: Linear::load(vb.pp("up"), spec.size, hidden)?,
            activation: spec.activation,
        })
    }

    /// Initial tensors under `prefix`: near the identity (the up-projection zero), the
    /// down-projection drawn from `rng`.
    fn init(
        prefix: &str,
        hidden: usize,
        width: usize,
        rng: &mut Normal,
        out: &mut Tensors,
    ) -> Result<()> {
        out.insert(
            format!("{prefix}.down.weight"),
            normal_tensor(rng, &[width, hidden])?,
        );
        out.insert(format!("{prefix}.down.bias"), zeros(&[width])?);
        out.insert(format!("{prefix}.up.weight"), zeros(&[hidden, width])?);
        out.insert(format!("{prefix}.up.bias"), zeros(&[hidden])?);
        Ok(())
    }

    /// `up(act(down(input)))`, on the ops `ctx` chooses.
    pub fn forward(&self, input: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let down = self.down.forward(input, ctx)?;
        self.up
            .forward(&activate(&down, self.activation, ctx)?, ctx)
    }

    /// `input + forward(input)`.
    pub fn forward_residual(&self, input: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        Ok((input + self.forward(input, ctx)?)?)
    }
}

/// Low-rank update `(alpha / r) * B A x` of a frozen projection, at a [`Site::Lora`].
#[derive(Clone, Debug)]
pub struct Lora {
    /// [r, H]
    pub a: Tensor,
    /// [H, r]
    pub b: Tensor,
    pub scale: f64,
}

impl Lora {
    /// Loads `a [r, H]` and `b [H, r]` from the site's prefix `vb`.
    pub fn load(vb: Weights, hidden: usize, spec: &AdapterSpec) -> Result<Self> {
        Ok(Self {
            a: vb.get("a", &[spec.size, hidden])?,
            b: vb.get("b", &[hidden, spec.size])?,
            scale: spec.alpha / spec.size as f64,
        })
    }

    /// Initial tensors under `prefix`: a zero update (`b` zero), `a` drawn from `rng`.
    fn init(
        prefix: &str,
        hidden: usize,
        rank: usize,
        rng: &mut Normal,
        out: &mut Tensors,
    ) -> Result<()> {
        out.insert(format!("{prefix}.a"), normal_tensor(rng, &[rank, hidden])?);
        out.insert(format!("{prefix}.b"), zeros(&[hidden, rank])?);
        Ok(())
    }

    /// `scale * input A^T B^T`, on candle's ops in every context.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let down = input.broadcast_matmul(&self.a.t()?)?;
        Ok((down.broadcast_matmul(&self.b.t()?)? * self.scale)?)
    }
}

/// What a task holds at one [`Site`].
#[derive(Clone, Debug)]
pub enum SiteParams {
    Bottleneck(Bottleneck),
    Lora(Lora),
    LayerNorm(LayerNorm),
}

impl SiteParams {
    /// Loads what sits at `site` from its prefix `vb`.
    fn load(site: Site, vb: Weights, config: &EncoderConfig, layout: &TaskLayout) -> Result<Self> {
        let hidden = config.shape.hidden_size;
        Ok(match site {
            Site::Lora(_) => Self::Lora(Lora::load(vb, hidden, layout.spec_for(site)?)?),
            Site::Parallel(_) | Site::Sequential(_) => {
                Self::Bottleneck(Bottleneck::load(vb, hidden, layout.spec_for(site)?)?)
            }
            Site::LayerNorm(_) => {
                Self::LayerNorm(LayerNorm::load(vb, hidden, config.layer_norm_eps)?)
            }
        })
    }
}

/// A task's parameters for one layer application, by site.
#[derive(Clone, Debug, Default)]
pub struct TaskLayer {
    sites: Vec<(Site, SiteParams)>,
}

impl TaskLayer {
    /// Sets what sits at `site` (replacing what was there).
    pub fn insert(&mut self, site: Site, params: SiteParams) {
        self.sites.retain(|(s, _)| *s != site);
        self.sites.push((site, params));
    }

    pub fn get(&self, site: Site) -> Option<&SiteParams> {
        self.sites.iter().find(|(s, _)| *s == site).map(|(_, p)| p)
    }

    pub fn bottleneck(&self, site: Site) -> Option<&Bottleneck> {
        match self.get(site)? {
            SiteParams::Bottleneck(b) => Some(b),
            _ => None,
        }
    }

    pub fn lora(&self, projection: Projection) -> Option<&Lora> {
        match self.get(Site::Lora(projection))? {
            SiteParams::Lora(l) => Some(l),
            _ => None,
        }
    }

    pub fn layer_norm(&self, sublayer: Sublayer) -> Option<&LayerNorm> {
        match self.get(Site::LayerNorm(sublayer))? {
            SiteParams::LayerNorm(l) => Some(l),
            _ => None,
        }
    }

    pub fn has_lora(&self) -> bool {
        self.sites.iter().any(|(s, _)| matches!(s, Site::Lora(_)))
    }

    /// This layer's parameters at the end of `sublayer`.
    pub fn end(&self, sublayer: Sublayer) -> SublayerEnd<'_> {
        SublayerEnd {
            parallel: self.bottleneck(Site::Parallel(sublayer)),
            sequential: self.bottleneck(Site::Sequential(sublayer)),
            layer_norm: self.layer_norm(sublayer),
        }
    }
}

/// A task's parameters at the end of one sublayer, where every execution path applies them
/// as `LayerNorm'(x + s(y + p(x)))` (see [`adalbert_core::site`]); `None` parts are the
/// identity (the backbone's LayerNorm for `layer_norm`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SublayerEnd<'a> {
    pub parallel: Option<&'a Bottleneck>,
    pub sequential: Option<&'a Bottleneck>,
    pub layer_norm: Option<&'a LayerNorm>,
}

impl<'a> SublayerEnd<'a> {
    /// The end of `sublayer` at layer application `application` for `task` (nothing for the
    /// bare backbone).
    pub fn of(task: Option<&'a TaskParams>, application: usize, sublayer: Sublayer) -> Self {
        task.and_then(|t| t.layer(application))
            .map_or_else(Self::default, |l| l.end(sublayer))
    }

    /// Whether a bottleneck runs here (so the LayerNorm cannot be fused into the
    /// sublayer's last product).
    pub fn has_adapter(&self) -> bool {
        self.parallel.is_some() || self.sequential.is_some()
    }
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
    pub fn parse(name: &str) -> Result<Self> {
        match name {
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

    /// The LoRA update of `projection` at layer application `application`, if any.
    pub fn lora(&self, application: usize, projection: Projection) -> Option<&Lora> {
        self.layer(application)?.lora(projection)
    }

    /// Builds the task from named tensors (bundle contents or trainable variables).
    pub fn from_tensors(
        config: &EncoderConfig,
        layout: &TaskLayout,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let vb = Weights::from_tensors(tensors, Path::new("task parameters"));
        let hidden = config.shape.hidden_size;
        let eps = config.layer_norm_eps;
        let mut layers = Vec::new();
        for k in 0..layout.task_layer_count(config) {
            let vb = vb.pp(format!("task.layers.{k}"));
            let mut layer = TaskLayer::default();
            for site in layout.sites() {
                let params = SiteParams::load(site, vb.pp(site.name()), config, layout)?;
                layer.insert(site, params);
            }
            layers.push(layer);
        }
        let embeddings_layer_norm = if layout.layer_norms {
            let width = config.shape.embedding_size;
            Some(LayerNorm::load(
                vb.pp("task.embeddings.LayerNorm"),
                width,
                eps,
            )?)
        } else {
            None
        };
        let pooler = if layout.pooler {
            Some(Linear::load(vb.pp("task.pooler"), hidden, hidden)?)
        } else {
            None
        };
        Ok(Self {
            layers,
            sharing: layout.sharing,
            embeddings_layer_norm,
            pooler,
            classifier: Linear::load(vb.pp("classifier"), hidden, layout.num_labels)?,
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

    /// The sites of every task layer: the adapter's ([`AdapterKind::sites`]), then the
    /// LayerNorm copies when the layout trains them.
    pub fn sites(&self) -> impl Iterator<Item = Site> + '_ {
        let adapter = self.adapter.iter().flat_map(|spec| spec.kind.sites());
        let norms = self.layer_norms.then_some(&Site::LAYER_NORMS);
        adapter.chain(norms.into_iter().flatten()).copied()
    }

    /// The adapter spec that sizes the bottleneck or LoRA at `site`.
    fn spec_for(&self, site: Site) -> Result<&AdapterSpec> {
        self.adapter
            .as_ref()
            .ok_or_else(|| ModelError::Input(format!("site {} needs an adapter spec", site.name())))
    }

    /// Initial values of every task tensor: adapters near identity (up-projections zero),
    /// LayerNorm and pooler copies of the backbone's, a small random classifier. Seeded.
    pub fn init_tensors(&self, backbone: &Backbone, seed: u64) -> Result<HashMap<String, Tensor>> {
        let config = &backbone.config;
        let hidden = config.shape.hidden_size;
        let mut rng = Normal::new(seed);
        let mut out = HashMap::new();
        for k in 0..self.task_layer_count(config) {
            let prefix = format!("task.layers.{k}");
            for site in self.sites() {
                let prefix = format!("{prefix}.{}", site.name());
                match site {
                    Site::Lora(_) => {
                        let rank = self.spec_for(site)?.size;
                        Lora::init(&prefix, hidden, rank, &mut rng, &mut out)?;
                    }
                    Site::Parallel(_) | Site::Sequential(_) => {
                        let width = self.spec_for(site)?.size;
                        Bottleneck::init(&prefix, hidden, width, &mut rng, &mut out)?;
                    }
                    Site::LayerNorm(sublayer) => {
                        let norm = backbone.encoder.layer(k).layer_norm(sublayer);
                        copy_ln(&mut out, &prefix, norm);
                    }
                }
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
            normal_tensor(&mut rng, &[self.num_labels, hidden])?,
        );
        out.insert("classifier.bias".into(), zeros(&[self.num_labels])?);
        Ok(out)
    }

    /// Trainable parameter count of this layout on `config`.
    pub fn param_count(&self, config: &EncoderConfig) -> usize {
        config.shape.task_params(&self.task_shape())
    }
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

type Tensors = HashMap<String, Tensor>;

/// A seeded N(0, 0.02^2) tensor (the task-initialization stream of `adalbert_core::rng`).
fn normal_tensor(rng: &mut Normal, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Ok(Tensor::from_vec(rng.vec_f32(n, 0.02), shape, &Device::Cpu)?)
}

fn zeros(shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::zeros(shape, DType::F32, &Device::Cpu)?)
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
