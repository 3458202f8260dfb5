//! `adalbert compress`: quantize / prune / bit-mask-encode the shared backbone, inject eNVM
//! faults, and measure what each costs in accuracy and bytes per task bundle. The runner, its
//! cache, the sweep-file vocabulary and the summary are `adalbert_experiment::sweep`.
//!
//! Two forms:
//! - flags: `--model DIR --bundle FILE... --plan SPEC... [--faults SPEC...] [--seeds N]`. Every
//!   `--plan` is crossed with every `--faults`; fault specs other than `none` run `--seeds N`
//!   seeds (`--first-seed`, `--first-seed + 1`, ...), `none` runs once.
//! - sweep: `--sweep FILE.toml` (see `configs/compression/minilm.toml`).

use std::path::PathBuf;

use adalbert_experiment::sweep::{self, Flags, Progress};

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory.
    #[arg(long, required_unless_present = "sweep")]
    model: Option<PathBuf>,
    /// Task bundle to evaluate (an adapter or head bundle trained on --model); repeat the flag
    /// for several.
    #[arg(long = "bundle", required_unless_present = "sweep")]
    bundles: Vec<PathBuf>,
    /// Compression plan, e.g. int8, af8e3+prune=0.5+bitmask (repeatable; grammar in
    /// `adalbert_compress::plan`).
    #[arg(long = "plan", required_unless_present = "sweep")]
    plans: Vec<String>,
    /// Fault spec, e.g. none, mlc:bpc=2:coding=gray:mask=slc, bitflip:rate=1e-6 (repeatable).
    #[arg(long = "faults")]
    faults: Vec<String>,
    /// Seeds per fault spec other than `none`.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Evaluate on the first N dev examples of each task.
    #[arg(long)]
    max_eval: Option<usize>,
    /// Tokens per input; longer inputs are truncated.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// GLUE task folder, or the offline suite's data folder (default assets/data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seed of the offline suite's train/dev/test split.
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Re-train the adapters for N epochs on the compressed backbone before evaluating.
    #[arg(long, default_value_t = 0)]
    recover_epochs: usize,
    /// Training examples for recovery (a seeded subset; default: the bundle's own setting).
    #[arg(long = "max-train", alias = "recover-train")]
    recover_train: Option<usize>,
    /// Work folder: cache, recovered bundles, and (flag form) the CSV and summary.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run a sweep file instead of the flags above.
    #[arg(long, conflicts_with_all = ["model", "bundles", "plans", "faults"])]
    sweep: Option<PathBuf>,
    /// Reuse finished points from the cache instead of recomputing them.
    #[arg(long)]
    resume: bool,
    /// Print every result row as JSON instead of the summary tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (spec, report) = match &args.sweep {
        Some(path) => sweep::load_sweep_file(path)?,
        None => Flags {
            model: args.model,
            bundles: args.bundles,
            plans: args.plans,
            faults: args.faults,
            seeds: args.seeds,
            first_seed: args.first_seed,
            max_eval: args.max_eval,
            max_len: args.max_len,
            data: args.data,
            split_seed: args.split_seed,
            recover_epochs: args.recover_epochs,
            recover_train: args.recover_train,
            out: args.out,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
        .into_sweep()?,
    };
    let progress = if args.json {
        Progress::Hidden
    } else {
        Progress::Bar
    };
    let outcome = sweep::run_sweep(&spec, &report, args.resume, progress)?;
    if args.json {
        for r in &outcome.rows {
            outln!("{}", serde_json::to_string(r)?);
        }
    } else {
        out!("{}", sweep::terminal_summary(&spec, &outcome.rows));
    }
    eprintln!(
        "{} rows in {:.0}s; CSV {}; summary {}",
        outcome.rows.len(),
        outcome.seconds,
        report.csv.display(),
        report.markdown.display()
    );
    Ok(())
}
