//! `adalbert compress`: quantize / prune / bit-mask-encode the shared backbone, inject eNVM
//! faults, and measure what each costs in accuracy (every bundle on its dev split) and bytes.
//!
//! Two forms:
//! - flags: `--model DIR --bundle FILE... --plan SPEC... [--faults SPEC...] [--seeds N]`. Every
//!   `--plan` is crossed with every `--faults`; fault specs other than `none` run `--seeds N`
//!   seeds (`--first-seed`, `--first-seed + 1`, ...), `none` runs once.
//! - sweep: `--sweep FILE.toml` (see `configs/compression/minilm.toml`): model, bundles, eval
//!   subset, output paths, report text, and `[[group]]`s, each the product formats x sparsity x
//!   encodings x fault specs (bits per cell are fault options) x seeds, plus explicit `plans`.
//!   A dense plan crossed with an MLC spec with `mask=mlc` is skipped (a dense layout has no
//!   mask, so it would repeat the `mask=slc` point).
//!
//! Outputs (written atomically): a CSV with one row per (point, task), a Markdown summary
//! (metric per task vs plan: mean, standard deviation and range over seeds; backbone bytes and
//! bytes per role), and one JSON cache file per (point, bundle) under `<out>/cache`, keyed by a
//! sha256 of the model weights, bundle file, plan, fault spec, seed, eval settings and recovery
//! settings. With `--resume`, cached points are read back instead of recomputed. Points whose
//! compressed weights are bit-identical (e.g. a fault run in which no cell flipped) share one
//! evaluation, found by the weights' sha256.
//!
//! `--recover-epochs N` re-trains each bundle's adapters for N epochs on the compressed backbone
//! (warm start from the bundle, at most `--recover-train` training examples) and evaluates the
//! recovered bundle; recovered bundles are written under `<out>/recovered`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use adalbert_compress::faults::MaskCells;
use adalbert_compress::{Encoding, FaultSpec, Plan, Report, TensorRole};
use adalbert_core::files::write_atomic;
use adalbert_model::checkpoint::{sha256_file, weights_file};
use adalbert_model::compression::compress_checkpoint;
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{
    Backbone, Checkpoint, EncoderConfig, TaskBundle, TaskModel, TaskParams, TrainMode,
};
use adalbert_tasks::{load_dataset, task_spec, Example, Split, TaskSpec};
use adalbert_train::eval::evaluate_model;
use adalbert_train::{train_from, Mode, Start, StartBackbone, TrainConfig, TrainJob};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever a change of code would change cached results.
const CACHE_VERSION: u32 = 1;

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory.
    #[arg(long, required_unless_present = "sweep")]
    model: Option<PathBuf>,
    /// Task bundles to evaluate (adapter or head bundles trained on --model).
    #[arg(long = "bundle", num_args = 1.., required_unless_present = "sweep")]
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
    #[arg(long)]
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

/// A sweep file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    model: PathBuf,
    bundles: Vec<PathBuf>,
    #[serde(default)]
    data: Option<PathBuf>,
    #[serde(default)]
    split_seed: u64,
    #[serde(default)]
    max_eval: Option<usize>,
    #[serde(default = "default_max_len")]
    max_len: usize,
    /// Work folder (cache, recovered bundles).
    out: PathBuf,
    /// CSV path (default `<out>/compression.csv`).
    #[serde(default)]
    csv: Option<PathBuf>,
    /// Markdown path (default `<out>/compression.md`).
    #[serde(default)]
    report: Option<PathBuf>,
    #[serde(default)]
    title: Option<String>,
    /// Markdown placed after the title.
    #[serde(default)]
    intro: String,
    /// Markdown placed after the tables.
    #[serde(default)]
    conclusions: String,
    /// The command that regenerates the report (shown in it).
    #[serde(default)]
    command: Option<String>,
    group: Vec<GroupSpec>,
}

fn default_max_len() -> usize {
    128
}

/// One `[[group]]`: a product of plan stages, fault specs and seeds.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    name: String,
    #[serde(default)]
    title: Option<String>,
    /// Markdown placed under the group's heading.
    #[serde(default)]
    about: String,
    /// Plans used as written.
    #[serde(default)]
    plans: Vec<String>,
    /// Formats crossed with `sparsity` and `encodings` (default `["fp32"]` when either is set).
    #[serde(default)]
    formats: Vec<String>,
    /// Pruning sparsities (0 = no prune stage).
    #[serde(default)]
    sparsity: Vec<f64>,
    /// Options appended to every prune stage, e.g. `global` or `global:emb`.
    #[serde(default)]
    prune: String,
    /// `dense` and/or `bitmask`.
    #[serde(default)]
    encodings: Vec<String>,
    /// Extra stages appended to every generated plan, e.g. `scope=matrices`.
    #[serde(default)]
    extra: Option<String>,
    /// Fault specs (default `["none"]`).
    #[serde(default)]
    faults: Vec<String>,
    /// Seeds per fault spec other than `none` (default 1).
    #[serde(default)]
    seeds: Option<u64>,
    #[serde(default)]
    first_seed: u64,
    #[serde(default)]
    recover_epochs: usize,
    #[serde(default)]
    recover_train: Option<usize>,
}

