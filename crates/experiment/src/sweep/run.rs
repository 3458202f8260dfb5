//! Executing sweep points: compress the backbone once per point, evaluate (or first re-train)
//! every bundle on it, and cache one [`Row`] per (point, bundle).
//!
//! Points whose compressed weights are bit-identical (e.g. a fault run in which no cell
//! flipped, or a dense and a bit-mask layout of the same codes) share one evaluation, found by
//! the weights' sha256.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use adalbert_compress::{FaultSpec, Report};
use adalbert_model::checkpoint::{sha256_file, weights_file};
use adalbert_model::compression::{compress_checkpoint, CompressedCheckpoint};
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{
    Backbone, BackboneId, Checkpoint, EncoderConfig, TaskBundle, TaskModel, TaskParams, TrainMode,
};
use adalbert_tasks::{load_dataset, Dataset, Example, FileTask, Split, TaskSpec};
use adalbert_train::eval::evaluate_model;
use adalbert_train::{train_from, Mode, Start, StartBackbone, TrainConfig, TrainJob};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::{BundleSource, Point, Sweep};
use crate::cache::{real, Cache, Key};
use crate::error::{Context, ExperimentError, Result};

/// Batch size of every dev-set evaluation.
const EVAL_BATCH: usize = 64;

fn is_dev(split: &&str) -> bool {
    *split == Split::Dev.name()
}

/// One result: a point evaluated on one task. Also the cache record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub group: String,
    pub task: String,
    pub bundle: String,
    /// The plan in canonical form.
    pub plan: String,
    /// The fault spec in canonical form.
    pub faults: String,
    pub seed: u64,
    pub recover_epochs: usize,
    pub metric: String,
    #[serde(with = "real")]
    pub value: f64,
    #[serde(with = "real::map")]
    pub metrics: BTreeMap<String, f64>,
    pub n_eval: usize,
    /// Payload bits (values + masks) of the whole backbone checkpoint.
    pub payload_bits: u64,
    pub metadata_bits: u64,
    pub fp32_bits: u64,
    /// Payload bits per tensor role.
    pub role_bits: BTreeMap<String, u64>,
    /// Metadata bits (scales, bias registers) per tensor role.
    pub role_metadata_bits: BTreeMap<String, u64>,
    pub numel: u64,
    pub nnz: u64,
    pub value_cells: u64,
    pub value_flipped_cells: u64,
    pub mask_cells: u64,
    pub mask_flipped_cells: u64,
    pub flipped_bits: u64,
    /// Codes lost or left over by bit-mask decoding after mask faults.
    pub decode_mismatches: u64,
    /// The fault model's mean per-cell misread probability (MLC faults only).
    #[serde(with = "real::option")]
    pub analytic_cell_error_rate: Option<f64>,
    pub weights_sha256: String,
    /// Whether the evaluation was shared with a point of bit-identical weights.
    pub shared_eval: bool,
    #[serde(with = "real")]
    pub seconds: f64,
}

impl Row {
    /// Payload plus metadata of the whole backbone, in bytes.
    pub fn backbone_bytes(&self) -> u64 {
        (self.payload_bits + self.metadata_bits).div_ceil(8)
    }

    /// Payload plus metadata per tensor role, in bytes.
    pub fn bytes_by_role(&self) -> BTreeMap<String, u64> {
        self.role_bits
            .iter()
            .map(|(role, bits)| {
                let meta = self.role_metadata_bits.get(role).copied().unwrap_or(0);
                (role.clone(), (bits + meta).div_ceil(8))
            })
            .collect()
    }
}

/// Everything a row depends on (its cache key).
#[derive(Serialize)]
struct RowInputs<'a> {
    tool: &'a str,
    model: &'a str,
    bundle: &'a str,
    data: Option<&'a Path>,
    plan: String,
    faults: String,
    seed: u64,
    max_eval: Option<usize>,
    max_len: usize,
    split_seed: u64,
    /// Absent for dev (the keys of sweeps on dev are unchanged).
    #[serde(skip_serializing_if = "is_dev")]
    split: &'static str,
    recover_epochs: usize,
    recover_train: Option<usize>,
}

