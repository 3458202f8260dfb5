//! Storage arithmetic: exact bit counts of stored tensors, and ALBERT/BERT parameter
//! counts from configuration numbers alone (no weights needed).
//!
//! Payload bits follow REFERENCE §6: dense `numel * bits`, bit-mask
//! `nnz * bits + numel`. Per-tensor side information (scales, zero points, bias
//! registers) is counted apart in `metadata_bits` so the payload matches the
//! reference formula exactly. Megabytes are decimal (1 MB = 10^6 bytes).

use serde::{Deserialize, Serialize};

pub use crate::bitmask::bitmask_bits;
use crate::tensor::TensorRole;

/// Bits of a dense tensor: `numel * bits`.
pub fn dense_bits(numel: u64, bits_per_value: u32) -> u64 {
    numel * u64::from(bits_per_value)
}

/// Decimal megabytes of `bits` bits.
pub fn megabytes(bits: u64) -> f64 {
    bits as f64 / 8.0 / 1e6
}

/// Storage of one tensor, or a sum over tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// Elements.
    pub numel: u64,
    /// Elements stored as non-zero codes (all of them when dense).
    pub nnz: u64,
    /// Bits of the code stream.
    pub value_bits: u64,
    /// Bits of the mask (0 when dense).
    pub mask_bits: u64,
    /// Bits of scales, zero points and bias registers.
    pub metadata_bits: u64,
}

impl Storage {
    /// The REFERENCE §6 payload: value bits plus mask bits.
    pub fn payload_bits(&self) -> u64 {
        self.value_bits + self.mask_bits
    }

    /// Payload plus metadata.
    pub fn total_bits(&self) -> u64 {
        self.payload_bits() + self.metadata_bits
    }

    /// Payload in whole bytes (rounded up).
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bits().div_ceil(8)
    }
}

impl std::ops::AddAssign for Storage {
    fn add_assign(&mut self, o: Self) {
        self.numel += o.numel;
        self.nnz += o.nnz;
        self.value_bits += o.value_bits;
        self.mask_bits += o.mask_bits;
        self.metadata_bits += o.metadata_bits;
    }
}

/// The configuration numbers that fix an ALBERT or BERT encoder's size.
///
/// BERT is ALBERT with `num_hidden_groups = num_hidden_layers`, `E = H` and no
/// embedding projection (REFERENCE §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Embedding width E.
    pub embedding_size: u64,
    /// Hidden width H.
    pub hidden_size: u64,
    /// Layer applications.
    pub num_hidden_layers: u64,
    /// Distinct layer groups stored (1 for ALBERT, `num_hidden_layers` for BERT).
    pub num_hidden_groups: u64,
    /// Layers per group.
    pub inner_group_num: u64,
    /// FFN inner width.
    pub intermediate_size: u64,
    /// Position table length.
    pub max_position_embeddings: u64,
    /// Token-type table length.
    pub type_vocab_size: u64,
    /// Whether an E->H projection (`embedding_hidden_mapping_in`) exists.
    pub embedding_projection: bool,
    /// Whether a pooler (H x H dense + bias) exists.
    pub pooler: bool,
}

/// Parameter counts of an encoder, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Word, position and token-type tables plus their LayerNorm.
    pub embeddings: u64,
    /// E->H projection weight and bias.
    pub projection: u64,
    /// All stored transformer layers (one for ALBERT-base).
    pub layers: u64,
    /// Pooler weight and bias.
    pub pooler: u64,
}

impl ParamCounts {
    /// Sum of the parts.
    pub fn total(&self) -> u64 {
        self.embeddings + self.projection + self.layers + self.pooler
    }
}

impl EncoderConfig {
    /// albert-base-v2.
    pub fn albert_base() -> Self {
        EncoderConfig {
            vocab_size: 30_000,
            embedding_size: 128,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_hidden_groups: 1,
            inner_group_num: 1,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            embedding_projection: true,
            pooler: true,
        }
    }

    /// bert-base-uncased.
    pub fn bert_base() -> Self {
        EncoderConfig {
            vocab_size: 30_522,
            embedding_size: 768,
            num_hidden_groups: 12,
            embedding_projection: false,
            ..Self::albert_base()
        }
    }

