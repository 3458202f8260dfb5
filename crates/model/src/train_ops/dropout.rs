//! Dropout with a mask the op holds.

use std::sync::Arc;

use adalbert_kernels::elementwise::par_mul;
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{f32_slice, op_error, same_shape};
use crate::error::{ModelError, Result};

/// `input * mask` where `mask` (0 or 1/(1-p) per element, drawn by [`crate::nn::Ctx`]) is
/// held by the op rather than being a graph input, so the backward pass computes only
/// `dy * mask` (candle's `mul` would also compute and accumulate the unused gradient of the
/// mask).
pub fn dropout(input: &Tensor, mask: Vec<f32>, isa: Isa) -> Result<Tensor> {
    if mask.len() != input.elem_count() {
        return Err(ModelError::Input(format!(
            "dropout mask has {} elements, the input {}",
            mask.len(),
            input.elem_count()
        )));
    }
    Ok(input.contiguous()?.apply_op1(DropoutOp {
        isa,
        mask: Arc::new(mask),
    })?)
}

struct DropoutOp {
    isa: Isa,
    mask: Arc<Vec<f32>>,
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "adalbert-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        if x.len() != self.mask.len() {
            return Err(op_error(self.name(), "mask size differs from the input"));
        }
        Ok(same_shape(par_mul(self.isa, x, &self.mask), l))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = DropoutOp {
            isa: self.isa,
            mask: self.mask.clone(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}
