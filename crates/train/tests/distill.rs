//! Distillation on a tiny BERT teacher (the committed `bert` fixture: H 32, 3 layers, gelu,
//! vocabulary 99): the written ALBERT loads back and reproduces the in-memory student, both
//! shared-layer starts are measured, `resume` ends where an uninterrupted run ends, and bad
//! settings are refused before any work, naming their flag.

use std::path::Path;

use adalbert_model::tokenizer::{TextInput, Tokenizer};
use adalbert_model::{Backbone, Checkpoint, Ctx, EncoderConfig};
use adalbert_train::distill::{
    distill, student_config, DistillConfig, DistillJob, SharedInit, Stop,
};
use adalbert_train::TrainError;
use candle_core::Tensor;

const WORDS: [&str; 12] = [
    "the", "movie", "was", "good", "bad", "plot", "a", "fine", "film", "news", "today", "is",
];

fn tiny_teacher() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model/tests/fixtures/bert"
    ));
    for f in ["config.json", "pytorch_model.bin"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    vocab.extend(WORDS.iter().map(|w| w.to_string()));
    while vocab.len() < 99 {
        vocab.push(format!("w{}", vocab.len()));
    }
    std::fs::write(dir.path().join("vocab.txt"), vocab.join("\n")).unwrap();
    dir
}

/// Seeded sentences of the tiny vocabulary.
fn sentences(n: usize, salt: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let k = i * 7 + salt * 13;
            let len = 3 + k % 6;
            (0..len)
                .map(|j| WORDS[(k + j * 5 + j * j) % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn config(steps: usize) -> DistillConfig {
    DistillConfig {
        embedding_size: 8,
        stop: Stop::Steps(steps),
        batch_size: 4,
        max_len: 16,
        lr: 1e-3,
        warmup_steps: 2,
        seed: 7,
        ..DistillConfig::default()
    }
}

fn job<'a>(
    teacher: &'a Path,
    out: &Path,
    corpus: &'a [String],
    held_out: &'a [String],
    config: DistillConfig,
) -> DistillJob<'a> {
    DistillJob {
        teacher_dir: teacher,
        out: out.to_path_buf(),
        config,
        corpus,
        corpus_source: serde_json::json!({"kind": "test"}),
        held_out,
        resume: false,
        force: false,
        progress: false,
        checkpoint_seconds: 3600.0,
        stop_after_steps: None,
    }
}

fn embed(backbone: &Backbone, tok: &Tokenizer, texts: &[String]) -> Tensor {
    let inputs: Vec<TextInput> = texts.iter().cloned().map(TextInput::Single).collect();
    let b = tok.encode(&inputs).unwrap();
    backbone
        .forward(
            &b.input_ids,
            &b.token_type_ids,
            &b.attention_mask,
            None,
            &Ctx::eval(),
        )
        .unwrap()
        .last_hidden_state
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
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
fn the_written_albert_loads_back_and_reproduces_the_student() {
    let teacher = tiny_teacher();
    let out_root = tempfile::tempdir().unwrap();
    let out = out_root.path().join("student");
    let (corpus, held) = (sentences(40, 0), sentences(8, 1));
    let outcome = distill(job(teacher.path(), &out, &corpus, &held, config(4))).unwrap();
    let r = &outcome.record;
    assert_eq!((r.steps, r.seed, r.corpus_sentences), (4, 7, 40));
    assert!(r.corpus_tokens > 40 * 5);
    // Both shared-layer starts scored, every teacher layer a candidate; the SVD error is
    // reported for E and falls as E grows.
    assert_eq!(r.init.candidates.len(), 1 + 3);
    assert!(r.init.mean.loss.total.is_finite() && r.init.best_layer.loss.total.is_finite());
    let errs = &r.init.embedding.word_table_error;
    assert!(errs.iter().any(|&(e, _)| e == 8));
    assert!(errs.windows(2).all(|w| w[0].1 >= w[1].1), "{errs:?}");
    assert!(r.init.embedding.output_error_fitted <= r.init.embedding.output_error_naive + 1e-9);
    // A true ALBERT on disk: E < H, one group applied 3 times, HF key names.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "albert");
    assert_eq!(config["embedding_size"], 8);
    assert_eq!(config["num_hidden_groups"], 1);
    assert_eq!(config["num_hidden_layers"], 3);
    assert_eq!(config["hidden_act"], "gelu");
    let ck = Checkpoint::open(&out.join("model.safetensors")).unwrap();
    for key in [
        "embeddings.word_embeddings.weight",
        "encoder.embedding_hidden_mapping_in.weight",
        "encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight",
        "encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias",
        "pooler.weight",
    ] {
        assert!(ck.tensors().contains_key(key), "{key} missing");
    }
    assert_eq!(
        ck.tensors()["embeddings.word_embeddings.weight"].dims(),
        [99, 8]
    );
    let distill_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("distill.json")).unwrap()).unwrap();
    assert_eq!(distill_json["seed"], 7);
    assert!(out.join("vocab.txt").is_file());
    // The loaded student computes what the in-memory one does.
    let (loaded, _) = Backbone::from_dir(&out).unwrap();
    let teacher_config = EncoderConfig::from_path(teacher.path()).unwrap();
    let memory = Backbone::load(
        &Checkpoint::from_tensors(outcome.tensors.clone(), out.clone()),
        &student_config(&teacher_config, &r.recipe),
    )
    .unwrap();
    let tok = Tokenizer::from_dir(&out, 16).unwrap();
    let d = max_abs_diff(&embed(&loaded, &tok, &held), &embed(&memory, &tok, &held));
    assert!(d < 1e-5, "loaded vs in-memory student differ by {d}");
    // An output directory that now holds this model is refused for another recipe.
    let mut other = self::config(4);
    other.embedding_size = 4;
    let err = distill(job(teacher.path(), &out, &corpus, &held, other)).unwrap_err();
    assert!(err.to_string().contains("--out"), "{err}");
}

