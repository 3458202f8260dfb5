//! Accuracy joins energy: measured test metrics of compression plans (and adapter sizes) next
//! to the simulated energy and area of running them, and the accuracy-vs-energy Pareto front
//! per backbone. Sparsity and fewer bits are then no longer free: each plan's cost in accuracy
//! sits next to what it saves.
//!
//! # Input (`--accuracy FILE.csv`)
//! A CSV with a header; columns are found by name, others are ignored:
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `plan` | yes | the backbone's compression plan, in the grammar of `adalbert compress` |
//! | `task` | yes | the task measured |
//! | `metric` | yes | the metric's name (e.g. `accuracy`, `matthews_correlation`; the old `mcc` is read as that) |
//! | `mean` or `value` | one of them | the metric; `value` rows are repeats (one per `seed`) and are averaged here, `mean` rows are already aggregated |
//! | `sd`, `n` | no | sample standard deviation and number of repeats behind a `mean` |
//! | `seed` | no | repeat id of a `value` row; rows repeating a (plan, task, seed) are read once |
//! | `backbone` | no | model of the measurement (built-in name or directory); else `--accuracy-backbone` |
//! | `adapter` | no | adapter spec of the task bundles; else `--accuracy-adapter`, else the simulation's |
//! | `faults` | no | fault model of the measurement (`none`, `mlc:bpc=2...`): an MLC model at the published sigma with the mask in single-level cells gives the bits per cell of the point; other fault models (stress tests, bit flips, the mask in MLC cells) are skipped and counted |
//! | `recover_epochs` | no | rows retrained after compression (> 0) are skipped and counted |
//!
//! `results/compression.csv` (the post-training compression study) has this shape.

use std::collections::BTreeMap;
use std::path::Path;

use adalbert_compress::faults::MaskCells;
use adalbert_compress::{FaultSpec, Plan};
use adalbert_core::{AdapterSpec, ModelShape, Sharing};
use serde::Serialize;

use crate::error::{field_err, HwError, Result};
use crate::mapping::Platform;
use crate::scenario::Scenario;
use crate::spec::{Policy, StoragePlan, TaskStore, Usage};

/// One measured metric of one (backbone, plan, bits per cell, adapter, task).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub backbone: String,
    /// The plan as `adalbert compress` prints it.
    pub plan: String,
    /// From the fault model; `None`: measured without faults.
    pub bits_per_cell: Option<u32>,
    pub adapter: String,
    pub task: String,
    pub metric: String,
    pub mean: f64,
    pub sd: f64,
    pub n: u64,
}

/// What was read, and the rows left out with the reason.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AccuracyInput {
    pub origin: String,
    pub measurements: Vec<Measurement>,
    pub skipped: BTreeMap<String, usize>,
}

/// Values for columns a file does not have.
#[derive(Debug, Clone, Default)]
pub struct Fill {
    pub backbone: Option<String>,
    pub adapter: Option<String>,
    /// The accelerator keeps the bit mask in single-level cells (MLC-mask rows are skipped).
    pub mask_in_slc: bool,
}

/// Read an accuracy CSV (see the module documentation).
pub fn read_accuracy(path: &Path, fill: &Fill) -> Result<AccuracyInput> {
    let text = crate::error::read_text(path)?;
    parse_accuracy(&text, &path.display().to_string(), fill)
}

