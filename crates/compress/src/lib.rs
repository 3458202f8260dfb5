//! Backbone compression for adalbert: number formats, magnitude pruning, bit-mask
//! sparse encoding, eNVM fault injection, and exact storage arithmetic.
//!
//! Everything works on plain `&[f32]` slices and shapes, so the candle model and the
//! hardware simulator share it without either depending on the other. It is not a
//! training library: quantization here is post-training (fake quantization and
//! encoding), and recovery training lives in `adalbert-train`.
//!
//! # Where to start
//! - [`apply_plan`] with a [`Plan`] (`"af8e3+prune=0.5:global+bitmask"`) and a
//!   [`FaultSpec`] (`"mlc:bpc=2:coding=gray"`) on [`NamedTensor`]s: the one call the
//!   CLI needs. The grammar of both strings is in [`plan`].
//! - [`formats`]: each format as an encoder/decoder to integer codes
//!   ([`formats::Codec`]), plus the format-specific types (e.g.
//!   [`formats::edgebert::EdgeBert8`] with its `u8` API).
//! - [`prune`], [`bitmask`], [`faults`], [`storage`] for the pieces on their own.
//!
//! Every random process takes a `u64` seed (ChaCha8) and reports it.

#![forbid(unsafe_code)]

pub mod apply;
pub mod bitmask;
pub mod bits;
pub mod error;
pub mod faults;
pub mod formats;
pub mod layout;
pub mod plan;
pub mod prune;
pub mod storage;
pub mod tensor;

pub use apply::{apply_plan, Report, RoleSummary, TensorReport};
pub use error::{CompressError, Result};
pub use faults::{FaultReport, FaultSpec};
pub use formats::{Codec, Format};
pub use layout::Encoding;
pub use plan::{Plan, PruneSpec, QuantScope};
pub use tensor::{NamedTensor, TensorRole};
