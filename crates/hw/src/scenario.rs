//! A scenario = one platform + one model/adapter/plan: it builds the two workloads the policies
//! need (plain model for the baselines, adapter model for the adapter policies) once, so every
//! policy and task count is then a cheap evaluation.

use serde::{Deserialize, Serialize};

use crate::error::{field_err, HwError, Result};
use crate::mapping::Platform;
use adalbert_core::{AdapterSpec, ModelShape, Sharing};

use crate::sim::{simulate, PolicyReport};
use crate::sourced::{Num, Provenance};
use crate::spec::{Policy, StoragePlan, TaskStore, Usage};
use crate::workload::{Workload, WorkloadSpec};

/// Embedded workload defaults (sequence length, labels, adapter, plan) with their sources.
pub const BUILTIN_DEFAULTS_TOML: &str = include_str!("../data/defaults.toml");

/// Workload defaults as read from `data/defaults.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub seq_len: Num,
    pub num_labels: Num,
    pub adapter: String,
    pub sharing: String,
    /// A compression plan of `adalbert_compress` (the string `adalbert compress` takes).
    pub plan: String,
    pub plan_source: String,
    /// Bits per RRAM cell of the backbone's values.
    pub bits_per_cell: Num,
    pub requests_per_switch: Num,
    /// Requests per second, or "back-to-back".
    pub rate: String,
    pub same_chip: SameChip,
}

/// Fixed capacities of the report's same-chip comparison (decimal MB; RRAM in MB of cells).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SameChip {
    pub sram_mb: Num,
    pub rram_mb: Num,
}

impl Defaults {
    /// The embedded defaults.
    pub fn builtin() -> Result<Self> {
        let origin = "built-in data/defaults.toml";
        let d: Defaults = toml::from_str(BUILTIN_DEFAULTS_TOML).map_err(|e| HwError::Parse {
            origin: origin.into(),
            message: e.to_string(),
        })?;
        d.seq_len.count(origin, "seq_len")?;
        d.num_labels.count(origin, "num_labels")?;
        d.requests_per_switch
            .positive(origin, "requests_per_switch")?;
        d.bits_per_cell.count(origin, "bits_per_cell")?;
        d.storage_plan()?;
        d.usage()?;
        d.same_chip.sram_mb.positive(origin, "same_chip.sram_mb")?;
        d.same_chip.rram_mb.positive(origin, "same_chip.rram_mb")?;
        Ok(d)
    }

    /// The default plan with its bits per cell.
    pub fn storage_plan(&self) -> Result<StoragePlan> {
        StoragePlan::parse(&self.plan, self.bits_per_cell.value as u32)
    }

    /// The default usage: a switch every `requests_per_switch` requests, at `rate`.
    pub fn usage(&self) -> Result<Usage> {
        let rate = match self.rate.trim() {
            "back-to-back" => None,
            r => Some(r.parse::<f64>().map_err(|_| {
                field_err(
                    "built-in data/defaults.toml",
                    "rate",
                    "\"back-to-back\" or requests per second",
                )
            })?),
        };
        Usage::new(self.requests_per_switch.value, rate)
    }

    /// Sourced numbers, for assumption lists.
    pub fn provenance(&self) -> Vec<Provenance> {
        vec![
            Provenance::of("defaults.seq_len", &self.seq_len),
            Provenance::of("defaults.num_labels", &self.num_labels),
            Provenance::of("defaults.requests_per_switch", &self.requests_per_switch),
            Provenance::of("defaults.bits_per_cell", &self.bits_per_cell),
            Provenance::of("defaults.same_chip.sram_mb", &self.same_chip.sram_mb),
            Provenance::of("defaults.same_chip.rram_mb", &self.same_chip.rram_mb),
        ]
    }
}

/// Platform + the plain and adapter workloads of one model, adapter and plan.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub platform: Platform,
    /// The plain model (adapter `none`): what the baselines run.
    pub plain: Workload,
    /// The adapter model: what the adapter policies run.
    pub adapted: Workload,
}

impl Scenario {
    /// Build both workloads (`adapter` `None`: the adapter policies run the plain model too),
    /// after checking the sequence fits the model's position embeddings and that the sequence
    /// length and label count are at least 1.
    pub fn new(
        platform: Platform,
        model: ModelShape,
        adapter: Option<AdapterSpec>,
        sharing: Sharing,
        plan: StoragePlan,
        seq_len: u64,
        num_labels: u64,
    ) -> Result<Self> {
        check_workload("workload", &model, seq_len, num_labels)?;
        let spec =
            |a| WorkloadSpec::new(model, a, sharing, plan, seq_len, num_labels, &platform.arch);
        let plain = Workload::build(spec(None));
        let adapted = Workload::build(spec(adapter));
        Ok(Scenario {
            platform,
            plain,
            adapted,
        })
    }

    /// The workload a policy runs.
    pub fn workload(&self, policy: Policy) -> &Workload {
        if policy.is_baseline() {
            &self.plain
        } else {
            &self.adapted
        }
    }

    /// Map and simulate `policy` for `n_tasks`.
    pub fn run(&self, policy: Policy, n_tasks: u64, store: TaskStore) -> Result<PolicyReport> {
        simulate(
            &self.platform,
            self.workload(policy),
            policy,
            n_tasks,
            store,
        )
    }
}

/// Refuse a sequence longer than the model's position embeddings, and empty sequences or heads.
/// `origin` names the input in the error.
pub fn check_workload(
    origin: &str,
    model: &ModelShape,
    seq_len: u64,
    num_labels: u64,
) -> Result<()> {
    // The rule is core's (the same one training and `run --check` apply).
    if model.check_seq_len(seq_len).is_err() {
        let positions = model.max_position_embeddings;
        return Err(field_err(
            origin,
            "seq_len",
            format!("1..={positions} (the model's max_position_embeddings), found {seq_len}"),
        ));
    }
    if num_labels == 0 {
        return Err(field_err(origin, "num_labels", "at least 1"));
    }
    Ok(())
}
