//! Applying a compression plan (`adalbert-compress`) to a backbone checkpoint or to a task
//! bundle's own tensors.
//!
//! The compress crate works on plain `f32` slices. This module is the bridge: it copies each
//! floating-point tensor out of a [`Checkpoint`] (or a bundle's tensor map) into a
//! [`NamedTensor`] whose [`TensorRole`] is inferred from its name and shape
//! ([`TensorRole::infer`]: word/position/token-type tables are embeddings, LayerNorm
//! parameters are norms, `*.bias` are biases, every other rank-2 tensor, the pooler and
//! ALBERT's `embedding_hidden_mapping_in` included, is a matrix), calls
//! [`apply_plan`], and wraps the decoded values in a new [`Checkpoint`]. Which of those roles
//! are pruned or quantized is the plan's business (its `scope=` and `prune=...:emb` stages),
//! not this module's.
//!
//! Tensors are handed to [`apply_plan`] sorted by name, so the per-tensor fault seeds it
//! derives from the master seed do not depend on hash-map order: the same plan, fault spec
//! and seed always give the same weights. Non-float tensors (e.g. an `int64`
//! `embeddings.position_ids` buffer) are passed through untouched and not counted.
//!
//! The compressed weights are identified by [`weights_sha256`]: sha256 over a version tag and,
//! for every tensor in name order, its name, shape and little-endian `f32` bytes. That is the
//! backbone identity recorded in bundles re-trained on compressed weights ("recovery"): two
//! plans that give bit-identical weights give the same identity, and any flipped bit changes
//! it. It is deliberately different from the sha256 of a checkpoint *file* (which identifies
//! uncompressed backbones), so a recovered bundle is refused on the original backbone.

use std::collections::HashMap;
use std::path::PathBuf;

use adalbert_compress::{apply_plan, FaultSpec, NamedTensor, Plan, Report};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::checkpoint::{hex, Checkpoint};
use crate::error::ModelError;

/// Errors of applying a plan to model tensors.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The plan, the fault spec or a tensor was rejected by the compress crate.
    #[error("compressing {what}: {source}")]
    Compress {
        /// Which tensors (a checkpoint path or a bundle path).
        what: String,
        #[source]
        source: adalbert_compress::CompressError,
    },
    /// Copying a tensor out of or into candle failed.
    #[error("tensor `{name}`: {source}")]
    Tensor {
        name: String,
        #[source]
        source: candle_core::Error,
    },
    /// Building the model from the compressed tensors failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

pub type Result<T> = std::result::Result<T, CompressionError>;

/// A backbone checkpoint after a plan: the decoded weights, what the plan did, and the
/// identity of the weights.
pub struct CompressedCheckpoint {
    /// The decoded (quantized, pruned, possibly faulty) weights, ready for `Backbone::load`.
    pub checkpoint: Checkpoint,
    /// Storage, error and fault figures per tensor and per role.
    pub report: Report,
    /// [`weights_sha256`] of the compressed tensors.
    pub sha256: String,
}

/// Float tensors of a map as [`NamedTensor`]s sorted by name (roles inferred), plus the names
/// of the tensors left out because they are not floating point.
pub fn named_tensors(tensors: &HashMap<String, Tensor>) -> Result<(Vec<NamedTensor>, Vec<String>)> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    let mut skipped = Vec::new();
    for name in names {
        let t = &tensors[name];
        if !t.dtype().is_float() {
            skipped.push(name.clone());
            continue;
        }
        let tensor_err = |source| CompressionError::Tensor {
            name: name.clone(),
            source,
        };
        let data: Vec<f32> = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(tensor_err)?;
        let nt =
            NamedTensor::inferred(name.clone(), t.dims().to_vec(), data).map_err(|source| {
                CompressionError::Compress {
                    what: format!("tensor `{name}`"),
                    source,
                }
            })?;
        out.push(nt);
    }
    Ok((out, skipped))
}

