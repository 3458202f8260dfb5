//! The committed hardware results (`results/hardware.{md,csv,svg}`): adapter-ALBERT on the
//! heterogeneous memory against ALBERT on the same accelerator, for ALBERT-base and
//! all-MiniLM-L6-v2, N = 1..8 tasks, with every assumption listed. One call writes all three.

use std::fmt::Write as _;
use std::path::Path;

use crate::arch::Capacity;
use crate::compare::{compare, compare_table, CompareRow};
use crate::error::{HwError, Result};
use adalbert_core::{AdapterSpec, ModelShape, Sharing};

use crate::mapping::Platform;
use crate::plot::{line_panels, Panel};
use crate::scenario::{Defaults, Scenario};
use crate::sourced::Provenance;
use crate::spec::{Policy, StoragePlan, TaskStore};

/// Models of the committed comparison.
pub const REPORT_MODELS: [&str; 2] = ["albert-base", "minilm"];
/// Largest task count of the comparison.
pub const MAX_TASKS: u64 = 8;

/// Modelling assumptions that are rules rather than numbers (the numbers are listed from the
/// data files next to them).
pub const MODEL_ASSUMPTIONS: [&str; 12] = [
    "Matmul [m x k].[k x n] on the R x C array takes m * ceil(k/R) * ceil(n/C) cycles; special functions run on the SFU lanes at one element per lane per cycle.",
    "Weight-stationary dataflow: each weight is read once per execution (ALBERT's shared layer once per each of its 12 applications, none fits the 64 KiB buffer); inputs come from the main SRAM once per matmul and are re-read from the input buffer once per output-column tile; outputs are written once; bias adds are folded into accumulation.",
    "Double buffering: within an operation compute and every memory's transfers overlap, latency = max(compute, SRAM, RRAM values, RRAM mask); operations run one after another.",
    "A memory's banks (anchor-sized 2 MB arrays, and at least `min_parallel_banks` sub-banks) are read in parallel, one word per read latency each; the input buffer feeds the array at full rate.",
    "Bit-mask zero-skipping gates the MAC energy of zero weights but saves no cycles.",
    "Leakage of every on-chip memory and buffer is charged over the whole run; DRAM background and refresh power is not charged (favours albert-dram).",
    "Memories sized \"auto\": each policy gets exactly the capacity it needs (each policy on its smallest chip). Fixed capacities are checked and charged in full.",
    "albert-dram keeps one fine-tuned model per task in DRAM and copies the active one into SRAM on every switch (DRAM energy + SRAM writes + leakage during the copy); albert-sram holds every task's model in SRAM; the adapter policies hold every task's adapters, task layer norms and classifier on chip (task store on-chip: a switch moves no data).",
    "The same compression plan (bits, sparsity, bit-mask encoding) applies to the baselines' fine-tuned models and to the shared backbone; task-specific tensors are stored dense at the same bit width; the bit mask stays in single-level cells (MaxNVM, docs/sources.md#maxnvm).",
    "Round-robin requests over N tasks with a switch every `requests_per_switch` requests; N = 1 never switches. Energy/latency per request = inference + amortised switch.",
    "Task-specific tensors of an adapter model: adapters, the layer's two LayerNorms per application (Houlsby, Pfeiffer, parallel) and the classifier head (num_labels outputs); the pooler stays in the backbone. Activations: the largest phase (attention or FFN) of one layer is resident.",
    "These are this simulator's first-order figures: the paper's own PPA tables are not available offline and are not reproduced or invented here.",
];

/// The headline ratios of adapter-hetero against the two baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub model: String,
    pub sharing: Sharing,
    pub n_tasks: u64,
    /// [energy, latency, area] ratios.
    pub vs_dram: [f64; 3],
    pub vs_sram: [f64; 3],
}

