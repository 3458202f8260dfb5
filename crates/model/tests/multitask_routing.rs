//! One backbone, several tasks: a mixed batch routed per row gives exactly the outputs of
//! running each task alone, the backbone's tensors are shared (not copied) by every task,
//! and a task owns only a small fraction of the bytes.

use std::path::Path;

use adalbert_core::rng::Normal;
use adalbert_model::{
    AdapterSpec, Backbone, Ctx, EncoderConfig, Pooling, Route, Sharing, TaskLayout, TaskParams,
};
use candle_core::{Device, Tensor};

fn tiny() -> (Backbone, EncoderConfig) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/albert_shared");
    let (b, _) = Backbone::from_dir(&dir).unwrap();
    let c = b.config.clone();
    (b, c)
}

/// A task with non-trivial adapters (random up-projections) so tasks really differ.
fn task(backbone: &Backbone, spec: &str, sharing: Sharing, seed: u64) -> (TaskLayout, TaskParams) {
    let layout = TaskLayout {
        adapter: Some(AdapterSpec::parse(spec).unwrap()),
        sharing,
        layer_norms: true,
        pooler: seed.is_multiple_of(2),
        num_labels: 3,
        pooling: Pooling::Pooler,
    };
    let mut t = layout.init_tensors(backbone, seed).unwrap();
    // Seeded and in name order, so every run routes the same weights.
    let mut rng = Normal::new(seed);
    let mut names: Vec<String> = t.keys().cloned().collect();
    names.sort();
    for name in names {
        if name.contains(".up.weight") || name.contains(".b") && name.contains("lora") {
            let v = t.get_mut(&name).unwrap();
            let values = rng.vec_f32(v.elem_count(), 0.2);
            *v = Tensor::from_vec(values, v.dims(), &Device::Cpu).unwrap();
        }
    }
    let params = TaskParams::from_tensors(&backbone.config, &layout, &t).unwrap();
    (layout, params)
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

#[test]
fn mixed_batch_equals_single_task_runs() {
    let (backbone, _) = tiny();
    let (_, a) = task(&backbone, "houlsby:4", Sharing::PerApplication, 1);
    let (_, b) = task(&backbone, "lora:r=2,alpha=4", Sharing::Shared, 2);
    let (_, c) = task(&backbone, "parallel:3", Sharing::PerApplication, 4);
    let ids = Tensor::new(
        &[
            [2i64, 10, 11, 3, 0],
            [2, 12, 13, 14, 3],
            [2, 15, 3, 0, 0],
            [2, 16, 17, 18, 3],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let types = ids.zeros_like().unwrap();
    let mask = ids
        .ne(0i64)
        .unwrap()
        .to_dtype(candle_core::DType::I64)
        .unwrap();
    let ctx = Ctx::eval();
    let route = Route::Rows(vec![(0, 1, &a), (1, 2, &b), (3, 1, &c)]);
    let mixed = backbone
        .forward_routed(&ids, &types, &mask, &route, &ctx)
        .unwrap();
    for (start, len, t) in [(0usize, 1usize, &a), (1, 2, &b), (3, 1, &c)] {
        let rows = |x: &Tensor| x.narrow(0, start, len).unwrap();
        let single = backbone
            .forward(&rows(&ids), &rows(&types), &rows(&mask), Some(t), &ctx)
            .unwrap();
        let d = max_diff(&rows(&mixed.last_hidden_state), &single.last_hidden_state);
        assert!(
            d < 1e-5,
            "rows {start}..{}: hidden states differ by {d}",
            start + len
        );
        let d = max_diff(
            &rows(mixed.pooler_output.as_ref().unwrap()),
            single.pooler_output.as_ref().unwrap(),
        );
        assert!(d < 1e-5, "pooled outputs differ by {d}");
    }
    // The tasks really differ from each other and from the bare backbone.
    let bare = backbone.forward(&ids, &types, &mask, None, &ctx).unwrap();
    let d = max_diff(&bare.last_hidden_state, &mixed.last_hidden_state);
    assert!(d > 1e-3, "adapters changed nothing ({d})");
    let bad = Route::Rows(vec![(0, 2, &a), (3, 1, &b)]);
    let e = backbone
        .forward_routed(&ids, &types, &mask, &bad, &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("in order"), "{e}");
}

#[test]
fn tasks_share_the_backbone_and_own_few_bytes() {
    let (backbone, config) = tiny();
    let tasks: Vec<(TaskLayout, TaskParams)> = (0..3)
        .map(|s| task(&backbone, "houlsby:4", Sharing::Shared, s))
        .collect();
    let ids = Tensor::new(&[[2i64, 10, 3]], &Device::Cpu).unwrap();
    let types = ids.zeros_like().unwrap();
    let mask = ids.ones_like().unwrap();
    // Switching task leaves every backbone tensor untouched: same storage, same values.
    let q = &backbone.encoder.albert_layer_groups[0].albert_layers[0]
        .attention
        .query
        .weight;
    let id_before = q.id();
    let before: Vec<f32> = q.flatten_all().unwrap().to_vec1().unwrap();
    for (_, t) in &tasks {
        backbone
            .forward(&ids, &types, &mask, Some(t), &Ctx::eval())
            .unwrap();
    }
    assert_eq!(q.id(), id_before);
    assert_eq!(before, q.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    // A task holds none of the backbone's matrices: its parameter count is the layout's.
    let backbone_params = config.shape.param_counts().total();
    for (layout, _) in &tasks {
        let n = layout.param_count(&config);
        assert!(
            n * 4 < backbone_params,
            "task owns {n} of {backbone_params} parameters"
        );
    }
}
