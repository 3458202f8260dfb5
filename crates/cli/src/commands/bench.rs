//! `adalbert bench`: times the encoder forward (or an adapter training step) on the token ids
//! `tools/bench/peers.py` uses, so the figures line up with PyTorch and ONNX Runtime run side
//! by side (`make bench`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use adalbert_model::{
    AdapterSpec, Backbone, Ctx, Kernels, Pooling, Sharing, TaskLayout, TaskModel, TaskParams,
};
use adalbert_train::optim::AdamW;
use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor, Var};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json, weights).
    #[arg(long)]
    model: PathBuf,
    /// BATCHxTOKENS, e.g. 1x32 or 8x128.
    #[arg(long, default_value = "8x128")]
    shape: String,
    /// Timed iterations (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Worker threads (sets RAYON_NUM_THREADS before any pool starts); default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Inference kernels: auto (adalbert's, best ISA), portable (adalbert's, no SIMD
    /// intrinsics) or candle (candle's ops).
    #[arg(long, default_value = "auto")]
    kernels: String,
    /// Attach a randomly initialized task with this adapter (e.g. houlsby:64), to measure
    /// adapter overhead; with --train, the adapter being trained (default houlsby:64).
    #[arg(long)]
    adapter: Option<String>,
    /// Reference outputs (`last_hidden_state`) to compare against; default
    /// assets/bench/ref_<shape>.safetensors when it exists. Ignored with --adapter/--train.
    #[arg(long = "ref")]
    reference: Option<PathBuf>,
    /// Time adapter training steps (forward, backward, AdamW) instead of inference and
    /// report examples per second.
    #[arg(long)]
    pub train: bool,
    /// Number format of the inference path: fp32, bf16 or int8 (see `adalbert info
    /// --kernels` for the kernels each runs on this CPU); bf16 and int8 need --kernels auto.
    #[arg(long, value_enum, default_value = "fp32")]
    precision: super::Precision,
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

/// A task layout like `adalbert train --adapter SPEC` builds (per-task LayerNorms, mean
/// pooling, two labels).
fn layout(spec: &str) -> anyhow::Result<TaskLayout> {
    Ok(TaskLayout {
        adapter: Some(AdapterSpec::parse(spec)?),
        sharing: Sharing::PerApplication,
        layer_norms: true,
        pooler: false,
        num_labels: 2,
        pooling: Pooling::Mean,
    })
}

/// Median and minimum of per-iteration milliseconds.
fn time_iters(
    iters: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (batch, tokens) = parse_shape(&args.shape)?;
    if args.iters == 0 {
        bail!("--iters must be positive");
    }
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be positive");
        }
        // Both rayon's global pool and candle read this when they first start threads.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.precision != super::Precision::Fp32 && args.kernels != "auto" {
        bail!(
            "--precision {} needs --kernels auto (got `{}`)",
            args.precision.name(),
            args.kernels
        );
    }
    let kernels = match args.kernels.as_str() {
        "auto" => args.precision.kernels(),
        "candle" => Kernels::Candle,
        "portable" => Kernels::Isa(adalbert_model::Isa::Portable),
        other => bail!("--kernels `{other}`: expected auto, portable or candle"),
    };
    let (mut backbone, _) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    backbone.set_kernels(kernels);
    let isa = backbone.inference_kernels();
    let ids = bench_ids(batch, tokens)?;
    let types = ids.zeros_like()?;
    let mask = ids.ones_like()?;

    if args.train {
        return run_train(&args, &backbone, &ids, &types, &mask, threads);
    }

    let task = match &args.adapter {
        Some(spec) => {
            let layout = layout(spec)?;
            let init = layout.init_tensors(&backbone, 7)?;
            Some(TaskParams::from_tensors(&backbone.config, &layout, &init)?)
        }
        None => None,
    };
    let ctx = Ctx::eval();
    let mut last = None;
    let (ms, ms_min) = time_iters(args.iters, || {
        let out = backbone.forward(&ids, &types, &mask, task.as_ref(), &ctx)?;
        last = Some(out.last_hidden_state);
        Ok(())
    })?;
    let h = last.context("no iteration ran")?;
    let h64 = h.to_dtype(DType::F64)?;
    let checksum = h64.sum_all()?.to_scalar::<f64>()?;
    let mean_abs = h64.abs()?.mean_all()?.to_scalar::<f64>()?;
    let ref_path = args.reference.clone().or_else(|| {
        let p = PathBuf::from(format!("assets/bench/ref_{}.safetensors", args.shape));
        p.exists().then_some(p)
    });
    let max_abs_diff = match (&ref_path, &task) {
        (Some(p), None) => Some(max_abs_diff(p, &h)?),
        _ => None,
    };
    let rss = peak_rss_mb();
    let variant = match &args.adapter {
        Some(spec) => format!("{}+{spec}", args.precision.name()),
        None => args.precision.name().to_string(),
    };
    if args.json {
        let (cpu, flags) = adalbert_model::exec::Cpu::describe();
        let v = serde_json::json!({"engine": "adalbert", "variant": variant, "shape": args.shape,
            "ms": ms, "ms_min": ms_min, "iters": args.iters, "threads": threads, "isa": isa,
            "checksum": checksum, "mean_abs": mean_abs, "max_abs_diff_vs_ref": max_abs_diff,
            "peak_rss_mb": rss, "cpu": cpu, "cpu_flags": flags});
        outln!("{v}");
    } else {
        let diff = max_abs_diff.map_or(String::new(), |d| format!(", max |diff| vs ref {d:.2e}"));
        outln!(
            "adalbert {variant} {} ({isa}, {threads} threads): {ms:.2} ms/batch (median of {}, min {ms_min:.2}), checksum {checksum:.6}, mean|h| {mean_abs:.6}{diff}, peak RSS {rss:.1} MB",
            args.shape, args.iters
        );
    }
    Ok(())
}

