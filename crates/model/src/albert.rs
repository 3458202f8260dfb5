//! The generalized ALBERT/BERT encoder.
//!
//! Struct and field names mirror Hugging Face's `modeling_albert.py` (`AlbertEmbeddings`,
//! `AlbertAttention`, `AlbertLayer`, `AlbertLayerGroup`, `AlbertTransformer`), so checkpoint
//! tensor names stay greppable. BERT runs through the same code: one group per layer, E = H and
//! no `embedding_hidden_mapping_in`; [`adalbert_core::Family::module_names`] gives BERT's
//! tensor names where they differ.
//!
//! Task-specific parameters ([`crate::adapters::TaskParams`]) hook in at the places the
//! adapter literature puts them: after the attention output projection and after the FFN
//! output (Houlsby, Pfeiffer), beside the FFN (parallel), on query/value (LoRA), and as
//! per-task replacements of every LayerNorm.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};

use crate::adapters::{Projection, Sublayer, SublayerEnd, TaskLayer, TaskParams};
use crate::checkpoint::Checkpoint;
use crate::config::{Activation, EncoderConfig};
use crate::error::{ModelError, Result};
use crate::exec::{inference_path, InferencePath, Isa, Kernels, TrainKernels};
use crate::fast_encoder::FastEncoder;
use crate::nn::{Ctx, LayerNorm, Linear};
use crate::train_ops::{self, FrozenLinear};
use crate::weights::Weights;

/// Word, position and token-type embeddings of width E, then LayerNorm.
pub struct AlbertEmbeddings {
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    pub token_type_embeddings: Tensor,
    pub layer_norm: LayerNorm,
}

impl AlbertEmbeddings {
    /// Loads from `embeddings.` (`vb` is that prefix).
    pub fn load(vb: Weights, config: &EncoderConfig) -> Result<Self> {
        let shape = &config.shape;
        let width = shape.embedding_size;
        let table = |name: &str, rows: usize| vb.pp(name).get("weight", &[rows, width]);
        Ok(Self {
            word_embeddings: table("word_embeddings", shape.vocab_size)?,
            position_embeddings: table("position_embeddings", shape.max_position_embeddings)?,
            token_type_embeddings: table("token_type_embeddings", shape.type_vocab_size)?,
            layer_norm: LayerNorm::load(vb.pp("LayerNorm"), width, config.layer_norm_eps)?,
        })
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        route: &Route,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let (_, s) = input_ids.dims2()?;
        let words = gather_rows(&self.word_embeddings, input_ids)?;
        let types = gather_rows(&self.token_type_embeddings, token_type_ids)?;
        let positions = self.position_embeddings.narrow(0, 0, s)?.unsqueeze(0)?;
        let x = (words + types)?.broadcast_add(&positions)?;
        let normed = route.per_task(&[&x], |task, r| {
            let ln = task
                .and_then(|t| t.embeddings_layer_norm.as_ref())
                .unwrap_or(&self.layer_norm);
            ln.forward(&r[0], ctx)
        })?;
        ctx.dropout(&normed)
    }
}

/// Rows of `table` selected by integer ids of shape [B, S] -> [B, S, width].
fn gather_rows(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, s) = ids.dims2()?;
    let flat = ids.flatten_all()?;
    let rows = table.index_select(&flat, 0)?;
    Ok(rows.reshape((b, s, table.dims()[1]))?)
}

/// Multi-head self-attention with its output projection, residual and LayerNorm.
pub struct AlbertAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub num_attention_heads: usize,
    pub attention_head_size: usize,
    /// Query, key and value weights stacked and packed for [`FrozenLinear`] (training with
    /// the fused ops on a frozen backbone), built on first use.
    qkv: OnceLock<Arc<FrozenLinear>>,
}

