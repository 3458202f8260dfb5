//! The committed hardware results (`results/hardware.*`): adapter-ALBERT on the heterogeneous
//! memory against ALBERT on the same accelerator, for ALBERT-base and all-MiniLM-L6-v2, over
//! adapter sharing x task store x N, with the sensitivity of every conclusion to its
//! assumptions and, when an accuracy CSV is given, accuracy next to energy. One call writes
//! every file.

use std::fmt::Write as _;
use std::path::Path;

use crate::accuracy::{AccuracyInput, JoinBase};
use crate::arch::Capacity;
use crate::compare::{compare_at, compare_table, CompareRow, Crossover};
use crate::error::{HwError, Result};
use adalbert_core::{AdapterSpec, ModelShape, Sharing};

use crate::mapping::Platform;

mod accuracy_md;
mod sensitivity_md;

use crate::plot::{line_panels, scatter_svg, tornado_svg, Panel, Scatter};
use crate::scenario::{Defaults, Scenario};
use crate::sensitivity::{self, Base, Space, Study, MAX_N};
use crate::sourced::Provenance;
use crate::spec::{Policy, StoragePlan, TaskStore, Usage};
use accuracy_md::accuracy_section;
use sensitivity_md::{robustness, sensitivity_section};

/// Models of the committed comparison.
pub const REPORT_MODELS: [&str; 2] = ["albert-base", "minilm"];
/// Task counts of the headline tables.
pub const HEADLINE_NS: [u64; 5] = [1, 2, 4, 8, 16];
/// Request rates of the crossover-by-rate table (`None`: back to back).
pub const REPORT_RATES: [Option<f64>; 4] = [None, Some(10.0), Some(1.0), Some(0.1)];
/// The task count of the breakdown and switch tables.
pub const DETAIL_N: u64 = 8;

/// Modelling assumptions that are rules rather than numbers (the numbers are listed from the
/// data files next to them).
pub const MODEL_ASSUMPTIONS: [&str; 14] = [
    "Matmul [m x k].[k x n] on the R x C array takes m * ceil(k/R) * ceil(n/C) cycles; special functions run on the SFU lanes at one element per lane per cycle.",
    "Weight-stationary dataflow: each weight is read once per execution (ALBERT's shared layer once per each of its 12 applications, none fits the 64 KiB buffer); inputs come from the main SRAM once per matmul and are re-read from the input buffer once per output-column tile; outputs are written once; bias adds are folded into accumulation.",
    "Double buffering: within an operation compute and every memory's transfers overlap, latency = max(compute, SRAM, RRAM values, RRAM mask); operations run one after another.",
    "A memory's banks (anchor-sized 2 MB arrays, and at least `min_parallel_banks` sub-banks) are read in parallel, one word per read latency each; the input buffer feeds the array at full rate.",
    "Bit-mask zero-skipping gates the MAC energy of zero weights but saves no cycles.",
    "Leakage of every powered on-chip memory and buffer is charged over the inference and switch time. Between requests (only when a request rate is given) SRAM and buffers keep leaking (times the retention factor when the chip has a retention mode; SRAM is volatile and never gated), the backbone's RRAM is power gated when the idle time exceeds its break-even time and woken for the next request, and an RRAM task array is gated except during switches. Datapath logic leakage is not modelled.",
    "DRAM: a policy that keeps data in DRAM powers the dies that data needs (at least the interface's two x16 dies) in self-refresh, and in active standby while a switch streams data (JEDEC LPDDR4 memspec currents); energy per bit moved is charged on top.",
    "Memories sized \"auto\": each policy gets exactly the capacity it needs (each policy on its smallest chip). Fixed capacities are checked and charged in full.",
    "albert-dram keeps one fine-tuned model per task in DRAM and copies the active one into SRAM on every switch; albert-sram holds every task's model in SRAM. The adapter policies keep the task-specific tensors of every task in the task store: `sram` (all resident, a switch moves nothing), `rram` (an RRAM task array at the plan's bits per cell; a switch reads the task from it into SRAM), or `dram` (a switch loads the task from DRAM into SRAM); the active task is always in SRAM; one task never switches.",
    "The same compression plan (bits, sparsity, bit-mask encoding) applies to the baselines' fine-tuned models and to the shared backbone; task-specific tensors are stored dense at the same bit width; the bit mask stays in single-level cells (MaxNVM, docs/sources.md#maxnvm).",
    "Round-robin requests over N tasks with a switch every `requests_per_switch` requests; N = 1 never switches. Energy per request = inference + amortised switch (+ idle time until the next request, wake-ups and DRAM background); latency per request = inference + amortised switch (+ wake-up).",
    "Task-specific tensors of an adapter model: adapters, the layer's two LayerNorms per application (Houlsby, Pfeiffer, parallel) and the classifier head (num_labels outputs); the pooler stays in the backbone. Activations: the largest phase (attention or FFN) of one layer is resident.",
    "One-time costs are not charged: programming the RRAM (backbone, task copies) and loading DRAM.",
    "These are this simulator's first-order figures: the paper's own PPA tables are not available offline and are not reproduced or invented here.",
];

