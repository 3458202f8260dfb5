//! One module per subcommand.
pub mod bench;
pub mod compress;
pub mod distill;
pub mod dse;
pub mod embed;
pub mod eval;
pub mod info;
pub mod predict;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod train;
