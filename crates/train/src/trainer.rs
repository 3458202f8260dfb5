//! The training loop: one task, one mode (adapter, head-only or full fine-tuning).
//!
//! Each epoch is reproducible from `(seed, epoch)` alone: the example order and the dropout
//! masks are drawn from generators seeded by both. After every epoch the full run state
//! (weights, AdamW moments, best checkpoint, history) is written atomically next to the
//! output, so `resume` continues an interrupted run from its last finished epoch and ends
//! with exactly the bundle an uninterrupted run would have written.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use adalbert_core::rng::{permutation, salted};
use adalbert_model::bundle::{
    describe_backbone, load_tensors, save_tensors, BackboneId, BUNDLE_FORMAT,
};
use adalbert_model::checkpoint::sha256_file;
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{
    AdapterSpec, Backbone, BundleMeta, Checkpoint, Ctx, EncoderConfig, Pooling, Sharing,
    TaskBundle, TaskLayout, TaskModel, TaskParams, TrainMode,
};
use adalbert_tasks::{metric_value, Example, TaskKind, TaskSpec};
use candle_core::{DType, Tensor, Var};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::TrainConfig;
use crate::data::{check_examples, label_tensor, text_inputs};
use crate::error::{Result, TrainError};
use crate::eval::evaluate_model;
use crate::optim::{clip_scale, linear_schedule, AdamW};

/// What to train.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Adapter { spec: AdapterSpec, sharing: Sharing },
    Head,
    Full,
}

impl Mode {
    pub fn train_mode(&self) -> TrainMode {
        match self {
            Mode::Adapter { .. } => TrainMode::Adapter,
            Mode::Head => TrainMode::Head,
            Mode::Full => TrainMode::Full,
        }
    }
}

/// One training job.
pub struct TrainJob<'a> {
    pub model_dir: &'a Path,
    pub task: &'a TaskSpec,
    pub train: &'a [Example],
    pub dev: &'a [Example],
    pub mode: Mode,
    pub pooling: Pooling,
    /// Give the task its own trainable pooler copy (adapter and head modes).
    pub train_pooler: bool,
    /// Give an adapter task its own trainable copy of every LayerNorm (the adapter-ALBERT
    /// recipe, and the default). Off, the backbone's LayerNorms stay frozen and shared, as
    /// AdapterHub's bottleneck adapters assume (so such a bundle can be exported there).
    pub train_layer_norms: bool,
    pub config: TrainConfig,
    /// Where the bundle goes.
    pub out: PathBuf,
    /// Continue from the run state next to `out` if there is one.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many epochs of this invocation, keeping the run state as an
    /// interrupted run would (time-boxed runs; tests of `resume`).
    pub stop_after_epochs: Option<usize>,
    /// The backbone's name recorded in the bundle, in place of the one its directory gives
    /// (`adalbert_model::bundle::describe_backbone`).
    pub model_name: Option<String>,
}

/// Per-epoch record, kept in the bundle's training metadata.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub dev: BTreeMap<String, f64>,
    pub seconds: f64,
}

/// What a finished run produced.
pub struct TrainOutcome {
    pub bundle: PathBuf,
    pub meta: BundleMeta,
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
    pub examples_per_second: f64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RunState {
    fingerprint: String,
    epochs_done: usize,
    step: usize,
    best_epoch: Option<usize>,
    best_metric: Option<f64>,
    history: Vec<EpochRecord>,
    train_seconds: f64,
    examples_seen: usize,
}

/// Trainable tensors and the model built over them.
struct Setup {
    backbone: Backbone,
    task: TaskParams,
    layout: TaskLayout,
    vars: Vec<(String, Var)>,
}

pub fn run_state_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    out.with_file_name(format!("{name}.run-state.safetensors"))
}

/// What replaces the weights [`train`] reads from `job.model_dir`, and the task tensors it
/// starts from: recovery training on a compressed backbone. `Start::default()` changes nothing.
#[derive(Default)]
pub struct Start<'a> {
    /// Backbone weights used instead of the checkpoint file in `model_dir` (whose config and
    /// tokenizer are still used).
    pub backbone: Option<StartBackbone<'a>>,
    /// Task tensors to start from (e.g. an existing bundle's) instead of fresh initial values;
    /// must hold exactly the tensors of the job's layout, with their shapes.
    pub init: Option<&'a HashMap<String, Tensor>>,
}

