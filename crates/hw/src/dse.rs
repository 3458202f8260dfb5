//! Design-space exploration: sweep memory capacities, bits per cell, MAC array size, adapter
//! size and compression plan; keep the Pareto front over (energy, latency, area).
//!
//! Plans are written in the compression-sweep vocabulary of `adalbert_compress::PlanGrid`
//! (`plans`, `formats` x `sparsity` x `encodings`, `prune` options), so a design space and a
//! compression study name the same storage the same way.
//!
//! Workloads are built once per (adapter, plan, bits-per-cell) and platforms once per
//! (MAC array, SRAM, RRAM); a design point is then four indices and a call to the
//! allocation-free [`crate::sim::evaluate`], run in parallel with rayon.

use std::path::Path;

use adalbert_compress::plan::PlanGrid;
use adalbert_core::{AdapterSpec, ModelShape, Sharing};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::arch::{Accelerator, Capacity, CapacityField};
use crate::error::{field_err, Result};
use crate::mapping::{Mapping, Platform};
use crate::memory::MemoryTable;
use crate::sim::evaluate;
use crate::spec::{Policy, StoragePlan, TaskStore, Usage};
use crate::workload::{Workload, WorkloadSpec};

/// A design space as written in TOML (see `configs/hw/dse-example.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceFile {
    pub model: String,
    #[serde(default = "default_sharing")]
    pub sharing: String,
    pub seq_len: u64,
    pub num_labels: u64,
    pub tasks: Vec<u64>,
    pub policies: Vec<String>,
    pub sram_mb: Vec<CapacityField>,
    pub rram_mb: Vec<CapacityField>,
    pub bits_per_cell: Vec<u32>,
    pub mac_array: Vec<u64>,
    pub adapter: Vec<String>,
    /// Explicit plans (`int8+prune=0.5+bitmask`).
    #[serde(default)]
    pub plans: Vec<String>,
    /// Number formats (`int4`, `af8e3`, `edgebert8`, ...), crossed with `sparsity` and
    /// `encodings`.
    #[serde(default)]
    pub formats: Vec<String>,
    #[serde(default)]
    pub sparsity: Vec<f64>,
    #[serde(default)]
    pub encodings: Vec<String>,
    /// Prune options of the grid plans (`emb`, `global`).
    #[serde(default)]
    pub prune: String,
    #[serde(default = "default_task_store")]
    pub task_store: String,
    pub requests_per_switch: f64,
    /// Requests per second (absent: back to back).
    #[serde(default)]
    pub rate_per_s: Option<f64>,
}

fn default_sharing() -> String {
    "per-application".into()
}

fn default_task_store() -> String {
    "on-chip".into()
}

/// One evaluated design point (Copy: no allocation per point).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DsePoint {
    pub policy: Policy,
    pub n_tasks: u64,
    pub sram: Capacity,
    pub rram: Capacity,
    pub mac_array: u64,
    /// `None` for the baselines (the plain model).
    pub adapter: Option<AdapterSpec>,
    pub plan: StoragePlan,
    pub feasible: bool,
    pub energy_pj: f64,
    pub latency_ns: f64,
    pub area_mm2: f64,
    pub switch_pj: f64,
    pub pareto: bool,
}

/// A parsed space with its workloads and platforms built.
pub struct Space {
    pub model: ModelShape,
    pub file: SpaceFile,
    pub platforms: Vec<(u64, Capacity, Capacity, Platform)>,
    /// (adapter, plan, plain workload, adapter workload)
    pub workloads: Vec<(AdapterSpec, StoragePlan, Workload, Workload)>,
    pub policies: Vec<Policy>,
    pub task_store: TaskStore,
    pub usage: Usage,
}

