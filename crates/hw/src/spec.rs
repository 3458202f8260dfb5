//! What the simulator adds to the shared vocabulary: the storage plan (a compression plan of
//! `adalbert_compress` plus RRAM bits per cell), mapping policies, task stores and schedules.
//! Adapter specs and sharing are `adalbert_core`'s, compression plans `adalbert_compress`'s.

use std::fmt;
use std::str::FromStr;

use adalbert_compress::Plan;
use adalbert_core::AdapterSpec;
use serde::Serialize;

use crate::error::{HwError, Result};

/// An adapter spec of the shared grammar (`houlsby:64`, `lora:r=8,alpha=16`,
/// `pfeiffer:32,act=gelu`), or `none` for the plain model.
pub fn parse_adapter(text: &str) -> Result<Option<AdapterSpec>> {
    if text.trim() == "none" {
        return Ok(None);
    }
    Ok(Some(text.parse()?))
}

/// How the backbone is stored: a compression plan (the grammar of `adalbert_compress`, e.g.
/// `int8+prune=0.5+bitmask`, the same strings `adalbert compress` takes) and the bits per
/// RRAM cell of its values (the bit mask stays in single-level cells).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoragePlan {
    #[serde(serialize_with = "plan_as_string")]
    pub plan: Plan,
    pub bits_per_cell: u32,
}

fn plan_as_string<S: serde::Serializer>(plan: &Plan, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(plan)
}

impl StoragePlan {
    /// Checks the plan and that `bits_per_cell` is 1..=3 (the cell data's range).
    pub fn new(plan: Plan, bits_per_cell: u32) -> Result<Self> {
        plan.validate()?;
        if !(1..=3).contains(&bits_per_cell) {
            return Err(HwError::Spec {
                what: "bits per cell",
                input: bits_per_cell.to_string(),
                expected: "1, 2 or 3".into(),
            });
        }
        Ok(Self {
            plan,
            bits_per_cell,
        })
    }

    /// Parses a plan string and pairs it with `bits_per_cell`.
    pub fn parse(plan: &str, bits_per_cell: u32) -> Result<Self> {
        Self::new(plan.parse()?, bits_per_cell)
    }

    /// Bits of each stored value of a quantized tensor (also the width task parameters are
    /// kept at in the accelerator's memories).
    pub fn value_bits(&self) -> u32 {
        self.plan.format.bits()
    }
}

impl fmt::Display for StoragePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} bit(s) per RRAM cell",
            self.plan, self.bits_per_cell
        )
    }
}

/// Where each tensor lives (issue 5 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Plain ALBERT, one fine-tuned model per task in DRAM; the active one is copied on chip.
    AlbertDram,
    /// Plain ALBERT, every task's model in on-chip SRAM.
    AlbertSram,
    /// adapter-ALBERT: backbone in RRAM (bit-mask sparse, b bits per cell), the rest in SRAM.
    AdapterHetero,
    /// adapter-ALBERT entirely in SRAM.
    AdapterSram,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 4] = [
        Policy::AlbertDram,
        Policy::AlbertSram,
        Policy::AdapterHetero,
        Policy::AdapterSram,
    ];

    /// The name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::AlbertDram => "albert-dram",
            Policy::AlbertSram => "albert-sram",
            Policy::AdapterHetero => "adapter-hetero",
            Policy::AdapterSram => "adapter-sram",
        }
    }

    /// Baselines run the plain model with every weight fine-tuned per task.
    pub fn is_baseline(&self) -> bool {
        matches!(self, Policy::AlbertDram | Policy::AlbertSram)
    }
}

impl FromStr for Policy {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| HwError::Unknown {
                what: "policy",
                name: s.to_string(),
                known: Policy::ALL.map(|p| p.name()).join(", "),
            })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where adapter policies keep the task-specific tensors (adapters, task layer norms, head) of
/// the tasks that are not running. The active task's tensors are always in SRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStore {
    /// Every task resident in on-chip SRAM: a switch moves no data (`on-chip` is an alias).
    Sram,
    /// Every task's tensors in RRAM (non-volatile, the plan's bits per cell), the active one
    /// copied into SRAM on a switch (RRAM read + SRAM write).
    Rram,
    /// Every task's tensors in off-chip DRAM, the active one copied into SRAM on a switch
    /// (DRAM transfer + SRAM write).
    Dram,
}

impl TaskStore {
    /// Every store, in report order.
    pub const ALL: [TaskStore; 3] = [TaskStore::Sram, TaskStore::Rram, TaskStore::Dram];

    /// The name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            TaskStore::Sram => "sram",
            TaskStore::Rram => "rram",
            TaskStore::Dram => "dram",
        }
    }
}

impl fmt::Display for TaskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TaskStore {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "sram" | "on-chip" => Ok(TaskStore::Sram),
            "rram" => Ok(TaskStore::Rram),
            "dram" => Ok(TaskStore::Dram),
            _ => Err(HwError::Spec {
                what: "task store",
                input: s.to_string(),
                expected: "sram (alias on-chip), rram or dram".into(),
            }),
        }
    }
}

