//! What `adalbert compress` writes and prints: a CSV with one row per (point, task), and a
//! Markdown summary per group (metric per task vs plan: mean, spread and range over seeds;
//! backbone bytes and bytes per role).

use std::collections::HashMap;
use std::fmt::Write as _;

use adalbert_compress::TensorRole;
use adalbert_model::TaskBundle;

use super::{Row, Sweep, SweepReport};
use crate::stats::{self, Summary};

const CSV_HEADER: [&str; 30] = [
    "group",
    "task",
    "plan",
    "faults",
    "seed",
    "recover_epochs",
    "metric",
    "value",
    "n_eval",
    "backbone_bytes",
    "backbone_mb",
    "compression_vs_fp32",
    "metadata_bytes",
    "bytes_embedding",
    "bytes_matrix",
    "bytes_bias",
    "bytes_norm",
    "bytes_other",
    "numel",
    "nnz",
    "value_cells",
    "value_flipped_cells",
    "mask_cells",
    "mask_flipped_cells",
    "flipped_bits",
    "decode_mismatches",
    "analytic_cell_error_rate",
    "weights_sha256",
    "shared_eval",
    "seconds",
];

fn role_bytes(r: &Row, role: TensorRole) -> u64 {
    r.role_bits
        .get(role.as_str())
        .copied()
        .unwrap_or(0)
        .div_ceil(8)
}

/// The CSV text: one line per row, payload bytes by role.
pub fn csv(rows: &[Row]) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.group.clone(),
                r.task.clone(),
                r.plan.clone(),
                r.faults.clone(),
                r.seed.to_string(),
                r.recover_epochs.to_string(),
                r.metric.clone(),
                format!("{:.6}", r.value),
                r.n_eval.to_string(),
                r.payload_bits.div_ceil(8).to_string(),
                format!("{:.4}", r.payload_bits as f64 / 8e6),
                format!("{:.3}", r.fp32_bits as f64 / r.payload_bits.max(1) as f64),
                r.metadata_bits.div_ceil(8).to_string(),
                role_bytes(r, TensorRole::Embedding).to_string(),
                role_bytes(r, TensorRole::Matrix).to_string(),
                role_bytes(r, TensorRole::Bias).to_string(),
                role_bytes(r, TensorRole::Norm).to_string(),
                role_bytes(r, TensorRole::Other).to_string(),
                r.numel.to_string(),
                r.nnz.to_string(),
                r.value_cells.to_string(),
                r.value_flipped_cells.to_string(),
                r.mask_cells.to_string(),
                r.mask_flipped_cells.to_string(),
                r.flipped_bits.to_string(),
                r.decode_mismatches.to_string(),
                r.analytic_cell_error_rate
                    .map(|v| format!("{v:.3e}"))
                    .unwrap_or_default(),
                r.weights_sha256.clone(),
                r.shared_eval.to_string(),
                format!("{:.2}", r.seconds),
            ]
        })
        .collect();
    adalbert_core::files::csv_string(&CSV_HEADER, &lines)
}

/// `mean ± sd (min–max)` over seeds, or the mean alone for one value.
fn fmt_summary(v: &[f64]) -> String {
    let s = Summary::of(v);
    match s.sd {
        Some(sd) => format!("{:.4} ± {sd:.4} ({:.3}–{:.3})", s.mean, s.min, s.max),
        None => format!("{:.4}", s.mean),
    }
}

/// Tasks in bundle order.
fn tasks(rows: &[Row]) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    for r in rows {
        if !t.contains(&r.task) {
            t.push(r.task.clone());
        }
    }
    t
}

/// The fp32, fault-free, unrecovered metric of each task (the reference for deltas).
fn baselines(rows: &[Row]) -> HashMap<String, f64> {
    rows.iter()
        .filter(|r| r.plan == "fp32" && r.faults == "none" && r.recover_epochs == 0)
        .map(|r| (r.task.clone(), r.value))
        .collect()
}

type ConfigKey = (String, String, usize);

