//! Small building blocks (linear, LayerNorm, activation, dropout) and the forward context
//! ([`Ctx`]) that chooses the op each of them runs.
//!
//! candle's fused layer-norm and softmax kernels have no backward pass. During training every
//! activation may carry a gradient (adapters sit inside the frozen layer), so a training
//! context switches to candle's composed, differentiable forms, or to the fused training ops
//! ([`crate::train_ops`]) where [`TrainKernels`] asks for them; inference keeps candle's
//! fused kernels.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use adalbert_core::rng::SplitMix64;
use adalbert_kernels::dropout;
use candle_core::{Tensor, D};

use crate::config::Activation;
use crate::error::Result;
use crate::exec::{default_isa, TrainKernels};
use crate::train_ops::{self, FrozenLinear};
use crate::weights::Weights;

/// Forward-pass context: training or inference, and the seeded dropout stream.
pub struct Ctx {
    pub train: bool,
    /// Dropout probability on hidden states and attention probabilities (training only).
    pub dropout: f32,
    rng: RefCell<SplitMix64>,
    /// The fused training ops ([`crate::train_ops`]) in use, `None` for candle's composites
    /// (chosen by [`TrainKernels::detect`] unless overridden).
    kernels: Option<TrainKernels>,
    /// What the forward pass records for the caller ([`Ctx::recording`]).
    record: Option<RefCell<Recorded>>,
}

/// Intermediate tensors of one forward pass, recorded when the context asks for them
/// ([`Ctx::recording`]), as transformers' `output_hidden_states` and `output_attentions`:
/// distillation compares a student's with a teacher's. Training records graph tensors (the
/// loss reaches the weights through them); eval records plain values.
#[derive(Default, Debug)]
pub struct Recorded {
    /// The transformer's input (`[B, S, H]`, after `embedding_hidden_mapping_in` where there
    /// is one), then the output of every layer application: `applications + 1` tensors.
    pub hidden_states: Vec<Tensor>,
    /// Each application's attention probabilities `[B, heads, S, S]` before dropout, where
    /// the path forms them as a tensor (candle's ops, the eval kernels).
    pub attentions: Vec<Tensor>,
    /// Each application's fused query/key/value projection `[B, S, 3H]`, on the fused
    /// training path (whose probabilities stay inside the attention op; a loss on them
    /// starts from this, e.g. [`train_ops::attention_kl`]).
    pub qkv: Vec<Tensor>,
}

impl Ctx {
    pub fn eval() -> Self {
        Self {
            train: false,
            dropout: 0.0,
            rng: RefCell::new(SplitMix64::new(0)),
            kernels: None,
            record: None,
        }
    }

    pub fn train(dropout: f32, seed: u64) -> Self {
        Self {
            train: true,
            dropout,
            rng: RefCell::new(SplitMix64::new(seed)),
            kernels: TrainKernels::detect(),
            record: None,
        }
    }

    /// This context, recording the intermediate tensors of its forward passes
    /// ([`Recorded`]; take them with [`Ctx::take_recorded`]).
    pub fn recording(mut self) -> Self {
        self.record = Some(RefCell::default());
        self
    }

    /// Whether forward passes record ([`Ctx::recording`]).
    pub fn is_recording(&self) -> bool {
        self.record.is_some()
    }

    /// What the forward passes recorded since the last call (empty when not recording).
    pub fn take_recorded(&self) -> Recorded {
        self.record
            .as_ref()
            .map(|r| std::mem::take(&mut *r.borrow_mut()))
            .unwrap_or_default()
    }

    /// Records with `f` when this context is recording.
    pub(crate) fn record(&self, f: impl FnOnce(&mut Recorded)) {
        if let Some(r) = &self.record {
            f(&mut r.borrow_mut());
        }
    }

    /// Overrides the training kernels: `None` runs candle's composed ops (the reference the
    /// fused ops are tested against). Ignored in eval.
    pub fn with_train_kernels(mut self, kernels: Option<TrainKernels>) -> Self {
        self.kernels = kernels;
        self
    }

    /// The fused training ops in use (`None` in eval or with candle's composites).
    pub fn train_kernels(&self) -> Option<TrainKernels> {
        self.kernels.filter(|_| self.train)
    }

    /// Inverted dropout with a mask drawn from this context's seeded generator, so two
    /// training runs with the same seed see the same masks.
    pub fn dropout(&self, input: &Tensor) -> Result<Tensor> {
        if !self.train || self.dropout <= 0.0 {
            return Ok(input.clone());
        }
        let mask = self.dropout_mask(input.elem_count());
        if let Some(k) = self.train_kernels() {
            return train_ops::dropout(input, mask, k.isa);
        }
        let mask = Tensor::from_vec(mask, input.shape(), input.device())?;
        Ok(input.mul(&mask)?)
    }

