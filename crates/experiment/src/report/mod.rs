//! The report folder: report.md, one CSV per table and SVG figures (plotters, through the
//! hw crate's plotting helpers). Every figure is drawn from the same rows as its CSV, and every
//! spread comes from [`crate::stats`]. The report is a function of the cached results, the
//! experiment file and the provenance alone: two runs of the same items differ only in the
//! [`compare::TIMING_COLUMNS`].

pub mod compare;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use adalbert_hw::plot::{line_panels, pareto_svg, Panel};
use adalbert_hw::Policy;

use crate::config::Experiment;
use crate::error::Result;
use crate::stages::compress::CompressRecord;
use crate::stages::simulate::{DseRow, SimResult};
use crate::stages::train::TrainRecord;
use crate::stats::{self, Summary, SD_HEADER};
use table::{f2, f3, f4, Table};

pub struct Provenance {
    pub config_text: String,
    pub backbone_sha256: String,
    pub backbone_params: usize,
    pub git_revision: String,
    pub tool_version: String,
}

pub struct Inputs<'a> {
    pub exp: &'a Experiment,
    pub prov: &'a Provenance,
    pub train: &'a [TrainRecord],
    pub compress: &'a [CompressRecord],
    pub sim: &'a [SimResult],
    pub dse: Option<&'a [DseRow]>,
}

/// Headline rows printed by `make demo`.
pub struct Headlines {
    pub lines: Vec<String>,
}

/// Writes the report folder `dir` (created if missing); returns the headline rows.
pub fn write(dir: &Path, inp: &Inputs) -> Result<Headlines> {
    let mut md = String::new();
    let mut heads = Vec::new();
    let exp = inp.exp;
    let _ = writeln!(md, "# adalbert report: {}\n", exp.name);
    if !exp.note.is_empty() {
        let _ = writeln!(md, "> {}\n", exp.note.trim());
    }
    provenance(&mut md, inp);
    let t1 = table1(inp);
    t1.write_csv(&dir.join("table1_tasks.csv"))?;
    let _ = writeln!(
        md,
        "## Table 1: full fine-tuning vs adapters vs head-only\n"
    );
    let _ = writeln!(md, "Dev-set metric of the best epoch (mean over seeds and sample standard deviation, n-1; {} for a single seed), trainable parameters, and the bytes each task adds on a device (fp32; a full fine-tuned task is a whole model). Backbone: {} parameters.\n", stats::UNDEFINED, inp.prov.backbone_params);
    md.push_str(&t1.markdown());
    heads.extend(table1_headlines(inp));
    if let Some(sweep) = &exp.sweep {
        let (t, panels) = sweep_table(inp, &sweep.kind);
        t.write_csv(&dir.join("sweep_adapter_size.csv"))?;
        let _ = writeln!(md, "\n### Metric vs adapter size ({})\n", sweep.kind);
        md.push_str(&t.markdown());
        write_svg(&dir.join("fig_adapter_size.svg"), |p| {
            line_panels(p, &panels, 2)
        })?;
        let _ = writeln!(md, "\n![metric vs adapter size](fig_adapter_size.svg)\n");
    }
    if !inp.compress.is_empty() {
        let t2 = table2(inp);
        t2.write_csv(&dir.join("table2_compression.csv"))?;
        let _ = writeln!(
            md,
            "\n## Table 2: robustness to compression and RRAM faults\n"
        );
        let _ = writeln!(md, "Dev metric of the `{}` bundles evaluated on the compressed backbone (mean and sample standard deviation, n-1, over fault seeds; {} for a single seed), and the backbone's storage.\n", exp.compress.as_ref().map_or("", |c| c.method.as_str()), stats::UNDEFINED);
        md.push_str(&t2.markdown());
        let panels = compression_panels(inp);
        write_svg(&dir.join("fig_compression.svg"), |p| {
            line_panels(p, &panels, 2)
        })?;
        let _ = writeln!(md, "\n![metric vs compression](fig_compression.svg)\n");
        heads.extend(table2_headlines(inp));
    }
    if !inp.sim.is_empty() {
        let t3 = table3(inp);
        t3.write_csv(&dir.join("table3_hardware.csv"))?;
        let _ = writeln!(md, "\n## Table 3: energy, latency and area per request\n");
        if let Some(s) = &exp.simulate {
            let _ = writeln!(md, "adapter `{}` ({}), backbone plan `{}`, sequence length {}, a task switch every {} request(s). Ratios are adapter-hetero / baseline (below 1 is better). Assumptions and sources: `crates/hw/data/*.toml` and `results/hardware.md`.\n", s.adapter, s.sharing, s.plan, s.seq_len, s.requests_per_switch);
        }
        md.push_str(&t3.markdown());
        let panels = task_panels(inp);
        write_svg(&dir.join("fig_tasks.svg"), |p| line_panels(p, &panels, 2))?;
        let _ = writeln!(
            md,
            "\n![energy and area vs number of tasks](fig_tasks.svg)\n"
        );
        heads.extend(table3_headlines(inp));
    }
    if let Some(points) = inp.dse {
        let t = dse_table(points);
        t.write_csv(&dir.join("dse_pareto.csv"))?;
        let scatter: Vec<(f64, f64, f64, bool)> = points
            .iter()
            .filter(|p| p.feasible)
            .map(|p| {
                (
                    p.ppa.energy_pj / 1e6,
                    p.ppa.latency_ns / 1e6,
                    p.ppa.area_mm2,
                    p.pareto,
                )
            })
            .collect();
        write_svg(&dir.join("fig_pareto.svg"), |p| {
            pareto_svg(p, &scatter, "design space: energy (uJ/request)")
        })?;
        let _ = writeln!(md, "\n## Design space\n\n{} design points, {} feasible, {} on the Pareto front (per task count). Front: `dse_pareto.csv`.\n\n![Pareto front](fig_pareto.svg)\n", points.len(), points.iter().filter(|p| p.feasible).count(), t.rows.len());
    }
    let _ = writeln!(
        md,
        "\n## Configuration\n\n```toml\n{}\n```",
        inp.prov.config_text.trim()
    );
    adalbert_core::files::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(Headlines { lines: heads })
}

