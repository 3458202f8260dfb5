//! The modules of the generalized ALBERT/BERT encoder, one struct per checkpoint module.
//!
//! Struct and field names mirror Hugging Face's `modeling_albert.py` (`AlbertEmbeddings`,
//! `AlbertAttention`, `AlbertLayer`, `AlbertLayerGroup`, `AlbertTransformer`), so checkpoint
//! tensor names stay greppable. BERT runs through the same code: one group per layer, E = H and
//! no `embedding_hidden_mapping_in`; [`adalbert_core::Family::module_names`] gives BERT's
//! tensor names where they differ. [`crate::Backbone`] puts the modules together.
//!
//! Each `forward` is the model's math on candle tensors. A task's parameters
//! ([`crate::TaskParams`]) join at the sites of [`adalbert_core::site`]: LoRA in
//! [`AlbertAttention::project_qkv`], everything else at the end of each sublayer
//! ([`end_sublayer`]). Where fused training uses a fused form of a step, the step asks the
//! context ([`Ctx::train_kernels`]) and hands over to [`crate::fused`]; the eval forward on
//! adalbert's kernels is [`crate::fast_encoder`], which reads the same sites.

use std::sync::{Arc, OnceLock};

use adalbert_core::ModelShape;
use candle_core::{DType, Tensor};

use crate::adapters::{Projection, Sublayer, SublayerEnd};
use crate::config::{Activation, EncoderConfig};
use crate::error::Result;
use crate::fused;
use crate::nn::{Ctx, LayerNorm, Linear};
use crate::route::Route;
use crate::train_ops::FrozenLinear;
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

    /// `[B, S]` ids to `[B, S, E]` embeddings, normalized by each row's task LayerNorm.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        route: &Route,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let seq_len = input_ids.dims2()?.1;
        let words = gather_rows(&self.word_embeddings, input_ids)?;
        let types = gather_rows(&self.token_type_embeddings, token_type_ids)?;
        let positions = self
            .position_embeddings
            .narrow(0, 0, seq_len)?
            .unsqueeze(0)?;
        let embeddings = (words + types)?.broadcast_add(&positions)?;
        let normed = route.per_task(&[&embeddings], |task, rows| {
            let ln = task
                .and_then(|t| t.embeddings_layer_norm.as_ref())
                .unwrap_or(&self.layer_norm);
            ln.forward(&rows[0], ctx)
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
    /// Query, key and value packed as one frozen projection for fused training, built on
    /// first use ([`crate::fused`]).
    pub(crate) packed_qkv: OnceLock<Arc<FrozenLinear>>,
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
            packed_qkv: OnceLock::new(),
        })
    }

    /// `LayerNorm(x + dense(attention(x)))`, with each row's task parameters.
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        mask_bias: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let x = hidden_states;
        let projected = match ctx.train_kernels() {
            Some(kernels) => {
                fused::attention(self, x, mask_bias, route, application, ctx, kernels)?
            }
            None => {
                let (b, s, h) = x.dims3()?;
                let [q, k, v] = self.project_qkv(x, route, application, ctx)?;
                let [q, k, v] = [q, k, v].map(|t| self.split_heads(&t));
                let scale = 1.0 / (self.attention_head_size as f64).sqrt();
                let scores = q?.matmul(&k?.t()?)?;
                let probs = ctx.attention_probs(&scores, mask_bias, scale)?;
                ctx.record(|r| r.attentions.push(probs.clone()));
                let probs = ctx.dropout(&probs)?;
                let context = probs.matmul(&v?)?.transpose(1, 2)?.reshape((b, s, h))?;
                self.dense.forward(&context, ctx)?
            }
        };
        let norm = &self.layer_norm;
        end_sublayer(
            Sublayer::Attention,
            norm,
            x,
            &projected,
            route,
            application,
            ctx,
        )
    }

    /// The query, key and value projections, each with the LoRA update of every row's task
    /// where it has one ([`adalbert_core::Site::Lora`]).
    pub fn project_qkv(
        &self,
        hidden_states: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<[Tensor; 3]> {
        let x = hidden_states;
        let [q, k, v] = [&self.query, &self.key, &self.value].map(|l| l.forward(x, ctx));
        let projections = [q?, k?, v?];
        let mut out = Vec::with_capacity(3);
        for (projection, y) in Projection::ALL.into_iter().zip(projections) {
            if !route.any_task(|t| t.lora(application, projection).is_some()) {
                out.push(y);
                continue;
            }
            out.push(route.per_task(&[&y, x], |task, rows| {
                match task.and_then(|t| t.lora(application, projection)) {
                    Some(lora) => Ok((&rows[0] + lora.forward(&rows[1])?)?),
                    None => Ok(rows[0].clone()),
                }
            })?);
        }
        Ok(out.try_into().expect("three projections"))
    }

    /// The query, key and value weights stacked into one `[3H, H]` matrix with one `[3H]`
    /// bias (zeros where a projection has none), for the fused projections.
    pub(crate) fn stacked_qkv(&self) -> Result<(Tensor, Tensor)> {
        let (q, k, v) = (&self.query, &self.key, &self.value);
        let weight = Tensor::cat(&[&q.weight, &k.weight, &v.weight], 0)?;
        let bias = |l: &Linear| match &l.bias {
            Some(b) => Ok(b.clone()),
            None => Tensor::zeros(l.out_dim(), DType::F32, l.weight.device()),
        };
        let bias = Tensor::cat(&[bias(q)?, bias(k)?, bias(v)?], 0)?;
        Ok((weight, bias))
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
    /// Loads from the layer's prefix `vb` ([`ModelShape::layer_prefix`]).
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

    /// Attention, then `LayerNorm(a + ffn_output(act(ffn(a))))`, with each row's task
    /// parameters.
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        mask_bias: &Tensor,
        route: &Route,
        application: usize,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let a = self
            .attention
            .forward(hidden_states, mask_bias, route, application, ctx)?;
        let out = match ctx.train_kernels() {
            Some(kernels) => fused::feed_forward(self, &a, ctx, kernels)?,
            None => {
                let inner = self.ffn.forward_act(&a, self.activation, ctx)?;
                self.ffn_output.forward(&inner, ctx)?
            }
        };
        let norm = &self.full_layer_layer_norm;
        end_sublayer(
            Sublayer::FeedForward,
            norm,
            &a,
            &out,
            route,
            application,
            ctx,
        )
    }
}

