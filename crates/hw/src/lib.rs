//! # adalbert-hw
//!
//! An analytical simulator of an EdgeBERT-like edge accelerator whose on-chip memory mixes SRAM
//! and RRAM, for multi-task inference with one frozen ALBERT backbone plus per-task adapters.
//! It answers: what do energy, latency and area per inference and per task switch become when the
//! backbone sits in dense multi-level RRAM instead of SRAM or off-chip DRAM?
//!
//! What it is for: first-order design comparisons and design-space sweeps (fast enough for
//! hundreds of thousands of design points per second). What it is not: a cycle-accurate model or a
//! numerical model of the network; it depends on no ML framework.
//!
//! Every number comes from a data file with its source (`data/*.toml`, embedded at build time,
//! replaceable by user files): [`memory`] (NVMExplorer cell rows, DRAM, scaling rules),
//! [`arch`] (datapath, Horowitz energies); model shapes come from `adalbert_core::ModelShape`
//! (built-in names or a model directory), storage from `adalbert_compress` plans.
//! The pipeline: [`workload::Workload`] -> [`mapping::Mapping`] (a [`spec::Policy`]) ->
//! [`sim::evaluate`] -> [`sim::PolicyReport`]; [`scenario::Scenario`] wires it up,
//! [`dse`] sweeps it and [`report`] writes the committed results.

#![forbid(unsafe_code)]

pub mod accuracy;
pub mod arch;
pub mod compare;
pub mod dse;
pub mod error;
pub mod mapping;
pub mod memory;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod sensitivity;
pub mod sim;
pub mod sourced;
pub mod spec;
pub mod workload;

pub use adalbert_core::{AdapterSpec, ModelShape, Sharing};
pub use arch::{Accelerator, Capacity};
pub use error::{HwError, Result};
pub use mapping::{Mapping, Platform};
pub use memory::MemoryTable;
pub use scenario::{Defaults, Scenario};
pub use sim::{run_schedule, simulate, PolicyReport, RequestCost};
pub use spec::{Policy, StoragePlan, TaskStore, Usage};
pub use workload::{Workload, WorkloadSpec};