/// What the report is built from besides the platform and defaults.
pub struct ReportInputs {
    /// The command that regenerates the report (quoted in it).
    pub command: String,
    /// The sensitivity space.
    pub space: Space,
    /// An accuracy CSV already read, and a sentence saying what it is.
    pub accuracy: Option<(AccuracyInput, String)>,
}

/// The headline ratios of adapter-hetero against the two baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub model: String,
    pub sharing: Sharing,
    pub store: TaskStore,
    pub n_tasks: u64,
    /// [energy, latency, area] ratios.
    pub vs_dram: [f64; 3],
    pub vs_sram: [f64; 3],
}

/// Write `hardware.md`, `hardware.csv`, `hardware.svg`, `hardware_sensitivity.{csv,svg}` and,
/// with an accuracy input, `hardware_accuracy.{csv,svg}` into `dir`; returns the headlines.
pub fn write_hardware_report(
    dir: &Path,
    platform: &Platform,
    defaults: &Defaults,
    inputs: &ReportInputs,
) -> Result<Vec<Headline>> {
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e))?;
    let mut b = Builder::new(platform, defaults)?;
    for model in REPORT_MODELS {
        b.model(model)?;
    }
    b.rates("albert-base")?;
    b.same_chip("albert-base")?;
    let base = b.sensitivity_base(&inputs.space.model)?;
    let study = sensitivity::run(&base, &inputs.space)?;
    let sens = sensitivity_section(&study, &base, "hardware_sensitivity.svg");
    let accuracy = match &inputs.accuracy {
        Some((input, what)) => Some(b.accuracy(input, what)?),
        None => None,
    };
    let mut md = header(platform, defaults, &b, &inputs.command);
    md.push_str(&findings(&b, &study, accuracy.as_ref().map(|a| &a.1)));
    md.push_str(&b.body);
    md.push_str(&sens.md);
    if let Some((section, _, csv, panels)) = &accuracy {
        md.push_str(section);
        write(&dir.join("hardware_accuracy.csv"), csv)?;
        scatter_svg(&dir.join("hardware_accuracy.svg"), panels, 2)?;
    } else {
        md.push_str("## Accuracy and energy\n\nNot joined: no accuracy CSV was given (`--accuracy FILE.csv`).\n\n");
    }
    md.push_str(&b.same_chip_md);
    md.push_str(&assumptions(platform, defaults, &inputs.space));
    write(&dir.join("hardware.md"), &md)?;
    write(
        &dir.join("hardware.csv"),
        &adalbert_core::files::csv_string(&CSV_HEADER, &b.csv),
    )?;
    write(&dir.join("hardware_sensitivity.csv"), &sens.csv)?;
    line_panels(&dir.join("hardware.svg"), &b.panels, 2)?;
    tornado_svg(&dir.join("hardware_sensitivity.svg"), &sens.tornado, 2)?;
    Ok(b.headlines)
}

/// Run the sensitivity study of `space` alone and write `sensitivity.{md,csv,svg}` into `dir`;
/// returns the study (its seed is in every file).
pub fn write_sensitivity(
    dir: &Path,
    platform: &Platform,
    defaults: &Defaults,
    space: &Space,
    command: &str,
) -> Result<Study> {
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e))?;
    let b = Builder::new(platform, defaults)?;
    let base = b.sensitivity_base(&space.model)?;
    let study = sensitivity::run(&base, space)?;
    let out = sensitivity_section(&study, &base, "sensitivity.svg");
    let mut md = format!("# Sensitivity of the hardware conclusions\n\nGenerated by `{command}`; do not edit by hand.\n\n");
    md.push_str(&robustness(&study));
    md.push('\n');
    md.push_str(&out.md);
    write(&dir.join("sensitivity.md"), &md)?;
    write(&dir.join("sensitivity.csv"), &out.csv)?;
    tornado_svg(&dir.join("sensitivity.svg"), &out.tornado, 2)?;
    Ok(study)
}

/// The rows of one model, sharing and store, for N = 1..=MAX_N.
struct Grid {
    model: String,
    sharing: Sharing,
    store: TaskStore,
    rows: Vec<CompareRow>,
}

impl Grid {
    fn hetero(&self, n: u64) -> Option<&CompareRow> {
        self.rows
            .iter()
            .find(|r| r.n_tasks == n && r.policy == Policy::AdapterHetero)
    }

    /// Where adapter-hetero stops beating `baseline` on metric `i` (0 energy, 1 latency, 2 area).
    fn crossover(&self, baseline: Policy, i: usize) -> Crossover {
        Crossover::from_wins((1..=MAX_N).map(|n| {
            self.hetero(n)
                .and_then(|r| {
                    if baseline == Policy::AlbertDram {
                        r.vs_dram
                    } else {
                        r.vs_sram
                    }
                })
                .is_some_and(|v| v[i] < 1.0)
        }))
    }
}