impl Space {
    /// Parse a space file.
    pub fn from_path(path: &Path, arch: &Accelerator, tech: &MemoryTable) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        Self::from_toml_str(&text, &path.display().to_string(), arch, tech)
    }

    /// Parse, validate and precompute; `origin` names the document in errors.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        arch: &Accelerator,
        tech: &MemoryTable,
    ) -> Result<Self> {
        let file: SpaceFile = crate::error::parse_toml(text, origin)?;
        let model = ModelShape::resolve(&file.model)?;
        let sharing: Sharing = file.sharing.parse()?;
        let task_store: TaskStore = file.task_store.parse()?;
        nonempty(origin, &file)?;
        crate::scenario::check_workload(origin, &model, file.seq_len, file.num_labels)?;
        let usage = Usage::new(file.requests_per_switch, file.rate_per_s)
            .map_err(|e| field_err(origin, "requests_per_switch/rate_per_s", e.to_string()))?;
        let plans = PlanGrid {
            plans: file.plans.clone(),
            formats: file.formats.clone(),
            sparsity: file.sparsity.clone(),
            encodings: file.encodings.clone(),
            prune: file.prune.clone(),
            extra: None,
        }
        .expand()
        .map_err(|e| field_err(origin, "plans/formats/sparsity/encodings", e.to_string()))?;
        if plans.is_empty() {
            return Err(field_err(
                origin,
                "plans/formats",
                "at least one plan (`plans`, or `formats` with `sparsity`/`encodings`)",
            ));
        }
        let policies = file
            .policies
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<Policy>>>()?;
        let mut platforms = Vec::new();
        for &mac in &file.mac_array {
            for s in &file.sram_mb {
                for r in &file.rram_mb {
                    let mut a = arch.with_mac_array(mac);
                    a.sram_capacity = capacity(s, origin, "sram_mb")?;
                    a.rram_capacity = capacity(r, origin, "rram_mb")?;
                    let (sc, rc) = (a.sram_capacity, a.rram_capacity);
                    platforms.push((mac, sc, rc, Platform::new(a, tech.clone())?));
                }
            }
        }
        let mut workloads = Vec::new();
        for ad in &file.adapter {
            let adapter: AdapterSpec = ad.parse()?;
            for &plan in &plans {
                for &bpc in &file.bits_per_cell {
                    let storage = StoragePlan::new(plan, bpc)
                        .map_err(|e| field_err(origin, "bits_per_cell", e.to_string()))?;
                    let spec = |a| {
                        WorkloadSpec::new(
                            model,
                            a,
                            sharing,
                            storage,
                            file.seq_len,
                            file.num_labels,
                            arch,
                        )
                    };
                    workloads.push((
                        adapter,
                        storage,
                        Workload::build(spec(None)),
                        Workload::build(spec(Some(adapter))),
                    ));
                }
            }
        }
        Ok(Space {
            model,
            file,
            platforms,
            workloads,
            policies,
            task_store,
            usage,
        })
    }

    /// Number of design points.
    pub fn len(&self) -> usize {
        self.platforms.len() * self.workloads.len() * self.policies.len() * self.file.tasks.len()
    }

    /// True when the space holds no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evaluate point `i` (row-major over platforms, workloads, policies, task counts).
    pub fn point(&self, i: usize) -> DsePoint {
        let nt = self.file.tasks.len();
        let np = self.policies.len();
        let nw = self.workloads.len();
        let n_tasks = self.file.tasks[i % nt];
        let policy = self.policies[(i / nt) % np];
        let (adapter, plan, plain, adapted) = &self.workloads[(i / (nt * np)) % nw];
        let (mac, sram, rram, platform) = &self.platforms[i / (nt * np * nw)];
        let workload = if policy.is_baseline() { plain } else { adapted };
        let mut p = DsePoint {
            policy,
            n_tasks,
            sram: *sram,
            rram: *rram,
            mac_array: *mac,
            adapter: (!policy.is_baseline()).then_some(*adapter),
            plan: *plan,
            feasible: false,
            energy_pj: f64::NAN,
            latency_ns: f64::NAN,
            area_mm2: f64::NAN,
            switch_pj: f64::NAN,
            pareto: false,
        };
        if let Ok(mapping) = Mapping::new(platform, workload, policy, n_tasks, self.task_store) {
            let r = evaluate(platform, workload, &mapping);
            let q = r.request(&self.usage);
            p.feasible = true;
            p.energy_pj = q.energy_pj;
            p.latency_ns = q.latency_ns;
            p.area_mm2 = r.area_mm2;
            p.switch_pj = r.switch.energy_pj;
        }
        p
    }

    /// Evaluate every point in parallel and mark the Pareto front.
    pub fn run(&self) -> Vec<DsePoint> {
        let mut points: Vec<DsePoint> = (0..self.len())
            .into_par_iter()
            .map(|i| self.point(i))
            .collect();
        mark_pareto(&mut points);
        points
    }
}