/// In-memory backbone weights for [`Start`].
pub struct StartBackbone<'a> {
    pub checkpoint: &'a Checkpoint,
    /// Recorded as the bundle's `backbone_sha256` (and in the run-state fingerprint) in place of
    /// the checkpoint's content hash; for compressed weights,
    /// `adalbert_model::compression::weights_sha256` of the decoded tensors.
    pub sha256: String,
    /// Recorded in the bundle's training metadata under `backbone` (e.g. plan, faults, seed).
    pub note: serde_json::Value,
}

pub fn train(job: TrainJob) -> Result<TrainOutcome> {
    train_from(job, Start::default())
}

/// [`train`] with the backbone weights and/or the initial task tensors replaced.
pub fn train_from(job: TrainJob, start: Start) -> Result<TrainOutcome> {
    job.config.validate()?;
    check_output(&job)?;
    let config = EncoderConfig::from_path(job.model_dir)?;
    let positions = config.shape.max_position_embeddings;
    if job.config.max_len > positions {
        return Err(TrainError::Config {
            field: "max_len",
            reason: format!(
                "{} is more than the model's {positions} positions (max_position_embeddings in {})",
                job.config.max_len,
                job.model_dir.join("config.json").display()
            ),
        });
    }
    check_examples(job.task, job.train, "training")?;
    check_examples(job.task, job.dev, "dev")?;
    let cfg = &job.config;
    let train_set = subset(job.train, cfg.max_train_examples, cfg.seed);
    let dev_set: Vec<Example> = job
        .dev
        .iter()
        .take(cfg.max_eval_examples.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let opened;
    // The bundle records the backbone by content; the run-state fingerprint keeps the weights
    // file's sha256 it always had, so runs interrupted before bundles changed still resume.
    let (ck, backbone, run_sha) = match &start.backbone {
        Some(b) => {
            let mut id = BackboneId::of_weights(b.sha256.clone());
            (id.model_name, id.revision) = describe_backbone(job.model_dir);
            (b.checkpoint, id, b.sha256.clone())
        }
        None => {
            opened = Checkpoint::open(job.model_dir)?;
            let id = BackboneId::of_checkpoint(&opened, job.model_dir)?;
            let file_sha = sha256_file(opened.path())?;
            (&opened, id, file_sha)
        }
    };
    let tokenizer = Tokenizer::from_dir(job.model_dir, cfg.max_len)?;
    let setup = build(&job, &config, ck, start.init)?;
    let fingerprint = fingerprint(&job, &setup.layout, &run_sha, train_set.len());
    let mut opt = AdamW::new(setup.vars.clone(), cfg.weight_decay)?;
    let state_path = run_state_path(&job.out);
    let mut state = RunState {
        fingerprint: fingerprint.clone(),
        epochs_done: 0,
        step: 0,
        best_epoch: None,
        best_metric: None,
        history: vec![],
        train_seconds: 0.0,
        examples_seen: 0,
    };
    let mut best: HashMap<String, Tensor> = HashMap::new();
    if job.resume && state_path.is_file() {
        state = restore(&state_path, &fingerprint, &mut opt, &mut best)?;
    }
    let model = TaskModel {
        backbone: &setup.backbone,
        task: &setup.task,
        layout: &setup.layout,
    };
    let steps_per_epoch = train_set.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let warmup = (total_steps as f64 * cfg.warmup_ratio).round() as usize;
    let bar = progress_bar(job.progress, total_steps as u64, state.step as u64);
    let primary = job.task.primary;
    let first_epoch = state.epochs_done;
    for epoch in state.epochs_done..cfg.epochs {
        if job
            .stop_after_epochs
            .is_some_and(|n| epoch - first_epoch >= n)
        {
            bar.finish_and_clear();
            return Err(TrainError::Interrupted {
                epochs_done: epoch,
                state: state_path.display().to_string(),
            });
        }
        let t0 = Instant::now();
        let order = permutation(train_set.len(), salted(cfg.seed, epoch as u64));
        let ctx = Ctx::train(cfg.dropout as f32, salted(cfg.seed ^ 0xD0D0, epoch as u64));
        let mut loss_sum = 0.0;
        for chunk in order.chunks(cfg.batch_size) {
            let batch_examples: Vec<&Example> = chunk.iter().map(|&i| &train_set[i]).collect();
            let loss = step_loss(&model, &tokenizer, job.task, &batch_examples, &ctx)?;
            let grads = loss.backward()?;
            let scale = clip_scale(opt.grad_norm(&grads)?, cfg.max_grad_norm);
            let lr = linear_schedule(opt.step, warmup, total_steps, cfg.lr);
            opt.step(&grads, lr, scale)?;
            let l = loss.to_scalar::<f32>()? as f64;
            loss_sum += l * chunk.len() as f64;
            state.examples_seen += chunk.len();
            bar.inc(1);
            bar.set_message(format!(
                "epoch {}/{} loss {l:.4}{}",
                epoch + 1,
                cfg.epochs,
                last_dev(&state.history, primary.name())
            ));
        }
        state.train_seconds += t0.elapsed().as_secs_f64();
        let dev = evaluate_model(&model, &tokenizer, job.task, &dev_set, 64)?;
        let dev: BTreeMap<String, f64> = dev.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let value = metric_value(
            &dev.iter().map(|(k, v)| (leak(k), *v)).collect::<Vec<_>>(),
            primary,
        );
        if let Some(v) = value.filter(|v| !v.is_nan()) {
            if state.best_metric.is_none_or(|b| v > b) {
                state.best_metric = Some(v);
                state.best_epoch = Some(epoch);
                best = snapshot(&opt)?;
            }
        }
        state.history.push(EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / train_set.len() as f64,
            dev,
            seconds: t0.elapsed().as_secs_f64(),
        });
        state.epochs_done = epoch + 1;
        state.step = opt.step;
        bar.set_message(format!(
            "epoch {}/{} done{}",
            epoch + 1,
            cfg.epochs,
            last_dev(&state.history, primary.name())
        ));
        save_state(&state_path, &state, &opt, &best)?;
        if let (Some(p), Some(b)) = (cfg.patience, state.best_epoch) {
            if epoch - b >= p {
                break;
            }
        }
    }
    bar.finish_and_clear();
    if best.is_empty() {
        best = snapshot(&opt)?;
    }
    let note = start.backbone.as_ref().map(|b| &b.note);
    let outcome = write_bundle(
        &job,
        &setup,
        &state,
        best,
        (&backbone, note),
        train_set.len(),
    )?;
    std::fs::remove_file(&state_path).ok();
    Ok(outcome)
}