/// Everything one invocation does.
struct Job {
    model: PathBuf,
    bundles: Vec<PathBuf>,
    data: Option<PathBuf>,
    split_seed: u64,
    max_eval: Option<usize>,
    max_len: usize,
    out: PathBuf,
    csv: PathBuf,
    report: PathBuf,
    title: String,
    intro: String,
    conclusions: String,
    command: String,
    groups: Vec<GroupSpec>,
}

/// One point of a sweep.
#[derive(Clone)]
struct Point {
    group: usize,
    plan: Plan,
    faults: FaultSpec,
    seed: u64,
    recover_epochs: usize,
    recover_train: Option<usize>,
}

/// One result: a point evaluated on one task. Also the cache record.
#[derive(Clone, Serialize, Deserialize)]
struct Row {
    group: String,
    task: String,
    bundle: String,
    plan: String,
    faults: String,
    seed: u64,
    recover_epochs: usize,
    metric: String,
    value: f64,
    metrics: BTreeMap<String, f64>,
    n_eval: usize,
    /// Payload bits (values + masks) of the whole backbone checkpoint.
    payload_bits: u64,
    metadata_bits: u64,
    fp32_bits: u64,
    /// Payload bits per tensor role.
    role_bits: BTreeMap<String, u64>,
    numel: u64,
    nnz: u64,
    value_cells: u64,
    value_flipped_cells: u64,
    mask_cells: u64,
    mask_flipped_cells: u64,
    flipped_bits: u64,
    /// Codes lost or left over by bit-mask decoding after mask faults.
    decode_mismatches: u64,
    /// The fault model's mean per-cell misread probability (MLC faults only).
    analytic_cell_error_rate: Option<f64>,
    weights_sha256: String,
    /// Whether the evaluation was shared with a point of bit-identical weights.
    shared_eval: bool,
    seconds: f64,
}

/// A loaded bundle with its dev examples.
struct Loaded {
    bundle: TaskBundle,
    sha256: String,
    spec: TaskSpec,
    params: TaskParams,
    dev: Vec<Example>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let job = match &args.sweep {
        Some(path) => job_from_sweep(path)?,
        None => job_from_flags(&args)?,
    };
    let points = expand(&job.groups)?;
    let t0 = Instant::now();
    let rows = execute(&job, &points, args.resume, args.json)?;
    let elapsed = t0.elapsed().as_secs_f64();
    write_atomic(&job.csv, csv(&rows).as_bytes())
        .with_context(|| format!("writing {}", job.csv.display()))?;
    let md = markdown(&job, &rows, elapsed);
    write_atomic(&job.report, md.as_bytes())
        .with_context(|| format!("writing {}", job.report.display()))?;
    if args.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        for (gi, g) in job.groups.iter().enumerate() {
            println!("## {}\n", g.title.as_deref().unwrap_or(&g.name));
            println!("{}", summary_table(&rows, &job, gi));
            println!("{}", storage_table(&rows, &job, gi));
        }
    }
    eprintln!(
        "{} rows in {:.0}s; CSV {}; summary {}",
        rows.len(),
        elapsed,
        job.csv.display(),
        job.report.display()
    );
    Ok(())
}