fn nonempty(origin: &str, f: &SpaceFile) -> Result<()> {
    let lists = [
        ("tasks", f.tasks.len()),
        ("policies", f.policies.len()),
        ("sram_mb", f.sram_mb.len()),
        ("rram_mb", f.rram_mb.len()),
        ("bits_per_cell", f.bits_per_cell.len()),
        ("mac_array", f.mac_array.len()),
        ("adapter", f.adapter.len()),
    ];
    for (name, len) in lists {
        if len == 0 {
            return Err(field_err(origin, name, "a non-empty list"));
        }
    }
    if f.tasks.contains(&0) || f.mac_array.contains(&0) || f.seq_len == 0 || f.num_labels == 0 {
        return Err(field_err(
            origin,
            "tasks/mac_array/seq_len/num_labels",
            "values > 0",
        ));
    }
    Ok(())
}

fn capacity(field: &CapacityField, origin: &str, name: &str) -> Result<Capacity> {
    match field {
        CapacityField::Mb(mb) if mb.is_finite() && *mb >= 0.0 => Ok(Capacity::Bits(mb * 8e6)),
        CapacityField::Word(w) if w.eq_ignore_ascii_case("auto") => Ok(Capacity::Auto),
        _ => Err(field_err(
            origin,
            name,
            "\"auto\" or capacities in decimal MB",
        )),
    }
}

/// `a` dominates `b`: no worse in every objective, better in one.
fn dominates(a: &DsePoint, b: &DsePoint) -> bool {
    let (x, y) = (
        [a.energy_pj, a.latency_ns, a.area_mm2],
        [b.energy_pj, b.latency_ns, b.area_mm2],
    );
    x.iter().zip(&y).all(|(p, q)| p <= q) && x.iter().zip(&y).any(|(p, q)| p < q)
}

