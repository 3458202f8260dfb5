//! The fused-training forms of the encoder's steps: where [`crate::albert`] runs a step on
//! candle's ops, training with [`TrainKernels`] runs it here on [`crate::train_ops`], with the
//! same math, the same task sites and the same dropout draws in the same order.
//!
//! Frozen weights take the widest fused op available: the whole attention block
//! ([`train_ops::frozen_attention_block`]) when no row has a LoRA update, the whole
//! feed-forward ([`train_ops::frozen_ffn`]), and each sublayer's end (dropout, sequential
//! adapter, residual, LayerNorm) as one [`train_ops::residual_layer_norm`] node. Trainable
//! weights (full fine-tuning, LoRA) fall back to op-by-op forms.

use std::sync::Arc;

use candle_core::Tensor;

use crate::adapters::{Bottleneck, SublayerEnd, TaskLayer};
use crate::albert::{AlbertAttention, AlbertLayer};
use crate::error::Result;
use crate::exec::TrainKernels;
use crate::nn::{Ctx, LayerNorm};
use crate::route::Route;
use crate::train_ops::{self, FrozenLinear};

/// The attention's output projection `dense(attention(x))` before dropout.
pub(crate) fn attention(
    module: &AlbertAttention,
    x: &Tensor,
    mask_bias: &Tensor,
    route: &Route,
    application: usize,
    ctx: &Ctx,
    kernels: TrainKernels,
) -> Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    let heads = module.num_attention_heads;
    let scale = 1.0 / (module.attention_head_size as f32).sqrt();
    let lora = route.any_layer(application, TaskLayer::has_lora);
    let frozen = [&module.query, &module.key, &module.value]
        .iter()
        .all(|l| l.is_frozen());
    let qkv = if kernels.frozen_gemm && frozen && !lora {
        let packed = packed_qkv(module)?;
        // The whole block keeps its projection inside; a recording context needs it.
        if module.dense.is_frozen() && !ctx.is_recording() {
            let drop = ctx.next_dropout_mask(b * heads * s * s);
            let dense = module.dense.frozen_packed()?;
            return train_ops::frozen_attention_block(
                x,
                packed,
                dense,
                mask_bias,
                heads,
                scale,
                drop,
                kernels.isa,
            );
        }
        train_ops::frozen_linear(x, packed, kernels.isa)?
    } else {
        let [q, k, v] = module.project_qkv(x, route, application, ctx)?;
        Tensor::cat(&[&q, &k, &v], 2)?
    };
    ctx.record(|r| r.qkv.push(qkv.clone()));
    let drop = ctx.next_dropout_mask(b * heads * s * s);
    let context = train_ops::attention(&qkv, mask_bias, heads, scale, drop, kernels.isa)?;
    module.dense.forward(&context, ctx)
}

/// The query, key and value packed as one frozen projection (packed on the first call).
fn packed_qkv(module: &AlbertAttention) -> Result<&Arc<FrozenLinear>> {
    if let Some(p) = module.packed_qkv.get() {
        return Ok(p);
    }
    let (weight, bias) = module.stacked_qkv()?;
    let p = Arc::new(train_ops::pack_frozen(&weight, Some(&bias))?);
    Ok(module.packed_qkv.get_or_init(|| p))
}

/// `ffn_output(act(ffn(a)))` before dropout.
pub(crate) fn feed_forward(
    layer: &AlbertLayer,
    a: &Tensor,
    ctx: &Ctx,
    kernels: TrainKernels,
) -> Result<Tensor> {
    let (ffn, ffn_output) = (&layer.ffn, &layer.ffn_output);
    if kernels.frozen_gemm && ffn.is_frozen() && ffn_output.is_frozen() {
        let (first, second) = (ffn.frozen_packed()?, ffn_output.frozen_packed()?);
        return train_ops::frozen_ffn(a, first, layer.activation, second, kernels.isa);
    }
    let inner = ffn.forward_act(a, layer.activation, ctx)?;
    ffn_output.forward(&inner, ctx)
}

/// [`crate::albert::end_sublayer`] for one task's rows:
/// `LayerNorm'(x + s(drop(y) + p(x)))`.
pub(crate) fn end_sublayer(
    x: &Tensor,
    y: &Tensor,
    drop: Option<&Tensor>,
    end: SublayerEnd,
    norm: &LayerNorm,
    ctx: &Ctx,
    kernels: TrainKernels,
) -> Result<Tensor> {
    match end.parallel {
        Some(parallel) => {
            let mut z = y.clone();
            if let Some(mask) = drop {
                z = ctx.dropout_with(&z, mask)?;
            }
            z = (z + parallel.forward(x, ctx)?)?;
            residual_norm(x, &z, None, end.sequential, norm, ctx, kernels)
        }
        None => residual_norm(x, y, drop, end.sequential, norm, ctx, kernels),
    }
}

/// `norm(x + s(z * drop))` with `s(z) = z + adapter(z)` (none is the identity), as one
/// [`train_ops::residual_layer_norm`] node.
fn residual_norm(
    x: &Tensor,
    z: &Tensor,
    drop: Option<&Tensor>,
    adapter: Option<&Bottleneck>,
    norm: &LayerNorm,
    ctx: &Ctx,
    kernels: TrainKernels,
) -> Result<Tensor> {
    let drop = drop
        .map(|m| m.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    let eps = norm.eps as f32;
    let (gamma, beta) = (&norm.weight, &norm.bias);
    let fused_adapter = match adapter {
        Some(a) => match (&a.down.bias, &a.up.bias) {
            (Some(down_b), Some(up_b)) => Some(train_ops::ResidualNormAdapter {
                down_w: &a.down.weight,
                down_b,
                up_w: &a.up.weight,
                up_b,
                act: a.activation,
            }),
            // The fused node takes biased projections; others run op by op.
            _ => {
                let mut z = z.clone();
                if let Some(m) = drop {
                    z = train_ops::dropout(&z, m, kernels.isa)?;
                }
                let z = a.forward_residual(&z, ctx)?;
                return train_ops::residual_layer_norm(
                    x,
                    &z,
                    None,
                    None,
                    gamma,
                    beta,
                    eps,
                    kernels.isa,
                );
            }
        },
        None => None,
    };
    train_ops::residual_layer_norm(x, z, drop, fused_adapter, gamma, beta, eps, kernels.isa)
}
