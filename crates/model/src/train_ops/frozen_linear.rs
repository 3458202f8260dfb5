//! A frozen linear layer `y = x W^T + b` (optionally followed by an activation) as one node
//! whose gradient flows to `x` only.

use std::sync::{Arc, Mutex};

use adalbert_kernels::act::Act;
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{f32_slice, input_grad, last_dim, op_error, save, saved, with_last_dim, FrozenLinear};
use crate::config::Activation;
use crate::error::{ModelError, Result};
use crate::exec::kernel_act;

/// Packs a frozen linear layer's `weight [out, in]` and `bias [out]` for [`frozen_linear`],
/// [`super::frozen_ffn`] and [`super::frozen_attention_block`].
pub fn pack_frozen(weight: &Tensor, bias: Option<&Tensor>) -> Result<FrozenLinear> {
    let (out_dim, in_dim) = weight.dims2()?;
    let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
    let bias = match bias {
        Some(b) => {
            let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
            if b.len() != out_dim {
                return Err(ModelError::Input(format!(
                    "linear bias has {} elements, the weight {out_dim} rows",
                    b.len()
                )));
            }
            Some(b)
        }
        None => None,
    };
    Ok(FrozenLinear::new(&w, out_dim, in_dim, bias))
}

/// `input W^T + b` over the last dimension of `input`; the gradient flows to `input` only.
pub fn frozen_linear(input: &Tensor, layer: &Arc<FrozenLinear>, isa: Isa) -> Result<Tensor> {
    Ok(input.contiguous()?.apply_op1(FrozenLinearOp {
        layer: layer.clone(),
        isa,
        act: None,
    })?)
}

/// `act(input W^T + b)` as one graph node (the FFN's first projection): the op keeps the
/// pre-activation for its backward pass, `dx = (dy * act'(pre)) W`, so candle stores and
/// accumulates no separate `[tokens, intermediate]` gradient for the activation.
pub fn frozen_linear_act(
    input: &Tensor,
    layer: &Arc<FrozenLinear>,
    act: Activation,
    isa: Isa,
) -> Result<Tensor> {
    Ok(input.contiguous()?.apply_op1(FrozenLinearOp {
        layer: layer.clone(),
        isa,
        act: Some((kernel_act(act), Mutex::new(Vec::new()))),
    })?)
}

struct FrozenLinearOp {
    layer: Arc<FrozenLinear>,
    isa: Isa,
    /// The activation applied after the bias, and the pre-activation the forward saves.
    act: Option<(Act, Mutex<Vec<f32>>)>,
}

impl CustomOp1 for FrozenLinearOp {
    fn name(&self) -> &'static str {
        "adalbert-frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.layer;
        let x = f32_slice(s, l, self.name())?;
        if last_dim(l, self.name())? != p.in_dim() {
            return Err(op_error(
                self.name(),
                format!("input {:?}, weight in_dim {}", l.dims(), p.in_dim()),
            ));
        }
        let y = match &self.act {
            Some((act, slot)) => {
                let (y, pre) = p.forward_act(self.isa, *act, x);
                save(slot, pre);
                y
            }
            None => p.product(self.isa, x.len() / p.in_dim(), x),
        };
        Ok(with_last_dim(y, l, p.out_dim()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = FrozenLinearGrad {
            layer: self.layer.clone(),
            isa: self.isa,
            act: self.act.as_ref().map(|(a, slot)| (*a, slot)),
        };
        input_grad(arg, grad, &op)
    }
}

/// `dx = dy W`, or `dx = (dy * act'(pre)) W` after an activation.
struct FrozenLinearGrad<'a> {
    layer: Arc<FrozenLinear>,
    isa: Isa,
    act: Option<(Act, &'a Mutex<Vec<f32>>)>,
}

impl CustomOp1 for FrozenLinearGrad<'_> {
    fn name(&self) -> &'static str {
        "adalbert-frozen-linear-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.layer;
        let dy = f32_slice(s, l, self.name())?;
        if last_dim(l, self.name())? != p.out_dim() {
            return Err(op_error(
                self.name(),
                format!("gradient {:?}, weight out_dim {}", l.dims(), p.out_dim()),
            ));
        }
        let dx = match self.act {
            Some((act, slot)) => {
                let pre = saved(slot, self.name(), "pre-activations")?;
                if pre.len() != dy.len() {
                    return Err(op_error(self.name(), "shape differs from the forward pass"));
                }
                p.grad_x_act(self.isa, act, &pre, dy)
            }
            None => p.grad_x(self.isa, dy.len() / p.out_dim(), dy),
        };
        Ok(with_last_dim(dx, l, p.in_dim()))
    }
}
