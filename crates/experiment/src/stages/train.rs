//! Stage 1: train every (backbone, task, method, learning rate, seed), the adapter size and
//! sharing sweep, and the compress-then-train items. Every item trains on the train split,
//! keeps the epoch with the best dev metric (early stopping on dev with `train.patience`), and
//! is then evaluated once on the test split, which no selection ever reads. Which examples
//! those are is `adalbert_tasks::load_study`'s decision: for GLUE, whose test set is unlabeled,
//! dev is a seeded slice of `train.tsv` and "test" is the official dev set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adalbert_model::checkpoint::default_pooling;
use adalbert_model::compression::compress_checkpoint;
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{
    Backbone, Checkpoint, EncoderConfig, Pooling, Sharing, TaskBundle, TaskModel, TrainMode,
};
use adalbert_tasks::{load_study, Split};
use adalbert_train::eval::evaluate_model;
use adalbert_train::{train_from, Mode, Start, StartBackbone, TrainJob};
use serde::{Deserialize, Serialize};

use crate::cache::{real, Cache, Key};
use crate::config::{method_of, Experiment, Method};
use crate::error::{Context, ExperimentError, Result};
use crate::sweep::Point;

/// Batch size of the test evaluation.
const EVAL_BATCH: usize = 64;

/// The compressed backbone an item was trained on (compress first, then train).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCompressed {
    /// The plan and fault spec as the experiment file wrote them (Table 2's row names).
    pub plan: String,
    pub faults: String,
    /// The fault seed.
    pub seed: u64,
}

/// One finished training run, as reported in Table 1, the sweep and Table 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    pub backbone: String,
    pub task: String,
    pub method: String,
    /// Adapter sharing over ALBERT's layer applications.
    pub sharing: String,
    #[serde(with = "real")]
    pub lr: f64,
    pub seed: u64,
    /// The compressed backbone it was trained and tested on (none: the fp32 backbone).
    pub compressed: Option<OnCompressed>,
    pub primary: String,
    /// The primary metric on dev at the best dev epoch: what selection reads.
    #[serde(with = "real")]
    pub dev_value: f64,
    /// The primary metric on test of the best-dev-epoch bundle: what is reported.
    #[serde(with = "real")]
    pub test_value: f64,
    #[serde(with = "real::map")]
    pub metrics: BTreeMap<String, f64>,
    #[serde(with = "real::map")]
    pub test_metrics: BTreeMap<String, f64>,
    /// The epoch (1-based) whose bundle was kept, and how many epochs ran (early stopping).
    pub best_epoch: usize,
    pub epochs_run: usize,
    /// Primary dev metric after each epoch.
    pub dev_curve: Vec<f64>,
    pub trainable_params: usize,
    /// Bytes a device must store for this task (fp32): the bundle's tensors.
    pub task_bytes: usize,
    #[serde(with = "real")]
    pub train_seconds: f64,
    #[serde(with = "real")]
    pub examples_per_second: f64,
    pub train_examples: usize,
    pub dev_examples: usize,
    pub test_examples: usize,
    /// GLUE only: how the selection split was cut from `train.tsv` (fraction, cap, split
    /// seed), and that the reported split is the official dev set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    pub bundle: PathBuf,
}

/// Everything one training item depends on (its cache key).
#[derive(Serialize)]
struct TrainKey<'a> {
    backbone_sha256: &'a str,
    task: &'a str,
    method: &'a str,
    sharing: &'a str,
    seed: u64,
    split_seed: u64,
    data: &'a Path,
    config: adalbert_train::TrainConfig,
    pooling: &'a str,
    max_test: Option<usize>,
    /// GLUE only (absent for the offline suite, whose keys are unchanged): the selection
    /// slice's fraction of `train.tsv` and cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    glue_selection: Option<(f64, usize)>,
    /// Canonical plan, fault spec and fault seed of the backbone trained on.
    compressed: Option<(String, String, u64)>,
    tool: &'a str,
    /// A `[[tasks.files]]` task's options and file hashes; absent for registry tasks (whose
    /// keys are unchanged by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<(&'a adalbert_tasks::DataFiles, &'a [String])>,
}

/// A compressed backbone of an item: a point of the `[compress]` groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedPoint {
    /// Index into the plan's points.
    pub point: usize,
    pub on: OnCompressed,
    /// Canonical plan and fault spec (the key).
    pub plan: String,
    pub faults: String,
}

