//! The `adalbert` command-line tool: one binary over the workspace crates.

use clap::{Parser, Subcommand};

mod commands;

/// Energy-efficient multi-task NLP at the edge: one frozen ALBERT/BERT backbone, per-task adapters.
#[derive(Parser)]
#[command(name = "adalbert", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each subcommand lives in `commands/<name>.rs` with an `Args` struct and `run(args)`.
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
