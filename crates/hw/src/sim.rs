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
//! - leakage of every powered on-chip memory and buffer is charged over the inference time; an
//!   RRAM task array that the chip power-gates is powered during switches only;
//! - buffers add area and leakage, and their reads cost the buffer array's read energy;
//! - a task switch copies the incoming task's tensors from DRAM or from the RRAM task array
//!   into SRAM (source and destination overlap); a gated task array is woken first;
//! - per request ([`PolicyReport::request`]): inference + amortised switch, then, when requests
//!   arrive at a rate, idle time until the next one, during which SRAM and buffers leak (at the
//!   retention factor when the chip has a retention mode), the backbone's RRAM is power gated
//!   when the idle time exceeds its break-even time (and woken for the next request), and DRAM
//!   holding data self-refreshes; DRAM dies draw self-refresh power whenever they do not stream
//!   a switch and active-standby power while they do.

use serde::Serialize;

use crate::error::Result;
use crate::mapping::{BackboneHome, Mapping, Platform, SwitchSource};
use crate::memory::MemoryModel;
use crate::spec::{Policy, TaskStore, Usage};
use crate::workload::{OpKind, Role, SimOp, Workload};

/// Energy of one inference by component, pJ (DRAM traffic belongs to task switches).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Energy {
    pub mac: f64,
    pub special: f64,
    pub buffer_read: f64,
    pub sram_read: f64,
    pub sram_write: f64,
    pub rram_read: f64,
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
    /// Bits copied into SRAM, and where from.
    pub bits: f64,
    pub source: SwitchSource,
    pub energy_pj: f64,
    pub latency_ns: f64,
    /// Time the DRAM dies stream data (active standby), ns.
    pub dram_ns: f64,
}

/// Power drawn between requests and the cost of waking the backbone's gated RRAM.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct IdlePower {
    /// SRAM + buffers while idle (retention factor applied when the chip has the mode), mW.
    pub sram_mw: f64,
    /// The backbone's RRAM arrays (values + mask) when not gated, mW.
    pub rram_mw: f64,
    /// The RRAM task array when the chip does not gate it, mW.
    pub rram_tasks_mw: f64,
    /// The chip power-gates idle RRAM arrays.
    pub gating: bool,
    /// Waking the backbone's RRAM: latency (ns) and energy (pJ); gating pays off for idle
    /// periods longer than `break_even_ns`.
    pub wake_ns: f64,
    pub wake_pj: f64,
    pub break_even_ns: f64,
    /// DRAM dies holding this policy's data, and their self-refresh power, mW.
    pub dram_dies: f64,
    pub dram_self_refresh_mw: f64,
}

/// One request under a [`Usage`]: inference + amortised switch + idle time until the next.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RequestCost {
    pub energy_pj: f64,
    /// Latency of a request (inference + amortised switch + wake-up), ns.
    pub latency_ns: f64,
    /// Time between two requests (= latency when back to back or saturated), ns.
    pub period_ns: f64,
    pub idle_ns: f64,
    /// Energy of the idle time (leakage of the powered arrays), pJ.
    pub idle_pj: f64,
    /// Waking the gated backbone RRAM, pJ.
    pub wake_pj: f64,
    /// DRAM self-refresh over the period, pJ.
    pub dram_background_pj: f64,
    /// The backbone's RRAM is gated while idle.
    pub gated: bool,
    /// Requests arrive faster than they are served (period set by the latency).
    pub saturated: bool,
}

/// On-chip and off-chip occupancy, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Occupancy {
    pub sram_used_bytes: f64,
    pub sram_capacity_bytes: f64,
    pub rram_value_bytes: f64,
    pub rram_mask_bytes: f64,
    pub rram_cells: f64,
    /// Every task's task-specific tensors in the RRAM task array (task store `rram`).
    pub rram_task_bytes: f64,
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
    /// Leakage of the arrays powered during an inference, mW.
    pub leakage_mw: f64,
    pub switch: SwitchCost,
    pub idle: IdlePower,
    pub area: Area,
    pub area_mm2: f64,
    pub occupancy: Occupancy,
}

