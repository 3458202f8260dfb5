//! The stages of `adalbert run`, in order: train, compress (sweep over the backbone with
//! faults), simulate. Each reads and writes finished items through the one [`crate::Cache`].

pub mod compress;
pub mod simulate;
pub mod train;
