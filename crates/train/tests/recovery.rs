//! Recovery training: re-training a bundle's adapters on compressed backbone weights held in
//! memory (`train_from` with `Start`), on the tiny albert_shared fixture.

use adalbert_model::checkpoint::sha256_file;
use adalbert_model::compression::compress_checkpoint;
use adalbert_model::{AdapterSpec, BackboneId, Checkpoint, Pooling, Sharing, TaskBundle};
use adalbert_tasks::{task_spec, Example, Label};
use adalbert_train::{
    train, train_from, Mode, Start, StartBackbone, TrainConfig, TrainError, TrainJob,
};

const WORDS: [&str; 8] = [
    "good", "great", "bad", "awful", "the", "movie", "was", "plot",
];

fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    adalbert_model::testing::write_tiny_albert(dir.path(), &WORDS).unwrap();
    dir
}

fn examples(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let positive = i % 2 == 0;
            let key = WORDS[(i / 2) % 2 + if positive { 0 } else { 2 }];
            Example {
                id: i.to_string(),
                text_a: format!("the {} {key} was plot", WORDS[4 + i % 4]),
                text_b: None,
                label: Label::Class(positive as usize),
            }
        })
        .collect()
}

#[test]
fn recovery_trains_on_in_memory_weights_and_records_their_identity() {
    let model = tiny_model();
    let spec = task_spec("sst2").unwrap();
    let (tr, dev) = (examples(64), examples(32));
    let out = tempfile::tempdir().unwrap();
    let job = |out_file: &str, epochs: usize| TrainJob {
        model_dir: model.path(),
        task: &spec,
        train: &tr,
        dev: &dev,
        mode: Mode::Adapter {
            spec: AdapterSpec::parse("houlsby:4").unwrap(),
            sharing: Sharing::PerApplication,
        },
        pooling: Pooling::Mean,
        train_pooler: false,
        train_layer_norms: true,
        config: TrainConfig {
            epochs,
            lr: 3e-2,
            batch_size: 16,
            max_len: 16,
            seed: 3,
            ..Default::default()
        },
        out: out.path().join(out_file),
        resume: false,
        progress: false,
        stop_after_epochs: None,
        model_name: None,
    };
    let base = train(job("base.safetensors", 2)).unwrap();
    let bundle = TaskBundle::load(&base.bundle).unwrap();
    let ck = Checkpoint::open(model.path()).unwrap();
    let file_sha = sha256_file(ck.path()).unwrap();
    let content = BackboneId::of_checkpoint(&ck, model.path()).unwrap();
    // Bundles record the backbone by content, not by file.
    assert_eq!(base.meta.backbone_sha256, content.sha256);
    assert_ne!(base.meta.backbone_sha256, file_sha);
    bundle.check_backbone(&content).unwrap();

    let plan = "int4+prune=0.5".parse().unwrap();
    let c = compress_checkpoint(&ck, &plan, &adalbert_compress::FaultSpec::None, 0).unwrap();
    let start = || Start {
        backbone: Some(StartBackbone {
            checkpoint: &c.checkpoint,
            sha256: c.sha256.clone(),
            note: serde_json::json!({"plan": plan.to_string()}),
        }),
        init: Some(&bundle.tensors),
    };
    let rec = train_from(job("rec.safetensors", 1), start()).unwrap();
    assert_eq!(rec.meta.backbone_sha256, c.sha256);
    assert_ne!(rec.meta.backbone_sha256, file_sha);
    assert_eq!(
        rec.meta.training["backbone"]["plan"],
        "int4:per-tensor:sym+prune=0.5:per-tensor"
    );
    let recovered = TaskBundle::load(&rec.bundle).unwrap();
    assert!(recovered.check_backbone(&content).is_err());
    assert!(recovered
        .check_backbone(&BackboneId::of_weights(c.sha256.clone()))
        .is_ok());
    // Warm start: the run began from the bundle's tensors, not a fresh init, so the adapters
    // stay close to the bundle's (a fresh init of up-projections is all zeros).
    let name = "task.layers.0.attention_adapter.up.weight";
    let (a, b) = (&bundle.tensors[name], &recovered.tensors[name]);
    let sq = |t: &candle_core::Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>();
    let rel = sq(&(a - b).unwrap()).unwrap() / sq(a).unwrap();
    eprintln!("relative change of {name}: {rel}");
    assert!(rel < 0.5, "relative change {rel}");

    // A warm start must match the layout exactly.
    let mut wrong = bundle.tensors.clone();
    wrong.insert("task.extra".into(), wrong["classifier.weight"].clone());
    let e = train_from(
        job("bad.safetensors", 1),
        Start {
            backbone: None,
            init: Some(&wrong),
        },
    )
    .err()
    .unwrap();
    assert!(
        matches!(&e, TrainError::Config { field: "init", reason } if reason.contains("task.extra")),
        "{e}"
    );
}