/// Write `hardware.md`, `hardware.csv` and `hardware.svg` into `dir`; returns the headlines.
pub fn write_hardware_report(
    dir: &Path,
    platform: &Platform,
    defaults: &Defaults,
) -> Result<Vec<Headline>> {
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e))?;
    let mut b = Builder::new(platform, defaults)?;
    for model in REPORT_MODELS {
        b.model(model)?;
    }
    b.same_chip("albert-base")?;
    let mut md = header(platform, defaults, b.adapter, b.plan);
    md.push_str(&summary(&b.headlines, &b.findings));
    md.push_str(&b.body);
    md.push_str(&assumptions(platform, defaults));
    write(&dir.join("hardware.md"), &md)?;
    write(
        &dir.join("hardware.csv"),
        &adalbert_core::files::csv_string(&CSV_HEADER, &b.csv),
    )?;
    line_panels(&dir.join("hardware.svg"), &b.panels, 2)?;
    Ok(b.headlines)
}

/// Accumulates the report's sections, CSV rows, plot panels and headlines.
struct Builder<'a> {
    platform: &'a Platform,
    defaults: &'a Defaults,
    adapter: AdapterSpec,
    plan: StoragePlan,
    body: String,
    csv: Vec<Vec<String>>,
    panels: Vec<Panel>,
    headlines: Vec<Headline>,
    findings: Vec<String>,
}

impl<'a> Builder<'a> {
    fn new(platform: &'a Platform, defaults: &'a Defaults) -> Result<Self> {
        Ok(Builder {
            platform,
            defaults,
            adapter: defaults.adapter.parse()?,
            plan: defaults.storage_plan()?,
            body: String::new(),
            csv: Vec::new(),
            panels: Vec::new(),
            headlines: Vec::new(),
            findings: Vec::new(),
        })
    }

    fn scenario(&self, platform: Platform, model: &str, sharing: Sharing) -> Result<Scenario> {
        let d = self.defaults;
        let cfg = ModelShape::resolve(model)?;
        let (seq, labels) = (d.seq_len.value as u64, d.num_labels.value as u64);
        Ok(Scenario::new(
            platform,
            cfg,
            Some(self.adapter),
            sharing,
            self.plan,
            seq,
            labels,
        ))
    }

