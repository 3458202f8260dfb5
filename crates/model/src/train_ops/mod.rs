//! Differentiable fused ops for the training forward pass, on adalbert's kernels.
//!
//! Why they exist: in adapter and head-only training the backbone's linear weights are
//! frozen, yet candle's `matmul` backward always computes the weight gradient as well (half
//! of the backward FLOPs, thrown away), on its AVX2 kernel over transposed weight views; and
//! the composed LayerNorm, softmax and GELU are each a dozen elementwise passes (plus as many
//! in their backward graphs), every one a separate trip through memory, candle's thread pool
//! and a zero-initialized gradient buffer. The ops here do the same math in one pass each,
//! with hand-written backward passes, as candle custom ops, so candle's autograd still
//! drives training and gradients reach every trainable tensor. One op per file:
//!
//! - [`frozen_linear`] (and [`frozen_linear_act`]): `y = x W^T + b` for a frozen `W` packed
//!   once ([`FrozenLinear`]: `W^T` for the forward, `W` for `dx = dy W`); no weight gradient.
//! - [`frozen_ffn`] and [`frozen_attention_block`]: a frozen sublayer's projections around its
//!   activation or its attention as one node.
//! - [`linear`]: a trainable linear layer with gradients for the input, weight and bias.
//! - [`layer_norm`]: LayerNorm over the last dimension with gradients for the input, gamma
//!   and beta (the adapter recipe trains every LayerNorm).
//! - [`masked_softmax`]: `softmax(scale * s + mask)` over the last dimension, the attention
//!   probabilities, with `ds = scale * y * (dy - sum(dy * y))`.
//! - [`gelu`]: GELU in the erf form and the tanh form (`gelu_new`) with exact derivatives.
//! - [`dropout`]: multiplication by a mask held by the op.
//! - [`attention`]: multi-head self-attention on the fused QKV projection.
//! - [`attention_kl`]: the attention-distribution distillation loss (KL from a teacher's
//!   probabilities) on the same fused projection.
//! - [`residual_layer_norm`]: the sublayer's end (dropout, bottleneck adapter, residual,
//!   LayerNorm) as one node.
//!
//! candle's backward pays a zero-filled buffer and an add for every graph edge, so fewer,
//! wider nodes are faster. Results match candle's composed ops up to float rounding (tested
//! in both directions). [`crate::exec::TrainKernels`] decides whether training uses them.
//!
//! This module is the candle side only: each op checks shapes (returning errors), hands plain
//! slices to `adalbert_kernels`, and wraps the result; the arithmetic lives there.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

mod attention;
mod attention_kl;
mod dropout;
mod frozen_attention;
mod frozen_ffn;
mod frozen_linear;
mod gelu;
mod layer_norm;
mod linear;
mod masked_softmax;
mod residual_norm;
#[cfg(test)]
mod tests;

pub use adalbert_kernels::linear::FrozenLinear;
pub use attention::attention;
pub use attention_kl::attention_kl;
pub use dropout::dropout;
pub use frozen_attention::frozen_attention_block;
pub use frozen_ffn::frozen_ffn;
pub use frozen_linear::{frozen_linear, frozen_linear_act, pack_frozen};
pub use gelu::gelu;
pub use layer_norm::layer_norm;
pub use linear::linear;
pub use masked_softmax::masked_softmax;
pub use residual_norm::{residual_layer_norm, ResidualNormAdapter};

/// The input gradient of a frozen op: `grad_op(dy)` as a graph leaf, or none when the input
/// carries no gradient (frozen all the way down, e.g. the embeddings in head-only training).
fn input_grad(
    arg: &Tensor,
    grad: &Tensor,
    grad_op: &impl CustomOp1,
) -> candle_core::Result<Option<Tensor>> {
    if !arg.track_op() {
        return Ok(None);
    }
    Ok(Some(grad.contiguous()?.apply_op1_no_bwd(grad_op)?))
}

fn op_error(op: &str, reason: impl fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: {reason}"))
}

/// The f32 elements of a contiguous tensor (the ops make their inputs contiguous).
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(op_error(op, "expects a contiguous input")),
    }
}

/// Width of the last dimension, refusing empty shapes (the kernels divide by it).
fn last_dim(l: &Layout, op: &str) -> candle_core::Result<usize> {
    match l.shape().dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => Err(op_error(op, format!("bad shape {:?}", l.shape().dims()))),
    }
}

/// An op's output: `y` shaped like the input layout `l` with the last dimension `last`.
fn with_last_dim(y: Vec<f32>, l: &Layout, last: usize) -> (CpuStorage, Shape) {
    let mut dims = l.dims().to_vec();
    if let Some(d) = dims.last_mut() {
        *d = last;
    }
    (CpuStorage::F32(y), Shape::from(dims))
}

/// An op's output shaped like its input layout `l`.
fn same_shape(y: Vec<f32>, l: &Layout) -> (CpuStorage, Shape) {
    (CpuStorage::F32(y), l.shape().clone())
}

/// A flat output of `len` values (several gradients in one buffer).
fn flat(y: Vec<f32>) -> (CpuStorage, Shape) {
    let len = y.len();
    (CpuStorage::F32(y), Shape::from(len))
}

/// What a forward pass saved for its backward pass, locked.
fn saved<'a, T>(
    slot: &'a Mutex<T>,
    op: &str,
    what: &str,
) -> candle_core::Result<MutexGuard<'a, T>> {
    slot.lock()
        .map_err(|_| op_error(op, format!("saved {what} are poisoned")))
}

/// Keeps `value` for the backward pass (a poisoned slot keeps its old value: the backward
/// pass then reports the shape mismatch).
fn save<T>(slot: &Mutex<T>, value: T) {
    if let Ok(mut s) = slot.lock() {
        *s = value;
    }
}

/// Splits a flat buffer of several gradients into consecutive pieces shaped like `like`.
fn split_grads<const N: usize>(
    all: &Tensor,
    like: [&Tensor; N],
) -> candle_core::Result<[Tensor; N]> {
    let mut at = 0;
    let mut out = Vec::with_capacity(N);
    for t in like {
        let n = t.elem_count();
        out.push(all.narrow(0, at, n)?.reshape(t.shape())?);
        at += n;
    }
    Ok(out.try_into().expect("one piece per input"))
}