fn step_loss(
    model: &TaskModel,
    tokenizer: &Tokenizer,
    spec: &TaskSpec,
    examples: &[&Example],
    ctx: &Ctx,
) -> Result<Tensor> {
    let batch = tokenizer.encode(&text_inputs(examples))?;
    let logits = model.logits(&batch, ctx)?;
    let labels = label_tensor(spec, examples)?;
    Ok(match spec.kind {
        TaskKind::Classification { .. } => candle_nn::loss::cross_entropy(&logits, &labels)?,
        TaskKind::Regression => candle_nn::loss::mse(&logits.squeeze(1)?, &labels)?,
    })
}

fn build(
    job: &TrainJob,
    config: &EncoderConfig,
    ck: &Checkpoint,
    warm: Option<&HashMap<String, Tensor>>,
) -> Result<Setup> {
    let num_labels = job.task.num_outputs();
    let (adapter, sharing, layer_norms, pooler) = match &job.mode {
        Mode::Adapter { spec, sharing } => (
            Some(*spec),
            *sharing,
            job.train_layer_norms,
            job.train_pooler,
        ),
        Mode::Head => (None, Sharing::PerApplication, false, job.train_pooler),
        Mode::Full => (None, Sharing::PerApplication, false, false),
    };
    let layout = TaskLayout {
        adapter,
        sharing,
        layer_norms,
        pooler,
        num_labels,
        pooling: job.pooling,
    };
    let mut vars = Vec::new();
    let backbone = if job.mode == Mode::Full {
        // Every backbone weight becomes a variable; the checkpoint view shares their storage.
        let mut trainable = HashMap::new();
        let mut names: Vec<&String> = ck.tensors().keys().collect();
        names.sort();
        for name in names {
            let t = &ck.tensors()[name];
            if t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16 {
                continue;
            }
            let var = Var::from_tensor(&t.to_dtype(DType::F32)?.copy()?)?;
            trainable.insert(name.clone(), var.as_tensor().clone());
            vars.push((format!("backbone.{name}"), var));
        }
        Backbone::load(
            &Checkpoint::from_tensors(trainable, ck.path().to_path_buf()),
            config,
        )?
    } else {
        Backbone::load(ck, config)?
    };
    let mut init = layout.init_tensors(&backbone, job.config.seed)?;
    if let Some(warm) = warm {
        warm_start(&mut init, warm)?;
    }
    let mut names: Vec<&String> = init.keys().collect();
    names.sort();
    let mut task_tensors = HashMap::new();
    for name in names {
        let var = Var::from_tensor(&init[name])?;
        task_tensors.insert(name.clone(), var.as_tensor().clone());
        vars.push((name.clone(), var));
    }
    let task = TaskParams::from_tensors(config, &layout, &task_tensors)?;
    Ok(Setup {
        backbone,
        task,
        layout,
        vars,
    })
}

