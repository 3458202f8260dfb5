//! Multi-head self-attention on the fused QKV projection, with its gradient for the
//! projection.

use std::sync::{Arc, Mutex};

use adalbert_kernels::attention::{train_backward, train_forward, AttentionShape};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::{f32_slice, op_error, same_shape, save, saved};
use crate::error::{ModelError, Result};

/// What an attention op needs in both passes; the forward fills in the probabilities.
pub(super) struct AttentionState {
    pub(super) shape: AttentionShape,
    pub(super) isa: Isa,
    pub(super) scale: f32,
    /// Additive mask, `[B, S]`.
    pub(super) mask: Vec<f32>,
    /// Dropout multipliers on the probabilities, `[B, heads, S, S]`.
    pub(super) drop: Option<Vec<f32>>,
    /// Softmax probabilities before dropout, `[B, heads, S, S]`, filled by the forward.
    pub(super) probs: Mutex<Vec<f32>>,
}

impl AttentionState {
    /// The attention state for `[batch, seq, h3]` fused projections, checked.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        batch: usize,
        seq: usize,
        h3: usize,
        mask_bias: &Tensor,
        heads: usize,
        scale: f32,
        drop: Option<Vec<f32>>,
        isa: Isa,
    ) -> Result<Self> {
        if heads == 0 || !h3.is_multiple_of(3 * heads) {
            return Err(ModelError::Input(format!(
                "qkv width {h3} is not 3 x {heads} heads"
            )));
        }
        let shape = AttentionShape {
            batch,
            seq,
            heads,
            head_dim: h3 / (3 * heads),
        };
        let mask: Vec<f32> = mask_bias.flatten_all()?.to_vec1()?;
        if mask.len() != batch * seq {
            return Err(ModelError::Input(format!(
                "attention mask has {} elements, expected {}",
                mask.len(),
                batch * seq
            )));
        }
        if drop
            .as_ref()
            .is_some_and(|d| d.len() != batch * heads * seq * seq)
        {
            return Err(ModelError::Input("attention dropout mask size".into()));
        }
        Ok(Self {
            shape,
            isa,
            scale,
            mask,
            drop,
            probs: Mutex::new(Vec::new()),
        })
    }

    /// Whether `qkv`, `dy` (when given) and `probs` have this attention's sizes.
    pub(super) fn fits(&self, qkv: usize, dy: Option<usize>, probs: usize) -> bool {
        let AttentionShape {
            batch, seq, heads, ..
        } = self.shape;
        let h = self.shape.hidden();
        qkv == batch * seq * 3 * h
            && dy.is_none_or(|n| n == batch * seq * h)
            && probs == batch * heads * seq * seq
    }
}

/// Multi-head self-attention on the fused projection `qkv [B, S, 3H]` (query, key and
/// value blocks of H columns): per head `dropout(softmax(scale * Q K^T + mask)) V`, written
/// as `[B, S, H]` (heads side by side), as one graph node. `mask_bias` is additive, `B * S`
/// elements; `drop` holds the dropout multipliers of the probabilities (`[B, heads, S, S]`,
/// drawn by the caller so the composite path sees the same masks). The gradient flows to
/// `qkv`.
pub fn attention(
    qkv: &Tensor,
    mask_bias: &Tensor,
    heads: usize,
    scale: f32,
    drop: Option<Vec<f32>>,
    isa: Isa,
) -> Result<Tensor> {
    let (batch, seq, h3) = qkv.dims3()?;
    let state = AttentionState::new(batch, seq, h3, mask_bias, heads, scale, drop, isa)?;
    Ok(qkv.contiguous()?.apply_op1(AttentionOp(Arc::new(state)))?)
}

struct AttentionOp(Arc<AttentionState>);

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "adalbert-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let AttentionShape { batch, seq, .. } = st.shape;
        let qkv = f32_slice(s, l, self.name())?;
        if qkv.len() != batch * seq * 3 * st.shape.hidden() {
            return Err(op_error(self.name(), "qkv shape changed"));
        }
        let drop = st.drop.as_deref();
        let (out, probs) = train_forward(st.isa, qkv, &st.mask, st.shape, st.scale, drop);
        save(&st.probs, probs);
        let shape = Shape::from((batch, seq, st.shape.hidden()));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = AttentionGrad(self.0.clone());
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `(qkv, d_out)` -> `d_qkv`.
struct AttentionGrad(Arc<AttentionState>);

impl CustomOp2 for AttentionGrad {
    fn name(&self) -> &'static str {
        "adalbert-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let qkv = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let probs = saved(&st.probs, self.name(), "probabilities")?;
        if !st.fits(qkv.len(), Some(dy.len()), probs.len()) {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let drop = st.drop.as_deref();
        let dqkv = train_backward(st.isa, qkv, st.shape, st.scale, drop, &probs, dy);
        Ok(same_shape(dqkv, l1))
    }
}