    /// Sharings worth reporting: with one application per layer (BERT-style) both coincide.
    fn sharings(model: &str) -> Result<&'static [Sharing]> {
        Ok(if ModelShape::resolve(model)?.layers_per_group() > 1 {
            &[Sharing::PerApplication, Sharing::Shared]
        } else {
            &[Sharing::PerApplication]
        })
    }

    /// Memories sized to each policy's need.
    fn model(&mut self, model: &str) -> Result<()> {
        let rps = self.defaults.requests_per_switch.value;
        for &sharing in Self::sharings(model)? {
            let scenario = self.scenario(self.platform.clone(), model, sharing)?;
            let rows = compare(&scenario, MAX_TASKS, TaskStore::OnChip, rps);
            section(&mut self.body, &scenario, model, sharing, &rows);
            self.body.push_str(&switch_section(&scenario)?);
            csv_rows(&mut self.csv, model, sharing, "auto", &rows);
            if sharing == Sharing::PerApplication {
                self.panels.extend(model_panels(model, &rows));
            }
            self.headlines.extend(headline(model, sharing, &rows));
            self.findings.push(finding(model, sharing, &rows));
            self.findings
                .push(dram_store_finding(&scenario, model, sharing, rps)?);
        }
        Ok(())
    }

    /// One fixed chip for every policy: ALBERT on the same hardware, literally.
    fn same_chip(&mut self, model: &str) -> Result<()> {
        let chip = &self.defaults.same_chip;
        let mut arch = self.platform.arch.clone();
        arch.sram_capacity = Capacity::Bits(chip.sram_mb.value * 8e6);
        arch.rram_capacity = Capacity::Bits(chip.rram_mb.value * 8e6);
        let platform = Platform::new(arch, self.platform.tech.clone())?;
        let rps = self.defaults.requests_per_switch.value;
        let label = format!(
            "same-chip {} MB SRAM + {} MB RRAM cells",
            chip.sram_mb.value, chip.rram_mb.value
        );
        for &sharing in Self::sharings(model)? {
            let scenario = self.scenario(platform.clone(), model, sharing)?;
            let rows = compare(&scenario, MAX_TASKS, TaskStore::OnChip, rps);
            let _ = writeln!(
                self.body,
                "## {model}, adapters {sharing}, on one chip ({label})\n"
            );
            self.body.push_str("Every policy on the same fixed memories (areas and leakage charged in full, no power gating; mappings that do not fit are refused). Leakage of the shared memories then dominates every policy alike, so the adapter policies' gain on one chip is how many tasks fit, not energy per request:\n\n");
            self.body.push_str(&compare_table(&rows));
            self.body.push('\n');
            csv_rows(&mut self.csv, model, sharing, "same-chip", &rows);
        }
        Ok(())
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

fn header(platform: &Platform, d: &Defaults, adapter: AdapterSpec, plan: StoragePlan) -> String {
    let a = &platform.arch;
    let mut s = String::new();
    let _ = writeln!(s, "# Hardware results: adapter-ALBERT on heterogeneous SRAM/RRAM vs ALBERT on the same accelerator\n");
    let _ = writeln!(s, "Generated by `adalbert simulate --report results/` (crate `adalbert-hw`); do not edit by hand.\n");
    let _ = writeln!(s, "## Setup\n");
    let _ = writeln!(s, "- Accelerator: {} ({}x{} MACs at {} GHz, {}-bit activations, {} nm), datapath {:.3} mm2, buffers {:.0} KiB.",
        a.name, a.mac_rows, a.mac_cols, a.clock_ghz, a.activation_bits, a.spec().technology.node_nm.value, a.datapath_area_mm2, a.buffer_bits / 8192.0);
    let _ = writeln!(s, "- SRAM cell row: `{}`; RRAM cell row: `{}` (NVMExplorer, docs/sources.md#nvmexplorer-memory-rows); capacities: SRAM {}, RRAM {} (\"auto\" = sized to each policy's need).",
        a.sram_cell, a.rram_cell, a.sram_capacity.label(), a.rram_capacity.label());
    let _ = writeln!(
        s,
        "- Adapter `{adapter}`; compression plan `{plan}` ({}).",
        d.plan_source
    );
    let _ = writeln!(s, "- Sequence length {}, {} labels, a task switch every {} request(s) (round robin over N tasks).\n",
        d.seq_len.value, d.num_labels.value, d.requests_per_switch.value);
    let _ = writeln!(s, "Ratios are this policy / baseline (energy per request E, latency per request L, area A); below 1 is better. Energy in uJ, latency in ms.\n");
    let _ = writeln!(s, "![energy and area vs tasks](hardware.svg)\n");
    s
}

/// Where adapter-hetero beats each baseline on energy per request, stated from the rows.
fn finding(model: &str, sharing: Sharing, rows: &[CompareRow]) -> String {
    let hetero: Vec<&CompareRow> = rows
        .iter()
        .filter(|r| r.policy == Policy::AdapterHetero)
        .collect();
    let wins = |pick: fn(&CompareRow) -> Option<[f64; 3]>| -> Vec<u64> {
        hetero
            .iter()
            .filter(|r| pick(r).is_some_and(|v| v[0] < 1.0))
            .map(|r| r.n_tasks)
            .collect()
    };
    let describe = |ns: Vec<u64>| match ns.len() {
        0 => "for no N".to_string(),
        n if n == hetero.len() => "for every N".to_string(),
        _ => format!("for N in {ns:?}"),
    };
    format!(
        "{model} ({sharing}): adapter-hetero uses less energy per request than albert-dram {} and than albert-sram {}.",
        describe(wins(|r| r.vs_dram)),
        describe(wins(|r| r.vs_sram))
    )
}

/// adapter-hetero keeping only the active task on chip, against albert-dram, at the largest N.
fn dram_store_finding(
    scenario: &Scenario,
    model: &str,
    sharing: Sharing,
    rps: f64,
) -> Result<String> {
    let off = scenario.run(Policy::AdapterHetero, MAX_TASKS, TaskStore::Dram)?;
    let base = scenario.run(Policy::AlbertDram, MAX_TASKS, TaskStore::OnChip)?;
    Ok(format!(
        "{model} ({sharing}), N = {MAX_TASKS}, inactive tasks' tensors in DRAM (`--task-store dram`): adapter-hetero / albert-dram = {:.3} energy, {:.3} latency, {:.3} area per request.",
        off.energy_per_request(rps) / base.energy_per_request(rps),
        off.latency_per_request(rps) / base.latency_per_request(rps),
        off.area_mm2 / base.area_mm2
    ))
}

fn summary(heads: &[Headline], findings: &[String]) -> String {
    let mut s = String::from("## Headline: adapter-hetero against the baselines\n\n");
    s.push_str("| model | adapters | N | E vs albert-dram | L vs albert-dram | A vs albert-dram | E vs albert-sram | L vs albert-sram | A vs albert-sram |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for h in heads {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            h.model,
            h.sharing,
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
    for f in findings {
        let _ = writeln!(s, "- {f}");
    }
    s.push_str("\nOn-chip leakage over the run time is the largest energy term of every policy here (NVMExplorer's SRAM leaks about 56 mW per 2 MB), so energy follows the on-chip capacity each policy needs; see the breakdown columns of hardware.csv. With per-application adapters each albert-base task carries 12 adapter sets in SRAM. all-MiniLM-L6-v2 has one application per layer, so its two sharings coincide and only one table is given.\n\n");
    s
}

fn section(
    md: &mut String,
    scenario: &Scenario,
    model: &str,
    sharing: Sharing,
    rows: &[CompareRow],
) {
    let t = &scenario.adapted.totals;
    let p = &scenario.plain.totals;
    let _ = writeln!(md, "## {model}, adapters {sharing}\n");
    let _ = writeln!(md, "Backbone {} parameters stored in {:.3} MB ({:.3} MB values + {:.3} MB mask); per task {} task-specific parameters ({:.3} MB); baseline model per task {:.3} MB; activations {:.3} MB.\n",
        t.backbone_params, (t.backbone_value_bits + t.backbone_mask_bits) / 8e6, t.backbone_value_bits / 8e6, t.backbone_mask_bits / 8e6,
        t.task_params, t.task_bits / 8e6, (p.backbone_value_bits + p.backbone_mask_bits + p.task_bits) / 8e6, t.activation_bits / 8e6);
    md.push_str(&compare_table(rows));
    md.push('\n');
}

/// Task-switch costs when inactive tasks live in DRAM: the baseline reloads a whole model, the
/// adapter policies only the task-specific tensors.
fn switch_section(scenario: &Scenario) -> Result<String> {
    let mut s = String::from("Task switch when inactive tasks are kept in DRAM (N = 8; `--task-store dram` for the adapter policies):\n\n| policy | MB loaded per switch | switch energy (uJ) | switch latency (ms) |\n|---|---|---|---|\n");
    for policy in [
        Policy::AlbertDram,
        Policy::AdapterHetero,
        Policy::AdapterSram,
    ] {
        let r = scenario.run(policy, MAX_TASKS, TaskStore::Dram)?;
        let _ = writeln!(
            s,
            "| {policy} | {:.3} | {:.1} | {:.4} |",
            r.switch.dram_bits / 8e6,
            r.switch.energy_pj / 1e6,
            r.switch.latency_ns / 1e6
        );
    }
    s.push('\n');
    Ok(s)
}

const CSV_HEADER: [&str; 28] = [
    "model",
    "sharing",
    "chip",
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
    "sram_mb",
    "rram_values_mb",
    "rram_mask_mb",
    "dram_mb",
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
    chip: &str,
    rows: &[CompareRow],
) {
    let f6 = |x: f64| format!("{x:.6}");
    for r in rows {
        let Some(p) = r.report else { continue };
        let e = &p.energy;
        let o = &p.occupancy;
        let mut row = vec![
            model.to_string(),
            sharing.to_string(),
            chip.to_string(),
            r.n_tasks.to_string(),
            r.policy.to_string(),
        ];
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
                o.sram_capacity_bytes / 1e6,
                o.rram_value_bytes / 1e6,
                o.rram_mask_bytes / 1e6,
                o.dram_bytes / 1e6,
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

fn model_panels(model: &str, rows: &[CompareRow]) -> Vec<Panel> {
    let series = |f: fn(&CompareRow) -> f64| {
        Policy::ALL
            .iter()
            .map(|&p| {
                let pts = rows
                    .iter()
                    .filter(|r| r.policy == p && r.report.is_some())
                    .map(|r| (r.n_tasks as f64, f(r)))
                    .collect();
                (p.name().to_string(), pts)
            })
            .collect::<Vec<_>>()
    };
    vec![
        Panel {
            title: format!("{model}: energy per request"),
            x_label: "tasks N".into(),
            y_label: "uJ".into(),
            series: series(|r| r.energy_pj / 1e6),
        },
        Panel {
            title: format!("{model}: area"),
            x_label: "tasks N".into(),
            y_label: "mm2".into(),
            series: series(|r| r.area_mm2),
        },
    ]
}

fn headline(model: &str, sharing: Sharing, rows: &[CompareRow]) -> Vec<Headline> {
    rows.iter()
        .filter(|r| r.policy == Policy::AdapterHetero && (r.n_tasks == 1 || r.n_tasks == MAX_TASKS))
        .filter_map(|r| {
            Some(Headline {
                model: model.to_string(),
                sharing,
                n_tasks: r.n_tasks,
                vs_dram: r.vs_dram?,
                vs_sram: r.vs_sram?,
            })
        })
        .collect()
}

fn assumptions(platform: &Platform, d: &Defaults) -> String {
    let mut s = String::from("## Assumptions\n\nModelling rules:\n\n");
    for a in MODEL_ASSUMPTIONS {
        let _ = writeln!(s, "- {a}");
    }
    s.push_str("\nMemory scaling rules (`crates/hw/data/memory.toml`): cells = bits / bits per cell; k = cells / anchor cells; area = k * A0 * (1 + overhead * (b - 1)); leakage = k * L0; route = sqrt(A0) * max(0, sqrt(k) - 1) mm; read = R0 * (1 + c * (b - 1)) + route * wire delay; energy per word = E0 * (1 + c * (b - 1)) + word bits * route * wire energy.\n\n");
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

    #[test]
    fn report_writes_three_files_with_every_policy() {
        let dir = std::env::temp_dir().join(format!("adalbert-hw-report-{}", std::process::id()));
        let platform = Platform::builtin().unwrap();
        let heads = write_hardware_report(&dir, &platform, &Defaults::builtin().unwrap()).unwrap();
        // (albert-base x 2 sharings + minilm x 1) x (N = 1, N = 8)
        assert_eq!(heads.len(), 6);
        let md = std::fs::read_to_string(dir.join("hardware.md")).unwrap();
        for needle in [
            "albert-base",
            "minilm",
            "adapter-hetero",
            "albert-dram",
            "## Assumptions",
            "Horowitz",
            "NVMExplorer",
        ] {
            assert!(md.contains(needle), "{needle}");
        }
        let csv = std::fs::read_to_string(dir.join("hardware.csv")).unwrap();
        // auto-sized: (albert-base x 2 sharings + minilm) x 8 N x 4 policies, none refused
        assert_eq!(
            csv.lines().filter(|l| l.contains(",auto,")).count(),
            3 * 8 * 4
        );
        // same chip: albert-sram holds one model only; albert-dram always fits
        let same = |policy: &str| {
            csv.lines()
                .filter(|l| l.contains(",same-chip,") && l.contains(policy))
                .count()
        };
        assert_eq!(same(",albert-sram,"), 2);
        assert_eq!(same(",albert-dram,"), 2 * 8);
        assert!(md.contains("refused"));
        let svg = std::fs::read_to_string(dir.join("hardware.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("adapter-hetero"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
