//! The plan of a study: every item its experiment file asks for, in the order the stages run
//! them. An item is a stage, the inputs it is computed from (hashed into its id), the items it
//! needs, and an estimated cost. Shards split a plan ([`crate::shard`]); the report is built
//! from the cached results of all its items and nothing else.
//!
//! A new kind of item (a learning-rate grid point, a second backbone) is a new [`Work`]
//! variant with its id, label and cost in [`Plan::build`], and its execution and read-back
//! in `run.rs`; the partition, `--list-items`, `--merge` and the missing-item report need no
//! change.

use std::collections::HashMap;
use std::path::PathBuf;

use adalbert_core::ModelShape;
use adalbert_model::EncoderConfig;
use adalbert_tasks::{load_dataset, Split};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::config::{method_of, Experiment, Method};
use crate::error::{Context, Result};
use crate::shard::{self, Shard, Unit};
use crate::stages::{compress, simulate, train};
use crate::sweep::Point;

/// Labels per task the hardware stage assumes (the classifier head is a negligible part of a
/// request's cost).
pub const SIMULATED_LABELS: u64 = 2;

/// The stage an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Train,
    Compress,
    Simulate,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Train => "train",
            Stage::Compress => "compress",
            Stage::Simulate => "simulate",
        }
    }
}

/// What an item computes.
#[derive(Debug, Clone)]
pub enum Work {
    /// One training run.
    Train(train::Item),
    /// Point `point` (an index into [`Plan::points`]) evaluated on the bundle of the
    /// training item `bundle` (an index into [`Plan::items`]).
    Compress { point: usize, bundle: usize },
    /// Every mapping policy for 1..N tasks on one model.
    Simulate { model: String },
    /// The design-space sweep of a space file.
    Dse { space: PathBuf },
}

impl Work {
    pub fn stage(&self) -> Stage {
        match self {
            Work::Train(_) => Stage::Train,
            Work::Compress { .. } => Stage::Compress,
            Work::Simulate { .. } | Work::Dse { .. } => Stage::Simulate,
        }
    }
}

/// One item of a plan.
#[derive(Debug, Clone)]
pub struct Item {
    /// Hex hash of everything the result depends on, computed from the experiment file
    /// alone (for training and simulation items, their cache key).
    pub id: String,
    /// What it is, for people (`movie-polarity / houlsby:64 / seed 42`).
    pub label: String,
    /// Estimated CPU time (one core of the calibration machine, see [`cost`]), in ms.
    pub cost_ms: u64,
    /// Indices of the items whose results it needs.
    pub deps: Vec<usize>,
    pub work: Work,
}

impl Item {
    pub fn stage(&self) -> Stage {
        self.work.stage()
    }

    /// The estimated CPU time in seconds.
    pub fn cost_seconds(&self) -> f64 {
        self.cost_ms as f64 / 1000.0
    }

    /// The kind of item the cost model and the README's CPU-hour table distinguish: the
    /// stage, and for training the method (`train:adapter`, `train:full`, `train:head`).
    pub fn kind(&self) -> &'static str {
        match &self.work {
            Work::Train(t) => match method_of(&t.method) {
                Ok(Method::Full) => "train:full",
                Ok(Method::Head) => "train:head",
                _ => "train:adapter",
            },
            Work::Compress { .. } => "compress",
            Work::Simulate { .. } => "simulate",
            Work::Dse { .. } => "dse",
        }
    }
}

/// Every item of an experiment.
#[derive(Debug, Clone)]
pub struct Plan {
    pub items: Vec<Item>,
    /// The points of the `[compress]` groups (what compress items index).
    pub points: Vec<Point>,
    /// sha256 of the backbone's weights file (part of every training item's id).
    pub backbone_sha256: String,
}

