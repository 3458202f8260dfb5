//! Training on a tiny random ALBERT (one shared layer applied 4 times, E != H): the loss
//! falls, runs are reproducible from the seed, resume matches an uninterrupted run, and the
//! adapter gradients agree with finite differences.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{
    AdapterSpec, Backbone, Ctx, EncoderConfig, Pooling, Sharing, TaskBundle, TaskLayout, TaskModel,
    TaskParams,
};
use adalbert_tasks::{task_spec, Example, Label};
use adalbert_train::{train, Mode, TrainConfig, TrainError, TrainJob};
use candle_core::{Tensor, Var};

const WORDS: [&str; 12] = [
    "good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "movie", "was", "plot",
];

/// The albert_shared parity fixture plus a WordPiece vocabulary of its 99 ids.
fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    adalbert_model::testing::write_tiny_albert(dir.path(), &WORDS).unwrap();
    dir
}

/// Sentences whose label is whether a positive word occurs.
fn examples(n: usize, seed: u64) -> Vec<Example> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    (0..n)
        .map(|i| {
            let positive = next() % 2 == 1;
            let key = if positive {
                WORDS[next() % 4]
            } else {
                WORDS[4 + next() % 4]
            };
            let filler: Vec<&str> = (0..3).map(|_| WORDS[8 + next() % 4]).collect();
            let pos = next() % 4;
            let mut words = filler.clone();
            words.insert(pos.min(words.len()), key);
            Example {
                id: i.to_string(),
                text_a: words.join(" "),
                text_b: None,
                label: Label::Class(positive as usize),
            }
        })
        .collect()
}

fn job<'a>(
    model: &'a Path,
    train_set: &'a [Example],
    dev: &'a [Example],
    out: PathBuf,
    spec: &'a adalbert_tasks::TaskSpec,
) -> TrainJob<'a> {
    TrainJob {
        model_dir: model,
        task: spec,
        train: train_set,
        dev,
        mode: Mode::Adapter {
            spec: AdapterSpec::parse("houlsby:8").unwrap(),
            sharing: Sharing::PerApplication,
        },
        pooling: Pooling::Mean,
        train_pooler: false,
        train_layer_norms: true,
        config: TrainConfig {
            epochs: 8,
            lr: 3e-2,
            batch_size: 16,
            max_len: 16,
            dropout: 0.1,
            seed: 5,
            ..Default::default()
        },
        out,
        resume: false,
        progress: false,
        stop_after_epochs: None,
        model_name: None,
    }
}

#[test]
fn adapter_training_lowers_loss_and_is_reproducible_and_resumable() {
    let model = tiny_model();
    let spec = task_spec("sst2").unwrap();
    let (tr, dev) = (examples(128, 1), examples(64, 2));
    let out_dir = tempfile::tempdir().unwrap();
    let a = train(job(
        model.path(),
        &tr,
        &dev,
        out_dir.path().join("a.safetensors"),
        &spec,
    ))
    .unwrap();
    let first = a.history.first().unwrap().train_loss;
    let last = a.history.last().unwrap().train_loss;
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
    assert!(
        a.meta.metrics["accuracy"] > 0.7,
        "dev accuracy {:?}",
        a.meta.metrics
    );

    // Same seed, same bundle.
    let b = train(job(
        model.path(),
        &tr,
        &dev,
        out_dir.path().join("b.safetensors"),
        &spec,
    ))
    .unwrap();
    let (ta, tb) = (
        TaskBundle::load(&a.bundle).unwrap(),
        TaskBundle::load(&b.bundle).unwrap(),
    );
    for (name, t) in &ta.tensors {
        let d: f32 = (t - &tb.tensors[name])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{name} differs between identical runs");
    }

    // Interrupted after 2 epochs, then resumed: the same bundle as the uninterrupted run.
    let c_path = out_dir.path().join("c.safetensors");
    let mut interrupted = job(model.path(), &tr, &dev, c_path.clone(), &spec);
    interrupted.stop_after_epochs = Some(2);
    assert!(matches!(
        train(interrupted),
        Err(TrainError::Interrupted { epochs_done: 2, .. })
    ));
    let mut resumed = job(model.path(), &tr, &dev, c_path, &spec);
    resumed.resume = true;
    let c = train(resumed).unwrap();
    let tc = TaskBundle::load(&c.bundle).unwrap();
    for (name, t) in &ta.tensors {
        let d: f32 = (t - &tc.tensors[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-6, "{name} differs after resume by {d}");
    }
    assert_eq!(c.history.len(), 8);
}

#[test]
fn bad_labels_and_empty_data_are_errors() {
    let model = tiny_model();
    let spec = task_spec("sst2").unwrap();
    let mut tr = examples(8, 1);
    tr[3].label = Label::Class(7);
    let dev = examples(8, 2);
    let out = tempfile::tempdir().unwrap();
    let e = train(job(model.path(), &tr, &dev, out.path().join("x"), &spec))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("outside the task's label set"), "{e}");
    let e = train(job(model.path(), &[], &dev, out.path().join("x"), &spec))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("empty"), "{e}");
}