/// Accumulates the report's sections, CSV rows, plot panels and headlines.
struct Builder<'a> {
    platform: &'a Platform,
    defaults: &'a Defaults,
    adapter: AdapterSpec,
    plan: StoragePlan,
    usage: Usage,
    body: String,
    same_chip_md: String,
    csv: Vec<Vec<String>>,
    panels: Vec<Panel>,
    headlines: Vec<Headline>,
    grids: Vec<Grid>,
}

impl<'a> Builder<'a> {
    fn new(platform: &'a Platform, defaults: &'a Defaults) -> Result<Self> {
        Ok(Builder {
            platform,
            defaults,
            adapter: defaults.adapter.parse()?,
            plan: defaults.storage_plan()?,
            usage: defaults.usage()?,
            body: String::new(),
            same_chip_md: String::new(),
            csv: Vec::new(),
            panels: Vec::new(),
            headlines: Vec::new(),
            grids: Vec::new(),
        })
    }

    fn scenario(&self, platform: Platform, model: &str, sharing: Sharing) -> Result<Scenario> {
        let d = self.defaults;
        let (seq, labels) = (d.seq_len.value as u64, d.num_labels.value as u64);
        Scenario::new(
            platform,
            ModelShape::resolve(model)?,
            Some(self.adapter),
            sharing,
            self.plan,
            seq,
            labels,
        )
    }

    /// Sharings worth reporting: with one application per layer (BERT-style) both coincide.
    fn sharings(model: &str) -> Result<&'static [Sharing]> {
        Ok(if ModelShape::resolve(model)?.layers_per_group() > 1 {
            &[Sharing::PerApplication, Sharing::Shared]
        } else {
            &[Sharing::PerApplication]
        })
    }

    fn grid(&self, model: &str, sharing: Sharing, store: TaskStore) -> Option<&Grid> {
        self.grids
            .iter()
            .find(|g| g.model == model && g.sharing == sharing && g.store == store)
    }

    /// Every sharing and store of a model, memories sized to each policy's need.
    fn model(&mut self, model: &str) -> Result<()> {
        let ns: Vec<u64> = (1..=MAX_N).collect();
        for &sharing in Self::sharings(model)? {
            let scenario = self.scenario(self.platform.clone(), model, sharing)?;
            for store in TaskStore::ALL {
                let rows = compare_at(&scenario, &ns, store, &self.usage);
                let head: Vec<CompareRow> = rows
                    .iter()
                    .filter(|r| HEADLINE_NS.contains(&r.n_tasks))
                    .cloned()
                    .collect();
                csv_rows(&mut self.csv, model, sharing, store, "auto", &head);
                self.headlines
                    .extend(headline(model, sharing, store, &head));
                self.grids.push(Grid {
                    model: model.to_string(),
                    sharing,
                    store,
                    rows,
                });
            }
            self.panels.push(energy_panel(model, sharing, &self.grids));
        }
        self.body
            .push_str(&headline_section(model, &self.headlines));
        self.body.push_str(&crossover_section(model, &self.grids));
        let sharing = Self::sharings(model)?[0];
        let scenario = self.scenario(self.platform.clone(), model, sharing)?;
        self.body
            .push_str(&breakdown_section(model, sharing, &scenario, &self.usage)?);
        if model == REPORT_MODELS[0] {
            if let Some(g) = self.grid(model, sharing, TaskStore::Sram) {
                self.panels.push(area_panel(model, sharing, g));
            }
        }
        Ok(())
    }

    /// Crossovers of albert-base at several request rates.
    fn rates(&mut self, model: &str) -> Result<()> {
        let mut s = format!("## {model}: where adapter-hetero stops winning, by request rate\n\n");
        s.push_str("Energy per request including the idle time between requests (no idle time back to back). The last N at which adapter-hetero uses less energy per request than each baseline, searching N = 1..64 (\"all\": every N up to 64; \"none\": not even N = 1):\n\n");
        s.push_str("| adapters | task store | rate | vs albert-dram | vs albert-sram |\n|---|---|---|---|---|\n");
        let ns: Vec<u64> = (1..=MAX_N).collect();
        for &sharing in Self::sharings(model)? {
            let scenario = self.scenario(self.platform.clone(), model, sharing)?;
            for store in TaskStore::ALL {
                for rate in REPORT_RATES {
                    let usage = Usage::new(self.usage.requests_per_switch, rate)?;
                    let g = Grid {
                        model: model.into(),
                        sharing,
                        store,
                        rows: compare_at(&scenario, &ns, store, &usage),
                    };
                    let _ = writeln!(
                        s,
                        "| {sharing} | {store} | {} | {} | {} |",
                        usage.rate_label(),
                        short(g.crossover(Policy::AlbertDram, 0)),
                        short(g.crossover(Policy::AlbertSram, 0))
                    );
                }
            }
        }
        s.push('\n');
        self.body.push_str(&s);
        Ok(())
    }

    /// One fixed chip for every policy: ALBERT on the same hardware, literally.
    fn same_chip(&mut self, model: &str) -> Result<()> {
        let chip = &self.defaults.same_chip;
        let mut arch = self.platform.arch.clone();
        arch.sram_capacity = Capacity::Bits(chip.sram_mb.value * 8e6);
        arch.rram_capacity = Capacity::Bits(chip.rram_mb.value * 8e6);
        let platform = Platform::new(arch, self.platform.tech.clone())?;
        let label = format!(
            "same-chip {} MB SRAM + {} MB RRAM cells",
            chip.sram_mb.value, chip.rram_mb.value
        );
        let ns: Vec<u64> = (1..=8).collect();
        for &sharing in Self::sharings(model)? {
            let scenario = self.scenario(platform.clone(), model, sharing)?;
            let rows = compare_at(&scenario, &ns, TaskStore::Sram, &self.usage);
            let _ = writeln!(
                self.same_chip_md,
                "## {model}, adapters {sharing}, on one chip ({label}), task store sram\n"
            );
            self.same_chip_md.push_str("Every policy on the same fixed memories (areas and leakage charged in full; mappings that do not fit are refused). Leakage of the shared memories then dominates every policy alike, so the adapter policies' gain on one chip is how many tasks fit, not energy per request:\n\n");
            self.same_chip_md.push_str(&compare_table(&rows));
            self.same_chip_md.push('\n');
            csv_rows(
                &mut self.csv,
                model,
                sharing,
                TaskStore::Sram,
                "same-chip",
                &rows,
            );
        }
        Ok(())
    }

    fn sensitivity_base(&self, model: &str) -> Result<Base> {
        let d = self.defaults;
        Ok(Base {
            arch: self.platform.arch.clone(),
            tech: self.platform.tech.clone(),
            model: ModelShape::resolve(model)?,
            adapter: self.adapter,
            plan: self.plan,
            seq_len: d.seq_len.value as u64,
            num_labels: d.num_labels.value as u64,
            usage: self.usage,
        })
    }

    /// The accuracy section, its one-line finding, CSV and panels.
    fn accuracy(
        &self,
        input: &AccuracyInput,
        what: &str,
    ) -> Result<(String, String, String, Vec<Scatter>)> {
        let base = JoinBase {
            platform: self.platform.clone(),
            sharing: self.defaults.sharing.parse()?,
            seq_len: self.defaults.seq_len.value as u64,
            num_labels: self.defaults.num_labels.value as u64,
            usage: self.usage,
            default_bits_per_cell: self.plan.bits_per_cell,
            default_adapter: self.adapter,
            store: TaskStore::Sram,
        };
        let (points, skipped) = crate::accuracy::join(input, &base)?;
        Ok(accuracy_section(&points, input, &skipped, what))
    }
}

