//! Print the size and label balance of every offline-suite split.
//!
//! `cargo run -p adalbert-tasks --example suite_stats -- [DATA_DIR] [SEED]`
//! (defaults: `assets/data`, seed 0). Useful after `scripts/fetch-assets` to see what the
//! builders make of the real files.

use std::path::PathBuf;

use adalbert_tasks::{load_dataset, OfflineTask, Split, TaskKind};

fn main() -> Result<(), adalbert_tasks::Error> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "assets/data".into()));
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    println!("data {} seed {seed}", dir.display());
    for task in OfflineTask::ALL {
        for split in [Split::Train, Split::Dev, Split::Test] {
            let ds = load_dataset(task.name(), Some(&dir), split, seed)?;
            let balance = match &ds.task.kind {
                TaskKind::Classification { labels } => labels
                    .iter()
                    .zip(ds.class_counts())
                    .map(|(l, c)| format!("{l} {c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                TaskKind::Regression => {
                    let scores: Vec<f32> =
                        ds.examples.iter().filter_map(|e| e.label.score()).collect();
                    let mean = scores.iter().sum::<f32>() / scores.len().max(1) as f32;
                    format!("mean rating {mean:.3}")
                }
            };
            let dropped = ds
                .dropped
                .iter()
                .map(|d| format!("{} {}", d.count, d.reason))
                .collect::<Vec<_>>()
                .join("; ");
            println!(
                "{:<22} {:<5} {:>6}  [{balance}]  dropped: {}",
                task.name(),
                split.name(),
                ds.examples.len(),
                if dropped.is_empty() { "none" } else { &dropped }
            );
        }
    }
    Ok(())
}
