//! Stage 3: energy, latency and area of adapter-ALBERT on heterogeneous memory against
//! ALBERT on the same hardware, for 1..N tasks (and an optional design-space sweep).

use adalbert_hw::compare::{compare, CompareRow};
use adalbert_hw::dse::{mark_pareto, DsePoint, Space};
use adalbert_hw::{
    Accelerator, AdapterSpec, MemoryTable, ModelConfig, Plan, Platform, Scenario, Sharing,
    TaskStore,
};

use crate::config::SimulateSection;
use crate::error::{Context, Result};

pub struct SimResult {
    pub model: String,
    pub rows: Vec<CompareRow>,
}

pub fn run(
    sec: &SimulateSection,
    num_labels: u64,
) -> Result<(Vec<SimResult>, Option<Vec<DsePoint>>)> {
    let adapter: AdapterSpec = sec.adapter.parse()?;
    let sharing: Sharing = sec.sharing.parse()?;
    let plan: Plan = sec.plan.parse()?;
    let mut results = Vec::new();
    for m in &sec.models {
        let platform = Platform::new(Accelerator::builtin()?, MemoryTable::builtin()?)?;
        let model = ModelConfig::resolve(m).context(|| format!("simulate.models: `{m}`"))?;
        let scenario = Scenario::new(
            platform,
            model,
            adapter,
            sharing,
            plan,
            sec.seq_len,
            num_labels,
        );
        let rows = compare(
            &scenario,
            sec.max_tasks,
            TaskStore::OnChip,
            sec.requests_per_switch,
        );
        results.push(SimResult {
            model: m.clone(),
            rows,
        });
    }
    let dse = match &sec.dse_space {
        Some(path) => {
            let space = Space::from_path(path, &Accelerator::builtin()?, &MemoryTable::builtin()?)
                .context(|| format!("simulate.dse_space: {}", path.display()))?;
            let mut points = space.run();
            mark_pareto(&mut points);
            Some(points)
        }
        None => None,
    };
    Ok((results, dse))
}