/// Draws an SVG with one of hw's plotting helpers (which write to a path) into a temporary
/// folder, then writes it to `path` atomically like every other output.
fn write_svg(path: &Path, draw: impl FnOnce(&Path) -> adalbert_hw::Result<()>) -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|source| adalbert_core::CoreError::Io {
        action: "cannot create a temporary folder for",
        path: path.to_path_buf(),
        source,
    })?;
    let drawn = tmp.path().join("figure.svg");
    draw(&drawn)?;
    let bytes = std::fs::read(&drawn).map_err(|source| adalbert_core::CoreError::Io {
        action: "cannot read the figure drawn for",
        path: path.to_path_buf(),
        source,
    })?;
    adalbert_core::files::write_atomic(path, &bytes)?;
    Ok(())
}

fn provenance(md: &mut String, inp: &Inputs) {
    let p = inp.prov;
    let e = inp.exp;
    let _ = writeln!(md, "| provenance | value |\n|---|---|");
    let _ = writeln!(md, "| backbone | `{}` |", e.model.display());
    let _ = writeln!(md, "| backbone sha256 | `{}` |", p.backbone_sha256);
    let _ = writeln!(md, "| training seeds | {:?} |", e.seeds);
    let _ = writeln!(md, "| split seed | {} |", e.split_seed);
    if let Some(c) = &e.compress {
        let _ = writeln!(md, "| fault seeds | {} |", fault_seeds(c));
    }
    let _ = writeln!(md, "| tool version | {} |", p.tool_version);
    let _ = writeln!(md, "| git revision | `{}` |\n", p.git_revision);
}

/// The fault seeds of every `[compress]` group, as `first..end` ranges (end exclusive).
fn fault_seeds(c: &crate::config::CompressSection) -> String {
    let mut ranges: Vec<String> = Vec::new();
    for g in &c.groups {
        let r = format!("{}..{}", g.first_seed, g.first_seed + g.seeds.unwrap_or(1));
        if !ranges.contains(&r) {
            ranges.push(r);
        }
    }
    ranges.join(", ")
}

/// The primary metric of records (one per seed) of one (task, method).
fn metric_summary(rs: &[&TrainRecord]) -> Summary {
    Summary::of(&rs.iter().map(|r| r.primary_value).collect::<Vec<_>>())
}

/// Records of (task, method) grouped over seeds, in configuration order.
fn grouped<'a>(inp: &'a Inputs, task: &str, method: &str) -> Vec<&'a TrainRecord> {
    inp.train
        .iter()
        .filter(|r| r.task == task && r.method == method)
        .collect()
}

