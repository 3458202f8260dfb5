//! Applying a plan to a set of tensors: prune, quantize, store, inject faults, and
//! write the values the hardware would read back into the tensors.
//!
//! This is the entry point the candle side uses: copy each backbone tensor out as a
//! `Vec<f32>` into a [`NamedTensor`] with its role, call [`apply_plan`], copy the data
//! back into the model, and keep the [`Report`] for storage and fault figures.

use serde::Serialize;

use crate::bitmask::DecodeStats;
use crate::error::Result;
use crate::faults::{derive_seed, inject, FaultCounts, FaultReport, FaultSpec};
use crate::formats::edgebert::BiasFit;
use crate::formats::Codec;
use crate::layout::{Encoding, StoredCodes};
use crate::plan::Plan;
use crate::prune::{magnitude_prune, magnitude_prune_global, PruneStats};
use crate::storage::{dense_bits, Storage};
use crate::tensor::{NamedTensor, TensorRole};

/// What happened to one tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Tensor role.
    pub role: TensorRole,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether the plan quantized and stored it (else it stayed fp32, untouched).
    pub compressed: bool,
    /// Format used (`fp32` when not compressed).
    pub format: String,
    /// Bits per stored code.
    pub bits_per_value: u32,
    /// Layout used.
    pub encoding: Encoding,
    /// Elements zeroed by pruning (0 when not pruned).
    pub pruned: usize,
    /// Storage of this tensor; `nnz` counts non-zero codes after quantization.
    pub storage: Storage,
    /// Root-mean-square difference between the input and the final values.
    pub rmse: f64,
    /// Largest absolute difference between the input and the final values.
    pub max_abs_error: f32,
    /// The EdgeBERT bias register fit (EdgeBERT format only).
    pub edgebert_bias: Option<BiasFit>,
    /// Injected faults (None when the plan injects none or the tensor is not stored).
    pub faults: Option<FaultReport>,
    /// Decoder findings (mask/code mismatches caused by mask faults).
    pub decode: DecodeStats,
}

/// Storage summed over the tensors of one role.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RoleSummary {
    /// The role.
    pub role: TensorRole,
    /// Tensors with this role.
    pub tensors: usize,
    /// Their storage, summed.
    pub storage: Storage,
}

/// The result of [`apply_plan`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Master seed; per-tensor seeds are derived from it (see [`derive_seed`]).
    pub seed: u64,
    /// The plan, in canonical string form.
    pub plan: String,
    /// The fault spec, in canonical string form.
    pub faults: String,
    /// Global pruning statistics (None unless the plan prunes globally).
    pub global_prune: Option<PruneStats>,
    /// One entry per input tensor, in input order.
    pub tensors: Vec<TensorReport>,
    /// Storage per role, for roles present, in [`TensorRole::ALL`] order.
    pub by_role: Vec<RoleSummary>,
    /// Storage of all tensors.
    pub total: Storage,
    /// Faults summed over all tensors' value streams.
    pub value_faults: FaultCounts,
    /// Faults summed over all tensors' mask streams.
    pub mask_faults: FaultCounts,
}

/// Applies `plan` and `faults` to `tensors` in place and reports what it did.
///
/// Steps, in order:
/// 1. validate the plan, the fault spec, every tensor's shape and finiteness;
/// 2. prune the tensors the prune stage selects (per tensor or globally);
/// 3. for each tensor the plan's scope selects: fit the format, encode to codes,
///    store them in the plan's layout, count storage, inject faults into the stored
///    bits with seed `derive_seed(seed, index)` (index = position in `tensors`),
///    decode, and write the decoded values back into `data`;
/// 4. leave the other tensors untouched and count them as dense fp32.
///
/// The same inputs and seed always give the same values and report.
pub fn apply_plan(
    tensors: &mut [NamedTensor],
    plan: &Plan,
    faults: &FaultSpec,
    seed: u64,
) -> Result<Report> {
    plan.validate()?;
    faults.validate()?;
    for t in tensors.iter() {
        t.check_shape()?;
        t.check_finite()?;
    }
    let originals: Vec<Vec<f32>> = tensors.iter().map(|t| t.data.clone()).collect();
    let (pruned, global_prune) = prune_stage(tensors, plan)?;
    let mut reports = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter_mut().enumerate() {
        let mut r = if plan.scope.selects(t.role) {
            compress_tensor(t, plan, faults, derive_seed(seed, i as u64))?
        } else {
            uncompressed_report(t)
        };
        r.pruned = pruned[i];
        (r.rmse, r.max_abs_error) = error_stats(&originals[i], &t.data);
        reports.push(r);
    }
    Ok(summarize(reports, plan, faults, seed, global_prune))
}

