//! `adalbert run EXPERIMENT.toml`: one declarative file drives training, evaluation,
//! compression, fault injection and hardware simulation, and writes one report.
//!
//! Stages run in order (train -> compress/faults -> simulate -> report). Every finished item
//! is cached under `<out>/cache` by a hash of its inputs and written atomically, so
//! `--resume` skips what is done and an interrupted run loses no finished item.

pub mod cache;
pub mod compress_stage;
pub mod config;
pub mod report;
pub mod simulate_stage;
pub mod table;
pub mod train_stage;

use std::path::PathBuf;

use adalbert_model::checkpoint::{sha256_file, weights_file};
use adalbert_model::EncoderConfig;
use anyhow::Context;

use cache::Cache;
use config::Experiment;

#[derive(clap::Args)]
pub struct Args {
    /// The experiment file (see configs/*.toml).
    pub experiment: PathBuf,
    /// Output folder (default: runs/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reuse finished items of an earlier run into the same folder.
    #[arg(long)]
    pub resume: bool,
    /// Only validate the experiment file and list what would run.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (exp, text) = Experiment::load(&args.experiment)?;
    if args.check {
        println!(
            "{} is valid: {} training item(s)",
            args.experiment.display(),
            train_stage::items(&exp).len()
        );
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&exp.name));
    let cache = Cache::new(out.join("cache"), args.resume)?;
    let weights = weights_file(&exp.model)?;
    let sha = sha256_file(&weights)?;
    let config = EncoderConfig::from_path(&exp.model)?;
    let backbone_params = config.shape.param_counts().total();
    let items = train_stage::items(&exp);
    eprintln!("[1/4] train: {} item(s)", items.len());
    let mut train_records = Vec::new();
    for (i, item) in items.iter().enumerate() {
        eprintln!(
            "  ({}/{}) {} / {} / seed {}",
            i + 1,
            items.len(),
            item.task,
            item.method,
            item.seed
        );
        train_records.push(train_stage::run_item(
            &exp,
            item,
            &sha,
            &out,
            &cache,
            args.resume,
        )?);
    }
    eprintln!("[2/4] compress and faults");
    let compress_records = compress_stage::run(&exp, &train_records, &sha, &cache)?;
    eprintln!("[3/4] simulate");
    let (sim, dse) = match &exp.simulate {
        Some(s) => simulate_stage::run(s, 2)?,
        None => (vec![], None),
    };
    eprintln!("[4/4] report");
    let prov = report::Provenance {
        config_text: text,
        backbone_sha256: sha,
        backbone_params,
        git_revision: git_revision(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let dir = out.join("report");
    let heads = report::write(
        &dir,
        &report::Inputs {
            exp: &exp,
            prov: &prov,
            train: &train_records,
            compress: &compress_records,
            sim: &sim,
            dse: dse.as_deref(),
        },
    )
    .with_context(|| format!("writing the report into {}", dir.display()))?;
    for h in heads.lines {
        println!("{h}");
    }
    println!("report written to {}", dir.join("report.md").display());
    Ok(())
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