fn table1(inp: &Inputs) -> Table {
    let mut t = Table::new(&[
        "task",
        "method",
        "metric",
        "value",
        SD_HEADER,
        "trainable params",
        "% of backbone",
        "bytes per task",
        compare::TIMING_COLUMNS[0],
        compare::TIMING_COLUMNS[1],
        "train/dev examples",
    ]);
    for task in &inp.exp.tasks.names {
        for method in &inp.exp.tasks.methods {
            let rs = grouped(inp, task, method);
            let Some(first) = rs.first() else { continue };
            let s = metric_summary(&rs);
            let secs = stats::mean(&rs.iter().map(|r| r.train_seconds).collect::<Vec<_>>());
            let eps = stats::mean(&rs.iter().map(|r| r.examples_per_second).collect::<Vec<_>>());
            t.push(vec![
                task.clone(),
                method.clone(),
                first.primary.clone(),
                f4(s.mean),
                s.sd_text(4),
                first.trainable_params.to_string(),
                f2(100.0 * first.trainable_params as f64 / inp.prov.backbone_params as f64),
                first.task_bytes.to_string(),
                f2(secs),
                f2(eps),
                format!("{}/{}", first.train_examples, first.dev_examples),
            ]);
        }
    }
    t
}

fn table1_headlines(inp: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    for task in &inp.exp.tasks.names {
        let cells: Vec<String> = inp
            .exp
            .tasks
            .methods
            .iter()
            .filter_map(|m| {
                let rs = grouped(inp, task, m);
                let v = metric_summary(&rs).mean;
                rs.first().map(|r| format!("{m} {} {}", r.primary, f4(v)))
            })
            .collect();
        out.push(format!("Table 1 | {task}: {}", cells.join(" | ")));
    }
    out
}

fn sweep_table(inp: &Inputs, kind: &str) -> (Table, Vec<Panel>) {
    let mut t = Table::new(&[
        "task",
        "adapter",
        "size",
        "metric",
        "value",
        "trainable params",
    ]);
    let mut panels = Vec::new();
    let Some(sweep) = &inp.exp.sweep else {
        return (t, panels);
    };
    for task in &sweep.tasks {
        let mut pts = Vec::new();
        let mut metric = String::new();
        for &size in &sweep.sizes {
            let method = format!("{kind}:{size}");
            let rs = grouped(inp, task, &method);
            let Some(first) = rs.first() else { continue };
            let m = metric_summary(&rs).mean;
            metric = first.primary.clone();
            t.push(vec![
                task.clone(),
                kind.to_string(),
                size.to_string(),
                first.primary.clone(),
                f4(m),
                first.trainable_params.to_string(),
            ]);
            pts.push((size as f64, m));
        }
        panels.push(Panel {
            title: task.clone(),
            x_label: "bottleneck size".into(),
            y_label: metric,
            series: vec![(kind.to_string(), pts)],
        });
    }
    (t, panels)
}

