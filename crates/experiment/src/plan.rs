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
use adalbert_model::tokenizer::{TextInput, Tokenizer};
use adalbert_model::EncoderConfig;
use adalbert_tasks::{Example, Split};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::Key;
use crate::config::{method_of, Experiment, Method};
use crate::error::{Context, ExperimentError, Result};
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
    /// training item `bundle` (an index into [`Plan::items`]). Its key names the bundle by the
    /// training item's key, not the file's sha256: known before the bundle exists, and the
    /// same for every copy of a training item computed in several shards.
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
    /// The cache key of its result: the hash of everything the result depends on, computed
    /// from the experiment file alone.
    pub key: Key,
    /// What it is, for people (`movie-polarity / houlsby:64 / seed 42`).
    pub label: String,
    /// Estimated CPU time (one core of the calibration machine, see [`cost`]), in ms.
    pub cost_ms: u64,
    /// Indices of the items whose results it needs.
    pub deps: Vec<usize>,
    pub work: Work,
}

impl Item {
    /// The key's hex digits: what `--list-items` and the missing-item report show.
    pub fn id(&self) -> &str {
        self.key.hex()
    }

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
    /// (name, sha256 of the weights file) of each backbone, in the experiment's order (part
    /// of the id of every item on it).
    pub backbones: Vec<(String, String)>,
}

