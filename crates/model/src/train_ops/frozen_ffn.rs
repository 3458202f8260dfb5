//! The frozen feed-forward block `act(x W1^T + b1) W2^T + b2` as one node whose gradient
//! flows to `x` only.

use std::sync::{Arc, Mutex};

use adalbert_kernels::act::Act;
use adalbert_kernels::linear::{ffn_backward, ffn_forward};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{f32_slice, input_grad, last_dim, op_error, save, saved, with_last_dim, FrozenLinear};
use crate::config::Activation;
use crate::error::{ModelError, Result};
use crate::exec::kernel_act;

/// The frozen feed-forward block `act(input W1^T + b1) W2^T + b2` as one graph node; the
/// gradient flows to `input` only. Besides the two input-gradient products, its backward
/// pass needs only the pre-activation, which the op keeps, so candle neither holds the
/// `[tokens, intermediate]` activation nor accumulates a gradient for it.
pub fn frozen_ffn(
    input: &Tensor,
    first: &Arc<FrozenLinear>,
    act: Activation,
    second: &Arc<FrozenLinear>,
    isa: Isa,
) -> Result<Tensor> {
    if first.out_dim() != second.in_dim() {
        return Err(ModelError::Input(format!(
            "ffn: {first:?} does not feed {second:?}"
        )));
    }
    Ok(input.contiguous()?.apply_op1(FrozenFfnOp {
        first: first.clone(),
        second: second.clone(),
        act: kernel_act(act),
        isa,
        pre: Mutex::new(Vec::new()),
    })?)
}

struct FrozenFfnOp {
    first: Arc<FrozenLinear>,
    second: Arc<FrozenLinear>,
    act: Act,
    isa: Isa,
    /// `x W1^T + b1`, saved by the forward pass.
    pre: Mutex<Vec<f32>>,
}

impl CustomOp1 for FrozenFfnOp {
    fn name(&self) -> &'static str {
        "adalbert-frozen-ffn"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        if last_dim(l, self.name())? != self.first.in_dim() {
            return Err(op_error(self.name(), format!("input {:?}", l.dims())));
        }
        let (y, pre) = ffn_forward(self.isa, &self.first, self.act, &self.second, x);
        save(&self.pre, pre);
        Ok(with_last_dim(y, l, self.second.out_dim()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        input_grad(arg, grad, &FrozenFfnGrad(self))
    }
}

/// `dy` -> `dx = ((dy W2) * act'(pre)) W1`.
struct FrozenFfnGrad<'a>(&'a FrozenFfnOp);

impl CustomOp1 for FrozenFfnGrad<'_> {
    fn name(&self) -> &'static str {
        "adalbert-frozen-ffn-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.0;
        let (w1, w2) = (&op.first, &op.second);
        let dy = f32_slice(s, l, self.name())?;
        let pre = saved(&op.pre, self.name(), "pre-activations")?;
        let m = dy.len() / w2.out_dim();
        if last_dim(l, self.name())? != w2.out_dim() || pre.len() != m * w1.out_dim() {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let dx = ffn_backward(op.isa, w1, op.act, w2, &pre, dy);
        Ok(with_last_dim(dx, l, w1.in_dim()))
    }
}
