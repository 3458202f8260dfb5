//! Training on adalbert's fused ops (`adalbert_model::train_ops`) follows the same trajectory
//! as training on candle's composed ops: a few AdamW steps on the tiny ALBERT, with dropout,
//! padding and every adapter placement, give the same losses.

use std::collections::HashMap;

use adalbert_model::checkpoint::Checkpoint;
use adalbert_model::{
    AdapterSpec, Backbone, Ctx, EncoderConfig, Isa, Pooling, Sharing, TaskLayout, TaskModel,
    TaskParams, TrainKernels,
};
use adalbert_train::optim::AdamW;
use candle_core::{DType, Device, Tensor, Var};

/// The tiny ALBERT (E 16, H 32, 4 heads, one shared layer applied 4 times), with its
/// `hidden_act` replaced by `act`.
fn tiny_model(act: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    adalbert_model::testing::write_tiny_albert(dir.path(), &["good", "bad"]).unwrap();
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "\"hidden_act\": \"gelu_new\"",
        &format!("\"hidden_act\": \"{act}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    dir
}

/// Losses of `steps` AdamW steps (dropout 0.1) with the given training kernels.
fn losses(
    dir: &std::path::Path,
    adapter: Option<&str>,
    full: bool,
    kernels: Option<TrainKernels>,
    steps: u64,
) -> Vec<f32> {
    let config = EncoderConfig::from_path(dir).unwrap();
    let ck = Checkpoint::open(dir).unwrap();
    let mut vars = Vec::new();
    let backbone = if full {
        let mut trainable = HashMap::new();
        let mut names: Vec<&String> = ck.tensors().keys().collect();
        names.sort();
        for name in names {
            let t = &ck.tensors()[name];
            if t.dtype() != DType::F32 {
                continue;
            }
            let var = Var::from_tensor(&t.copy().unwrap()).unwrap();
            trainable.insert(name.clone(), var.as_tensor().clone());
            vars.push((format!("backbone.{name}"), var));
        }
        Backbone::load(
            &Checkpoint::from_tensors(trainable, ck.path().to_path_buf()),
            &config,
        )
        .unwrap()
    } else {
        Backbone::load(&ck, &config).unwrap()
    };
    let layout = TaskLayout {
        adapter: adapter.map(|a| AdapterSpec::parse(a).unwrap()),
        sharing: Sharing::PerApplication,
        layer_norms: adapter.is_some(),
        pooler: false,
        num_labels: 3,
        pooling: Pooling::Mean,
    };
    let mut init = layout.init_tensors(&backbone, 5).unwrap();
    // Non-zero up-projections, so the adapters take part from the first step.
    for (name, t) in init.iter_mut() {
        if name.ends_with("up.weight") || name.ends_with(".b") {
            let v: Vec<f32> = (0..t.elem_count())
                .map(|i| ((i * 7919) % 101) as f32 / 1010.0 - 0.05)
                .collect();
            *t = Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap();
        }
    }
    let mut names: Vec<&String> = init.keys().collect();
    names.sort();
    let mut tensors = HashMap::new();
    for name in names {
        let var = Var::from_tensor(&init[name]).unwrap();
        tensors.insert(name.clone(), var.as_tensor().clone());
        vars.push((name.clone(), var));
    }
    let task = TaskParams::from_tensors(&config, &layout, &tensors).unwrap();
    let mut opt = AdamW::new(vars, 0.01).unwrap();
    let model = TaskModel {
        backbone: &backbone,
        task: &task,
        layout: &layout,
    };
    let (b, s) = (3usize, 11usize);
    let ids: Vec<u32> = (0..b * s).map(|i| (i * 37 % 97 + 1) as u32).collect();
    let ids = Tensor::from_vec(ids, (b, s), &Device::Cpu).unwrap();
    let types = ids.zeros_like().unwrap();
    // The second sequence has 4 padding tokens.
    let mask: Vec<u32> = (0..b * s)
        .map(|i| u32::from(!(i / s == 1 && i % s >= s - 4)))
        .collect();
    let mask = Tensor::from_vec(mask, (b, s), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(vec![0u32, 2, 1], b, &Device::Cpu).unwrap();
    (0..steps)
        .map(|step| {
            let ctx = Ctx::train(0.1, 100 + step).with_train_kernels(kernels);
            let logits = model.logits_from_ids(&ids, &types, &mask, &ctx).unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 1e-2, 1.0).unwrap();
            loss.to_scalar::<f32>().unwrap()
        })
        .collect()
}

fn assert_same_losses(act: &str, adapter: Option<&str>, full: bool) {
    let dir = tiny_model(act);
    let want = losses(dir.path(), adapter, full, None, 4);
    for isa in [Isa::Portable, Isa::Avx512] {
        if !isa.available() {
            continue;
        }
        let got = losses(dir.path(), adapter, full, Some(TrainKernels::all(isa)), 4);
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4,
                "{act} {adapter:?} full={full} {isa:?} step {step}: fused {g} vs candle {w}"
            );
        }
    }
    // The steps really train (the comparison is not between two constant sequences).
    assert!(want.windows(2).any(|w| w[0] != w[1]), "losses {want:?}");
}

#[test]
fn fused_ops_train_like_candle_ops_houlsby_gelu_new() {
    assert_same_losses("gelu_new", Some("houlsby:8"), false);
}

#[test]
fn fused_ops_train_like_candle_ops_pfeiffer_gelu_erf() {
    assert_same_losses("gelu", Some("pfeiffer:8,act=gelu"), false);
}

#[test]
fn fused_ops_train_like_candle_ops_parallel_and_lora() {
    assert_same_losses("gelu_new", Some("parallel:8"), false);
    assert_same_losses("gelu", Some("lora:r=4"), false);
}

#[test]
fn fused_ops_train_like_candle_ops_head_and_full() {
    assert_same_losses("gelu_new", None, false);
    assert_same_losses("gelu", None, true);
}