impl AlbertAttention {
    /// Loads from the layer's prefix `vb`: ALBERT keeps these tensors under `attention.`,
    /// BERT under `attention.self.` and `attention.output.`, as
    /// [`adalbert_core::Family::module_names`] spells them.
    pub fn load(vb: &Weights, config: &EncoderConfig) -> Result<Self> {
        let names = config.shape.family.module_names();
        let hidden = config.shape.hidden_size;
        let square = |name: &str| Linear::load(vb.pp(name), hidden, hidden);
        Ok(Self {
            query: square(names.query)?,
            key: square(names.key)?,
            value: square(names.value)?,
            dense: square(names.dense)?,
            layer_norm: LayerNorm::load(
                vb.pp(names.attention_layer_norm),
                hidden,
                config.layer_norm_eps,
            )?,
            num_attention_heads: config.shape.num_attention_heads,
            attention_head_size: config.shape.head_dim(),
            qkv: OnceLock::new(),
        })
    }

    /// The query, key and value projections, with each row's task LoRA added where its
    /// layer has one.
    fn project_qkv(
        &self,
        x: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let [q, k, v] = [&self.query, &self.key, &self.value].map(|l| l.forward_t(x, ctx));
        let [q, k, v] = [
            (Projection::Query, q?),
            (Projection::Key, k?),
            (Projection::Value, v?),
        ]
        .map(|(projection, y)| {
            if !route.any_layer(application, |l| l.lora(projection).is_some()) {
                return Ok(y);
            }
            route.per_task(&[&y, x], |task, r| {
                match task.and_then(|t| t.lora(application, projection)) {
                    Some(l) => Ok((&r[0] + l.forward(&r[1])?)?),
                    None => Ok(r[0].clone()),
                }
            })
        });
        Ok((q?, k?, v?))
    }