    /// Parameters of one transformer layer: Q, K, V and output projections with
    /// biases, attention LayerNorm, FFN in and out with biases, output LayerNorm.
    pub fn layer_params(&self) -> u64 {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let attention = 4 * (h * h + h) + 2 * h;
        let ffn = (h * f + f) + (f * h + h) + 2 * h;
        attention + ffn
    }

    /// Parameter counts by part.
    pub fn param_counts(&self) -> ParamCounts {
        let (e, h) = (self.embedding_size, self.hidden_size);
        let tables = self.vocab_size + self.max_position_embeddings + self.type_vocab_size;
        ParamCounts {
            embeddings: tables * e + 2 * e,
            projection: if self.embedding_projection {
                e * h + h
            } else {
                0
            },
            layers: self.num_hidden_groups * self.inner_group_num * self.layer_params(),
            pooler: if self.pooler { h * h + h } else { 0 },
        }
    }
}

/// One checkpoint tensor of an encoder, known from the configuration alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Hugging Face key without model prefix (`AlbertModel` / `BertModel` naming).
    pub name: String,
    /// Row-major shape; linear weights are `[out, in]`.
    pub shape: Vec<usize>,
    /// Role, from [`TensorRole::infer`].
    pub role: TensorRole,
}

impl TensorSpec {
    fn new(name: String, shape: Vec<u64>) -> Self {
        let shape: Vec<usize> = shape.into_iter().map(|d| d as usize).collect();
        let role = TensorRole::infer(&name, &shape);
        TensorSpec { name, shape, role }
    }

    /// Elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

impl EncoderConfig {
    /// Every stored tensor with its checkpoint key, shape and role, so storage per
    /// role can be computed (or a plan dry-run on zeros) without weights. ALBERT keys
    /// are used when the config has an embedding projection, BERT keys otherwise.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        let (e, h, f) = (
            self.embedding_size,
            self.hidden_size,
            self.intermediate_size,
        );
        let mut out = vec![
            TensorSpec::new(
                "embeddings.word_embeddings.weight".into(),
                vec![self.vocab_size, e],
            ),
            TensorSpec::new(
                "embeddings.position_embeddings.weight".into(),
                vec![self.max_position_embeddings, e],
            ),
            TensorSpec::new(
                "embeddings.token_type_embeddings.weight".into(),
                vec![self.type_vocab_size, e],
            ),
        ];
        push_norm(&mut out, "embeddings.LayerNorm", e);
        if self.embedding_projection {
            push_linear(&mut out, "encoder.embedding_hidden_mapping_in", h, e);
        }
        for g in 0..self.num_hidden_groups {
            for i in 0..self.inner_group_num {
                if self.embedding_projection {
                    let p = format!("encoder.albert_layer_groups.{g}.albert_layers.{i}");
                    for m in ["query", "key", "value", "dense"] {
                        push_linear(&mut out, &format!("{p}.attention.{m}"), h, h);
                    }
                    push_norm(&mut out, &format!("{p}.attention.LayerNorm"), h);
                    push_linear(&mut out, &format!("{p}.ffn"), f, h);
                    push_linear(&mut out, &format!("{p}.ffn_output"), h, f);
                    push_norm(&mut out, &format!("{p}.full_layer_layer_norm"), h);
                } else {
                    let p = format!("encoder.layer.{}", g * self.inner_group_num + i);
                    for m in ["query", "key", "value"] {
                        push_linear(&mut out, &format!("{p}.attention.self.{m}"), h, h);
                    }
                    push_linear(&mut out, &format!("{p}.attention.output.dense"), h, h);
                    push_norm(&mut out, &format!("{p}.attention.output.LayerNorm"), h);
                    push_linear(&mut out, &format!("{p}.intermediate.dense"), f, h);
                    push_linear(&mut out, &format!("{p}.output.dense"), h, f);
                    push_norm(&mut out, &format!("{p}.output.LayerNorm"), h);
                }
            }
        }
        if self.pooler {
            let name = if self.embedding_projection {
                "pooler"
            } else {
                "pooler.dense"
            };
            push_linear(&mut out, name, h, h);
        }
        out
    }
}

