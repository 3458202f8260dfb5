//! Mapping policies: where every tensor lives (SRAM, RRAM or DRAM) for N tasks, the memories
//! sized for it, and a clear refusal when a fixed capacity is too small.
//!
//! Capacities: a memory marked "auto" is sized to exactly what the policy needs (each policy on
//! the smallest chip that runs it); a fixed capacity models one shared chip: it is checked, and
//! its full area and leakage are charged even when a policy leaves it empty (SRAM is volatile and
//! not gated; an idle RRAM array may be, see `sim`).

use serde::Serialize;

use crate::arch::{Accelerator, Capacity};
use crate::error::{HwError, Result};
use crate::memory::{CellRow, MemoryModel, MemoryTable, Technology};
use crate::spec::{Policy, TaskStore};
use crate::workload::Workload;

/// The hardware a workload is mapped onto: accelerator + technologies, cell rows resolved once.
#[derive(Debug, Clone)]
pub struct Platform {
    pub arch: Accelerator,
    pub tech: MemoryTable,
    sram_row: CellRow,
    rram_row: CellRow,
    /// The datapath's buffers, built from the SRAM row.
    pub buffers: MemoryModel,
}

impl Platform {
    /// Bind an architecture to a technology table, checking the cell rows it names.
    pub fn new(arch: Accelerator, tech: MemoryTable) -> Result<Self> {
        let sram_row = expect_tech(
            &tech,
            &arch.sram_cell,
            Technology::Sram,
            "memories.sram_cell",
        )?;
        let rram_row = expect_tech(
            &tech,
            &arch.rram_cell,
            Technology::Rram,
            "memories.rram_cell",
        )?;
        let buffers = tech.scale(&sram_row, arch.buffer_bits, 1);
        Ok(Platform {
            arch,
            tech,
            sram_row,
            rram_row,
            buffers,
        })
    }

    /// The built-in EdgeBERT-like accelerator with the built-in technology table.
    pub fn builtin() -> Result<Self> {
        Self::new(Accelerator::builtin()?, MemoryTable::builtin()?)
    }

    /// The SRAM cell row in use.
    pub fn sram_row(&self) -> &CellRow {
        &self.sram_row
    }

    /// The RRAM cell row in use.
    pub fn rram_row(&self) -> &CellRow {
        &self.rram_row
    }
}

fn expect_tech(tech: &MemoryTable, name: &str, want: Technology, field: &str) -> Result<CellRow> {
    let row = tech.cell(name)?;
    if row.technology != want {
        return Err(HwError::Field {
            origin: "architecture".into(),
            field: field.into(),
            expected: format!("a {want:?} cell row, `{name}` is {:?}", row.technology),
        });
    }
    Ok(row.clone())
}

/// Where the backbone's weights are read from during inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneHome {
    Sram,
    Rram,
}

/// Where a task switch copies the incoming task's tensors from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchSource {
    /// Nothing moves (every task resident in SRAM, or one task).
    #[default]
    None,
    /// The task's copy in the RRAM task array.
    Rram,
    /// Off-chip DRAM.
    Dram,
}

/// A policy's placement for N tasks and the memories that hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mapping {
    pub policy: Policy,
    pub n_tasks: u64,
    pub task_store: TaskStore,
    pub backbone_home: BackboneHome,
    /// Bits placed in SRAM (models or backbone, task tensors, activations).
    pub sram_used_bits: f64,
    /// RRAM value bits (MLC) and mask bits (SLC when `mask_in_slc`) of the backbone.
    pub rram_value_bits: f64,
    pub rram_mask_bits: f64,
    /// Task-specific bits kept in the RRAM task array (task store `rram`).
    pub rram_task_bits: f64,
    /// Bits kept off-chip.
    pub dram_bits: f64,
    /// Bits copied into SRAM on every task switch, and from where.
    pub switch_bits: f64,
    pub switch_source: SwitchSource,
    pub sram: MemoryModel,
    pub rram_values: MemoryModel,
    pub rram_mask: MemoryModel,
    /// The RRAM array holding every task's task-specific tensors (task store `rram`).
    pub rram_tasks: MemoryModel,
}

/// Bits a placement puts in each memory.
struct Placement {
    sram: f64,
    rram_values: f64,
    rram_mask: f64,
    rram_tasks: f64,
    dram: f64,
    switch: f64,
    source: SwitchSource,
    home: BackboneHome,
}

impl Mapping {
    /// Place `workload` for `n_tasks` tasks under `policy` on `platform`. The task store
    /// applies to the adapter policies; the baselines keep their fine-tuned models where the
    /// policy says (albert-dram in DRAM, albert-sram in SRAM).
    pub fn new(
        platform: &Platform,
        workload: &Workload,
        policy: Policy,
        n_tasks: u64,
        task_store: TaskStore,
    ) -> Result<Self> {
        let p = place(
            platform,
            workload,
            policy,
            n_tasks.max(1) as f64,
            task_store,
        );
        check_dram(platform, policy, p.dram)?;
        let banks = platform.arch.min_parallel_banks;
        let sram = size_sram(platform, policy, p.sram)?.with_min_parallel_banks(banks);
        let bpc = workload.spec.plan.bits_per_cell;
        let (values, mask, tasks) = size_rram(
            platform,
            policy,
            [p.rram_values, p.rram_mask, p.rram_tasks],
            bpc,
        )?;
        Ok(Mapping {
            policy,
            n_tasks,
            task_store,
            backbone_home: p.home,
            sram_used_bits: p.sram,
            rram_value_bits: p.rram_values,
            rram_mask_bits: p.rram_mask,
            rram_task_bits: p.rram_tasks,
            dram_bits: p.dram,
            switch_bits: p.switch,
            switch_source: p.source,
            sram,
            rram_values: values.with_min_parallel_banks(banks),
            rram_mask: mask.with_min_parallel_banks(banks),
            rram_tasks: tasks.with_min_parallel_banks(banks),
        })
    }