    /// `input * mask` for a mask from [`Ctx::dropout_mask_like`].
    pub fn dropout_with(&self, input: &Tensor, mask: &Tensor) -> Result<Tensor> {
        if let Some(k) = self.train_kernels() {
            return train_ops::dropout(input, mask.flatten_all()?.to_vec1()?, k.isa);
        }
        Ok(input.mul(mask)?)
    }

    /// The next `len` dropout multipliers (0 or `1 / (1 - p)`), in the order
    /// [`Ctx::dropout`] draws them; `None` when dropout is off.
    pub fn next_dropout_mask(&self, len: usize) -> Option<Vec<f32>> {
        if !self.train || self.dropout <= 0.0 {
            return None;
        }
        Some(self.dropout_mask(len))
    }

    /// The next dropout mask for `like`'s elements as a tensor of its shape, so that
    /// splitting a batch by rows splits the mask with them; `None` when dropout is off.
    pub fn dropout_mask_like(&self, like: &Tensor) -> Result<Option<Tensor>> {
        self.next_dropout_mask(like.elem_count())
            .map(|m| Tensor::from_vec(m, like.shape(), like.device()))
            .transpose()
            .map_err(Into::into)
    }

    /// Element `i` is drawn from the generator's state after `i + 1` steps, which SplitMix64
    /// computes directly, so the mask is filled in parallel (and vectorized) with the values a
    /// serial draw would give ([`dropout::mask`]); the generator then advances by `n` steps.
    fn dropout_mask(&self, n: usize) -> Vec<f32> {
        let mut rng = self.rng.borrow_mut();
        let base = rng.state();
        rng.skip(n as u64);
        drop(rng);
        let isa = self.kernels.map_or_else(default_isa, |k| k.isa);
        dropout::mask(isa, base, self.dropout, n)
    }

    /// Attention probabilities `softmax(scale * scores + mask_bias)` over the last dimension
    /// (`scores [B, heads, S, T]`, `mask_bias [B, 1, 1, T]`).
    pub fn attention_probs(
        &self,
        scores: &Tensor,
        mask_bias: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        if let Some(k) = self.train_kernels() {
            return train_ops::masked_softmax(scores, mask_bias, scale as f32, k.isa);
        }
        self.softmax_last_dim(&(scores * scale)?.broadcast_add(mask_bias)?)
    }

    /// Softmax over the last dimension: candle's differentiable composite in training, its
    /// fused kernel (which has no backward pass) in eval.
    fn softmax_last_dim(&self, input: &Tensor) -> Result<Tensor> {
        if self.train {
            Ok(candle_nn::ops::softmax(input, D::Minus1)?)
        } else {
            Ok(candle_nn::ops::softmax_last_dim(input)?)
        }
    }
}

/// `y = x W^T + b`, with `weight` stored `[out, in]` as in PyTorch checkpoints.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// The weights packed for [`FrozenLinear`], built on the first training forward that
    /// uses them (only for weights that carry no gradient).
    frozen: OnceLock<Arc<FrozenLinear>>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            frozen: OnceLock::new(),
        }
    }

    /// `weight [out_dim, in_dim]` and `bias [out_dim]` under `vb`'s prefix.
    pub fn load(vb: Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self::new(
            vb.get("weight", &[out_dim, in_dim])?,
            Some(vb.get("bias", &[out_dim])?),
        ))
    }

    /// Whether neither the weight nor the bias is (derived from) a trainable variable, so
    /// the layer may run without a weight gradient.
    pub fn is_frozen(&self) -> bool {
        !self.weight.track_op() && self.bias.as_ref().is_none_or(|b| !b.track_op())
    }

    /// `input W^T + b`, on the op `ctx` chooses: in fused training
    /// [`train_ops::frozen_linear`] for frozen weights (packed once, on the first such call)
    /// and [`train_ops::linear`] for trainable ones; candle's ops otherwise.
    pub fn forward(&self, input: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        match ctx.train_kernels() {
            Some(k) if k.frozen_gemm && self.is_frozen() => {
                train_ops::frozen_linear(input, self.frozen_packed()?, k.isa)
            }
            Some(k) => match &self.bias {
                Some(b) => train_ops::linear(input, &self.weight, b, k.isa),
                None => self.forward_candle(input),
            },
            None => self.forward_candle(input),
        }
    }

    /// `act(self.forward(input))`, as one fused node ([`train_ops::frozen_linear_act`]) when
    /// the layer runs on [`FrozenLinear`].
    pub fn forward_act(&self, input: &Tensor, act: Activation, ctx: &Ctx) -> Result<Tensor> {
        match ctx.train_kernels() {
            Some(k) if k.frozen_gemm && self.is_frozen() => {
                train_ops::frozen_linear_act(input, self.frozen_packed()?, act, k.isa)
            }
            _ => activate(&self.forward(input, ctx)?, act, ctx),
        }
    }

    /// `input W^T + b` on candle's ops, whatever the context.
    pub fn forward_candle(&self, input: &Tensor) -> Result<Tensor> {
        let y = input.broadcast_matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The weights packed for [`FrozenLinear`] (packed on the first call).
    pub(crate) fn frozen_packed(&self) -> Result<&Arc<FrozenLinear>> {
        Ok(match self.frozen.get() {
            Some(p) => p,
            None => {
                let p = Arc::new(train_ops::pack_frozen(&self.weight, self.bias.as_ref())?);
                self.frozen.get_or_init(|| p)
            }
        })
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }
}

