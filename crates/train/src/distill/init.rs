//! The student's starting point, close to the teacher, each choice measured.
//!
//! - Factorized embedding: the teacher's `[V, H]` word table `W` is cut to rank E by its
//!   truncated SVD. The right singular vectors come from the symmetric eigendecomposition of
//!   the Gram matrix `W^T W` (`H x H`, nalgebra's `SymmetricEigen`): with `V_E` the top E
//!   eigenvectors, `word_E = W V_E` and `word_E V_E^T` is the best rank-E approximation of
//!   `W` in Frobenius norm (Eckart-Young, docs/sources.md#distillation). The relative error
//!   is `sqrt(sum of the dropped eigenvalues / sum of all)`. Position and token-type tables
//!   go through the same factor (`P V_E`, the least-squares solution for an orthonormal
//!   `V_E`).
//! - The embedding LayerNorm: the teacher normalizes the sum in H, the student in E and then
//!   maps to H. The student's LayerNorm starts as a plain normalization (gamma 1, beta 0) and
//!   `embedding_hidden_mapping_in` (weight and bias) is the least-squares fit of the
//!   teacher's embedding output from the student's normalized E-vectors on corpus tokens,
//!   which also absorbs the teacher's gamma and beta. [`EmbeddingReport`] gives the error
//!   of that fit next to the naive mapping (`sqrt(H/E) diag(gamma) V_E`, bias beta).
//! - The shared layer(s): the element-wise mean of the teacher layers a group replaces, or
//!   the single teacher layer of that range that best reproduces the teacher when applied
//!   in the group's place (chosen group by group, the others at their mean), each scored by
//!   the distillation loss on a probe batch.

use std::collections::HashMap;

use adalbert_model::albert::AlbertLayer;
use adalbert_model::Backbone;
use candle_core::{DType, Device, Tensor, D};
use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Result, TrainError};

/// The truncated SVD of a `[rows, H]` table through its Gram matrix.
pub struct Factor {
    /// `[H, E]`, orthonormal columns: the top-E right singular vectors.
    pub basis: Tensor,
    /// Every singular value of the table, largest first.
    pub singular_values: Vec<f64>,
}

impl Factor {
    /// The top-`e` right singular vectors of `table` (`[rows, H]`, `e <= H`).
    pub fn of(table: &Tensor, e: usize) -> Result<Self> {
        let (_, h) = table.dims2()?;
        if e == 0 || e > h {
            return Err(TrainError::Config {
                field: "embedding_size",
                reason: format!("{e} is not in 1..={h}"),
            });
        }
        let w = table.to_dtype(DType::F64)?;
        let gram: Vec<f64> = w.t()?.matmul(&w)?.flatten_all()?.to_vec1()?;
        let eig = SymmetricEigen::new(DMatrix::from_row_slice(h, h, &gram));
        let mut order: Vec<usize> = (0..h).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let mut basis = Vec::with_capacity(h * e);
        for row in 0..h {
            for &col in order.iter().take(e) {
                basis.push(eig.eigenvectors[(row, col)] as f32);
            }
        }
        let singular_values = order
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0).sqrt())
            .collect();
        Ok(Self {
            basis: Tensor::from_vec(basis, (h, e), &Device::Cpu)?,
            singular_values,
        })
    }

    /// `sqrt(sum_{i >= e} s_i^2 / sum s_i^2)`: the relative Frobenius error of the best
    /// rank-`e` approximation.
    pub fn relative_error(&self, e: usize) -> f64 {
        let sq = |s: &[f64]| s.iter().map(|x| x * x).sum::<f64>();
        let all = sq(&self.singular_values);
        if all == 0.0 {
            return 0.0;
        }
        (sq(&self.singular_values[e.min(self.singular_values.len())..]) / all).sqrt()
    }

    /// `table V_E`: the table's coordinates in the basis.
    pub fn project(&self, table: &Tensor) -> Result<Tensor> {
        Ok(table.matmul(&self.basis)?)
    }
}

/// How well the factorized embedding starts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingReport {
    pub embedding_size: usize,
    /// Relative Frobenius error of the rank-E word table, and of the other sizes tried.
    pub word_table_error: Vec<(usize, f64)>,
    /// Relative error of the student's embedding output (after the mapping) against the
    /// teacher's on the fit tokens: the naive mapping and the least-squares one.
    pub output_error_naive: f64,
    pub output_error_fitted: f64,
    pub fit_tokens: usize,
}

/// `[n, E]` LayerNorm (gamma 1, beta 0) of `x`.
fn normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centered.broadcast_div(&(var + eps)?.sqrt()?)?)
}

