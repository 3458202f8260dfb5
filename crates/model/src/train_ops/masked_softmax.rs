//! `softmax(scale * s + mask)` over the last dimension (the attention probabilities), with
//! its gradient for `s`.

use adalbert_kernels::softmax::{masked_softmax as softmax_forward, masked_softmax_backward};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::{f32_slice, last_dim, op_error, same_shape};
use crate::error::{ModelError, Result};

/// `softmax(scale * scores + mask)` over the last dimension of `scores [B, heads, S, T]`,
/// with the additive `mask` of `B * T` elements (`[B, 1, 1, T]`) broadcast over heads and
/// query rows. The gradient flows to `scores` only.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f32, isa: Isa) -> Result<Tensor> {
    let (b, _, _, t) = scores.dims4()?;
    if mask.elem_count() != b * t {
        return Err(ModelError::Input(format!(
            "attention mask has {} elements, scores {:?} need {}",
            mask.elem_count(),
            scores.dims(),
            b * t
        )));
    }
    Ok(scores
        .contiguous()?
        .apply_op2(&mask.contiguous()?, MaskedSoftmax { isa, scale })?)
}

struct MaskedSoftmax {
    isa: Isa,
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "adalbert-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = f32_slice(s1, l1, self.name())?;
        let mask = f32_slice(s2, l2, self.name())?;
        let (b, _, _, t) = l1.shape().dims4()?;
        if mask.len() != b * t || t == 0 {
            return Err(op_error(self.name(), "mask does not match the scores"));
        }
        let y = softmax_forward(self.isa, s, mask, b, t, self.scale);
        Ok(same_shape(y, l1))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let op = SoftmaxGrad {
            isa: self.isa,
            scale: self.scale,
        };
        Ok((Some(res.apply_op2_no_bwd(&grad.contiguous()?, &op)?), None))
    }
}

/// `(y, dy)` -> `scale * y * (dy - sum(dy * y))` per row.
struct SoftmaxGrad {
    isa: Isa,
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "adalbert-masked-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let t = last_dim(l1, self.name())?;
        if dy.len() != y.len() {
            return Err(op_error(self.name(), "gradient shape differs"));
        }
        let dx = masked_softmax_backward(self.isa, y, dy, t, self.scale);
        Ok(same_shape(dx, l1))
    }
}
