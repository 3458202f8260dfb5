//! `adalbert export`: a task bundle as another ecosystem's adapter directory (PEFT LoRA or
//! AdapterHub bottleneck adapter + head), for the backbone it was trained on.

use std::path::PathBuf;

use adalbert_model::interop::{self, ExportFiles};
use adalbert_model::{Backbone, BackboneId, TaskBundle};
use anyhow::Context;

/// The adapter formats of other ecosystems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Hugging Face PEFT: LoRA bundles (adapter_config.json + adapter_model.safetensors).
    Peft,
    /// AdapterHub's `adapters` package: bottleneck adapters and their classification head.
    Adapterhub,
}

#[derive(clap::Args)]
pub struct Args {
    /// Task bundle to export.
    #[arg(long)]
    bundle: PathBuf,
    /// peft (LoRA bundles) or adapterhub (houlsby, pfeiffer and parallel bundles).
    #[arg(long, value_enum)]
    format: FormatArg,
    /// Output directory, written whole or not at all.
    #[arg(long)]
    out: PathBuf,
    /// Backbone model directory the bundle was trained on (checked against the backbone the
    /// bundle records; a bundle records only its hash and name, not where it lies).
    #[arg(long)]
    model: PathBuf,
    /// Base model name written into the export (PEFT's base_model_name_or_path, AdapterHub's
    /// model_name); default: the name the bundle records, else --model's, else its path.
    #[arg(long)]
    model_name: Option<String>,
    /// Print what was written as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = super::model_inputs(&args.model);
    inputs.push(args.bundle.clone());
    check_out_dir(&args.out, &inputs)?;
    let bundle = TaskBundle::load(&args.bundle)?;
    let (backbone, ck) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    let id = BackboneId::of_checkpoint(&ck, &args.model)?;
    bundle.check_backbone(&id)?;
    let name = args
        .model_name
        .clone()
        .or_else(|| bundle.meta.model_name.clone())
        .or_else(|| id.model_name.clone())
        .unwrap_or_else(|| args.model.display().to_string());
    let files: ExportFiles = match args.format {
        FormatArg::Peft => interop::peft::export(&bundle, &backbone, &name)?,
        FormatArg::Adapterhub => interop::adapterhub::export(&bundle, &backbone, &name)?,
    };
    for f in files.file_names() {
        adalbert_core::files::check_output(&args.out.join(f), &inputs)
            .with_context(|| format!("--out {}", args.out.display()))?;
    }
    files.write(&args.out)?;
    let names = files.file_names();
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"out": args.out, "format": format_name(args.format), "files": names})
        );
    } else {
        outln!(
            "wrote {} ({}) as {}",
            args.out.display(),
            names.join(", "),
            format_name(args.format)
        );
    }
    Ok(())
}

fn format_name(f: FormatArg) -> &'static str {
    match f {
        FormatArg::Peft => "peft",
        FormatArg::Adapterhub => "adapterhub",
    }
}

/// `--out` may be new, or a directory of a previous export (only adapter files in it), which
/// is replaced whole; anything else (a file, a folder with other files) is refused before any
/// work, so an export never deletes what it did not write.
fn check_out_dir(out: &std::path::Path, inputs: &[PathBuf]) -> anyhow::Result<()> {
    if out.as_os_str().is_empty() {
        anyhow::bail!("--out is empty; expected a directory path");
    }
    if out.is_file() {
        anyhow::bail!("--out {} is a file; expected a directory", out.display());
    }
    if out.is_dir() {
        // The files PEFT and AdapterHub write (what an earlier export may have left).
        let ours = |n: &str| {
            [
                "adapter_config.json",
                "adapter_model.safetensors",
                "adapter_model.bin",
                "adapter.safetensors",
                "pytorch_adapter.bin",
                "head_config.json",
                "model_head.safetensors",
                "pytorch_model_head.bin",
            ]
            .contains(&n)
        };
        let entries = std::fs::read_dir(out)
            .with_context(|| format!("--out {}: cannot list it", out.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !ours(&name) {
                anyhow::bail!(
                    "--out {} exists and holds {name}, which an export does not write: give a \
                     new directory (an existing export directory is replaced whole)",
                    out.display()
                );
            }
        }
    }
    // Its parent chain must be writable and no input may lie where a file will go (each file
    // is checked again by name once the export knows them).
    adalbert_core::files::check_output(&out.join("adapter_config.json"), inputs)
        .with_context(|| format!("--out {}", out.display()))?;
    Ok(())
}
