//! `adalbert simulate`: map a model onto the edge accelerator and report energy, latency, area
//! and on-chip bytes for one policy, every policy side by side (`--compare`), the sensitivity of
//! the conclusions to their assumptions (`--sensitivity`), or write the committed hardware
//! report (`--report DIR`, with `--accuracy FILE.csv` joined to it).

use std::path::PathBuf;

use adalbert_hw::accuracy::{read_accuracy, Fill};
use adalbert_hw::compare::{compare_at, compare_table, report_table};
use adalbert_hw::sensitivity::Space;
use adalbert_hw::spec::{parse_adapter, parse_schedule};
use adalbert_hw::{
    report, run_schedule, Accelerator, Capacity, Defaults, MemoryTable, ModelShape, Platform,
    Policy, Scenario, Sharing, StoragePlan, TaskStore, Usage,
};
use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Accelerator TOML (default: the built-in EdgeBERT-like architecture).
    #[arg(long)]
    arch: Option<PathBuf>,
    /// Memory-technology TOML (default: the built-in NVMExplorer table).
    #[arg(long)]
    memory: Option<PathBuf>,
    /// Built-in model (albert-base, bert-base, minilm), a directory with config.json, or a config file.
    #[arg(long, default_value = "albert-base")]
    model: String,
    /// Number of tasks served.
    #[arg(long, default_value_t = 1)]
    tasks: u64,
    /// Mapping policy: albert-dram, albert-sram, adapter-hetero, adapter-sram.
    #[arg(long, default_value = "adapter-hetero")]
    policy: String,
    /// Adapter, as `train` takes it: houlsby:M, pfeiffer:M, parallel:M, lora:r=R[,alpha=A]
    /// (optionally `,act=...`), or none (default from the hardware data's defaults.toml).
    #[arg(long)]
    adapter: Option<String>,
    /// Adapter sharing: per-application or shared.
    #[arg(long)]
    sharing: Option<String>,
    /// Compression plan of the backbone, as `compress` takes it, e.g. int8+prune=0.5+bitmask
    /// (default from the hardware data's defaults.toml).
    #[arg(long)]
    plan: Option<String>,
    /// Bits per RRAM cell of the backbone's values, 1..=3 (the mask stays single-level).
    #[arg(long)]
    bits_per_cell: Option<u32>,
    /// Sequence length.
    #[arg(long)]
    seq_len: Option<u64>,
    /// Classifier outputs per task.
    #[arg(long)]
    labels: Option<u64>,
    /// Requests served between two task switches (round robin).
    #[arg(long, allow_negative_numbers = true)]
    requests_per_switch: Option<f64>,
    /// Requests per second (> 0): energy per request then includes the idle time until the
    /// next request (default: back to back, no idle time).
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Where adapter policies keep the task-specific tensors of the tasks not running: sram
    /// (every task resident; alias on-chip), rram (an RRAM task array) or dram.
    #[arg(long, default_value = "sram")]
    task_store: String,
    /// Do not power-gate idle RRAM arrays (the built-in accelerator gates them).
    #[arg(long)]
    no_power_gating: bool,
    /// Put idle SRAM and buffers in retention mode (leakage x the retention factor).
    #[arg(long)]
    sram_retention: bool,
    /// Override the SRAM capacity: "auto" or decimal MB.
    #[arg(long)]
    sram_mb: Option<String>,
    /// Override the RRAM capacity: "auto" or decimal MB of cells.
    #[arg(long)]
    rram_mb: Option<String>,
    /// Also cost a schedule of task:requests pairs, e.g. 0:10,1:5,0:3.
    #[arg(long)]
    schedule: Option<String>,
    /// List every tensor and operation of the workload.
    #[arg(long)]
    tensors: bool,
    /// Print one JSON object and nothing else on stdout.
    #[arg(long)]
    json: bool,
    /// Print every policy side by side for N = 1..tasks (1..8 when --tasks is 1).
    #[arg(long)]
    compare: bool,
    /// Write hardware.md, .csv, .svg, hardware_sensitivity.* (and hardware_accuracy.* with
    /// --accuracy) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Vary every uncertain assumption one at a time and jointly (seeded) and write
    /// sensitivity.{md,csv,svg} into --out.
    #[arg(long)]
    sensitivity: bool,
    /// Sensitivity space TOML (default: the built-in crates/hw/data/sensitivity.toml).
    #[arg(long)]
    space: Option<PathBuf>,
    /// Output directory of --sensitivity.
    #[arg(long, default_value = "runs/sensitivity")]
    out: PathBuf,
    /// Measured metrics per compression plan (CSV: plan, task, metric, mean or value, and
    /// optional backbone, adapter, faults, seed, sd, n, recover_epochs; see the adalbert-hw
    /// crate's `accuracy` module), joined to simulated energy and area.
    #[arg(long)]
    accuracy: Option<PathBuf>,
    /// Backbone of accuracy rows without a `backbone` column (built-in name or directory).
    #[arg(long)]
    accuracy_backbone: Option<String>,
    /// Adapter of accuracy rows without an `adapter` column (default: the simulated adapter).
    #[arg(long)]
    accuracy_adapter: Option<String>,
    /// One sentence saying what the accuracy CSV is (quoted in the report).
    #[arg(long)]
    accuracy_note: Option<String>,
}