/// Parse accuracy CSV text; `origin` names it in errors.
pub fn parse_accuracy(text: &str, origin: &str, fill: &Fill) -> Result<AccuracyInput> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| parse_err(origin, e))?.clone();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let need = |name: &str| {
        col(name)
            .ok_or_else(|| field_err(origin, &format!("column `{name}`"), "present in the header"))
    };
    let (plan_c, task_c, metric_c) = (need("plan")?, need("task")?, need("metric")?);
    let (mean_c, value_c) = (col("mean"), col("value"));
    if mean_c.is_none() && value_c.is_none() {
        return Err(field_err(
            origin,
            "column `mean` or `value`",
            "one of them in the header",
        ));
    }
    let backbone_c = col("backbone");
    if backbone_c.is_none() && fill.backbone.is_none() {
        return Err(field_err(
            origin,
            "column `backbone`",
            "present, or the backbone given with --accuracy-backbone",
        ));
    }
    let (adapter_c, faults_c, recover_c, seed_c, sd_c, n_c) = (
        col("adapter"),
        col("faults"),
        col("recover_epochs"),
        col("seed"),
        col("sd"),
        col("n"),
    );
    let mut out = AccuracyInput {
        origin: origin.to_string(),
        ..AccuracyInput::default()
    };
    // (key, seed) seen; key -> values of the repeats
    let mut seen = std::collections::HashSet::new();
    let mut repeats: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| parse_err(origin, e))?;
        let at = format!("{origin}: line {}", i + 2);
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let skip = |out: &mut AccuracyInput, why: &str| {
            *out.skipped.entry(why.to_string()).or_default() += 1;
        };
        if let Some(c) = recover_c {
            if number(&at, "recover_epochs", get(c))? > 0.0 {
                skip(&mut out, "retrained after compression (recover_epochs > 0)");
                continue;
            }
        }
        let bits_per_cell = match faults_c.map(get) {
            None | Some("") | Some("none") => None,
            Some(f) => match f.parse::<FaultSpec>() {
                Ok(FaultSpec::Mlc(m)) if m.sigma_scale != 1.0 => {
                    skip(&mut out, "stress-test fault model (sigma scaled)");
                    continue;
                }
                Ok(FaultSpec::Mlc(m)) if fill.mask_in_slc && m.mask == MaskCells::Mlc => {
                    skip(
                        &mut out,
                        "bit mask in MLC cells (the accelerator keeps it in SLC)",
                    );
                    continue;
                }
                Ok(FaultSpec::Mlc(m)) => Some(u32::from(m.bits_per_cell)),
                Ok(_) => {
                    skip(&mut out, "fault model other than MLC RRAM");
                    continue;
                }
                Err(e) => return Err(field_err(&at, "faults", e.to_string())),
            },
        };
        let plan: Plan = get(plan_c)
            .parse()
            .map_err(|e: adalbert_compress::CompressError| field_err(&at, "plan", e.to_string()))?;
        let backbone = match backbone_c.map(get) {
            Some(b) if !b.is_empty() => b.to_string(),
            _ => fill.backbone.clone().unwrap_or_default(),
        };
        let adapter = match adapter_c.map(get) {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => fill.adapter.clone().unwrap_or_default(),
        };
        let key = Key {
            backbone,
            plan: plan.to_string(),
            bits_per_cell,
            adapter,
            task: get(task_c).to_string(),
            metric: adalbert_core::metric::current_name(get(metric_c)).to_string(),
        };
        if let Some(c) = mean_c {
            let mean = number(&at, "mean", get(c))?;
            let sd = sd_c
                .map(|c| number(&at, "sd", get(c)))
                .transpose()?
                .unwrap_or(0.0);
            let n = n_c
                .map(|c| number(&at, "n", get(c)))
                .transpose()?
                .unwrap_or(1.0);
            out.measurements.push(key.measure(mean, sd, n as u64));
            continue;
        }
        let seed = seed_c
            .map(|c| get(c).to_string())
            .unwrap_or_else(|| i.to_string());
        if !seen.insert((key.clone(), seed)) {
            skip(&mut out, "repeat of a (plan, task, seed) already read");
            continue;
        }
        let v = number(&at, "value", get(value_c.unwrap_or_default()))?;
        repeats.entry(key).or_default().push(v);
    }
    for (key, v) in repeats {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        out.measurements.push(key.measure(mean, sd, v.len() as u64));
    }
    if out.measurements.is_empty() {
        return Err(field_err(origin, "rows", "at least one usable measurement"));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    backbone: String,
    plan: String,
    bits_per_cell: Option<u32>,
    adapter: String,
    task: String,
    metric: String,
}

impl Key {
    fn measure(self, mean: f64, sd: f64, n: u64) -> Measurement {
        Measurement {
            backbone: self.backbone,
            plan: self.plan,
            bits_per_cell: self.bits_per_cell,
            adapter: self.adapter,
            task: self.task,
            metric: self.metric,
            mean,
            sd,
            n,
        }
    }
}

fn parse_err(origin: &str, e: csv::Error) -> HwError {
    HwError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

fn number(at: &str, column: &str, text: &str) -> Result<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| field_err(at, column, format!("a number, found `{text}`")))
}

/// The simulation every point is costed with.
#[derive(Debug, Clone)]
pub struct JoinBase {
    pub platform: Platform,
    pub sharing: Sharing,
    pub seq_len: u64,
    pub num_labels: u64,
    pub usage: Usage,
    /// Bits per cell of points measured without faults.
    pub default_bits_per_cell: u32,
    /// The adapter of rows that name none.
    pub default_adapter: AdapterSpec,
    pub store: TaskStore,
}

/// (backbone, plan, bits per cell, adapter, metric): the measurements of one point.
type GroupKey = (String, String, Option<u32>, String, String);