    /// [B, S, H] -> [B, heads, S, head_dim]
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        Ok(
            x.reshape((b, s, self.num_attention_heads, self.attention_head_size))?
                .transpose(1, 2)?
                .contiguous()?,
        )
    }

    fn forward(
        &self,
        x: &Tensor,
        mask_bias: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        if let Some(k) = ctx.train_kernels() {
            return self.forward_fused(x, mask_bias, route, application, ctx, k);
        }
        let (b, s, h) = x.dims3()?;
        let (q, k, v) = self.project_qkv(x, route, application, ctx)?;
        let (q, k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        let scale = 1.0 / (self.attention_head_size as f64).sqrt();
        let probs = ctx.dropout(&ctx.attention_probs(&q.matmul(&k.t()?)?, mask_bias, scale)?)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        let projected = ctx.dropout(&self.dense.forward_t(&context, ctx)?)?;
        self.finish(x, &projected, route, application, ctx)
    }

    /// [`AlbertAttention::forward`] on the fused training ops: one QKV projection (or the
    /// three with their LoRA updates, concatenated), then [`train_ops::attention`].
    fn forward_fused(
        &self,
        x: &Tensor,
        mask_bias: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
        kernels: TrainKernels,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let lora = route.any_layer(application, TaskLayer::has_lora);
        let frozen = self.query.is_frozen() && self.key.is_frozen() && self.value.is_frozen();
        let qkv = if kernels.frozen_gemm && frozen && !lora {
            let packed = match self.qkv.get() {
                Some(p) => p,
                None => {
                    let (q, k, v) = (&self.query, &self.key, &self.value);
                    let w = Tensor::cat(&[&q.weight, &k.weight, &v.weight], 0)?;
                    let bias = match (&q.bias, &k.bias, &v.bias) {
                        (Some(a), Some(b), Some(c)) => Some(Tensor::cat(&[a, b, c], 0)?),
                        _ => {
                            let zeros = |l: &Linear| {
                                l.bias.clone().map_or_else(
                                    || Tensor::zeros(l.out_dim(), DType::F32, x.device()),
                                    Ok,
                                )
                            };
                            Some(Tensor::cat(&[zeros(q)?, zeros(k)?, zeros(v)?], 0)?)
                        }
                    };
                    let p = Arc::new(train_ops::pack_frozen(&w, bias.as_ref())?);
                    self.qkv.get_or_init(|| p)
                }
            };
            if self.dense.is_frozen() {
                let heads = self.num_attention_heads;
                let drop = ctx.next_dropout_mask(b * heads * s * s);
                let scale = 1.0 / (self.attention_head_size as f32).sqrt();
                let dense = self.dense.frozen_packed()?;
                let projected = train_ops::frozen_attention_block(
                    x,
                    packed,
                    dense,
                    mask_bias,
                    heads,
                    scale,
                    drop,
                    kernels.isa,
                )?;
                return self.finish_fused(x, &projected, route, application, ctx, kernels);
            }
            train_ops::frozen_linear(x, packed, kernels.isa)?
        } else {
            let (q, k, v) = self.project_qkv(x, route, application, ctx)?;
            Tensor::cat(&[&q, &k, &v], 2)?
        };
        let heads = self.num_attention_heads;
        let drop = ctx.next_dropout_mask(b * heads * s * s);
        let scale = 1.0 / (self.attention_head_size as f32).sqrt();
        let context = train_ops::attention(&qkv, mask_bias, heads, scale, drop, kernels.isa)?;
        let projected = self.dense.forward_t(&context, ctx)?;
        self.finish_fused(x, &projected, route, application, ctx, kernels)
    }

    /// Dropout, attention adapter, residual and LayerNorm after the output projection, on
    /// [`train_ops::residual_layer_norm`].
    fn finish_fused(
        &self,
        x: &Tensor,
        projected: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
        kernels: TrainKernels,
    ) -> Result<Tensor> {
        let drop = dropout_mask_tensor(projected, ctx)?;
        let mut inputs = vec![x, projected];
        inputs.extend(drop.as_ref());
        route.per_task(&inputs, |task, r| {
            let end = SublayerEnd::of(task, application, Sublayer::Attention);
            let ln = end.layer_norm.unwrap_or(&self.layer_norm);
            fused_residual_norm(&r[0], &r[1], r.get(2), end.sequential, ln, ctx, kernels)
        })
    }

    /// Attention adapter, residual and LayerNorm after the output projection.
    fn finish(
        &self,
        x: &Tensor,
        projected: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        route.per_task(&[x, projected], |task, r| {
            let end = SublayerEnd::of(task, application, Sublayer::Attention);
            let projected = match end.sequential {
                Some(a) => a.forward_residual_t(&r[1], ctx)?,
                None => r[1].clone(),
            };
            let ln = end.layer_norm.unwrap_or(&self.layer_norm);
            ln.forward(&(&r[0] + projected)?, ctx)
        })
    }
}

/// One transformer layer: attention, then the FFN (`ffn` -> activation -> `ffn_output`).
pub struct AlbertLayer {
    pub attention: AlbertAttention,
    pub ffn: Linear,
    pub ffn_output: Linear,
    pub full_layer_layer_norm: LayerNorm,
    pub activation: Activation,
}

impl AlbertLayer {
    /// Loads from the layer's prefix `vb` ([`adalbert_core::ModelShape::layer_prefix`]).
    pub fn load(vb: &Weights, config: &EncoderConfig) -> Result<Self> {
        let names = config.shape.family.module_names();
        let (hidden, inner) = (config.shape.hidden_size, config.shape.intermediate_size);
        Ok(Self {
            attention: AlbertAttention::load(vb, config)?,
            ffn: Linear::load(vb.pp(names.ffn), hidden, inner)?,
            ffn_output: Linear::load(vb.pp(names.ffn_output), inner, hidden)?,
            full_layer_layer_norm: LayerNorm::load(
                vb.pp(names.full_layer_layer_norm),
                hidden,
                config.layer_norm_eps,
            )?,
            activation: config.hidden_act,
        })
    }

