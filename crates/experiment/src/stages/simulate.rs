//! Stage 3: energy, latency and area of adapter-ALBERT on heterogeneous memory against
//! ALBERT on the same hardware, for 1..N tasks (and an optional design-space sweep).
//!
//! Each simulated model, and the design space, is one cached item like every other stage's,
//! so the report is built from the cache alone. The records keep what the report shows, in
//! this crate's own serializable rows (the simulator's types are for computing, not storing).

use std::path::Path;

use adalbert_hw::compare::{compare, CompareRow};
use adalbert_hw::dse::{mark_pareto, DsePoint, Space};
use adalbert_hw::spec::parse_adapter;
use adalbert_hw::{
    Accelerator, MemoryTable, ModelShape, Platform, Scenario, Sharing, StoragePlan, TaskStore,
};
use serde::{Deserialize, Serialize};

use crate::cache::{real, Cache, Key};
use crate::config::SimulateSection;
use crate::error::{Context, ExperimentError, Result};

/// Energy and latency per request (inference and amortised task switch) and area.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ppa {
    #[serde(with = "real")]
    pub energy_pj: f64,
    #[serde(with = "real")]
    pub latency_ns: f64,
    #[serde(with = "real")]
    pub area_mm2: f64,
}

/// One policy at one task count, as Table 3 shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimRow {
    pub n_tasks: u64,
    /// The policy's name (`adalbert_hw::Policy`'s display form).
    pub policy: String,
    /// Why the policy could not be mapped, if it could not.
    pub error: Option<String>,
    #[serde(flatten)]
    pub ppa: Ppa,
    /// Ratios this / albert-dram and this / albert-sram (energy, latency, area).
    #[serde(with = "real::option3")]
    pub vs_dram: Option<[f64; 3]>,
    #[serde(with = "real::option3")]
    pub vs_sram: Option<[f64; 3]>,
}

impl From<&CompareRow> for SimRow {
    fn from(r: &CompareRow) -> Self {
        Self {
            n_tasks: r.n_tasks,
            policy: r.policy.to_string(),
            error: r.error.clone(),
            ppa: Ppa {
                energy_pj: r.energy_pj,
                latency_ns: r.latency_ns,
                area_mm2: r.area_mm2,
            },
            vs_dram: r.vs_dram,
            vs_sram: r.vs_sram,
        }
    }
}

/// Every policy for 1..N tasks on one model (one cached item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    pub model: String,
    pub rows: Vec<SimRow>,
}

/// One design point of the design-space sweep, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DseRow {
    pub n_tasks: u64,
    pub policy: String,
    pub mac_array: u64,
    /// The adapter spec, `none` for the plain-model baselines.
    pub adapter: String,
    pub plan: String,
    pub feasible: bool,
    pub pareto: bool,
    /// Non-finite for an infeasible point.
    #[serde(flatten)]
    pub ppa: Ppa,
}

impl From<&DsePoint> for DseRow {
    fn from(p: &DsePoint) -> Self {
        Self {
            n_tasks: p.n_tasks,
            policy: p.policy.to_string(),
            mac_array: p.mac_array,
            adapter: p.adapter.map_or_else(|| "none".into(), |a| a.to_string()),
            plan: p.plan.to_string(),
            feasible: p.feasible,
            pareto: p.pareto,
            ppa: Ppa {
                energy_pj: p.energy_pj,
                latency_ns: p.latency_ns,
                area_mm2: p.area_mm2,
            },
        }
    }
}

/// The built-in hardware tables every simulation reads: part of every key, so a change of
/// the sourced numbers is never answered from the cache.
#[derive(Serialize)]
struct HwData {
    arch: &'static str,
    memory: &'static str,
    defaults: &'static str,
}

const HW_DATA: HwData = HwData {
    arch: adalbert_hw::arch::BUILTIN_ARCH_TOML,
    memory: adalbert_hw::memory::BUILTIN_MEMORY_TOML,
    defaults: adalbert_hw::scenario::BUILTIN_DEFAULTS_TOML,
};

