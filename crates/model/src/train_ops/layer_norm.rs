//! LayerNorm over the last dimension with gradients for the input, gamma and beta.

use adalbert_kernels::norm::{layer_norm as layer_norm_forward, layer_norm_backward};
use adalbert_kernels::scratch::output_buffer;
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::{f32_slice, flat, last_dim, op_error, same_shape, split_grads};
use crate::error::Result;

/// LayerNorm of `input` over its last dimension with `gamma` and `beta` of that width;
/// gradients flow to all three.
pub fn layer_norm(
    input: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    isa: Isa,
) -> Result<Tensor> {
    Ok(input.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        LayerNormOp { isa, eps },
    )?)
}

struct LayerNormOp {
    isa: Isa,
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "adalbert-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let h = last_dim(l1, self.name())?;
        if g.len() != h || b.len() != h {
            return Err(op_error(self.name(), "gamma/beta width differs from x"));
        }
        let y = layer_norm_forward(self.isa, x, g, b, self.eps);
        Ok(same_shape(y, l1))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = LayerNormGrad {
            isa: self.isa,
            eps: self.eps,
        };
        // One buffer: dx, then dgamma, then dbeta.
        let all = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?;
        let [dx, dgamma, dbeta] = split_grads(&all, [x, gamma, beta])?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// `(x, gamma, dy)` -> `[dx (x's size), dgamma (h), dbeta (h)]`, flat.
struct LayerNormGrad {
    isa: Isa,
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "adalbert-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let h = last_dim(l1, self.name())?;
        if g.len() != h || dy.len() != x.len() {
            return Err(op_error(self.name(), "shapes of x, gamma and dy disagree"));
        }
        let mut out = output_buffer(x.len() + 2 * h);
        let (dx, dgb) = out.split_at_mut(x.len());
        dgb.fill(0.0);
        layer_norm_backward(self.isa, self.eps, x, g, dy, dx, dgb);
        Ok(flat(out))
    }
}