/// The rows of group `gi`, by (plan, faults, recover epochs) in first-seen order.
fn configs<'a>(rows: &'a [Row], sweep: &Sweep, gi: usize) -> Vec<(ConfigKey, Vec<&'a Row>)> {
    let name = &sweep.groups[gi].name;
    let mut out: Vec<(ConfigKey, Vec<&'a Row>)> = Vec::new();
    for r in rows.iter().filter(|r| &r.group == name) {
        let k = (r.plan.clone(), r.faults.clone(), r.recover_epochs);
        match out.iter_mut().find(|(kk, _)| *kk == k) {
            Some((_, v)) => v.push(r),
            None => out.push((k, vec![r])),
        }
    }
    out
}

/// A mean count: one decimal below 100 when it is not whole (e.g. 0.3 flips per seed).
fn fmt_count(v: f64) -> String {
    if v < 100.0 && v.fract() != 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn mb(bits: u64) -> f64 {
    bits as f64 / 8e6
}

/// Metric per task vs (plan, faults, recovery) of group `gi`.
pub fn summary_table(rows: &[Row], sweep: &Sweep, gi: usize) -> String {
    let ts = tasks(rows);
    let base = baselines(rows);
    let cfgs = configs(rows, sweep, gi);
    let any_faults = cfgs.iter().any(|((_, f, _), _)| f != "none");
    let any_recovery = cfgs.iter().any(|((_, _, e), _)| *e > 0);
    let mut s = String::from("| plan |");
    if any_faults {
        s.push_str(" faults | seeds | flipped cells (values / mask) |");
    }
    if any_recovery {
        s.push_str(" recovery epochs |");
    }
    s.push_str(" backbone MB | x fp32 |");
    for t in &ts {
        let metric = rows
            .iter()
            .find(|r| &r.task == t)
            .map(|r| r.metric.as_str())
            .unwrap_or("");
        let _ = write!(s, " {t} ({metric}) |");
    }
    s.push_str(" mean Δ vs fp32 |\n|");
    let cols = 1 + if any_faults { 3 } else { 0 } + usize::from(any_recovery) + 2 + ts.len() + 1;
    s.push_str(&"---|".repeat(cols));
    s.push('\n');
    for ((plan, faults, rec), group_rows) in &cfgs {
        let first = group_rows[0];
        let _ = write!(s, "| `{plan}` |");
        if any_faults {
            let mut seeds: Vec<u64> = group_rows.iter().map(|r| r.seed).collect();
            seeds.sort();
            seeds.dedup();
            let per_seed = |f: fn(&Row) -> u64| -> Vec<f64> {
                seeds
                    .iter()
                    .filter_map(|sd| group_rows.iter().find(|r| r.seed == *sd))
                    .map(|r| f(r) as f64)
                    .collect()
            };
            let vm = stats::mean(&per_seed(|r| r.value_flipped_cells));
            let mm = stats::mean(&per_seed(|r| r.mask_flipped_cells));
            let seed_text = if seeds.len() > 1 {
                format!("{}–{}", seeds[0], seeds[seeds.len() - 1])
            } else {
                seeds[0].to_string()
            };
            let _ = write!(
                s,
                " `{faults}` | {seed_text} | {} / {} of {} / {} |",
                fmt_count(vm),
                fmt_count(mm),
                first.value_cells,
                first.mask_cells
            );
        }
        if any_recovery {
            let _ = write!(s, " {rec} |");
        }
        let _ = write!(
            s,
            " {:.2} | {:.2} |",
            mb(first.payload_bits),
            first.fp32_bits as f64 / first.payload_bits.max(1) as f64
        );
        let mut deltas = Vec::new();
        for t in &ts {
            let v: Vec<f64> = group_rows
                .iter()
                .filter(|r| &r.task == t)
                .map(|r| r.value)
                .collect();
            if v.is_empty() {
                s.push_str(" – |");
                continue;
            }
            let _ = write!(s, " {} |", fmt_summary(&v));
            if let Some(b) = base.get(t) {
                deltas.push(stats::mean(&v) - b);
            }
        }
        if deltas.len() == ts.len() && !deltas.is_empty() {
            let _ = writeln!(s, " {:+.1} pts |", 100.0 * stats::mean(&deltas));
        } else {
            s.push_str(" – |\n");
        }
    }
    s
}

/// Storage by tensor role of each plan of group `gi`.
pub fn storage_table(rows: &[Row], sweep: &Sweep, gi: usize) -> String {
    let mut s = String::from(
        "| plan | embedding MB | matrix MB | bias MB | norm MB | backbone MB (payload) | metadata bytes | non-zero codes |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut seen = Vec::new();
    for ((plan, _, _), group_rows) in configs(rows, sweep, gi) {
        if seen.contains(&plan) {
            continue;
        }
        let r = group_rows[0];
        let role = |name: &str| mb(r.role_bits.get(name).copied().unwrap_or(0));
        let _ = writeln!(
            s,
            "| `{plan}` | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1}% |",
            role("embedding"),
            role("matrix"),
            role("bias"),
            role("norm"),
            mb(r.payload_bits),
            r.metadata_bits.div_ceil(8),
            100.0 * r.nnz as f64 / r.numel.max(1) as f64
        );
        seen.push(plan);
    }
    s
}

/// What `adalbert compress` prints without `--json`: both tables of every group.
pub fn terminal_summary(sweep: &Sweep, rows: &[Row]) -> String {
    let mut s = String::new();
    for (gi, g) in sweep.groups.iter().enumerate() {
        let _ = writeln!(s, "## {}\n", g.heading());
        let _ = writeln!(s, "{}", summary_table(rows, sweep, gi));
        let _ = writeln!(s, "{}", storage_table(rows, sweep, gi));
    }
    s
}

/// The Markdown summary: setup, bundles, and both tables of every group.
pub fn markdown(sweep: &Sweep, report: &SweepReport, rows: &[Row], elapsed: f64) -> String {
    let mut s = format!("# {}\n\n", report.title);
    s.push_str(
        "<!-- Generated by `adalbert compress`; edit the sweep file, not this file. -->\n\n",
    );
    if !report.intro.trim().is_empty() {
        s.push_str(report.intro.trim());
        s.push_str("\n\n");
    }
    s.push_str("## Setup\n\n");
    let _ = writeln!(s, "Regenerate with: `{}`\n", report.command);
    let _ = writeln!(
        s,
        "- Model: `{}`; evaluation on the first {} dev examples of each task, max_len {}, \
         offline-suite split seed {}.",
        sweep.model.display(),
        sweep.max_eval.map_or("all".to_string(), |n| n.to_string()),
        sweep.max_len,
        sweep.split_seed
    );
    let _ = writeln!(
        s,
        "- {} result rows; {:.0} s of compression and evaluation in all (rows read back from the \
         cache keep the time they took; this invocation ran {:.0} s).",
        rows.len(),
        rows.iter().map(|r| r.seconds).sum::<f64>(),
        elapsed
    );
    s.push_str("- Bundles:\n\n| task | bundle | mode | adapter | train examples | epochs | lr | max_len | seed | dev metric at training |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for source in &sweep.bundles {
        let p = &source.path;
        if let Ok(b) = TaskBundle::load(p) {
            let tr = &b.meta.training;
            let cfg = &tr["config"];
            let adapter = b
                .meta
                .layout
                .adapter
                .as_ref()
                .map(|a| format!("{a} ({})", b.meta.layout.sharing.as_str()))
                .unwrap_or_else(|| "–".into());
            let metrics: Vec<String> = b
                .meta
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {adapter} | {} | {} | {} | {} | {} | {} |",
                b.meta.task,
                p.display(),
                b.meta.mode.as_str(),
                tr["train_examples"],
                cfg["epochs"],
                cfg["lr"],
                cfg["max_len"],
                b.meta.seed,
                metrics.join(", ")
            );
        }
    }
    s.push('\n');
    s.push_str(
        "Metric cells are the task's primary dev metric; with several seeds they read \
         `mean ± sd (min–max)`, sd being the sample standard deviation (n-1). \"backbone MB\" \
         is the stored payload of the whole checkpoint (values + bit masks, the formula of \
         docs/sources.md#bit-mask-storage; tensors a plan leaves alone count at 32 bits); per-tensor scales and bias \
         registers are the \"metadata bytes\". \"x fp32\" is the fp32 size over the payload. \
         \"mean Δ vs fp32\" averages, over tasks, the difference to the uncompressed fp32 \
         backbone, in points.\n\n",
    );
    for (gi, g) in sweep.groups.iter().enumerate() {
        let _ = writeln!(s, "## {}\n", g.heading());
        if !g.about.trim().is_empty() {
            s.push_str(g.about.trim());
            s.push_str("\n\n");
        }
        s.push_str(&summary_table(rows, sweep, gi));
        s.push('\n');
        s.push_str("Storage by tensor role:\n\n");
        s.push_str(&storage_table(rows, sweep, gi));
        s.push('\n');
    }
    if !report.conclusions.trim().is_empty() {
        s.push_str(report.conclusions.trim());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Group;
    use super::*;

    fn row(plan: &str, faults: &str, seed: u64, task: &str, value: f64) -> Row {
        Row {
            group: "g".into(),
            task: task.into(),
            bundle: "b".into(),
            plan: plan.into(),
            faults: faults.into(),
            seed,
            recover_epochs: 0,
            metric: "accuracy".into(),
            value,
            metrics: BTreeMap::new(),
            n_eval: 10,
            payload_bits: 8_000_000,
            metadata_bits: 64,
            fp32_bits: 32_000_000,
            role_bits: BTreeMap::from([("matrix".to_string(), 8_000_000)]),
            role_metadata_bits: BTreeMap::from([("matrix".to_string(), 64)]),
            numel: 1_000_000,
            nnz: 500_000,
            value_cells: 4,
            value_flipped_cells: seed,
            mask_cells: 0,
            mask_flipped_cells: 0,
            flipped_bits: seed,
            decode_mismatches: 0,
            analytic_cell_error_rate: None,
            weights_sha256: "s".into(),
            shared_eval: false,
            seconds: 1.0,
        }
    }

    fn sweep() -> Sweep {
        Sweep {
            model: "m".into(),
            bundles: vec![],
            split_seed: 0,
            split: adalbert_tasks::Split::Dev,
            max_eval: Some(10),
            max_len: 64,
            out: "o".into(),
            groups: vec![Group {
                name: "g".into(),
                ..Group::default()
            }],
        }
    }

    #[test]
    fn summary_aggregates_seeds_and_deltas() {
        let rows = vec![
            row("fp32", "none", 0, "a", 0.9),
            row("int4", "mlc:bpc=3", 0, "a", 0.7),
            row("int4", "mlc:bpc=3", 1, "a", 0.8),
        ];
        let t = summary_table(&rows, &sweep(), 0);
        assert!(t.contains("| `int4` | `mlc:bpc=3` | 0–1 |"), "{t}");
        // Sample sd of [0.7, 0.8]: 0.1 / sqrt(2) = 0.0707.
        assert!(t.contains("0.7500 ± 0.0707 (0.700–0.800)"), "{t}");
        assert!(
            t.contains("| `fp32` | `none` | 0 | 0 / 0 of 4 / 0 | 1.00 | 4.00 | 0.9000 |"),
            "{t}"
        );
        assert!(t.contains("-15.0 pts"), "{t}");
        assert!(t.contains("| 1.00 | 4.00 |"), "{t}");
        assert_eq!(rows[0].backbone_bytes(), 1_000_008);
        assert_eq!(rows[0].bytes_by_role()["matrix"], 1_000_008);
    }

    #[test]
    fn csv_has_one_line_per_row_and_quotes_like_the_csv_crate() {
        let mut rows = vec![
            row("fp32", "none", 0, "a", 0.9),
            row("int4", "mlc:bpc=3", 1, "a", 0.8),
        ];
        rows[1].group = "with, comma".into();
        let c = csv(&rows);
        assert_eq!(c.lines().count(), 3);
        assert!(c.lines().next().unwrap().starts_with("group,task,plan"));
        let header_cols = c.lines().next().unwrap().split(',').count();
        assert_eq!(header_cols, CSV_HEADER.len());
        assert_eq!(c.lines().nth(1).unwrap().split(',').count(), header_cols);
        assert!(c.contains(",1000000,1.0000,4.000,8,0,1000000,"), "{c}");
        assert!(c.contains("\n\"with, comma\",a,int4,"), "{c}");
        // A missing analytic rate is an empty cell.
        assert!(c.contains(",0,,s,false,1.00\n"), "{c}");
    }
}
