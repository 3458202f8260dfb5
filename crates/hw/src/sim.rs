//! Simulation: energy, latency and area of one inference, of a task switch and of a task
//! schedule, for a workload mapped by a policy.
//!
//! Dataflow and overlap model (stated assumptions, first-order analytical):
//! - matmul [m x k].[k x n] on an R x C array: m * ceil(k/R) * ceil(n/C) cycles; every weight is
//!   read once per execution (weight-stationary: a weight tile stays while all m rows stream);
//!   inputs come from the main SRAM once per matmul into the double-buffered input buffer, which
//!   re-supplies them once per output-column tile (ceil(n/C) buffer reads per input element) and
//!   is sized to feed the array every cycle (its bandwidth never limits); outputs are written once
//!   (accumulated in the array); bias adds are folded into accumulation;
//! - special functions run on `sfu_lanes` lanes, one element per lane per cycle;
//! - operands are double-buffered, so within an operation compute and every memory's transfers
//!   overlap fully: latency = max(compute, SRAM time, RRAM value time, RRAM mask time);
//!   memories serve banks in parallel, at least `min_parallel_banks` sub-banks each
//!   (see `MemoryModel::read_bits_per_ns`);
//! - bit-mask zero-skipping gates the MAC energy of zero weights but saves no cycles;
//! - leakage of every on-chip memory and buffer is charged over the whole run time; DRAM
//!   background power is not charged (this favours the albert-dram baseline);
//! - buffers add area and leakage, and their reads cost the buffer array's read energy.

use serde::Serialize;

use crate::error::Result;
use crate::mapping::{BackboneHome, Mapping, Platform};
use crate::memory::MemoryModel;
use crate::spec::{Policy, TaskStore};
use crate::workload::{OpKind, Role, SimOp, Workload};

/// Energy of one inference by component, pJ.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Energy {
    pub mac: f64,
    pub special: f64,
    pub buffer_read: f64,
    pub sram_read: f64,
    pub sram_write: f64,
    pub rram_read: f64,
    pub dram: f64,
    pub leakage: f64,
}

impl Energy {
    /// Sum of all components.
    pub fn total(&self) -> f64 {
        self.mac
            + self.special
            + self.buffer_read
            + self.sram_read
            + self.sram_write
            + self.rram_read
            + self.dram
            + self.leakage
    }
}

/// Area by component, mm2.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Area {
    pub datapath: f64,
    pub buffers: f64,
    pub sram: f64,
    pub rram: f64,
}

impl Area {
    /// Sum of all components.
    pub fn total(&self) -> f64 {
        self.datapath + self.buffers + self.sram + self.rram
    }
}

/// Cost of one task switch.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SwitchCost {
    pub dram_bits: f64,
    pub energy_pj: f64,
    pub latency_ns: f64,
}

/// On-chip and off-chip occupancy, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Occupancy {
    pub sram_used_bytes: f64,
    pub sram_capacity_bytes: f64,
    pub rram_value_bytes: f64,
    pub rram_mask_bytes: f64,
    pub rram_cells: f64,
    pub dram_bytes: f64,
}

/// Everything the simulator reports for one policy and N tasks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: Policy,
    pub n_tasks: u64,
    pub task_store: TaskStore,
    pub energy: Energy,
    pub energy_pj: f64,
    pub latency_ns: f64,
    /// Latency if memories were infinitely fast.
    pub compute_ns: f64,
    /// MACs per inference (before zero-skipping).
    pub macs: f64,
    pub leakage_mw: f64,
    pub switch: SwitchCost,
    pub area: Area,
    pub area_mm2: f64,
    pub occupancy: Occupancy,
}

impl PolicyReport {
    /// Energy per request when a switch happens every `requests_per_switch` requests
    /// (round robin over N tasks; one task never switches).
    pub fn energy_per_request(&self, requests_per_switch: f64) -> f64 {
        self.energy_pj + self.switch_rate(requests_per_switch) * self.switch.energy_pj
    }

    /// Latency per request under the same schedule.
    pub fn latency_per_request(&self, requests_per_switch: f64) -> f64 {
        self.latency_ns + self.switch_rate(requests_per_switch) * self.switch.latency_ns
    }

    fn switch_rate(&self, requests_per_switch: f64) -> f64 {
        if self.n_tasks > 1 && requests_per_switch > 0.0 {
            1.0 / requests_per_switch
        } else {
            0.0
        }
    }
}

