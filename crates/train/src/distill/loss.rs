//! The distillation losses (TinyBERT, arXiv 1909.10351; MiniLM, arXiv 2002.10957;
//! docs/sources.md#distillation), on what a student's and a teacher's forward passes
//! recorded ([`Recorded`]):
//!
//! - hidden: the mean squared error of every hidden state (the embedding output after the
//!   E->H mapping, then each layer application) against the teacher's at the mapped layer,
//!   over real tokens, averaged over the states;
//! - attention: `KL(teacher || student)` of every application's attention distributions,
//!   per real query row and head, averaged (on the fused QKV projection where the student
//!   ran fused training ops, [`train_ops::attention_kl`]; on the recorded probabilities
//!   otherwise);
//! - cosine: `1 - cos` of the mean-pooled sentence embeddings, averaged over the batch.
//!
//! The total is the weighted sum ([`LossWeights`], recorded in `distill.json`).

use adalbert_model::backbone::mean_pool;
use adalbert_model::train_ops;
use adalbert_model::{Recorded, TrainKernels};
use candle_core::{DType, Tensor, D};

use crate::error::{Result, TrainError};

/// Weights of the three losses in the total.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    pub hidden: f64,
    pub attention: f64,
    pub cosine: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            hidden: 1.0,
            attention: 1.0,
            cosine: 1.0,
        }
    }
}

/// The three losses and their weighted total (scalars).
pub struct Losses {
    pub hidden: Tensor,
    pub attention: Tensor,
    pub cosine: Tensor,
    pub total: Tensor,
}

/// The values of [`Losses`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossValues {
    pub total: f64,
    pub hidden: f64,
    pub attention: f64,
    pub cosine: f64,
}

impl Losses {
    pub fn values(&self) -> Result<LossValues> {
        let v = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        Ok(LossValues {
            total: v(&self.total)?,
            hidden: v(&self.hidden)?,
            attention: v(&self.attention)?,
            cosine: v(&self.cosine)?,
        })
    }
}

/// The teacher layer (0-based) whose output student application `a` of `n` reproduces,
/// for a teacher of `teacher_layers`: the uniform map of TinyBERT,
/// `g(a) = ceil((a + 1) T / n) - 1` (the identity when the counts agree; with more
/// applications than teacher layers, consecutive applications share a target).
pub fn layer_map(n: usize, teacher_layers: usize) -> Vec<usize> {
    (0..n)
        .map(|a| ((a + 1) * teacher_layers).div_ceil(n).max(1) - 1)
        .collect()
}

/// The losses of one batch. `mask` is the `[B, S]` attention mask (1 real, 0 padding);
/// `map` is [`layer_map`]; `kernels` the student context's fused training ops.
pub fn losses(
    student: &Recorded,
    teacher: &Recorded,
    mask: &Tensor,
    map: &[usize],
    heads: usize,
    weights: LossWeights,
    kernels: Option<TrainKernels>,
) -> Result<Losses> {
    let n = map.len();
    let bad = |what: String| TrainError::Data(format!("distillation: {what}"));
    if student.hidden_states.len() != n + 1 {
        return Err(bad(format!(
            "the student recorded {} hidden states, expected {}",
            student.hidden_states.len(),
            n + 1
        )));
    }
    let t_layers = teacher.attentions.len();
    if teacher.hidden_states.len() != t_layers + 1 || map.iter().any(|&l| l >= t_layers) {
        return Err(bad(
            "the teacher's recording does not fit the layer map".into()
        ));
    }
    let m = mask.to_dtype(DType::F32)?;
    let (b, s) = m.dims2()?;
    let m_host: Vec<f32> = m.flatten_all()?.to_vec1()?;
    let real = m_host.iter().filter(|&&x| x > 0.0).count().max(1) as f64;
    // Hidden states: state 0 is the embedding output, state a + 1 application a's output.
    let m3 = m.unsqueeze(2)?;
    let h = student.hidden_states[0].dims3()?.2;
    let mut hidden = Tensor::zeros((), DType::F32, m.device())?;
    let pairs = std::iter::once((0, 0)).chain(map.iter().enumerate().map(|(a, &l)| (a + 1, l + 1)));
    for (si, ti) in pairs {
        let d = (&student.hidden_states[si] - &teacher.hidden_states[ti])?;
        let sq = d.sqr()?.broadcast_mul(&m3)?.sum_all()?;
        hidden = (hidden + sq)?;
    }
    let hidden = (hidden / (real * h as f64 * (n + 1) as f64))?;
    // Attention: each real query row of each head weighs 1 / (rows * heads * n).
    let row: Vec<f32> = m_host
        .iter()
        .map(|&x| {
            if x > 0.0 {
                (1.0 / (real * heads as f64 * n as f64)) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mut attention = Tensor::zeros((), DType::F32, m.device())?;
    for (a, &l) in map.iter().enumerate() {
        let target = &teacher.attentions[l];
        let kl = match (student.qkv.get(a), student.attentions.get(a), kernels) {
            (Some(qkv), _, Some(k)) => {
                let d = qkv.dims3()?.2 / 3 / heads;
                let bias = ((m.ones_like()? - &m)? * f32::MIN as f64)?;
                let scale = 1.0 / (d as f32).sqrt();
                train_ops::attention_kl(qkv, &bias, target, row.clone(), heads, scale, k.isa)?
            }
            (_, Some(probs), _) => {
                let w = Tensor::from_vec(row.clone(), (b, 1, s, 1), m.device())?;
                kl_composite(probs, target, &w)?
            }
            _ => return Err(bad(format!("no attention recorded for application {a}"))),
        };
        attention = (attention + kl)?;
    }
    // Sentence embeddings.
    let last_s = mean_pool(&student.hidden_states[n], &m)?;
    let last_t = mean_pool(&teacher.hidden_states[t_layers], &m)?;
    let cos = cosine_rows(&last_s, &last_t)?;
    let cosine = (cos.ones_like()? - cos)?.mean_all()?;
    let total = ((&hidden * weights.hidden)? + (&attention * weights.attention)?)?;
    let total = (total + (&cosine * weights.cosine)?)?;
    Ok(Losses {
        hidden,
        attention,
        cosine,
        total,
    })
}

/// `sum(w * sum_j t (ln t - ln p))` in candle's ops, for probabilities `p` and `t`
/// (`[B, heads, S, S]`) and row weights `w` (`[B, 1, S, 1]`).
pub fn kl_composite(p: &Tensor, t: &Tensor, w: &Tensor) -> Result<Tensor> {
    let tiny = 1e-30;
    let log_ratio = (t.clamp(tiny, 1.0)?.log()? - p.clamp(tiny, 1.0)?.log()?)?;
    let per_row = (t * log_ratio)?.sum_keepdim(D::Minus1)?;
    Ok(per_row.broadcast_mul(w)?.sum_all()?)
}

/// Cosine similarity of matching rows of `[B, H]` tensors.
pub fn cosine_rows(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum(D::Minus1)?;
    let na = a.sqr()?.sum(D::Minus1)?.sqrt()?;
    let nb = b.sqr()?.sum(D::Minus1)?.sqrt()?;
    Ok((dot / ((na * nb)? + 1e-12)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_map_is_uniform() {
        assert_eq!(layer_map(6, 6), [0, 1, 2, 3, 4, 5]);
        assert_eq!(layer_map(3, 6), [1, 3, 5]);
        assert_eq!(layer_map(12, 6), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }
}
