//! `adalbert train`: one task's bundle from a frozen backbone (or a full fine-tune).

use std::path::PathBuf;

use adalbert_model::{AdapterSpec, Pooling, Sharing};
use adalbert_tasks::{evaluate, load_dataset, Dataset, Label, Split};
use adalbert_train::{train, Mode, TrainConfig, TrainJob};
use anyhow::{bail, Context};

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
pub enum ModeArg {
    /// Adapters + LayerNorms + head on the frozen backbone (needs --adapter).
    Adapter,
    /// Only the classifier head.
    Head,
    /// Every weight (the fine-tuning baseline).
    Full,
}

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Backbone name recorded in the bundle (default: config.json's `_name_or_path` when it is
    /// a hub id, else the model card's `base_model`; unknown otherwise).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Task name: a GLUE task (with --data pointing at its folder) or an offline-suite task;
    /// with --train-file, the name recorded for your own data (default: the file's stem).
    #[arg(long)]
    pub task: Option<String>,
    /// GLUE task folder, or the offline suite's data folder (default assets/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Adapter spec, e.g. houlsby:64, pfeiffer:64, parallel:64, lora:r=8.
    #[arg(long)]
    pub adapter: Option<String>,
    /// What is trained: adapter (the default; needs --adapter), head (the classifier only) or
    /// full (every weight).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Adapter sharing: per-application (one adapter set per layer application) or shared.
    #[arg(
        long = "sharing",
        alias = "adapter-sharing",
        default_value = "per-application"
    )]
    pub adapter_sharing: String,
    /// pooler, mean or cls; default: mean for sentence-transformers models, else pooler.
    #[arg(long)]
    pub pooling: Option<String>,
    /// Train a per-task copy of the pooler too.
    #[arg(long)]
    pub train_pooler: bool,
    /// With an adapter: keep the backbone's LayerNorms frozen instead of training a per-task
    /// copy of each (needed for `export --format adapterhub`, whose adapters assume frozen ones).
    #[arg(long)]
    pub no_layer_norms: bool,
    /// Training epochs (the best dev epoch's weights are kept).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Peak learning rate (default: 1e-3 adapter/head, 3e-5 full).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Tokens per input; longer inputs are truncated.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Seed of initialization, example order, subsets and dropout (recorded in the bundle).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seed of the offline suite's train/dev/test split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Dropout probability in the trained modules.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Fraction of the steps spent warming the learning rate up linearly.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Stop after N epochs without dev improvement.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Train on a seeded subset of at most N examples.
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Evaluate on at most N dev examples.
    #[arg(long)]
    pub max_eval: Option<usize>,
    /// Continue an interrupted run from its last finished epoch.
    #[arg(long)]
    pub resume: bool,
    /// Output bundle file.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// Your own data instead of a registry task (--train-file and --validation-file; a
    /// --test-file is scored with the trained bundle).
    #[command(flatten)]
    pub files: super::DataFileArgs,
}

/// The train, dev and (for data files, if given) test splits the arguments name.
fn datasets(args: &Args) -> anyhow::Result<(Dataset, Dataset, Option<Dataset>)> {
    if !args.files.any_file() {
        let Some(task) = &args.task else {
            bail!("give --task NAME (a registry task) or your own data with --train-file and --validation-file");
        };
        let load = |split: Split| {
            load_dataset(task, args.data.as_deref(), split, args.split_seed)
                .with_context(|| format!("loading the {} split of `{task}`", split.name()))
        };
        return Ok((load(Split::Train)?, load(Split::Dev)?, None));
    }
    if args.data.is_some() {
        bail!("--data names a registry task's folder; with --train-file leave it out");
    }
    if args.files.train_file.is_none() || args.files.validation_file.is_none() {
        bail!("training on your own data needs --train-file and --validation-file (the validation examples pick the epoch)");
    }
    let task = args.files.to_files(args.task.clone()).resolve()?;
    let test = match &args.files.test_file {
        Some(_) => Some(task.load(Split::Test)?),
        None => None,
    };
    Ok((task.load(Split::Train)?, task.load(Split::Dev)?, test))
}

