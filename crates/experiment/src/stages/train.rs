//! Stage 1: train every (task, method, seed) and the adapter-size sweep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adalbert_model::checkpoint::default_pooling;
use adalbert_model::{Pooling, Sharing};
use adalbert_tasks::{load_dataset, Split};
use adalbert_train::{train, Mode, TrainJob};
use serde::{Deserialize, Serialize};

use crate::cache::{real, Cache, Key};
use crate::config::{method_of, Experiment, Method, TrainSection};
use crate::error::{Context, Result};

/// One finished training run, as reported in Table 1 and the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    pub task: String,
    pub method: String,
    pub seed: u64,
    pub primary: String,
    #[serde(with = "real")]
    pub primary_value: f64,
    #[serde(with = "real::map")]
    pub metrics: BTreeMap<String, f64>,
    pub trainable_params: usize,
    /// Bytes a device must store for this task (fp32): the bundle's tensors.
    pub task_bytes: usize,
    #[serde(with = "real")]
    pub train_seconds: f64,
    #[serde(with = "real")]
    pub examples_per_second: f64,
    pub train_examples: usize,
    pub dev_examples: usize,
    pub bundle: PathBuf,
}

/// Everything one training item depends on (its cache key).
#[derive(Serialize)]
struct TrainKey<'a> {
    backbone_sha256: &'a str,
    task: &'a str,
    method: &'a str,
    seed: u64,
    split_seed: u64,
    data: &'a Path,
    train: &'a TrainSection,
    tool: &'a str,
}

/// One training run of the experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub task: String,
    pub method: String,
    pub seed: u64,
}

/// The training items: tasks x methods x seeds, then sweep sizes not already covered.
pub fn items(exp: &Experiment) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    let mut push = |task: &str, method: &str, seed: u64| {
        if !out
            .iter()
            .any(|i| i.task == task && i.method == method && i.seed == seed)
        {
            out.push(Item {
                task: task.into(),
                method: method.into(),
                seed,
            });
        }
    };
    for &seed in &exp.seeds {
        for t in &exp.tasks.names {
            for m in &exp.tasks.methods {
                push(t, m, seed);
            }
        }
        if let Some(s) = &exp.sweep {
            for t in &s.tasks {
                for size in &s.sizes {
                    push(t, &format!("{}:{size}", s.kind), seed);
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
            seed: item.seed,
            split_seed: exp.split_seed,
            data: &exp.data_for(&item.task),
            train: &exp.train,
            tool: env!("CARGO_PKG_VERSION"),
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
        r.bundle = out_dir.join("bundles").join(r.bundle.file_name()?);
        r.bundle.is_file().then_some(r)
    }))
}

/// Trains one item (or reads it back from `cache` when resuming); its bundle goes to
/// `<out_dir>/bundles`. When resuming, an interrupted training run continues from its run
/// state.
pub fn run_item(
    exp: &Experiment,
    item: &Item,
    backbone_sha256: &str,
    out_dir: &Path,
    cache: &Cache,
) -> Result<TrainRecord> {
    if cache.resume() {
        if let Some(r) = cached(exp, item, backbone_sha256, out_dir, cache)? {
            return Ok(r);
        }
    }
    let data = exp.data_for(&item.task);
    let key = key(exp, item, backbone_sha256)?;
    let t = &exp.train;
    let method = method_of(&item.method)?;
    let mode = match &method {
        Method::Adapter(spec) => Mode::Adapter {
            spec: *spec,
            sharing: Sharing::parse(&t.sharing)?,
        },
        Method::Full => Mode::Full,
        Method::Head => Mode::Head,
    };
    let lr = t.lr_for(&method);
    let pooling = match t.pooling.as_str() {
        "auto" => default_pooling(&exp.model),
        p => Pooling::parse(p)?,
    };
    let train_set = load_dataset(&item.task, Some(&data), Split::Train, exp.split_seed)
        .context(|| format!("loading the training split of `{}`", item.task))?;
    let dev_set = load_dataset(&item.task, Some(&data), Split::Dev, exp.split_seed)
        .context(|| format!("loading the dev split of `{}`", item.task))?;
    let safe_method = item.method.replace([':', ',', '='], "-");
    let bundle = out_dir.join("bundles").join(format!(
        "{}__{safe_method}__s{}__{}.safetensors",
        item.task,
        item.seed,
        key.hex()
    ));
    let outcome = train(TrainJob {
        model_dir: &exp.model,
        task: &train_set.task,
        train: &train_set.examples,
        dev: &dev_set.examples,
        mode,
        pooling,
        train_pooler: false,
        config: t.config(lr, item.seed),
        out: bundle.clone(),
        resume: cache.resume(),
        progress: true,
        stop_after_epochs: None,
    })
    .context(|| format!("training {} / {}", item.task, item.method))?;
    let primary = train_set.task.primary.name().to_string();
    let loaded = adalbert_model::TaskBundle::load(&bundle)?;
    let record = TrainRecord {
        task: item.task.clone(),
        method: item.method.clone(),
        seed: item.seed,
        primary_value: outcome
            .meta
            .metrics
            .get(&primary)
            .copied()
            .unwrap_or(f64::NAN),
        primary,
        metrics: outcome.meta.metrics.clone(),
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
        bundle,
    };
    cache.put(&key, &record)?;
    Ok(record)
}
