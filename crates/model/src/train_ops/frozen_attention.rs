//! A frozen attention sublayer's projections around its attention as one node whose
//! gradient flows to the sublayer's input only.

use std::sync::{Arc, Mutex};

use adalbert_kernels::linear::{
    attention_block_backward, attention_block_forward, AttentionBlockSaved,
};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::attention::AttentionState;
use super::{f32_slice, input_grad, op_error, save, saved, FrozenLinear};
use crate::error::{ModelError, Result};

/// [`super::attention`] with its frozen projections: `dense(attention(input Wqkv^T + bqkv))`
/// as one graph node, the gradient flowing to `input` (`[B, S, in]`). The op keeps the
/// projections `qkv` for its backward pass, so candle accumulates gradients for neither
/// `qkv` nor the context.
#[allow(clippy::too_many_arguments)]
pub fn frozen_attention_block(
    input: &Tensor,
    qkv: &Arc<FrozenLinear>,
    dense: &Arc<FrozenLinear>,
    mask_bias: &Tensor,
    heads: usize,
    scale: f32,
    drop: Option<Vec<f32>>,
    isa: Isa,
) -> Result<Tensor> {
    let (batch, seq, inp) = input.dims3()?;
    let h3 = qkv.out_dim();
    if inp != qkv.in_dim() || dense.in_dim() * 3 != h3 {
        return Err(ModelError::Input(format!(
            "attention block: input {:?}, {qkv:?}, {dense:?}",
            input.dims()
        )));
    }
    let state = AttentionState::new(batch, seq, h3, mask_bias, heads, scale, drop, isa)?;
    Ok(input.contiguous()?.apply_op1(AttentionBlockOp {
        state,
        qkv: qkv.clone(),
        dense: dense.clone(),
        saved: Mutex::new(AttentionBlockSaved::default()),
    })?)
}

struct AttentionBlockOp {
    state: AttentionState,
    qkv: Arc<FrozenLinear>,
    dense: Arc<FrozenLinear>,
    /// The projections and probabilities, saved by the forward pass.
    saved: Mutex<AttentionBlockSaved>,
}

impl CustomOp1 for AttentionBlockOp {
    fn name(&self) -> &'static str {
        "adalbert-attention-block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &self.state;
        let x = f32_slice(s, l, self.name())?;
        let m = st.shape.batch * st.shape.seq;
        if x.len() != m * self.qkv.in_dim() {
            return Err(op_error(self.name(), "input shape changed"));
        }
        let (y, saved) = attention_block_forward(
            st.isa,
            &self.qkv,
            &self.dense,
            x,
            &st.mask,
            st.shape,
            st.scale,
            st.drop.as_deref(),
        );
        save(&self.saved, saved);
        let shape = Shape::from((st.shape.batch, st.shape.seq, self.dense.out_dim()));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        input_grad(arg, grad, &AttentionBlockGrad(self))
    }
}

/// `dy` -> `dx`: through the dense projection, the attention and the QKV projection.
struct AttentionBlockGrad<'a>(&'a AttentionBlockOp);

impl CustomOp1 for AttentionBlockGrad<'_> {
    fn name(&self) -> &'static str {
        "adalbert-attention-block-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.0;
        let st = &op.state;
        let dy = f32_slice(s, l, self.name())?;
        let saved = saved(&op.saved, self.name(), "projections")?;
        let m = st.shape.batch * st.shape.seq;
        if dy.len() != m * op.dense.out_dim() || !st.fits(saved.qkv.len(), None, saved.probs.len())
        {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let dx = attention_block_backward(
            st.isa,
            &op.qkv,
            &op.dense,
            &saved,
            st.shape,
            st.scale,
            st.drop.as_deref(),
            dy,
        );
        let shape = Shape::from((st.shape.batch, st.shape.seq, op.qkv.in_dim()));
        Ok((CpuStorage::F32(dx), shape))
    }
}