/// Runs the prune stage; returns elements pruned per tensor and global stats.
fn prune_stage(
    tensors: &mut [NamedTensor],
    plan: &Plan,
) -> Result<(Vec<usize>, Option<PruneStats>)> {
    let mut pruned = vec![0usize; tensors.len()];
    let Some(spec) = plan.prune else {
        return Ok((pruned, None));
    };
    if spec.global {
        let mut slices: Vec<&mut [f32]> = Vec::new();
        let mut owners = Vec::new();
        for (i, t) in tensors.iter_mut().enumerate() {
            if spec.selects(t.role) {
                owners.push(i);
                slices.push(&mut t.data);
            }
        }
        let before: Vec<usize> = slices.iter().map(|s| count_zeros(s)).collect();
        let stats = magnitude_prune_global(&mut slices, spec.sparsity)?;
        for ((s, i), b) in slices.iter().zip(owners).zip(before) {
            pruned[i] = count_zeros(s) - b;
        }
        return Ok((pruned, Some(stats)));
    }
    for (i, t) in tensors.iter_mut().enumerate() {
        if spec.selects(t.role) {
            let before = count_zeros(&t.data);
            magnitude_prune(&mut t.data, spec.sparsity)?;
            pruned[i] = count_zeros(&t.data) - before;
        }
    }
    Ok((pruned, None))
}

fn count_zeros(data: &[f32]) -> usize {
    data.iter().filter(|v| **v == 0.0).count()
}

/// Quantizes, stores, faults and decodes one tensor in place.
fn compress_tensor(
    t: &mut NamedTensor,
    plan: &Plan,
    faults: &FaultSpec,
    seed: u64,
) -> Result<TensorReport> {
    let codec = Codec::fit(&plan.format, &t.data, t.row_len())?;
    let mut codes = vec![0u32; t.data.len()];
    codec.encode(&t.data, &mut codes)?;
    let zero = codec.zero_codes(codes.len());
    let mut stored = StoredCodes::encode(&codes, codec.bits(), plan.encoding, &zero)?;
    let nnz = match plan.encoding {
        Encoding::Bitmask => stored.stored_codes() as u64,
        Encoding::Dense => (0..codes.len())
            .filter(|&j| codes[j] != zero.code(j / zero.row_len()))
            .count() as u64,
    };
    let storage = Storage {
        numel: codes.len() as u64,
        nnz,
        value_bits: stored.value_bits(),
        mask_bits: stored.mask_bits(),
        metadata_bits: codec.metadata_bits(),
    };
    let fault_report = match faults {
        FaultSpec::None => None,
        spec => Some(inject(&mut stored, spec, seed)?),
    };
    let decode = stored.decode(&zero, &mut codes)?;
    codec.decode(&codes, &mut t.data)?;
    Ok(TensorReport {
        name: t.name.clone(),
        role: t.role,
        shape: t.shape.clone(),
        compressed: true,
        format: plan.format.to_string(),
        bits_per_value: codec.bits(),
        encoding: plan.encoding,
        pruned: 0,
        storage,
        rmse: 0.0,
        max_abs_error: 0.0,
        edgebert_bias: codec.edgebert_bias(),
        faults: fault_report,
        decode,
    })
}

/// The report of a tensor the plan leaves as dense fp32.
fn uncompressed_report(t: &NamedTensor) -> TensorReport {
    let n = t.data.len() as u64;
    TensorReport {
        name: t.name.clone(),
        role: t.role,
        shape: t.shape.clone(),
        compressed: false,
        format: "fp32".to_string(),
        bits_per_value: 32,
        encoding: Encoding::Dense,
        pruned: 0,
        storage: Storage {
            numel: n,
            nnz: t.data.iter().filter(|v| **v != 0.0).count() as u64,
            value_bits: dense_bits(n, 32),
            ..Storage::default()
        },
        rmse: 0.0,
        max_abs_error: 0.0,
        edgebert_bias: None,
        faults: None,
        decode: DecodeStats::default(),
    }
}

/// RMSE and max absolute difference, accumulated in f64.
fn error_stats(before: &[f32], after: &[f32]) -> (f64, f32) {
    let (mut sq, mut max) = (0.0f64, 0.0f32);
    for (&a, &b) in before.iter().zip(after) {
        let d = a - b;
        sq += f64::from(d) * f64::from(d);
        max = max.max(d.abs());
    }
    let rmse = if before.is_empty() {
        0.0
    } else {
        (sq / before.len() as f64).sqrt()
    };
    (rmse, max)
}