/// Max |ours - reference| over `last_hidden_state` in a `tools/bench/peers.py` reference file.
fn max_abs_diff(path: &PathBuf, h: &Tensor) -> anyhow::Result<f64> {
    let refs = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading reference {}", path.display()))?;
    let r = refs
        .get("last_hidden_state")
        .with_context(|| format!("{}: no last_hidden_state", path.display()))?;
    if r.dims() != h.dims() {
        bail!(
            "{}: reference shape {:?} differs from ours {:?}",
            path.display(),
            r.dims(),
            h.dims()
        );
    }
    let d = (r.to_dtype(DType::F64)? - h.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?;
    Ok(d)
}

/// Adapter training steps on the bench ids: forward with dropout, cross-entropy, backward,
/// AdamW on the task variables (the backbone frozen), as `adalbert train` does.
fn run_train(
    args: &Args,
    backbone: &Backbone,
    ids: &Tensor,
    types: &Tensor,
    mask: &Tensor,
    threads: usize,
) -> anyhow::Result<()> {
    let spec = args.adapter.clone().unwrap_or_else(|| "houlsby:64".into());
    let layout = layout(&spec)?;
    let init = layout.init_tensors(backbone, 7)?;
    let mut names: Vec<&String> = init.keys().collect();
    names.sort();
    let mut vars = Vec::new();
    let mut tensors = HashMap::new();
    for name in names {
        let var = Var::from_tensor(&init[name])?;
        tensors.insert(name.clone(), var.as_tensor().clone());
        vars.push((name.clone(), var));
    }
    let task = TaskParams::from_tensors(&backbone.config, &layout, &tensors)?;
    let mut opt = AdamW::new(vars, 0.01)?;
    let batch = ids.dims()[0];
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 2).collect();
    let labels = Tensor::from_vec(labels, batch, &Device::Cpu)?;
    let model = TaskModel {
        backbone,
        task: &task,
        layout: &layout,
    };
    let mut step = 0u64;
    let mut loss_v = 0.0f32;
    let (ms, ms_min) = time_iters(args.iters, || {
        step += 1;
        let ctx = Ctx::train(0.1, step);
        let logits = model.logits_from_ids(ids, types, mask, &ctx)?;
        let loss = cross_entropy(&logits, &labels)?;
        loss_v = loss.to_scalar::<f32>()?;
        let grads = loss.backward()?;
        opt.step(&grads, 1e-3, 1.0)?;
        Ok(())
    })?;
    let ex_s = batch as f64 / (ms / 1e3);
    let rss = peak_rss_mb();
    if args.json {
        let variant = match std::env::var("CANDLE_NUM_THREADS") {
            Ok(n) => format!("train {spec} (CANDLE_NUM_THREADS={n})"),
            Err(_) => format!("train {spec}"),
        };
        let v = serde_json::json!({"engine": "adalbert", "variant": variant,
            "shape": args.shape, "ms": ms, "ms_min": ms_min, "iters": args.iters,
            "threads": threads, "examples_per_s": ex_s, "loss": loss_v, "peak_rss_mb": rss});
        outln!("{v}");
    } else {
        outln!(
            "adalbert train {spec} {} ({threads} threads): {ms:.1} ms/step (median of {}, min {ms_min:.1}), {ex_s:.1} examples/s, loss {loss_v:.4}, peak RSS {rss:.1} MB",
            args.shape, args.iters
        );
    }
    Ok(())
}

/// Mean negative log-likelihood of `labels` under `softmax(logits)`.
fn cross_entropy(logits: &Tensor, labels: &Tensor) -> anyhow::Result<Tensor> {
    let m = logits.max_keepdim(1)?;
    let lse = (logits.broadcast_sub(&m)?.exp()?.sum_keepdim(1)?.log()? + &m)?;
    let logp = logits.broadcast_sub(&lse)?;
    Ok(logp.gather(&labels.unsqueeze(1)?, 1)?.mean_all()?.neg()?)
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
