//! The attention-distribution distillation loss on the fused QKV projection, with its
//! gradient for the projection.

use std::sync::{Arc, Mutex};

use adalbert_kernels::attention::{kl_backward, kl_forward, AttentionShape};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{f32_slice, op_error, same_shape, save, saved};
use crate::error::{ModelError, Result};

/// `sum over (b, head, i) of row_weight[b, i] * KL(target[b, head, i] || P[b, head, i])` with
/// `P = softmax(scale * Q K^T + mask_bias)` per head of the fused projection
/// `qkv [B, S, 3H]`, as one graph node (a scalar); the gradient flows to the query and key
/// blocks of `qkv`. `target` is `[B, heads, S, S]` (a teacher's attention probabilities,
/// no gradient), `row_weight` has `B * S` values (0 skips a row, e.g. padding queries).
#[allow(clippy::too_many_arguments)]
pub fn attention_kl(
    qkv: &Tensor,
    mask_bias: &Tensor,
    target: &Tensor,
    row_weight: Vec<f32>,
    heads: usize,
    scale: f32,
    isa: Isa,
) -> Result<Tensor> {
    let (batch, seq, h3) = qkv.dims3()?;
    if heads == 0 || !h3.is_multiple_of(3 * heads) {
        return Err(ModelError::Input(format!(
            "qkv width {h3} is not 3 x {heads} heads"
        )));
    }
    if target.dims() != [batch, heads, seq, seq] {
        return Err(ModelError::Input(format!(
            "attention target has shape {:?}, expected {:?}",
            target.dims(),
            [batch, heads, seq, seq]
        )));
    }
    let mask: Vec<f32> = mask_bias.flatten_all()?.to_vec1()?;
    if mask.len() != batch * seq || row_weight.len() != batch * seq {
        return Err(ModelError::Input(format!(
            "attention mask ({}) or row weights ({}) are not {batch} x {seq}",
            mask.len(),
            row_weight.len()
        )));
    }
    let state = KlState {
        shape: AttentionShape {
            batch,
            seq,
            heads,
            head_dim: h3 / (3 * heads),
        },
        isa,
        scale,
        mask,
        target: target.flatten_all()?.to_vec1()?,
        row_weight,
        probs: Mutex::new(Vec::new()),
    };
    Ok(qkv.contiguous()?.apply_op1(KlOp(Arc::new(state)))?)
}

struct KlState {
    shape: AttentionShape,
    isa: Isa,
    scale: f32,
    mask: Vec<f32>,
    target: Vec<f32>,
    row_weight: Vec<f32>,
    /// The student's probabilities, filled by the forward for the backward.
    probs: Mutex<Vec<f32>>,
}

struct KlOp(Arc<KlState>);

impl CustomOp1 for KlOp {
    fn name(&self) -> &'static str {
        "adalbert-attention-kl"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let qkv = f32_slice(s, l, self.name())?;
        if qkv.len() != st.shape.batch * st.shape.seq * 3 * st.shape.hidden() {
            return Err(op_error(self.name(), "qkv shape changed"));
        }
        let (probs, loss) = kl_forward(
            st.isa,
            qkv,
            &st.mask,
            st.shape,
            st.scale,
            &st.target,
            &st.row_weight,
        );
        save(&st.probs, probs);
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let op = KlGrad(self.0.clone(), grad);
        Ok(Some(arg.apply_op1_no_bwd(&op)?))
    }
}

/// `qkv` -> `d_qkv` for an upstream gradient (the `f32`).
struct KlGrad(Arc<KlState>, f32);

impl CustomOp1 for KlGrad {
    fn name(&self) -> &'static str {
        "adalbert-attention-kl-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let qkv = f32_slice(s, l, self.name())?;
        let probs = saved(&st.probs, self.name(), "probabilities")?;
        if probs.len() != st.target.len()
            || qkv.len() != st.shape.batch * st.shape.seq * 3 * st.shape.hidden()
        {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let dqkv = kl_backward(
            st.isa,
            qkv,
            st.shape,
            st.scale,
            &probs,
            &st.target,
            &st.row_weight,
            self.1,
        );
        Ok(same_shape(dqkv, l))
    }
}