    /// Leakage of the arrays powered during an inference, mW: SRAM, buffers and the backbone's
    /// RRAM; the RRAM task array only when the chip does not power-gate it (it is read on
    /// switches only).
    pub fn busy_leakage_mw(&self, platform: &Platform) -> f64 {
        let tasks = if platform.arch.rram_power_gating {
            0.0
        } else {
            self.rram_tasks.leakage_mw
        };
        self.sram.leakage_mw
            + self.rram_values.leakage_mw
            + self.rram_mask.leakage_mw
            + tasks
            + platform.buffers.leakage_mw
    }
}

fn place(
    platform: &Platform,
    workload: &Workload,
    policy: Policy,
    n: f64,
    store: TaskStore,
) -> Placement {
    let t = &workload.totals;
    let backbone = t.backbone_value_bits + t.backbone_mask_bits;
    let model = backbone + t.task_bits;
    // One task never switches, so its tensors simply stay in SRAM whatever the store.
    let store = if n > 1.0 { store } else { TaskStore::Sram };
    let (resident, rram_tasks, dram_tasks, source) = match store {
        TaskStore::Sram => (n, 0.0, 0.0, SwitchSource::None),
        TaskStore::Rram => (1.0, n * t.task_bits, 0.0, SwitchSource::Rram),
        TaskStore::Dram => (1.0, 0.0, n * t.task_bits, SwitchSource::Dram),
    };
    let task_switch = if source == SwitchSource::None {
        0.0
    } else {
        t.task_bits
    };
    let none = |sram, dram, switch, source| Placement {
        sram,
        rram_values: 0.0,
        rram_mask: 0.0,
        rram_tasks: 0.0,
        dram,
        switch,
        source,
        home: BackboneHome::Sram,
    };
    match policy {
        Policy::AlbertDram => {
            let source = if n > 1.0 {
                SwitchSource::Dram
            } else {
                SwitchSource::None
            };
            let switch = if n > 1.0 { model } else { 0.0 };
            none(model + t.activation_bits, n * model, switch, source)
        }
        Policy::AlbertSram => none(n * model + t.activation_bits, 0.0, 0.0, SwitchSource::None),
        Policy::AdapterSram => Placement {
            rram_tasks,
            ..none(
                backbone + resident * t.task_bits + t.activation_bits,
                dram_tasks,
                task_switch,
                source,
            )
        },
        Policy::AdapterHetero => {
            let (v, m) = if platform.arch.mask_in_slc {
                (t.backbone_value_bits, t.backbone_mask_bits)
            } else {
                (backbone, 0.0)
            };
            Placement {
                rram_values: v,
                rram_mask: m,
                rram_tasks,
                home: BackboneHome::Rram,
                ..none(
                    resident * t.task_bits + t.activation_bits,
                    dram_tasks,
                    task_switch,
                    source,
                )
            }
        }
    }
}

fn check_dram(platform: &Platform, policy: Policy, bits: f64) -> Result<()> {
    let cap = platform.tech.dram.capacity_bytes.value * 8.0;
    if bits > cap {
        return Err(capacity_err(policy, "DRAM", bits, cap));
    }
    Ok(())
}

fn capacity_err(
    policy: Policy,
    memory: &'static str,
    needed_bits: f64,
    capacity_bits: f64,
) -> HwError {
    HwError::Capacity {
        policy: policy.name().to_string(),
        memory,
        needed_mb: needed_bits / 8e6,
        capacity_mb: capacity_bits / 8e6,
    }
}

fn size_sram(platform: &Platform, policy: Policy, used: f64) -> Result<MemoryModel> {
    let row = &platform.sram_row;
    match platform.arch.sram_capacity {
        Capacity::Auto => Ok(platform.tech.scale(row, used, 1)),
        Capacity::Bits(cap) if used <= cap => Ok(platform.tech.scale(row, cap, 1)),
        Capacity::Bits(cap) => Err(capacity_err(policy, "SRAM", used, cap)),
    }
}

/// The backbone's value array (b bits per cell), its mask array (1 bit per cell) and the task
/// array (task store `rram`, b bits per cell); `Capacity::Bits` counts cells of all three, the
/// value array taking what the mask and task arrays leave.
fn size_rram(
    platform: &Platform,
    policy: Policy,
    [values, mask, tasks]: [f64; 3],
    bpc: u32,
) -> Result<(MemoryModel, MemoryModel, MemoryModel)> {
    let row = &platform.rram_row;
    row.check_bits_per_cell(bpc)?;
    let tech = &platform.tech;
    let cells_per_bit = 1.0 / f64::from(bpc);
    let (value_cells, task_cells) = (values * cells_per_bit, tasks * cells_per_bit);
    let array = |cells: f64, b: u32| {
        if cells == 0.0 {
            MemoryModel::default()
        } else {
            tech.scale(row, cells, b)
        }
    };
    let value_cells = match platform.arch.rram_capacity {
        Capacity::Auto => value_cells,
        Capacity::Bits(cells) if value_cells + mask + task_cells <= cells => {
            cells - mask - task_cells
        }
        Capacity::Bits(cells) => {
            return Err(capacity_err(
                policy,
                "RRAM (cells)",
                value_cells + mask + task_cells,
                cells,
            ))
        }
    };
    Ok((
        array(value_cells, bpc),
        array(mask, 1),
        array(task_cells, bpc),
    ))
}