fn out_err(path: &Path, e: impl std::fmt::Display) -> HwError {
    HwError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    adalbert_core::files::write_atomic(path, text.as_bytes()).map_err(|e| out_err(path, e))
}

fn short(c: Crossover) -> String {
    match c {
        Crossover::Never => "none".into(),
        Crossover::UpTo(n) => format!("N <= {n}"),
        Crossover::Always => "all".into(),
    }
}

fn header(platform: &Platform, d: &Defaults, b: &Builder, command: &str) -> String {
    let a = &platform.arch;
    let mut s = String::new();
    let _ = writeln!(s, "# Hardware results: adapter-ALBERT on heterogeneous SRAM/RRAM vs ALBERT on the same accelerator\n");
    let _ = writeln!(
        s,
        "Generated by `{command}` (crate `adalbert-hw`; `make results-hardware`); do not edit by hand.\n"
    );
    s.push_str("What this shows: first-order energy, latency and area per request of adapter-ALBERT (backbone in multi-level RRAM, task-specific tensors in SRAM or a task store) against plain ALBERT with one fine-tuned model per task (in DRAM or in SRAM) on the same EdgeBERT-like accelerator, over adapter sharing, task store and task count; which of its conclusions hold over the whole plausible range of the assumptions and which flip on one; and, where an accuracy CSV is given, what each compression plan costs in measured accuracy next to what it saves. What it does not show: measured silicon, the paper's own PPA tables (not available offline, not reproduced or invented), datapath logic leakage, early exit, one-time programming costs, or accuracy of albert-base itself (the accuracy points come from the study named in their section).\n\n");
    let _ = writeln!(s, "## Setup\n");
    let _ = writeln!(s, "- Accelerator: {} ({}x{} MACs at {} GHz, {}-bit activations, {} nm), datapath {:.3} mm2, buffers {:.0} KiB; RRAM power gating {}, SRAM retention mode {}.",
        a.name, a.mac_rows, a.mac_cols, a.clock_ghz, a.activation_bits, a.spec().technology.node_nm.value, a.datapath_area_mm2, a.buffer_bits / 8192.0,
        if a.rram_power_gating { "on" } else { "off" }, if a.sram_retention { "on" } else { "off" });
    let _ = writeln!(s, "- SRAM cell row: `{}`; RRAM cell row: `{}` (NVMExplorer, docs/sources.md#nvmexplorer-memory-rows); capacities: SRAM {}, RRAM {} (\"auto\" = sized to each policy's need); DRAM: {} (docs/sources.md#dram).",
        a.sram_cell, a.rram_cell, a.sram_capacity.label(), a.rram_capacity.label(), platform.tech.dram.name);
    let _ = writeln!(
        s,
        "- Adapter `{}`; compression plan `{}` ({}).",
        b.adapter, b.plan, d.plan_source
    );
    let _ = writeln!(s, "- Sequence length {}, {} labels, a task switch every {} request(s) (round robin over N tasks), requests {} (defaults: docs/sources.md#workload-defaults).\n",
        d.seq_len.value, d.num_labels.value, b.usage.requests_per_switch, b.usage.rate_label());
    let _ = writeln!(s, "Ratios are adapter-hetero / baseline (energy per request E, latency per request L, area A); below 1 is better. Energy in uJ, latency in ms.\n");
    let _ = writeln!(s, "![energy per request and area vs tasks](hardware.svg)\n");
    s
}

