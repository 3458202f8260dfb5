//! One module per subcommand.
pub mod bench;
pub mod dse;
pub mod embed;
pub mod eval;
pub mod info;
pub mod predict;
pub mod simulate;
pub mod train;