impl Plan {
    /// The plan of `exp`, whose backbones' weights have the sha256s `backbones` (name, sha).
    /// Reads the task data and tokenizes a few batches of each split, for the cost estimates
    /// (the item keys depend on the experiment file and the backbones alone).
    pub fn build(exp: &Experiment, backbones: &[(String, String)]) -> Result<Self> {
        let mut shapes: HashMap<String, ModelShape> = HashMap::new();
        for b in &exp.backbones {
            let shape = EncoderConfig::from_path(&b.path)
                .context(|| format!("loading the config of {}", b.path.display()))?
                .shape;
            shapes.insert(b.name.clone(), shape);
        }
        let sha_of = |name: &str| {
            backbones
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, s)| s.as_str())
        };
        let shape_of = |name: &str| -> Result<&ModelShape> {
            shapes.get(name).ok_or_else(|| ExperimentError::Config {
                origin: exp.name.clone(),
                key: "backbones".into(),
                reason: format!("no backbone `{name}`"),
            })
        };
        let mut data = DataStats::new(exp);
        let points = compress::points(exp)?;
        let mut items = Vec::new();
        for t in train::items(exp, &points) {
            let cost = cost::train(exp, shape_of(&t.backbone)?, &t, &mut data)?;
            items.push(Item {
                key: train::key(exp, &t, sha_of(&t.backbone))?,
                label: t.label(),
                cost_ms: cost,
                deps: vec![],
                work: Work::Train(t),
            });
        }
        if exp.compress.is_some() {
            // Bundle items per backbone, in `tasks.names` order (what Table 2 is ordered by).
            let bundles: Vec<usize> = exp
                .backbones
                .iter()
                .flat_map(|b| exp.tasks.names.iter().map(move |task| (b, task)))
                .filter_map(|(b, task)| {
                    let want = compress::bundle_item(exp, &b.name, task)?;
                    items
                        .iter()
                        .position(|i| matches!(&i.work, Work::Train(t) if *t == want))
                })
                .collect();
            for (pi, p) in points.iter().enumerate() {
                for &b in &bundles {
                    let Work::Train(t) = &items[b].work else {
                        continue;
                    };
                    let sha = sha_of(&t.backbone);
                    let Some(key) =
                        compress::row_key(exp, p, &t.backbone, &t.task, items[b].id(), sha)?
                    else {
                        continue;
                    };
                    let mut label = format!(
                        "{} / {} / {} | {} | seed {}",
                        t.backbone, t.task, p.plan_text, p.faults_text, p.seed
                    );
                    if p.recover_epochs > 0 {
                        label.push_str(&format!(" | recovery {} epochs", p.recover_epochs));
                    }
                    let cost = cost::compress(
                        exp,
                        shape_of(&t.backbone)?,
                        p,
                        &t.task,
                        bundles.len(),
                        &mut data,
                    )?;
                    items.push(Item {
                        key,
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
                    key: simulate::key(sec, m, SIMULATED_LABELS)?,
                    label: m.clone(),
                    cost_ms: cost::ms(cost::SIMULATE_CPU_S),
                    deps: vec![],
                    work: Work::Simulate { model: m.clone() },
                });
            }
            if let Some(space) = &sec.dse_space {
                items.push(Item {
                    key: simulate::dse_key(space)?,
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
            backbones: backbones.to_vec(),
        })
    }

    /// The weights sha256 of the backbone `name` (empty if unknown).
    pub fn sha_of(&self, name: &str) -> &str {
        self.backbones
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, s)| s.as_str())
    }

    /// A short hash of the set of item ids: two plans with the same fingerprint compute the
    /// same results (whatever else, such as the report's note, differs).
    pub fn fingerprint(&self) -> String {
        let mut ids: Vec<&str> = self.items.iter().map(Item::id).collect();
        ids.sort_unstable();
        ids.dedup();
        let digest = Sha256::digest(ids.join("\n").as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn units(&self) -> Vec<Unit<'_>> {
        self.items
            .iter()
            .map(|i| Unit {
                id: i.id(),
                cost: i.cost_ms,
                deps: &i.deps,
            })
            .collect()
    }

    /// The shards (1-based, ascending) that compute each item among `count` shards
    /// ([`crate::shard`]'s rule): one for most items, several for copies of a training item
    /// that a group too large for one shard needs in each of its parts.
    pub fn partition(&self, count: usize) -> Vec<Vec<usize>> {
        shard::partition(&self.units(), count)
            .into_iter()
            .map(|s| s.into_iter().map(|x| x + 1).collect())
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

    /// Indices of the items `shard` computes, in plan order.
    pub fn shard_items(&self, shard: Shard) -> Vec<usize> {
        self.partition(shard.count())
            .into_iter()
            .enumerate()
            .filter(|(_, s)| s.contains(&shard.index()))
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

/// What the cost model needs to know of the task data: how many examples a split has, and how
/// long its batches are once tokenized (padded to their longest example, cut at `max_len`),
/// from the first few batches of the split.
struct DataStats<'a> {
    exp: &'a Experiment,
    tokenizer: Option<Tokenizer>,
    splits: HashMap<(String, &'static str), Vec<Example>>,
    lengths: HashMap<(String, &'static str, usize), f64>,
}

/// Batches tokenized to estimate a split's padded length.
const SAMPLED_BATCHES: usize = 8;

impl<'a> DataStats<'a> {
    fn new(exp: &'a Experiment) -> Self {
        Self {
            exp,
            tokenizer: None,
            splits: HashMap::new(),
            lengths: HashMap::new(),
        }
    }

    fn examples(&mut self, task: &str, split: Split) -> Result<&[Example]> {
        let k = (task.to_string(), split.name());
        if !self.splits.contains_key(&k) {
            let examples = self
                .exp
                .load_split(task, split)
                .context(|| format!("reading `{task}` to estimate the cost of its items"))?
                .examples;
            self.splits.insert(k.clone(), examples);
        }
        Ok(self.splits.get(&k).map_or(&[], Vec::as_slice))
    }

    /// The number of examples of the task's split, at most `bound`.
    fn count(&mut self, task: &str, split: Split, bound: Option<usize>) -> Result<usize> {
        let n = self.examples(task, split)?.len();
        Ok(bound.map_or(n, |b| b.min(n)))
    }

    /// The mean length of the task's batches of `batch` examples, padded to their longest and
    /// cut at the experiment's `max_len`.
    fn padded_len(&mut self, task: &str, split: Split, batch: usize) -> Result<f64> {
        let k = (task.to_string(), split.name(), batch);
        if let Some(&l) = self.lengths.get(&k) {
            return Ok(l);
        }
        let batch = batch.max(1);
        let sample: Vec<TextInput> = self
            .examples(task, split)?
            .iter()
            .filter(|e| !e.text_a.trim().is_empty())
            .take(batch * SAMPLED_BATCHES)
            .map(|e| match &e.text_b {
                Some(b) if !b.trim().is_empty() => TextInput::Pair(e.text_a.clone(), b.clone()),
                _ => TextInput::Single(e.text_a.clone()),
            })
            .collect();
        let tok = match self.tokenizer.take() {
            Some(t) => t,
            None => Tokenizer::from_dir(self.exp.first_model(), self.exp.train.max_len)?,
        };
        let lens = sample
            .chunks(batch)
            .map(|chunk| {
                Ok(tok
                    .encode(chunk)?
                    .input_ids
                    .dims()
                    .get(1)
                    .copied()
                    .unwrap_or(0) as f64)
            })
            .collect::<Result<Vec<f64>>>();
        self.tokenizer = Some(tok);
        let lens = lens?;
        let l = if lens.is_empty() {
            self.exp.train.max_len as f64
        } else {
            lens.iter().sum::<f64>() / lens.len() as f64
        };
        self.lengths.insert(k, l);
        Ok(l)
    }
}

/// The cost model: estimated CPU seconds (one core) of each kind of item, from the work it
/// does: examples x their padded token count x forward FLOP per token, times a factor per
/// training method. Calibrated on real runs with all-MiniLM-L6-v2 on a shared 2-core Xeon at
/// 2.6 GHz with AVX-512: `configs/demo.toml` (batch 16, 48 tokens) and a check at batch 32, 128
/// tokens (README, "Running a study on a cluster", has the measurements). Only the ratios
/// between items matter for the partition; the absolute figures are what `--list-items` prints,
/// so re-calibrate them from a real run (`<out>/timings/*.json`) before budgeting a cluster of
/// another kind.
pub mod cost {
    use super::*;

    /// Forward-pass FLOP per CPU second in training (times [`passes`] per example).
    pub const TRAIN_FLOP_PER_CPU_S: f64 = 100e9;
    /// FLOP per CPU second of evaluation (inference) passes.
    pub const EVAL_FLOP_PER_CPU_S: f64 = 120e9;
    /// Backbone parameters per CPU second quantized, pruned, encoded and loaded back (half
    /// that with faults injected).
    pub const COMPRESS_PARAMS_PER_CPU_S: f64 = 30e6;
    /// Fixed cost of a training item: loading the backbone, tokenizer and data.
    pub const ITEM_CPU_S: f64 = 1.0;
    /// A simulation of every policy for 1..N tasks on one model (measured: about 0.01 s).
    pub const SIMULATE_CPU_S: f64 = 0.05;
    /// A design-space sweep (measured: 0.03 s for the demo's 8,000 points).
    pub const DSE_CPU_S: f64 = 0.2;

    /// Seconds to whole milliseconds (at least 1, so that no item is free).
    pub fn ms(seconds: f64) -> u64 {
        ((seconds * 1000.0).round() as u64).max(1)
    }

    /// Forward FLOP per token of an encoder at sequence length `len`: the matrix products of
    /// every layer application (and ALBERT's E->H projection), and the attention scores and
    /// weighted sums.
    pub fn flop_per_token(shape: &ModelShape, len: f64) -> f64 {
        let apps = shape.applications() as f64;
        let projection = if shape.has_projection() {
            (shape.embedding_size * shape.hidden_size) as f64
        } else {
            0.0
        };
        2.0 * (shape.layer_params() as f64 * apps + projection)
            + 4.0 * len * shape.hidden_size as f64 * apps
    }

    /// Cost of one training example relative to one forward pass, measured. Head-only
    /// training runs the frozen backbone forward.
    pub const HEAD_PASSES: f64 = 1.0;
    /// Adapters add the backward pass through the frozen layers (fused kernels).
    pub const ADAPTER_PASSES: f64 = 2.3;
    /// Full fine-tuning computes every weight's gradient and updates it. Measured 8.3 at
    /// batch 16 x 48 tokens and 5.3 at batch 32 x 128 (larger batches use the cores better);
    /// 6.0 leans to the batches real studies use.
    pub const FULL_PASSES: f64 = 6.0;

    fn passes(method: &str) -> f64 {
        match method_of(method) {
            Ok(Method::Full) => FULL_PASSES,
            Ok(Method::Head) => HEAD_PASSES,
            _ => ADAPTER_PASSES,
        }
    }

    /// Batch size of every dev-set evaluation (training's and the compress stage's).
    const EVAL_BATCH: usize = 64;

    pub(super) fn train(
        exp: &Experiment,
        shape: &ModelShape,
        item: &train::Item,
        data: &mut DataStats,
    ) -> Result<u64> {
        let t = &exp.train;
        let n_train = data.count(&item.task, Split::Train, t.max_train)? as f64;
        let n_dev = data.count(&item.task, Split::Dev, t.max_eval)? as f64;
        let len_train = data.padded_len(&item.task, Split::Train, t.batch)?;
        let len_dev = data.padded_len(&item.task, Split::Dev, EVAL_BATCH)?;
        let train = n_train * len_train * flop_per_token(shape, len_train) * passes(&item.method);
        let dev = n_dev * len_dev * flop_per_token(shape, len_dev);
        let per_epoch = train / TRAIN_FLOP_PER_CPU_S + dev / EVAL_FLOP_PER_CPU_S;
        // One test evaluation of the kept bundle (as long as a dev one, at the test cap).
        let n_test = data.count(&item.task, Split::Test, t.max_test)? as f64;
        let test = n_test * len_dev * flop_per_token(shape, len_dev) / EVAL_FLOP_PER_CPU_S;
        // Compress-then-train items compress the backbone first.
        let compress = match &item.compressed {
            Some(_) => shape.param_counts().total() as f64 * 2.0 / COMPRESS_PARAMS_PER_CPU_S,
            None => 0.0,
        };
        // Early stopping may end sooner; the estimate is the epoch budget.
        Ok(ms(ITEM_CPU_S
            + compress
            + test
            + t.epochs as f64 * per_epoch))
    }

    pub(super) fn compress(
        exp: &Experiment,
        shape: &ModelShape,
        point: &Point,
        task: &str,
        bundles_per_point: usize,
        data: &mut DataStats,
    ) -> Result<u64> {
        let t = &exp.train;
        let max_eval = exp
            .compress
            .as_ref()
            .and_then(|c| c.max_eval)
            .or(t.max_test);
        let n_eval = data.count(task, Split::Test, max_eval)? as f64;
        let len_dev = data.padded_len(task, Split::Dev, EVAL_BATCH)?;
        let faults = if point.faults == adalbert_compress::FaultSpec::None {
            1.0
        } else {
            2.0
        };
        // The backbone is compressed once per point and shared by its bundles.
        let params = shape.param_counts().total() as f64;
        let compress =
            params * faults / COMPRESS_PARAMS_PER_CPU_S / bundles_per_point.max(1) as f64;
        let eval = n_eval * len_dev * flop_per_token(shape, len_dev) / EVAL_FLOP_PER_CPU_S;
        let recover = if point.recover_epochs > 0 {
            let n = data.count(task, Split::Train, point.recover_train.or(t.max_train))? as f64;
            let len = data.padded_len(task, Split::Train, t.batch)?;
            let train = n * len * flop_per_token(shape, len) * ADAPTER_PASSES;
            point.recover_epochs as f64 * (train / TRAIN_FLOP_PER_CPU_S + eval)
        } else {
            0.0
        };
        Ok(ms(compress + eval + recover))
    }
}