fn push_linear(out: &mut Vec<TensorSpec>, prefix: &str, out_dim: u64, in_dim: u64) {
    out.push(TensorSpec::new(
        format!("{prefix}.weight"),
        vec![out_dim, in_dim],
    ));
    out.push(TensorSpec::new(format!("{prefix}.bias"), vec![out_dim]));
}

fn push_norm(out: &mut Vec<TensorSpec>, prefix: &str, dim: u64) {
    out.push(TensorSpec::new(format!("{prefix}.weight"), vec![dim]));
    out.push(TensorSpec::new(format!("{prefix}.bias"), vec![dim]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn albert_base_parts_match_reference() {
        let c = EncoderConfig::albert_base().param_counts();
        assert_eq!(c.embeddings, 3_906_048);
        assert_eq!(c.projection, 99_072);
        assert_eq!(c.layers, 7_087_872);
        assert_eq!(c.pooler, 590_592);
        assert_eq!(c.total(), 11_683_584);
    }

    #[test]
    fn bert_base_total_matches_reference() {
        let c = EncoderConfig::bert_base().param_counts();
        assert_eq!(c.embeddings, 23_837_184);
        assert_eq!(c.projection, 0);
        assert_eq!(c.layers, 12 * 7_087_872);
        assert_eq!(c.total(), 109_482_240);
    }

    #[test]
    fn albert_8bit_half_density_is_7_30_mb_vs_11_68_dense() {
        let n = EncoderConfig::albert_base().param_counts().total();
        let nnz = crate::prune::prune_count(n as usize, 0.5) as u64;
        let sparse = bitmask_bits(n, nnz, 8);
        assert_eq!(sparse, 58_417_920);
        assert_eq!(sparse / 8, 7_302_240);
        assert_eq!(format!("{:.2}", megabytes(sparse)), "7.30");
        let dense = dense_bits(n, 8);
        assert_eq!(dense / 8, 11_683_584);
        assert_eq!(format!("{:.2}", megabytes(dense)), "11.68");
        // BERT-base under the same plan, for scale.
        let b = EncoderConfig::bert_base().param_counts().total();
        assert_eq!(bitmask_bits(b, b / 2, 8) / 8, 68_426_400);
    }

    #[test]
    fn storage_sums_and_rounds_bytes_up() {
        let mut s = Storage {
            numel: 3,
            nnz: 1,
            value_bits: 4,
            mask_bits: 3,
            metadata_bits: 8,
        };
        assert_eq!(
            (s.payload_bits(), s.payload_bytes(), s.total_bits()),
            (7, 1, 15)
        );
        s += s;
        assert_eq!((s.numel, s.payload_bits(), s.payload_bytes()), (6, 14, 2));
    }

    fn numel_by_role(c: &EncoderConfig) -> [u64; 5] {
        let mut by = [0u64; 5];
        for t in c.tensor_specs() {
            let i = TensorRole::ALL.iter().position(|&r| r == t.role).unwrap();
            by[i] += t.numel();
        }
        by
    }

    #[test]
    fn tensor_specs_sum_to_param_counts_with_roles() {
        let a = EncoderConfig::albert_base();
        // [embedding, matrix, bias, norm, other]
        assert_eq!(numel_by_role(&a), [3_905_792, 7_766_016, 8_448, 3_328, 0]);
        assert_eq!(numel_by_role(&a).iter().sum::<u64>(), 11_683_584);
        let specs = a.tensor_specs();
        assert_eq!(specs.len(), 3 + 2 + 2 + 16 + 2);
        assert_eq!(specs[5].name, "encoder.embedding_hidden_mapping_in.weight");
        assert_eq!(specs[5].shape, [768, 128]);
        let b = EncoderConfig::bert_base();
        assert_eq!(numel_by_role(&b).iter().sum::<u64>(), 109_482_240);
        assert!(b
            .tensor_specs()
            .iter()
            .any(|t| t.name == "encoder.layer.11.output.LayerNorm.bias"));
    }
}
