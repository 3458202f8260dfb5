//! Side-by-side comparison of every policy for a list of task counts N, with ratios against the
//! two baselines (`albert-dram`, `albert-sram`), and where adapter-hetero stops winning.

use std::fmt::Write as _;

use serde::Serialize;

use crate::scenario::Scenario;
use crate::sim::{PolicyReport, RequestCost};
use crate::spec::{Policy, TaskStore, Usage};

/// One policy at one task count: per-request figures, or why it could not be mapped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    pub n_tasks: u64,
    pub policy: Policy,
    pub report: Option<PolicyReport>,
    pub request: Option<RequestCost>,
    pub error: Option<String>,
    /// Energy per request (inference + amortised switch + idle time), pJ.
    pub energy_pj: f64,
    /// Latency per request (inference + amortised switch), ns.
    pub latency_ns: f64,
    pub area_mm2: f64,
    /// Ratios this / albert-dram and this / albert-sram (energy, latency, area).
    pub vs_dram: Option<[f64; 3]>,
    pub vs_sram: Option<[f64; 3]>,
}

/// Every policy for N = 1..=max_tasks, back to back, a switch every `requests_per_switch`
/// requests.
pub fn compare(
    scenario: &Scenario,
    max_tasks: u64,
    store: TaskStore,
    requests_per_switch: f64,
) -> Vec<CompareRow> {
    let ns: Vec<u64> = (1..=max_tasks).collect();
    compare_at(
        scenario,
        &ns,
        store,
        &Usage::back_to_back(requests_per_switch),
    )
}

/// Every policy at each task count of `ns`, under `usage`.
pub fn compare_at(
    scenario: &Scenario,
    ns: &[u64],
    store: TaskStore,
    usage: &Usage,
) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    for &n in ns {
        let start = rows.len();
        for policy in Policy::ALL {
            rows.push(row(scenario, policy, n, store, usage));
        }
        let figures = |p: Policy| {
            rows[start..]
                .iter()
                .find(|r: &&CompareRow| r.policy == p && r.report.is_some())
                .map(|r| [r.energy_pj, r.latency_ns, r.area_mm2])
        };
        let (dram, sram) = (figures(Policy::AlbertDram), figures(Policy::AlbertSram));
        for r in rows[start..].iter_mut().filter(|r| r.report.is_some()) {
            let mine = [r.energy_pj, r.latency_ns, r.area_mm2];
            r.vs_dram = dram.map(|b| ratio(mine, b));
            r.vs_sram = sram.map(|b| ratio(mine, b));
        }
    }
    rows
}

/// Where a policy stops beating a baseline on one metric as N grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "n")]
pub enum Crossover {
    /// Better for no N of the range (not even N = 1).
    Never,
    /// Better for every N up to this one, not at the next.
    UpTo(u64),
    /// Better at every N of the range.
    Always,
}

impl Crossover {
    /// From `better[i]`, whether the policy wins at N = i + 1 (the first N it loses ends it).
    pub fn from_wins(better: impl IntoIterator<Item = bool>) -> Self {
        let mut last = 0;
        for (i, b) in better.into_iter().enumerate() {
            if !b {
                return if i == 0 {
                    Crossover::Never
                } else {
                    Crossover::UpTo(last)
                };
            }
            last = i as u64 + 1;
        }
        Crossover::Always
    }

    /// A plain statement: "for every N up to 64", "for N <= 3", "for no N".
    pub fn describe(&self, max_n: u64) -> String {
        match self {
            Crossover::Never => "for no N".into(),
            Crossover::UpTo(n) => format!("for N <= {n} (not from N = {})", n + 1),
            Crossover::Always => format!("for every N up to {max_n}"),
        }
    }

    /// The last winning N (0 for never, `max_n` for always): a number to take ranges of.
    pub fn last_win(&self, max_n: u64) -> u64 {
        match self {
            Crossover::Never => 0,
            Crossover::UpTo(n) => *n,
            Crossover::Always => max_n,
        }
    }
}

fn ratio(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] / b[0], a[1] / b[1], a[2] / b[2]]
}

fn row(scenario: &Scenario, policy: Policy, n: u64, store: TaskStore, usage: &Usage) -> CompareRow {
    match scenario.run(policy, n, store) {
        Ok(r) => {
            let q = r.request(usage);
            CompareRow {
                n_tasks: n,
                policy,
                energy_pj: q.energy_pj,
                latency_ns: q.latency_ns,
                area_mm2: r.area_mm2,
                report: Some(r),
                request: Some(q),
                error: None,
                vs_dram: None,
                vs_sram: None,
            }
        }
        Err(e) => CompareRow {
            n_tasks: n,
            policy,
            report: None,
            request: None,
            error: Some(e.to_string()),
            energy_pj: f64::NAN,
            latency_ns: f64::NAN,
            area_mm2: f64::NAN,
            vs_dram: None,
            vs_sram: None,
        },
    }
}