    /// The backbone's LayerNorm at the end of `sublayer`.
    pub fn layer_norm(&self, sublayer: Sublayer) -> &LayerNorm {
        match sublayer {
            Sublayer::Attention => &self.attention.layer_norm,
            Sublayer::FeedForward => &self.full_layer_layer_norm,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        mask_bias: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let a = self
            .attention
            .forward(x, mask_bias, route, application, ctx)?;
        if let Some(k) = ctx.train_kernels() {
            let out = if k.frozen_gemm && self.ffn.is_frozen() && self.ffn_output.is_frozen() {
                let (first, second) = (self.ffn.frozen_packed()?, self.ffn_output.frozen_packed()?);
                train_ops::frozen_ffn(&a, first, self.activation, second, k.isa)?
            } else {
                let hidden = self.ffn.forward_act_t(&a, self.activation, ctx)?;
                self.ffn_output.forward_t(&hidden, ctx)?
            };
            let drop = dropout_mask_tensor(&out, ctx)?;
            let mut inputs = vec![&a, &out];
            inputs.extend(drop.as_ref());
            return route.per_task(&inputs, |task, r| {
                let end = SublayerEnd::of(task, application, Sublayer::FeedForward);
                let ln = end.layer_norm.unwrap_or(&self.full_layer_layer_norm);
                let adapter = end.sequential;
                match end.parallel {
                    Some(p) => {
                        let mut out = r[1].clone();
                        if let Some(m) = r.get(2) {
                            out = ctx.dropout_with(&out, m)?;
                        }
                        out = (out + p.forward_t(&r[0], ctx)?)?;
                        fused_residual_norm(&r[0], &out, None, adapter, ln, ctx, k)
                    }
                    None => fused_residual_norm(&r[0], &r[1], r.get(2), adapter, ln, ctx, k),
                }
            });
        }
        let hidden = activate_t(&self.ffn.forward_t(&a, ctx)?, self.activation, ctx)?;
        let out = ctx.dropout(&self.ffn_output.forward_t(&hidden, ctx)?)?;
        route.per_task(&[&a, &out], |task, r| {
            let end = SublayerEnd::of(task, application, Sublayer::FeedForward);
            let mut out = r[1].clone();
            if let Some(p) = end.parallel {
                out = (out + p.forward_t(&r[0], ctx)?)?;
            }
            if let Some(o) = end.sequential {
                out = o.forward_residual_t(&out, ctx)?;
            }
            let ln = end.layer_norm.unwrap_or(&self.full_layer_layer_norm);
            ln.forward(&(out + &r[0])?, ctx)
        })
    }
}

/// The next dropout mask for `t`'s elements, as a tensor of `t`'s shape (so
/// [`Route::per_task`] splits it with the rows it belongs to); `None` when dropout is off.
fn dropout_mask_tensor(t: &Tensor, ctx: &Ctx) -> Result<Option<Tensor>> {
    ctx.next_dropout_mask(t.elem_count())
        .map(|m| Tensor::from_vec(m, t.shape(), t.device()))
        .transpose()
        .map_err(Into::into)
}

/// `ln(x + adapter(p * drop))` (the adapter with its residual; none is the identity) on
/// [`train_ops::residual_layer_norm`], the end of each sublayer in fused training.
fn fused_residual_norm(
    x: &Tensor,
    p: &Tensor,
    drop: Option<&Tensor>,
    adapter: Option<&crate::adapters::Bottleneck>,
    ln: &LayerNorm,
    ctx: &Ctx,
    k: TrainKernels,
) -> Result<Tensor> {
    let drop = drop
        .map(|m| m.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    let eps = ln.eps as f32;
    let fused_adapter = match adapter {
        Some(a) => match (&a.down.bias, &a.up.bias) {
            (Some(down_b), Some(up_b)) => Some(train_ops::ResidualNormAdapter {
                down_w: &a.down.weight,
                down_b,
                up_w: &a.up.weight,
                up_b,
                act: a.activation,
            }),
            // Bias-free adapters run on the separate ops.
            _ => {
                let mut z = p.clone();
                if let Some(m) = drop {
                    z = train_ops::dropout(&z, m, k.isa)?;
                }
                let z = a.forward_residual_t(&z, ctx)?;
                return train_ops::residual_layer_norm(
                    x, &z, None, None, &ln.weight, &ln.bias, eps, k.isa,
                );
            }
        },
        None => None,
    };
    train_ops::residual_layer_norm(x, p, drop, fused_adapter, &ln.weight, &ln.bias, eps, k.isa)
}

/// [`activate`], with GELU on the fused training op when `ctx` uses them.
pub fn activate_t(x: &Tensor, act: Activation, ctx: &Ctx) -> Result<Tensor> {
    match ctx.train_kernels() {
        Some(k) if act != Activation::Relu => crate::train_ops::gelu(x, act, k.isa),
        _ => activate(x, act),
    }
}

pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::GeluNew => x.gelu()?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::Relu => x.relu()?,
    })
}

