//! `adalbert info`: architecture, parameter counts and bytes of a checkpoint; with
//! `--kernels`, which kernels each inference precision runs on this CPU.

use std::path::PathBuf;

use adalbert_model::exec::Cpu;
use adalbert_model::{Backbone, EncoderConfig, Family};
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long, required_unless_present = "kernels")]
    model: Option<PathBuf>,
    /// Print the CPU, its instruction-set flags and the kernels each inference precision
    /// (fp32, bf16, int8) runs here, under this process's `ADALBERT_KERNELS`.
    #[arg(long)]
    kernels: bool,
    /// Also the backbone's stored bytes under this compression plan (e.g. `int8+bitmask`,
    /// `int8+prune=0.5+bitmask`), by compress's storage arithmetic; repeatable.
    #[arg(long = "plan")]
    plans: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The backbone's (no pooler) storage under each plan: `(plan, payload bytes, metadata bytes)`.
fn plan_bytes(
    shape: &adalbert_core::ModelShape,
    plans: &[String],
) -> anyhow::Result<Vec<(String, u64, u64)>> {
    plans
        .iter()
        .map(|spec| {
            let plan: adalbert_compress::Plan =
                spec.parse().with_context(|| format!("--plan {spec:?}"))?;
            let mut s = adalbert_compress::storage::Storage::default();
            for t in shape.tensors(false) {
                let role = adalbert_compress::TensorRole::infer(&t.name, &t.shape);
                s += plan.planned_storage(role, t.shape.iter().product::<usize>() as u64);
            }
            Ok((spec.clone(), s.payload_bytes(), s.metadata_bits.div_ceil(8)))
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.kernels {
        return kernels(args.json);
    }
    let Some(model) = &args.model else {
        anyhow::bail!("--model is required");
    };
    let (backbone, ck) = Backbone::from_dir(model)
        .with_context(|| format!("loading model from {}", model.display()))?;
    let c = &backbone.config;
    let counts = backbone.param_counts();
    let (pooler, total) = (counts.pooler, counts.total());
    let planned = plan_bytes(&c.shape, &args.plans)?;
    // What bundles trained on this backbone record (and are checked against).
    let id = adalbert_model::BackboneId::of_checkpoint(&ck, model)?;
    if args.json {
        let plans: Vec<serde_json::Value> = planned
            .iter()
            .map(|(p, b, m)| serde_json::json!({"plan": p, "backbone_payload_bytes": b, "backbone_metadata_bytes": m}))
            .collect();
        let v = serde_json::json!({
            "config": c, "weights_file": ck.path(),
            "backbone": {"sha256": id.sha256, "model_name": id.model_name, "revision": id.revision},
            "params": {"embeddings": counts.embeddings, "projection": counts.projection,
                       "encoder": counts.encoder, "pooler": pooler,
                       "backbone": counts.backbone(), "total": total},
            "bytes": {"fp32": total * 4, "fp16": total * 2, "int8": total},
            "plans": plans,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("model        {}", model.display());
    outln!("weights      {}", ck.path().display());
    outln!(
        "backbone     {}{}{}",
        id.sha256,
        id.model_name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        id.revision
            .as_ref()
            .map(|r| format!(" @ {r}"))
            .unwrap_or_default()
    );
    outln!("family       {}", family(c));
    outln!(
        "shape        vocab {} | E {} | H {} | heads {} | FFN {} | {} layer applications of {} group(s) x {} layer(s) | act {:?} | max pos {}",
        c.shape.vocab_size, c.shape.embedding_size, c.shape.hidden_size, c.shape.num_attention_heads, c.shape.intermediate_size,
        c.shape.num_hidden_layers, c.shape.num_hidden_groups, c.shape.inner_group_num, c.hidden_act, c.shape.max_position_embeddings
    );
    outln!();
    outln!("{:<22} {:>14}", "part", "parameters");
    let rows = [
        ("embeddings", counts.embeddings),
        ("projection (E->H)", counts.projection),
        ("encoder (stored)", counts.encoder),
        ("pooler", pooler),
        ("backbone (no pooler)", counts.backbone()),
        ("total", total),
    ];
    for (name, n) in rows {
        outln!("{name:<22} {n:>14}");
    }
    outln!();
    outln!("{:<8} {:>14}", "format", "bytes");
    for (name, bytes) in [("fp32", total * 4), ("fp16", total * 2), ("int8", total)] {
        outln!("{name:<8} {bytes:>14}  ({:.2} MB)", bytes as f64 / 1e6);
    }
    for (plan, bytes, meta) in &planned {
        outln!(
            "{plan}: backbone (no pooler) {bytes} bytes of payload + {meta} of scales ({:.2} MB)",
            (bytes + meta) as f64 / 1e6
        );
    }
    Ok(())
}

fn family(c: &EncoderConfig) -> &'static str {
    match c.shape.family {
        Family::Albert => "albert",
        Family::Bert => "bert (run as ALBERT with one group per layer, E = H)",
    }
}

/// The CPU, its flags and the kernels of each precision.
fn kernels(json: bool) -> anyhow::Result<()> {
    let (cpu, flags) = Cpu::describe();
    let table = adalbert_model::exec::kernel_table();
    if json {
        let kernels: serde_json::Map<String, serde_json::Value> = table
            .iter()
            .map(|(p, k)| (p.to_string(), serde_json::json!(k)))
            .collect();
        let v = serde_json::json!({"cpu": cpu, "flags": flags, "kernels": kernels,
            "override": std::env::var("ADALBERT_KERNELS").ok()});
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("cpu        {cpu}");
    outln!("flags      {}", flags.join(" "));
    for (precision, k) in table {
        outln!("{precision:<10} {k}");
    }
    Ok(())
}
