//! The generalized ALBERT/BERT encoder on candle, with per-task adapters.
//!
//! What it is for: loading Hugging Face ALBERT and BERT checkpoints with numerical parity,
//! tokenizing text, running the frozen shared backbone, and attaching task-specific
//! parameters (adapters, LayerNorms, heads). What it is not for: training loops (`train`),
//! task data and metrics (`tasks`), number formats (`compress`) or hardware (`hw`).

pub mod adapters;
pub mod albert;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod head;
pub mod nn;
pub mod params;
pub mod tokenizer;

pub use adapters::{AdapterKind, AdapterSpec, Sharing, TaskLayout, TaskParams};
pub use albert::{Backbone, EncoderOutput};
pub use checkpoint::Checkpoint;
pub use config::{Activation, EncoderConfig, Family};
pub use error::{ModelError, Result};
pub use nn::Ctx;
