//! `adalbert distill`: a BERT teacher distilled into a true ALBERT (factorized embedding,
//! shared layer group(s)), written as a Hugging Face ALBERT directory.

use std::path::{Path, PathBuf};

use adalbert_train::distill::{distill, DistillConfig, DistillJob, SharedInit, Stop};
use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The teacher: a BERT or ALBERT model directory (config.json, weights, tokenizer).
    #[arg(long)]
    pub teacher: PathBuf,
    /// The output directory (a Hugging Face ALBERT checkpoint).
    #[arg(long, required_unless_present = "bench_steps")]
    pub out: Option<PathBuf>,
    /// E, the factorized embedding width (below the teacher's hidden size).
    #[arg(long, default_value_t = 128)]
    pub embedding_size: usize,
    /// Shared layer groups.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Layer applications (default: as many as the teacher has layers).
    #[arg(long)]
    pub applications: Option<usize>,
    /// Training text: `suite` (every fetched corpus under assets/data, dev/test sentences of
    /// the offline suite held out), `suite:DIR` (another data folder), or `file:PATH` (one
    /// sentence per line; needs --held-out).
    #[arg(long, default_value = "suite")]
    pub corpus: String,
    /// Held-out sentences (one per line) the student is measured on; default for a suite
    /// corpus: every dev/test sentence of the offline suite.
    #[arg(long)]
    pub held_out: Option<PathBuf>,
    /// Measure on at most this many held-out sentences (a seeded sample).
    #[arg(long = "max-eval", alias = "max-held-out", default_value_t = 512)]
    pub max_held_out: usize,
    /// The offline suite's split seed whose dev/test sentences are held out.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Train for this many minutes (the learning rate decays over the budget).
    #[arg(long, conflicts_with = "steps")]
    pub time_budget: Option<f64>,
    /// Train for this many optimizer steps (deterministic for a seed; default 2000).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of the student's initialization, the sentence order and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Sentences per optimizer step.
    #[arg(long = "batch", alias = "batch-size", default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sentence; longer sentences are truncated.
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: usize,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// How the shared layer starts: mean (of the teacher layers it replaces), best-layer
    /// (the single teacher layer that scores best), or auto (the better of the two).
    #[arg(long, default_value = "auto")]
    pub init: String,
    /// Write the initialized student without training (the SVD-only ablation).
    #[arg(long)]
    pub init_only: bool,
    /// Continue from the run state a stopped run left next to --out.
    #[arg(long)]
    pub resume: bool,
    /// Replace an output directory that holds another model.
    #[arg(long)]
    pub force: bool,
    /// Minutes between run-state checkpoints.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Stop (keeping the run state) after this many steps of this invocation.
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<usize>,
    /// Print distill.json's summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Benchmark: run one warm-up and N timed optimizer steps of this recipe (batch
    /// --batch sentences of the corpus cut at --max-len), print one JSON line for
    /// `make bench` (median ms per step) and keep no output.
    #[arg(long, conflicts_with_all = ["out", "resume", "steps", "time_budget", "init_only"])]
    pub bench_steps: Option<usize>,
}