/// One training run of the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub backbone: String,
    pub task: String,
    pub method: String,
    pub lr: f64,
    pub seed: u64,
    /// Sharing other than `train.sharing` (the sweep's variants on ALBERT backbones).
    pub sharing: Option<String>,
    pub compressed: Option<CompressedPoint>,
}

impl Item {
    /// The sharing the item trains with.
    pub fn sharing<'a>(&'a self, exp: &'a Experiment) -> &'a str {
        self.sharing.as_deref().unwrap_or(&exp.train.sharing)
    }

    /// What it is, for people.
    pub fn label(&self) -> String {
        let mut s = format!(
            "{} / {} / {} / lr {} / seed {}",
            self.backbone, self.task, self.method, self.lr, self.seed
        );
        if let Some(sh) = &self.sharing {
            s.push_str(&format!(" / {sh}"));
        }
        if let Some(c) = &self.compressed {
            s.push_str(&format!(
                " / on {} | {} | fault seed {}",
                c.on.plan, c.on.faults, c.on.seed
            ));
        }
        s
    }
}

/// The training items, per backbone: tasks x methods x learning rates x seeds, then sweep
/// cells not already covered, then (with `compress.train_on_compressed`) the compress method
/// trained on every compressed backbone of `points`.
pub fn items(exp: &Experiment, points: &[Point]) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    let mut push = |item: Item| {
        if !out.contains(&item) {
            out.push(item);
        }
    };
    for b in &exp.backbones {
        let albert = exp.is_albert(&b.name);
        let plain = |task: &str, method: &str, lr: f64, seed: u64| Item {
            backbone: b.name.clone(),
            task: task.into(),
            method: method.into(),
            lr,
            seed,
            sharing: None,
            compressed: None,
        };
        for (si, &seed) in exp.seeds.iter().enumerate() {
            for t in &exp.tasks.names {
                for m in &exp.tasks.methods {
                    let Ok(method) = method_of(m) else { continue };
                    for lr in exp.train.lrs_for(&method) {
                        push(plain(t, m, lr, seed));
                    }
                }
            }
            if let Some(s) = exp
                .sweep
                .as_ref()
                .filter(|s| si < s.seeds.unwrap_or(usize::MAX))
            {
                let sharings: Vec<Option<String>> = if albert && !s.sharing.is_empty() {
                    s.sharing
                        .iter()
                        .map(|sh| (*sh != exp.train.sharing).then(|| sh.clone()))
                        .collect()
                } else {
                    vec![None]
                };
                for t in &s.tasks {
                    for kind in s.kinds() {
                        for size in &s.sizes {
                            let m = format!("{kind}:{size}");
                            let Ok(method) = method_of(&m) else { continue };
                            let lrs = s.lr.map_or_else(|| exp.train.lrs_for(&method), |l| vec![l]);
                            for sh in &sharings {
                                for &lr in &lrs {
                                    push(Item {
                                        sharing: sh.clone(),
                                        ..plain(t, &m, lr, seed)
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        if let (Some(c), Some(lr)) = (&exp.compress, exp.compress_lr()) {
            if c.train_on_compressed {
                for (pi, p) in points.iter().enumerate() {
                    for &seed in exp.seeds.iter().take(c.train_seeds) {
                        for t in &exp.tasks.names {
                            push(Item {
                                compressed: Some(CompressedPoint {
                                    point: pi,
                                    on: OnCompressed {
                                        plan: p.plan_text.clone(),
                                        faults: p.faults_text.clone(),
                                        seed: p.seed,
                                    },
                                    plan: p.plan.to_string(),
                                    faults: p.faults.to_string(),
                                }),
                                ..plain(t, &c.method, lr, seed)
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// The cache key of a training item: everything its result depends on.
pub fn key(exp: &Experiment, item: &Item, backbone_sha256: &str) -> Result<Key> {
    Cache::key(
        "train",
        &TrainKey {
            backbone_sha256,
            task: &item.task,
            method: &item.method,
            sharing: item.sharing(exp),
            seed: item.seed,
            split_seed: exp.split_seed,
            data: &exp.data_for(&item.task),
            config: exp.train.config(item.lr, item.seed),
            pooling: &exp.train.pooling,
            max_test: exp.train.max_test,
            glue_selection: adalbert_tasks::task_spec(&item.task)
                .is_ok_and(|s| s.is_glue())
                .then(|| {
                    let g = exp.glue_selection();
                    (g.fraction, g.max)
                }),
            compressed: item
                .compressed
                .as_ref()
                .map(|c| (c.plan.clone(), c.faults.clone(), c.on.seed)),
            tool: env!("CARGO_PKG_VERSION"),
            files: exp
                .file_task(&item.task)
                .map(|r| (&r.task.files, r.sha256.as_slice())),
        },
    )
}

/// The finished record of `item` in `cache` (resuming or not), with its bundle, which must
/// exist under `<out_dir>/bundles`.
///
/// The bundle path is taken relative to `out_dir` whatever the record says, so a run folder
/// stays readable when shards mounted it at other paths, or after it was moved.
pub fn cached(
    exp: &Experiment,
    item: &Item,
    backbone_sha256: &str,
    out_dir: &Path,
    cache: &Cache,
) -> Result<Option<TrainRecord>> {
    let key = key(exp, item, backbone_sha256)?;
    Ok(cache.read::<TrainRecord>(&key).and_then(|mut r| {
        // Records of earlier versions may name metrics by their old names.
        use adalbert_core::metric::{current_name, current_names};
        r.primary = current_name(&r.primary).to_string();
        r.metrics = current_names(std::mem::take(&mut r.metrics));
        r.test_metrics = current_names(std::mem::take(&mut r.test_metrics));
        r.bundle = out_dir.join("bundles").join(r.bundle.file_name()?);
        r.bundle.is_file().then_some(r)
    }))
}

/// Trains one item (or reads it back from `cache` when resuming); its bundle goes to
/// `<out_dir>/bundles`. When resuming, an interrupted training run continues from its run
/// state. `points` are the plan's compression points (for compress-then-train items).
pub fn run_item(
    exp: &Experiment,
    item: &Item,
    backbone_sha256: &str,
    out_dir: &Path,
    cache: &Cache,
    points: &[Point],
) -> Result<TrainRecord> {
    if cache.resume() {
        if let Some(r) = cached(exp, item, backbone_sha256, out_dir, cache)? {
            return Ok(r);
        }
    }
    let backbone = exp
        .backbone(&item.backbone)
        .ok_or_else(|| ExperimentError::Bundle {
            path: out_dir.to_path_buf(),
            reason: format!("backbone `{}` is not in the experiment", item.backbone),
        })?;
    let model_dir = &backbone.path;
    let key = key(exp, item, backbone_sha256)?;
    let t = &exp.train;
    let method = method_of(&item.method)?;
    let mode = match &method {
        Method::Adapter(spec) => Mode::Adapter {
            spec: *spec,
            sharing: Sharing::parse(item.sharing(exp))?,
        },
        Method::Full => Mode::Full,
        Method::Head => Mode::Head,
    };
    let pooling = match t.pooling.as_str() {
        "auto" => default_pooling(model_dir),
        p => Pooling::parse(p)?,
    };
    // A user's data files are their own train / validation / test parts; every registry task
    // takes its parts from the one place that decides them (`load_study`).
    let parts = match exp.file_task(&item.task) {
        Some(r) => {
            let load = |split: Split| {
                r.task
                    .load(split)
                    .context(|| format!("loading the {} split of `{}`", split.name(), item.task))
            };
            adalbert_tasks::StudyData {
                train: load(Split::Train)?,
                select: load(Split::Dev)?,
                report: load(Split::Test)?,
            }
        }
        None => load_study(
            &item.task,
            Some(&exp.data_for(&item.task)),
            exp.split_seed,
            exp.glue_selection(),
        )
        .context(|| format!("loading the train, dev and test parts of `{}`", item.task))?,
    };
    let selection = parts.train.dropped.iter().find_map(|d| {
        parts.train.task.is_glue().then(|| {
            format!(
                "dev: {} examples {}; test: the official GLUE dev set ({})",
                d.count,
                d.reason,
                parts
                    .report
                    .sources
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    });
    let (train_set, dev_set, mut test_set) = (parts.train, parts.select, parts.report);
    if let Some(n) = t.max_test {
        test_set.examples.truncate(n);
    }
    let safe_method = item.method.replace([':', ',', '='], "-");
    let bundle = out_dir.join("bundles").join(format!(
        "{}__{}__{safe_method}__s{}__{}.safetensors",
        item.backbone,
        item.task,
        item.seed,
        key.hex()
    ));
    let config = EncoderConfig::from_path(model_dir)
        .context(|| format!("loading the config of {}", model_dir.display()))?;
    // Compress first, then train: the item's backbone is the decoded compressed weights.
    let compressed = match &item.compressed {
        None => None,
        Some(c) => {
            let p = points.get(c.point).ok_or_else(|| ExperimentError::Bundle {
                path: out_dir.to_path_buf(),
                reason: format!("compression point {} is not in the plan", c.point),
            })?;
            let ck = Checkpoint::open(model_dir)
                .context(|| format!("loading weights from {}", model_dir.display()))?;
            Some(
                compress_checkpoint(&ck, &p.plan, &p.faults, p.seed)
                    .context(|| format!("applying plan `{}`", p.plan))?,
            )
        }
    };
    let start = Start {
        backbone: compressed.as_ref().map(|c| StartBackbone {
            checkpoint: &c.checkpoint,
            sha256: c.sha256.clone(),
            note: serde_json::json!({
                "compressed_before_training": item.compressed.as_ref().map(|x| &x.on),
                "base_model": model_dir,
            }),
        }),
        init: None,
    };
    let outcome = train_from(
        TrainJob {
            model_dir,
            task: &train_set.task,
            train: &train_set.examples,
            dev: &dev_set.examples,
            mode,
            pooling,
            train_pooler: false,
            train_layer_norms: true,
            config: t.config(item.lr, item.seed),
            out: bundle.clone(),
            resume: cache.resume(),
            progress: true,
            stop_after_epochs: None,
            model_name: None,
        },
        start,
    )
    .context(|| format!("training {}", item.label()))?;
    let primary = train_set.task.primary.name().to_string();
    let loaded = TaskBundle::load(&bundle)?;
    // The test evaluation of the kept (best dev epoch) bundle, on the backbone it was trained
    // on (its own for full fine-tuning).
    let base = match &compressed {
        Some(c) => Backbone::load(&c.checkpoint, &config)?,
        None => {
            Backbone::from_dir(model_dir)
                .context(|| format!("loading model from {}", model_dir.display()))?
                .0
        }
    };
    let own;
    let bb = if loaded.meta.mode == TrainMode::Full {
        own = loaded.full_backbone(&config)?;
        &own
    } else {
        &base
    };
    let params = loaded.task_params(&config)?;
    let model = TaskModel {
        backbone: bb,
        task: &params,
        layout: &loaded.meta.layout,
    };
    let tok = Tokenizer::from_dir(model_dir, t.max_len)?;
    let test_metrics: BTreeMap<String, f64> = evaluate_model(
        &model,
        &tok,
        &train_set.task,
        &test_set.examples,
        EVAL_BATCH,
    )
    .context(|| format!("evaluating {} on test", bundle.display()))?
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let dev_curve: Vec<f64> = outcome
        .history
        .iter()
        .map(|e| e.dev.get(&primary).copied().unwrap_or(f64::NAN))
        .collect();
    // The kept epoch (1-based), as the trainer records it.
    let best_epoch = outcome
        .meta
        .training
        .get("best_epoch")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as usize;
    let record = TrainRecord {
        backbone: item.backbone.clone(),
        task: item.task.clone(),
        method: item.method.clone(),
        sharing: item.sharing(exp).to_string(),
        lr: item.lr,
        seed: item.seed,
        compressed: item.compressed.as_ref().map(|c| c.on.clone()),
        dev_value: outcome
            .meta
            .metrics
            .get(&primary)
            .copied()
            .unwrap_or(f64::NAN),
        test_value: test_metrics.get(&primary).copied().unwrap_or(f64::NAN),
        primary,
        metrics: outcome.meta.metrics.clone(),
        test_metrics,
        best_epoch,
        epochs_run: outcome.history.len(),
        dev_curve,
        trainable_params: outcome.meta.trainable_params,
        task_bytes: loaded.bytes(),
        train_seconds: outcome.train_seconds,
        examples_per_second: outcome.examples_per_second,
        train_examples: t.max_train.map_or(train_set.examples.len(), |m| {
            m.min(train_set.examples.len())
        }),
        dev_examples: t
            .max_eval
            .map_or(dev_set.examples.len(), |m| m.min(dev_set.examples.len())),
        test_examples: test_set.examples.len(),
        selection,
        bundle,
    };
    cache.put(&key, &record)?;
    Ok(record)
}