fn fmt_ratio(r: Option<[f64; 3]>, i: usize) -> String {
    r.map_or("-".into(), |r| format!("{:.3}", r[i]))
}

/// A Markdown table of the comparison (also readable as plain text).
pub fn compare_table(rows: &[CompareRow]) -> String {
    let mut s = String::new();
    s.push_str("| N | policy | energy/req (uJ) | latency/req (ms) | area (mm2) | switch (uJ) | E vs dram | E vs sram | L vs dram | L vs sram | A vs dram | A vs sram |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        if let Some(e) = &r.error {
            let _ = writeln!(
                s,
                "| {} | {} | refused: {e} |||||||||| ",
                r.n_tasks, r.policy
            );
            continue;
        }
        let sw = r.report.map_or(0.0, |p| p.switch.energy_pj);
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.3} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
            r.n_tasks,
            r.policy,
            r.energy_pj / 1e6,
            r.latency_ns / 1e6,
            r.area_mm2,
            sw / 1e6,
            fmt_ratio(r.vs_dram, 0),
            fmt_ratio(r.vs_sram, 0),
            fmt_ratio(r.vs_dram, 1),
            fmt_ratio(r.vs_sram, 1),
            fmt_ratio(r.vs_dram, 2),
            fmt_ratio(r.vs_sram, 2),
        );
    }
    s
}

/// A human-readable table of one policy report under `usage`.
pub fn report_table(r: &PolicyReport, usage: &Usage) -> String {
    let q = r.request(usage);
    let e = &r.energy;
    let o = &r.occupancy;
    let mut s = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "{k:<34} {v}");
    };
    line(
        "policy",
        format!(
            "{} (N = {} tasks, task store {})",
            r.policy, r.n_tasks, r.task_store
        ),
    );
    line(
        "energy / inference (uJ)",
        format!("{:.3}", r.energy_pj / 1e6),
    );
    for (k, v) in [
        ("  MACs", e.mac),
        ("  special functions", e.special),
        ("  input-buffer reads", e.buffer_read),
        ("  SRAM reads", e.sram_read),
        ("  SRAM writes", e.sram_write),
        ("  RRAM reads", e.rram_read),
        ("  leakage", e.leakage),
    ] {
        line(k, format!("{:.3}", v / 1e6));
    }
    line(
        "latency / inference (ms)",
        format!(
            "{:.4} (compute-only {:.4})",
            r.latency_ns / 1e6,
            r.compute_ns / 1e6
        ),
    );
    line("MACs / inference (G)", format!("{:.3}", r.macs / 1e9));
    line("on-chip leakage, busy (mW)", format!("{:.2}", r.leakage_mw));
    line(
        "task switch (uJ, ms, MB, from)",
        format!(
            "{:.3}, {:.4}, {:.3}, {:?}",
            r.switch.energy_pj / 1e6,
            r.switch.latency_ns / 1e6,
            r.switch.bits / 8e6,
            r.switch.source
        ),
    );
    line(
        "idle power (mW): SRAM, RRAM, tasks",
        format!(
            "{:.2}, {:.2}{}, {:.2}; DRAM self-refresh {:.2} ({} dies)",
            r.idle.sram_mw,
            r.idle.rram_mw,
            if r.idle.gating {
                " (gated when idle)"
            } else {
                ""
            },
            r.idle.rram_tasks_mw,
            r.idle.dram_self_refresh_mw,
            r.idle.dram_dies
        ),
    );
    line(
        "energy / request (uJ)",
        format!(
            "{:.3} (switch every {} requests, {}; idle {:.3} ms, {:.3} uJ{})",
            q.energy_pj / 1e6,
            usage.requests_per_switch,
            usage.rate_label(),
            q.idle_ns / 1e6,
            q.idle_pj / 1e6,
            if q.saturated {
                "; SATURATED: requests arrive faster than served"
            } else {
                ""
            }
        ),
    );
    line(
        "latency / request (ms)",
        format!("{:.4}", q.latency_ns / 1e6),
    );
    line(
        "area (mm2)",
        format!(
            "{:.3} = datapath {:.3} + buffers {:.3} + SRAM {:.3} + RRAM {:.3}",
            r.area_mm2, r.area.datapath, r.area.buffers, r.area.sram, r.area.rram
        ),
    );
    line(
        "SRAM used / capacity (MB)",
        format!(
            "{:.3} / {:.3}",
            o.sram_used_bytes / 1e6,
            o.sram_capacity_bytes / 1e6
        ),
    );
    line(
        "RRAM values / mask (MB)",
        format!(
            "{:.3} / {:.3} ({:.3} M cells)",
            o.rram_value_bytes / 1e6,
            o.rram_mask_bytes / 1e6,
            o.rram_cells / 1e6
        ),
    );
    line(
        "RRAM task array (MB of task data)",
        format!("{:.3}", o.rram_task_bytes / 1e6),
    );
    line("DRAM (MB)", format!("{:.3}", o.dram_bytes / 1e6));
    s
}