/// Everything a compress item's result depends on, known before its bundle is trained: the
/// training item's id stands for the bundle. (Its cache record is keyed by the bundle's
/// sha256 instead, see [`crate::sweep::row_key`], which says the same once the bundle exists.)
#[derive(Serialize)]
struct CompressItemInputs<'a> {
    bundle: &'a str,
    plan: String,
    faults: String,
    seed: u64,
    recover_epochs: usize,
    recover_train: Option<usize>,
    max_eval: Option<usize>,
    max_len: usize,
    split_seed: u64,
    tool: &'a str,
}

impl Plan {
    /// The plan of `exp`, whose backbone weights have sha256 `backbone_sha256`. Reads the
    /// task data only to count examples where `max_train` / `max_eval` do not bound them.
    pub fn build(exp: &Experiment, backbone_sha256: &str) -> Result<Self> {
        let shape = EncoderConfig::from_path(&exp.model)
            .context(|| format!("loading the config of {}", exp.model.display()))?
            .shape;
        let mut sizes = DataSizes::new(exp);
        let mut items = Vec::new();
        for t in train::items(exp) {
            let cost = cost::train(exp, &shape, &t, &mut sizes)?;
            items.push(Item {
                id: train::key(exp, &t, backbone_sha256)?.hex().to_string(),
                label: format!("{} / {} / seed {}", t.task, t.method, t.seed),
                cost_ms: cost,
                deps: vec![],
                work: Work::Train(t),
            });
        }
        let points = compress::points(exp)?;
        if let Some(sec) = &exp.compress {
            let max_eval = sec.max_eval.or(exp.train.max_eval);
            // Bundle items in `tasks.names` order (what Table 2 is ordered by).
            let bundles: Vec<usize> = exp
                .tasks
                .names
                .iter()
                .filter_map(|task| {
                    let b = compress::bundle_item(exp, task)?;
                    items
                        .iter()
                        .position(|i| matches!(&i.work, Work::Train(t) if *t == b))
                })
                .collect();
            for (pi, p) in points.iter().enumerate() {
                for &b in &bundles {
                    let Work::Train(t) = &items[b].work else {
                        continue;
                    };
                    let id = Cache::key(
                        "compress-item",
                        &CompressItemInputs {
                            bundle: &items[b].id,
                            plan: p.plan.to_string(),
                            faults: p.faults.to_string(),
                            seed: p.seed,
                            recover_epochs: p.recover_epochs,
                            recover_train: p.recover_train,
                            max_eval,
                            max_len: exp.train.max_len,
                            split_seed: exp.split_seed,
                            tool: env!("CARGO_PKG_VERSION"),
                        },
                    )?;
                    let mut label = format!(
                        "{} / {} | {} | seed {}",
                        t.task, p.plan_text, p.faults_text, p.seed
                    );
                    if p.recover_epochs > 0 {
                        label.push_str(&format!(" | recovery {} epochs", p.recover_epochs));
                    }
                    let cost = cost::compress(exp, &shape, p, &t.task, bundles.len(), &mut sizes)?;
                    items.push(Item {
                        id: id.hex().to_string(),
                        label,
                        cost_ms: cost,
                        deps: vec![b],
                        work: Work::Compress {
                            point: pi,
                            bundle: b,
                        },
                    });
                }
            }
        }
        if let Some(sec) = &exp.simulate {
            for m in &sec.models {
                items.push(Item {
                    id: simulate::key(sec, m, SIMULATED_LABELS)?.hex().to_string(),
                    label: m.clone(),
                    cost_ms: cost::ms(cost::SIMULATE_CPU_S),
                    deps: vec![],
                    work: Work::Simulate { model: m.clone() },
                });
            }
            if let Some(space) = &sec.dse_space {
                items.push(Item {
                    id: simulate::dse_key(space)?.hex().to_string(),
                    label: format!("design space {}", space.display()),
                    cost_ms: cost::ms(cost::DSE_CPU_S),
                    deps: vec![],
                    work: Work::Dse {
                        space: space.clone(),
                    },
                });
            }
        }
        Ok(Self {
            items,
            points,
            backbone_sha256: backbone_sha256.to_string(),
        })
    }