#[test]
fn resume_ends_where_an_uninterrupted_run_ends() {
    let teacher = tiny_teacher();
    let root = tempfile::tempdir().unwrap();
    let (corpus, held) = (sentences(24, 2), sentences(6, 3));
    let mut cfg = config(6);
    cfg.init = SharedInit::Mean;
    cfg.dropout = 0.1;
    let whole = distill(job(
        teacher.path(),
        &root.path().join("a"),
        &corpus,
        &held,
        cfg.clone(),
    ))
    .unwrap();
    let b = root.path().join("b");
    let mut first = job(teacher.path(), &b, &corpus, &held, cfg.clone());
    first.stop_after_steps = Some(4);
    match distill(first) {
        Err(TrainError::DistillInterrupted { steps_done: 4, .. }) => {}
        other => panic!(
            "expected an interruption after 4 steps, got {:?}",
            other.err()
        ),
    }
    // Other settings may not continue this run state.
    let mut changed = cfg.clone();
    changed.lr = 2e-3;
    let mut wrong = job(teacher.path(), &b, &corpus, &held, changed);
    wrong.resume = true;
    let err = distill(wrong).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let mut rest = job(teacher.path(), &b, &corpus, &held, cfg);
    rest.resume = true;
    let resumed = distill(rest).unwrap();
    assert_eq!(resumed.record.steps, 6);
    let names: Vec<&String> = whole.tensors.keys().collect();
    assert_eq!(names.len(), resumed.tensors.len());
    for name in names {
        let d = max_abs_diff(&whole.tensors[name], &resumed.tensors[name]);
        assert!(d == 0.0, "{name} differs by {d} after resume");
    }
    assert_eq!(
        whole.record.final_loss.map(|l| l.total),
        resumed.record.final_loss.map(|l| l.total)
    );
}

#[test]
fn bad_settings_are_refused_naming_their_flag() {
    let teacher = tiny_teacher();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("s");
    let (corpus, held) = (sentences(8, 0), sentences(2, 1));
    let refuse = |j: DistillJob, flag: &str| {
        let err = distill(j).unwrap_err().to_string();
        assert!(err.contains(flag), "{flag}: {err}");
    };
    for e in [0, 32, 40] {
        let mut c = config(1);
        c.embedding_size = e;
        refuse(
            job(teacher.path(), &out, &corpus, &held, c),
            "--embedding-size",
        );
    }
    let mut c = config(1);
    c.groups = 2;
    refuse(job(teacher.path(), &out, &corpus, &held, c), "--groups");
    let empty = vec![" ".to_string()];
    refuse(
        job(teacher.path(), &out, &empty, &held, config(1)),
        "--corpus",
    );
    let not_a_model = root.path().join("nothing");
    std::fs::create_dir_all(&not_a_model).unwrap();
    refuse(
        job(&not_a_model, &out, &corpus, &held, config(1)),
        "--teacher",
    );
    // Nothing was written by a refused run.
    assert!(!out.exists());
    // The student replaces its whole directory, so a folder of other files is refused (and
    // left as it was), and so is a file.
    let busy = root.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    refuse(
        job(teacher.path(), &busy, &corpus, &held, config(1)),
        "--out",
    );
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).unwrap(),
        "mine"
    );
    refuse(
        job(
            teacher.path(),
            &busy.join("notes.txt"),
            &corpus,
            &held,
            config(1),
        ),
        "--out",
    );
}

