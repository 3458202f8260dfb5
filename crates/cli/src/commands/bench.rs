//! `adalbert bench`: times the encoder forward on the token ids `tools/bench/peers.py` uses,
//! so the figures line up with PyTorch and ONNX Runtime run side by side.

use std::path::PathBuf;
use std::time::Instant;

use adalbert_model::{Backbone, Ctx};
use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// BATCHxTOKENS, e.g. 1x32 or 8x128.
    #[arg(long, default_value = "8x128")]
    shape: String,
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

fn parse_shape(s: &str) -> anyhow::Result<(usize, usize)> {
    let (b, t) = s
        .split_once('x')
        .with_context(|| format!("--shape `{s}`: expected BATCHxTOKENS such as 8x128"))?;
    let b: usize = b
        .parse()
        .with_context(|| format!("--shape `{s}`: bad batch"))?;
    let t: usize = t
        .parse()
        .with_context(|| format!("--shape `{s}`: bad token count"))?;
    if b == 0 || t == 0 {
        bail!("--shape `{s}`: batch and tokens must be positive");
    }
    Ok((b, t))
}

/// `ids[b][s] = 1000 + (b * 7919 + s * 104729) % 20000`, shared with tools/bench/peers.py.
pub fn bench_ids(batch: usize, tokens: usize) -> anyhow::Result<Tensor> {
    let ids: Vec<i64> = (0..batch)
        .flat_map(|b| (0..tokens).map(move |s| 1000 + ((b * 7919 + s * 104_729) % 20_000) as i64))
        .collect();
    Ok(Tensor::from_vec(ids, (batch, tokens), &Device::Cpu)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (batch, tokens) = parse_shape(&args.shape)?;
    if args.iters == 0 {
        bail!("--iters must be positive");
    }
    let (backbone, _) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    let ids = bench_ids(batch, tokens)?;
    let types = ids.zeros_like()?;
    let mask = ids.ones_like()?;
    let ctx = Ctx::eval();
    let run_once = || backbone.forward(&ids, &types, &mask, None, &ctx);
    for _ in 0..3 {
        run_once()?;
    }
    let mut times = Vec::with_capacity(args.iters);
    let mut last = None;
    for _ in 0..args.iters {
        let t0 = Instant::now();
        let out = run_once()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        last = Some(out.last_hidden_state);
    }
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    let h = last.context("no iteration ran")?.to_dtype(DType::F64)?;
    let checksum = h.sum_all()?.to_scalar::<f64>()?;
    let mean_abs = h.abs()?.mean_all()?.to_scalar::<f64>()?;
    let rss = peak_rss_mb();
    if args.json {
        let v = serde_json::json!({"engine": "adalbert", "shape": args.shape, "ms": ms,
            "checksum": checksum, "mean_abs": mean_abs, "peak_rss_mb": rss});
        println!("{v}");
    } else {
        println!(
            "adalbert {}: {ms:.2} ms/batch (median of {}), checksum {checksum:.6}, mean|h| {mean_abs:.6}, peak RSS {rss:.1} MB",
            args.shape, args.iters
        );
    }
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB; 0 where unavailable.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