/// sha256 identifying a set of tensors by content (see the module docs for the layout).
pub fn weights_sha256(tensors: &[NamedTensor]) -> String {
    let mut refs: Vec<&NamedTensor> = tensors.iter().collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    h.update(b"adalbert-weights-v1\n");
    let mut buf = Vec::new();
    for t in refs {
        h.update((t.name.len() as u64).to_le_bytes());
        h.update(t.name.as_bytes());
        h.update((t.shape.len() as u64).to_le_bytes());
        for d in &t.shape {
            h.update((*d as u64).to_le_bytes());
        }
        buf.clear();
        buf.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
        h.update(&buf);
    }
    hex(&h.finalize())
}

/// Applies `plan` and `faults` (seeded by `seed`) to tensors copied out of `tensors`; returns
/// the decoded tensors (non-float ones passed through), the report and the content sha256.
pub fn compress_tensors(
    tensors: &HashMap<String, Tensor>,
    plan: &Plan,
    faults: &FaultSpec,
    seed: u64,
    what: &str,
) -> Result<(HashMap<String, Tensor>, Report, String)> {
    let (mut named, skipped) = named_tensors(tensors)?;
    let report = apply_plan(&mut named, plan, faults, seed).map_err(|source| {
        CompressionError::Compress {
            what: what.to_string(),
            source,
        }
    })?;
    let sha = weights_sha256(&named);
    let mut out = HashMap::with_capacity(tensors.len());
    for t in named {
        let name = t.name;
        let tensor = Tensor::from_vec(t.data, t.shape, &Device::Cpu).map_err(|source| {
            CompressionError::Tensor {
                name: name.clone(),
                source,
            }
        })?;
        out.insert(name, tensor);
    }
    for name in skipped {
        out.insert(name.clone(), tensors[&name].clone());
    }
    Ok((out, report, sha))
}

/// Applies a plan to every float tensor of a backbone checkpoint.
pub fn compress_checkpoint(
    ck: &Checkpoint,
    plan: &Plan,
    faults: &FaultSpec,
    seed: u64,
) -> Result<CompressedCheckpoint> {
    let what = ck.path().display().to_string();
    let (tensors, report, sha256) = compress_tensors(ck.tensors(), plan, faults, seed, &what)?;
    let path = PathBuf::from(format!("{what} [{plan}, faults {faults}, seed {seed}]"));
    Ok(CompressedCheckpoint {
        checkpoint: Checkpoint::with_simulated_faults(tensors, path),
        report,
        sha256,
    })
}