/// Replaces every initial task tensor by the one of the same name in `warm`, which must hold
/// exactly those names with the same shapes.
fn warm_start(init: &mut HashMap<String, Tensor>, warm: &HashMap<String, Tensor>) -> Result<()> {
    let bad = |reason: String| TrainError::Config {
        field: "init",
        reason,
    };
    if let Some(extra) = warm.keys().find(|k| !init.contains_key(*k)) {
        return Err(bad(format!(
            "tensor `{extra}` is not part of this task layout"
        )));
    }
    for (name, t) in init.iter_mut() {
        let w = warm
            .get(name)
            .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
        if w.dims() != t.dims() {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, the layout needs {:?}",
                w.dims(),
                t.dims()
            )));
        }
        *t = w.to_dtype(DType::F32)?.copy()?;
    }
    Ok(())
}

fn subset(examples: &[Example], limit: Option<usize>, seed: u64) -> Vec<Example> {
    match limit {
        Some(n) if n < examples.len() => permutation(examples.len(), salted(seed, 0x5EB5E7))
            .into_iter()
            .take(n)
            .map(|i| examples[i].clone())
            .collect(),
        _ => examples.to_vec(),
    }
}

fn leak(s: &str) -> &'static str {
    match s {
        "accuracy" => "accuracy",
        "f1" => "f1",
        "matthews_correlation" => "matthews_correlation",
        "pearson" => "pearson",
        "spearmanr" => "spearmanr",
        "combined_score" => "combined_score",
        _ => "other",
    }
}

fn last_dev(history: &[EpochRecord], metric: &str) -> String {
    history
        .last()
        .and_then(|h| h.dev.get(metric))
        .map(|v| format!(" | dev {metric} {v:.4}"))
        .unwrap_or_default()
}

/// Refuses, before any work, an output the run could not write at its end or that would
/// destroy an input: a directory, a path under a file, or a file of the model directory (e.g.
/// its model.safetensors). The run state beside the output is checked the same way.
fn check_output(job: &TrainJob) -> Result<()> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(job.model_dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    if let Ok(w) = adalbert_model::checkpoint::weights_file(job.model_dir) {
        inputs.push(w);
    }
    adalbert_core::files::check_output(&job.out, &inputs)
        .map_err(adalbert_model::ModelError::from)?;
    adalbert_core::files::check_output(&run_state_path(&job.out), &inputs)
        .map_err(adalbert_model::ModelError::from)?;
    // A run killed while writing its run state or bundle may have left a temporary.
    if let Some(dir) = job.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        adalbert_core::files::remove_stale_temporaries(dir);
    }
    Ok(())
}

fn progress_bar(show: bool, total: u64, pos: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(pos);
    bar
}

fn snapshot(opt: &AdamW) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, var) in &opt.vars {
        out.insert(name.clone(), var.as_tensor().detach().copy()?);
    }
    Ok(out)
}

fn fingerprint(job: &TrainJob, layout: &TaskLayout, sha: &str, n_train: usize) -> String {
    let v = serde_json::json!({
        "task": job.task.name, "mode": job.mode.train_mode().as_str(), "layout": layout,
        "config": job.config, "backbone": sha, "n_train": n_train, "n_dev": job.dev.len(),
    });
    v.to_string()
}

