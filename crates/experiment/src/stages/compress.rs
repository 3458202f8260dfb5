//! Stage 2: the `[compress]` groups run through the one compression runner
//! ([`crate::sweep`]) on the `compress.method` bundles of the first training seed (trained on
//! the fp32 backbone), evaluated on the test split of each task, per backbone, aggregated over
//! fault seeds for Table 2 and its figure. The other side of Table 2, the method trained on
//! each compressed backbone, is a training item ([`super::train`]).

use std::collections::BTreeMap;
use std::path::Path;

use adalbert_compress::{Encoding, FaultSpec, Plan};
use adalbert_tasks::Split;

use super::train::{Item, TrainRecord};
use crate::cache::{Cache, Key};
use crate::config::Experiment;
use crate::error::Result;
use crate::stats::Summary;
use crate::sweep::{self, BundleSource, Point, Progress, Row, Sweep};

/// One (task, plan, faults) point of Table 2, aggregated over fault seeds.
#[derive(Debug, Clone)]
pub struct CompressRecord {
    pub backbone: String,
    pub task: String,
    /// The plan as the experiment file wrote it (with the recovery epochs, if any).
    pub plan: String,
    /// The fault spec as the experiment file wrote it.
    pub faults: String,
    pub metric: String,
    /// The metric over fault seeds.
    pub values: Vec<f64>,
    pub summary: Summary,
    pub backbone_bytes: u64,
    pub bytes_by_role: BTreeMap<String, u64>,
    /// Which figure panel the point belongs to (`bits`, `sparsity`, `bpc`) and its x value.
    pub axis: String,
    pub x: f64,
    /// Series name within the panel (e.g. `dense` / `bitmask`).
    pub series: String,
}

/// The training item whose bundle the compress stage evaluates for `task` on `backbone`: the
/// `compress.method` bundle of the first training seed at the compress learning rate (`None`
/// without a `[compress]` section).
pub fn bundle_item(exp: &Experiment, backbone: &str, task: &str) -> Option<Item> {
    let sec = exp.compress.as_ref()?;
    Some(Item {
        backbone: backbone.to_string(),
        task: task.to_string(),
        method: sec.method.clone(),
        lr: exp.compress_lr()?,
        seed: exp.seeds[0],
        sharing: None,
        compressed: None,
    })
}

/// The points of the `[compress]` groups (none without the section).
pub fn points(exp: &Experiment) -> Result<Vec<Point>> {
    exp.compress
        .as_ref()
        .map_or(Ok(vec![]), |sec| sweep::expand(&sec.groups))
}

/// A bundle the compress stage evaluates: the record of the training item that wrote it, and
/// that item's key (which stands for the bundle in the rows' keys).
#[derive(Debug, Clone, Copy)]
pub struct Trained<'a> {
    pub record: &'a TrainRecord,
    pub key: &'a str,
}

/// The sweep of the `[compress]` section over `trained` (bundles of [`bundle_item`]s on the
/// backbone `backbone`), or `None` without the section. Recovered bundles go under `out_dir`.
pub fn sweep_of(
    exp: &Experiment,
    backbone: &str,
    trained: &[Trained],
    out_dir: &Path,
) -> Option<Sweep> {
    let sec = exp.compress.as_ref()?;
    let model = exp.backbone(backbone)?.path.clone();
    Some(Sweep {
        model,
        bundles: trained
            .iter()
            .map(|t| BundleSource {
                path: t.record.bundle.clone(),
                data: Some(exp.data_for(&t.record.task)),
                identity: Some(t.key.to_string()),
                files: exp.file_task(&t.record.task).map(|r| r.task.clone()),
            })
            .collect(),
        split_seed: exp.split_seed,
        // The reported split: the offline suite's test split, GLUE's official dev set (its
        // test set is unlabeled); validation keeps an experiment on one of the two.
        split: exp
            .all_tasks()
            .first()
            .and_then(|t| adalbert_tasks::task_spec(t).ok())
            .map_or(Split::Test, |s| adalbert_tasks::report_split(&s)),
        max_eval: sec.max_eval.or(exp.train.max_test),
        max_len: exp.train.max_len,
        out: out_dir.to_path_buf(),
        groups: sec.groups.clone(),
    })
}