/// The mapping `[H, E]` weight and `[H]` bias minimizing `|X W^T + b - Y|` (X `[n, E]`,
/// Y `[n, H]`), by the normal equations in f64 (E + 1 unknowns per output).
fn least_squares(x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
    let (n, e) = x.dims2()?;
    let h = y.dims2()?.1;
    let ones = Tensor::ones((n, 1), DType::F64, &Device::Cpu)?;
    let a = Tensor::cat(&[&x.to_dtype(DType::F64)?, &ones], 1)?;
    let y = y.to_dtype(DType::F64)?;
    let ata: Vec<f64> = a.t()?.matmul(&a)?.flatten_all()?.to_vec1()?;
    let aty: Vec<f64> = a.t()?.matmul(&y)?.flatten_all()?.to_vec1()?;
    let mut m = DMatrix::from_row_slice(e + 1, e + 1, &ata);
    // A whisper of ridge keeps the system solvable when a direction is unused.
    let ridge = 1e-9 * m.trace().max(1.0) / (e + 1) as f64;
    for i in 0..=e {
        m[(i, i)] += ridge;
    }
    let rhs = DMatrix::from_row_slice(e + 1, h, &aty);
    let sol = m
        .cholesky()
        .ok_or_else(|| TrainError::Data("embedding fit: singular normal equations".into()))?
        .solve(&rhs);
    // sol is [E + 1, H]: rows 0..E are W^T, the last row the bias.
    let mut weight = vec![0f32; h * e];
    for i in 0..h {
        for j in 0..e {
            weight[i * e + j] = sol[(j, i)] as f32;
        }
    }
    let bias: Vec<f32> = (0..h).map(|i| sol[(e, i)] as f32).collect();
    Ok((
        Tensor::from_vec(weight, (h, e), &Device::Cpu)?,
        Tensor::from_vec(bias, h, &Device::Cpu)?,
    ))
}

fn relative(pred: &Tensor, want: &Tensor) -> Result<f64> {
    let num = (pred - want)?
        .sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    let den = want
        .sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok((num / den.max(1e-30)).sqrt())
}

/// Rows of real tokens: `sum_e` of `[B, S, W]` into `[n, W]` where `mask [B, S]` is 1.
pub fn real_rows(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, s, w) = x.dims3()?;
    let m: Vec<f32> = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let idx: Vec<u32> = (0..b * s)
        .filter(|&i| m[i] > 0.0)
        .map(|i| i as u32)
        .collect();
    let idx = Tensor::from_vec(idx.clone(), idx.len(), &Device::Cpu)?;
    Ok(x.reshape((b * s, w))?.index_select(&idx, 0)?)
}

/// The student's embedding tensors (ALBERT names): factorized tables, its LayerNorm and the
/// fitted `embedding_hidden_mapping_in`, with the report. `samples` are
/// `(input_ids, token_type_ids, attention_mask, teacher embedding output [B, S, H])`.
pub fn factorized_embeddings(
    teacher: &Backbone,
    e: usize,
    samples: &[(Tensor, Tensor, Tensor, Tensor)],
    tried: &[usize],
) -> Result<(HashMap<String, Tensor>, EmbeddingReport)> {
    let emb = &teacher.embeddings;
    let factor = Factor::of(&emb.word_embeddings, e)?;
    let word = factor.project(&emb.word_embeddings)?;
    let position = factor.project(&emb.position_embeddings)?;
    let types = factor.project(&emb.token_type_embeddings)?;
    let eps = emb.layer_norm.eps;
    // The fit: normalized student sums against the teacher's embedding outputs.
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (ids, tt, mask, teacher_out) in samples {
        let s = ids.dims2()?.1;
        let gather = |table: &Tensor, idx: &Tensor| -> Result<Tensor> {
            let (b, s) = idx.dims2()?;
            Ok(table
                .index_select(&idx.flatten_all()?, 0)?
                .reshape((b, s, table.dims()[1]))?)
        };
        let sum = (gather(&word, ids)? + gather(&types, tt)?)?
            .broadcast_add(&position.narrow(0, 0, s)?.unsqueeze(0)?)?;
        xs.push(real_rows(&normalize(&sum, eps)?, mask)?);
        ys.push(real_rows(teacher_out, mask)?);
    }
    let x = Tensor::cat(&xs, 0)?;
    let y = Tensor::cat(&ys, 0)?;
    let (weight, bias) = least_squares(&x, &y)?;
    let fitted = x.matmul(&weight.t()?)?.broadcast_add(&bias)?;
    let h = factor.basis.dims()[0];
    let naive_w = factor
        .basis
        .broadcast_mul(&emb.layer_norm.weight.unsqueeze(1)?)?
        .affine((h as f64 / e as f64).sqrt(), 0.0)?;
    let naive = x
        .matmul(&naive_w.t()?)?
        .broadcast_add(&emb.layer_norm.bias)?;
    let mut sizes: Vec<usize> = tried
        .iter()
        .copied()
        .chain([e])
        .filter(|&k| k <= h)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let report = EmbeddingReport {
        embedding_size: e,
        word_table_error: sizes
            .iter()
            .map(|&k| (k, factor.relative_error(k)))
            .collect(),
        output_error_naive: relative(&naive, &y)?,
        output_error_fitted: relative(&fitted, &y)?,
        fit_tokens: x.dims()[0],
    };
    let mut out = HashMap::new();
    out.insert("embeddings.word_embeddings.weight".into(), word);
    out.insert("embeddings.position_embeddings.weight".into(), position);
    out.insert("embeddings.token_type_embeddings.weight".into(), types);
    out.insert(
        "embeddings.LayerNorm.weight".into(),
        Tensor::ones(e, DType::F32, &Device::Cpu)?,
    );
    out.insert(
        "embeddings.LayerNorm.bias".into(),
        Tensor::zeros(e, DType::F32, &Device::Cpu)?,
    );
    out.insert("encoder.embedding_hidden_mapping_in.weight".into(), weight);
    out.insert("encoder.embedding_hidden_mapping_in.bias".into(), bias);
    Ok((out, report))
}