/// The findings: crossovers at the defaults, what drives them, what the sensitivity study
/// says holds and what flips, and the accuracy front.
fn findings(b: &Builder, study: &Study, accuracy: Option<&String>) -> String {
    let mut s = String::from("## Findings\n\n");
    let model = REPORT_MODELS[0];
    s.push_str(&format!(
        "At the defaults ({model}, requests {}):\n\n",
        b.usage.rate_label()
    ));
    for g in b.grids.iter().filter(|g| g.model == model) {
        let _ = writeln!(
            s,
            "- {} adapters, task store {}: adapter-hetero uses less energy per request than albert-dram {} and than albert-sram {}; less area than albert-dram {}.",
            g.sharing,
            g.store,
            g.crossover(Policy::AlbertDram, 0).describe(MAX_N),
            g.crossover(Policy::AlbertSram, 0).describe(MAX_N),
            g.crossover(Policy::AlbertDram, 2).describe(MAX_N),
        );
    }
    let at_detail: Vec<String> = b
        .headlines
        .iter()
        .filter(|h| h.model == model && h.n_tasks == DETAIL_N)
        .map(|h| format!("{} {}: {:.3}", h.sharing, h.store, h.vs_dram[0]))
        .collect();
    let _ = writeln!(
        s,
        "- At N = {DETAIL_N}, adapter-hetero / albert-dram energy per request by adapter sharing and task store: {}.",
        at_detail.join("; ")
    );
    s.push_str(&drivers(b));
    if let Some(a) = accuracy {
        let _ = writeln!(s, "- Accuracy: {a}");
    }
    s.push_str(&robustness(study));
    s.push('\n');
    s
}

/// What drives the defaults' numbers: leakage share, dynamic-only ratio, latency.
fn drivers(b: &Builder) -> String {
    let model = REPORT_MODELS[0];
    let mut leak = (f64::INFINITY, f64::NEG_INFINITY);
    let mut lat = (f64::INFINITY, f64::NEG_INFINITY);
    for g in b.grids.iter().filter(|g| g.model == model) {
        for r in g.rows.iter().filter(|r| HEADLINE_NS.contains(&r.n_tasks)) {
            if let (Some(p), Some(q)) = (r.report, r.request) {
                let switch_leak =
                    p.switch_rate(b.usage.requests_per_switch) * p.leakage_mw * p.switch.latency_ns;
                let share = (p.energy.leakage + switch_leak + q.idle_pj) / q.energy_pj;
                leak = (leak.0.min(share), leak.1.max(share));
            }
            if r.policy == Policy::AdapterHetero {
                if let Some(v) = r.vs_dram {
                    lat = (lat.0.min(v[1]), lat.1.max(v[1]));
                }
            }
        }
    }
    let mut s = String::new();
    let _ = writeln!(s, "- What drives these: on-chip leakage is {:.0}-{:.0}% of every policy's energy per request here (NVMExplorer's SRAM leaks 56.3 mW per 2 MB), so energy follows the on-chip capacity each policy keeps powered: with per-application adapters each albert-base task carries 12 adapter sets (2.4 MB), and with task store sram all N of them stay in SRAM. Moving idle tasks to RRAM or DRAM, or sharing one adapter set, removes most of that capacity.", 100.0 * leak.0, 100.0 * leak.1);
    if let Some(d) = dynamic_only(b, model) {
        let _ = writeln!(s, "- Counting dynamic energy only (no leakage anywhere), adapter-hetero / albert-dram at N = {DETAIL_N} ({} adapters, task store sram) is {d:.3}.", Sharing::PerApplication);
    }
    let _ = writeln!(s, "- Latency: adapter-hetero takes {:.3}-{:.3}x albert-dram's time per request over every sharing, store and N of the headline table: the adapters add work, the RRAM reads overlap with compute.", lat.0, lat.1);
    s
}