/// Applies a plan to a task bundle's own tensors (adapters, LayerNorms, head); returns the new
/// tensor map, to build `TaskParams` from, and the report. The bundle's metadata is unchanged.
pub fn compress_bundle_tensors(
    bundle: &crate::TaskBundle,
    plan: &Plan,
    faults: &FaultSpec,
    seed: u64,
) -> Result<(HashMap<String, Tensor>, Report)> {
    let what = bundle.path.display().to_string();
    let (tensors, report, _) = compress_tensors(&bundle.tensors, plan, faults, seed, &what)?;
    Ok((tensors, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use adalbert_compress::TensorRole;

    fn map() -> HashMap<String, Tensor> {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 8.0).collect();
        HashMap::from([
            (
                "encoder.layer.0.attention.self.query.weight".to_string(),
                Tensor::from_vec(w, (3, 4), &dev).unwrap(),
            ),
            (
                "encoder.layer.0.attention.self.query.bias".to_string(),
                Tensor::new(&[0.1f32, 0.2, 0.3], &dev).unwrap(),
            ),
            (
                "embeddings.position_ids".to_string(),
                Tensor::new(&[[0i64, 1, 2]], &dev).unwrap(),
            ),
        ])
    }

    #[test]
    fn roles_are_inferred_and_non_float_tensors_pass_through() {
        let (named, skipped) = named_tensors(&map()).unwrap();
        assert_eq!(skipped, ["embeddings.position_ids"]);
        let roles: Vec<(&str, TensorRole)> =
            named.iter().map(|t| (t.name.as_str(), t.role)).collect();
        assert_eq!(
            roles,
            [
                (
                    "encoder.layer.0.attention.self.query.bias",
                    TensorRole::Bias
                ),
                (
                    "encoder.layer.0.attention.self.query.weight",
                    TensorRole::Matrix
                ),
            ]
        );
        let plan: Plan = "int4".parse().unwrap();
        let (out, report, _) = compress_tensors(&map(), &plan, &FaultSpec::None, 0, "t").unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out["embeddings.position_ids"].dtype(), DType::I64);
        assert_eq!(report.tensors.len(), 2);
        // int4 on the matrix: at most 15 distinct values; the bias stays exact (scope weights).
        let w: Vec<f32> = out["encoder.layer.0.attention.self.query.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut distinct = w.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        assert!(distinct.len() <= 15 && w[0] == -5.5 / 8.0, "{w:?}");
        let b: Vec<f32> = out["encoder.layer.0.attention.self.query.bias"]
            .to_vec1()
            .unwrap();
        assert_eq!(b, [0.1, 0.2, 0.3]);
    }

    #[test]
    fn weights_sha_is_order_free_and_sees_one_bit() {
        let (named, _) = named_tensors(&map()).unwrap();
        let mut rev = named.clone();
        rev.reverse();
        assert_eq!(weights_sha256(&named), weights_sha256(&rev));
        let mut flipped = named.clone();
        flipped[1].data[3] = f32::from_bits(flipped[1].data[3].to_bits() ^ 1);
        assert_ne!(weights_sha256(&named), weights_sha256(&flipped));
        assert_eq!(weights_sha256(&named).len(), 64);
    }

    fn fixture() -> (crate::Backbone, Checkpoint) {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/albert_shared");
        crate::Backbone::from_dir(&dir).unwrap()
    }

    fn hidden(ck: &Checkpoint, config: &crate::EncoderConfig) -> Vec<f32> {
        let bb = crate::Backbone::load(ck, config).unwrap();
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[2u32, 17, 45, 98, 3, 0], [2, 5, 6, 7, 8, 3]], &dev).unwrap();
        let types = ids.zeros_like().unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], &dev).unwrap();
        let out = bb
            .forward(&ids, &types, &mask, None, &crate::Ctx::eval())
            .unwrap();
        out.last_hidden_state
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn fixture_fp32_is_exact_and_int8_moves_outputs_a_little() {
        let (bb, ck) = fixture();
        let base = hidden(&ck, &bb.config);
        let fp32 = compress_checkpoint(&ck, &"fp32".parse().unwrap(), &FaultSpec::None, 0).unwrap();
        assert_eq!(hidden(&fp32.checkpoint, &bb.config), base);
        let int8 = compress_checkpoint(&ck, &"int8".parse().unwrap(), &FaultSpec::None, 0).unwrap();
        let d = max_diff(&hidden(&int8.checkpoint, &bb.config), &base);
        assert!(d > 0.0 && d < 0.1, "int8 moved the hidden states by {d}");
        let int2 = compress_checkpoint(&ck, &"int2".parse().unwrap(), &FaultSpec::None, 0).unwrap();
        let d2 = max_diff(&hidden(&int2.checkpoint, &bb.config), &base);
        assert!(
            d2 > 5.0 * d,
            "int2 ({d2}) should hurt far more than int8 ({d})"
        );
        assert_ne!(int8.sha256, fp32.sha256);
        // Storage: every matrix and embedding at 8 bits, the rest at 32.
        let r = &int8.report;
        let fp = &fp32.report;
        assert_eq!(r.total.numel, fp.total.numel);
        let weights: u64 = r
            .by_role
            .iter()
            .filter(|s| matches!(s.role, TensorRole::Matrix | TensorRole::Embedding))
            .map(|s| s.storage.numel)
            .sum();
        assert_eq!(
            fp.total.payload_bits() - r.total.payload_bits(),
            weights * 24
        );
    }

    #[test]
    fn fixture_prune_half_zeroes_half_of_each_matrix_only() {
        let (_, ck) = fixture();
        let plan: Plan = "prune=0.5".parse().unwrap();
        let c = compress_checkpoint(&ck, &plan, &FaultSpec::None, 0).unwrap();
        let mut matrices = 0;
        for (name, t) in ck.tensors() {
            let after: Vec<f32> = c.checkpoint.tensors()[name]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let zeros = after.iter().filter(|v| **v == 0.0).count();
            match TensorRole::infer(name, t.dims()) {
                TensorRole::Matrix => {
                    matrices += 1;
                    assert_eq!(zeros, (after.len() as f64 * 0.5).round() as usize, "{name}");
                }
                _ => {
                    let before: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(before, after, "{name} must be untouched");
                }
            }
        }
        assert!(matrices >= 7, "fixture has {matrices} matrices");
        let with_emb: Plan = "prune=0.5:emb".parse().unwrap();
        let c = compress_checkpoint(&ck, &with_emb, &FaultSpec::None, 0).unwrap();
        let emb: Vec<f32> = c.checkpoint.tensors()["embeddings.word_embeddings.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let zeros = emb.iter().filter(|v| **v == 0.0).count();
        assert_eq!(zeros, (emb.len() as f64 * 0.5).round() as usize);
    }

    #[test]
    fn fixture_faults_are_reproducible_by_seed() {
        let (bb, ck) = fixture();
        let plan: Plan = "af8e3+prune=0.5+bitmask".parse().unwrap();
        let faults: FaultSpec = "mlc:bpc=3:sigma=2".parse().unwrap();
        let a = compress_checkpoint(&ck, &plan, &faults, 7).unwrap();
        let b = compress_checkpoint(&ck, &plan, &faults, 7).unwrap();
        let c = compress_checkpoint(&ck, &plan, &faults, 8).unwrap();
        let clean = compress_checkpoint(&ck, &plan, &FaultSpec::None, 7).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.report, b.report);
        assert_eq!(a.report.seed, 7);
        assert_ne!(a.sha256, c.sha256);
        assert!(a.report.value_faults.flipped_cells > 0);
        assert_eq!(
            a.report.mask_faults.flipped_cells, 0,
            "mask in SLC at sigma 2"
        );
        assert_ne!(a.sha256, clean.sha256);
        assert_eq!(
            hidden(&a.checkpoint, &bb.config),
            hidden(&b.checkpoint, &bb.config)
        );
    }

    #[test]
    fn bundle_tensors_are_compressed_by_role() {
        let dev = Device::Cpu;
        let meta_dir = std::env::temp_dir().join(format!("adalbert-cb-{}", std::process::id()));
        let path = meta_dir.join("b.safetensors");
        let w: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 10.0).collect();
        let bundle = crate::TaskBundle {
            meta: serde_json::from_value(serde_json::json!({
                "format": 1, "task": "t", "labels": [], "mode": "adapter",
                "layout": {"adapter": null, "sharing": "per-application", "layer_norms": false,
                           "pooler": false, "num_labels": 2, "pooling": "mean"},
                "metrics": {}, "training": null, "seed": 0, "backbone_sha256": "x",
                "trainable_params": 0, "tool_version": "t"}))
            .unwrap(),
            tensors: HashMap::from([
                (
                    "classifier.weight".to_string(),
                    Tensor::from_vec(w, (2, 16), &dev).unwrap(),
                ),
                (
                    "task.layers.0.attention.LayerNorm.weight".to_string(),
                    Tensor::new(&[1.01f32, 0.99], &dev).unwrap(),
                ),
            ]),
            path,
        };
        let plan: Plan = "prune=0.25".parse().unwrap();
        let (out, report) = compress_bundle_tensors(&bundle, &plan, &FaultSpec::None, 0).unwrap();
        let cw: Vec<f32> = out["classifier.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(cw.iter().filter(|v| **v == 0.0).count(), 8);
        assert_eq!(report.tensors[0].role, TensorRole::Matrix);
        assert_eq!(report.tensors[1].role, TensorRole::Norm);
        let ln: Vec<f32> = out["task.layers.0.attention.LayerNorm.weight"]
            .to_vec1()
            .unwrap();
        assert_eq!(ln, [1.01, 0.99]);
    }

    #[test]
    fn invalid_plan_is_a_clear_error() {
        let plan = Plan {
            prune: Some(adalbert_compress::PruneSpec {
                sparsity: 1.5,
                global: false,
                include_embeddings: false,
            }),
            ..Plan::default()
        };
        let e = compress_tensors(&map(), &plan, &FaultSpec::None, 0, "my tensors")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("my tensors") && e.contains("1.5"), "{e}");
    }
}