/// `inner_group_num` layers applied in sequence.
pub struct AlbertLayerGroup {
    pub albert_layers: Vec<AlbertLayer>,
}

impl AlbertLayerGroup {
    /// Loads group `group` from the checkpoint's root `vb` (the layer prefixes,
    /// [`adalbert_core::ModelShape::layer_prefix`], are full names).
    pub fn load(vb: &Weights, config: &EncoderConfig, group: usize) -> Result<Self> {
        let shape = &config.shape;
        let albert_layers = (0..shape.inner_group_num)
            .map(|j| AlbertLayer::load(&vb.pp(shape.layer_prefix(group, j)), config))
            .collect::<Result<_>>()?;
        Ok(Self { albert_layers })
    }
}

/// The E->H projection and the layer groups, applied `num_hidden_layers` times.
pub struct AlbertTransformer {
    pub embedding_hidden_mapping_in: Option<Linear>,
    pub albert_layer_groups: Vec<AlbertLayerGroup>,
}

impl AlbertTransformer {
    /// Loads from the checkpoint's root `vb`.
    pub fn load(vb: &Weights, config: &EncoderConfig) -> Result<Self> {
        let shape = &config.shape;
        let embedding_hidden_mapping_in = shape
            .has_projection()
            .then(|| {
                let vb = vb.pp("encoder.embedding_hidden_mapping_in");
                Linear::load(vb, shape.embedding_size, shape.hidden_size)
            })
            .transpose()?;
        let albert_layer_groups = (0..shape.num_hidden_groups)
            .map(|g| AlbertLayerGroup::load(vb, config, g))
            .collect::<Result<_>>()?;
        Ok(Self {
            embedding_hidden_mapping_in,
            albert_layer_groups,
        })
    }
}

/// Pooler: `tanh(dense(h[CLS]))`.
pub struct Pooler {
    pub dense: Linear,
}

impl Pooler {
    /// Loads from `vb` (`pooler` in ALBERT, `pooler.dense` in BERT).
    pub fn load(vb: Weights, config: &EncoderConfig) -> Result<Self> {
        let hidden = config.shape.hidden_size;
        Ok(Self {
            dense: Linear::load(vb, hidden, hidden)?,
        })
    }

    pub fn forward(&self, cls: &Tensor) -> Result<Tensor> {
        Ok(self.dense.forward(cls)?.tanh()?)
    }
}

/// Outputs of one encoder pass.
pub struct EncoderOutput {
    /// [B, S, H]
    pub last_hidden_state: Tensor,
    /// [B, H]; `None` when the checkpoint has no pooler.
    pub pooler_output: Option<Tensor>,
}

/// The frozen, shareable backbone: embeddings, transformer and (optional) pooler.
pub struct Backbone {
    pub config: EncoderConfig,
    pub embeddings: AlbertEmbeddings,
    pub encoder: AlbertTransformer,
    pub pooler: Option<Pooler>,
    kernels: Kernels,
    /// Weights packed for adalbert's kernels, built on the first eval forward (`None` when
    /// [`inference_path`] chose candle's ops or the packing refused the backbone).
    fast: OnceLock<Option<FastEncoder>>,
}

