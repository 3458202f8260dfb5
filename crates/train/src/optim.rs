//! AdamW with decoupled weight decay, a linear warmup/decay schedule and global-norm
//! clipping. Written here rather than taken from candle-nn because resuming a run needs the
//! moment estimates, which candle-nn's optimizer keeps private.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::error::Result;

pub struct AdamW {
    /// Trainable variables by name, in a fixed order.
    pub vars: Vec<(String, Var)>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub step: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// Global L2 norm of the gradients of the trainable variables.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0.0;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update at learning rate `lr`; gradients are scaled by `grad_scale` (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * grad_scale)?;
            let m = ((&self.m[i] * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + self.eps)?)?;
            let w = var.as_tensor();
            // Decoupled decay, not applied to biases and LayerNorm parameters (as in BERT).
            let decay = if decays(name) { self.weight_decay } else { 0.0 };
            let next = ((w * (1.0 - lr * decay))? - (update * lr)?)?;
            var.set(&next.detach())?;
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(())
    }

    /// Moments and step count, for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("adam_m.{name}"), self.m[i].clone());
            out.insert(format!("adam_v.{name}"), self.v[i].clone());
        }
        out
    }

    pub fn restore(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if let (Some(m), Some(v)) = (
                state.get(&format!("adam_m.{name}")),
                state.get(&format!("adam_v.{name}")),
            ) {
                self.m[i] = m.clone();
                self.v[i] = v.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm") || name.contains("layer_norm"))
}

/// Linear warmup to `peak` over `warmup` steps, then linear decay to 0 at `total`.
pub fn linear_schedule(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else if total <= warmup {
        peak
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warmup) as f64
    }
}

/// Scale that brings the gradient norm down to `max_norm` (1 when already below or disabled).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert_eq!(linear_schedule(0, 4, 10, 1.0), 0.25);
        assert_eq!(linear_schedule(3, 4, 10, 1.0), 1.0);
        assert_eq!(linear_schedule(4, 4, 10, 1.0), 1.0);
        assert_eq!(linear_schedule(7, 4, 10, 1.0), 0.5);
        assert_eq!(clip_scale(2.0, 1.0), 1.0 / (2.0 + 1e-6));
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
    }

    #[test]
    fn first_adamw_step_moves_by_lr_against_the_gradient_sign() {
        // With bias correction, the first Adam step is lr * g / (|g| + eps) ~ lr * sign(g).
        let w = Var::from_tensor(&Tensor::new(&[1.0f32, -1.0], &Device::Cpu).unwrap()).unwrap();
        let loss = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = AdamW::new(vec![("x.weight".into(), w.clone())], 0.0).unwrap();
        opt.step(&grads, 0.1, 1.0).unwrap();
        let v: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.1).abs() < 1e-5,
            "{v:?}"
        );
    }
}