/// Writes a run state (atomically, as every bundle): the optimizer's moments, each trained
/// parameter as `param.*`, the best checkpoint so far as `best.*`, and `state` as JSON.
/// Training and distillation both resume from it.
pub(crate) fn save_state<S: serde::Serialize>(
    path: &Path,
    state: &S,
    opt: &AdamW,
    best: &HashMap<String, Tensor>,
) -> Result<()> {
    let mut tensors = opt.state();
    for (name, var) in &opt.vars {
        tensors.insert(format!("param.{name}"), var.as_tensor().clone());
    }
    for (name, t) in best {
        tensors.insert(format!("best.{name}"), t.clone());
    }
    let json = serde_json::to_string(state).map_err(|e| TrainError::Data(e.to_string()))?;
    save_tensors(
        path,
        &tensors,
        HashMap::from([("run_state".to_string(), json)]),
    )?;
    Ok(())
}

fn restore(
    path: &Path,
    fingerprint: &str,
    opt: &mut AdamW,
    best: &mut HashMap<String, Tensor>,
) -> Result<RunState> {
    let bad = |reason: String| TrainError::Resume {
        path: path.display().to_string(),
        reason,
    };
    let (tensors, md) = load_tensors(path).map_err(|source| TrainError::RunState {
        path: path.display().to_string(),
        source: Box::new(source),
    })?;
    let json = md
        .get("run_state")
        .ok_or_else(|| bad("no run state metadata".into()))?;
    let mut state: RunState =
        serde_json::from_str(json).map_err(|e| bad(format!("malformed run state: {e}")))?;
    // A run state of an earlier version may name metrics by their old names.
    for record in &mut state.history {
        record.dev = adalbert_core::metric::current_names(std::mem::take(&mut record.dev));
    }
    if state.fingerprint != fingerprint {
        return Err(bad(
            "it was written by a run with other settings (task, mode, data or hyper-parameters); delete it or run without --resume".into(),
        ));
    }
    for (name, var) in &opt.vars {
        let t = tensors
            .get(&format!("param.{name}"))
            .ok_or_else(|| bad(format!("missing tensor param.{name}")))?;
        var.set(t)?;
        if let Some(b) = tensors.get(&format!("best.{name}")) {
            best.insert(name.clone(), b.clone());
        }
    }
    opt.restore(&tensors, state.step)?;
    Ok(state)
}

fn write_bundle(
    job: &TrainJob,
    setup: &Setup,
    state: &RunState,
    best: HashMap<String, Tensor>,
    (backbone, backbone_note): (&BackboneId, Option<&serde_json::Value>),
    n_train: usize,
) -> Result<TrainOutcome> {
    let trainable_params = setup
        .vars
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();
    let best_record = state
        .best_epoch
        .and_then(|e| state.history.get(e))
        .or(state.history.last());
    let metrics = best_record.map(|r| r.dev.clone()).unwrap_or_default();
    let examples_per_second = state.examples_seen as f64 / state.train_seconds.max(1e-9);
    let mut training = serde_json::json!({
        "config": job.config, "train_examples": n_train, "dev_examples": job.dev.len().min(job.config.max_eval_examples.unwrap_or(usize::MAX)),
        "best_epoch": state.best_epoch.map(|e| e + 1), "history": state.history,
        "train_seconds": state.train_seconds, "examples_per_second": examples_per_second,
    });
    if let Some(note) = backbone_note {
        training["backbone"] = note.clone();
    }
    let meta = BundleMeta {
        format: BUNDLE_FORMAT,
        task: job.task.name.clone(),
        labels: job.task.labels().to_vec(),
        mode: job.mode.train_mode(),
        layout: setup.layout.clone(),
        metrics,
        training,
        seed: job.config.seed,
        backbone_sha256: backbone.sha256.clone(),
        model_name: job.model_name.clone().or(backbone.model_name.clone()),
        revision: backbone.revision.clone(),
        trainable_params,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    TaskBundle::save(&meta, &best, &job.out)?;
    Ok(TrainOutcome {
        bundle: job.out.clone(),
        meta,
        history: state.history.clone(),
        train_seconds: state.train_seconds,
        examples_per_second,
    })
}
