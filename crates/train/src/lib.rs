//! Training and evaluation of task adapters and of the full fine-tuning and head-only
//! baselines, on a frozen (or, for `full`, trainable) ALBERT/BERT backbone.
//!
//! What it is for: the loop (AdamW, warmup/decay schedule, clipping, dropout, dev evaluation,
//! best-checkpoint selection, early stopping, resumable run state) and writing task bundles;
//! and distillation of a BERT teacher into a shared-layer ALBERT ([`distill`]).
//! What it is not for: model code (`model`), data and metrics (`tasks`).

#![forbid(unsafe_code)]

pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod optim;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use trainer::{
    train, train_from, EpochRecord, Mode, Start, StartBackbone, TrainJob, TrainOutcome,
};
