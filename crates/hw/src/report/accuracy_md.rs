//! The accuracy join rendered: per backbone, each plan's measured metric next to the simulated
//! energy and area, the Pareto front, a one-line finding, its CSV and scatter panels.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::accuracy::{AccuracyInput, Point};
use crate::plot::Scatter;

/// Markdown section, one-line finding, CSV and panels of the accuracy join.
pub(super) fn accuracy_section(
    points: &[Point],
    input: &AccuracyInput,
    skipped: &BTreeMap<String, usize>,
    what: &str,
) -> (String, String, String, Vec<Scatter>) {
    let mut md = String::from("## Accuracy and energy\n\n");
    let _ = writeln!(md, "Measured metrics from `{}`: {what}", input.origin);
    md.push_str("\nEach point is one compression plan (at the bits per cell of its fault model; plans measured without faults are costed at the default bits per cell, where the modelled misread rate is about 1e-8 per cell, docs/sources.md#mlc-rram-read-faults): its metric averaged over the tasks next to the energy per request and area of adapter-hetero serving those tasks (N = number of tasks, task store sram, defaults otherwise). The front (bold) keeps the plans no other plan beats on both accuracy and energy.\n\n");
    let mut left: Vec<String> = input
        .skipped
        .iter()
        .chain(skipped.iter())
        .map(|(k, v)| format!("{v} rows: {k}"))
        .collect();
    if !left.is_empty() {
        left.sort();
        let _ = writeln!(md, "Rows left out: {}.\n", left.join("; "));
    }
    let mut panels = Vec::new();
    let mut finding = Vec::new();
    let mut csv_out: Vec<Vec<String>> = Vec::new();
    let mut backbones: Vec<&str> = points.iter().map(|p| p.backbone.as_str()).collect();
    backbones.dedup();
    for bb in backbones {
        let mut mine: Vec<&Point> = points.iter().filter(|p| p.backbone == bb).collect();
        mine.sort_by(|a, b| a.energy_pj.total_cmp(&b.energy_pj));
        let tasks: Vec<String> = mine
            .first()
            .map_or(vec![], |p| p.tasks.iter().map(|t| t.0.clone()).collect());
        let metric = mine.first().map_or(String::new(), |p| p.metric.clone());
        let _ = writeln!(
            md,
            "### {bb} ({} tasks: {}; metric {metric})\n",
            tasks.len(),
            tasks.join(", ")
        );
        md.push_str("| plan | bits/cell | faults modelled | mean | worst task | backbone MB | energy/request (uJ) | area (mm2) | front |\n|---|---|---|---|---|---|---|---|---|\n");
        for p in &mine {
            let plan = p.plan.plan.to_string();
            let cell = |t: &str| {
                if p.pareto {
                    format!("**{t}**")
                } else {
                    t.to_string()
                }
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {:.4} | {:.2} | {:.1} | {:.2} | {} |",
                cell(&format!("`{plan}`")),
                p.plan.bits_per_cell,
                if p.measured_with_faults { "yes" } else { "no" },
                p.mean,
                p.worst,
                p.backbone_mb,
                p.energy_pj / 1e6,
                p.area_mm2,
                if p.pareto { "yes" } else { "" }
            );
            let mut row = vec![
                bb.to_string(),
                plan.clone(),
                p.plan.bits_per_cell.to_string(),
                p.measured_with_faults.to_string(),
                p.adapter.to_string(),
                p.metric.clone(),
                format!("{:.6}", p.mean),
                format!("{:.6}", p.worst),
            ];
            row.extend(
                [
                    p.backbone_mb,
                    p.energy_pj / 1e6,
                    p.latency_ns / 1e6,
                    p.area_mm2,
                ]
                .map(|x| format!("{x:.6}")),
            );
            row.push(p.n_tasks.to_string());
            row.push(p.pareto.to_string());
            csv_out.push(row);
        }
        md.push('\n');
        if let Some(best) = mine.iter().max_by(|a, b| a.mean.total_cmp(&b.mean)) {
            let near = mine
                .iter()
                .filter(|p| p.mean >= best.mean - 0.01)
                .min_by(|a, b| a.energy_pj.total_cmp(&b.energy_pj));
            if let Some(near) = near {
                let cheaper = mine
                    .iter()
                    .filter(|p| p.energy_pj < near.energy_pj)
                    .max_by(|a, b| a.mean.total_cmp(&b.mean));
                let mut f = format!(
                    "on {bb} ({} tasks) the best mean {metric} is {:.4} (`{}` at {} bits per cell, {:.1} uJ per request); the cheapest plan within 1 point of it is `{}` at {} bits per cell, {:.1} uJ per request ({:.0}% less)",
                    best.n_tasks,
                    best.mean,
                    best.plan.plan,
                    best.plan.bits_per_cell,
                    best.energy_pj / 1e6,
                    near.plan.plan,
                    near.plan.bits_per_cell,
                    near.energy_pj / 1e6,
                    100.0 * (1.0 - near.energy_pj / best.energy_pj)
                );
                if let Some(c) = cheaper {
                    let _ = write!(
                        f,
                        "; every cheaper plan loses more: the best of them, `{}` at {} bits per cell ({:.1} uJ), reaches {:.4}",
                        c.plan.plan,
                        c.plan.bits_per_cell,
                        c.energy_pj / 1e6,
                        c.mean
                    );
                }
                f.push_str(". Pruned plans without the bit mask store their zeros, so in this model they cost as much as unpruned ones");
                // The densest cells measured with their fault model, against the same plan at
                // the next lower bits per cell.
                let faulted = mine.iter().filter(|p| p.measured_with_faults);
                if let Some(dense) = faulted.clone().max_by_key(|p| p.plan.bits_per_cell) {
                    let below = faulted.clone().find(|p| {
                        p.plan.plan == dense.plan.plan
                            && p.plan.bits_per_cell + 1 == dense.plan.bits_per_cell
                    });
                    if let Some(below) = below {
                        let _ = write!(
                            f,
                            "; `{}` at {} bits per cell (faults injected) uses {:.0}% less energy than at {} but its mean {metric} falls from {:.4} to {:.4}",
                            dense.plan.plan,
                            dense.plan.bits_per_cell,
                            100.0 * (1.0 - dense.energy_pj / below.energy_pj),
                            below.plan.bits_per_cell,
                            below.mean,
                            dense.mean
                        );
                    }
                }
                f.push('.');
                finding.push(f);
            }
        }
        panels.push(Scatter {
            title: format!("{bb}: mean {metric} vs energy per request (front in red)"),
            x_label: "energy per request (uJ), adapter-hetero".into(),
            y_label: format!("mean {metric}"),
            points: mine
                .iter()
                .map(|p| {
                    let label = format!("{}@{}b", p.plan.plan, p.plan.bits_per_cell);
                    (p.energy_pj / 1e6, p.mean, p.pareto, label)
                })
                .collect(),
        });
    }
    md.push_str("![accuracy vs energy per backbone](hardware_accuracy.svg)\n\n");
    let header = [
        "backbone",
        "plan",
        "bits_per_cell",
        "faults_modelled",
        "adapter",
        "metric",
        "mean",
        "worst_task",
        "backbone_mb",
        "energy_per_request_uj",
        "latency_ms",
        "area_mm2",
        "n_tasks",
        "pareto",
    ];
    let csv = adalbert_core::files::csv_string(&header, &csv_out);
    (md, finding.join(" "), csv, panels)
}
