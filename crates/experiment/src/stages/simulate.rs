//! Stage 3: energy, latency and area of adapter-ALBERT on heterogeneous memory against
//! ALBERT on the same hardware, for 1..N tasks (and an optional design-space sweep).

use adalbert_hw::compare::{compare, CompareRow};
use adalbert_hw::dse::{mark_pareto, DsePoint, Space};
use adalbert_hw::spec::parse_adapter;
use adalbert_hw::{
    Accelerator, MemoryTable, ModelShape, Platform, Scenario, Sharing, StoragePlan, TaskStore,
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
    let adapter = parse_adapter(&sec.adapter)?;
    let sharing: Sharing = sec.sharing.parse()?;
    let plan = StoragePlan::parse(&sec.plan, sec.bits_per_cell)?;
    let mut results = Vec::new();
    for m in &sec.models {
        let platform = Platform::new(Accelerator::builtin()?, MemoryTable::builtin()?)?;
        let model = ModelShape::resolve(m).context(|| format!("simulate.models: `{m}`"))?;
        let scenario = Scenario::new(
            platform,
            model,
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
