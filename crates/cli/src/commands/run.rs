//! `adalbert run EXPERIMENT.toml`: one declarative file drives training, evaluation,
//! compression, fault injection and hardware simulation, and writes one report
//! (`adalbert_experiment`).

use std::path::PathBuf;

use adalbert_experiment::RunOptions;

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
    if args.check {
        let items = adalbert_experiment::check(&args.experiment)?;
        println!(
            "{} is valid: {items} training item(s)",
            args.experiment.display()
        );
        return Ok(());
    }
    let outcome = adalbert_experiment::run(&RunOptions {
        experiment: args.experiment,
        out: args.out,
        resume: args.resume,
    })?;
    for h in outcome.headlines {
        println!("{h}");
    }
    println!("report written to {}", outcome.report.display());
    Ok(())
}