/// The end of a sublayer with input `x` and output `y`, for each row's task:
/// `LayerNorm'(x + s(drop(y) + p(x)))` with the task's parallel bottleneck `p`, sequential
/// bottleneck `s(z) = z + sequential(z)` and LayerNorm copy where it has them
/// ([`SublayerEnd`]); `norm` is the backbone's LayerNorm.
pub(crate) fn end_sublayer(
    sublayer: Sublayer,
    norm: &LayerNorm,
    x: &Tensor,
    y: &Tensor,
    route: &Route,
    application: usize,
    ctx: &Ctx,
) -> Result<Tensor> {
    let drop = ctx.dropout_mask_like(y)?;
    let mut inputs = vec![x, y];
    inputs.extend(drop.as_ref());
    route.per_task(&inputs, |task, rows| {
        let end = SublayerEnd::of(task, application, sublayer);
        let norm = end.layer_norm.unwrap_or(norm);
        let (x, y, drop) = (&rows[0], &rows[1], rows.get(2));
        if let Some(kernels) = ctx.train_kernels() {
            return fused::end_sublayer(x, y, drop, end, norm, ctx, kernels);
        }
        let mut z = match drop {
            Some(mask) => ctx.dropout_with(y, mask)?,
            None => y.clone(),
        };
        if let Some(parallel) = end.parallel {
            z = (z + parallel.forward(x, ctx)?)?;
        }
        if let Some(sequential) = end.sequential {
            z = sequential.forward_residual(&z, ctx)?;
        }
        norm.forward(&(x + z)?, ctx)
    })
}

/// `inner_group_num` layers applied in sequence.
pub struct AlbertLayerGroup {
    pub albert_layers: Vec<AlbertLayer>,
}

impl AlbertLayerGroup {
    /// Loads group `group` from the checkpoint's root `vb` (the layer prefixes,
    /// [`ModelShape::layer_prefix`], are full names).
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
    /// Which stored layer each layer application runs.
    shape: ModelShape,
}

impl AlbertTransformer {
    /// Loads from the checkpoint's root `vb`.
    pub fn load(vb: &Weights, config: &EncoderConfig) -> Result<Self> {
        let shape = config.shape;
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
            shape,
        })
    }

    /// The stored layer that layer application `application` runs.
    pub fn layer(&self, application: usize) -> &AlbertLayer {
        let (group, j) = self.shape.stored_layer(application);
        &self.albert_layer_groups[group].albert_layers[j]
    }

    /// `[B, S, E]` embeddings to the last hidden state `[B, S, H]`.
    pub fn forward(
        &self,
        embeddings: &Tensor,
        mask_bias: &Tensor,
        route: &Route,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let mut hidden = match &self.embedding_hidden_mapping_in {
            Some(projection) => projection.forward(embeddings, ctx)?,
            None => embeddings.clone(),
        };
        ctx.record(|r| r.hidden_states.push(hidden.clone()));
        for application in 0..self.shape.applications() {
            hidden =
                self.layer(application)
                    .forward(&hidden, mask_bias, route, application, ctx)?;
            ctx.record(|r| r.hidden_states.push(hidden.clone()));
        }
        Ok(hidden)
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

    /// `tanh(dense(cls))`, on candle's ops in every context.
    pub fn forward(&self, cls: &Tensor) -> Result<Tensor> {
        pool(&self.dense, cls)
    }
}

/// `tanh(dense(cls))` for the backbone's pooler or a task's copy.
pub(crate) fn pool(dense: &Linear, cls: &Tensor) -> Result<Tensor> {
    Ok(dense.forward_candle(cls)?.tanh()?)
}
