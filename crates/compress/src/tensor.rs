//! Named tensors with a role: the unit the compression plan works on.
//!
//! The caller (the candle side) copies each backbone tensor out as a `Vec<f32>`, tags
//! it with its [`TensorRole`], and gets the compressed (and possibly faulty) values
//! written back in place. Roles decide which tensors a plan prunes and quantizes.

use serde::{Deserialize, Serialize};

use crate::error::{CompressError, Result};

/// What a tensor is for; plans select tensors by role, never by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TensorRole {
    /// Word, position and token-type embedding tables.
    Embedding,
    /// Any other 2-D weight matrix (attention, FFN, projection, pooler).
    Matrix,
    /// Bias vectors of linear layers.
    Bias,
    /// LayerNorm gains and shifts.
    Norm,
    /// Anything else (kept as it is by the default plan).
    Other,
}

impl TensorRole {
    /// Every role, in report order.
    pub const ALL: [TensorRole; 5] = [
        TensorRole::Embedding,
        TensorRole::Matrix,
        TensorRole::Bias,
        TensorRole::Norm,
        TensorRole::Other,
    ];

    /// Guesses the role from a Hugging Face checkpoint key and shape.
    ///
    /// Rules, first match wins: a name containing `LayerNorm`, `layer_norm` or
    /// `layernorm` is [`Norm`](Self::Norm); a name ending in `bias` is
    /// [`Bias`](Self::Bias); a name containing `embeddings` is
    /// [`Embedding`](Self::Embedding) (ALBERT's `embedding_hidden_mapping_in` is a
    /// matrix, not a table); any other tensor of rank 2 is [`Matrix`](Self::Matrix).
    pub fn infer(name: &str, shape: &[usize]) -> TensorRole {
        let lower = name.to_ascii_lowercase();
        if lower.contains("layernorm") || lower.contains("layer_norm") {
            TensorRole::Norm
        } else if lower.ends_with("bias") {
            TensorRole::Bias
        } else if lower.contains("embeddings.") || lower.ends_with("embeddings") {
            TensorRole::Embedding
        } else if shape.len() == 2 {
            TensorRole::Matrix
        } else {
            TensorRole::Other
        }
    }

    /// Lower-case name used in reports and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            TensorRole::Embedding => "embedding",
            TensorRole::Matrix => "matrix",
            TensorRole::Bias => "bias",
            TensorRole::Norm => "norm",
            TensorRole::Other => "other",
        }
    }
}

impl std::fmt::Display for TensorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tensor copied out of a model: name, role, shape and row-major `f32` data.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Checkpoint key, used in reports and error messages.
    pub name: String,
    /// Selects how the plan treats this tensor.
    pub role: TensorRole,
    /// Row-major shape; for a linear weight `[out, in]`.
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// Builds a tensor after checking that `data` matches `shape`.
    pub fn new(
        name: impl Into<String>,
        role: TensorRole,
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<Self> {
        let t = NamedTensor {
            name: name.into(),
            role,
            shape,
            data,
        };
        t.check_shape()?;
        Ok(t)
    }

    /// Like [`new`](Self::new) with the role from [`TensorRole::infer`].
    pub fn inferred(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let name = name.into();
        let role = TensorRole::infer(&name, &shape);
        Self::new(name, role, shape, data)
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Elements per output channel: the product of all dimensions but the first
    /// (the whole tensor for rank 0 and 1, which count as a single channel).
    pub fn row_len(&self) -> usize {
        row_len(&self.shape, self.data.len())
    }

    /// Fails unless the data length equals the product of the shape.
    pub fn check_shape(&self) -> Result<()> {
        let expected: usize = self.shape.iter().product();
        if expected == self.data.len() {
            Ok(())
        } else {
            Err(CompressError::ShapeMismatch {
                tensor: self.name.clone(),
                shape: self.shape.clone(),
                expected,
                actual: self.data.len(),
            })
        }
    }

    /// Fails on the first NaN or infinity, naming the tensor and index.
    pub fn check_finite(&self) -> Result<()> {
        check_finite(&self.name, &self.data)
    }
}

/// Elements per output channel of a row-major tensor of `numel` elements.
pub(crate) fn row_len(shape: &[usize], numel: usize) -> usize {
    if shape.len() >= 2 && shape[0] > 0 {
        numel / shape[0]
    } else {
        numel.max(1)
    }
}

/// Fails on the first non-finite value of `data`.
pub(crate) fn check_finite(name: &str, data: &[f32]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(CompressError::NonFinite {
            tensor: name.to_string(),
            index,
            value: data[index],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_roles_from_albert_keys() {
        let r = |n: &str, s: &[usize]| TensorRole::infer(n, s);
        assert_eq!(
            r("embeddings.word_embeddings.weight", &[30000, 128]),
            TensorRole::Embedding
        );
        assert_eq!(r("embeddings.LayerNorm.weight", &[128]), TensorRole::Norm);
        assert_eq!(
            r("encoder.embedding_hidden_mapping_in.weight", &[768, 128]),
            TensorRole::Matrix
        );
        assert_eq!(
            r("encoder.embedding_hidden_mapping_in.bias", &[768]),
            TensorRole::Bias
        );
        assert_eq!(
            r(
                "encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.bias",
                &[768]
            ),
            TensorRole::Norm
        );
        assert_eq!(r("pooler.weight", &[768, 768]), TensorRole::Matrix);
    }

    #[test]
    fn rejects_shape_mismatch_and_nan() {
        let e = NamedTensor::new("w", TensorRole::Matrix, vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert!(e.to_string().contains("`w`"), "{e}");
        let t = NamedTensor::new("w", TensorRole::Matrix, vec![2], vec![0.0, f32::NAN]).unwrap();
        assert!(matches!(
            t.check_finite(),
            Err(CompressError::NonFinite { index: 1, .. })
        ));
        assert_eq!(t.row_len(), 2);
    }
}
