//! End-to-end checks of `apply_plan` on a small ALBERT-shaped backbone.

use adalbert_compress::{apply_plan, FaultSpec, NamedTensor, Plan, TensorRole};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A miniature backbone with the real key names (E = 8, H = 16, FFN 32, vocab 50).
fn backbone(seed: u64) -> Vec<NamedTensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let layer = "encoder.albert_layer_groups.0.albert_layers.0";
    let shapes: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![50, 8]),
        ("embeddings.LayerNorm.weight".into(), vec![8]),
        (
            "encoder.embedding_hidden_mapping_in.weight".into(),
            vec![16, 8],
        ),
        ("encoder.embedding_hidden_mapping_in.bias".into(), vec![16]),
        (format!("{layer}.attention.query.weight"), vec![16, 16]),
        (format!("{layer}.ffn.weight"), vec![32, 16]),
        (format!("{layer}.ffn_output.weight"), vec![16, 32]),
        (format!("{layer}.full_layer_layer_norm.bias"), vec![16]),
    ];
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|_| (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.2)
                .collect();
            NamedTensor::inferred(name, shape, data).expect("shape matches")
        })
        .collect()
}

#[test]
fn roles_are_inferred_and_default_prune_skips_embeddings_and_norms() {
    let mut ts = backbone(1);
    let roles: Vec<TensorRole> = ts.iter().map(|t| t.role).collect();
    use TensorRole::*;
    assert_eq!(
        roles,
        [Embedding, Norm, Matrix, Bias, Matrix, Matrix, Matrix, Norm]
    );
    let plan: Plan = "int8+prune=0.5:global+bitmask".parse().unwrap();
    let r = apply_plan(&mut ts, &plan, &FaultSpec::None, 0).unwrap();
    let matrix_numel = 128 + 256 + 512 + 512;
    assert_eq!(r.global_prune.unwrap().pruned, matrix_numel / 2);
    let pruned: usize = r.tensors.iter().map(|t| t.pruned).sum();
    assert_eq!(pruned, matrix_numel / 2);
    assert_eq!(r.tensors[0].pruned, 0, "embeddings not pruned unless asked");
    // Storage per role: matrices hold nnz * 8 + numel bits (no code of the kept
    // half quantizes to zero at 8 bits, since kept |w| >= the median magnitude).
    let m = r.by_role.iter().find(|s| s.role == Matrix).unwrap();
    assert_eq!(m.storage.nnz, (matrix_numel / 2) as u64);
    assert_eq!(
        m.storage.payload_bits(),
        (matrix_numel / 2 * 8 + matrix_numel) as u64
    );
    let norm = r.by_role.iter().find(|s| s.role == Norm).unwrap();
    assert_eq!(norm.storage.payload_bits(), 24 * 32, "norms stay fp32");
}

#[test]
fn mask_in_mlc_cells_hurts_more_than_in_slc() {
    // The MaxNVM question in miniature: the same value faults, with the mask either
    // in SLC (fault-free here) or in the same 3-bit cells, with sigma doubled so
    // that a few hundred cells are enough to see faults.
    let plan: Plan = "af8e3+prune=0.5+bitmask".parse().unwrap();
    let run = |faults: &str| {
        let mut ts = backbone(2);
        let spec: FaultSpec = faults.parse().unwrap();
        let r = apply_plan(&mut ts, &plan, &spec, 9).unwrap();
        let rmse: f64 = r
            .tensors
            .iter()
            .filter(|t| t.role == TensorRole::Matrix)
            .map(|t| t.rmse)
            .sum();
        (rmse, r)
    };
    let (clean, _) = run("none");
    let (slc, r_slc) = run("mlc:bpc=3:sigma=2:mask=slc");
    let (mlc, r_mlc) = run("mlc:bpc=3:sigma=2:mask=mlc");
    assert_eq!(r_slc.mask_faults.flipped_cells, 0);
    assert!(r_mlc.mask_faults.flipped_cells > 0);
    assert_eq!(
        r_slc.value_faults, r_mlc.value_faults,
        "value faults use the same stream first"
    );
    assert!(
        clean < slc && slc < mlc,
        "clean {clean}, slc {slc}, mlc {mlc}"
    );
    let shifted: usize = r_mlc
        .tensors
        .iter()
        .map(|t| t.decode.missing_codes + t.decode.unused_codes)
        .sum();
    assert!(shifted > 0, "a mask fault desynchronises the code stream");
}

#[test]
fn edgebert_bias_clamp_is_reported() {
    // Weights in +-0.1 need bias floor(log2 0.1) - 7 = -11, below the register's -10.
    let mut ts = backbone(3);
    let r = apply_plan(&mut ts, &"edgebert8".parse().unwrap(), &FaultSpec::None, 0).unwrap();
    let fit = r.tensors[2].edgebert_bias.unwrap();
    assert_eq!(
        (fit.wanted, fit.used, fit.stored, fit.clamped),
        (-11, -10, 0, true)
    );
    assert!(r.tensors[1].edgebert_bias.is_none(), "norm not quantized");
}

#[test]
fn albert_base_shapes_storage_through_apply_plan() {
    // Full-size ALBERT-base tensors (random weights) through the real pipeline.
    use adalbert_compress::storage::{megabytes, Storage};
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let shape = adalbert_core::ModelShape::builtin("albert-base").unwrap();
    let mut ts: Vec<NamedTensor> = shape
        .tensors(true)
        .into_iter()
        .map(|s| {
            let n = s.numel();
            let role = TensorRole::infer(&s.name, &s.shape);
            // Magnitudes in [0.01, 0.1): no kept weight quantizes to zero at 8 bits.
            let data = (0..n)
                .map(|i| {
                    let m = 0.01 + 0.09 * (rng.next_u32() as f32 / u32::MAX as f32);
                    if i % 2 == 0 {
                        m
                    } else {
                        -m
                    }
                })
                .collect();
            NamedTensor::new(s.name, role, s.shape, data).unwrap()
        })
        .collect();
    let plan: Plan = "int8+prune=0.5:global:emb+bitmask+scope=all"
        .parse()
        .unwrap();
    let r = apply_plan(&mut ts, &plan, &FaultSpec::None, 0).unwrap();
    // Matrices and embeddings: 11,671,808 elements, half pruned. Biases and norms
    // (11,776) are quantized but not pruned.
    assert_eq!(r.global_prune.unwrap().pruned, 5_835_904);
    assert_eq!(r.total.numel, 11_683_584);
    assert_eq!(r.total.nnz, 5_835_904 + 11_776);
    assert_eq!(
        r.total.payload_bits(),
        8 * (5_835_904 + 11_776) + 11_683_584
    );
    assert_eq!(format!("{:.2}", megabytes(r.total.payload_bits())), "7.31");
    // The size-only estimate the simulator uses agrees with the real pipeline here, since
    // no kept weight quantizes to zero (the global threshold prunes the same count per
    // tensor only on average, so compare totals).
    let mut planned = Storage::default();
    for t in &ts {
        planned += plan.planned_storage(t.role, t.data.len() as u64);
    }
    assert_eq!(planned.payload_bits(), r.total.payload_bits());
}