/// How requests arrive: a task switch every `requests_per_switch` requests (round robin over
/// the tasks) and, optionally, a steady request rate. Without a rate requests run back to back
/// and no time is idle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    pub requests_per_switch: f64,
    /// Requests per second; `None`: back to back.
    pub rate_per_s: Option<f64>,
}

impl Usage {
    /// Checks that `requests_per_switch` and the rate are finite and > 0.
    pub fn new(requests_per_switch: f64, rate_per_s: Option<f64>) -> Result<Self> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(requests_per_switch) {
            return Err(HwError::Spec {
                what: "requests per switch (--requests-per-switch)",
                input: requests_per_switch.to_string(),
                expected: "a finite number > 0".into(),
            });
        }
        if let Some(r) = rate_per_s.filter(|&r| !positive(r)) {
            return Err(HwError::Spec {
                what: "request rate (--rate, requests per second)",
                input: r.to_string(),
                expected: "a finite number > 0 (omit it for back-to-back requests)".into(),
            });
        }
        Ok(Usage {
            requests_per_switch,
            rate_per_s,
        })
    }

    /// Back-to-back requests with a switch every `requests_per_switch`.
    pub fn back_to_back(requests_per_switch: f64) -> Self {
        Usage {
            requests_per_switch,
            rate_per_s: None,
        }
    }

    /// "back to back" or "R req/s", for reports.
    pub fn rate_label(&self) -> String {
        self.rate_per_s
            .map_or_else(|| "back to back".into(), |r| format!("{r} req/s"))
    }
}

/// Parse a task schedule `task:requests,task:requests,...` (e.g. `0:10,1:5,0:3`); tasks must
/// be below `n_tasks`.
pub fn parse_schedule(text: &str, n_tasks: u64) -> Result<Vec<(u64, u64)>> {
    let bad = |why: String| HwError::Spec {
        what: "schedule",
        input: text.to_string(),
        expected: format!("comma-separated task:requests pairs with task < {n_tasks} ({why})"),
    };
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (t, r) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("`{part}` has no `:`")))?;
            let task = t
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("bad task `{t}`")))?;
            let requests = r
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("bad request count `{r}`")))?;
            if task >= n_tasks {
                return Err(bad(format!("task {task} out of range")));
            }
            Ok((task, requests))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_check_task_range() {
        assert_eq!(
            parse_schedule("0:10, 1:5,0:3", 2).unwrap(),
            vec![(0, 10), (1, 5), (0, 3)]
        );
        assert!(parse_schedule("2:1", 2)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(parse_schedule("0-1", 2).is_err());
    }

    #[test]
    fn adapters_take_the_shared_grammar_or_none() {
        assert_eq!(parse_adapter("none").unwrap(), None);
        for spec in ["lora:r=8", "lora:8", "houlsby:64,act=gelu", "pfeiffer:16"] {
            let a = parse_adapter(spec).unwrap().unwrap();
            assert_eq!(parse_adapter(&a.to_string()).unwrap(), Some(a));
        }
        assert!(parse_adapter("houlsby").is_err());
    }

    #[test]
    fn storage_plans_take_compress_plans_and_check_cells() {
        let p = StoragePlan::parse("int8+prune=0.5+bitmask", 2).unwrap();
        assert_eq!((p.value_bits(), p.bits_per_cell), (8, 2));
        assert!(p.to_string().starts_with("int8:per-tensor:sym+prune=0.5"));
        assert!(StoragePlan::parse("int8", 4)
            .unwrap_err()
            .to_string()
            .contains("1, 2 or 3"));
        assert!(StoragePlan::parse("bits=8", 2).is_err());
    }

    #[test]
    fn task_stores_parse_with_the_on_chip_alias() {
        for store in TaskStore::ALL {
            assert_eq!(store.name().parse::<TaskStore>().unwrap(), store);
        }
        assert_eq!("on-chip".parse::<TaskStore>().unwrap(), TaskStore::Sram);
        let err = "flash".parse::<TaskStore>().unwrap_err().to_string();
        assert!(err.contains("sram (alias on-chip), rram or dram"), "{err}");
    }

    #[test]
    fn usage_refuses_rates_and_switch_counts_below_or_at_zero() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = Usage::new(1.0, Some(bad)).unwrap_err().to_string();
            assert!(err.contains("--rate"), "{err}");
            let err = Usage::new(bad, None).unwrap_err().to_string();
            assert!(err.contains("--requests-per-switch"), "{err}");
        }
        assert_eq!(
            Usage::new(4.0, Some(2.5)).unwrap().rate_label(),
            "2.5 req/s"
        );
        assert_eq!(Usage::back_to_back(1.0).rate_label(), "back to back");
    }

    #[test]
    fn policies_parse_by_name() {
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>().unwrap(), p);
        }
        let err = "albert-rram".parse::<Policy>().unwrap_err().to_string();
        assert!(err.contains("adapter-hetero"), "{err}");
    }
}
