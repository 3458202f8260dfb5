//! `adalbert run EXPERIMENT.toml`: one declarative file drives training, evaluation,
//! compression, fault injection and hardware simulation, and writes one report
//! (`adalbert_experiment`). `--shard I/N` computes one shard of the items (a Slurm array
//! task, a Kubernetes indexed Job pod), `--merge` writes the report once every shard is done,
//! and `--list-items` shows the plan.

use std::path::PathBuf;

use adalbert_experiment::plan::cpu_text;
use adalbert_experiment::{Listing, Mode, RunOptions, RunOutcome, Shard};
use anyhow::Context as _;

#[derive(clap::Args)]
pub struct Args {
    /// The experiment file (see configs/*.toml).
    pub experiment: PathBuf,
    /// Output folder (default: runs/<name>). Shards of one run share it (a shared file
    /// system on a cluster): results go to DIR/cache, the report to DIR/report.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reuse finished items of an earlier run into the same folder.
    #[arg(long)]
    pub resume: bool,
    /// Only validate the experiment file and list what would run.
    #[arg(long, conflicts_with_all = ["shard", "merge", "list_items"])]
    pub check: bool,
    /// Compute only shard I of N of the items (I counts from 1), reusing finished ones;
    /// then `--merge` writes the report.
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    pub shard: Option<String>,
    /// Compute nothing: write the report when every item is in DIR/cache, else list the
    /// missing items and their shards (exit code 1).
    #[arg(long, conflicts_with_all = ["resume", "list_items"])]
    pub merge: bool,
    /// Print the plan (every item, or shard I/N's with --shard): stage, id, estimated CPU
    /// time, and whether DIR/cache holds it. Computes nothing.
    #[arg(long)]
    pub list_items: bool,
    /// Print one JSON document on stdout: the check's result (--check), the plan
    /// (--list-items), or what the run wrote (headlines and report, or the shard's counts).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.check {
        let items = adalbert_experiment::check(&args.experiment)?;
        if args.json {
            let v = serde_json::json!({"experiment": args.experiment, "valid": true,
                                       "training_items": items});
            outln!("{v}");
        } else {
            outln!(
                "{} is valid: {items} training item(s)",
                args.experiment.display()
            );
        }
        return Ok(());
    }
    // Parsed here rather than by clap, so a bad value is an error naming the flag with exit
    // code 1, like every other refused input.
    let shard: Option<Shard> = args.shard.as_deref().map(str::parse).transpose()?;
    if args.list_items {
        let listing =
            adalbert_experiment::list_items(&args.experiment, args.out.as_deref(), shard)?;
        if args.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&listing).context("encoding the listing")?
            );
        } else {
            print_listing(&listing);
        }
        return Ok(());
    }
    let mode = match (shard, args.merge) {
        (Some(s), _) => Mode::Shard(s),
        (None, true) => Mode::Merge,
        (None, false) => Mode::All,
    };
    let experiment = args.experiment.clone();
    let outcome = adalbert_experiment::run(&RunOptions {
        experiment: args.experiment,
        out: args.out.clone(),
        resume: args.resume,
        mode,
    })?;
    if args.json {
        let v = match &outcome {
            RunOutcome::Report { headlines, report } => {
                serde_json::json!({"headlines": headlines, "report": report})
            }
            RunOutcome::Shard {
                shard,
                items,
                computed,
                cache,
                timings,
            } => serde_json::json!({
                "shard": shard.to_string(), "items": items, "computed": computed,
                "cached": items - computed, "cache": cache, "timings": timings,
            }),
        };
        outln!("{v}");
        return Ok(());
    }
    match outcome {
        RunOutcome::Report { headlines, report } => {
            for h in headlines {
                outln!("{h}");
            }
            outln!("report written to {}", report.display());
        }
        RunOutcome::Shard {
            shard,
            items,
            computed,
            cache,
            timings,
        } => {
            outln!(
                "shard {shard} done: {items} item(s) ({computed} computed, {} already cached) in {}; timings in {}",
                items - computed,
                cache.display(),
                timings.display()
            );
            let out = args
                .out
                .map_or_else(String::new, |o| format!(" --out {}", o.display()));
            outln!(
                "when every shard is done: adalbert run {}{out} --merge",
                experiment.display()
            );
        }
    }
    Ok(())
}

fn print_listing(l: &Listing) {
    outln!(
        "experiment `{}` (plan {}): {} item(s), estimated {} in all; results in {}",
        l.experiment,
        l.plan,
        l.total_items,
        cpu_text(l.total_estimated_cpu_s),
        l.out.join("cache").display()
    );
    if let Some(s) = &l.shard {
        let costs: Vec<String> = l
            .shard_estimated_cpu_s
            .iter()
            .map(|&c| cpu_text(c))
            .collect();
        outln!(
            "shard {s}: {} item(s); estimated per shard: {}",
            l.items.len(),
            costs.join(" / ")
        );
    }
    outln!(
        "{:<7} {:<9} {:<16} {:>10} {:<7} item",
        "shard",
        "stage",
        "id",
        "est. CPU s",
        "status"
    );
    for i in &l.items {
        outln!(
            "{:<7} {:<9} {:<16} {:>10.1} {:<7} {}",
            if i.shards.is_empty() {
                "-".into()
            } else {
                i.shards
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            i.stage,
            i.id,
            i.estimated_cpu_s,
            if i.done { "done" } else { "missing" },
            i.label
        );
    }
    let done = l.items.iter().filter(|i| i.done).count();
    outln!("{done} of {} listed item(s) done", l.items.len());
}