    /// A short hash of the set of item ids: two plans with the same fingerprint compute the
    /// same results (whatever else, such as the report's note, differs).
    pub fn fingerprint(&self) -> String {
        let mut ids: Vec<&str> = self.items.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let digest = Sha256::digest(ids.join("\n").as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn units(&self) -> Vec<Unit<'_>> {
        self.items
            .iter()
            .map(|i| Unit {
                id: &i.id,
                cost: i.cost_ms,
                deps: &i.deps,
            })
            .collect()
    }

    /// The shard (1-based) of every item among `count` shards ([`crate::shard`]'s rule).
    pub fn partition(&self, count: usize) -> Vec<usize> {
        shard::partition(&self.units(), count)
            .into_iter()
            .map(|s| s + 1)
            .collect()
    }

    /// Estimated CPU seconds of each of `count` shards.
    pub fn shard_costs(&self, count: usize) -> Vec<f64> {
        let units = self.units();
        let zero_based = shard::partition(&units, count);
        shard::loads(&units, &zero_based, count)
            .into_iter()
            .map(|ms| ms as f64 / 1000.0)
            .collect()
    }

    /// Indices of the items of `shard`, in plan order.
    pub fn shard_items(&self, shard: Shard) -> Vec<usize> {
        self.partition(shard.count())
            .into_iter()
            .enumerate()
            .filter(|&(_, s)| s == shard.index())
            .map(|(i, _)| i)
            .collect()
    }

    /// Estimated CPU seconds of all items (each id once).
    pub fn total_cost_seconds(&self) -> f64 {
        self.shard_costs(1).iter().sum()
    }
}

/// An estimated CPU time in words: seconds below an hour, else hours.
pub fn cpu_text(seconds: f64) -> String {
    if seconds < 3600.0 {
        format!("{seconds:.0} CPU-seconds")
    } else {
        format!("{:.2} CPU-hours", seconds / 3600.0)
    }
}

/// Example counts of the task data, read only where the experiment does not bound them.
struct DataSizes<'a> {
    exp: &'a Experiment,
    counts: HashMap<(String, bool), usize>,
}

impl<'a> DataSizes<'a> {
    fn new(exp: &'a Experiment) -> Self {
        Self {
            exp,
            counts: HashMap::new(),
        }
    }

    /// `bound` if given, else the number of examples of the task's split.
    fn count(&mut self, task: &str, split: Split, bound: Option<usize>) -> Result<usize> {
        if let Some(n) = bound {
            return Ok(n);
        }
        let k = (task.to_string(), split == Split::Train);
        if let Some(&n) = self.counts.get(&k) {
            return Ok(n);
        }
        let data = self.exp.data_for(task);
        let n = load_dataset(task, Some(&data), split, self.exp.split_seed)
            .context(|| format!("counting the examples of `{task}` to estimate its cost"))?
            .examples
            .len();
        self.counts.insert(k, n);
        Ok(n)
    }
}

/// The cost model: estimated CPU seconds (one core) of each kind of item, from the work it
/// does, calibrated on real runs of `configs/demo.toml` (all-MiniLM-L6-v2) on a 2-core
/// Xeon at 2.6 GHz with AVX-512 (README, "Running a study on a cluster", has the
/// measurements). Only the ratios between items matter for the partition; the absolute
/// figures are what `--list-items` prints as CPU hours, so re-calibrate them from a real run
/// (`<out>/timings/`) before planning a cluster budget on another machine.
pub mod cost {
    use super::*;