/// Everything one model's simulation depends on (its cache key).
#[derive(Serialize)]
struct SimInputs<'a> {
    model: &'a str,
    shape: ModelShape,
    adapter: &'a str,
    sharing: &'a str,
    plan: &'a str,
    bits_per_cell: u32,
    max_tasks: u64,
    seq_len: u64,
    requests_per_switch: f64,
    num_labels: u64,
    hw: &'a HwData,
    tool: &'a str,
}

/// Everything the design-space sweep depends on (its cache key): the space file's text.
#[derive(Serialize)]
struct DseInputs<'a> {
    space: &'a str,
    hw: &'a HwData,
    tool: &'a str,
}

/// The key of the simulation of `model` (a built-in name or a model directory).
pub fn key(sec: &SimulateSection, model: &str, num_labels: u64) -> Result<Key> {
    let shape = ModelShape::resolve(model).context(|| format!("simulate.models: `{model}`"))?;
    Cache::key(
        "simulate",
        &SimInputs {
            model,
            shape,
            adapter: &sec.adapter,
            sharing: &sec.sharing,
            plan: &sec.plan,
            bits_per_cell: sec.bits_per_cell,
            max_tasks: sec.max_tasks,
            seq_len: sec.seq_len,
            requests_per_switch: sec.requests_per_switch,
            num_labels,
            hw: &HW_DATA,
            tool: env!("CARGO_PKG_VERSION"),
        },
    )
}

/// The key of the design-space sweep of the space file `space`.
pub fn dse_key(space: &Path) -> Result<Key> {
    let text = std::fs::read_to_string(space).map_err(|source| ExperimentError::Read {
        path: space.to_path_buf(),
        source,
    })?;
    Cache::key(
        "dse",
        &DseInputs {
            space: &text,
            hw: &HW_DATA,
            tool: env!("CARGO_PKG_VERSION"),
        },
    )
}

/// Simulates every policy for 1..N tasks on `model`, through `cache`.
pub fn run_model(
    sec: &SimulateSection,
    model: &str,
    num_labels: u64,
    cache: &Cache,
) -> Result<SimResult> {
    let key = key(sec, model, num_labels)?;
    if let Some(r) = cache.get(&key) {
        return Ok(r);
    }
    let adapter = parse_adapter(&sec.adapter)?;
    let sharing: Sharing = sec.sharing.parse()?;
    let plan = StoragePlan::parse(&sec.plan, sec.bits_per_cell)?;
    let platform = Platform::new(Accelerator::builtin()?, MemoryTable::builtin()?)?;
    let shape = ModelShape::resolve(model).context(|| format!("simulate.models: `{model}`"))?;
    let scenario = Scenario::new(
        platform,
        shape,
        adapter,
        sharing,
        plan,
        sec.seq_len,
        num_labels,
    )?;
    let rows = compare(
        &scenario,
        sec.max_tasks,
        TaskStore::Sram,
        sec.requests_per_switch,
    );
    let result = SimResult {
        model: model.to_string(),
        rows: rows.iter().map(SimRow::from).collect(),
    };
    cache.put(&key, &result)?;
    Ok(result)
}

/// Sweeps the design space of `space` (as `adalbert dse` does), through `cache`.
pub fn run_dse(space: &Path, cache: &Cache) -> Result<Vec<DseRow>> {
    let key = dse_key(space)?;
    if let Some(r) = cache.get(&key) {
        return Ok(r);
    }
    let s = Space::from_path(space, &Accelerator::builtin()?, &MemoryTable::builtin()?)
        .context(|| format!("simulate.dse_space: {}", space.display()))?;
    let mut points = s.run();
    mark_pareto(&mut points);
    let rows: Vec<DseRow> = points.iter().map(DseRow::from).collect();
    cache.put(&key, &rows)?;
    Ok(rows)
}