/// Map and simulate one policy for N tasks.
pub fn simulate(
    platform: &Platform,
    workload: &Workload,
    policy: Policy,
    n_tasks: u64,
    task_store: TaskStore,
) -> Result<PolicyReport> {
    let mapping = Mapping::new(platform, workload, policy, n_tasks, task_store)?;
    Ok(evaluate(platform, workload, &mapping))
}

/// Simulate an already placed workload. Allocation-free: the design-space hot path.
pub fn evaluate(platform: &Platform, workload: &Workload, mapping: &Mapping) -> PolicyReport {
    let arch = &platform.arch;
    let mut energy = Energy::default();
    let mut latency = 0.0;
    let mut compute = 0.0;
    let mut macs = 0.0;
    for op in &workload.sim_ops {
        let c = op_cost(platform, workload, mapping, op);
        energy.mac += c.macs * op.mac_density * arch.mac_pj;
        energy.special += c.special_pj;
        energy.buffer_read += c.buffer_read_pj;
        energy.sram_read += c.sram_read_pj;
        energy.sram_write += c.sram_write_pj;
        energy.rram_read += c.rram_read_pj;
        latency += c.latency_ns;
        compute += c.compute_ns;
        macs += c.macs;
    }
    let leakage_mw = mapping.leakage_mw(platform);
    energy.leakage = leakage_mw * latency;
    let switch = switch_cost(platform, mapping, leakage_mw);
    let area = Area {
        datapath: arch.datapath_area_mm2,
        buffers: platform.buffers.area_mm2,
        sram: mapping.sram.area_mm2,
        rram: mapping.rram_values.area_mm2 + mapping.rram_mask.area_mm2,
    };
    PolicyReport {
        policy: mapping.policy,
        n_tasks: mapping.n_tasks,
        task_store: mapping.task_store,
        energy,
        energy_pj: energy.total(),
        latency_ns: latency,
        compute_ns: compute,
        macs,
        leakage_mw,
        switch,
        area,
        area_mm2: area.total(),
        occupancy: Occupancy {
            sram_used_bytes: mapping.sram_used_bits / 8.0,
            sram_capacity_bytes: mapping.sram.capacity_bits / 8.0,
            rram_value_bytes: mapping.rram_value_bits / 8.0,
            rram_mask_bytes: mapping.rram_mask_bits / 8.0,
            rram_cells: mapping.rram_values.capacity_bits
                / f64::from(mapping.rram_values.bits_per_cell.max(1))
                + mapping.rram_mask.capacity_bits,
            dram_bytes: mapping.dram_bits / 8.0,
        },
    }
}