fn job_from_flags(args: &Args) -> anyhow::Result<Job> {
    let (Some(model), false) = (&args.model, args.bundles.is_empty()) else {
        bail!("give --model DIR and at least one --bundle FILE, or --sweep FILE.toml");
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/compress"));
    let group = GroupSpec {
        name: "cli".into(),
        title: Some("Results".into()),
        plans: args.plans.clone(),
        faults: args.faults.clone(),
        seeds: Some(args.seeds),
        first_seed: args.first_seed,
        recover_epochs: args.recover_epochs,
        recover_train: args.recover_train,
        ..GroupSpec::default()
    };
    Ok(Job {
        model: model.clone(),
        bundles: args.bundles.clone(),
        data: args.data.clone(),
        split_seed: args.split_seed,
        max_eval: args.max_eval,
        max_len: args.max_len,
        csv: out.join("compression.csv"),
        report: out.join("compression.md"),
        out,
        title: "Backbone compression".into(),
        intro: String::new(),
        conclusions: String::new(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        groups: vec![group],
    })
}

fn job_from_sweep(path: &Path) -> anyhow::Result<Job> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sweep file {}", path.display()))?;
    let s: SweepFile =
        toml::from_str(&text).with_context(|| format!("parsing sweep file {}", path.display()))?;
    if s.group.is_empty() {
        bail!("{}: no [[group]] tables", path.display());
    }
    if s.bundles.is_empty() {
        bail!("{}: `bundles` is empty", path.display());
    }
    Ok(Job {
        csv: s.csv.unwrap_or_else(|| s.out.join("compression.csv")),
        report: s.report.unwrap_or_else(|| s.out.join("compression.md")),
        model: s.model,
        bundles: s.bundles,
        data: s.data,
        split_seed: s.split_seed,
        max_eval: s.max_eval,
        max_len: s.max_len,
        out: s.out,
        title: s.title.unwrap_or_else(|| "Backbone compression".into()),
        intro: s.intro,
        conclusions: s.conclusions,
        command: s
            .command
            .unwrap_or_else(|| format!("adalbert compress --sweep {}", path.display())),
        groups: s.group,
    })
}

/// The points of every group, in order: plans x faults x seeds.
fn expand(groups: &[GroupSpec]) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let ctx = || format!("group `{}`", g.name);
        let mut plan_texts = g.plans.clone();
        if !(g.formats.is_empty() && g.sparsity.is_empty() && g.encodings.is_empty()) {
            let formats = non_empty(&g.formats, "fp32");
            let encodings = non_empty(&g.encodings, "dense");
            let sparsity = if g.sparsity.is_empty() {
                vec![0.0]
            } else {
                g.sparsity.clone()
            };
            for f in &formats {
                for &s in &sparsity {
                    for e in &encodings {
                        let mut p = f.clone();
                        if s != 0.0 {
                            write!(p, "+prune={s}")?;
                            if !g.prune.is_empty() {
                                write!(p, ":{}", g.prune)?;
                            }
                        }
                        if e != "dense" {
                            write!(p, "+{e}")?;
                        }
                        if let Some(x) = &g.extra {
                            write!(p, "+{x}")?;
                        }
                        plan_texts.push(p);
                    }
                }
            }
        }
        if plan_texts.is_empty() {
            bail!("{}: no plans (give `plans` or `formats`/`sparsity`)", ctx());
        }
        let faults = non_empty(&g.faults, "none");
        let seeds = g.seeds.unwrap_or(1);
        if seeds == 0 {
            bail!("{}: seeds must be at least 1", ctx());
        }
        for p in &plan_texts {
            let plan: Plan = p
                .parse()
                .with_context(|| format!("{}: plan `{p}`", ctx()))?;
            for f in &faults {
                let fs: FaultSpec = f
                    .parse()
                    .with_context(|| format!("{}: faults `{f}`", ctx()))?;
                if !faults_matter(&plan, &fs) {
                    continue;
                }
                let n = if fs == FaultSpec::None { 1 } else { seeds };
                for seed in g.first_seed..g.first_seed + n {
                    points.push(Point {
                        group: gi,
                        plan,
                        faults: fs,
                        seed,
                        recover_epochs: g.recover_epochs,
                        recover_train: g.recover_train,
                    });
                }
            }
        }
    }
    Ok(points)
}

/// False for a dense layout with an MLC spec that puts the mask in MLC cells: a dense layout
/// has no mask, so the point would repeat its `mask=slc` twin.
fn faults_matter(plan: &Plan, faults: &FaultSpec) -> bool {
    !matches!(
        (plan.encoding, faults),
        (Encoding::Dense, FaultSpec::Mlc(m)) if m.mask == MaskCells::Mlc
    )
}

fn non_empty(v: &[String], default: &str) -> Vec<String> {
    if v.is_empty() {
        vec![default.to_string()]
    } else {
        v.to_vec()
    }
}