impl Backbone {
    /// Builds the backbone from checkpoint tensors; a missing pooler is allowed (sentence
    /// encoders such as all-MiniLM-L6-v2 may ship without one).
    pub fn load(checkpoint: &Checkpoint, config: &EncoderConfig) -> Result<Self> {
        Self::from_weights(&Weights::new(checkpoint), config)
    }

    /// [`Backbone::load`] from the checkpoint's root `vb`.
    pub fn from_weights(vb: &Weights, config: &EncoderConfig) -> Result<Self> {
        let pooler = vb.pp(config.shape.family.module_names().pooler);
        let pooler = if pooler.contains("weight") {
            Some(Pooler::load(pooler, config)?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            embeddings: AlbertEmbeddings::load(vb.pp("embeddings"), config)?,
            encoder: AlbertTransformer::load(vb, config)?,
            pooler,
            kernels: Kernels::Auto,
            fast: OnceLock::new(),
        })
    }

    /// Chooses the inference kernels (and drops any packed weights, so this is also the way
    /// to make the fast path see weights changed after a forward pass).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
        self.fast = OnceLock::new();
    }

    /// The instruction set the eval forward runs on, or `None` for candle's ops.
    pub fn inference_isa(&self) -> Option<Isa> {
        self.fast_encoder().map(FastEncoder::isa)
    }

    /// What runs the eval forward's matrix multiplies (`candle`, `avx512`, `portable`,
    /// `amx-bf16`, ...).
    pub fn inference_kernels(&self) -> String {
        self.fast_encoder()
            .map_or_else(|| "candle".to_string(), FastEncoder::describe)
    }

    fn fast_encoder(&self) -> Option<&FastEncoder> {
        self.fast
            .get_or_init(|| match inference_path(self.kernels) {
                InferencePath::Candle => None,
                InferencePath::Kernels { isa, precision } => {
                    FastEncoder::new(self, isa, precision).ok()
                }
            })
            .as_ref()
    }

    /// Checks ids against the vocabulary and lengths against the position table, so bad input
    /// is a clear error rather than an index panic inside a kernel.
    pub fn check_inputs(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<()> {
        let c = &self.config;
        let (_, s) = input_ids.dims2()?;
        if s == 0 {
            return Err(ModelError::Input("empty sequence".into()));
        }
        if s > c.shape.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence length {s} exceeds max_position_embeddings {}",
                c.shape.max_position_embeddings
            )));
        }
        if token_type_ids.dims() != input_ids.dims() {
            return Err(ModelError::Input(format!(
                "token_type_ids shape {:?} differs from input_ids shape {:?}",
                token_type_ids.dims(),
                input_ids.dims()
            )));
        }
        let (min_id, max_id) = id_range(input_ids)?;
        if min_id < 0 || max_id as usize >= c.shape.vocab_size {
            return Err(ModelError::Input(format!(
                "token id out of range [0, {}): found {min_id}..={max_id}",
                c.shape.vocab_size
            )));
        }
        let (min_t, max_t) = id_range(token_type_ids)?;
        if min_t < 0 || max_t as usize >= c.shape.type_vocab_size {
            return Err(ModelError::Input(format!(
                "token type id out of range [0, {})",
                c.shape.type_vocab_size
            )));
        }
        Ok(())
    }

    /// Runs the encoder. `attention_mask` is 1 for real tokens and 0 for padding, [B, S].
    /// `task` adds one task's parameters to every row; `None` runs the bare backbone.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        task: Option<&TaskParams>,
        ctx: &Ctx,
    ) -> Result<EncoderOutput> {
        let route = match task {
            Some(t) => Route::Task(t),
            None => Route::Backbone,
        };
        self.forward_routed(input_ids, token_type_ids, attention_mask, &route, ctx)
    }

    /// Runs the encoder with task parameters chosen per row ([`Route::Rows`]): one batch can
    /// mix tasks while the backbone's matrices are applied to the whole batch at once.
    pub fn forward_routed(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        route: &Route,
        ctx: &Ctx,
    ) -> Result<EncoderOutput> {
        self.check_inputs(input_ids, token_type_ids)?;
        route.check(input_ids.dims()[0])?;
        if attention_mask.dims() != input_ids.dims() {
            return Err(ModelError::Input(format!(
                "attention_mask shape {:?} differs from input_ids shape {:?}",
                attention_mask.dims(),
                input_ids.dims()
            )));
        }
        if !ctx.train {
            if let Some(fast) = self.fast_encoder() {
                let s = input_ids.dims()[1];
                let parts = route.token_parts(input_ids.dims()[0], s);
                let h = fast.forward(self, input_ids, token_type_ids, attention_mask, &parts)?;
                return self.finish(h, route);
            }
        }
        let c = &self.config;
        let mask_bias = mask_bias(attention_mask)?;
        let mut h = self
            .embeddings
            .forward(input_ids, token_type_ids, route, ctx)?;
        if let Some(m) = &self.encoder.embedding_hidden_mapping_in {
            h = m.forward_t(&h, ctx)?;
        }
        let per_group = c.shape.layers_per_group();
        for i in 0..c.shape.num_hidden_layers {
            let group = &self.encoder.albert_layer_groups[i / per_group];
            for (j, layer) in group.albert_layers.iter().enumerate() {
                let application = i * c.shape.inner_group_num + j;
                h = layer.forward(&h, &mask_bias, route, application, ctx)?;
            }
        }
        self.finish(h, route)
    }

    /// Pooler outputs (per task) next to the last hidden state.
    fn finish(&self, h: Tensor, route: &Route) -> Result<EncoderOutput> {
        let cls = h.narrow(1, 0, 1)?.squeeze(1)?;
        let has_pooler = self.pooler.is_some() || route.any_task(|t| t.pooler.is_some());
        let pooler_output = if has_pooler {
            let pooled = route.per_task(&[&cls], |task, r| {
                match task.and_then(|t| t.pooler.as_ref()) {
                    Some(dense) => Ok(dense.forward(&r[0])?.tanh()?),
                    None => match &self.pooler {
                        Some(p) => p.forward(&r[0]),
                        None => Err(ModelError::Input(
                            "some rows need a pooler the backbone does not have".into(),
                        )),
                    },
                }
            })?;
            Some(pooled)
        } else {
            None
        };
        Ok(EncoderOutput {
            last_hidden_state: h,
            pooler_output,
        })
    }

    /// Parameter counts of this backbone by part; the pooler counts only when the checkpoint
    /// has one (sentence encoders may ship without).
    pub fn param_counts(&self) -> adalbert_core::ParamCounts {
        let mut counts = self.config.shape.param_counts();
        if self.pooler.is_none() {
            counts.pooler = 0;
        }
        counts
    }

    /// Number of layer applications (where per-application adapters attach).
    pub fn num_applications(&self) -> usize {
        self.config.shape.num_hidden_layers * self.config.shape.inner_group_num
    }
}

