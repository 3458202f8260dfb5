//! `adalbert import`: another ecosystem's adapter directory (PEFT LoRA or AdapterHub
//! bottleneck adapter + head) as a task bundle on its backbone.

use std::path::PathBuf;

use adalbert_model::interop;
use adalbert_model::{Backbone, BackboneId};
use anyhow::Context;

use super::export::FormatArg;

#[derive(clap::Args)]
pub struct Args {
    /// peft (a LoRA adapter) or adapterhub (a bottleneck adapter with its head).
    #[arg(long, value_enum)]
    format: FormatArg,
    /// Backbone model directory the adapter was trained on (config, weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// The adapter directory (PEFT: adapter_config.json + adapter_model.safetensors;
    /// AdapterHub: adapter_config.json, the adapter weights, head_config.json and head weights).
    #[arg(long)]
    adapter: PathBuf,
    /// Output bundle file.
    #[arg(long)]
    out: PathBuf,
    /// Task name recorded in the bundle (default: the adapter's name, else its folder's).
    #[arg(long)]
    task: Option<String>,
    /// Names of the classifier's outputs, in order (e.g. `neg,pos`); default: the head's
    /// label2id when it has one, else LABEL_0, LABEL_1, ... (none for a 1-output regression).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Backbone name recorded in the bundle (default: config.json's `_name_or_path` when it is
    /// a hub id, else the model card's `base_model`; unknown otherwise).
    #[arg(long)]
    model_name: Option<String>,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = super::model_inputs(&args.model);
    if let Ok(entries) = std::fs::read_dir(&args.adapter) {
        inputs.extend(entries.flatten().map(|e| e.path()));
    }
    adalbert_core::files::check_output(&args.out, &inputs).context("--out")?;
    if !args.adapter.is_dir() {
        anyhow::bail!(
            "--adapter {} is not a directory (expected the folder {} wrote)",
            args.adapter.display(),
            match args.format {
                FormatArg::Peft => "PEFT's save_pretrained",
                FormatArg::Adapterhub => "AdapterHub's save_adapter",
            }
        );
    }
    let (backbone, ck) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    let mut id = BackboneId::of_checkpoint(&ck, &args.model)?;
    if args.model_name.is_some() {
        id.model_name = args.model_name.clone();
    }
    let folder = args
        .adapter
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "imported".into());
    let labels = args
        .labels
        .clone()
        .map(|l| l.into_iter().map(|s| s.trim().to_string()).collect());
    let imported = match args.format {
        FormatArg::Peft => interop::peft::import(
            &args.adapter,
            &backbone,
            &id,
            args.task.clone().unwrap_or(folder),
            labels,
        )?,
        FormatArg::Adapterhub => interop::adapterhub::import(
            &args.adapter,
            &backbone,
            &id,
            args.task.clone(),
            folder,
            labels,
        )?,
    };
    imported.save(&args.out)?;
    let layout = &imported.meta.layout;
    let adapter = layout
        .adapter
        .map(|a| a.to_string())
        .unwrap_or_else(|| "none".into());
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "out": args.out, "task": imported.meta.task, "adapter": adapter,
                "sharing": layout.sharing.as_str(), "layer_norms": layout.layer_norms,
                "pooler": layout.pooler, "num_labels": layout.num_labels,
                "labels": imported.meta.labels,
            })
        );
    } else {
        outln!(
            "wrote {} (task {}, {adapter}, sharing {}, {} output(s))",
            args.out.display(),
            imported.meta.task,
            layout.sharing,
            layout.num_labels
        );
    }
    Ok(())
}
