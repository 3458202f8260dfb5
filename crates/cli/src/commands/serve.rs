//! `adalbert serve`: one backbone in memory, many task bundles, over HTTP.
//!
//! Every flag can also be given as an `ADALBERT_*` environment variable (the flag's name in
//! capitals, `-` as `_`, e.g. `ADALBERT_TOKEN`), so a secret never has to appear in `ps`.

use std::path::PathBuf;
use std::time::Duration;

use adalbert_model::MultiTask;
use adalbert_serve::embed::SentenceConfig;
use adalbert_serve::ServeConfig;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory (config, weights, tokenizer).
    #[arg(long, env = "ADALBERT_MODEL")]
    model: PathBuf,
    /// Task bundle to serve from the start (more can be PUT at run time); repeat the flag or
    /// separate with commas.
    #[arg(
        long = "bundle",
        alias = "bundles",
        env = "ADALBERT_BUNDLES",
        value_delimiter = ','
    )]
    bundles: Vec<PathBuf>,
    /// Directory of bundles served by name (NAME.bundle.safetensors or NAME.safetensors),
    /// each loaded on its first request.
    #[arg(long, env = "ADALBERT_BUNDLE_DIR")]
    bundle_dir: Option<PathBuf>,
    /// Directory POST /v1/tasks/{task}/load may read bundles from (besides --bundle-dir);
    /// repeat the flag or separate with commas.
    #[arg(long, env = "ADALBERT_LOAD_DIR", value_delimiter = ',')]
    load_dir: Vec<PathBuf>,
    /// Most tasks in memory; beyond it the least recently used reloadable task is unloaded.
    #[arg(long, env = "ADALBERT_MAX_LOADED_TASKS")]
    max_loaded_tasks: Option<usize>,
    /// Tasks never evicted (loaded at start-up); repeat or separate with commas.
    #[arg(long, env = "ADALBERT_PIN", value_delimiter = ',')]
    pin: Vec<String>,
    /// Name of the backbone as a `model` of /v1/embeddings (default: the model directory's name).
    #[arg(long, env = "ADALBERT_MODEL_NAME")]
    model_name: Option<String>,
    /// Listen address; loopback by default.
    #[arg(long, default_value = "127.0.0.1:8080", env = "ADALBERT_ADDR")]
    addr: String,
    /// Bearer token required by the admin routes; without it they are open. Prefer the
    /// ADALBERT_TOKEN environment variable: a flag is visible in `ps`.
    #[arg(long, env = "ADALBERT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long to wait for more requests to batch with the first one, in ms.
    #[arg(long, default_value_t = 5, env = "ADALBERT_BATCH_WINDOW_MS")]
    batch_window_ms: u64,
    /// Most inputs in one model pass.
    #[arg(long, default_value_t = 32, env = "ADALBERT_MAX_BATCH")]
    max_batch: usize,
    /// Most requests waiting; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256, env = "ADALBERT_QUEUE_DEPTH")]
    queue_depth: usize,
    /// Largest prediction request body in bytes.
    #[arg(long, default_value_t = 1 << 20, env = "ADALBERT_MAX_BODY_BYTES")]
    max_body_bytes: usize,
    /// Largest bundle upload in bytes.
    #[arg(long, default_value_t = 512 << 20, env = "ADALBERT_MAX_BUNDLE_BYTES")]
    max_bundle_bytes: usize,
    /// Most inputs in one request.
    #[arg(long, default_value_t = 64, env = "ADALBERT_MAX_INPUTS")]
    max_inputs: usize,
    /// Tokens per input (at most the model's positions; default: the model's
    /// sentence-transformers `max_seq_length` when it has sentence_bert_config.json, else 128,
    /// or the model's positions when fewer); longer inputs are truncated and the response says so.
    #[arg(long, env = "ADALBERT_MAX_LEN")]
    max_len: Option<usize>,
    /// Time from arrival to answer before a request fails with 504, in ms.
    #[arg(long, default_value_t = 30_000, env = "ADALBERT_TIMEOUT_MS")]
    timeout_ms: u64,
    /// Number format of the backbone's products: fp32, bf16 or int8 (see `adalbert info
    /// --kernels` for the kernels each runs on this CPU).
    #[arg(long, value_enum, default_value = "fp32", env = "ADALBERT_PRECISION")]
    precision: super::Precision,
}

/// Tokens per input unless `--max-len` says otherwise (capped at the model's positions).
const DEFAULT_MAX_LEN: usize = 128;

pub fn run(args: Args) -> anyhow::Result<()> {
    let shape = adalbert_core::ModelShape::from_path(&args.model)
        .with_context(|| format!("reading the model config in {}", args.model.display()))?;
    let positions = shape.max_position_embeddings;
    // Pooling, normalization, length limit and lowercasing from the model's
    // sentence-transformers files (defaults without them).
    let embedding = SentenceConfig::from_dir(&args.model)?;
    let max_len = args
        .max_len
        .unwrap_or(embedding.max_len(DEFAULT_MAX_LEN, positions));
    if max_len > positions {
        anyhow::bail!(
            "--max-len {max_len} is above the model's {positions} positions ({}); use at most {positions}",
            args.model.display()
        );
    }
    let mut mt = MultiTask::open(&args.model, max_len)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    if embedding.do_lower_case {
        mt.lowercase_inputs()?;
    }
    mt.set_kernels(args.precision.kernels())?;
    let sources: Vec<(String, String)> = adalbert_serve::names::preload(&mt, &args.bundles)
        .context("loading --bundles")?
        .into_iter()
        .map(|(name, path)| (name, path.display().to_string()))
        .collect();
    let model_name = args.model_name.clone().unwrap_or_else(|| {
        args.model
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "adalbert".into())
    });
    let cfg = ServeConfig {
        token: args.token,
        batch_window: Duration::from_millis(args.batch_window_ms),
        max_batch: args.max_batch,
        queue_depth: args.queue_depth,
        max_body_bytes: args.max_body_bytes,
        max_bundle_bytes: args.max_bundle_bytes,
        max_inputs: args.max_inputs,
        timeout: Duration::from_millis(args.timeout_ms),
        bundle_dir: args.bundle_dir,
        load_dirs: args.load_dir,
        max_loaded_tasks: args.max_loaded_tasks,
        pinned: args.pin,
        model_name,
        embedding,
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
