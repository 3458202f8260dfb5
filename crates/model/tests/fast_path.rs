//! adalbert's inference kernels against candle's ops (the training path, itself checked
//! against Hugging Face in parity.rs): every fixture family, every adapter kind, row routing
//! with mixed tasks and padding, on the portable kernels and (where the CPU has it) AVX-512,
//! plus the compressed paths (bf16 and int8, on every kernel this CPU runs) within their
//! error.

use std::path::Path;

use adalbert_core::rng::Normal;
use adalbert_model::exec::{Bf16Isa, Int8Isa};
use adalbert_model::{
    AdapterSpec, Backbone, Ctx, Isa, Kernels, Pooling, Route, Sharing, TaskLayout, TaskParams,
};
use candle_core::{DType, Device, Tensor};

fn load(name: &str, kernels: Kernels) -> Backbone {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let (mut b, _) = Backbone::from_dir(&dir).unwrap();
    b.set_kernels(kernels);
    b
}

/// A task whose every tensor is perturbed, so adapters, LoRA and LayerNorm copies all matter.
fn task(backbone: &Backbone, spec: &str, seed: u64) -> TaskParams {
    let layout = TaskLayout {
        adapter: Some(AdapterSpec::parse(spec).unwrap()),
        sharing: Sharing::PerApplication,
        layer_norms: true,
        pooler: seed.is_multiple_of(2),
        num_labels: 2,
        pooling: Pooling::Pooler,
    };
    let mut t = layout.init_tensors(backbone, seed).unwrap();
    // Seeded and in name order, so every run checks the same weights against its tolerance.
    let mut rng = Normal::new(seed);
    let mut names: Vec<String> = t.keys().cloned().collect();
    names.sort();
    for name in names {
        let v = t.get_mut(&name).unwrap();
        let noise = Tensor::from_vec(rng.vec_f32(v.elem_count(), 0.1), v.dims(), &Device::Cpu);
        *v = (&*v + noise.unwrap()).unwrap();
    }
    TaskParams::from_tensors(&backbone.config, &layout, &t).unwrap()
}

fn inputs(vocab: usize) -> (Tensor, Tensor, Tensor) {
    let (b, s) = (3usize, 11usize);
    let ids: Vec<u32> = (0..b * s)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let types: Vec<u32> = (0..b * s).map(|i| ((i / 5) % 2) as u32).collect();
    // Row 1 has four padding positions, row 2 one.
    let mask: Vec<u32> = (0..b * s)
        .map(|i| match (i / s, i % s) {
            (1, p) if p >= 7 => 0,
            (2, 10) => 0,
            _ => 1,
        })
        .collect();
    let t = |v: Vec<u32>| Tensor::from_vec(v, (b, s), &Device::Cpu).unwrap();
    (t(ids), t(types), t(mask))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn run(bb: &Backbone, route: &Route) -> (Tensor, Option<Tensor>) {
    let (ids, types, mask) = inputs(bb.config.shape.vocab_size);
    let out = bb
        .forward_routed(&ids, &types, &mask, route, &Ctx::eval())
        .unwrap();
    (out.last_hidden_state, out.pooler_output)
}

const FIXTURES: [&str; 4] = [
    "albert_groups",
    "albert_shared",
    "bert",
    "bert_noprefix_relu",
];

#[test]
fn fast_kernels_match_candle_with_and_without_adapters() {
    let mut isas = vec![Isa::Portable];
    if Isa::Avx512.available() {
        isas.push(Isa::Avx512);
    }
    for name in FIXTURES {
        let reference = load(name, Kernels::Candle);
        assert_eq!(reference.inference_kernels(), "candle");
        let tasks = [
            task(&reference, "houlsby:4", 1),
            task(&reference, "pfeiffer:3", 2),
            task(&reference, "parallel:5", 3),
            task(&reference, "lora:r=2,alpha=4", 4),
        ];
        let mut routes = vec![Route::Backbone];
        routes.extend(tasks.iter().map(Route::Task));
        routes.push(Route::Rows(vec![(0, 1, &tasks[0]), (1, 2, &tasks[3])]));
        for isa in &isas {
            let fast = load(name, Kernels::Isa(*isa));
            assert_eq!(fast.inference_isa(), Some(*isa));
            for (i, route) in routes.iter().enumerate() {
                let (h_ref, p_ref) = run(&reference, route);
                let (h, p) = run(&fast, route);
                let d = max_diff(&h, &h_ref);
                assert!(d < 2e-5, "{name} {isa:?} route {i}: hidden max diff {d}");
                if let (Some(p), Some(p_ref)) = (p, p_ref) {
                    let d = max_diff(&p, &p_ref);
                    assert!(d < 2e-5, "{name} {isa:?} route {i}: pooler max diff {d}");
                }
            }
        }
    }
}

#[test]
fn compressed_path_stays_within_bf16_error() {
    for name in FIXTURES {
        let reference = load(name, Kernels::Candle);
        let bf16 = load(name, Kernels::Bf16);
        let (h_ref, _) = run(&reference, &Route::Backbone);
        let (h, _) = run(&bf16, &Route::Backbone);
        let scale = h_ref
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let d = max_diff(&h, &h_ref);
        assert!(
            d < 0.05 * scale.max(1.0),
            "{name} ({}): max diff {d}, scale {scale}",
            bf16.inference_kernels()
        );
        assert_eq!(h.dtype(), DType::F32);
    }
}

/// Says that a kernel was not exercised, straight to stderr (past the test harness's capture,
/// so a passing `cargo test` shows it).
fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}

