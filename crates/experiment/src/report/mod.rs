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
use crate::select::{self, Selected};
use crate::stages::compress::CompressRecord;
use crate::stages::simulate::{DseRow, SimResult};
use crate::stages::train::TrainRecord;
use crate::stats::{self, Summary, SD_HEADER};
use table::{f2, f3, f4, Table};

/// One backbone of the study, as the report names it.
pub struct BackboneInfo {
    pub name: String,
    pub path: std::path::PathBuf,
    pub sha256: String,
    pub params: usize,
    pub albert: bool,
}

pub struct Provenance {
    pub config_text: String,
    pub backbones: Vec<BackboneInfo>,
    pub git_revision: String,
    pub tool_version: String,
    /// The plan's estimated CPU seconds (the cost model of [`crate::plan::cost`]).
    pub estimated_cpu_s: f64,
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

/// The cells of the study with their learning rate chosen on dev: every training record not
/// trained on a compressed backbone.
fn selections<'a>(inp: &'a Inputs) -> Vec<Selected<'a>> {
    let rs: Vec<&TrainRecord> = inp
        .train
        .iter()
        .filter(|r| r.compressed.is_none())
        .collect();
    select::select_all(&rs)
}

/// Writes the report folder `dir` (created if missing); returns the headline rows.
pub fn write(dir: &Path, inp: &Inputs) -> Result<Headlines> {
    let mut md = String::new();
    let mut heads = Vec::new();
    let exp = inp.exp;
    let sel = selections(inp);
    let _ = writeln!(md, "# adalbert report: {}\n", exp.name);
    scale(&mut md, inp);
    if exp.is_glue() {
        let g = exp.glue_selection();
        let _ = writeln!(md, "**GLUE:** \"test\" in every table below is the official GLUE dev set (dev.tsv; dev_matched.tsv for mnli, dev_mismatched.tsv for mnli-mm), because GLUE's test sets are unlabeled; \"dev\", where learning rates and epochs are chosen, is a seeded slice of each train.tsv (a fraction {} of it, at most {} examples, split seed {}) and training uses the rest. The test sets are predicted by each Table 1 cell's kept bundle (first seed of the chosen learning rate) into `{}/<backbone>/<method>/` for the leaderboard.\n", g.fraction, g.max, exp.split_seed, crate::stages::submit::SUBMISSION_DIR);
    }
    if !exp.note.is_empty() {
        let _ = writeln!(md, "> {}\n", exp.note.trim());
    }
    provenance(&mut md, inp);
    let t1 = table1(inp, &sel);
    t1.write_csv(&dir.join("table1_tasks.csv"))?;
    let _ = writeln!(
        md,
        "## Table 1: full fine-tuning vs adapters vs head-only\n"
    );
    let _ = writeln!(md, "Test-set metric (mean over training seeds and sample standard deviation, n-1; {} for a single seed; `seeds` is the count) of the learning rate with the best mean dev metric, each run keeping its best dev epoch (early stopping on dev). `average` rows average the tasks per seed. Trainable parameters, the bytes each task adds on a device (fp32; a full fine-tuned task is a whole model) and training time per run.\n", stats::UNDEFINED);
    md.push_str(&t1.markdown());
    heads.extend(table1_headlines(inp, &sel));
    let lrs = lr_table(&sel);
    lrs.write_csv(&dir.join("lr_selection.csv"))?;
    let _ = writeln!(md, "\n### Learning rate and epoch chosen on dev\n\nEvery learning rate tried per cell with its mean dev metric over seeds (the selection's only input) and the epochs kept by early stopping; `chosen` marks the reported one.\n");
    md.push_str(&lrs.markdown());
    let (curve, curve_panels) = dev_curves(&sel);
    if !curve.rows.is_empty() {
        curve.write_csv(&dir.join("dev_curve_full.csv"))?;
        let _ = writeln!(md, "\n### Full fine-tuning dev curve\n\nDev metric after each epoch (mean over the seeds that ran it; early stopping ends runs at different epochs).\n");
        md.push_str(&curve.markdown());
        write_svg(&dir.join("fig_dev_curve.svg"), |p| {
            line_panels(p, &curve_panels, 2)
        })?;
        let _ = writeln!(md, "\n![full fine-tuning dev curve](fig_dev_curve.svg)\n");
    }
    if exp.sweep.is_some() {
        let (t, panels) = sweep_table(inp, &sel);
        t.write_csv(&dir.join("sweep_adapter_size.csv"))?;
        let _ = writeln!(md, "\n### Test metric vs adapter size, kind and sharing\n");
        md.push_str(&t.markdown());
        write_svg(&dir.join("fig_adapter_size.svg"), |p| {
            line_panels(p, &panels, 2)
        })?;
        let _ = writeln!(
            md,
            "\n![metric vs trainable parameters](fig_adapter_size.svg)\n"
        );
    }
    let mut t2_rows: Vec<T2Row> = Vec::new();
    if !inp.compress.is_empty() {
        t2_rows = table2_rows(inp);
        let t2 = table2(&t2_rows);
        t2.write_csv(&dir.join("table2_compression.csv"))?;
        let _ = writeln!(
            md,
            "\n## Table 2: robustness to compression and RRAM faults\n"
        );
        let c = exp.compress.as_ref();
        let _ = writeln!(md, "Test metric of `{}` (lr {}, first training seed) trained on the fp32 backbone and evaluated on the compressed one (mean and sample standard deviation, n-1, over fault seeds; {} for one), next to the same method trained on the compressed backbone (compress first, then train: the paper's claim; over fault seeds x training seeds), and the backbone's storage. `recovered` is the second minus the first.\n", c.map_or("", |c| c.method.as_str()), exp.compress_lr().map_or("-".into(), |l| l.to_string()), stats::UNDEFINED);
        md.push_str(&t2.markdown());
        let panels = compression_panels(&t2_rows);
        write_svg(&dir.join("fig_compression.svg"), |p| {
            line_panels(p, &panels, 2)
        })?;
        let _ = writeln!(md, "\n![metric vs compression](fig_compression.svg)\n");
        heads.extend(table2_headlines(inp));
    }
    let (interp, sentences) = interpretation(inp, &sel, &t2_rows);
    if !interp.rows.is_empty() {
        interp.write_csv(&dir.join("interpretation.csv"))?;
        let _ = writeln!(md, "\n## Interpretation\n\n{}\n", sentences.join(" "));
        let _ = writeln!(
            md,
            "The figures behind these sentences (`interpretation.csv`):\n"
        );
        md.push_str(&interp.markdown());
        let _ = writeln!(
            md,
            "\n**What this does not show:** {}\n",
            does_not_show(inp)
        );
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

/// The scale line: what was cut to fit the time, and the plan's estimated CPU time.
fn scale(md: &mut String, inp: &Inputs) {
    let e = inp.exp;
    let t = &e.train;
    let cap = |c: Option<usize>| c.map_or("all".to_string(), |n| format!("at most {n}"));
    let _ = writeln!(
        md,
        "**Scale: {}.** {} training seed(s) per cell; {} training, {} dev and {} test examples per task; up to {} epochs{}; max {} tokens. Estimated {} on the calibration machine (`adalbert run --list-items` itemizes it).\n",
        e.scale,
        e.seeds.len(),
        cap(t.max_train),
        cap(t.max_eval),
        cap(t.max_test),
        t.epochs,
        t.patience
            .map_or(String::new(), |p| format!(", early stopping after {p} epoch(s) without a better dev metric")),
        t.max_len,
        crate::plan::cpu_text(inp.prov.estimated_cpu_s)
    );
}

fn provenance(md: &mut String, inp: &Inputs) {
    let p = inp.prov;
    let e = inp.exp;
    let _ = writeln!(md, "| provenance | value |\n|---|---|");
    for b in &p.backbones {
        let _ = writeln!(
            md,
            "| backbone {} | `{}` ({}, {} parameters) |",
            b.name,
            b.path.display(),
            if b.albert { "ALBERT" } else { "BERT" },
            b.params
        );
        let _ = writeln!(md, "| backbone sha256 ({}) | `{}` |", b.name, b.sha256);
    }
    let _ = writeln!(md, "| training seeds | {:?} |", e.seeds);
    let _ = writeln!(md, "| split seed | {} |", e.split_seed);
    if let Some(c) = &e.compress {
        let _ = writeln!(md, "| fault seeds | {} |", fault_seeds(c));
    }
    let _ = writeln!(md, "| tool version | {} |", p.tool_version);
    let _ = writeln!(md, "| git revision | `{}` |", p.git_revision);
    // Training times in the tables are wall times of the machine that ran each item; name the
    // one that wrote the report (the same machine unless shards ran elsewhere).
    let _ = writeln!(
        md,
        "| report written on | {}, {} logical CPUs |\n",
        adalbert_kernels::cpu_model_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
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

fn backbone_params(inp: &Inputs, name: &str) -> usize {
    inp.prov
        .backbones
        .iter()
        .find(|b| b.name == name)
        .map_or(0, |b| b.params)
}

/// The main cells (Table 1's): `tasks.methods` at `train.sharing`.
fn main_cell<'s, 'a>(
    inp: &Inputs,
    sel: &'s [Selected<'a>],
    backbone: &str,
    task: &str,
    method: &str,
) -> Option<&'s Selected<'a>> {
    sel.iter().find(|s| {
        s.key.backbone == backbone
            && s.key.task == task
            && s.key.method == method
            && s.key.sharing == inp.exp.train.sharing
    })
}

/// The chosen epochs of the runs (one per seed), e.g. `3,2,3`.
fn epochs_text(s: &Selected) -> String {
    s.runs()
        .iter()
        .map(|r| r.best_epoch.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn lr_text(lr: f64) -> String {
    format!("{lr:e}")
}

fn table1(inp: &Inputs, sel: &[Selected]) -> Table {
    let mut t = Table::new(&[
        "task",
        "backbone",
        "method",
        "metric",
        "value",
        SD_HEADER,
        "seeds",
        "dev",
        "lr",
        "epochs",
        "trainable params",
        "% of backbone",
        "bytes per task",
        compare::TIMING_COLUMNS[0],
        compare::TIMING_COLUMNS[1],
        "train/dev/test examples",
    ]);
    let exp = inp.exp;
    for task in &exp.tasks.names {
        for b in &exp.backbones {
            for method in &exp.tasks.methods {
                let Some(s) = main_cell(inp, sel, &b.name, task, method) else {
                    continue;
                };
                let first = s.first();
                let test = s.test();
                let runs = s.runs();
                let secs = stats::mean(&runs.iter().map(|r| r.train_seconds).collect::<Vec<_>>());
                let eps = stats::mean(
                    &runs
                        .iter()
                        .map(|r| r.examples_per_second)
                        .collect::<Vec<_>>(),
                );
                t.push(vec![
                    task.clone(),
                    b.name.clone(),
                    method.clone(),
                    first.primary.clone(),
                    f4(test.mean),
                    test.sd_text(4),
                    test.n.to_string(),
                    f4(s.dev().mean),
                    lr_text(s.lr()),
                    epochs_text(s),
                    first.trainable_params.to_string(),
                    f2(100.0 * first.trainable_params as f64
                        / backbone_params(inp, &b.name).max(1) as f64),
                    first.task_bytes.to_string(),
                    f2(secs),
                    f2(eps),
                    format!(
                        "{}/{}/{}",
                        first.train_examples, first.dev_examples, first.test_examples
                    ),
                ]);
            }
        }
    }
    for b in &exp.backbones {
        for method in &exp.tasks.methods {
            let Some(avg) = task_average(inp, sel, &b.name, method) else {
                continue;
            };
            t.push(vec![
                "average".into(),
                b.name.clone(),
                method.clone(),
                "primary".into(),
                f4(avg.test.mean),
                avg.test.sd_text(4),
                avg.test.n.to_string(),
                f4(avg.dev),
                "-".into(),
                "-".into(),
                avg.params.to_string(),
                f2(100.0 * avg.params as f64 / backbone_params(inp, &b.name).max(1) as f64),
                avg.bytes.to_string(),
                f2(avg.seconds),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    t
}

/// A method on a backbone averaged over tasks.
struct Average {
    /// Over seeds of the per-seed means over tasks.
    test: Summary,
    dev: f64,
    params: usize,
    /// Bytes per task (the mean over tasks: heads differ by label count).
    bytes: usize,
    seconds: f64,
}

/// The average over every task of the method on the backbone, per training seed (each task at
/// its own chosen learning rate): `None` unless every task has the cell with the same seeds.
fn task_average(inp: &Inputs, sel: &[Selected], backbone: &str, method: &str) -> Option<Average> {
    let cells: Vec<&Selected> = inp
        .exp
        .tasks
        .names
        .iter()
        .map(|task| main_cell(inp, sel, backbone, task, method))
        .collect::<Option<Vec<_>>>()?;
    let seeds: Vec<u64> = cells.first()?.runs().iter().map(|r| r.seed).collect();
    let mut per_seed = Vec::new();
    for seed in &seeds {
        let v: Vec<f64> = cells
            .iter()
            .map(|c| {
                c.runs()
                    .iter()
                    .find(|r| r.seed == *seed)
                    .map(|r| r.test_value)
            })
            .collect::<Option<Vec<_>>>()?;
        per_seed.push(stats::mean(&v));
    }
    let n = cells.len() as f64;
    Some(Average {
        test: Summary::of(&per_seed),
        dev: stats::mean(&cells.iter().map(|c| c.dev().mean).collect::<Vec<_>>()),
        params: cells.iter().map(|c| c.first().trainable_params).max()?,
        bytes: (cells
            .iter()
            .map(|c| c.first().task_bytes as f64)
            .sum::<f64>()
            / n)
            .round() as usize,
        seconds: stats::mean(
            &cells
                .iter()
                .flat_map(|c| c.runs().iter().map(|r| r.train_seconds))
                .collect::<Vec<_>>(),
        ),
    })
}

fn table1_headlines(inp: &Inputs, sel: &[Selected]) -> Vec<String> {
    let mut out = Vec::new();
    for task in &inp.exp.tasks.names {
        for b in &inp.exp.backbones {
            let cells: Vec<String> = inp
                .exp
                .tasks
                .methods
                .iter()
                .filter_map(|m| {
                    let s = main_cell(inp, sel, &b.name, task, m)?;
                    Some(format!("{m} {} {}", s.first().primary, f4(s.test().mean)))
                })
                .collect();
            if inp.exp.backbones.len() == 1 {
                out.push(format!("Table 1 | {task}: {}", cells.join(" | ")));
            } else {
                out.push(format!(
                    "Table 1 | {task} on {}: {}",
                    b.name,
                    cells.join(" | ")
                ));
            }
        }
    }
    out
}

fn lr_table(sel: &[Selected]) -> Table {
    let mut t = Table::new(&[
        "backbone",
        "task",
        "method",
        "sharing",
        "lr",
        "dev mean",
        SD_HEADER,
        "seeds",
        "epochs kept",
        "epochs run",
        "chosen",
    ]);
    for s in sel {
        for (i, c) in s.candidates.iter().enumerate() {
            t.push(vec![
                s.key.backbone.clone(),
                s.key.task.clone(),
                s.key.method.clone(),
                s.key.sharing.clone(),
                lr_text(c.lr),
                f4(c.dev.mean),
                c.dev.sd_text(4),
                c.dev.n.to_string(),
                c.runs
                    .iter()
                    .map(|r| r.best_epoch.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                c.runs
                    .iter()
                    .map(|r| r.epochs_run.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                if i == s.chosen { "yes" } else { "" }.into(),
            ]);
        }
    }
    t
}

/// The dev curve of every full fine-tuning run, per learning rate, averaged over seeds.
fn dev_curves(sel: &[Selected]) -> (Table, Vec<Panel>) {
    let mut t = Table::new(&[
        "backbone",
        "task",
        "lr",
        "epoch",
        "dev mean",
        "seeds",
        "chosen lr",
    ]);
    let mut panels: Vec<Panel> = Vec::new();
    for s in sel.iter().filter(|s| s.key.method == "full") {
        let mut series = Vec::new();
        for (ci, c) in s.candidates.iter().enumerate() {
            let longest = c.runs.iter().map(|r| r.dev_curve.len()).max().unwrap_or(0);
            let mut pts = Vec::new();
            for e in 0..longest {
                let v: Vec<f64> = c
                    .runs
                    .iter()
                    .filter_map(|r| r.dev_curve.get(e).copied())
                    .collect();
                let m = stats::mean(&v);
                t.push(vec![
                    s.key.backbone.clone(),
                    s.key.task.clone(),
                    lr_text(c.lr),
                    (e + 1).to_string(),
                    f4(m),
                    v.len().to_string(),
                    if ci == s.chosen { "yes" } else { "" }.into(),
                ]);
                pts.push(((e + 1) as f64, m));
            }
            series.push((format!("lr {}", lr_text(c.lr)), pts));
        }
        panels.push(Panel {
            title: format!("{} / {}: full fine-tuning", s.key.backbone, s.key.task),
            x_label: "epoch".into(),
            y_label: format!("dev {}", s.first().primary),
            series,
        });
    }
    (t, panels)
}

fn sweep_table(inp: &Inputs, sel: &[Selected]) -> (Table, Vec<Panel>) {
    let mut t = Table::new(&[
        "backbone",
        "task",
        "adapter",
        "size",
        "sharing",
        "metric",
        "value",
        SD_HEADER,
        "seeds",
        "lr",
        "trainable params",
        "bytes per task",
    ]);
    let mut panels = Vec::new();
    let Some(sweep) = &inp.exp.sweep else {
        return (t, panels);
    };
    for b in &inp.exp.backbones {
        for task in &sweep.tasks {
            let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
            let mut metric = String::new();
            for kind in sweep.kinds() {
                let mut sharings: Vec<&str> = vec![inp.exp.train.sharing.as_str()];
                for sh in &sweep.sharing {
                    if !sharings.contains(&sh.as_str()) {
                        sharings.push(sh);
                    }
                }
                for sh in sharings {
                    let mut pts = Vec::new();
                    for &size in &sweep.sizes {
                        let method = format!("{kind}:{size}");
                        let Some(s) = sel.iter().find(|s| {
                            s.key.backbone == b.name
                                && s.key.task == *task
                                && s.key.method == method
                                && s.key.sharing == sh
                        }) else {
                            continue;
                        };
                        let first = s.first();
                        let test = s.test();
                        metric = first.primary.clone();
                        t.push(vec![
                            b.name.clone(),
                            task.clone(),
                            kind.clone(),
                            size.to_string(),
                            sh.to_string(),
                            first.primary.clone(),
                            f4(test.mean),
                            test.sd_text(4),
                            test.n.to_string(),
                            lr_text(s.lr()),
                            first.trainable_params.to_string(),
                            first.task_bytes.to_string(),
                        ]);
                        pts.push((first.trainable_params as f64, test.mean));
                    }
                    if !pts.is_empty() {
                        let name = if sweep.sharing.is_empty() {
                            kind.clone()
                        } else {
                            format!("{kind} {sh}")
                        };
                        series.push((name, pts));
                    }
                }
            }
            if !series.is_empty() {
                panels.push(Panel {
                    title: format!("{} / {task}", b.name),
                    x_label: "trainable parameters".into(),
                    y_label: format!("test {metric}"),
                    series,
                });
            }
        }
    }
    (t, panels)
}

/// One row of Table 2: a compressed backbone, the fp32-trained bundle evaluated on it, and the
/// method trained on it.
struct T2Row<'a> {
    rec: &'a CompressRecord,
    /// Trained on the compressed backbone: test metric over fault seeds x training seeds.
    trained: Summary,
}

fn table2_rows<'a>(inp: &'a Inputs) -> Vec<T2Row<'a>> {
    let method = inp.exp.compress.as_ref().map_or("", |c| c.method.as_str());
    inp.compress
        .iter()
        .map(|r| {
            let v: Vec<f64> = inp
                .train
                .iter()
                .filter(|t| {
                    t.backbone == r.backbone
                        && t.task == r.task
                        && t.method == method
                        && t.compressed
                            .as_ref()
                            .is_some_and(|c| c.plan == r.plan && c.faults == r.faults)
                })
                .map(|t| t.test_value)
                .collect();
            T2Row {
                rec: r,
                trained: Summary::of(&v),
            }
        })
        .collect()
}

fn table2(rows: &[T2Row]) -> Table {
    let mut t = Table::new(&[
        "backbone",
        "task",
        "plan",
        "faults",
        "metric",
        "mean",
        SD_HEADER,
        "seeds",
        "trained compressed",
        "sd (n-1) trained compressed",
        "runs trained compressed",
        "recovered",
        "backbone bytes",
        "bytes by role",
    ]);
    for row in rows {
        let r = row.rec;
        let tr = &row.trained;
        let (m, sd, n, rec) = if tr.n == 0 {
            ("-".into(), "-".into(), "0".into(), "-".into())
        } else {
            (
                f4(tr.mean),
                tr.sd_text(4),
                tr.n.to_string(),
                f4(tr.mean - r.summary.mean),
            )
        };
        t.push(vec![
            r.backbone.clone(),
            r.task.clone(),
            r.plan.clone(),
            r.faults.clone(),
            r.metric.clone(),
            f4(r.summary.mean),
            r.summary.sd_text(4),
            r.summary.n.to_string(),
            m,
            sd,
            n,
            rec,
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

/// Panels: metric vs bits (format), vs sparsity, vs bits per cell, per backbone; one series
/// per task and side (trained on fp32 / trained on the compressed backbone).
fn compression_panels(rows: &[T2Row]) -> Vec<Panel> {
    let mut panels: Vec<Panel> = Vec::new();
    let mut backbones: Vec<&str> = Vec::new();
    for r in rows {
        if !backbones.contains(&r.rec.backbone.as_str()) {
            backbones.push(&r.rec.backbone);
        }
    }
    for b in backbones {
        for (axis, title) in [
            ("bits", "metric vs weight bits"),
            ("sparsity", "metric vs sparsity"),
            ("bpc", "metric vs RRAM bits per cell"),
        ] {
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for row in rows.iter().filter(|r| r.rec.backbone == b) {
                let r = row.rec;
                if r.axis != axis {
                    continue;
                }
                series
                    .entry(format!("{} {} (fp32-trained)", r.task, r.series))
                    .or_default()
                    .push((r.x, r.summary.mean));
                if row.trained.n > 0 {
                    series
                        .entry(format!("{} {} (trained compressed)", r.task, r.series))
                        .or_default()
                        .push((r.x, row.trained.mean));
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
                title: format!("{b}: {title}"),
                x_label: axis.into(),
                y_label: "test metric".into(),
                series: s,
            });
        }
    }
    panels
}

/// Whether two means differ by less than the larger spread (or 0.01 with one seed): the
/// interpretation's notion of "matches".
fn within(a: &Summary, b: &Summary) -> bool {
    let tol = a.sd.unwrap_or(0.0).max(b.sd.unwrap_or(0.0)).max(0.01);
    (a.mean - b.mean).abs() <= tol
}

/// The interpretation: a table of the compared figures and sentences that quote them.
fn interpretation(inp: &Inputs, sel: &[Selected], t2: &[T2Row]) -> (Table, Vec<String>) {
    let mut t = Table::new(&["finding", "backbone", "on", "a", "b", "b - a", "verdict"]);
    let mut out = Vec::new();
    let exp = inp.exp;
    let adapters: Vec<&String> = exp
        .tasks
        .methods
        .iter()
        .filter(|m| *m != "full" && *m != "head")
        .collect();
    // 1. Adapters vs full fine-tuning, per backbone and task.
    if exp.tasks.methods.iter().any(|m| m == "full") {
        for b in &exp.backbones {
            for m in &adapters {
                let mut matched = Vec::new();
                let mut behind = Vec::new();
                for task in &exp.tasks.names {
                    let (Some(f), Some(a)) = (
                        main_cell(inp, sel, &b.name, task, "full"),
                        main_cell(inp, sel, &b.name, task, m),
                    ) else {
                        continue;
                    };
                    let (ft, at) = (f.test(), a.test());
                    let ok = within(&ft, &at) || at.mean > ft.mean;
                    let verdict = if ok { "matches or beats" } else { "behind" };
                    t.push(vec![
                        format!("{m} vs full"),
                        b.name.clone(),
                        task.clone(),
                        f4(ft.mean),
                        f4(at.mean),
                        f4(at.mean - ft.mean),
                        verdict.into(),
                    ]);
                    if ok {
                        matched.push(task.as_str());
                    } else {
                        behind.push(format!("{task} ({})", f4(at.mean - ft.mean)));
                    }
                }
                if matched.is_empty() && behind.is_empty() {
                    continue;
                }
                let mut s = format!(
                    "On {}, `{m}` matches or beats full fine-tuning (within a seed spread) on {}",
                    b.name,
                    if matched.is_empty() {
                        "no task".to_string()
                    } else {
                        matched.join(", ")
                    }
                );
                if !behind.is_empty() {
                    s.push_str(&format!(" and is behind on {}", behind.join(", ")));
                }
                s.push('.');
                out.push(s);
            }
        }
    }
    // 2. What the ALBERT costs in accuracy for its bytes: full fine-tuning averages.
    let bert = exp.backbones.iter().find(|b| !exp.is_albert(&b.name));
    let albert = exp.backbones.iter().find(|b| exp.is_albert(&b.name));
    if let (Some(bb), Some(ab)) = (bert, albert) {
        for m in &exp.tasks.methods {
            let (Some(x), Some(y)) = (
                task_average(inp, sel, &bb.name, m),
                task_average(inp, sel, &ab.name, m),
            ) else {
                continue;
            };
            t.push(vec![
                format!("{m}: ALBERT vs BERT (average)"),
                format!("{} vs {}", ab.name, bb.name),
                "average".into(),
                f4(x.test.mean),
                f4(y.test.mean),
                f4(y.test.mean - x.test.mean),
                if within(&x.test, &y.test) {
                    "same"
                } else if y.test.mean < x.test.mean {
                    "ALBERT lower"
                } else {
                    "ALBERT higher"
                }
                .into(),
            ]);
            if m == "full" || (m != "head" && !exp.tasks.methods.iter().any(|x| x == "full")) {
                out.push(format!(
                    "With `{m}`, {} scores {} on average against {} for {} (difference {}).",
                    ab.name,
                    f4(y.test.mean),
                    f4(x.test.mean),
                    bb.name,
                    f4(y.test.mean - x.test.mean)
                ));
            }
        }
        let (pb, pa) = (
            backbone_params(inp, &bb.name),
            backbone_params(inp, &ab.name),
        );
        t.push(vec![
            "backbone parameters".into(),
            format!("{} vs {}", ab.name, bb.name),
            "backbone".into(),
            pb.to_string(),
            pa.to_string(),
            (pa as i64 - pb as i64).to_string(),
            f4(pa as f64 / pb.max(1) as f64),
        ]);
        out.push(format!("The ALBERT backbone has {pa} parameters against {pb} ({} of the BERT's), which every task shares.", f4(pa as f64 / pb.max(1) as f64)));
    }
    // 3. Which compression adapters recover from (trained on the compressed backbone): one
    // verdict per cell in the table, then one tally per plan, so the sentence stays short
    // however many backbones and tasks the study has.
    let mut tally: Vec<(String, [usize; 3], f64)> = Vec::new();
    for row in t2.iter().filter(|r| r.trained.n > 0) {
        let (a, b) = (&row.rec.summary, &row.trained);
        let kind = if b.mean - a.mean > a.sd.unwrap_or(0.0).max(b.sd.unwrap_or(0.0)).max(0.01) {
            0
        } else if within(a, b) {
            1
        } else {
            2
        };
        let what = format!("{} / {}", row.rec.plan, row.rec.faults);
        t.push(vec![
            "trained compressed vs fp32-trained".into(),
            row.rec.backbone.clone(),
            format!("{} {}", row.rec.task, what),
            f4(a.mean),
            f4(b.mean),
            f4(b.mean - a.mean),
            ["recovers", "within spread", "worse"][kind].into(),
        ]);
        let i = match tally.iter().position(|(w, _, _)| *w == what) {
            Some(i) => i,
            None => {
                tally.push((what, [0; 3], 0.0));
                tally.len() - 1
            }
        };
        tally[i].1[kind] += 1;
        tally[i].2 += b.mean - a.mean;
    }
    if !tally.is_empty() {
        let parts: Vec<String> = tally
            .iter()
            .map(|(what, [up, same, down], sum)| {
                let n = up + same + down;
                format!(
                    "`{what}` recovers in {up} of {n}, is within the spread in {same} and worse in {down} (mean change {})",
                    f4(sum / n as f64)
                )
            })
            .collect();
        out.push(format!(
            "Training the adapters on the compressed backbone, against fp32-trained adapters evaluated on it, per plan over backbones and tasks: {}.",
            parts.join("; ")
        ));
    }
    (t, out)
}

/// The limits of the report's evidence, from its configuration.
fn does_not_show(inp: &Inputs) -> String {
    let e = inp.exp;
    let mut parts = vec![format!(
        "one split (seed {}) of the offline suite, not GLUE; {} training seed(s), so differences below the spread are not findings; training times (`train s`, `examples/s`) are wall times on the machine that ran each item, not a benchmark",
        e.split_seed,
        e.seeds.len()
    )];
    if e.scale != "full" {
        parts.push("a reduced scale (capped data and epochs): full-data accuracies will be higher, and full fine-tuning gains most from more data".into());
    }
    if let Some(c) = &e.compress {
        parts.push(format!(
            "compression at one adapter (`{}`) and one learning rate; the hardware figures are a model, not a measured chip",
            c.method
        ));
    }
    parts.join("; ") + "."
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