    /// Effective multiply-adds x 2 per second of one core in training steps.
    pub const TRAIN_FLOP_PER_CPU_S: f64 = 40e9;
    /// Effective FLOP per second of one core in evaluation (inference) passes.
    pub const EVAL_FLOP_PER_CPU_S: f64 = 60e9;
    /// Backbone parameters per second one core quantizes, prunes, encodes and (with faults)
    /// corrupts, and loads back as a backbone.
    pub const COMPRESS_PARAMS_PER_CPU_S: f64 = 20e6;
    /// Fixed cost of an item: loading the backbone, tokenizer and data.
    pub const ITEM_CPU_S: f64 = 1.0;
    /// A simulation of every policy for 1..N tasks on one model.
    pub const SIMULATE_CPU_S: f64 = 0.2;
    /// A design-space sweep.
    pub const DSE_CPU_S: f64 = 2.0;

    /// Seconds to whole milliseconds (at least 1, so that no item is free).
    pub fn ms(seconds: f64) -> u64 {
        ((seconds * 1000.0).round() as u64).max(1)
    }

    /// Forward FLOP per token of an encoder at sequence length `len`: the matrix products of
    /// every layer application (and ALBERT's E->H projection), and the attention scores and
    /// weighted sums.
    pub fn flop_per_token(shape: &ModelShape, len: usize) -> f64 {
        let apps = shape.applications() as f64;
        let projection = if shape.has_projection() {
            (shape.embedding_size * shape.hidden_size) as f64
        } else {
            0.0
        };
        2.0 * (shape.layer_params() as f64 * apps + projection)
            + 4.0 * len as f64 * shape.hidden_size as f64 * apps
    }

    /// Passes over the backbone per training example: forward, plus the input gradients
    /// (adapters, full), plus the weight gradients (full).
    fn passes(method: &str) -> f64 {
        match method_of(method) {
            Ok(Method::Full) => 3.0,
            Ok(Method::Head) => 1.0,
            _ => 2.0,
        }
    }

    pub(super) fn train(
        exp: &Experiment,
        shape: &ModelShape,
        item: &train::Item,
        sizes: &mut DataSizes,
    ) -> Result<u64> {
        let t = &exp.train;
        let n_train = sizes.count(&item.task, Split::Train, t.max_train)?;
        let n_dev = sizes.count(&item.task, Split::Dev, t.max_eval)?;
        let tokens = t.max_len as f64;
        let f = flop_per_token(shape, t.max_len);
        let per_epoch = n_train as f64 * tokens * f * passes(&item.method) / TRAIN_FLOP_PER_CPU_S
            + n_dev as f64 * tokens * f / EVAL_FLOP_PER_CPU_S;
        Ok(ms(ITEM_CPU_S + t.epochs as f64 * per_epoch))
    }

    pub(super) fn compress(
        exp: &Experiment,
        shape: &ModelShape,
        point: &Point,
        task: &str,
        bundles_per_point: usize,
        sizes: &mut DataSizes,
    ) -> Result<u64> {
        let t = &exp.train;
        let max_eval = exp
            .compress
            .as_ref()
            .and_then(|c| c.max_eval)
            .or(t.max_eval);
        let n_eval = sizes.count(task, Split::Dev, max_eval)?;
        let f = flop_per_token(shape, t.max_len);
        let tokens = t.max_len as f64;
        let faults = if point.faults == adalbert_compress::FaultSpec::None {
            1.0
        } else {
            2.0
        };
        // The backbone is compressed once per point and shared by its bundles.
        let params = shape.param_counts().total() as f64;
        let compress =
            params * faults / COMPRESS_PARAMS_PER_CPU_S / bundles_per_point.max(1) as f64;
        let eval = n_eval as f64 * tokens * f / EVAL_FLOP_PER_CPU_S;
        let recover = if point.recover_epochs > 0 {
            let n = sizes.count(task, Split::Train, point.recover_train.or(t.max_train))?;
            point.recover_epochs as f64
                * (n as f64 * tokens * f * 2.0 / TRAIN_FLOP_PER_CPU_S + eval)
        } else {
            0.0
        };
        Ok(ms(compress + eval + recover))
    }
}
