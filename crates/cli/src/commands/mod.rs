//! One module per subcommand.
pub mod bench;
pub mod dse;
pub mod embed;
pub mod info;
pub mod simulate;