/// Mark, for each task count N separately (N is a requirement, not a design choice), the
/// feasible points no other feasible point with the same N dominates. Sorting by energy first
/// means a point can only be dominated by points before it, so each is checked against the
/// front found so far.
pub fn mark_pareto(points: &mut [DsePoint]) {
    let mut order: Vec<usize> = (0..points.len()).filter(|&i| points[i].feasible).collect();
    order.sort_by(|&a, &b| {
        let key = |p: &DsePoint| (p.n_tasks as f64, p.energy_pj, p.latency_ns, p.area_mm2);
        key(&points[a])
            .partial_cmp(&key(&points[b]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut front: Vec<usize> = Vec::new();
    let mut marked = Vec::new();
    let mut group = None;
    for i in order {
        if group != Some(points[i].n_tasks) {
            marked.append(&mut front);
            group = Some(points[i].n_tasks);
        }
        let p = &points[i];
        if !front
            .iter()
            .any(|&f| dominates(&points[f], p) || same(&points[f], p))
        {
            front.push(i);
        }
    }
    marked.append(&mut front);
    for i in marked {
        points[i].pareto = true;
    }
}

fn same(a: &DsePoint, b: &DsePoint) -> bool {
    (a.energy_pj, a.latency_ns, a.area_mm2) == (b.energy_pj, b.latency_ns, b.area_mm2)
}

/// CSV of every point, one row each; the `pareto` column marks the front.
pub fn to_csv(model: &str, points: &[DsePoint]) -> String {
    let header = [
        "model",
        "policy",
        "n_tasks",
        "sram",
        "rram",
        "mac_array",
        "adapter",
        "plan",
        "bits",
        "sparsity",
        "bits_per_cell",
        "feasible",
        "energy_uj",
        "latency_ms",
        "area_mm2",
        "switch_uj",
        "pareto",
    ];
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                model.to_string(),
                p.policy.to_string(),
                p.n_tasks.to_string(),
                p.sram.label(),
                p.rram.label(),
                p.mac_array.to_string(),
                p.adapter.map_or_else(|| "none".into(), |a| a.to_string()),
                p.plan.plan.to_string(),
                p.plan.value_bits().to_string(),
                p.plan.plan.prune.map_or(0.0, |x| x.sparsity).to_string(),
                p.plan.bits_per_cell.to_string(),
                p.feasible.to_string(),
                format!("{:.6}", p.energy_pj / 1e6),
                format!("{:.6}", p.latency_ns / 1e6),
                format!("{:.6}", p.area_mm2),
                format!("{:.6}", p.switch_pj / 1e6),
                p.pareto.to_string(),
            ]
        })
        .collect();
    adalbert_core::files::csv_string(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(e: f64, l: f64, a: f64) -> DsePoint {
        DsePoint {
            policy: Policy::AdapterHetero,
            n_tasks: 1,
            sram: Capacity::Auto,
            rram: Capacity::Auto,
            mac_array: 16,
            adapter: None,
            plan: StoragePlan::parse("int8", 1).unwrap(),
            feasible: true,
            energy_pj: e,
            latency_ns: l,
            area_mm2: a,
            switch_pj: 0.0,
            pareto: false,
        }
    }

    #[test]
    fn pareto_front_is_the_non_dominated_set() {
        let mut pts = vec![
            point(1.0, 5.0, 5.0),
            point(2.0, 2.0, 2.0),
            point(3.0, 3.0, 3.0), // dominated by (2,2,2)
            point(5.0, 1.0, 5.0),
            point(2.0, 2.0, 2.0), // duplicate: only the first is kept
            point(4.0, 4.0, 1.0),
        ];
        pts[5].feasible = true;
        let mut infeasible = point(0.1, 0.1, 0.1);
        infeasible.feasible = false;
        pts.push(infeasible);
        // a worse point serving more tasks is on its own N's front
        let mut other_n = point(9.0, 9.0, 9.0);
        other_n.n_tasks = 8;
        pts.push(other_n);
        mark_pareto(&mut pts);
        let flags: Vec<bool> = pts.iter().map(|p| p.pareto).collect();
        assert_eq!(flags, [true, true, false, true, false, true, false, true]);
    }

    #[test]
    fn example_space_runs_and_refuses_small_memories() {
        let arch = Accelerator::builtin().unwrap();
        let tech = MemoryTable::builtin().unwrap();
        let text = r#"
            model = "albert-base"
            seq_len = 128
            num_labels = 2
            tasks = [1, 8]
            policies = ["adapter-hetero", "albert-sram"]
            sram_mb = ["auto", 4]
            rram_mb = ["auto"]
            bits_per_cell = [1, 2]
            mac_array = [16]
            adapter = ["houlsby:64"]
            formats = ["int8"]
            sparsity = [0.5]
            encodings = ["bitmask"]
            requests_per_switch = 1
        "#;
        let space = Space::from_toml_str(text, "space.toml", &arch, &tech).unwrap();
        assert_eq!(space.len(), 2 * 2 * 2 * 2);
        let pts = space.run();
        // albert-sram never fits a 4 MB SRAM; with "auto" everything fits.
        assert!(pts
            .iter()
            .filter(|p| p.policy == Policy::AlbertSram && p.sram != Capacity::Auto)
            .all(|p| !p.feasible));
        assert!(pts
            .iter()
            .filter(|p| p.sram == Capacity::Auto)
            .all(|p| p.feasible));
        assert!(pts.iter().any(|p| p.pareto));
        let csv = to_csv("albert-base", &pts);
        assert_eq!(csv.lines().count(), 1 + pts.len());
        let err = Space::from_toml_str(
            &text.replace("formats = [\"int8\"]", "formats = [\"int9\"]"),
            "space.toml",
            &arch,
            &tech,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("space.toml") && err.contains("int9"), "{err}");
    }
}