/// Evaluates the pairs `(point index, bundle)` through `cache`, one progress line per point
/// computed, one backbone at a time.
pub fn run_pairs(
    exp: &Experiment,
    points: &[Point],
    pairs: &[(usize, Trained)],
    out_dir: &Path,
    cache: &Cache,
) -> Result<()> {
    for b in &exp.backbones {
        let mine: Vec<&(usize, Trained)> = pairs
            .iter()
            .filter(|(_, t)| t.record.backbone == b.name)
            .collect();
        let mut trained: Vec<Trained> = Vec::new();
        for (_, t) in &mine {
            if !trained.iter().any(|u| u.key == t.key) {
                trained.push(*t);
            }
        }
        if trained.is_empty() {
            continue;
        }
        let Some(sweep) = sweep_of(exp, &b.name, &trained, out_dir) else {
            return Ok(());
        };
        let wanted = |pi: usize, bi: usize| {
            mine.iter()
                .any(|(p, t)| *p == pi && t.key == trained[bi].key)
        };
        sweep::execute_where(&sweep, points, cache, Progress::Lines, wanted)?;
    }
    Ok(())
}

/// The cache key of the row of `point` on the bundle of `task` on `backbone` written by the
/// training item with key `train_key` (`None` without a `[compress]` section).
pub fn row_key(
    exp: &Experiment,
    point: &Point,
    backbone: &str,
    task: &str,
    train_key: &str,
    backbone_sha256: &str,
) -> Result<Option<Key>> {
    let Some(sweep) = sweep_of(exp, backbone, &[], Path::new("")) else {
        return Ok(None);
    };
    let data = exp.data_for(task);
    sweep::row_key(point, &sweep, backbone_sha256, train_key, Some(&data)).map(Some)
}

/// Table 2's records: rows (point-major, one per bundle per point; bundle `i` on the backbone
/// `backbones[i]`) grouped by (group, plan, faults, recovery) in first-seen order and, within
/// that, by bundle.
pub fn aggregate(points: &[Point], rows: &[Row], backbones: &[String]) -> Vec<CompressRecord> {
    let n_bundles = backbones.len();
    type ConfigKey<'a> = (usize, &'a str, &'a str, usize);
    let mut configs: Vec<(ConfigKey, Vec<usize>)> = Vec::new();
    for (pi, p) in points.iter().enumerate() {
        let k = (
            p.group,
            p.plan_text.as_str(),
            p.faults_text.as_str(),
            p.recover_epochs,
        );
        match configs.iter_mut().find(|(kk, _)| *kk == k) {
            Some((_, v)) => v.push(pi),
            None => configs.push((k, vec![pi])),
        }
    }
    let mut out = Vec::new();
    for (_, point_ids) in &configs {
        let first = &points[point_ids[0]];
        for bi in 0..n_bundles {
            let results: Vec<&Row> = point_ids
                .iter()
                .map(|&pi| &rows[pi * n_bundles + bi])
                .collect();
            out.push(record(&backbones[bi], first, &results));
        }
    }
    out
}

fn record(backbone: &str, p: &Point, results: &[&Row]) -> CompressRecord {
    let values: Vec<f64> = results.iter().map(|r| r.value).collect();
    let encoding = match p.plan.encoding {
        Encoding::Dense => "dense".to_string(),
        Encoding::Bitmask => "bitmask".to_string(),
    };
    let (axis, x, series) = panel(&p.plan, &p.faults, encoding);
    let first = results[0];
    let plan = if p.recover_epochs > 0 {
        format!("{} (recovery {} epochs)", p.plan_text, p.recover_epochs)
    } else {
        p.plan_text.clone()
    };
    CompressRecord {
        backbone: backbone.to_string(),
        task: first.task.clone(),
        plan,
        faults: p.faults_text.clone(),
        metric: first.metric.clone(),
        summary: Summary::of(&values),
        values,
        backbone_bytes: first.backbone_bytes(),
        bytes_by_role: first.bytes_by_role(),
        axis: axis.into(),
        x,
        series,
    }
}