/// Everything an evaluation of fixed weights depends on (its cache key).
#[derive(Serialize)]
struct EvalInputs<'a> {
    weights: &'a str,
    bundle: &'a str,
    data: Option<&'a Path>,
    n_eval: usize,
    max_len: usize,
    split_seed: u64,
    #[serde(skip_serializing_if = "is_dev")]
    split: &'static str,
}

/// The metrics of an evaluation (a cache record: a map of metric names to values).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct EvalRecord(#[serde(with = "real::map")] BTreeMap<String, f64>);

/// A loaded bundle with its dev examples.
struct Loaded {
    bundle: TaskBundle,
    /// [`BundleSource::identity`], or the file's sha256.
    identity: String,
    data: Option<PathBuf>,
    /// [`BundleSource::files`].
    files: Option<FileTask>,
    spec: TaskSpec,
    params: TaskParams,
    dev: Vec<Example>,
}

/// How a sweep shows its progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (e.g. when stdout carries JSON rows).
    Hidden,
    /// One progress bar over all (point, bundle) pairs, as `adalbert compress` shows.
    Bar,
    /// One line per point computed (not read from the cache), as a stage of `adalbert run`.
    Lines,
}

/// Runs `points` of `sweep` through `cache`; rows come point-major (one per bundle, in bundle
/// order, for each point in order).
pub fn execute(
    sweep: &Sweep,
    points: &[Point],
    cache: &Cache,
    progress: Progress,
) -> Result<Vec<Row>> {
    execute_where(sweep, points, cache, progress, |_, _| true)
}

