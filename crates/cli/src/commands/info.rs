//! `adalbert info`: architecture, parameter counts and bytes of a checkpoint.

use std::path::PathBuf;

use adalbert_model::{Backbone, EncoderConfig, Family};
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long)]
    model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (backbone, ck) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    let c = &backbone.config;
    let counts = backbone.param_counts();
    let (pooler, total) = (counts.pooler, counts.total());
    if args.json {
        let v = serde_json::json!({
            "config": c, "weights_file": ck.path(),
            "params": {"embeddings": counts.embeddings, "projection": counts.projection,
                       "encoder": counts.encoder, "pooler": pooler,
                       "backbone": counts.backbone(), "total": total},
            "bytes": {"fp32": total * 4, "fp16": total * 2, "int8": total},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model        {}", args.model.display());
    println!("weights      {}", ck.path().display());
    println!("family       {}", family(c));
    println!(
        "shape        vocab {} | E {} | H {} | heads {} | FFN {} | {} layer applications of {} group(s) x {} layer(s) | act {:?} | max pos {}",
        c.shape.vocab_size, c.shape.embedding_size, c.shape.hidden_size, c.shape.num_attention_heads, c.shape.intermediate_size,
        c.shape.num_hidden_layers, c.shape.num_hidden_groups, c.shape.inner_group_num, c.hidden_act, c.shape.max_position_embeddings
    );
    println!();
    println!("{:<22} {:>14}", "part", "parameters");
    let rows = [
        ("embeddings", counts.embeddings),
        ("projection (E->H)", counts.projection),
        ("encoder (stored)", counts.encoder),
        ("pooler", pooler),
        ("backbone (no pooler)", counts.backbone()),
        ("total", total),
    ];
    for (name, n) in rows {
        println!("{name:<22} {n:>14}");
    }
    println!();
    println!("{:<8} {:>14}", "format", "bytes");
    for (name, bytes) in [("fp32", total * 4), ("fp16", total * 2), ("int8", total)] {
        println!("{name:<8} {bytes:>14}  ({:.2} MB)", bytes as f64 / 1e6);
    }
    Ok(())
}

fn family(c: &EncoderConfig) -> &'static str {
    match c.shape.family {
        Family::Albert => "albert",
        Family::Bert => "bert (run as ALBERT with one group per layer, E = H)",
    }
}