/// adapter-hetero / albert-dram with every leakage term removed (inference and switch).
fn dynamic_only(b: &Builder, model: &str) -> Option<f64> {
    let g = b.grid(model, Sharing::PerApplication, TaskStore::Sram)?;
    let dynamic = |p: Policy| {
        let r = g
            .rows
            .iter()
            .find(|r| r.n_tasks == DETAIL_N && r.policy == p)?
            .report?;
        let s = r.switch_rate(b.usage.requests_per_switch);
        let switch = r.switch.energy_pj - r.leakage_mw * r.switch.latency_ns;
        Some(r.energy_pj - r.energy.leakage + s * switch)
    };
    Some(dynamic(Policy::AdapterHetero)? / dynamic(Policy::AlbertDram)?)
}

fn list(ns: &[u64]) -> String {
    ns.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// A number to three significant figures.
fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

fn headline_section(model: &str, heads: &[Headline]) -> String {
    let mut s = format!("## {model}: adapter-hetero against the baselines\n\n");
    s.push_str("| adapters | task store | N | E vs albert-dram | L vs albert-dram | A vs albert-dram | E vs albert-sram | L vs albert-sram | A vs albert-sram |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for h in heads.iter().filter(|h| h.model == model) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            h.sharing,
            h.store,
            h.n_tasks,
            h.vs_dram[0],
            h.vs_dram[1],
            h.vs_dram[2],
            h.vs_sram[0],
            h.vs_sram[1],
            h.vs_sram[2]
        );
    }
    s.push('\n');
    s
}

fn crossover_section(model: &str, grids: &[Grid]) -> String {
    let mut s = format!("Where adapter-hetero stops winning ({model}, N = 1..{MAX_N}):\n\n");
    s.push_str("| adapters | task store | E vs albert-dram | E vs albert-sram | L vs albert-dram | A vs albert-dram | A vs albert-sram |\n|---|---|---|---|---|---|---|\n");
    for g in grids.iter().filter(|g| g.model == model) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            g.sharing,
            g.store,
            short(g.crossover(Policy::AlbertDram, 0)),
            short(g.crossover(Policy::AlbertSram, 0)),
            short(g.crossover(Policy::AlbertDram, 1)),
            short(g.crossover(Policy::AlbertDram, 2)),
            short(g.crossover(Policy::AlbertSram, 2)),
        );
    }
    s.push('\n');
    s
}

/// Energy by component and the switch of each store, at N = DETAIL_N.
fn breakdown_section(
    model: &str,
    sharing: Sharing,
    sc: &Scenario,
    usage: &Usage,
) -> Result<String> {
    let t = &sc.adapted.totals;
    let p = &sc.plain.totals;
    let mut s = format!("Energy per request by component ({model}, {sharing} adapters, N = {DETAIL_N}, {}). Backbone {} parameters stored in {:.3} MB ({:.3} MB values + {:.3} MB mask); per task {} task-specific parameters ({:.3} MB); baseline model per task {:.3} MB; activations {:.3} MB:\n\n",
        usage.rate_label(), t.backbone_params, (t.backbone_value_bits + t.backbone_mask_bits) / 8e6, t.backbone_value_bits / 8e6, t.backbone_mask_bits / 8e6,
        t.task_params, t.task_bits / 8e6, (p.backbone_value_bits + p.backbone_mask_bits + p.task_bits) / 8e6, t.activation_bits / 8e6);
    s.push_str("| policy | task store | dynamic (uJ) | leakage (uJ) | switch, amortised (uJ) | idle + wake + DRAM background (uJ) | total (uJ) | leakage share | switch: MB from | switch (uJ, ms) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let mut cases = vec![
        (Policy::AlbertDram, TaskStore::Sram),
        (Policy::AlbertSram, TaskStore::Sram),
    ];
    cases.extend(TaskStore::ALL.map(|st| (Policy::AdapterHetero, st)));
    for (policy, store) in cases {
        let r = sc.run(policy, DETAIL_N, store)?;
        let q = r.request(usage);
        let rate = r.switch_rate(usage.requests_per_switch);
        let switch = rate * r.switch.energy_pj;
        let switch_leak = rate * r.leakage_mw * r.switch.latency_ns;
        let other = q.idle_pj + q.wake_pj + q.dram_background_pj;
        let store_label = if policy.is_baseline() {
            "-".into()
        } else {
            store.to_string()
        };
        let _ = writeln!(
            s,
            "| {policy} | {store_label} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.0}% | {:.3} {:?} | {:.1}, {:.4} |",
            (r.energy_pj - r.energy.leakage) / 1e6,
            r.energy.leakage / 1e6,
            switch / 1e6,
            other / 1e6,
            q.energy_pj / 1e6,
            100.0 * (r.energy.leakage + switch_leak + q.idle_pj) / q.energy_pj,
            r.switch.bits / 8e6,
            r.switch.source,
            r.switch.energy_pj / 1e6,
            r.switch.latency_ns / 1e6,
        );
    }
    s.push('\n');
    Ok(s)
}

