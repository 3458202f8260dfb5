//! `adalbert eval`: official metrics of a bundle on a task split.

use std::path::PathBuf;

use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Backbone, TaskBundle, TaskModel, TrainMode};
use adalbert_tasks::{
    evaluate, load_dataset, task_spec, write_submission, Dataset, Example, Label, Split, TaskSpec,
};
use adalbert_train::eval::predict;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory (config, weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Task bundle to evaluate (trained on --model).
    #[arg(long)]
    bundle: PathBuf,
    /// GLUE task folder, or the offline suite's data folder (default assets/data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which split to evaluate: train, dev or test (default dev; with data files: the test
    /// file if given, else the validation file, else the training file).
    #[arg(long)]
    split: Option<Split>,
    /// Seed of the offline suite's train/dev/test split.
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Tokens per input; longer inputs are truncated.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Evaluate on the first N examples only.
    #[arg(long = "max-eval", alias = "max-examples")]
    max_examples: Option<usize>,
    /// Write `id\tprediction` lines here.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Write a GLUE submission file into this folder (GLUE tasks).
    #[arg(long)]
    submission: Option<PathBuf>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
    /// Number format of the backbone's products: fp32, bf16 or int8 (see `adalbert info
    /// --kernels` for the kernels each runs on this CPU).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: super::Precision,
    /// Your own data: the file of the chosen split is scored with the bundle's labels.
    #[command(flatten)]
    files: super::DataFileArgs,
}

/// The examples to score: a registry task's split, or the split's data file.
fn dataset(args: &Args, bundle: &TaskBundle) -> anyhow::Result<Dataset> {
    if args.files.any_file() {
        if args.data.is_some() {
            anyhow::bail!("--data names a registry task's folder; with data files leave it out");
        }
        let f = &args.files;
        let split = args.split.unwrap_or(if f.test_file.is_some() {
            Split::Test
        } else if f.validation_file.is_some() {
            Split::Dev
        } else {
            Split::Train
        });
        let task = super::bundle_file_task(&bundle.meta, f)?;
        return Ok(task.load(split)?);
    }
    let name = &bundle.meta.task;
    if task_spec(name).is_err() {
        anyhow::bail!(
            "the bundle's task `{name}` is not a registry task (was it trained on data files?): give the examples with --test-file or --validation-file"
        );
    }
    Ok(load_dataset(
        name,
        args.data.as_deref(),
        args.split.unwrap_or(Split::Dev),
        args.split_seed,
    )?)
}

/// Predictions of `bundle` (on the backbone in `model_dir`) for `examples`.
pub fn bundle_predictions(
    bundle: &TaskBundle,
    model_dir: &std::path::Path,
    precision: super::Precision,
    max_len: usize,
    spec: &TaskSpec,
    examples: &[Example],
) -> anyhow::Result<Vec<Label>> {
    let (mut backbone, ck) = Backbone::from_dir(model_dir)
        .with_context(|| format!("loading model from {}", model_dir.display()))?;
    backbone.set_kernels(precision.kernels());
    bundle.check_backbone(&adalbert_model::BackboneId::of_checkpoint(&ck, model_dir)?)?;
    let own;
    let bb = if bundle.meta.mode == TrainMode::Full {
        own = {
            let mut b = bundle.full_backbone(&backbone.config)?;
            b.set_kernels(precision.kernels());
            b
        };
        &own
    } else {
        &backbone
    };
    let params = bundle.task_params(&backbone.config)?;
    let model = TaskModel {
        backbone: bb,
        task: &params,
        layout: &bundle.meta.layout,
    };
    let tok = Tokenizer::from_dir(model_dir, max_len)?;
    Ok(predict(&model, &tok, spec, examples, 64)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.predictions {
        let mut inputs = super::model_inputs(&args.model);
        inputs.push(args.bundle.clone());
        adalbert_core::files::check_output(path, &inputs).context("--predictions")?;
    }
    let bundle = TaskBundle::load(&args.bundle)?;
    let mut data = dataset(&args, &bundle)?;
    let spec = data.task.clone();
    if let Some(n) = args.max_examples {
        data.examples.truncate(n);
    }
    let preds = bundle_predictions(
        &bundle,
        &args.model,
        args.precision,
        args.max_len,
        &spec,
        &data.examples,
    )?;
    if let Some(path) = &args.predictions {
        let mut text = String::from("id\tprediction\n");
        for (e, p) in data.examples.iter().zip(&preds) {
            let shown = match p {
                Label::Class(c) => spec.labels().get(*c).cloned().unwrap_or_default(),
                Label::Score(s) => format!("{s:.4}"),
                Label::None => String::new(),
            };
            text.push_str(&format!("{}\t{shown}\n", e.id));
        }
        adalbert_core::files::write_atomic(path, text.as_bytes())?;
        eprintln!("predictions written to {}", path.display());
    }
    if let Some(dir) = &args.submission {
        let path = write_submission(dir, &spec, &data.examples, &preds)?;
        eprintln!("GLUE submission written to {}", path.display());
    }
    let golds: Vec<Label> = data.examples.iter().map(|e| e.label).collect();
    if golds.contains(&Label::None) {
        eprintln!(
            "split `{}` has no labels: predictions only",
            data.split.name()
        );
        return Ok(());
    }
    let metrics = evaluate(&spec, &preds, &golds)?;
    if args.json {
        let m: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        outln!("{}", serde_json::Value::Object(m));
    } else {
        for (name, value) in metrics {
            outln!("{name} {value:.4}");
        }
    }
    Ok(())
}
