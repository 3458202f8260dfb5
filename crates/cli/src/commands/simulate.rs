//! `adalbert simulate`: map a model onto the edge accelerator and report energy, latency, area
//! and on-chip bytes for one policy, every policy side by side (`--compare`), or write the
//! committed hardware report (`--report DIR`).

use std::path::PathBuf;

use adalbert_hw::compare::{compare, compare_table, report_table};
use adalbert_hw::spec::{parse_adapter, parse_schedule};
use adalbert_hw::{
    report, run_schedule, Accelerator, Capacity, Defaults, MemoryTable, ModelShape, Platform,
    Policy, Scenario, Sharing, StoragePlan, TaskStore,
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
    #[arg(long)]
    requests_per_switch: Option<f64>,
    /// Where adapter policies keep inactive tasks: on-chip or dram.
    #[arg(long, default_value = "on-chip")]
    task_store: String,
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
    /// Write hardware.md, hardware.csv and hardware.svg into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
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
    let tech = match &args.memory {
        Some(p) => MemoryTable::from_path(p)?,
        None => MemoryTable::builtin()?,
    };
    Ok(Platform::new(arch, tech)?)
}

pub fn run(args: Args) -> Result<()> {
    let defaults = Defaults::builtin()?;
    let platform = platform(&args)?;
    if let Some(dir) = &args.report {
        let heads = report::write_hardware_report(dir, &platform, &defaults)
            .with_context(|| format!("writing the hardware report into {}", dir.display()))?;
        for h in heads {
            println!(
                "{} ({}), N={}: adapter-hetero vs albert-dram E {:.3} L {:.3} A {:.3}; vs albert-sram E {:.3} L {:.3} A {:.3}",
                h.model, h.sharing, h.n_tasks, h.vs_dram[0], h.vs_dram[1], h.vs_dram[2], h.vs_sram[0], h.vs_sram[1], h.vs_sram[2]
            );
        }
        println!("wrote {}", dir.join("hardware.{md,csv,svg}").display());
        return Ok(());
    }
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
    let rps = args
        .requests_per_switch
        .unwrap_or(defaults.requests_per_switch.value);
    let store: TaskStore = args.task_store.parse()?;
    anyhow::ensure!(
        seq > 0 && labels > 0,
        "--seq-len and --labels must be at least 1"
    );
    anyhow::ensure!(args.tasks > 0, "--tasks must be at least 1");
    anyhow::ensure!(rps > 0.0, "--requests-per-switch must be > 0");
    let model = ModelShape::resolve(&args.model)?;
    model
        .check_seq_len(seq)
        .with_context(|| format!("--seq-len for model `{}`", args.model))?;
    let scenario = Scenario::new(platform, model, adapter, sharing, plan, seq, labels);
    if args.compare {
        let max = if args.tasks > 1 { args.tasks } else { 8 };
        let rows = compare(&scenario, max, store, rps);
        if args.json {
            println!("{}", serde_json::to_string(&rows)?);
        } else {
            println!(
                "{} | adapter {} ({sharing}) | plan {plan} | seq {seq}\n",
                args.model,
                adapter_name(adapter)
            );
            print!("{}", compare_table(&rows));
        }
        return Ok(());
    }
    single(&args, &scenario, store, rps)
}

fn adapter_name(adapter: Option<adalbert_hw::AdapterSpec>) -> String {
    adapter.map_or_else(|| "none".into(), |a| a.to_string())
}

fn single(args: &Args, scenario: &Scenario, store: TaskStore, rps: f64) -> Result<()> {
    let policy: Policy = args.policy.parse()?;
    let report = scenario.run(policy, args.tasks, store)?;
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
            "requests_per_switch": rps,
            "energy_per_request_pj": report.energy_per_request(rps),
            "latency_per_request_ns": report.latency_per_request(rps),
            "report": report,
            "schedule": schedule,
        });
        if args.tensors {
            v["tensors"] = serde_json::to_value(&workload.tensors)?;
            v["ops"] = serde_json::to_value(&workload.ops)?;
        }
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!(
        "{} | adapter {} ({}) | plan {} | seq {}\n",
        args.model,
        adapter_name(workload.spec.adapter),
        workload.spec.sharing,
        workload.spec.plan,
        workload.spec.seq_len
    );
    print!("{}", report_table(&report, rps));
    if let Some(s) = schedule {
        println!(
            "schedule: {} requests, {} switches, {:.3} uJ, {:.4} ms",
            s.requests,
            s.switches,
            s.energy_pj / 1e6,
            s.latency_ns / 1e6
        );
    }
    if args.tensors {
        println!(
            "\n{:<60} {:>12} {:>12} {:>10} {:>10}",
            "tensor", "numel", "bits", "role", "reads/inf"
        );
        for t in &workload.tensors {
            println!(
                "{:<60} {:>12} {:>12} {:>10?} {:>10.4}",
                t.name,
                t.numel,
                t.bits(),
                t.role,
                t.reads_per_inference
            );
        }
        println!(
            "\n{:<40} {:>12} {:>8} {:>8} {:>8} {:>8}",
            "op", "kind", "count", "m", "k", "n"
        );
        for o in &workload.ops {
            println!(
                "{:<40} {:>12?} {:>8} {:>8} {:>8} {:>8}",
                o.name, o.kind, o.count, o.m, o.k, o.n
            );
        }
    }
    Ok(())
}