fn mean_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .mean(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The compressed paths on each kernel against candle's fp32 ops, on every fixture, with the
/// backbone alone and with an adapter and a LoRA task attached. Tolerances on the last hidden
/// state (LayerNorm outputs, entries of order 1), per precision:
/// - bf16 (8-bit mantissa, relative error 2^-9 per rounding): max |diff| < 0.05, mean < 0.01;
/// - int8 (per-row and per-channel steps of max/127 on every product's inputs, through every
///   layer): max |diff| < 0.15, mean < 0.03.
///
/// The int8 kernels compute the same integers (the kernel tests check each product to fp32
/// rounding), but not the same end to end: their activations' last bits differ (vector and
/// scalar GELU), and one such bit can move an activation of the next layer across a rounding
/// boundary of its quantization, a step of max/127. So each is held to the fp32 reference.
/// A kernel this CPU cannot run is skipped with a message on stderr.
#[test]
fn compressed_paths_stay_within_their_error_on_every_kernel() {
    let mut kernels: Vec<(Kernels, &str, f32, f32)> = Vec::new();
    for k in Bf16Isa::ALL {
        if k.available() {
            kernels.push((Kernels::Bf16On(k), k.name(), 0.05, 0.01));
        } else {
            skipped(&format!(
                "bf16 kernel {}: this CPU (or OS) lacks it",
                k.name()
            ));
        }
    }
    for k in Int8Isa::ALL {
        if k.available() {
            kernels.push((Kernels::Int8On(k), k.name(), 0.15, 0.03));
        } else {
            skipped(&format!(
                "int8 kernel {}: this CPU (or OS) lacks it",
                k.name()
            ));
        }
    }
    for name in FIXTURES {
        let reference = load(name, Kernels::Candle);
        let tasks = [
            task(&reference, "houlsby:4", 1),
            task(&reference, "lora:r=2,alpha=4", 4),
        ];
        let routes = [
            Route::Backbone,
            Route::Task(&tasks[0]),
            Route::Rows(vec![(0, 1, &tasks[0]), (1, 2, &tasks[1])]),
        ];
        for &(k, kernel, max_tol, mean_tol) in &kernels {
            let bb = load(name, k);
            let described = bb.inference_kernels();
            assert!(
                described.contains(kernel) || (kernel == "widened" && described.contains("bf16")),
                "{name}: asked for {kernel}, runs {described}"
            );
            for (i, route) in routes.iter().enumerate() {
                let (h_ref, _) = run(&reference, route);
                let (h, _) = run(&bb, route);
                assert_eq!(h.dtype(), DType::F32);
                let (max, mean) = (max_diff(&h, &h_ref), mean_abs_diff(&h, &h_ref));
                eprintln!("{name} {described} route {i}: max |diff| {max:.2e}, mean {mean:.2e}");
                assert!(
                    max < max_tol && mean < mean_tol,
                    "{name} {described} route {i}: max |diff| {max} (< {max_tol}), \
                     mean {mean} (< {mean_tol})"
                );
            }
        }
    }
}

#[test]
fn trainable_backbones_keep_candle_ops() {
    // A backbone built from variables (full fine-tuning) must not be packed: the packed copy
    // would go stale after an optimizer step.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert");
    let ck = adalbert_model::Checkpoint::open(&dir).unwrap();
    let vars: std::collections::HashMap<String, Tensor> = ck
        .tensors()
        .iter()
        .map(|(k, v)| {
            let var = candle_core::Var::from_tensor(&v.to_dtype(DType::F32).unwrap()).unwrap();
            (k.clone(), var.as_tensor().clone())
        })
        .collect();
    let config = adalbert_model::EncoderConfig::from_path(&dir).unwrap();
    let bb = Backbone::load(
        &adalbert_model::Checkpoint::from_tensors(vars, dir.clone()),
        &config,
    )
    .unwrap();
    assert_eq!(bb.inference_kernels(), "candle");
}

/// The fast path caches packed task weights, but a training run's `Var`s change in place
/// under the same tensor id: after `Var::set`, the fast forward must see the new values.
#[test]
fn task_weights_changed_in_place_are_not_served_stale() {
    let reference = load("bert", Kernels::Candle);
    let fast = load("bert", Kernels::Isa(Isa::detect()));
    let layout = TaskLayout {
        adapter: Some(AdapterSpec::parse("houlsby:4").unwrap()),
        sharing: Sharing::PerApplication,
        layer_norms: true,
        pooler: false,
        num_labels: 2,
        pooling: Pooling::Pooler,
    };
    let init = layout.init_tensors(&reference, 5).unwrap();
    let vars: std::collections::HashMap<String, candle_core::Var> = init
        .iter()
        .map(|(k, v)| (k.clone(), candle_core::Var::from_tensor(v).unwrap()))
        .collect();
    let tensors = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let task = TaskParams::from_tensors(&reference.config, &layout, &tensors).unwrap();
    let route = Route::Task(&task);
    let (before, _) = run(&fast, &route);
    // Adapters and the task's LayerNorms (both cached by the fast path when immutable).
    let mut rng = Normal::new(11);
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        if [".down.", ".up.", "LayerNorm", "layer_norm"]
            .iter()
            .any(|p| name.contains(p))
        {
            // Random, not constant: a uniform shift of `up` would be undone by the LayerNorm.
            let noise =
                Tensor::from_vec(rng.vec_f32(var.elem_count(), 0.3), var.dims(), &Device::Cpu)
                    .unwrap();
            let bumped = (var.as_tensor() + noise).unwrap();
            var.set(&bumped).unwrap();
        }
    }
    let (after, _) = run(&fast, &route);
    let (want, _) = run(&reference, &route);
    assert!(
        max_diff(&after, &before) > 1e-3,
        "the update changed nothing"
    );
    let d = max_diff(&after, &want);
    assert!(
        d < 2e-5,
        "fast path after Var::set differs from candle by {d}"
    );
}