const CSV_HEADER: [&str; 35] = [
    "model",
    "sharing",
    "task_store",
    "chip",
    "rate",
    "n_tasks",
    "policy",
    "energy_per_request_uj",
    "latency_per_request_ms",
    "area_mm2",
    "inference_uj",
    "mac_uj",
    "special_uj",
    "buffer_uj",
    "sram_read_uj",
    "sram_write_uj",
    "rram_read_uj",
    "leakage_uj",
    "switch_uj",
    "switch_ms",
    "switch_source",
    "idle_uj",
    "dram_background_uj",
    "sram_mb",
    "rram_values_mb",
    "rram_mask_mb",
    "rram_tasks_mb",
    "dram_mb",
    "busy_leakage_mw",
    "e_vs_dram",
    "l_vs_dram",
    "a_vs_dram",
    "e_vs_sram",
    "l_vs_sram",
    "a_vs_sram",
];

fn csv_rows(
    csv: &mut Vec<Vec<String>>,
    model: &str,
    sharing: Sharing,
    store: TaskStore,
    chip: &str,
    rows: &[CompareRow],
) {
    let f6 = |x: f64| format!("{x:.6}");
    for r in rows {
        let (Some(p), Some(q)) = (r.report, r.request) else {
            continue;
        };
        let e = &p.energy;
        let o = &p.occupancy;
        let mut row = vec![
            model.to_string(),
            sharing.to_string(),
            store.to_string(),
            chip.to_string(),
            "back-to-back".into(),
            r.n_tasks.to_string(),
            r.policy.to_string(),
        ];
        if q.period_ns > q.latency_ns {
            row[4] = format!("{}", 1e9 / q.period_ns);
        }
        row.extend(
            [
                r.energy_pj / 1e6,
                r.latency_ns / 1e6,
                r.area_mm2,
                p.energy_pj / 1e6,
                e.mac / 1e6,
                e.special / 1e6,
                e.buffer_read / 1e6,
                e.sram_read / 1e6,
                e.sram_write / 1e6,
                e.rram_read / 1e6,
                e.leakage / 1e6,
                p.switch.energy_pj / 1e6,
                p.switch.latency_ns / 1e6,
            ]
            .map(f6),
        );
        row.push(format!("{:?}", p.switch.source).to_lowercase());
        row.extend(
            [
                (q.idle_pj + q.wake_pj) / 1e6,
                q.dram_background_pj / 1e6,
                o.sram_capacity_bytes / 1e6,
                o.rram_value_bytes / 1e6,
                o.rram_mask_bytes / 1e6,
                o.rram_task_bytes / 1e6,
                o.dram_bytes / 1e6,
                p.leakage_mw,
            ]
            .map(f6),
        );
        for ratios in [r.vs_dram, r.vs_sram] {
            match ratios {
                Some(v) => row.extend(v.map(f6)),
                None => row.extend(["", "", ""].map(String::from)),
            }
        }
        csv.push(row);
    }
}

/// Energy per request vs N: both baselines and adapter-hetero under each store.
fn energy_panel(model: &str, sharing: Sharing, grids: &[Grid]) -> Panel {
    let pick = |g: &Grid, p: Policy| -> Vec<(f64, f64)> {
        g.rows
            .iter()
            .filter(|r| r.policy == p && r.report.is_some() && r.n_tasks <= 16)
            .map(|r| (r.n_tasks as f64, r.energy_pj / 1e6))
            .collect()
    };
    let mine: Vec<&Grid> = grids
        .iter()
        .filter(|g| g.model == model && g.sharing == sharing)
        .collect();
    let mut series = Vec::new();
    if let Some(g) = mine.first() {
        series.push(("albert-dram".to_string(), pick(g, Policy::AlbertDram)));
        series.push(("albert-sram".to_string(), pick(g, Policy::AlbertSram)));
    }
    for g in &mine {
        series.push((
            format!("adapter-hetero, store {}", g.store),
            pick(g, Policy::AdapterHetero),
        ));
    }
    Panel {
        title: format!("{model} ({sharing}): energy per request"),
        x_label: "tasks N".into(),
        y_label: "uJ".into(),
        series,
    }
}

