//! `adalbert serve`: one backbone in memory, many task bundles, over HTTP.

use std::path::PathBuf;
use std::time::Duration;

use adalbert_model::MultiTask;
use adalbert_serve::ServeConfig;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory (config, weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Task bundles to serve from the start (more can be PUT at run time).
    #[arg(long, num_args = 1..)]
    bundles: Vec<PathBuf>,
    /// Listen address; loopback by default.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Bearer token required by PUT/DELETE /v1/tasks/{task}; without it they are open.
    #[arg(long)]
    token: Option<String>,
    /// How long to wait for more requests to batch with the first one, in ms.
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
    /// Most inputs in one model pass.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Most requests waiting; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    queue_depth: usize,
    /// Largest prediction request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Largest bundle upload in bytes.
    #[arg(long, default_value_t = 512 << 20)]
    max_bundle_bytes: usize,
    /// Most inputs in one request.
    #[arg(long, default_value_t = 64)]
    max_inputs: usize,
    /// Tokens per input; longer inputs are truncated and the response says so.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Time from arrival to answer before a request fails with 504, in ms.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Number format of the backbone's products: fp32, bf16 or int8 (see `adalbert info
    /// --kernels` for the kernels each runs on this CPU).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: super::Precision,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut mt = MultiTask::open(&args.model, args.max_len)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    mt.set_kernels(args.precision.kernels())?;
    let mut sources = Vec::new();
    for b in &args.bundles {
        let name = mt
            .load_bundle(b)
            .with_context(|| format!("loading bundle {}", b.display()))?;
        sources.push((name, b.display().to_string()));
    }
    let cfg = ServeConfig {
        token: args.token,
        batch_window: Duration::from_millis(args.batch_window_ms),
        max_batch: args.max_batch,
        queue_depth: args.queue_depth,
        max_body_bytes: args.max_body_bytes,
        max_bundle_bytes: args.max_bundle_bytes,
        max_inputs: args.max_inputs,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let open_admin = cfg.token.is_none();
    adalbert_serve::run(&args.addr, mt, cfg, &sources, |addr, state| {
        let tasks: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
        eprintln!(
            "adalbert serve: listening on http://{addr} (tasks: [{}]; backbone {} loaded once)",
            tasks.join(", "),
            state.backbone_sha256().get(..12).unwrap_or("?")
        );
        if open_admin && !addr.ip().is_loopback() {
            eprintln!("warning: admin routes are open on a non-loopback address; pass --token");
        }
    })
    .with_context(|| format!("serving on {}", args.addr))
}