fn platform(args: &Args) -> Result<Platform> {
    let mut arch = match &args.arch {
        Some(p) => Accelerator::from_path(p)?,
        None => Accelerator::builtin()?,
    };
    if let Some(s) = &args.sram_mb {
        arch.sram_capacity = Capacity::parse(s, "--sram-mb")?;
    }
    if let Some(r) = &args.rram_mb {
        arch.rram_capacity = Capacity::parse(r, "--rram-mb")?;
    }
    if args.no_power_gating {
        arch.rram_power_gating = false;
    }
    if args.sram_retention {
        arch.sram_retention = true;
    }
    let tech = match &args.memory {
        Some(p) => MemoryTable::from_path(p)?,
        None => MemoryTable::builtin()?,
    };
    Ok(Platform::new(arch, tech)?)
}

/// The command line that regenerates a report (quoted in it).
fn command_line(args: &Args, dir: &std::path::Path) -> String {
    let mut c = format!("adalbert simulate --report {}", dir.display());
    if let Some(a) = &args.accuracy {
        c.push_str(&format!(" --accuracy {}", a.display()));
    }
    if let Some(b) = &args.accuracy_backbone {
        c.push_str(&format!(" --accuracy-backbone {b}"));
    }
    if let Some(a) = &args.accuracy_adapter {
        c.push_str(&format!(" --accuracy-adapter {a}"));
    }
    if args.accuracy_note.is_some() {
        c.push_str(" --accuracy-note ...");
    }
    if let Some(s) = &args.space {
        c.push_str(&format!(" --space {}", s.display()));
    }
    c
}

fn space(args: &Args) -> Result<Space> {
    Ok(match &args.space {
        Some(p) => Space::from_path(p)?,
        None => Space::builtin()?,
    })
}

pub fn run(args: Args) -> Result<()> {
    let defaults = Defaults::builtin()?;
    let platform = platform(&args)?;
    if let Some(dir) = &args.report {
        let accuracy = match &args.accuracy {
            Some(path) => {
                let fill = Fill {
                    backbone: args.accuracy_backbone.clone(),
                    adapter: args.accuracy_adapter.clone(),
                    mask_in_slc: platform.arch.mask_in_slc,
                };
                let note = args.accuracy_note.clone().unwrap_or_else(|| {
                    "measured metrics per compression plan (no description given).".into()
                });
                Some((read_accuracy(path, &fill)?, note))
            }
            None => None,
        };
        let inputs = report::ReportInputs {
            command: command_line(&args, dir),
            space: space(&args)?,
            accuracy,
        };
        let heads = report::write_hardware_report(dir, &platform, &defaults, &inputs)
            .with_context(|| format!("writing the hardware report into {}", dir.display()))?;
        for h in heads.iter().filter(|h| h.n_tasks == 1 || h.n_tasks == 8) {
            outln!(
                "{} ({}, store {}), N={}: adapter-hetero vs albert-dram E {:.3} L {:.3} A {:.3}; vs albert-sram E {:.3} L {:.3} A {:.3}",
                h.model, h.sharing, h.store, h.n_tasks, h.vs_dram[0], h.vs_dram[1], h.vs_dram[2], h.vs_sram[0], h.vs_sram[1], h.vs_sram[2]
            );
        }
        outln!(
            "wrote {}",
            dir.join("hardware{,_sensitivity,_accuracy}.*").display()
        );
        return Ok(());
    }
    if args.sensitivity {
        let command = format!(
            "adalbert simulate --sensitivity{}",
            args.space
                .as_ref()
                .map_or(String::new(), |p| format!(" --space {}", p.display()))
        );
        let study =
            report::write_sensitivity(&args.out, &platform, &defaults, &space(&args)?, &command)
                .with_context(|| {
                    format!("writing the sensitivity study into {}", args.out.display())
                })?;
        outln!(
            "{} settings (defaults, {} knobs at both ends, {} joint samples, seed {}); {} one-at-a-time flips; wrote {}",
            1 + 2 * study.one_at_a_time.len() + study.joint.outcomes.len(),
            study.one_at_a_time.len(),
            study.joint.outcomes.len(),
            study.joint.seed,
            study.flips.len(),
            args.out.join("sensitivity.{md,csv,svg}").display()
        );
        return Ok(());
    }
    anyhow::ensure!(
        args.accuracy.is_none(),
        "--accuracy is joined into the report: use it with --report DIR"
    );
    let adapter = parse_adapter(args.adapter.as_deref().unwrap_or(&defaults.adapter))?;
    let sharing: Sharing = args
        .sharing
        .as_deref()
        .unwrap_or(&defaults.sharing)
        .parse()?;
    let plan = StoragePlan::parse(
        args.plan.as_deref().unwrap_or(&defaults.plan),
        args.bits_per_cell
            .unwrap_or(defaults.bits_per_cell.value as u32),
    )?;
    let seq = args.seq_len.unwrap_or(defaults.seq_len.value as u64);
    let labels = args.labels.unwrap_or(defaults.num_labels.value as u64);
    let base_usage = defaults.usage()?;
    let usage = Usage::new(
        args.requests_per_switch
            .unwrap_or(base_usage.requests_per_switch),
        args.rate.or(base_usage.rate_per_s),
    )?;
    let store: TaskStore = args.task_store.parse()?;
    anyhow::ensure!(args.tasks > 0, "--tasks must be at least 1");
    let model = ModelShape::resolve(&args.model)?;
    let scenario = Scenario::new(platform, model, adapter, sharing, plan, seq, labels)
        .with_context(|| {
            format!(
                "--seq-len {seq} / --labels {labels} for model `{}`",
                args.model
            )
        })?;
    if args.compare {
        let max = if args.tasks > 1 { args.tasks } else { 8 };
        let ns: Vec<u64> = (1..=max).collect();
        let rows = compare_at(&scenario, &ns, store, &usage);
        if args.json {
            outln!("{}", serde_json::to_string(&rows)?);
        } else {
            outln!(
                "{} | adapter {} ({sharing}) | plan {plan} | seq {seq} | task store {store} | {}\n",
                args.model,
                adapter_name(adapter),
                usage.rate_label()
            );
            out!("{}", compare_table(&rows));
            if rows.iter().any(|r| r.request.is_some_and(|q| q.saturated)) {
                outln!(
                    "\nsome policies cannot serve {}: they run back to back",
                    usage.rate_label()
                );
            }
        }
        return Ok(());
    }
    single(&args, &scenario, store, &usage)
}

