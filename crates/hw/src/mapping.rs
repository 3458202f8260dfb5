//! Mapping policies: where every tensor lives (SRAM, RRAM or DRAM) for N tasks, the memories
//! sized for it, and a clear refusal when a fixed capacity is too small.
//!
//! Capacities: a memory marked "auto" is sized to exactly what the policy needs (each policy on
//! the smallest chip that runs it); a fixed capacity models one shared chip: it is checked, and
//! its full area and leakage are charged even when a policy leaves it empty (no power gating).

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

/// A policy's placement for N tasks and the memories that hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mapping {
    pub policy: Policy,
    pub n_tasks: u64,
    pub task_store: TaskStore,
    pub backbone_home: BackboneHome,
    /// Bits placed in SRAM (models or backbone, task tensors, activations).
    pub sram_used_bits: f64,
    /// RRAM value bits (MLC) and mask bits (SLC when `mask_in_slc`).
    pub rram_value_bits: f64,
    pub rram_mask_bits: f64,
    /// Bits kept off-chip.
    pub dram_bits: f64,
    /// Bits loaded from DRAM on every task switch.
    pub switch_bits: f64,
    pub sram: MemoryModel,
    pub rram_values: MemoryModel,
    pub rram_mask: MemoryModel,
}

impl Mapping {
    /// Place `workload` for `n_tasks` tasks under `policy` on `platform`.
    pub fn new(
        platform: &Platform,
        workload: &Workload,
        policy: Policy,
        n_tasks: u64,
        task_store: TaskStore,
    ) -> Result<Self> {
        let t = &workload.totals;
        let n = n_tasks.max(1) as f64;
        let backbone = t.backbone_value_bits + t.backbone_mask_bits;
        let model = backbone + t.task_bits;
        let resident_tasks = if task_store == TaskStore::OnChip {
            n
        } else {
            1.0
        };
        let offchip_tasks = if task_store == TaskStore::Dram {
            n * t.task_bits
        } else {
            0.0
        };
        let task_switch = if task_store == TaskStore::Dram {
            t.task_bits
        } else {
            0.0
        };
        let (sram_used, rram_v, rram_m, dram, switch, home) = match policy {
            Policy::AlbertDram => (
                model + t.activation_bits,
                0.0,
                0.0,
                n * model,
                model,
                BackboneHome::Sram,
            ),
            Policy::AlbertSram => (
                n * model + t.activation_bits,
                0.0,
                0.0,
                0.0,
                0.0,
                BackboneHome::Sram,
            ),
            Policy::AdapterSram => (
                backbone + resident_tasks * t.task_bits + t.activation_bits,
                0.0,
                0.0,
                offchip_tasks,
                task_switch,
                BackboneHome::Sram,
            ),
            Policy::AdapterHetero => {
                let sram = resident_tasks * t.task_bits + t.activation_bits;
                let (v, m) = if platform.arch.mask_in_slc {
                    (t.backbone_value_bits, t.backbone_mask_bits)
                } else {
                    (backbone, 0.0)
                };
                (sram, v, m, offchip_tasks, task_switch, BackboneHome::Rram)
            }
        };
        check_dram(platform, policy, dram)?;
        let banks = platform.arch.min_parallel_banks;
        let sram = size_sram(platform, policy, sram_used)?.with_min_parallel_banks(banks);
        let bpc = workload.spec.plan.bits_per_cell;
        let (values, mask) = size_rram(platform, policy, rram_v, rram_m, bpc)?;
        let (rram_values, rram_mask) = (
            values.with_min_parallel_banks(banks),
            mask.with_min_parallel_banks(banks),
        );
        Ok(Mapping {
            policy,
            n_tasks,
            task_store,
            backbone_home: home,
            sram_used_bits: sram_used,
            rram_value_bits: rram_v,
            rram_mask_bits: rram_m,
            dram_bits: dram,
            switch_bits: switch,
            sram,
            rram_values,
            rram_mask,
        })
    }

    /// Total on-chip leakage, mW (buffers included).
    pub fn leakage_mw(&self, platform: &Platform) -> f64 {
        self.sram.leakage_mw
            + self.rram_values.leakage_mw
            + self.rram_mask.leakage_mw
            + platform.buffers.leakage_mw
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

/// Value array (b bits per cell) and mask array (1 bit per cell); `Capacity::Bits` counts cells.
fn size_rram(
    platform: &Platform,
    policy: Policy,
    values: f64,
    mask: f64,
    bpc: u32,
) -> Result<(MemoryModel, MemoryModel)> {
    let row = &platform.rram_row;
    row.check_bits_per_cell(bpc)?;
    let tech = &platform.tech;
    let value_cells = values / f64::from(bpc);
    match platform.arch.rram_capacity {
        Capacity::Auto if values + mask == 0.0 => {
            Ok((MemoryModel::default(), MemoryModel::default()))
        }
        Capacity::Auto => Ok((
            tech.scale(row, value_cells, bpc),
            mask_array(tech, row, mask),
        )),
        Capacity::Bits(cells) if value_cells + mask <= cells => Ok((
            tech.scale(row, cells - mask, bpc),
            mask_array(tech, row, mask),
        )),
        Capacity::Bits(cells) => Err(capacity_err(
            policy,
            "RRAM (cells)",
            value_cells + mask,
            cells,
        )),
    }
}

fn mask_array(tech: &MemoryTable, row: &CellRow, mask_bits: f64) -> MemoryModel {
    if mask_bits == 0.0 {
        MemoryModel::default()
    } else {
        tech.scale(row, mask_bits, 1)
    }
}