/// Costs of one (merged) operation, all executions included.
struct OpCost {
    macs: f64,
    special_pj: f64,
    buffer_read_pj: f64,
    sram_read_pj: f64,
    sram_write_pj: f64,
    rram_read_pj: f64,
    compute_ns: f64,
    latency_ns: f64,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

fn read_ns(mem: &MemoryModel, bits: f64) -> f64 {
    if bits > 0.0 {
        bits / mem.read_bits_per_ns()
    } else {
        0.0
    }
}

fn write_ns(mem: &MemoryModel, bits: f64) -> f64 {
    if bits > 0.0 {
        bits / mem.write_bits_per_ns()
    } else {
        0.0
    }
}

fn access_pj(bits: f64, word_bits: f64, pj_per_word: f64) -> f64 {
    if bits > 0.0 {
        bits / word_bits * pj_per_word
    } else {
        0.0
    }
}

fn op_cost(platform: &Platform, workload: &Workload, mapping: &Mapping, op: &SimOp) -> OpCost {
    let arch = &platform.arch;
    let act = workload.spec.activation_bits as f64;
    let (m, k, n) = (op.m, op.k, op.n);
    let elems = (m * n) as f64;
    let col_tiles = ceil_div(n, arch.mac_cols) as f64;
    let mut buffer_reads = 0.0;
    let (cycles, macs, act_reads, act_writes, special) = match op.kind {
        OpKind::Matmul | OpKind::MatmulAct => {
            let cycles = (m * ceil_div(k, arch.mac_rows) * ceil_div(n, arch.mac_cols)) as f64;
            let second = if op.kind == OpKind::MatmulAct {
                (k * n) as f64
            } else {
                0.0
            };
            buffer_reads = (m * k) as f64 * col_tiles;
            (
                cycles,
                (m * k * n) as f64,
                (m * k) as f64 + second,
                elems,
                0.0,
            )
        }
        OpKind::Gather => (0.0, 0.0, 0.0, elems, 0.0),
        OpKind::Add => (
            sfu_cycles(arch.sfu_lanes, elems),
            0.0,
            2.0 * elems,
            elems,
            arch.sfu_pj.add,
        ),
        OpKind::Entropy => (
            sfu_cycles(arch.sfu_lanes, elems),
            0.0,
            elems,
            m as f64,
            arch.sfu_pj.entropy,
        ),
        OpKind::Softmax => (
            sfu_cycles(arch.sfu_lanes, elems),
            0.0,
            elems,
            elems,
            arch.sfu_pj.softmax,
        ),
        OpKind::LayerNorm => (
            sfu_cycles(arch.sfu_lanes, elems),
            0.0,
            elems,
            elems,
            arch.sfu_pj.layernorm,
        ),
        OpKind::Gelu => (
            sfu_cycles(arch.sfu_lanes, elems),
            0.0,
            elems,
            elems,
            arch.sfu_pj.gelu,
        ),
        OpKind::Tanh => (
            sfu_cycles(arch.sfu_lanes, elems),
            0.0,
            elems,
            elems,
            arch.sfu_pj.tanh,
        ),
    };
    let count = op.count;
    let mut sram_read = act_reads * act * count;
    let sram_write = act_writes * act * count;
    let (mut rram_v, mut rram_m) = (0.0, 0.0);
    match (op.weight_role, mapping.backbone_home) {
        (Some(Role::Backbone), BackboneHome::Rram) => {
            rram_v = op.weight_value_bits * count;
            rram_m = op.weight_mask_bits * count;
            if mapping.rram_mask_bits == 0.0 {
                rram_v += rram_m;
                rram_m = 0.0;
            }
        }
        (Some(_), _) => sram_read += (op.weight_value_bits + op.weight_mask_bits) * count,
        (None, _) => {}
    }
    let (sram, rv, rm) = (&mapping.sram, &mapping.rram_values, &mapping.rram_mask);
    let compute_ns = cycles * count / arch.clock_ghz;
    let latency_ns = compute_ns
        .max(read_ns(sram, sram_read) + write_ns(sram, sram_write))
        .max(read_ns(rv, rram_v))
        .max(read_ns(rm, rram_m));
    OpCost {
        macs: macs * count,
        special_pj: special * elems * count,
        buffer_read_pj: access_pj(
            buffer_reads * act * count,
            platform.buffers.word_bits,
            platform.buffers.read_pj,
        ),
        sram_read_pj: access_pj(sram_read, sram.word_bits, sram.read_pj),
        sram_write_pj: access_pj(sram_write, sram.word_bits, sram.write_pj),
        rram_read_pj: access_pj(rram_v, rv.word_bits, rv.read_pj)
            + access_pj(rram_m, rm.word_bits, rm.read_pj),
        compute_ns,
        latency_ns,
    }
}

fn sfu_cycles(lanes: u64, elems: f64) -> f64 {
    (elems / lanes as f64).ceil()
}

/// A task switch: the policy's switch bits come from DRAM and are written into SRAM; the
/// two transfers overlap; leakage is charged over the switch time.
fn switch_cost(platform: &Platform, mapping: &Mapping, leakage_mw: f64) -> SwitchCost {
    let bits = mapping.switch_bits;
    if bits == 0.0 {
        return SwitchCost::default();
    }
    let dram = &platform.tech.dram;
    let dram_ns = bits / (dram.bandwidth_gb_s.value * 8.0);
    let latency_ns = dram_ns.max(write_ns(&mapping.sram, bits));
    let energy_pj = bits * dram.energy_pj_per_bit.value
        + access_pj(bits, mapping.sram.word_bits, mapping.sram.write_pj)
        + leakage_mw * latency_ns;
    SwitchCost {
        dram_bits: bits,
        energy_pj,
        latency_ns,
    }
}

/// Totals of a task schedule.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ScheduleCost {
    pub requests: u64,
    pub switches: u64,
    pub energy_pj: f64,
    pub latency_ns: f64,
}

/// Run a schedule of (task, requests) entries: the first entry's task is taken as loaded; every
/// change of task between consecutive entries pays one switch.
pub fn run_schedule(report: &PolicyReport, schedule: &[(u64, u64)]) -> ScheduleCost {
    let mut out = ScheduleCost::default();
    let mut current = schedule.first().map(|e| e.0);
    for &(task, requests) in schedule {
        if current != Some(task) {
            out.switches += 1;
            current = Some(task);
        }
        out.requests += requests;
    }
    let (r, s) = (out.requests as f64, out.switches as f64);
    out.energy_pj = r * report.energy_pj + s * report.switch.energy_pj;
    out.latency_ns = r * report.latency_ns + s * report.switch.latency_ns;
    out
}
