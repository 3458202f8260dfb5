//! Studies driven by one file, and the compression sweeps of `adalbert compress`.
//!
//! **For:** turning an experiment file (`configs/*.toml`, run by `adalbert run`) into a report:
//! the [`config`] it is written in; the [`stages`] (train every task and method, evaluate the
//! bundles on the compressed and faulty backbone, simulate the hardware); the one
//! content-addressed [`cache`] every stage reads and writes, so `--resume` skips finished
//! items; the one compression runner [`sweep`] with its TOML vocabulary, shared by
//! `adalbert compress` and the compress stage; the [`stats`] behind every mean and spread; and
//! the [`report`] (Markdown, CSVs, SVG figures).
//!
//! **Not for:** the arithmetic itself. Training lives in `adalbert-train`, the model in
//! `adalbert-model`, number formats, pruning and faults in `adalbert-compress`, the hardware
//! model in `adalbert-hw`; this crate only sequences them, caches their results and reports
//! them. Argument parsing and printing stay in the binary.
//!
//! Flow of one study: config -> [`plan`] (items, each keyed by a hash of its inputs, with an
//! estimated cost) -> cache -> report, the report built from the cache alone. A study larger
//! than one machine runs as [`shard`]s that share the cache folder, and a merge writes the
//! report. Every output file is written atomically and every CSV through the `csv` crate.
//! [`testing`] holds the tiny study the tests, the `tiny_study` example and `make test-slurm`
//! run.

#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod error;
pub mod plan;
pub mod report;
mod run;
pub mod select;
pub mod shard;
pub mod stages;
pub mod stats;
pub mod sweep;
#[cfg(feature = "testing")]
pub mod testing;

pub use cache::Cache;
pub use config::Experiment;
pub use error::{ExperimentError, Result};
pub use plan::Plan;
pub use run::{check, list_items, run, ListedItem, Listing, Mode, RunOptions, RunOutcome, Timing};
pub use shard::Shard;