fn sha_hex(parts: &serde_json::Value) -> String {
    let digest = Sha256::digest(parts.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn execute(job: &Job, points: &[Point], resume: bool, quiet: bool) -> anyhow::Result<Vec<Row>> {
    let model_dir = &job.model;
    let config = EncoderConfig::from_path(model_dir)
        .with_context(|| format!("loading the config of {}", model_dir.display()))?;
    let weights = weights_file(model_dir)?;
    let model_sha = sha256_file(&weights)?;
    let ck = Checkpoint::open(model_dir)
        .with_context(|| format!("loading weights from {}", model_dir.display()))?;
    let tok = Tokenizer::from_dir(model_dir, job.max_len)?;
    let loaded = job
        .bundles
        .iter()
        .map(|p| load_bundle(p, job, &config, &model_sha))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_dir = job.out.join("cache");
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new((points.len() * loaded.len()) as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    // Evaluations by (weights sha, bundle index), shared between bit-identical points.
    let mut evals: HashMap<(String, usize), BTreeMap<String, f64>> = HashMap::new();
    let mut rows = Vec::with_capacity(points.len() * loaded.len());
    for point in points {
        let group = &job.groups[point.group].name;
        bar.set_message(format!("{group}: {} | {}", point.plan, point.faults));
        let keys: Vec<String> = loaded
            .iter()
            .map(|l| point_key(point, job, &model_sha, &l.sha256))
            .collect();
        let cached: Vec<Option<Row>> = keys
            .iter()
            .map(|k| resume.then(|| read_cache(&cache_dir, k)).flatten())
            .collect();
        if cached.iter().all(Option::is_some) {
            for mut r in cached.into_iter().flatten() {
                r.group = group.clone();
                rows.push(r);
                bar.inc(1);
            }
            continue;
        }
        let t_point = Instant::now();
        let c = compress_checkpoint(&ck, &point.plan, &point.faults, point.seed)
            .with_context(|| format!("applying plan `{}`", point.plan))?;
        let backbone = Backbone::load(&c.checkpoint, &config)?;
        let stats = StorageStats::of(&c.report, &point.faults);
        let compress_seconds = t_point.elapsed().as_secs_f64();
        for (bi, l) in loaded.iter().enumerate() {
            if let Some(r) = &cached[bi] {
                let mut r = r.clone();
                r.group = group.clone();
                rows.push(r);
                bar.inc(1);
                continue;
            }
            let t0 = Instant::now();
            let (metrics, shared) = if point.recover_epochs > 0 {
                let m = recover(job, point, l, &c, &keys[bi], quiet)?;
                (m, false)
            } else {
                let eval_key = sha_hex(&serde_json::json!({
                    "v": CACHE_VERSION, "weights": c.sha256, "bundle": l.sha256,
                    "n_eval": l.dev.len(), "max_len": job.max_len, "split_seed": job.split_seed,
                }));
                if let Some(m) = evals.get(&(c.sha256.clone(), bi)) {
                    (m.clone(), true)
                } else if let Some(m) = resume
                    .then(|| read_eval_cache(&cache_dir, &eval_key))
                    .flatten()
                {
                    (m, true)
                } else {
                    let model = TaskModel {
                        backbone: &backbone,
                        task: &l.params,
                        layout: &l.bundle.meta.layout,
                    };
                    let m: BTreeMap<String, f64> =
                        evaluate_model(&model, &tok, &l.spec, &l.dev, 64)
                            .with_context(|| format!("evaluating {}", l.bundle.path.display()))?
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect();
                    write_json(&cache_dir.join(format!("eval-{eval_key}.json")), &m)?;
                    (m, false)
                }
            };
            evals.insert((c.sha256.clone(), bi), metrics.clone());
            let metric = l.spec.primary.name().to_string();
            let value = metrics.get(&metric).copied().unwrap_or(f64::NAN);
            let row = Row {
                group: group.clone(),
                task: l.bundle.meta.task.clone(),
                bundle: l.bundle.path.display().to_string(),
                plan: point.plan.to_string(),
                faults: point.faults.to_string(),
                seed: point.seed,
                recover_epochs: point.recover_epochs,
                metric,
                value,
                metrics,
                n_eval: l.dev.len(),
                payload_bits: stats.payload_bits,
                metadata_bits: stats.metadata_bits,
                fp32_bits: stats.fp32_bits,
                role_bits: stats.role_bits.clone(),
                numel: stats.numel,
                nnz: stats.nnz,
                value_cells: stats.value_cells,
                value_flipped_cells: stats.value_flipped_cells,
                mask_cells: stats.mask_cells,
                mask_flipped_cells: stats.mask_flipped_cells,
                flipped_bits: stats.flipped_bits,
                decode_mismatches: stats.decode_mismatches,
                analytic_cell_error_rate: stats.analytic_rate,
                weights_sha256: c.sha256.clone(),
                shared_eval: shared,
                seconds: t0.elapsed().as_secs_f64() + compress_seconds / loaded.len() as f64,
            };
            write_json(&cache_dir.join(format!("{}.json", keys[bi])), &row)?;
            rows.push(row);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

fn load_bundle(
    path: &Path,
    job: &Job,
    config: &EncoderConfig,
    model_sha: &str,
) -> anyhow::Result<Loaded> {
    let bundle =
        TaskBundle::load(path).with_context(|| format!("loading bundle {}", path.display()))?;
    if bundle.meta.mode == TrainMode::Full {
        bail!(
            "{} is a full fine-tuning bundle with its own backbone; compress evaluates adapter and head bundles on the shared backbone",
            path.display()
        );
    }
    bundle.check_backbone(model_sha)?;
    let sha256 = sha256_file(path)?;
    let spec = task_spec(&bundle.meta.task)?;
    let mut data = load_dataset(
        &bundle.meta.task,
        job.data.as_deref(),
        Split::Dev,
        job.split_seed,
    )
    .with_context(|| format!("loading the dev split of `{}`", bundle.meta.task))?;
    if let Some(n) = job.max_eval {
        data.examples.truncate(n);
    }
    let params = bundle.task_params(config)?;
    Ok(Loaded {
        bundle,
        sha256,
        spec,
        params,
        dev: data.examples,
    })
}

fn point_key(p: &Point, job: &Job, model_sha: &str, bundle_sha: &str) -> String {
    sha_hex(&serde_json::json!({
        "v": CACHE_VERSION, "tool": env!("CARGO_PKG_VERSION"), "model": model_sha,
        "bundle": bundle_sha, "plan": p.plan.to_string(), "faults": p.faults.to_string(),
        "seed": p.seed, "max_eval": job.max_eval, "max_len": job.max_len,
        "split_seed": job.split_seed, "recover_epochs": p.recover_epochs,
        "recover_train": p.recover_train,
    }))
}

fn read_cache(dir: &Path, key: &str) -> Option<Row> {
    let text = std::fs::read_to_string(dir.join(format!("{key}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn read_eval_cache(dir: &Path, key: &str) -> Option<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(dir.join(format!("eval-{key}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Re-trains a bundle's task tensors on the compressed backbone; returns the recovered
/// bundle's dev metrics (its best epoch, on the same dev examples).
fn recover(
    job: &Job,
    point: &Point,
    l: &Loaded,
    c: &adalbert_model::compression::CompressedCheckpoint,
    key: &str,
    quiet: bool,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let meta = &l.bundle.meta;
    let layout = &meta.layout;
    let mode = match (&layout.adapter, meta.mode) {
        (Some(spec), TrainMode::Adapter) => Mode::Adapter {
            spec: *spec,
            sharing: layout.sharing,
        },
        (None, TrainMode::Head) => Mode::Head,
        _ => bail!(
            "{}: cannot recover a bundle of mode {}",
            l.bundle.path.display(),
            meta.mode.as_str()
        ),
    };
    let base: TrainConfig = meta
        .training
        .get("config")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let config = TrainConfig {
        epochs: point.recover_epochs,
        max_len: job.max_len,
        max_train_examples: point.recover_train.or(base.max_train_examples),
        max_eval_examples: Some(l.dev.len()),
        patience: None,
        ..base
    };
    let train_set = load_dataset(
        &meta.task,
        job.data.as_deref(),
        Split::Train,
        job.split_seed,
    )
    .with_context(|| format!("loading the training split of `{}`", meta.task))?;
    let out =
        job.out
            .join("recovered")
            .join(format!("{}-{}.bundle.safetensors", &key[..16], meta.task));
    let outcome = train_from(
        TrainJob {
            model_dir: &job.model,
            task: &l.spec,
            train: &train_set.examples,
            dev: &l.dev,
            mode,
            pooling: layout.pooling,
            train_pooler: layout.pooler,
            config,
            out,
            resume: false,
            progress: !quiet,
            stop_after_epochs: None,
        },
        Start {
            backbone: Some(StartBackbone {
                checkpoint: &c.checkpoint,
                sha256: c.sha256.clone(),
                note: serde_json::json!({
                    "plan": point.plan.to_string(), "faults": point.faults.to_string(),
                    "seed": point.seed, "base_model": job.model, "recovered_from": l.bundle.path,
                }),
            }),
            init: Some(&l.bundle.tensors),
        },
    )
    .with_context(|| format!("recovery training of {}", l.bundle.path.display()))?;
    Ok(outcome.meta.metrics)
}

/// Storage and fault figures of one compressed backbone.
struct StorageStats {
    payload_bits: u64,
    metadata_bits: u64,
    fp32_bits: u64,
    role_bits: BTreeMap<String, u64>,
    numel: u64,
    nnz: u64,
    value_cells: u64,
    value_flipped_cells: u64,
    mask_cells: u64,
    mask_flipped_cells: u64,
    flipped_bits: u64,
    decode_mismatches: u64,
    analytic_rate: Option<f64>,
}

impl StorageStats {
    fn of(r: &Report, faults: &FaultSpec) -> Self {
        let decode_mismatches = r
            .tensors
            .iter()
            .map(|t| (t.decode.missing_codes + t.decode.unused_codes) as u64)
            .sum();
        let analytic_rate = match faults {
            FaultSpec::Mlc(m) => m.model().ok().map(|m| m.mean_cell_error_rate()),
            _ => None,
        };
        StorageStats {
            payload_bits: r.total.payload_bits(),
            metadata_bits: r.total.metadata_bits,
            fp32_bits: r.total.numel * 32,
            role_bits: r
                .by_role
                .iter()
                .map(|s| (s.role.as_str().to_string(), s.storage.payload_bits()))
                .collect(),
            numel: r.total.numel,
            nnz: r.total.nnz,
            value_cells: r.value_faults.cells,
            value_flipped_cells: r.value_faults.flipped_cells,
            mask_cells: r.mask_faults.cells,
            mask_flipped_cells: r.mask_faults.flipped_cells,
            flipped_bits: r.value_faults.flipped_bits + r.mask_faults.flipped_bits,
            decode_mismatches,
            analytic_rate,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Outputs

const CSV_HEADER: &str = "group,task,plan,faults,seed,recover_epochs,metric,value,n_eval,\
backbone_bytes,backbone_mb,compression_vs_fp32,metadata_bytes,bytes_embedding,bytes_matrix,\
bytes_bias,bytes_norm,bytes_other,numel,nnz,value_cells,value_flipped_cells,mask_cells,\
mask_flipped_cells,flipped_bits,decode_mismatches,analytic_cell_error_rate,weights_sha256,\
shared_eval,seconds";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn role_bytes(r: &Row, role: TensorRole) -> u64 {
    r.role_bits
        .get(role.as_str())
        .copied()
        .unwrap_or(0)
        .div_ceil(8)
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fields = [
            csv_field(&r.group),
            csv_field(&r.task),
            csv_field(&r.plan),
            csv_field(&r.faults),
            r.seed.to_string(),
            r.recover_epochs.to_string(),
            csv_field(&r.metric),
            format!("{:.6}", r.value),
            r.n_eval.to_string(),
            r.payload_bits.div_ceil(8).to_string(),
            format!("{:.4}", r.payload_bits as f64 / 8e6),
            format!("{:.3}", r.fp32_bits as f64 / r.payload_bits.max(1) as f64),
            r.metadata_bits.div_ceil(8).to_string(),
            role_bytes(r, TensorRole::Embedding).to_string(),
            role_bytes(r, TensorRole::Matrix).to_string(),
            role_bytes(r, TensorRole::Bias).to_string(),
            role_bytes(r, TensorRole::Norm).to_string(),
            role_bytes(r, TensorRole::Other).to_string(),
            r.numel.to_string(),
            r.nnz.to_string(),
            r.value_cells.to_string(),
            r.value_flipped_cells.to_string(),
            r.mask_cells.to_string(),
            r.mask_flipped_cells.to_string(),
            r.flipped_bits.to_string(),
            r.decode_mismatches.to_string(),
            r.analytic_cell_error_rate
                .map(|v| format!("{v:.3e}"))
                .unwrap_or_default(),
            r.weights_sha256.clone(),
            r.shared_eval.to_string(),
            format!("{:.2}", r.seconds),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Mean, sample standard deviation, min and max.
fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

fn fmt_stats(v: &[f64]) -> String {
    let (mean, sd, min, max) = stats(v);
    if v.len() > 1 {
        format!("{mean:.4} ± {sd:.4} ({min:.3}–{max:.3})")
    } else {
        format!("{mean:.4}")
    }
}

/// Tasks in bundle order.
fn tasks(rows: &[Row]) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    for r in rows {
        if !t.contains(&r.task) {
            t.push(r.task.clone());
        }
    }
    t
}

/// The fp32, fault-free, unrecovered metric of each task (the reference for deltas).
fn baselines(rows: &[Row]) -> HashMap<String, f64> {
    rows.iter()
        .filter(|r| r.plan == "fp32" && r.faults == "none" && r.recover_epochs == 0)
        .map(|r| (r.task.clone(), r.value))
        .collect()
}

type ConfigKey = (String, String, usize);

/// The rows of group `gi`, by (plan, faults, recover epochs) in first-seen order.
fn configs<'a>(rows: &'a [Row], job: &Job, gi: usize) -> Vec<(ConfigKey, Vec<&'a Row>)> {
    let name = &job.groups[gi].name;
    let mut out: Vec<(ConfigKey, Vec<&'a Row>)> = Vec::new();
    for r in rows.iter().filter(|r| &r.group == name) {
        let k = (r.plan.clone(), r.faults.clone(), r.recover_epochs);
        match out.iter_mut().find(|(kk, _)| *kk == k) {
            Some((_, v)) => v.push(r),
            None => out.push((k, vec![r])),
        }
    }
    out
}

/// A mean count: one decimal below 100 when it is not whole (e.g. 0.3 flips per seed).
fn fmt_count(v: f64) -> String {
    if v < 100.0 && v.fract() != 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn mb(bits: u64) -> f64 {
    bits as f64 / 8e6
}

fn summary_table(rows: &[Row], job: &Job, gi: usize) -> String {
    let ts = tasks(rows);
    let base = baselines(rows);
    let cfgs = configs(rows, job, gi);
    let any_faults = cfgs.iter().any(|((_, f, _), _)| f != "none");
    let any_recovery = cfgs.iter().any(|((_, _, e), _)| *e > 0);
    let mut s = String::from("| plan |");
    if any_faults {
        s.push_str(" faults | seeds | flipped cells (values / mask) |");
    }
    if any_recovery {
        s.push_str(" recovery epochs |");
    }
    s.push_str(" backbone MB | x fp32 |");
    for t in &ts {
        let metric = rows
            .iter()
            .find(|r| &r.task == t)
            .map(|r| r.metric.as_str())
            .unwrap_or("");
        write!(s, " {t} ({metric}) |").ok();
    }
    s.push_str(" mean Δ vs fp32 |\n|");
    let cols = 1 + if any_faults { 3 } else { 0 } + usize::from(any_recovery) + 2 + ts.len() + 1;
    s.push_str(&"---|".repeat(cols));
    s.push('\n');
    for ((plan, faults, rec), group_rows) in &cfgs {
        let first = group_rows[0];
        write!(s, "| `{plan}` |").ok();
        if any_faults {
            let seeds: Vec<u64> = {
                let mut v: Vec<u64> = group_rows.iter().map(|r| r.seed).collect();
                v.sort();
                v.dedup();
                v
            };
            let per_seed = |f: fn(&Row) -> u64| -> Vec<f64> {
                seeds
                    .iter()
                    .filter_map(|sd| group_rows.iter().find(|r| r.seed == *sd))
                    .map(|r| f(r) as f64)
                    .collect()
            };
            let vf = per_seed(|r| r.value_flipped_cells);
            let mf = per_seed(|r| r.mask_flipped_cells);
            let (vm, _, _, _) = stats(&vf);
            let (mm, _, _, _) = stats(&mf);
            let seed_text = if seeds.len() > 1 {
                format!("{}–{}", seeds[0], seeds[seeds.len() - 1])
            } else {
                seeds[0].to_string()
            };
            write!(
                s,
                " `{faults}` | {seed_text} | {} / {} of {} / {} |",
                fmt_count(vm),
                fmt_count(mm),
                first.value_cells,
                first.mask_cells
            )
            .ok();
        }
        if any_recovery {
            write!(s, " {rec} |").ok();
        }
        write!(
            s,
            " {:.2} | {:.2} |",
            mb(first.payload_bits),
            first.fp32_bits as f64 / first.payload_bits.max(1) as f64
        )
        .ok();
        let mut deltas = Vec::new();
        for t in &ts {
            let v: Vec<f64> = group_rows
                .iter()
                .filter(|r| &r.task == t)
                .map(|r| r.value)
                .collect();
            if v.is_empty() {
                s.push_str(" – |");
                continue;
            }
            write!(s, " {} |", fmt_stats(&v)).ok();
            if let Some(b) = base.get(t) {
                deltas.push(stats(&v).0 - b);
            }
        }
        if deltas.len() == ts.len() && !deltas.is_empty() {
            let d = deltas.iter().sum::<f64>() / deltas.len() as f64;
            writeln!(s, " {:+.1} pts |", 100.0 * d).ok();
        } else {
            s.push_str(" – |\n");
        }
    }
    s
}

fn storage_table(rows: &[Row], job: &Job, gi: usize) -> String {
    let mut s = String::from(
        "| plan | embedding MB | matrix MB | bias MB | norm MB | backbone MB (payload) | metadata bytes | non-zero codes |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut seen = Vec::new();
    for ((plan, _, _), group_rows) in configs(rows, job, gi) {
        if seen.contains(&plan) {
            continue;
        }
        let r = group_rows[0];
        let role = |name: &str| mb(r.role_bits.get(name).copied().unwrap_or(0));
        writeln!(
            s,
            "| `{plan}` | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1}% |",
            role("embedding"),
            role("matrix"),
            role("bias"),
            role("norm"),
            mb(r.payload_bits),
            r.metadata_bits.div_ceil(8),
            100.0 * r.nnz as f64 / r.numel.max(1) as f64
        )
        .ok();
        seen.push(plan);
    }
    s
}

fn markdown(job: &Job, rows: &[Row], elapsed: f64) -> String {
    let mut s = format!("# {}\n\n", job.title);
    s.push_str(
        "<!-- Generated by `adalbert compress`; edit the sweep file, not this file. -->\n\n",
    );
    if !job.intro.trim().is_empty() {
        s.push_str(job.intro.trim());
        s.push_str("\n\n");
    }
    s.push_str("## Setup\n\n");
    writeln!(s, "Regenerate with: `{}`\n", job.command).ok();
    writeln!(
        s,
        "- Model: `{}`; evaluation on the first {} dev examples of each task, max_len {}, \
         offline-suite split seed {}.",
        job.model.display(),
        job.max_eval.map_or("all".to_string(), |n| n.to_string()),
        job.max_len,
        job.split_seed
    )
    .ok();
    writeln!(
        s,
        "- {} result rows; {:.0} s of compression and evaluation in all (rows read back from the \
         cache keep the time they took; this invocation ran {:.0} s).",
        rows.len(),
        rows.iter().map(|r| r.seconds).sum::<f64>(),
        elapsed
    )
    .ok();
    s.push_str("- Bundles:\n\n| task | bundle | mode | adapter | train examples | epochs | lr | max_len | seed | dev metric at training |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &job.bundles {
        if let Ok(b) = TaskBundle::load(p) {
            let tr = &b.meta.training;
            let cfg = &tr["config"];
            let adapter = b
                .meta
                .layout
                .adapter
                .as_ref()
                .map(|a| format!("{a} ({})", b.meta.layout.sharing.as_str()))
                .unwrap_or_else(|| "–".into());
            let metrics: Vec<String> = b
                .meta
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            writeln!(
                s,
                "| {} | `{}` | {} | {adapter} | {} | {} | {} | {} | {} | {} |",
                b.meta.task,
                p.display(),
                b.meta.mode.as_str(),
                tr["train_examples"],
                cfg["epochs"],
                cfg["lr"],
                cfg["max_len"],
                b.meta.seed,
                metrics.join(", ")
            )
            .ok();
        }
    }
    s.push('\n');
    s.push_str(
        "Metric cells are the task's primary dev metric; with several seeds they read \
         `mean ± sample sd (min–max)`. \"backbone MB\" is the stored payload of the whole \
         checkpoint (values + bit masks, REFERENCE §6 formula; tensors a plan leaves alone count \
         at 32 bits); per-tensor scales and bias registers are the \"metadata bytes\". \
         \"x fp32\" is the fp32 size over the payload. \"mean Δ vs fp32\" averages, over tasks, \
         the difference to the uncompressed fp32 backbone, in points.\n\n",
    );
    for (gi, g) in job.groups.iter().enumerate() {
        writeln!(s, "## {}\n", g.title.as_deref().unwrap_or(&g.name)).ok();
        if !g.about.trim().is_empty() {
            s.push_str(g.about.trim());
            s.push_str("\n\n");
        }
        s.push_str(&summary_table(rows, job, gi));
        s.push('\n');
        s.push_str("Storage by tensor role:\n\n");
        s.push_str(&storage_table(rows, job, gi));
        s.push('\n');
    }
    if !job.conclusions.trim().is_empty() {
        s.push_str(job.conclusions.trim());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(toml_text: &str) -> GroupSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn groups_expand_to_the_product_with_one_seed_for_no_faults() {
        let g = group(
            r#"
            name = "g"
            formats = ["int8", "af8e3"]
            sparsity = [0.0, 0.5]
            encodings = ["dense", "bitmask"]
            faults = ["none", "mlc:bpc=3"]
            seeds = 3
            first_seed = 10
            "#,
        );
        let pts = expand(&[g]).unwrap();
        // 2 formats x 2 sparsities x 2 encodings = 8 plans; per plan 1 (none) + 3 seeds.
        assert_eq!(pts.len(), 8 * 4);
        assert_eq!(pts[0].plan.to_string(), "int8:per-tensor:sym");
        assert_eq!(
            pts[4].plan.to_string(),
            "int8:per-tensor:sym+bitmask",
            "encodings vary fastest"
        );
        assert_eq!(
            pts[8].plan.to_string(),
            "int8:per-tensor:sym+prune=0.5:per-tensor"
        );
        let seeds: Vec<u64> = pts[..4].iter().map(|p| p.seed).collect();
        assert_eq!(seeds, [10, 10, 11, 12]);
        assert_eq!(pts[0].faults, FaultSpec::None);
        let g = group(
            "name = \"m\"\nplans = [\"int8\", \"int8+bitmask\"]\nfaults = [\"mlc:bpc=2:mask=mlc\"]",
        );
        let pts = expand(&[g]).unwrap();
        assert_eq!(
            pts.len(),
            1,
            "the dense twin of a mask=mlc point is skipped"
        );
        assert_eq!(pts[0].plan.encoding, Encoding::Bitmask);
    }

    #[test]
    fn invalid_plans_and_faults_name_the_group() {
        let bad = |t: &str| expand(&[group(t)]).err().unwrap();
        let e = format!("{:#}", bad("name = \"x\"\nplans = [\"int12\"]"));
        assert!(e.contains("group `x`") && e.contains("int12"), "{e}");
        let e = format!("{:#}", bad("name = \"y\"\nsparsity = [1.0]"));
        assert!(e.contains("group `y`") && e.contains("sparsity"), "{e}");
        let e = format!(
            "{:#}",
            bad("name = \"z\"\nplans = [\"fp32\"]\nfaults = [\"mlc:bpc=4\"]")
        );
        assert!(e.contains("group `z`") && e.contains("bpc"), "{e}");
        let e = format!("{:#}", bad("name = \"w\""));
        assert!(e.contains("no plans"), "{e}");
        assert!(toml::from_str::<GroupSpec>("name = \"v\"\nformat = [\"int8\"]").is_err());
    }

    fn row(plan: &str, faults: &str, seed: u64, task: &str, value: f64) -> Row {
        Row {
            group: "g".into(),
            task: task.into(),
            bundle: "b".into(),
            plan: plan.into(),
            faults: faults.into(),
            seed,
            recover_epochs: 0,
            metric: "accuracy".into(),
            value,
            metrics: BTreeMap::new(),
            n_eval: 10,
            payload_bits: 8_000_000,
            metadata_bits: 64,
            fp32_bits: 32_000_000,
            role_bits: BTreeMap::from([("matrix".to_string(), 8_000_000)]),
            numel: 1_000_000,
            nnz: 500_000,
            value_cells: 4,
            value_flipped_cells: seed,
            mask_cells: 0,
            mask_flipped_cells: 0,
            flipped_bits: seed,
            decode_mismatches: 0,
            analytic_cell_error_rate: None,
            weights_sha256: "s".into(),
            shared_eval: false,
            seconds: 1.0,
        }
    }

    #[test]
    fn summary_aggregates_seeds_and_deltas() {
        let job = Job {
            model: "m".into(),
            bundles: vec![],
            data: None,
            split_seed: 0,
            max_eval: Some(10),
            max_len: 64,
            out: "o".into(),
            csv: "o/c.csv".into(),
            report: "o/r.md".into(),
            title: "t".into(),
            intro: String::new(),
            conclusions: String::new(),
            command: "c".into(),
            groups: vec![GroupSpec {
                name: "g".into(),
                ..GroupSpec::default()
            }],
        };
        let rows = vec![
            row("fp32", "none", 0, "a", 0.9),
            row("int4", "mlc:bpc=3", 0, "a", 0.7),
            row("int4", "mlc:bpc=3", 1, "a", 0.8),
        ];
        let t = summary_table(&rows, &job, 0);
        assert!(t.contains("| `int4` | `mlc:bpc=3` | 0–1 |"), "{t}");
        assert!(t.contains("0.7500 ± 0.0707 (0.700–0.800)"), "{t}");
        assert!(t.contains("-15.0 pts"), "{t}");
        assert!(t.contains("| 1.00 | 4.00 |"), "{t}");
        let c = csv(&rows);
        assert_eq!(c.lines().count(), 4);
        assert!(c.lines().next().unwrap().starts_with("group,task,plan"));
        let header_cols = c.lines().next().unwrap().split(',').count();
        assert!(c.lines().all(|l| l.split(',').count() == header_cols));
        assert!(c.contains(",1000000,1.0000,4.000,8,0,1000000,"), "{c}");
    }
}