/// [`execute`] for the (point index, bundle index) pairs `keep` selects: a point with no
/// pair selected is not even compressed. Rows come point-major, for the selected pairs only.
pub fn execute_where(
    sweep: &Sweep,
    points: &[Point],
    cache: &Cache,
    progress: Progress,
    keep: impl Fn(usize, usize) -> bool,
) -> Result<Vec<Row>> {
    let model_dir = &sweep.model;
    let config = EncoderConfig::from_path(model_dir)
        .context(|| format!("loading the config of {}", model_dir.display()))?;
    let model_sha = sha256_file(&weights_file(model_dir)?)?;
    let ck = Checkpoint::open(model_dir)
        .context(|| format!("loading weights from {}", model_dir.display()))?;
    // Every weight is checked (shape, dtype, finite) before any bundle is compared with it, so
    // a damaged backbone is named as such and not blamed on the bundles.
    Backbone::load(&ck, &config)
        .context(|| format!("loading weights from {}", model_dir.display()))?;
    // Bundles are checked by content; the rows keep the file sha256 in their keys (`model_sha`).
    let backbone_id = BackboneId::of_checkpoint(&ck, model_dir)?;
    let tok = Tokenizer::from_dir(model_dir, sweep.max_len)?;
    let loaded = sweep
        .bundles
        .iter()
        .map(|b| load_bundle(b, sweep, &config, &backbone_id))
        .collect::<Result<Vec<_>>>()?;
    let wanted: Vec<Vec<bool>> = (0..points.len())
        .map(|pi| (0..loaded.len()).map(|bi| keep(pi, bi)).collect())
        .collect();
    let pairs = wanted.iter().flatten().filter(|&&w| w).count();
    let bar = progress_bar(pairs as u64, progress);
    // Evaluations by (weights sha, bundle index), shared between bit-identical points.
    let mut evals: HashMap<(String, usize), BTreeMap<String, f64>> = HashMap::new();
    let mut rows = Vec::with_capacity(pairs);
    for (point, wanted) in points.iter().zip(&wanted) {
        if !wanted.contains(&true) {
            continue;
        }
        let group = &sweep.groups[point.group].name;
        bar.set_message(format!("{group}: {} | {}", point.plan, point.faults));
        let keys = loaded
            .iter()
            .map(|l| row_key(point, sweep, &model_sha, &l.identity, l.data.as_deref()))
            .collect::<Result<Vec<Key>>>()?;
        // `None` for a pair not selected, else whether a finished row is cached.
        let cached: Vec<Option<Option<Row>>> = keys
            .iter()
            .zip(wanted)
            .map(|(k, &w)| w.then(|| cache.get(k)))
            .collect();
        if cached.iter().flatten().all(Option::is_some) {
            for mut r in cached.into_iter().flatten().flatten() {
                r.group = group.clone();
                rows.push(r);
                bar.inc(1);
            }
            continue;
        }
        if progress == Progress::Lines {
            eprintln!(
                "  plan {} | faults {} | seed {}",
                point.plan_text, point.faults_text, point.seed
            );
        }
        let t_point = Instant::now();
        let c = compress_checkpoint(&ck, &point.plan, &point.faults, point.seed)
            .context(|| format!("applying plan `{}`", point.plan))?;
        let backbone = Backbone::load(&c.checkpoint, &config)?;
        let stats = StorageStats::of(&c.report, &point.faults);
        // The compression's time is shared by the rows this point computes.
        let compress_seconds = t_point.elapsed().as_secs_f64()
            / cached.iter().filter(|c| matches!(c, Some(None))).count() as f64;
        for (bi, l) in loaded.iter().enumerate() {
            let Some(cached) = &cached[bi] else {
                continue;
            };
            if let Some(r) = cached {
                let mut r = r.clone();
                r.group = group.clone();
                rows.push(r);
                bar.inc(1);
                continue;
            }
            let t0 = Instant::now();
            let (metrics, shared) = if point.recover_epochs > 0 {
                let show = progress != Progress::Hidden;
                (recover(sweep, point, l, &c, &keys[bi], show)?, false)
            } else {
                let eval_key = Cache::key(
                    "eval",
                    &EvalInputs {
                        weights: &c.sha256,
                        bundle: &l.identity,
                        data: l.data.as_deref(),
                        n_eval: l.dev.len(),
                        max_len: sweep.max_len,
                        split_seed: sweep.split_seed,
                        split: sweep.split.name(),
                    },
                )?;
                if let Some(m) = evals.get(&(c.sha256.clone(), bi)) {
                    (m.clone(), true)
                } else if let Some(EvalRecord(m)) = cache.get(&eval_key) {
                    (m, true)
                } else {
                    let model = TaskModel {
                        backbone: &backbone,
                        task: &l.params,
                        layout: &l.bundle.meta.layout,
                    };
                    let m: BTreeMap<String, f64> =
                        evaluate_model(&model, &tok, &l.spec, &l.dev, EVAL_BATCH)
                            .context(|| format!("evaluating {}", l.bundle.path.display()))?
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect();
                    cache.put(&eval_key, &EvalRecord(m.clone()))?;
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
                role_metadata_bits: stats.role_metadata_bits.clone(),
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
                seconds: t0.elapsed().as_secs_f64() + compress_seconds,
            };
            cache.put(&keys[bi], &row)?;
            rows.push(row);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

fn progress_bar(len: u64, progress: Progress) -> ProgressBar {
    if progress != Progress::Bar {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One split of a bundle's task: its data files' split, or the registry task's from `data`.
fn load_task_split(
    task: &str,
    files: Option<&FileTask>,
    data: Option<&Path>,
    split: Split,
    split_seed: u64,
) -> Result<Dataset> {
    match files {
        Some(f) => Ok(f.load(split)?),
        None => load_dataset(task, data, split, split_seed)
            .context(|| format!("loading the {} split of `{task}`", split.name())),
    }
}

/// Loads a bundle and its dev examples; refuses full fine-tuning bundles (they carry their own
/// backbone) and bundles trained on another backbone.
fn load_bundle(
    source: &BundleSource,
    sweep: &Sweep,
    config: &EncoderConfig,
    backbone: &BackboneId,
) -> Result<Loaded> {
    let path = &source.path;
    let bundle = TaskBundle::load(path).context(|| format!("loading bundle {}", path.display()))?;
    if bundle.meta.mode == TrainMode::Full {
        return Err(ExperimentError::Bundle {
            path: path.clone(),
            reason: "is a full fine-tuning bundle with its own backbone; compress evaluates adapter and head bundles on the shared backbone".into(),
        });
    }
    bundle.check_backbone(backbone)?;
    let identity = match &source.identity {
        Some(id) => id.clone(),
        None => sha256_file(path)?,
    };
    let mut data = load_task_split(
        &bundle.meta.task,
        source.files.as_ref(),
        source.data.as_deref(),
        sweep.split,
        sweep.split_seed,
    )?;
    let spec = data.task.clone();
    if let Some(n) = sweep.max_eval {
        data.examples.truncate(n);
    }
    let params = bundle.task_params(config)?;
    Ok(Loaded {
        bundle,
        identity,
        data: source.data.clone(),
        files: source.files.clone(),
        spec,
        params,
        dev: data.examples,
    })
}

/// The cache key of the row of point `p` on the bundle `bundle` ([`BundleSource::identity`]:
/// the file's sha256 by default), evaluated on the task data in `data`, for a backbone whose
/// weights have `model_sha`.
pub fn row_key(
    p: &Point,
    sweep: &Sweep,
    model_sha: &str,
    bundle: &str,
    data: Option<&Path>,
) -> Result<Key> {
    Cache::key(
        "compress",
        &RowInputs {
            tool: env!("CARGO_PKG_VERSION"),
            model: model_sha,
            bundle,
            data,
            plan: p.plan.to_string(),
            faults: p.faults.to_string(),
            seed: p.seed,
            max_eval: sweep.max_eval,
            max_len: sweep.max_len,
            split_seed: sweep.split_seed,
            split: sweep.split.name(),
            recover_epochs: p.recover_epochs,
            recover_train: p.recover_train,
        },
    )
}

/// Re-trains a bundle's task tensors on the compressed backbone; returns the recovered
/// bundle's dev metrics (its best epoch, on the same dev examples).
fn recover(
    sweep: &Sweep,
    point: &Point,
    l: &Loaded,
    c: &CompressedCheckpoint,
    key: &Key,
    show_progress: bool,
) -> Result<BTreeMap<String, f64>> {
    let meta = &l.bundle.meta;
    let layout = &meta.layout;
    let mode = match (&layout.adapter, meta.mode) {
        (Some(spec), TrainMode::Adapter) => Mode::Adapter {
            spec: *spec,
            sharing: layout.sharing,
        },
        (None, TrainMode::Head) => Mode::Head,
        _ => {
            return Err(ExperimentError::Bundle {
                path: l.bundle.path.clone(),
                reason: format!("cannot recover a bundle of mode {}", meta.mode.as_str()),
            })
        }
    };
    let base: TrainConfig = meta
        .training
        .get("config")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let config = TrainConfig {
        epochs: point.recover_epochs,
        max_len: sweep.max_len,
        max_train_examples: point.recover_train.or(base.max_train_examples),
        max_eval_examples: Some(l.dev.len()),
        patience: None,
        ..base
    };
    let train_set = load_task_split(
        &meta.task,
        l.files.as_ref(),
        l.data.as_deref(),
        Split::Train,
        sweep.split_seed,
    )?;
    let out =
        sweep
            .out
            .join("recovered")
            .join(format!("{}-{}.bundle.safetensors", key.hex(), meta.task));
    let outcome = train_from(
        TrainJob {
            model_dir: &sweep.model,
            task: &l.spec,
            train: &train_set.examples,
            dev: &l.dev,
            mode,
            pooling: layout.pooling,
            train_pooler: layout.pooler,
            train_layer_norms: layout.layer_norms,
            config,
            out,
            resume: false,
            progress: show_progress,
            stop_after_epochs: None,
            model_name: None,
        },
        Start {
            backbone: Some(StartBackbone {
                checkpoint: &c.checkpoint,
                sha256: c.sha256.clone(),
                note: serde_json::json!({
                    "plan": point.plan.to_string(), "faults": point.faults.to_string(),
                    "seed": point.seed, "base_model": sweep.model, "recovered_from": l.bundle.path,
                }),
            }),
            init: Some(&l.bundle.tensors),
        },
    )
    .context(|| format!("recovery training of {}", l.bundle.path.display()))?;
    Ok(outcome.meta.metrics)
}

/// Storage and fault figures of one compressed backbone.
struct StorageStats {
    payload_bits: u64,
    metadata_bits: u64,
    fp32_bits: u64,
    role_bits: BTreeMap<String, u64>,
    role_metadata_bits: BTreeMap<String, u64>,
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
        let by_role = |bits: fn(&adalbert_compress::storage::Storage) -> u64| {
            r.by_role
                .iter()
                .map(|s| (s.role.as_str().to_string(), bits(&s.storage)))
                .collect()
        };
        StorageStats {
            payload_bits: r.total.payload_bits(),
            metadata_bits: r.total.metadata_bits,
            fp32_bits: r.total.numel * 32,
            role_bits: by_role(|s| s.payload_bits()),
            role_metadata_bits: by_role(|s| s.metadata_bits),
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