/// One plan of one backbone: mean accuracy over the tasks, simulated energy and area.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub backbone: String,
    pub plan: StoragePlan,
    /// Bits per cell came from a fault model (`false`: measured without faults, costed at the
    /// default bits per cell).
    pub measured_with_faults: bool,
    pub adapter: AdapterSpec,
    pub metric: String,
    /// Mean over tasks of each task's mean metric, and the worst task's.
    pub mean: f64,
    pub worst: f64,
    /// (task, mean, sd, repeats)
    pub tasks: Vec<(String, f64, f64, u64)>,
    /// adapter-hetero serving every measured task (N = number of tasks).
    pub n_tasks: u64,
    pub energy_pj: f64,
    pub latency_ns: f64,
    pub area_mm2: f64,
    pub backbone_mb: f64,
    pub pareto: bool,
}

/// Join the measurements to simulated energy and area and mark each backbone's Pareto front
/// (higher mean metric, lower energy per request). Points not measured on every task of their
/// backbone are left out and counted in `skipped`.
pub fn join(
    input: &AccuracyInput,
    base: &JoinBase,
) -> Result<(Vec<Point>, BTreeMap<String, usize>)> {
    let mut skipped = BTreeMap::new();
    let mut groups: BTreeMap<GroupKey, Vec<&Measurement>> = BTreeMap::new();
    let mut tasks: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for m in &input.measurements {
        let key = (
            m.backbone.clone(),
            m.plan.clone(),
            m.bits_per_cell,
            m.adapter.clone(),
            m.metric.clone(),
        );
        groups.entry(key).or_default().push(m);
        tasks.entry(m.backbone.clone()).or_default().insert(&m.task);
    }
    let mut points = Vec::new();
    for ((backbone, plan, bpc, adapter, metric), ms) in groups {
        let all = &tasks[&backbone];
        if ms.len() != all.len() {
            *skipped
                .entry(format!("{backbone}: plan not measured on every task"))
                .or_default() += ms.len();
            continue;
        }
        let model = ModelShape::resolve(&backbone)
            .map_err(|e| field_err(&input.origin, "backbone", e.to_string()))?;
        let adapter: AdapterSpec = if adapter.is_empty() {
            base.default_adapter
        } else {
            adapter.parse().map_err(|e: adalbert_core::CoreError| {
                field_err(&input.origin, "adapter", e.to_string())
            })?
        };
        let plan = StoragePlan::parse(&plan, bpc.unwrap_or(base.default_bits_per_cell))?;
        let scenario = Scenario::new(
            base.platform.clone(),
            model,
            Some(adapter),
            base.sharing,
            plan,
            base.seq_len,
            base.num_labels,
        )?;
        let n = all.len() as u64;
        let r = scenario.run(Policy::AdapterHetero, n, base.store)?;
        let q = r.request(&base.usage);
        let t = &scenario.adapted.totals;
        let means: Vec<f64> = ms.iter().map(|m| m.mean).collect();
        points.push(Point {
            backbone,
            plan,
            measured_with_faults: bpc.is_some(),
            adapter,
            metric,
            mean: means.iter().sum::<f64>() / means.len() as f64,
            worst: means.iter().copied().fold(f64::INFINITY, f64::min),
            tasks: ms
                .iter()
                .map(|m| (m.task.clone(), m.mean, m.sd, m.n))
                .collect(),
            n_tasks: n,
            energy_pj: q.energy_pj,
            latency_ns: q.latency_ns,
            area_mm2: r.area_mm2,
            backbone_mb: (t.backbone_value_bits + t.backbone_mask_bits) / 8e6,
            pareto: false,
        });
    }
    mark_front(&mut points);
    Ok((points, skipped))
}

