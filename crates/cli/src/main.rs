//! The `adalbert` command-line tool: one binary over the workspace crates.

#![forbid(unsafe_code)]

use adalbert_model::exec::Workload;
use clap::{CommandFactory, Parser, Subcommand};

// Before `commands`, so its `outln!`/`out!` macros are in scope there.
#[macro_use]
mod out;
mod commands;

/// Energy-efficient multi-task NLP at the edge: one frozen ALBERT/BERT backbone, per-task adapters.
#[derive(Parser)]
#[command(name = "adalbert", version, about)]
struct Cli {
    /// Log lines on stderr as `text` or `json` (one object per line). Which events: the
    /// `RUST_LOG` variable (e.g. `RUST_LOG=debug`, `RUST_LOG=adalbert_serve=trace`);
    /// default `info`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ADALBERT_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    // Each subcommand lives in `commands/<name>.rs` with an `Args` struct and `run(args)`.
    /// Print a model's architecture, parameter counts and storage sizes.
    Info(commands::info::Args),
    /// Print one embedding vector per text.
    Embed(commands::embed::Args),
    /// Distil a BERT teacher into a true ALBERT (factorized embedding, shared layers) and
    /// write it as a Hugging Face ALBERT directory.
    Distill(Box<commands::distill::Args>),
    /// Run a whole experiment file: train, compress, simulate, report.
    Run(commands::run::Args),
    /// Train one task: adapters (--adapter SPEC), or the --mode full / head baselines.
    Train(commands::train::Args),
    /// Evaluate a task bundle with the official metrics; write predictions or GLUE files.
    Eval(commands::eval::Args),
    /// Write a task bundle as a PEFT LoRA adapter or an AdapterHub adapter + head directory.
    Export(commands::export::Args),
    /// Make a task bundle from a PEFT LoRA adapter or an AdapterHub adapter + head directory.
    Import(commands::import::Args),
    /// Predict labels for texts with one or more task bundles on one backbone.
    Predict(commands::predict::Args),
    /// Serve many task bundles on one backbone over HTTP (dynamic mixed-task batching).
    Serve(commands::serve::Args),
    /// Time the encoder forward pass on fixed token ids (used by `make bench`).
    Bench(commands::bench::Args),
    /// Compress the shared backbone (formats, pruning, bit masks, eNVM faults) and measure
    /// accuracy and bytes per task bundle; --sweep FILE.toml runs a whole grid.
    Compress(commands::compress::Args),
    /// Simulate energy, latency and area on the SRAM/RRAM edge accelerator (or --compare, --report DIR).
    Simulate(Box<commands::simulate::Args>),
    /// Sweep a hardware design space and write its CSV, Pareto front and SVG.
    Dse(commands::dse::Args),
    /// Print a shell completion script, e.g. `adalbert completions bash >
    /// ~/.local/share/bash-completion/completions/adalbert`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Before any thread starts (see `configure_process`).
    adalbert_model::exec::configure_process(workload(&cli.command));
    install_logging(cli.log_format);
    match cli.command {
        Command::Info(a) => commands::info::run(a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Distill(a) => commands::distill::run(*a),
        Command::Run(a) => commands::run::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Import(a) => commands::import::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Compress(a) => commands::compress::run(a),
        Command::Simulate(a) => commands::simulate::run(*a),
        Command::Dse(a) => commands::dse::run(a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "adalbert", &mut script);
            out::write_bytes(&script);
            Ok(())
        }
    }?;
    out::flush();
    Ok(())
}

/// Events of every crate go to stderr, filtered by `RUST_LOG` (default `info`), so stdout
/// stays for results (`--json` output, tables) and can be piped.
fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is already installed, which cannot happen here.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// What a command will do, for the process policy.
fn workload(command: &Command) -> Workload {
    match command {
        Command::Train(_) | Command::Run(_) | Command::Distill(_) => Workload::Train,
        Command::Bench(a) if a.train => Workload::Train,
        Command::Serve(_) => Workload::Serve,
        _ => Workload::Infer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every subcommand says what it is in `--help` (hidden ones aside).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "adalbert", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
        // The walk sees subcommands' flags at all (it would pass vacuously otherwise).
        let predict = cmd.find_subcommand("predict").unwrap();
        assert!(predict.get_arguments().any(|a| a.get_id() == "bundle"));
    }
}