impl PolicyReport {
    /// Switches per request: one every `requests_per_switch` requests (round robin over N
    /// tasks); one task never switches.
    pub fn switch_rate(&self, requests_per_switch: f64) -> f64 {
        if self.n_tasks > 1 && requests_per_switch > 0.0 {
            1.0 / requests_per_switch
        } else {
            0.0
        }
    }

    /// Energy, latency and idle time of one request under `usage`.
    pub fn request(&self, usage: &Usage) -> RequestCost {
        let s = self.switch_rate(usage.requests_per_switch);
        let busy = self.latency_ns + s * self.switch.latency_ns;
        let energy = self.energy_pj + s * self.switch.energy_pj;
        let i = &self.idle;
        let Some(rate) = usage.rate_per_s else {
            let dram = i.dram_self_refresh_mw * (busy - s * self.switch.dram_ns);
            return RequestCost {
                energy_pj: energy + dram,
                latency_ns: busy,
                period_ns: busy,
                dram_background_pj: dram,
                ..RequestCost::default()
            };
        };
        let period = 1e9 / rate;
        let gated = i.gating && i.rram_mw > 0.0 && period - busy > i.break_even_ns;
        let (wake_ns, wake_pj) = if gated {
            (i.wake_ns, i.wake_pj)
        } else {
            (0.0, 0.0)
        };
        let latency = busy + wake_ns;
        let idle = (period - latency).max(0.0);
        let rram = if gated { 0.0 } else { i.rram_mw };
        let idle_pj = idle * (i.sram_mw + rram + i.rram_tasks_mw);
        let period = period.max(latency);
        let dram = i.dram_self_refresh_mw * (period - s * self.switch.dram_ns);
        RequestCost {
            energy_pj: energy + wake_pj + idle_pj + dram,
            latency_ns: latency,
            period_ns: period,
            idle_ns: idle,
            idle_pj,
            wake_pj,
            dram_background_pj: dram,
            gated,
            saturated: 1e9 / rate < latency,
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
    let leakage_mw = mapping.busy_leakage_mw(platform);
    energy.leakage = leakage_mw * latency;
    let switch = switch_cost(platform, mapping, leakage_mw);
    let idle = idle_power(platform, mapping);
    let area = Area {
        datapath: arch.datapath_area_mm2,
        buffers: platform.buffers.area_mm2,
        sram: mapping.sram.area_mm2,
        rram: mapping.rram_values.area_mm2
            + mapping.rram_mask.area_mm2
            + mapping.rram_tasks.area_mm2,
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
        idle,
        area,
        area_mm2: area.total(),
        occupancy: Occupancy {
            sram_used_bytes: mapping.sram_used_bits / 8.0,
            sram_capacity_bytes: mapping.sram.capacity_bits / 8.0,
            rram_value_bytes: mapping.rram_value_bits / 8.0,
            rram_mask_bytes: mapping.rram_mask_bits / 8.0,
            rram_cells: mapping.rram_values.capacity_bits
                / f64::from(mapping.rram_values.bits_per_cell.max(1))
                + mapping.rram_mask.capacity_bits
                + mapping.rram_tasks.capacity_bits
                    / f64::from(mapping.rram_tasks.bits_per_cell.max(1)),
            rram_task_bytes: mapping.rram_task_bits / 8.0,
            dram_bytes: mapping.dram_bits / 8.0,
        },
    }
}

/// Costs of one (merged) operation, all executions included.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct OpCost {
    pub macs: f64,
    pub special_pj: f64,
    pub buffer_read_pj: f64,
    pub sram_read_pj: f64,
    pub sram_write_pj: f64,
    pub rram_read_pj: f64,
    /// Time the datapath alone needs.
    pub compute_ns: f64,
    /// max(compute, each memory's transfer time).
    pub latency_ns: f64,
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

/// The cost of one merged operation of `workload` under `mapping`.
pub fn op_cost(platform: &Platform, workload: &Workload, mapping: &Mapping, op: &SimOp) -> OpCost {
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

/// A task switch: the incoming task's bits are read from DRAM (energy per bit, interface
/// bandwidth, the dies in active standby) or from the RRAM task array (read energy per word,
/// its bandwidth; woken first when the chip gates it) and written into SRAM; source and
/// destination overlap; the powered arrays leak over the switch time.
fn switch_cost(platform: &Platform, mapping: &Mapping, leakage_mw: f64) -> SwitchCost {
    let bits = mapping.switch_bits;
    if bits == 0.0 {
        return SwitchCost::default();
    }
    let sram = &mapping.sram;
    let write_pj = access_pj(bits, sram.word_bits, sram.write_pj);
    let write = write_ns(sram, bits);
    let (latency_ns, energy_pj, dram_ns) = match mapping.switch_source {
        SwitchSource::None => (write, write_pj + leakage_mw * write, 0.0),
        SwitchSource::Dram => {
            let dram = &platform.tech.dram;
            let dram_ns = bits / (dram.bandwidth_gb_s.value * 8.0);
            let latency = dram_ns.max(write);
            let dies = dram.dies_for(mapping.dram_bits / 8.0);
            let standby_pj = dies * dram.active_standby_mw_per_die.value * dram_ns;
            let energy =
                bits * dram.energy_pj_per_bit.value + write_pj + standby_pj + leakage_mw * latency;
            (latency, energy, dram_ns)
        }
        SwitchSource::Rram => {
            let tasks = &mapping.rram_tasks;
            let read_pj = access_pj(bits, tasks.word_bits, tasks.read_pj);
            let copy = read_ns(tasks, bits).max(write);
            let (wake_ns, wake_pj, on_mw) = if platform.arch.rram_power_gating {
                let p = &platform.tech.power;
                let wake_pj = tasks.leakage_mw * p.rram_wake_energy_leakage_ns.value;
                (p.rram_wake_ns.value, wake_pj, tasks.leakage_mw)
            } else {
                (0.0, 0.0, 0.0)
            };
            let latency = wake_ns + copy;
            let energy = read_pj + write_pj + wake_pj + (leakage_mw + on_mw) * latency;
            (latency, energy, 0.0)
        }
    };
    SwitchCost {
        bits,
        source: mapping.switch_source,
        energy_pj,
        latency_ns,
        dram_ns,
    }
}

/// What the mapped arrays draw between requests, and the cost of waking the gated backbone.
fn idle_power(platform: &Platform, mapping: &Mapping) -> IdlePower {
    let (arch, tech) = (&platform.arch, &platform.tech);
    let p = &tech.power;
    let retention = if arch.sram_retention {
        p.sram_retention_leakage_factor.value
    } else {
        1.0
    };
    let rram_mw = mapping.rram_values.leakage_mw + mapping.rram_mask.leakage_mw;
    let dies = tech.dram.dies_for(mapping.dram_bits / 8.0);
    IdlePower {
        sram_mw: (mapping.sram.leakage_mw + platform.buffers.leakage_mw) * retention,
        rram_mw,
        rram_tasks_mw: if arch.rram_power_gating {
            0.0
        } else {
            mapping.rram_tasks.leakage_mw
        },
        gating: arch.rram_power_gating,
        wake_ns: p.rram_wake_ns.value,
        wake_pj: rram_mw * p.rram_wake_energy_leakage_ns.value,
        break_even_ns: p.rram_wake_energy_leakage_ns.value,
        dram_dies: dies,
        dram_self_refresh_mw: dies * tech.dram.self_refresh_mw_per_die.value,
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