fn table2(inp: &Inputs) -> Table {
    let mut t = Table::new(&[
        "task",
        "plan",
        "faults",
        "metric",
        "mean",
        SD_HEADER,
        "seeds",
        "backbone bytes",
        "bytes by role",
    ]);
    for r in inp.compress {
        t.push(vec![
            r.task.clone(),
            r.plan.clone(),
            r.faults.clone(),
            r.metric.clone(),
            f4(r.summary.mean),
            r.summary.sd_text(4),
            r.summary.n.to_string(),
            r.backbone_bytes.to_string(),
            r.bytes_by_role
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    t
}

fn table2_headlines(inp: &Inputs) -> Vec<String> {
    let mut by_plan: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in inp.compress {
        by_plan
            .entry((r.plan.clone(), r.faults.clone()))
            .or_default()
            .push(r.summary.mean);
    }
    by_plan
        .into_iter()
        .map(|((plan, faults), v)| {
            let m = stats::mean(&v);
            format!(
                "Table 2 | plan {plan} faults {faults}: mean metric over tasks {}",
                f4(m)
            )
        })
        .collect()
}

/// Panels: metric vs bits (format), vs sparsity, vs bits per cell; one series per task.
fn compression_panels(inp: &Inputs) -> Vec<Panel> {
    let mut panels: Vec<Panel> = Vec::new();
    for (axis, title) in [
        ("bits", "metric vs weight bits"),
        ("sparsity", "metric vs sparsity"),
        ("bpc", "metric vs RRAM bits per cell"),
    ] {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for r in inp.compress {
            if r.axis == axis {
                series
                    .entry(format!("{} {}", r.task, r.series))
                    .or_default()
                    .push((r.x, r.summary.mean));
            }
        }
        if series.is_empty() {
            continue;
        }
        let mut s: Vec<(String, Vec<(f64, f64)>)> = series.into_iter().collect();
        for (_, pts) in &mut s {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        panels.push(Panel {
            title: title.into(),
            x_label: axis.into(),
            y_label: "dev metric".into(),
            series: s,
        });
    }
    panels
}

fn table3(inp: &Inputs) -> Table {
    let mut t = Table::new(&[
        "model",
        "N tasks",
        "policy",
        "energy/req (uJ)",
        "latency/req (ms)",
        "area (mm2)",
        "E vs albert-dram",
        "E vs albert-sram",
        "A vs albert-dram",
        "A vs albert-sram",
    ]);
    for s in inp.sim {
        for r in &s.rows {
            let ratio = |v: Option<[f64; 3]>, i: usize| v.map_or("-".to_string(), |v| f3(v[i]));
            if let Some(err) = &r.error {
                t.push(vec![
                    s.model.clone(),
                    r.n_tasks.to_string(),
                    r.policy.clone(),
                    format!("refused: {}", err.replace('|', "/")),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                continue;
            }
            t.push(vec![
                s.model.clone(),
                r.n_tasks.to_string(),
                r.policy.clone(),
                f3(r.ppa.energy_pj / 1e6),
                f3(r.ppa.latency_ns / 1e6),
                f2(r.ppa.area_mm2),
                ratio(r.vs_dram, 0),
                ratio(r.vs_sram, 0),
                ratio(r.vs_dram, 2),
                ratio(r.vs_sram, 2),
            ]);
        }
    }
    t
}

fn table3_headlines(inp: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    let hetero = Policy::AdapterHetero.to_string();
    for s in inp.sim {
        let max_n = s.rows.iter().map(|r| r.n_tasks).max().unwrap_or(1);
        for n in [1, max_n] {
            if let Some(r) = s
                .rows
                .iter()
                .find(|r| r.n_tasks == n && r.policy == hetero && r.error.is_none())
            {
                let fmt = |v: Option<[f64; 3]>| {
                    v.map_or("-".into(), |v| {
                        format!("E {} L {} A {}", f3(v[0]), f3(v[1]), f3(v[2]))
                    })
                };
                out.push(format!(
                    "Table 3 | {} N={n}: adapter-hetero vs albert-dram {}; vs albert-sram {}",
                    s.model,
                    fmt(r.vs_dram),
                    fmt(r.vs_sram)
                ));
            }
        }
    }
    out
}

fn task_panels(inp: &Inputs) -> Vec<Panel> {
    let mut panels = Vec::new();
    for s in inp.sim {
        for (what, pick) in [("energy per request (uJ)", 0usize), ("area (mm2)", 2usize)] {
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for r in s.rows.iter().filter(|r| r.error.is_none()) {
                let y = match pick {
                    0 => r.ppa.energy_pj / 1e6,
                    _ => r.ppa.area_mm2,
                };
                series
                    .entry(r.policy.clone())
                    .or_default()
                    .push((r.n_tasks as f64, y));
            }
            panels.push(Panel {
                title: format!("{}: {what}", s.model),
                x_label: "tasks".into(),
                y_label: what.into(),
                series: series.into_iter().collect(),
            });
        }
    }
    panels
}

fn dse_table(points: &[DseRow]) -> Table {
    let mut t = Table::new(&[
        "N tasks",
        "policy",
        "mac array",
        "adapter",
        "plan",
        "energy/req (uJ)",
        "latency/req (ms)",
        "area (mm2)",
    ]);
    for p in points.iter().filter(|p| p.pareto) {
        t.push(vec![
            p.n_tasks.to_string(),
            p.policy.clone(),
            p.mac_array.to_string(),
            p.adapter.clone(),
            p.plan.clone(),
            f3(p.ppa.energy_pj / 1e6),
            f3(p.ppa.latency_ns / 1e6),
            f2(p.ppa.area_mm2),
        ]);
    }
    t
}
