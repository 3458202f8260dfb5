//! `adalbert run EXPERIMENT.toml`: the stages in order (train -> compress/faults -> simulate
//! -> report), every finished item cached under `<out>/cache`. Progress goes to stderr.

use std::path::{Path, PathBuf};

use adalbert_model::checkpoint::{sha256_file, weights_file};
use adalbert_model::EncoderConfig;

use crate::cache::Cache;
use crate::config::Experiment;
use crate::error::{Context, Result};
use crate::report;
use crate::stages::{compress, simulate, train};

/// Labels per task the hardware stage assumes (the classifier head is a negligible part of a
/// request's cost).
const SIMULATED_LABELS: u64 = 2;

/// How to run an experiment file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub experiment: PathBuf,
    /// Output folder (default: `runs/<name>`).
    pub out: Option<PathBuf>,
    /// Reuse finished items of an earlier run into the same folder.
    pub resume: bool,
}

/// What a run produced.
pub struct RunOutcome {
    /// The headline rows of Tables 1-3 (what `make demo` prints).
    pub headlines: Vec<String>,
    /// The report's Markdown file.
    pub report: PathBuf,
}

/// Validates an experiment file; returns how many training items it has.
pub fn check(path: &Path) -> Result<usize> {
    let (exp, _) = Experiment::load(path)?;
    Ok(train::items(&exp).len())
}

/// Runs every stage of an experiment file and writes its report.
pub fn run(opts: &RunOptions) -> Result<RunOutcome> {
    let (exp, text) = Experiment::load(&opts.experiment)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&exp.name));
    let cache = Cache::new(out.join("cache"), opts.resume)?;
    let sha = sha256_file(&weights_file(&exp.model)?)?;
    let config = EncoderConfig::from_path(&exp.model)?;
    let backbone_params = config.shape.param_counts().total();
    let items = train::items(&exp);
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
        train_records.push(train::run_item(&exp, item, &sha, &out, &cache)?);
    }
    eprintln!("[2/4] compress and faults");
    let compress_records = compress::run(&exp, &train_records, &out, &cache)?;
    eprintln!("[3/4] simulate");
    let (sim, dse) = match &exp.simulate {
        Some(s) => simulate::run(s, SIMULATED_LABELS)?,
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
    adalbert_core::files::remove_stale_temporaries(&dir);
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
    .context(|| format!("writing the report into {}", dir.display()))?;
    Ok(RunOutcome {
        headlines: heads.lines,
        report: dir.join("report.md"),
    })
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
