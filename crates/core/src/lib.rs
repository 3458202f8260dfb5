//! The small vocabulary every other adalbert crate shares.
//!
//! What it is for: concepts that more than one crate needs and that must mean the same thing
//! everywhere: the adapter spec grammar ([`adapter`]) and where adapters attach ([`site`]), the model shape with its parameter
//! and byte counts ([`shape`]), metric names ([`metric`]), seeded random streams ([`rng`]), and how files are written
//! ([`files`]: atomic writes, CSV). Each is parsed, computed or written here once.
//!
//! What it is not for: anything that needs tensors, number formats or hardware data; those
//! live in `model`, `compress` and `hw`, which depend on this crate (never the reverse).

#![forbid(unsafe_code)]

pub mod adapter;
pub mod error;
pub mod files;
pub mod metric;
pub mod rng;
pub mod shape;
pub mod site;

pub use adapter::{Activation, AdapterKind, AdapterSpec, Sharing};
pub use error::{CoreError, Result};
pub use shape::{Family, ModelShape, ParamCounts, TaskShape, TensorShape};
pub use site::{Projection, Site, Sublayer};
