//! `adalbert eval`: official metrics of a bundle on a task split.

use std::path::PathBuf;

use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Backbone, TaskBundle, TaskModel, TrainMode};
use adalbert_tasks::{evaluate, load_dataset, task_spec, write_submission, Label, Split};
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
    /// Which split to evaluate: train, dev or test.
    #[arg(long, default_value = "dev")]
    split: Split,
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.predictions {
        let mut inputs = super::model_inputs(&args.model);
        inputs.push(args.bundle.clone());
        adalbert_core::files::check_output(path, &inputs).context("--predictions")?;
    }
    let bundle = TaskBundle::load(&args.bundle)?;
    let (mut backbone, ck) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    backbone.set_kernels(args.precision.kernels());
    bundle.check_backbone(&adalbert_model::BackboneId::of_checkpoint(
        &ck,
        &args.model,
    )?)?;
    let spec = task_spec(&bundle.meta.task)?;
    let mut data = load_dataset(
        &bundle.meta.task,
        args.data.as_deref(),
        args.split,
        args.split_seed,
    )?;
    if let Some(n) = args.max_examples {
        data.examples.truncate(n);
    }
    let own;
    let bb = if bundle.meta.mode == TrainMode::Full {
        own = {
            let mut b = bundle.full_backbone(&backbone.config)?;
            b.set_kernels(args.precision.kernels());
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
    let tok = Tokenizer::from_dir(&args.model, args.max_len)?;
    let preds = predict(&model, &tok, &spec, &data.examples, 64)?;
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
            args.split.name()
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
