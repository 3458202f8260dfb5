//! The generalized ALBERT/BERT encoder on candle, with per-task adapters.
//!
//! What it is for: loading Hugging Face ALBERT and BERT checkpoints with numerical parity,
//! tokenizing text, running the frozen shared backbone, and attaching task-specific
//! parameters (adapters, LayerNorms, heads). What it is not for: training loops (`train`),
//! task data and metrics (`tasks`), number formats (`compress`) or hardware (`hw`). The
//! arithmetic of the fast paths lives in `adalbert-kernels`; this crate wraps it ([`exec`]
//! chooses what runs, [`train_ops`] makes it differentiable) and has no `unsafe` code.

#![forbid(unsafe_code)]

pub mod adapters;
pub mod albert;
pub mod bundle;
pub mod checkpoint;
pub mod compression;
pub mod config;
pub mod error;
pub mod exec;
mod fast_encoder;
pub mod head;
pub mod multitask;
pub mod nn;
pub mod task_model;
pub mod testing;
pub mod tokenizer;
pub mod train_ops;
pub mod weights;

pub use adapters::{AdapterKind, AdapterSpec, Pooling, Sharing, TaskLayout, TaskParams};
pub use albert::{Backbone, EncoderOutput, Route};
pub use bundle::{BundleMeta, TaskBundle, TrainMode};
pub use checkpoint::Checkpoint;
pub use config::{Activation, EncoderConfig, Family};
pub use error::{ModelError, Result};
pub use exec::{Isa, Kernels, TrainKernels};
pub use multitask::{LoadedTask, MultiTask, Prediction};
pub use nn::Ctx;
pub use task_model::TaskModel;
pub use weights::Weights;
