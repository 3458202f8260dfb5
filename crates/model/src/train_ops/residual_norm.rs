//! The end of a sublayer (dropout, bottleneck adapter, residual, LayerNorm) as one node.

use std::sync::{Arc, Mutex};

use adalbert_kernels::residual_norm::{ResidualNorm, ResidualNormSaved};
use adalbert_kernels::Isa;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::{f32_slice, flat, last_dim, op_error, same_shape, save, saved, split_grads};
use crate::config::Activation;
use crate::error::{ModelError, Result};
use crate::exec::kernel_act;

/// The bottleneck adapter `z + up(act(down(z)))` inside a [`residual_layer_norm`].
pub struct ResidualNormAdapter<'a> {
    /// `[r, h]`
    pub down_w: &'a Tensor,
    /// `[r]`
    pub down_b: &'a Tensor,
    /// `[h, r]`
    pub up_w: &'a Tensor,
    /// `[h]`
    pub up_b: &'a Tensor,
    pub act: Activation,
}

/// `LayerNorm(residual + A(sublayer * drop))` over the last dimension, where `A` is the
/// adapter's `z + up(act(down(z)))` or the identity, as one graph node with gradients for
/// `residual`, `sublayer`, the adapter's weights and biases, gamma and beta. It stands for
/// the dropout, the two adapter linears and their activation, two residual adds and the
/// LayerNorm that end every attention and FFN sublayer: each of those nodes costs candle's
/// backward a zero-filled gradient buffer and an add per input, several of them
/// `[tokens, hidden]` wide. The small trainable tensors enter as one concatenated vector
/// (one cheap graph edge each).
#[allow(clippy::too_many_arguments)]
pub fn residual_layer_norm(
    residual: &Tensor,
    sublayer: &Tensor,
    drop: Option<Vec<f32>>,
    adapter: Option<ResidualNormAdapter>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    isa: Isa,
) -> Result<Tensor> {
    let h = gamma.elem_count();
    if residual.dims() != sublayer.dims()
        || residual.dims().last() != Some(&h)
        || beta.elem_count() != h
    {
        return Err(ModelError::Input(format!(
            "residual layer norm: residual {:?}, sublayer {:?}, gamma {h}, beta {}",
            residual.dims(),
            sublayer.dims(),
            beta.elem_count()
        )));
    }
    if drop
        .as_ref()
        .is_some_and(|d| d.len() != residual.elem_count())
    {
        return Err(ModelError::Input(
            "residual layer norm: dropout mask size".into(),
        ));
    }
    let mut parts = Vec::with_capacity(6);
    let bottleneck = match &adapter {
        Some(a) => {
            let (r, hd) = a.down_w.dims2()?;
            if hd != h
                || a.up_w.dims2()? != (h, r)
                || a.down_b.elem_count() != r
                || a.up_b.elem_count() != h
            {
                return Err(ModelError::Input(format!(
                    "residual layer norm: adapter down {:?}, up {:?} for width {h}",
                    a.down_w.dims(),
                    a.up_w.dims()
                )));
            }
            for t in [a.down_w, a.down_b, a.up_w, a.up_b] {
                parts.push(t.flatten_all()?);
            }
            Some((r, kernel_act(a.act)))
        }
        None => None,
    };
    parts.push(gamma.flatten_all()?);
    parts.push(beta.flatten_all()?);
    let params = Tensor::cat(&parts, 0)?;
    let state = Arc::new(ResidualNormState {
        op: ResidualNorm {
            width: h,
            adapter: bottleneck,
            eps,
        },
        isa,
        drop,
        saved: Mutex::new(ResidualNormSaved::default()),
    });
    Ok(residual
        .contiguous()?
        .apply_op3(&sublayer.contiguous()?, &params, ResidualNormOp(state))?)
}

struct ResidualNormState {
    op: ResidualNorm,
    isa: Isa,
    drop: Option<Vec<f32>>,
    saved: Mutex<ResidualNormSaved>,
}

struct ResidualNormOp(Arc<ResidualNormState>);

impl CustomOp3 for ResidualNormOp {
    fn name(&self) -> &'static str {
        "adalbert-residual-layer-norm"
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
        let st = &*self.0;
        let x = f32_slice(s1, l1, self.name())?;
        let p = f32_slice(s2, l2, self.name())?;
        let params = f32_slice(s3, l3, self.name())?;
        if last_dim(l1, self.name())? != st.op.width
            || p.len() != x.len()
            || params.len() != st.op.param_len()
        {
            return Err(op_error(self.name(), "shapes differ from the call"));
        }
        let (y, saved) = st.op.forward(st.isa, x, p, st.drop.as_deref(), params);
        save(&st.saved, saved);
        Ok(same_shape(y, l1))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_op = ResidualNormGrad(self.0.clone());
        let all = params.apply_op2_no_bwd(&grad.contiguous()?, &grad_op)?;
        let [dx, dp, dparams] = split_grads(&all, [x, p, params])?;
        let tracked = |t: &Tensor, g: Tensor| t.track_op().then_some(g);
        Ok((tracked(x, dx), tracked(p, dp), tracked(params, dparams)))
    }
}

/// `(params, dy)` -> `[dx, dp, dparams]`, flat.
struct ResidualNormGrad(Arc<ResidualNormState>);

impl CustomOp2 for ResidualNormGrad {
    fn name(&self) -> &'static str {
        "adalbert-residual-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let st = &*self.0;
        let params = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let saved = saved(&st.saved, self.name(), "activations")?;
        if saved.len() != dy.len() || params.len() != st.op.param_len() {
            return Err(op_error(self.name(), "shapes differ from the forward pass"));
        }
        let grads = st
            .op
            .backward(st.isa, params, st.drop.as_deref(), &saved, dy);
        Ok(flat(grads))
    }
}