pub fn mode_of(args: &Args) -> anyhow::Result<Mode> {
    let mode = args.mode.unwrap_or(ModeArg::Adapter);
    Ok(match (mode, &args.adapter) {
        (ModeArg::Adapter, Some(spec)) => Mode::Adapter {
            spec: AdapterSpec::parse(spec)?,
            sharing: Sharing::parse(&args.adapter_sharing)?,
        },
        (ModeArg::Adapter, None) => {
            bail!("give --adapter SPEC (e.g. houlsby:64) or --mode full|head")
        }
        (ModeArg::Head, None) => Mode::Head,
        (ModeArg::Full, None) => Mode::Full,
        (_, Some(_)) => bail!("--adapter cannot be combined with --mode full or head"),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mode = mode_of(&args)?;
    if args.no_layer_norms && !matches!(mode, Mode::Adapter { .. }) {
        bail!("--no-layer-norms applies to adapter training only (head mode trains no LayerNorm, full mode trains the backbone's own)");
    }
    let pooling = match &args.pooling {
        Some(p) => Pooling::parse(p)?,
        None => adalbert_model::checkpoint::default_pooling(&args.model),
    };
    let lr = args
        .lr
        .unwrap_or(if mode == Mode::Full { 3e-5 } else { 1e-3 });
    let (train_set, dev_set, test_set) = datasets(&args)?;
    let task_name = train_set.task.name.clone();
    let config = TrainConfig {
        epochs: args.epochs,
        lr,
        batch_size: args.batch,
        max_len: args.max_len,
        weight_decay: args.weight_decay,
        warmup_ratio: args.warmup_ratio,
        dropout: args.dropout,
        seed: args.seed,
        patience: args.patience,
        max_train_examples: args.max_train,
        max_eval_examples: args.max_eval,
        ..TrainConfig::default()
    };
    eprintln!(
        "training {} ({}) on {} train / {} dev examples",
        task_name,
        mode.train_mode().as_str(),
        args.max_train.map_or(train_set.examples.len(), |m| m
            .min(train_set.examples.len())),
        args.max_eval
            .map_or(dev_set.examples.len(), |m| m.min(dev_set.examples.len())),
    );
    let outcome = train(TrainJob {
        model_dir: &args.model,
        task: &train_set.task,
        train: &train_set.examples,
        dev: &dev_set.examples,
        mode,
        pooling,
        train_pooler: args.train_pooler,
        train_layer_norms: !args.no_layer_norms,
        config,
        out: args.out.clone(),
        resume: args.resume,
        progress: !args.json,
        stop_after_epochs: None,
        model_name: args.model_name.clone(),
    })?;
    // The held-out file, scored with the bundle just written (as `adalbert eval` would).
    let test_metrics = match &test_set {
        Some(test) => {
            let bundle = adalbert_model::TaskBundle::load(&outcome.bundle)?;
            let preds = super::eval::bundle_predictions(
                &bundle,
                &args.model,
                super::Precision::Fp32,
                args.max_len,
                &test.task,
                &test.examples,
            )?;
            let golds: Vec<Label> = test.examples.iter().map(|e| e.label).collect();
            Some(evaluate(&test.task, &preds, &golds)?)
        }
        None => None,
    };
    if args.json {
        let test: Option<serde_json::Map<String, serde_json::Value>> =
            test_metrics.as_ref().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect()
            });
        let v = serde_json::json!({"bundle": outcome.bundle, "meta": outcome.meta,
            "train_seconds": outcome.train_seconds, "examples_per_second": outcome.examples_per_second,
            "test": test});
        outln!("{v}");
        return Ok(());
    }
    for r in &outcome.history {
        let dev: Vec<String> = r.dev.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        outln!(
            "epoch {} train loss {:.4} | dev {} | {:.1}s",
            r.epoch,
            r.train_loss,
            dev.join(", "),
            r.seconds
        );
    }
    outln!(
        "trainable parameters {} | {:.1} examples/s",
        outcome.meta.trainable_params,
        outcome.examples_per_second
    );
    if let Some(m) = &test_metrics {
        let shown: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        outln!("test {}", shown.join(", "));
    }
    outln!("bundle written to {}", outcome.bundle.display());
    Ok(())
}
