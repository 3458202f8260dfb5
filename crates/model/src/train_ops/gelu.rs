//! GELU (erf and tanh forms) with its exact derivative.

use adalbert_kernels::act::{act_grad_par, apply_copy, Act};
use adalbert_kernels::scratch::output_buffer;
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::{f32_slice, op_error, same_shape};
use crate::config::Activation;
use crate::error::{ModelError, Result};
use crate::exec::kernel_act;

/// GELU (`Activation::Gelu`, erf form, or `Activation::GeluNew`, tanh form) with its exact
/// derivative in the backward pass. ReLU is left to candle (one cheap op already).
pub fn gelu(input: &Tensor, act: Activation, isa: Isa) -> Result<Tensor> {
    if act == Activation::Relu {
        return Err(ModelError::Input("fused gelu called with relu".into()));
    }
    let act = kernel_act(act);
    Ok(input.contiguous()?.apply_op1(GeluOp { isa, act })?)
}

struct GeluOp {
    isa: Isa,
    act: Act,
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "adalbert-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        Ok(same_shape(apply_copy(self.isa, self.act, x), l))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = GeluGrad {
            isa: self.isa,
            act: self.act,
        };
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `(x, dy)` -> `dy * gelu'(x)`.
struct GeluGrad {
    isa: Isa,
    act: Act,
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "adalbert-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        if dy.len() != x.len() {
            return Err(op_error(self.name(), "gradient shape differs"));
        }
        let mut dx = output_buffer(x.len());
        act_grad_par(self.isa, self.act, x, dy, &mut dx);
        Ok(same_shape(dx, l1))
    }
}
