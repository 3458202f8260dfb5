//! Stage 3: evaluate the trained bundles on a compressed (and possibly faulty) backbone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One (task, plan, faults) point, aggregated over fault seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompressRecord {
    pub task: String,
    pub plan: String,
    pub faults: String,
    pub metric: String,
    pub values: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub backbone_bytes: u64,
    pub bytes_by_role: BTreeMap<String, u64>,
    /// Which figure panel the point belongs to (`bits`, `sparsity`, `bpc`) and its x value.
    pub axis: String,
    pub x: f64,
    /// Series name within the panel (e.g. `dense` / `bitmask`).
    pub series: String,
}

use adalbert_compress::{FaultSpec, Plan};
use adalbert_model::compression::compress_checkpoint;
use adalbert_model::tokenizer::Tokenizer;
use adalbert_model::{Backbone, Checkpoint, EncoderConfig, TaskBundle, TaskModel};
use adalbert_tasks::{load_dataset, Split};
use adalbert_train::eval::evaluate_model;
use anyhow::Context;

use super::cache::Cache;
use super::config::Experiment;
use super::train_stage::TrainRecord;

#[derive(Serialize)]
struct PointKey<'a> {
    backbone_sha256: &'a str,
    bundle: &'a TrainRecord,
    plan: &'a str,
    faults: &'a str,
    seed: u64,
    max_eval: Option<usize>,
    max_len: usize,
}

#[derive(Serialize, Deserialize)]
struct PointResult {
    value: f64,
    backbone_bytes: u64,
    bytes_by_role: BTreeMap<String, u64>,
}

/// Evaluates the `compress.method` bundles of every task on every (plan, faults, seed).
pub fn run(
    exp: &Experiment,
    trained: &[TrainRecord],
    backbone_sha256: &str,
    cache: &Cache,
) -> anyhow::Result<Vec<CompressRecord>> {
    let Some(sec) = &exp.compress else {
        return Ok(vec![]);
    };
    let seed0 = exp.seeds[0];
    let bundles: Vec<&TrainRecord> = exp
        .tasks
        .names
        .iter()
        .filter_map(|t| {
            trained
                .iter()
                .find(|r| &r.task == t && r.method == sec.method && r.seed == seed0)
        })
        .collect();
    let config = EncoderConfig::from_path(&exp.model)?;
    let ck = Checkpoint::open(&exp.model)?;
    let tok = Tokenizer::from_dir(&exp.model, exp.train.max_len)?;
    let max_eval = sec.max_eval.or(exp.train.max_eval);
    // Bundles and dev sets are read once, not once per compression point.
    let mut loaded = Vec::with_capacity(bundles.len());
    for b in &bundles {
        let bundle = TaskBundle::load(&b.bundle)?;
        let params = bundle.task_params(&config)?;
        let mut dev = load_dataset(
            &b.task,
            Some(&exp.data_for(&b.task)),
            Split::Dev,
            exp.split_seed,
        )?;
        dev.examples.truncate(max_eval.unwrap_or(usize::MAX));
        loaded.push((bundle, params, dev));
    }
    let mut out = Vec::new();
    for plan_s in &sec.plans {
        let plan: Plan = plan_s.parse()?;
        for faults_s in &sec.faults {
            let faults: FaultSpec = faults_s.parse()?;
            let seeds = if matches!(faults, FaultSpec::None) {
                1
            } else {
                sec.fault_seeds
            };
            let mut per_task: Vec<Vec<PointResult>> =
                (0..bundles.len()).map(|_| Vec::new()).collect();
            for seed in 0..seeds {
                let keys: Vec<String> = bundles
                    .iter()
                    .map(|b| {
                        Cache::key(&PointKey {
                            backbone_sha256,
                            bundle: b,
                            plan: plan_s,
                            faults: faults_s,
                            seed,
                            max_eval,
                            max_len: exp.train.max_len,
                        })
                    })
                    .collect();
                let cached: Vec<Option<PointResult>> =
                    keys.iter().map(|k| cache.get("compress", k)).collect();
                if cached.iter().all(Option::is_some) {
                    for (i, c) in cached.into_iter().enumerate() {
                        per_task[i].extend(c);
                    }
                    continue;
                }
                eprintln!("  plan {plan_s} | faults {faults_s} | seed {seed}");
                let cc = compress_checkpoint(&ck, &plan, &faults, seed).with_context(|| {
                    format!("compress plan `{plan_s}` with faults `{faults_s}`")
                })?;
                let backbone = Backbone::load(&cc.checkpoint, &config)?;
                let backbone_bytes = cc.report.total.total_bits().div_ceil(8);
                let bytes_by_role: BTreeMap<String, u64> = cc
                    .report
                    .by_role
                    .iter()
                    .map(|r| {
                        (
                            r.role.as_str().to_string(),
                            r.storage.total_bits().div_ceil(8),
                        )
                    })
                    .collect();
                for (i, (b, (bundle, params, dev))) in bundles.iter().zip(&loaded).enumerate() {
                    let model = TaskModel {
                        backbone: &backbone,
                        task: params,
                        layout: &bundle.meta.layout,
                    };
                    let metrics = evaluate_model(&model, &tok, &dev.task, &dev.examples, 64)?;
                    let value = metrics
                        .iter()
                        .find(|(k, _)| *k == b.primary)
                        .map_or(f64::NAN, |(_, v)| *v);
                    let r = PointResult {
                        value,
                        backbone_bytes,
                        bytes_by_role: bytes_by_role.clone(),
                    };
                    cache.put("compress", &keys[i], &r)?;
                    per_task[i].push(r);
                }
            }
            for (b, results) in bundles.iter().zip(per_task) {
                out.push(record(b, plan_s, &plan, faults_s, &faults, results));
            }
        }
    }
    Ok(out)
}

fn record(
    b: &TrainRecord,
    plan_s: &str,
    plan: &Plan,
    faults_s: &str,
    faults: &FaultSpec,
    results: Vec<PointResult>,
) -> CompressRecord {
    let values: Vec<f64> = results.iter().map(|r| r.value).collect();
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let encoding = match plan.encoding {
        adalbert_compress::Encoding::Dense => "dense".to_string(),
        adalbert_compress::Encoding::Bitmask => "bitmask".to_string(),
    };
    let (axis, x, series) = match (faults, &plan.prune) {
        (FaultSpec::Mlc(m), _) => ("bpc", f64::from(m.bits_per_cell), encoding),
        (_, Some(p)) => ("sparsity", p.sparsity, plan.format.to_string()),
        _ => ("bits", f64::from(plan.format.bits()), "format".to_string()),
    };
    let first = results.first();
    CompressRecord {
        task: b.task.clone(),
        plan: plan_s.to_string(),
        faults: faults_s.to_string(),
        metric: b.primary.clone(),
        mean,
        std,
        backbone_bytes: first.map_or(0, |r| r.backbone_bytes),
        bytes_by_role: first.map(|r| r.bytes_by_role.clone()).unwrap_or_default(),
        values,
        axis: axis.into(),
        x,
        series,
    }
}