/// Smallest and largest value of an integer id tensor (one conversion, two reductions).
fn id_range(ids: &Tensor) -> Result<(i64, i64)> {
    let flat = ids.to_dtype(DType::I64)?.flatten_all()?;
    Ok((
        flat.min(0)?.to_scalar::<i64>()?,
        flat.max(0)?.to_scalar::<i64>()?,
    ))
}

/// Additive attention bias [B, 1, 1, S]: 0 for real tokens and the most negative f32 for
/// padding, as Hugging Face does (`torch.finfo(dtype).min`).
fn mask_bias(attention_mask: &Tensor) -> Result<Tensor> {
    let (b, s) = attention_mask.dims2()?;
    let m = attention_mask.to_dtype(DType::F32)?;
    let bias = ((m.ones_like()? - m)? * f32::MIN as f64)?;
    Ok(bias.reshape((b, 1, 1, s))?)
}

/// Mask-aware mean over the sequence (sentence-transformers' pooling), [B, S, H] -> [B, H].
pub fn mean_pool(last_hidden_state: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let m = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = last_hidden_state.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// The `[CLS]` vector, [B, S, H] -> [B, H].
pub fn cls_pool(last_hidden_state: &Tensor) -> Result<Tensor> {
    Ok(last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?)
}

impl Backbone {
    /// Loads `config.json` and the weights of a model directory.
    pub fn from_dir(dir: &std::path::Path) -> Result<(Self, Checkpoint)> {
        let config = EncoderConfig::from_path(dir)?;
        let ck = Checkpoint::open(dir)?;
        Ok((Self::load(&ck, &config)?, ck))
    }
}

/// Which task parameters each row of a batch uses.
pub enum Route<'a> {
    /// The bare backbone.
    Backbone,
    /// One task for every row.
    Task(&'a TaskParams),
    /// Consecutive row ranges `(start, len)`, each with its task; together they must cover
    /// the batch exactly, in order.
    Rows(Vec<(usize, usize, &'a TaskParams)>),
}

impl Route<'_> {
    fn check(&self, batch: usize) -> Result<()> {
        if let Route::Rows(parts) = self {
            let mut next = 0;
            for (start, len, _) in parts {
                if *start != next || *len == 0 {
                    return Err(ModelError::Input(format!(
                        "row routing must cover the batch in order: range at {start} (len {len}) after row {next}"
                    )));
                }
                next = start + len;
            }
            if next != batch {
                return Err(ModelError::Input(format!(
                    "row routing covers {next} rows, the batch has {batch}"
                )));
            }
        }
        Ok(())
    }

    /// `(first token row, token rows, task)` per task, for a batch of `batch` sequences of
    /// `seq` tokens.
    fn token_parts(&self, batch: usize, seq: usize) -> Vec<(usize, usize, Option<&TaskParams>)> {
        match self {
            Route::Backbone => vec![(0, batch * seq, None)],
            Route::Task(t) => vec![(0, batch * seq, Some(*t))],
            Route::Rows(parts) => parts
                .iter()
                .map(|(start, len, t)| (start * seq, len * seq, Some(*t)))
                .collect(),
        }
    }

    fn any_task(&self, pred: impl Fn(&TaskParams) -> bool) -> bool {
        match self {
            Route::Backbone => false,
            Route::Task(t) => pred(t),
            Route::Rows(parts) => parts.iter().any(|(_, _, t)| pred(t)),
        }
    }

    fn any_layer(&self, application: usize, pred: impl Fn(&TaskLayer) -> bool) -> bool {
        self.any_task(|t| t.layer(application).is_some_and(&pred))
    }

    /// Applies `f` to the rows of each task (all inputs narrowed to the same rows) and
    /// stacks the results back in batch order.
    fn per_task(
        &self,
        inputs: &[&Tensor],
        f: impl Fn(Option<&TaskParams>, &[Tensor]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let whole = || inputs.iter().map(|t| (*t).clone()).collect::<Vec<_>>();
        match self {
            Route::Backbone => f(None, &whole()),
            Route::Task(t) => f(Some(t), &whole()),
            Route::Rows(parts) if parts.len() == 1 => f(Some(parts[0].2), &whole()),
            Route::Rows(parts) => {
                let mut outs = Vec::with_capacity(parts.len());
                for (start, len, task) in parts {
                    let rows = inputs
                        .iter()
                        .map(|t| t.narrow(0, *start, *len))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    outs.push(f(Some(task), &rows)?);
                }
                Ok(Tensor::cat(&outs, 0)?)
            }
        }
    }
}