/// The losses on the fused training ops (attention KL on the QKV projection) equal those on
/// candle's composites, are zero for a student identical to the teacher, and reach every
/// student weight (the factorized embedding and the shared layer included).
#[test]
fn losses_agree_across_paths_and_reach_every_weight() {
    use adalbert_train::distill::loss::{layer_map, losses, LossWeights};
    use candle_core::Var;
    let teacher_dir = tiny_teacher();
    let root = tempfile::tempdir().unwrap();
    let (corpus, held) = (sentences(16, 4), sentences(6, 5));
    let mut cfg = config(1);
    cfg.init_only = true;
    let init = distill(job(
        teacher_dir.path(),
        &root.path().join("s"),
        &corpus,
        &held,
        cfg,
    ))
    .unwrap();
    assert_eq!(init.record.steps, 0);
    let (teacher, _) = Backbone::from_dir(teacher_dir.path()).unwrap();
    let tok = Tokenizer::from_dir(teacher_dir.path(), 16).unwrap();
    let inputs: Vec<TextInput> = held.iter().cloned().map(TextInput::Single).collect();
    let b = tok.encode(&inputs).unwrap();
    let mask = b.attention_mask.to_dtype(candle_core::DType::F32).unwrap();
    let record = |model: &Backbone, ctx: Ctx| {
        let ctx = ctx.recording();
        model
            .forward(
                &b.input_ids,
                &b.token_type_ids,
                &b.attention_mask,
                None,
                &ctx,
            )
            .unwrap();
        (ctx.take_recorded(), ctx.train_kernels())
    };
    let (t_rec, _) = record(&teacher, Ctx::eval());
    let heads = teacher.config.shape.num_attention_heads;
    let same = losses(
        &t_rec,
        &t_rec,
        &mask,
        &layer_map(3, 3),
        heads,
        LossWeights::default(),
        None,
    )
    .unwrap()
    .values()
    .unwrap();
    assert!(same.total.abs() < 1e-5, "{same:?}");
    let config = student_config(
        &EncoderConfig::from_path(teacher_dir.path()).unwrap(),
        &init.record.recipe,
    );
    let mut totals = Vec::new();
    for fused in [true, false] {
        let vars: Vec<(String, Var)> = init
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap()))
            .collect();
        let tensors = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let student =
            Backbone::load(&Checkpoint::from_tensors(tensors, "s".into()), &config).unwrap();
        let ctx = Ctx::train(0.0, 1);
        let ctx = if fused {
            ctx
        } else {
            ctx.with_train_kernels(None)
        };
        let (s_rec, kernels) = record(&student, ctx);
        assert_eq!(
            kernels.is_some(),
            fused && Ctx::train(0.0, 1).train_kernels().is_some()
        );
        let l = losses(
            &s_rec,
            &t_rec,
            &mask,
            &layer_map(3, 3),
            heads,
            LossWeights::default(),
            kernels,
        )
        .unwrap();
        let grads = l.total.backward().unwrap();
        for (name, var) in &vars {
            if name.starts_with("pooler.") {
                continue;
            }
            let g = grads.get(var.as_tensor());
            let norm = g
                .map(|g| {
                    g.sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                })
                .unwrap_or(0.0);
            assert!(norm > 0.0, "no gradient reaches {name} (fused {fused})");
        }
        totals.push(l.values().unwrap());
    }
    let (a, c) = (totals[0], totals[1]);
    for (x, y) in [
        (a.total, c.total),
        (a.hidden, c.hidden),
        (a.attention, c.attention),
        (a.cosine, c.cosine),
    ] {
        assert!(
            (x - y).abs() < 1e-4 * (1.0 + y.abs()),
            "fused {a:?} vs candle {c:?}"
        );
    }
    assert!(a.total > 0.0);
}
