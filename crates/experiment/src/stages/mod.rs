//! The stages of `adalbert run`, in order: train, compress (sweep over the backbone with
//! faults), simulate; then, for GLUE, the leaderboard submission files of the reported cells.
//! Each reads and writes finished items through the one [`crate::Cache`].

pub mod compress;
pub mod simulate;
pub mod submit;
pub mod train;