/// d loss / d theta from autograd vs central differences, for adapter weights.
#[test]
fn adapter_gradients_match_finite_differences() {
    let model = tiny_model();
    let config = EncoderConfig::from_path(model.path()).unwrap();
    let (backbone, _) = Backbone::from_dir(model.path()).unwrap();
    let layout = TaskLayout {
        adapter: Some(AdapterSpec::parse("houlsby:4,act=gelu").unwrap()),
        sharing: Sharing::Shared,
        layer_norms: true,
        pooler: false,
        num_labels: 2,
        pooling: Pooling::Mean,
    };
    let mut init = layout.init_tensors(&backbone, 3).unwrap();
    // Non-zero up-projections so every adapter weight has a gradient.
    // Seeded and in name order, so every run starts from the same weights.
    let mut rng = adalbert_core::rng::Normal::new(3);
    let mut names: Vec<String> = init.keys().cloned().collect();
    names.sort();
    for name in names {
        if name.contains(".up.weight") {
            let t = init.get_mut(&name).unwrap();
            let values = rng.vec_f32(t.elem_count(), 0.1);
            *t = Tensor::from_vec(values, t.dims(), t.device()).unwrap();
        }
    }
    let vars: HashMap<String, Var> = init
        .iter()
        .map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap()))
        .collect();
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let task = TaskParams::from_tensors(&config, &layout, &tensors).unwrap();
    let tok = Tokenizer::from_dir(model.path(), 16).unwrap();
    let exs = examples(4, 9);
    let batch = tok
        .encode(
            &exs.iter()
                .map(|e| adalbert_model::tokenizer::TextInput::Single(e.text_a.clone()))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let labels = Tensor::new(&[0u32, 1, 1, 0], &candle_core::Device::Cpu).unwrap();
    let tm = TaskModel {
        backbone: &backbone,
        task: &task,
        layout: &layout,
    };
    let loss = |ctx: &Ctx| -> f64 {
        let logits = tm.logits(&batch, ctx).unwrap();
        candle_nn::loss::cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let ctx = Ctx::train(0.0, 0);
    let logits = tm.logits(&batch, &ctx).unwrap();
    let grads = candle_nn::loss::cross_entropy(&logits, &labels)
        .unwrap()
        .backward()
        .unwrap();
    let mut checked = 0;
    for name in [
        "task.layers.0.attention_adapter.down.weight",
        "task.layers.0.output_adapter.up.weight",
        "task.layers.0.full_layer_layer_norm.weight",
    ] {
        let var = &vars[name];
        let g: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for idx in [0usize, 5, 17] {
            let eps = 1e-2f32;
            let mut plus = base.clone();
            plus[idx] += eps;
            var.set(
                &Tensor::from_vec(plus, var.as_tensor().dims(), &candle_core::Device::Cpu).unwrap(),
            )
            .unwrap();
            let lp = loss(&ctx);
            let mut minus = base.clone();
            minus[idx] -= eps;
            var.set(
                &Tensor::from_vec(minus, var.as_tensor().dims(), &candle_core::Device::Cpu)
                    .unwrap(),
            )
            .unwrap();
            let lm = loss(&ctx);
            var.set(
                &Tensor::from_vec(
                    base.clone(),
                    var.as_tensor().dims(),
                    &candle_core::Device::Cpu,
                )
                .unwrap(),
            )
            .unwrap();
            let fd = (lp - lm) / (2.0 * eps as f64);
            let ad = g[idx] as f64;
            assert!(
                (fd - ad).abs() <= 2e-3 + 0.05 * ad.abs(),
                "{name}[{idx}]: autograd {ad} vs finite difference {fd}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}