/// `act(input)`, with GELU on the fused training op when `ctx` uses them.
pub fn activate(input: &Tensor, act: Activation, ctx: &Ctx) -> Result<Tensor> {
    match ctx.train_kernels() {
        Some(k) if act != Activation::Relu => train_ops::gelu(input, act, k.isa),
        _ => Ok(match act {
            Activation::GeluNew => input.gelu()?,
            Activation::Gelu => input.gelu_erf()?,
            Activation::Relu => input.relu()?,
        }),
    }
}

/// LayerNorm over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// `weight [dim]` and `bias [dim]` under `vb`'s prefix.
    pub fn load(vb: Weights, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get("weight", &[dim])?,
            bias: vb.get("bias", &[dim])?,
            eps,
        })
    }

    /// LayerNorm of `input` on the op `ctx` chooses: the fused training op, candle's
    /// differentiable composite in training without it, candle's fused kernel in eval.
    pub fn forward(&self, input: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let x = input;
        if let Some(k) = ctx.train_kernels() {
            return train_ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32, k.isa);
        }
        if ctx.train {
            Ok(candle_nn::ops::layer_norm_slow(
                x,
                &self.weight,
                &self.bias,
                self.eps as f32,
            )?)
        } else {
            Ok(candle_nn::ops::layer_norm(
                x,
                &self.weight,
                &self.bias,
                self.eps as f32,
            )?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_kernels_dropout_stream_is_the_core_generator() {
        // The kernels crate depends on no other crate, so it carries SplitMix64's step and
        // output function itself; they must stay the ones of `adalbert_core::rng`.
        assert_eq!(dropout::GAMMA, SplitMix64::GAMMA);
        for (state, i) in [(0u64, 0u64), (11, 5), (u64::MAX, 1_000_000)] {
            let z = state.wrapping_add((i + 1).wrapping_mul(dropout::GAMMA));
            assert_eq!(dropout::mix(z), SplitMix64::at(state, i));
            assert_eq!(
                dropout::unit_f32(dropout::mix(z)),
                SplitMix64::unit_f32(SplitMix64::at(state, i))
            );
        }
    }

    #[test]
    fn dropout_is_seeded_and_scales_kept_values() {
        let x = Tensor::ones((4, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = Ctx::train(0.5, 7)
            .dropout(&x)
            .unwrap()
            .flatten_all()
            .unwrap();
        let b = Ctx::train(0.5, 7)
            .dropout(&x)
            .unwrap()
            .flatten_all()
            .unwrap();
        let a: Vec<f32> = a.to_vec1().unwrap();
        let b: Vec<f32> = b.to_vec1().unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = a.iter().filter(|&&v| v == 2.0).count();
        assert!((96..=160).contains(&kept), "kept {kept} of 256");
        let e: Vec<f32> = Ctx::eval()
            .dropout(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(e.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn parallel_masks_equal_a_serial_draw_and_advance_the_stream() {
        let ctx = Ctx::train(0.3, 11);
        let (n1, n2) = (100_003, 77);
        let a = ctx.dropout_mask(n1);
        let b = ctx.dropout_mask(n2);
        let mut rng = SplitMix64::new(11);
        let keep = 1.0 / (1.0 - 0.3f32);
        let serial: Vec<f32> = (0..n1 + n2)
            .map(|_| {
                if SplitMix64::unit_f32(rng.next_u64()) < 0.3 {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        assert_eq!(a, serial[..n1]);
        assert_eq!(b, serial[n1..]);
        assert_eq!(ctx.rng.borrow().state(), rng.state());
    }
}