/// A teacher layer's tensors under ALBERT's local names (`attention.query.weight`, ...).
pub fn layer_tensors(layer: &AlbertLayer) -> Vec<(String, Tensor)> {
    let a = &layer.attention;
    let mut out = Vec::with_capacity(16);
    for (name, lin) in [
        ("attention.query", &a.query),
        ("attention.key", &a.key),
        ("attention.value", &a.value),
        ("attention.dense", &a.dense),
        ("ffn", &layer.ffn),
        ("ffn_output", &layer.ffn_output),
    ] {
        out.push((format!("{name}.weight"), lin.weight.clone()));
        if let Some(b) = &lin.bias {
            out.push((format!("{name}.bias"), b.clone()));
        }
    }
    for (name, ln) in [
        ("attention.LayerNorm", &a.layer_norm),
        ("full_layer_layer_norm", &layer.full_layer_layer_norm),
    ] {
        out.push((format!("{name}.weight"), ln.weight.clone()));
        out.push((format!("{name}.bias"), ln.bias.clone()));
    }
    out
}

/// The element-wise mean of teacher layers `layers` (ALBERT local names).
pub fn mean_layer(teacher: &Backbone, layers: &[usize]) -> Result<Vec<(String, Tensor)>> {
    let mut acc = layer_tensors(teacher.encoder.layer(layers[0]));
    for &l in &layers[1..] {
        for ((_, a), (_, t)) in acc.iter_mut().zip(layer_tensors(teacher.encoder.layer(l))) {
            *a = (&*a + t)?;
        }
    }
    let n = layers.len() as f64;
    acc.into_iter()
        .map(|(name, t)| Ok((name, (t / n)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svd_factor_matches_a_hand_computed_case() {
        // W = [[3, 0], [0, 1], [0, 0]] rotated by 45 degrees in H: singular values 3 and 1,
        // the top right singular vector (1, 1)/sqrt(2).
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let w = Tensor::new(&[[3.0 * r, 3.0 * r], [-r, r], [0.0, 0.0]], &Device::Cpu).unwrap();
        let f = Factor::of(&w, 1).unwrap();
        assert!(
            (f.singular_values[0] - 3.0).abs() < 1e-6,
            "{:?}",
            f.singular_values
        );
        assert!((f.singular_values[1] - 1.0).abs() < 1e-6);
        let v: Vec<f32> = f.basis.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            (v[0].abs() - r).abs() < 1e-6 && (v[0] - v[1]).abs() < 1e-6,
            "{v:?}"
        );
        // Eckart-Young: the rank-1 error is the dropped singular value's share.
        let want = (1.0f64 / 10.0).sqrt();
        assert!((f.relative_error(1) - want).abs() < 1e-6);
        let approx = f
            .project(&w)
            .unwrap()
            .matmul(&f.basis.t().unwrap())
            .unwrap();
        let err = relative(&approx, &w).unwrap();
        assert!((err - want).abs() < 1e-6, "{err} vs {want}");
        assert_eq!(f.relative_error(2), 0.0);
        assert!(Factor::of(&w, 3).is_err() && Factor::of(&w, 0).is_err());
    }

    #[test]
    fn least_squares_recovers_an_affine_map() {
        let x = Tensor::new(
            &[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]],
            &Device::Cpu,
        )
        .unwrap();
        let w = Tensor::new(&[[2f32, -1.0], [0.5, 3.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.25f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let y = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let (gw, gb) = least_squares(&x, &y).unwrap();
        assert!(relative(&gw, &w).unwrap() < 1e-5 && relative(&gb, &b).unwrap() < 1e-5);
    }
}
