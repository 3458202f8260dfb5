//! Stage 1: train every (task, method, seed) and the adapter-size sweep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adalbert_model::checkpoint::default_pooling;
use adalbert_model::{Pooling, Sharing};
use adalbert_tasks::{load_dataset, Split};
use adalbert_train::{train, Mode, TrainJob};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::config::{method_of, Experiment, Method, TrainSection};
use crate::error::{Context, Result};

/// One finished training run, as reported in Table 1 and the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    pub task: String,
    pub method: String,
    pub seed: u64,
    pub primary: String,
    pub primary_value: f64,
    pub metrics: BTreeMap<String, f64>,
    pub trainable_params: usize,
    /// Bytes a device must store for this task (fp32): the bundle's tensors.
    pub task_bytes: usize,
    pub train_seconds: f64,
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

/// Trains one item (or reads it back from `cache`); its bundle goes to `<out_dir>/bundles`.
/// With `cache.resume()` an interrupted training run continues from its run state.
pub fn run_item(
    exp: &Experiment,
    item: &Item,
    backbone_sha256: &str,
    out_dir: &Path,
    cache: &Cache,
) -> Result<TrainRecord> {
    let data = exp.data_for(&item.task);
    let key = Cache::key(
        "train",
        &TrainKey {
            backbone_sha256,
            task: &item.task,
            method: &item.method,
            seed: item.seed,
            split_seed: exp.split_seed,
            data: &data,
            train: &exp.train,
            tool: env!("CARGO_PKG_VERSION"),
        },
    )?;
    if let Some(r) = cache.get::<TrainRecord>(&key) {
        if r.bundle.is_file() {
            return Ok(r);
        }
    }
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