/// Per backbone and metric: a point is on the front when no other has a mean at least as
/// high and an energy at most as low, one of them strictly.
fn mark_front(points: &mut [Point]) {
    let flags: Vec<bool> = points
        .iter()
        .map(|p| {
            !points.iter().any(|q| {
                q.backbone == p.backbone
                    && q.metric == p.metric
                    && q.mean >= p.mean
                    && q.energy_pj <= p.energy_pj
                    && (q.mean > p.mean || q.energy_pj < p.energy_pj)
            })
        })
        .collect();
    for (p, f) in points.iter_mut().zip(flags) {
        p.pareto = f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill() -> Fill {
        Fill {
            backbone: Some("minilm".into()),
            adapter: Some("houlsby:64".into()),
            mask_in_slc: true,
        }
    }

    #[test]
    fn value_rows_are_averaged_over_seeds_and_odd_fault_models_skipped() {
        let csv = "group,task,plan,faults,seed,recover_epochs,metric,value\n\
            a,t1,int8,none,0,0,accuracy,0.8\n\
            b,t1,int8,none,0,0,accuracy,0.8\n\
            a,t1,af8e3+prune=0.5,mlc:bpc=3:mask=slc,0,0,accuracy,0.5\n\
            a,t1,af8e3+prune=0.5,mlc:bpc=3:mask=slc,1,0,accuracy,0.7\n\
            a,t1,af8e3+prune=0.5,mlc:bpc=2:sigma=2,0,0,accuracy,0.1\n\
            a,t1,af8e3+prune=0.5,mlc:bpc=2:mask=mlc,0,0,accuracy,0.1\n\
            a,t1,af8e3+prune=0.5,none,0,1,accuracy,0.9\n";
        let input = parse_accuracy(csv, "acc.csv", &fill()).unwrap();
        assert_eq!(input.measurements.len(), 2);
        let int8 = input
            .measurements
            .iter()
            .find(|m| m.plan == "int8:per-tensor:sym")
            .unwrap();
        // the `b` row repeats seed 0 of the same plan and task: read once
        assert_eq!((int8.mean, int8.n, int8.bits_per_cell), (0.8, 1, None));
        let mlc = input
            .measurements
            .iter()
            .find(|m| m.bits_per_cell == Some(3))
            .unwrap();
        // mean of 0.5 and 0.7; sample sd = sqrt(((-0.1)^2 + 0.1^2) / 1)
        assert!((mlc.mean - 0.6).abs() < 1e-12 && (mlc.sd - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(
            (mlc.backbone.as_str(), mlc.adapter.as_str()),
            ("minilm", "houlsby:64")
        );
        assert_eq!(input.skipped.values().sum::<usize>(), 4);
    }

    #[test]
    fn bad_input_names_the_column() {
        let err = parse_accuracy("task,metric,value\nt,accuracy,1\n", "a.csv", &fill())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.csv") && err.contains("column `plan`"),
            "{err}"
        );
        let no_backbone = Fill {
            backbone: None,
            ..fill()
        };
        let err = parse_accuracy(
            "plan,task,metric,mean\nint8,t,accuracy,0.9\n",
            "b.csv",
            &no_backbone,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("column `backbone`") && err.contains("--accuracy-backbone"),
            "{err}"
        );
        let err = parse_accuracy(
            "plan,task,metric,mean\nint8,t,accuracy,high\n",
            "c.csv",
            &fill(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.csv: line 2") && err.contains("mean") && err.contains("`high`"),
            "{err}"
        );
        let err = parse_accuracy(
            "plan,task,metric,mean\nint9,t,accuracy,0.5\n",
            "d.csv",
            &fill(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2") && err.contains("plan"), "{err}");
    }

    #[test]
    fn points_join_energy_and_the_front_keeps_the_undominated() {
        let csv = "backbone,plan,adapter,task,metric,mean,sd,n\n\
            minilm,fp32,houlsby:64,t1,accuracy,0.90,0,1\n\
            minilm,fp32,houlsby:64,t2,accuracy,0.70,0,1\n\
            minilm,int8,houlsby:64,t1,accuracy,0.90,0,1\n\
            minilm,int8,houlsby:64,t2,accuracy,0.70,0,1\n\
            minilm,int8+prune=0.9+bitmask,houlsby:64,t1,accuracy,0.40,0,1\n\
            minilm,int8+prune=0.9+bitmask,houlsby:64,t2,accuracy,0.40,0,1\n\
            minilm,int4,houlsby:64,t1,accuracy,0.95,0,1\n";
        let input = parse_accuracy(csv, "p.csv", &fill()).unwrap();
        let base = JoinBase {
            platform: Platform::builtin().unwrap(),
            sharing: Sharing::PerApplication,
            seq_len: 128,
            num_labels: 2,
            usage: Usage::back_to_back(1.0),
            default_bits_per_cell: 2,
            default_adapter: "houlsby:64".parse().unwrap(),
            store: TaskStore::Sram,
        };
        let (points, skipped) = join(&input, &base).unwrap();
        // int4 was measured on one task of two: left out
        assert_eq!(points.len(), 3);
        assert_eq!(skipped.values().sum::<usize>(), 1);
        let get = |format: &str, pruned: bool| {
            points
                .iter()
                .find(|x| {
                    let plan = x.plan.plan.to_string();
                    plan.starts_with(format) && plan.contains("prune") == pruned
                })
                .unwrap()
        };
        let (fp32, int8, sparse) = (get("fp32", false), get("int8", false), get("int8", true));
        assert_eq!((fp32.mean, fp32.worst, fp32.n_tasks), (0.8, 0.7, 2));
        // same accuracy for less energy: int8 dominates fp32; the sparse plan is cheaper still
        assert!(int8.energy_pj < fp32.energy_pj && sparse.energy_pj < int8.energy_pj);
        assert_eq!(
            (fp32.pareto, int8.pareto, sparse.pareto),
            (false, true, true)
        );
    }
}
