//! `adalbert dse --space FILE`: sweep a design space in parallel and write every point (CSV),
//! the Pareto front over energy, latency and area (CSV) and a scatter of both (SVG).

use std::path::PathBuf;

use adalbert_hw::dse::{to_csv, Space};
use adalbert_hw::plot::pareto_svg;
use adalbert_hw::{Accelerator, MemoryTable};
use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Design-space TOML (see configs/hw/dse-example.toml).
    #[arg(long)]
    space: PathBuf,
    /// Base accelerator TOML (default: the built-in EdgeBERT-like architecture).
    #[arg(long)]
    arch: Option<PathBuf>,
    /// Memory-technology TOML (default: the built-in NVMExplorer table).
    #[arg(long)]
    memory: Option<PathBuf>,
    /// Output directory for dse.csv, dse-pareto.csv and dse-pareto.svg.
    #[arg(long, default_value = "results/dse")]
    out: PathBuf,
    /// Print the summary (point counts, seconds, files written) as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let arch = match &args.arch {
        Some(p) => Accelerator::from_path(p)?,
        None => Accelerator::builtin()?,
    };
    let tech = match &args.memory {
        Some(p) => MemoryTable::from_path(p)?,
        None => MemoryTable::builtin()?,
    };
    let space = Space::from_path(&args.space, &arch, &tech)?;
    let start = std::time::Instant::now();
    let points = space.run();
    let secs = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let model = &space.file.model;
    let all = args.out.join("dse.csv");
    adalbert_core::files::write_atomic(&all, to_csv(model, &points).as_bytes())
        .with_context(|| format!("writing {}", all.display()))?;
    let front: Vec<_> = points.iter().copied().filter(|p| p.pareto).collect();
    let pareto = args.out.join("dse-pareto.csv");
    adalbert_core::files::write_atomic(&pareto, to_csv(model, &front).as_bytes())
        .with_context(|| format!("writing {}", pareto.display()))?;
    let scatter: Vec<_> = points
        .iter()
        .filter(|p| p.feasible)
        .map(|p| (p.energy_pj / 1e6, p.latency_ns / 1e6, p.area_mm2, p.pareto))
        .collect();
    let svg = args.out.join("dse-pareto.svg");
    pareto_svg(
        &svg,
        &scatter,
        &format!("{model}: design points (Pareto front in red)"),
    )?;
    let feasible = scatter.len();
    if args.json {
        let v = serde_json::json!({
            "model": model, "points": points.len(), "feasible": feasible,
            "pareto": front.len(), "seconds": secs,
            "files": {"all": all, "pareto": pareto, "svg": svg},
        });
        outln!("{v}");
        return Ok(());
    }
    outln!(
        "{} points ({feasible} feasible, {} on the Pareto front) in {secs:.3} s ({:.0} points/s); wrote {}, {}, {}",
        points.len(),
        front.len(),
        points.len() as f64 / secs.max(1e-9),
        all.display(),
        pareto.display(),
        svg.display()
    );
    Ok(())
}