fn area_panel(model: &str, sharing: Sharing, g: &Grid) -> Panel {
    let series = Policy::ALL
        .iter()
        .map(|&p| {
            let pts = g
                .rows
                .iter()
                .filter(|r| r.policy == p && r.report.is_some() && r.n_tasks <= 16)
                .map(|r| (r.n_tasks as f64, r.area_mm2))
                .collect();
            (p.name().to_string(), pts)
        })
        .collect();
    Panel {
        title: format!("{model} ({sharing}, task store sram): area"),
        x_label: "tasks N".into(),
        y_label: "mm2".into(),
        series,
    }
}

fn headline(model: &str, sharing: Sharing, store: TaskStore, rows: &[CompareRow]) -> Vec<Headline> {
    rows.iter()
        .filter(|r| r.policy == Policy::AdapterHetero)
        .filter_map(|r| {
            Some(Headline {
                model: model.to_string(),
                sharing,
                store,
                n_tasks: r.n_tasks,
                vs_dram: r.vs_dram?,
                vs_sram: r.vs_sram?,
            })
        })
        .collect()
}

fn assumptions(platform: &Platform, d: &Defaults, space: &Space) -> String {
    let mut s = String::from("## Assumptions\n\nModelling rules:\n\n");
    for a in MODEL_ASSUMPTIONS {
        let _ = writeln!(s, "- {a}");
    }
    s.push_str("\nMemory scaling rules (`crates/hw/data/memory.toml`): cells = bits / bits per cell; k = cells / anchor cells; area = k * A0 * (1 + overhead * (b - 1)); leakage = k * L0; route = sqrt(A0) * max(0, sqrt(k) - 1) mm; read = R0 * (1 + c * (b - 1)) + route * wire delay; energy per word = E0 * (1 + c * (b - 1)) + word bits * route * wire energy.\n\n");
    let _ = writeln!(
        s,
        "The sensitivity study varies {} of these assumptions (table \"Sensitivity\").\n",
        space.ranges.len()
    );
    s.push_str("Every number used, with its source (`crates/hw/data/*.toml`; each source is explained in `docs/sources.md`):\n\n| key | value | source |\n|---|---|---|\n");
    let mut all: Vec<Provenance> = platform.arch.provenance();
    all.extend(platform.tech.provenance());
    all.extend(d.provenance());
    for p in all {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            p.key,
            p.value,
            p.source.replace('|', "/")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensitivity::Knob;

    #[test]
    fn report_writes_every_file_with_every_policy_and_store() {
        let dir = std::env::temp_dir().join(format!("adalbert-hw-report-{}", std::process::id()));
        let platform = Platform::builtin().unwrap();
        let mut space = Space::builtin().unwrap();
        space.samples = 8;
        let csv = "backbone,plan,task,metric,value\nminilm,int8,t1,accuracy,0.9\nminilm,int8+prune=0.5+bitmask,t1,accuracy,0.8\n";
        let fill = crate::accuracy::Fill::default();
        let input = crate::accuracy::parse_accuracy(csv, "acc.csv", &fill).unwrap();
        let inputs = ReportInputs {
            command: "adalbert simulate --report DIR".into(),
            space,
            accuracy: Some((input, "a test file.".into())),
        };
        let heads =
            write_hardware_report(&dir, &platform, &Defaults::builtin().unwrap(), &inputs).unwrap();
        // (albert-base x 2 sharings + minilm x 1) x 3 stores x 5 N
        assert_eq!(heads.len(), 3 * 3 * 5);
        let md = std::fs::read_to_string(dir.join("hardware.md")).unwrap();
        for needle in [
            "## Findings",
            "task store rram",
            "## Sensitivity",
            "seed **16**",
            "## Accuracy and energy",
            "## Assumptions",
            "JEDEC",
            "NVMExplorer",
        ] {
            assert!(md.contains(needle), "{needle}");
        }
        let csv = std::fs::read_to_string(dir.join("hardware.csv")).unwrap();
        // auto-sized: (albert-base x 2 + minilm) x 3 stores x 5 N x 4 policies, none refused
        assert_eq!(
            csv.lines().filter(|l| l.contains(",auto,")).count(),
            3 * 3 * 5 * 4
        );
        // same chip: albert-sram holds one model only; albert-dram always fits
        let same = |policy: &str| {
            csv.lines()
                .filter(|l| l.contains(",same-chip,") && l.contains(policy))
                .count()
        };
        assert_eq!(same(",albert-sram,"), 2);
        assert_eq!(same(",albert-dram,"), 2 * 8);
        let sens = std::fs::read_to_string(dir.join("hardware_sensitivity.csv")).unwrap();
        // header + default + 2 per knob + 8 joint samples, each starting with the seed
        assert_eq!(sens.lines().count(), 1 + 1 + 2 * Knob::ALL.len() + 8);
        assert!(sens.lines().skip(1).all(|l| l.starts_with("16,")));
        for svg in [
            "hardware.svg",
            "hardware_sensitivity.svg",
            "hardware_accuracy.svg",
        ] {
            let text = std::fs::read_to_string(dir.join(svg)).unwrap();
            assert!(text.starts_with("<svg"), "{svg}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