fn adapter_name(adapter: Option<adalbert_hw::AdapterSpec>) -> String {
    adapter.map_or_else(|| "none".into(), |a| a.to_string())
}

fn single(args: &Args, scenario: &Scenario, store: TaskStore, usage: &Usage) -> Result<()> {
    let policy: Policy = args.policy.parse()?;
    let report = scenario.run(policy, args.tasks, store)?;
    let request = report.request(usage);
    anyhow::ensure!(
        !request.saturated,
        "--rate {}: requests arrive faster than {policy} serves them ({:.3} requests/s at most)",
        usage.rate_per_s.unwrap_or_default(),
        1e9 / request.latency_ns
    );
    let schedule = match &args.schedule {
        Some(s) => Some(run_schedule(&report, &parse_schedule(s, args.tasks)?)),
        None => None,
    };
    let workload = scenario.workload(policy);
    if args.json {
        let mut v = serde_json::json!({
            "model": workload.spec.model,
            "adapter": adapter_name(workload.spec.adapter),
            "sharing": workload.spec.sharing,
            "plan": workload.spec.plan.to_string(),
            "seq_len": workload.spec.seq_len,
            "usage": usage,
            "task_store": store,
            "request": request,
            "report": report,
            "schedule": schedule,
        });
        if args.tensors {
            v["tensors"] = serde_json::to_value(&workload.tensors)?;
            v["ops"] = serde_json::to_value(&workload.ops)?;
        }
        outln!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    outln!(
        "{} | adapter {} ({}) | plan {} | seq {}\n",
        args.model,
        adapter_name(workload.spec.adapter),
        workload.spec.sharing,
        workload.spec.plan,
        workload.spec.seq_len
    );
    out!("{}", report_table(&report, usage));
    if let Some(s) = schedule {
        outln!(
            "schedule: {} requests, {} switches, {:.3} uJ, {:.4} ms",
            s.requests,
            s.switches,
            s.energy_pj / 1e6,
            s.latency_ns / 1e6
        );
    }
    if args.tensors {
        outln!(
            "\n{:<60} {:>12} {:>12} {:>10} {:>10}",
            "tensor",
            "numel",
            "bits",
            "role",
            "reads/inf"
        );
        for t in &workload.tensors {
            outln!(
                "{:<60} {:>12} {:>12} {:>10?} {:>10.4}",
                t.name,
                t.numel,
                t.bits(),
                t.role,
                t.reads_per_inference
            );
        }
        outln!(
            "\n{:<40} {:>12} {:>8} {:>8} {:>8} {:>8}",
            "op",
            "kind",
            "count",
            "m",
            "k",
            "n"
        );
        for o in &workload.ops {
            outln!(
                "{:<40} {:>12?} {:>8} {:>8} {:>8} {:>8}",
                o.name,
                o.kind,
                o.count,
                o.m,
                o.k,
                o.n
            );
        }
    }
    Ok(())
}