/// The figure panel of a point: bits per cell under MLC faults, else sparsity when pruned,
/// else the format's bits.
fn panel(plan: &Plan, faults: &FaultSpec, encoding: String) -> (&'static str, f64, String) {
    match (faults, &plan.prune) {
        (FaultSpec::Mlc(m), _) => ("bpc", f64::from(m.bits_per_cell), encoding),
        (_, Some(p)) => ("sparsity", p.sparsity, plan.format.to_string()),
        _ => ("bits", f64::from(plan.format.bits()), "format".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Group;

    fn row(task: &str, value: f64) -> Row {
        serde_json::from_value(serde_json::json!({
            "group": "compress", "task": task, "bundle": "b", "plan": "p", "faults": "f",
            "seed": 0, "recover_epochs": 0, "metric": "accuracy", "value": value,
            "metrics": {}, "n_eval": 5, "payload_bits": 80, "metadata_bits": 9,
            "fp32_bits": 320, "role_bits": {"matrix": 64, "norm": 16},
            "role_metadata_bits": {"matrix": 9}, "numel": 10, "nnz": 10, "value_cells": 10,
            "value_flipped_cells": 0, "mask_cells": 0, "mask_flipped_cells": 0,
            "flipped_bits": 0, "decode_mismatches": 0, "analytic_cell_error_rate": null,
            "weights_sha256": "w", "shared_eval": false, "seconds": 0.5
        }))
        .unwrap()
    }

    #[test]
    fn rows_aggregate_per_plan_faults_and_task_over_fault_seeds() {
        let g: Group = toml::from_str(
            "name = \"compress\"\nplans = [\"int8\", \"af4e3+prune=0.5+bitmask\"]\nfaults = [\"none\", \"mlc:bpc=3\"]\nseeds = 3",
        )
        .unwrap();
        let points = sweep::expand(&[g]).unwrap();
        assert_eq!(points.len(), 2 * (1 + 3));
        // Two bundles per point: task a gets the point index, task b a constant.
        let rows: Vec<Row> = (0..points.len())
            .flat_map(|i| [row("a", i as f64), row("b", 0.5)])
            .collect();
        let recs = aggregate(&points, &rows, &["x".to_string(), "x".to_string()]);
        assert_eq!(recs.len(), 2 * 2 * 2);
        let r = &recs[2];
        assert_eq!(
            (r.task.as_str(), r.plan.as_str(), r.faults.as_str()),
            ("a", "int8", "mlc:bpc=3")
        );
        assert_eq!(r.values, [1.0, 2.0, 3.0]);
        assert_eq!(r.summary.mean, 2.0);
        assert_eq!(r.summary.sd, Some(1.0));
        assert_eq!(
            (r.axis.as_str(), r.x, r.series.as_str()),
            ("bpc", 3.0, "dense")
        );
        assert_eq!(recs[0].summary.sd, None, "fault-free points run once");
        assert_eq!((recs[0].axis.as_str(), recs[0].x), ("bits", 8.0));
        let pruned = &recs[4];
        assert_eq!(pruned.plan, "af4e3+prune=0.5+bitmask");
        assert_eq!((pruned.axis.as_str(), pruned.x), ("sparsity", 0.5));
        assert_eq!(r.backbone_bytes, 12);
        assert_eq!(r.bytes_by_role["matrix"], 10);
        assert_eq!(r.bytes_by_role["norm"], 2);
    }
}