fn read_lines(path: &Path, flag: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let init = SharedInit::parse(&args.init)
        .with_context(|| format!("--init: {:?} is not mean, best-layer or auto", args.init))?;
    if !(args.checkpoint_minutes.is_finite() && args.checkpoint_minutes > 0.0) {
        bail!("--checkpoint-minutes must be a positive number");
    }
    let (corpus, source, default_held_out) = match args.corpus.split_once(':') {
        None if args.corpus == "suite" => suite(Path::new("assets/data"), args.split_seed)?,
        Some(("suite", dir)) => suite(Path::new(dir), args.split_seed)?,
        Some(("file", path)) => {
            let path = PathBuf::from(path);
            let lines = read_lines(&path, "--corpus")?;
            let source = serde_json::json!({"kind": "file", "path": path.display().to_string()});
            (lines, source, None)
        }
        _ => bail!(
            "--corpus: {:?} is not `suite`, `suite:DIR` or `file:PATH`",
            args.corpus
        ),
    };
    let held_out = match (&args.held_out, default_held_out) {
        (Some(p), _) => read_lines(p, "--held-out")?,
        (None, Some(h)) => h,
        (None, None) => bail!("--held-out FILE is needed with a file corpus"),
    };
    let held_out = adalbert_train::distill::sample(&held_out, args.max_held_out, args.seed);
    let stop = match (args.bench_steps, args.time_budget, args.steps) {
        (Some(0), _, _) => bail!("--bench-steps must be at least 1"),
        (Some(n), _, _) => Stop::Steps(n + 1),
        (None, Some(m), _) => Stop::Minutes(m),
        (None, None, Some(n)) => Stop::Steps(n),
        (None, None, None) => Stop::Steps(2000),
    };
    // A benchmark writes its student into a temporary directory, removed at the end.
    let scratch = match args.bench_steps {
        Some(_) => Some(tempfile::tempdir().context("--bench-steps: a temporary directory")?),
        None => None,
    };
    let out = match (&args.out, &scratch) {
        (Some(out), _) => out.clone(),
        (None, Some(dir)) => dir.path().join("student"),
        (None, None) => bail!("--out is required"),
    };
    let config = DistillConfig {
        embedding_size: args.embedding_size,
        groups: args.groups,
        applications: args.applications,
        stop,
        batch_size: args.batch_size,
        max_len: args.max_len,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        max_grad_norm: args.max_grad_norm,
        seed: args.seed,
        init,
        init_only: args.init_only,
        ..DistillConfig::default()
    };
    let job = DistillJob {
        teacher_dir: &args.teacher,
        out,
        config,
        corpus: &corpus,
        corpus_source: source,
        held_out: &held_out,
        resume: args.resume,
        force: args.force,
        progress: !args.json,
        checkpoint_seconds: args.checkpoint_minutes * 60.0,
        stop_after_steps: args.stop_after_steps,
    };
    let outcome = distill(job).with_context(|| format!("distilling {}", args.teacher.display()))?;
    let r = &outcome.record;
    if args.bench_steps.is_some() {
        return print_bench(&args, &outcome);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r.summary())?);
    } else {
        outln!(
            "wrote {} (seed {}): {} steps, {} tokens in {:.0} s; student {} parameters ({:.3} of the teacher's)",
            outcome.out.display(),
            r.seed,
            r.steps,
            r.tokens_seen,
            r.train_seconds,
            r.parameters.student,
            r.parameters.ratio
        );
        outln!(
            "held-out ({} sentences): mean cosine to the teacher {:.4} (min {:.4}); final loss {:.4}",
            r.held_out.sentences,
            r.held_out.mean_cosine,
            r.held_out.min_cosine,
            r.held_out.loss.total
        );
    }
    Ok(())
}

/// The `make bench` row of a `--bench-steps` run: median and fastest step after the warm-up
/// step, sentences and real tokens per second, the CPU and the kernels.
fn print_bench(
    args: &Args,
    outcome: &adalbert_train::distill::DistillOutcome,
) -> anyhow::Result<()> {
    let mut times: Vec<f64> = outcome
        .step_seconds
        .iter()
        .skip(1)
        .map(|s| s * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let Some(&ms_min) = times.first() else {
        bail!("--bench-steps: no timed step ran");
    };
    let ms = times[times.len() / 2];
    let r = &outcome.record;
    let tokens_per_step = r.tokens_seen as f64 / r.steps.max(1) as f64;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (cpu, flags) = adalbert_model::exec::Cpu::describe();
    let v = serde_json::json!({
        "engine": "adalbert",
        "variant": format!(
            "distill E{} x{}",
            args.embedding_size,
            r.recipe.applications.map_or("all".to_string(), |n| n.to_string())
        ),
        "shape": format!("{}x{}", args.batch_size, args.max_len),
        "ms": ms, "ms_min": ms_min, "iters": times.len(), "threads": threads,
        "examples_per_s": args.batch_size as f64 / (ms / 1e3),
        "tokens_per_s": tokens_per_step / (ms / 1e3),
        "loss": r.final_loss.map(|l| l.total),
        // The student trains on these fused ops (None: candle's composites); the teacher on the
        // inference kernels.
        "isa": match adalbert_model::TrainKernels::detect() {
            Some(k) if k.frozen_gemm => format!("{} fused training ops + GEMM", k.isa.name()),
            Some(k) => format!("{} fused training ops", k.isa.name()),
            None => "candle".to_string(),
        },
        "cpu": cpu, "cpu_flags": flags,
        "seed": r.seed,
    });
    outln!("{v}");
    Ok(())
}

type CorpusParts = (Vec<String>, serde_json::Value, Option<Vec<String>>);

fn suite(data: &Path, split_seed: u64) -> anyhow::Result<CorpusParts> {
    let corpus = adalbert_tasks::suite::corpus::distillation_corpus(data, split_seed)
        .with_context(|| format!("--corpus: building the corpus from {}", data.display()))?;
    let held_out = adalbert_tasks::suite::corpus::held_out_sentences(data, split_seed)
        .with_context(|| format!("--corpus: the held-out sentences of {}", data.display()))?;
    let source = serde_json::json!({
        "kind": "suite",
        "data": data.display().to_string(),
        "split_seed": split_seed,
        "sources": corpus.sources.iter().map(|s| serde_json::json!({"name": s.name, "sentences": s.sentences})).collect::<Vec<_>>(),
        "held_out_dropped": corpus.held_out_dropped,
        "duplicates": corpus.duplicates,
    });
    Ok((corpus.sentences, source, Some(held_out)))
}
