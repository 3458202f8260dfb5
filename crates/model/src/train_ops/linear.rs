//! A trainable linear layer `y = x W^T + b` with gradients for `x`, `W` and `b`.

use adalbert_kernels::linear::{linear_backward, linear_forward};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::{f32_slice, flat, last_dim, op_error, split_grads, with_last_dim};
use crate::error::Result;

/// `input W^T + b` with gradients for the input, `weight [out, in]` and `bias [out]`
/// (adapters, heads and full fine-tuning). One graph node instead of candle's transpose,
/// broadcast, matmul and bias add, each of whose gradients candle accumulates into a fresh
/// zero tensor; the weight is small or changes every step, so it is packed per call.
pub fn linear(input: &Tensor, weight: &Tensor, bias: &Tensor, isa: Isa) -> Result<Tensor> {
    Ok(input.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LinearOp { isa },
    )?)
}

struct LinearOp {
    isa: Isa,
}

/// `(out, in)` of a weight layout, checked against `x` and the bias length.
fn linear_dims(
    op: &str,
    lx: &Layout,
    lw: &Layout,
    b_len: usize,
) -> candle_core::Result<(usize, usize)> {
    let (out, inp) = lw.shape().dims2()?;
    if last_dim(lx, op)? != inp || b_len != out {
        return Err(op_error(
            op,
            format!("x {:?}, weight {:?}, bias {b_len}", lx.dims(), lw.dims()),
        ));
    }
    Ok((out, inp))
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "adalbert-linear"
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
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let (out, inp) = linear_dims(self.name(), l1, l2, b.len())?;
        let y = linear_forward(self.isa, x, w, b, out, inp);
        Ok(with_last_dim(y, l1, out))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // One buffer: dx, then dW, then db.
        let all = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LinearGrad { isa: self.isa })?;
        let [dx, dw, db] = split_grads(&all, [x, w, b])?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(x, W, dy)` -> `[dx (x's size), dW (W's size), db (out)]`, flat.
struct LinearGrad {
    isa: Isa,
}

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "adalbert-linear-grad"
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
        let w = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let (out, inp) = l2.shape().dims2()?;
        let m = x.len() / inp.max(1);
        if last_dim(l1, self.name())? != inp || dy.len() != m * out {
            return Err(op_error(self.name(), "shapes of x, W and dy disagree"));
        }
        Ok(flat(linear_backward(self.isa, x, w, dy, out, inp)))
    }
}
