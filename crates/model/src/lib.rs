//! The generalized ALBERT/BERT encoder on candle, with per-task adapters.
//!
//! What it is for: loading Hugging Face ALBERT and BERT checkpoints with numerical parity,
//! tokenizing text, running the frozen shared backbone, and attaching task-specific
//! parameters (adapters, LayerNorms, heads). What it is not for: training loops (`train`),
//! task data and metrics (`tasks`), number formats (`compress`) or hardware (`hw`). The
//! arithmetic of the fast paths lives in `adalbert-kernels`; this crate wraps it ([`exec`]
//! chooses what runs, [`train_ops`] makes it differentiable) and has no `unsafe` code.
//!
//! # Map
//! - [`albert`]: one struct per checkpoint module (embeddings, attention, layer, group,
//!   transformer, pooler), each with `load` and `forward`; [`backbone`] puts them together
//!   with input checks and the choice of the eval path. Modules load through [`weights`]
//!   (a prefix builder over a [`checkpoint`]).
//! - [`adapters`]: a task's parameters, held by the site where they attach
//!   ([`adalbert_core::site`]: one table for every adapter kind), and how they load and
//!   initialize; [`route`]: which task each row of a batch uses.
//! - Three execution paths run the same modules and read the same sites: candle's ops (the
//!   `forward`s of [`albert`]), their fused training forms (`fused`, on [`train_ops`]) and
//!   the eval kernels (`fast_encoder`). [`exec`] decides which runs; [`nn`] holds the linear
//!   layer, LayerNorm and the forward context whose kernels each step asks for.
//! - [`bundle`], [`multitask`], [`task_model`]: task bundles on disk, many tasks on one
//!   backbone, one task's logits; [`compression`] and [`tokenizer`] wrap `compress` and
//!   `tokenizers` for the model; [`export`] writes a Hugging Face ALBERT directory;
//!   [`sentence`] reads a model's sentence-transformers files and pools sentence vectors.

#![forbid(unsafe_code)]

pub mod adapters;
pub mod albert;
pub mod backbone;
pub mod bundle;
pub mod checkpoint;
pub mod compression;
pub mod config;
pub mod error;
pub mod exec;
pub mod export;
mod fast_encoder;
mod fused;
pub mod interop;
pub mod multitask;
pub mod nn;
pub mod route;
pub mod sentence;
pub mod task_model;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokenizer;
pub mod train_ops;
pub mod weights;

pub use adapters::{AdapterKind, AdapterSpec, Pooling, Sharing, TaskLayout, TaskParams};
pub use backbone::{Backbone, EncoderOutput};
pub use bundle::{BackboneId, BundleMeta, TaskBundle, TrainMode};
pub use checkpoint::Checkpoint;
pub use config::{Activation, EncoderConfig, Family};
pub use error::{ModelError, Result};
pub use exec::{Isa, Kernels, TrainKernels};
pub use multitask::{LoadedTask, MultiTask, Prediction};
pub use nn::{Ctx, Recorded};
pub use route::Route;
pub use sentence::{PoolingMode, SentenceConfig};
pub use task_model::TaskModel;
pub use weights::Weights;