fn summarize(
    tensors: Vec<TensorReport>,
    plan: &Plan,
    faults: &FaultSpec,
    seed: u64,
    global_prune: Option<PruneStats>,
) -> Report {
    let mut total = Storage::default();
    let (mut value_faults, mut mask_faults) = (FaultCounts::default(), FaultCounts::default());
    for t in &tensors {
        total += t.storage;
        if let Some(f) = &t.faults {
            value_faults += f.values;
            mask_faults += f.mask;
        }
    }
    let by_role = TensorRole::ALL
        .iter()
        .filter_map(|&role| {
            let mine: Vec<&TensorReport> = tensors.iter().filter(|t| t.role == role).collect();
            (!mine.is_empty()).then(|| {
                let mut storage = Storage::default();
                mine.iter().for_each(|t| storage += t.storage);
                RoleSummary {
                    role,
                    tensors: mine.len(),
                    storage,
                }
            })
        })
        .collect();
    Report {
        seed,
        plan: plan.to_string(),
        faults: faults.to_string(),
        global_prune,
        tensors,
        by_role,
        total,
        value_faults,
        mask_faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CompressError;

    fn tensors() -> Vec<NamedTensor> {
        let m: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) / 4.0).collect();
        vec![
            NamedTensor::new("enc.w", TensorRole::Matrix, vec![4, 4], m).unwrap(),
            NamedTensor::new(
                "emb",
                TensorRole::Embedding,
                vec![2, 4],
                vec![0.5, -0.25, 1.0, 0.0, 2.0, -2.0, 0.125, 0.75],
            )
            .unwrap(),
            NamedTensor::new("enc.b", TensorRole::Bias, vec![3], vec![0.1, 0.2, 0.3]).unwrap(),
        ]
    }

    #[test]
    fn int8_bitmask_pruned_plan_counts_storage_exactly() {
        let mut ts = tensors();
        let plan: Plan = "int8+prune=0.5+bitmask".parse().unwrap();
        let r = apply_plan(&mut ts, &plan, &FaultSpec::None, 1).unwrap();
        let w = &r.tensors[0];
        // 8 of the 16 matrix elements pruned (the |x| <= 1.0 ones), none of the others.
        assert_eq!(
            (w.pruned, r.tensors[1].pruned, r.tensors[2].pruned),
            (8, 0, 0)
        );
        assert_eq!(w.storage.nnz, 8);
        assert_eq!(w.storage.payload_bits(), 8 * 8 + 16);
        assert_eq!(w.storage.metadata_bits, 32);
        // Embedding: quantized (scope weights) but not pruned; its 0.0 is skipped.
        assert_eq!(r.tensors[1].storage.payload_bits(), 7 * 8 + 8);
        // Bias: left fp32 and untouched.
        assert!(!r.tensors[2].compressed);
        assert_eq!(r.tensors[2].storage.payload_bits(), 96);
        assert_eq!(ts[2].data, [0.1, 0.2, 0.3]);
        assert_eq!(r.total.payload_bits(), 80 + 64 + 96);
        assert_eq!(r.by_role.len(), 3);
        assert_eq!(r.by_role[1].role, TensorRole::Matrix);
        // Scale 1.875 / 127: -1.625 -> -110.07 steps -> -110, and so on.
        let s = 1.875f32 / 127.0;
        let want = [
            -127.0 * s,
            -110.0 * s,
            -93.0 * s,
            -76.0 * s,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        assert_eq!(ts[0].data[..8], want[..]);
        assert_eq!(ts[0].data[15], 1.875);
    }

    #[test]
    fn faults_are_seeded_and_reported() {
        let plan: Plan = "af8e3+bitmask".parse().unwrap();
        let faults: FaultSpec = "mlc:bpc=3:sigma=4:mask=mlc".parse().unwrap();
        let run = |seed| {
            let mut ts = tensors();
            let r = apply_plan(&mut ts, &plan, &faults, seed).unwrap();
            (ts, r)
        };
        let (a, ra) = run(42);
        let (b, rb) = run(42);
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        let f = ra.tensors[0].faults.unwrap();
        assert_eq!(f.seed, derive_seed(42, 0));
        // All 16 values are above AdaptivFloat's min, so 16 codes of 8 bits are stored.
        assert_eq!(f.values.cells, (16 * 8u64).div_ceil(3));
        assert_eq!(f.mask.cells, 16u64.div_ceil(3));
        assert!(
            ra.value_faults.flipped_cells > 0,
            "sigma x4 at 3 bpc faults often"
        );
        assert_eq!(ra.seed, 42);
        assert_eq!(ra.faults, "mlc:bpc=3:coding=binary:mask=mlc:sigma=4");
    }

    #[test]
    fn rejects_bad_tensors_before_changing_anything() {
        let mut ts = tensors();
        ts[1].data[3] = f32::INFINITY;
        let plan: Plan = "int8+prune=0.5".parse().unwrap();
        let e = apply_plan(&mut ts, &plan, &FaultSpec::None, 0).unwrap_err();
        assert!(
            matches!(e, CompressError::NonFinite { index: 3, .. }),
            "{e}"
        );
        assert_eq!(ts[0].data[0], -1.875, "nothing pruned");
    }
}
