//! The small spec strings a user types: adapter (`houlsby:64`, `lora:r=8,alpha=16`...), adapter
//! sharing, compression plan (`bits=8,sparsity=0.5,encoding=bitmask,bpc=2`) and mapping policy.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{HwError, Result};

/// Which adapter each task adds to the frozen backbone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AdapterSpec {
    /// No adapter: the plain model (baselines fine-tune everything).
    None,
    /// Two bottleneck adapters per layer (after attention output and after FFN output).
    Houlsby { size: u64 },
    /// One bottleneck adapter per layer, after the FFN.
    Pfeiffer { size: u64 },
    /// One bottleneck adapter per layer, in parallel with the FFN.
    Parallel { size: u64 },
    /// Low-rank updates on the query and value projections.
    Lora { rank: u64, alpha: f64 },
}

const ADAPTER_EXPECTED: &str =
    "none, houlsby:M, pfeiffer:M, parallel:M or lora:r=R[,alpha=A] with M, R > 0";

impl FromStr for AdapterSpec {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || HwError::Spec {
            what: "adapter spec",
            input: s.to_string(),
            expected: ADAPTER_EXPECTED.into(),
        };
        let t = s.trim().to_ascii_lowercase();
        if t == "none" {
            return Ok(AdapterSpec::None);
        }
        let (kind, arg) = t.split_once(':').ok_or_else(bad)?;
        let size = || {
            arg.trim()
                .parse::<u64>()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(bad)
        };
        match kind.trim() {
            "houlsby" => Ok(AdapterSpec::Houlsby { size: size()? }),
            "pfeiffer" => Ok(AdapterSpec::Pfeiffer { size: size()? }),
            "parallel" => Ok(AdapterSpec::Parallel { size: size()? }),
            "lora" => parse_lora(arg).ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

fn parse_lora(arg: &str) -> Option<AdapterSpec> {
    let mut rank = None;
    let mut alpha = None;
    for part in arg.split(',') {
        let (k, v) = part.split_once('=')?;
        match k.trim() {
            "r" => rank = v.trim().parse::<u64>().ok().filter(|r| *r > 0),
            "alpha" => alpha = v.trim().parse::<f64>().ok().filter(|a| a.is_finite()),
            _ => return None,
        }
    }
    let rank = rank?;
    Some(AdapterSpec::Lora {
        rank,
        alpha: alpha.unwrap_or(rank as f64),
    })
}

impl fmt::Display for AdapterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterSpec::None => write!(f, "none"),
            AdapterSpec::Houlsby { size } => write!(f, "houlsby:{size}"),
            AdapterSpec::Pfeiffer { size } => write!(f, "pfeiffer:{size}"),
            AdapterSpec::Parallel { size } => write!(f, "parallel:{size}"),
            AdapterSpec::Lora { rank, alpha } => write!(f, "lora:r={rank},alpha={alpha}"),
        }
    }
}

/// Adapters distinct per layer application, or one set shared by all applications of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    PerApplication,
    Shared,
}

impl FromStr for Sharing {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "per-application" => Ok(Sharing::PerApplication),
            "shared" => Ok(Sharing::Shared),
            _ => Err(HwError::Spec {
                what: "adapter sharing",
                input: s.to_string(),
                expected: "per-application or shared".into(),
            }),
        }
    }
}

impl fmt::Display for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sharing::PerApplication => "per-application",
            Sharing::Shared => "shared",
        })
    }
}

/// How the backbone's weights are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Every value stored, zeros included.
    Dense,
    /// Non-zero values plus one mask bit per element (REFERENCE §6).
    Bitmask,
}

/// Compression plan for the stored weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Plan {
    /// Bits per stored weight value.
    pub bits: u32,
    /// Fraction of backbone weights that are zero.
    pub sparsity: f64,
    pub encoding: Encoding,
    /// Bits per RRAM cell for the values (the mask stays single-level when `mask_in_slc`).
    pub bits_per_cell: u32,
}

const PLAN_EXPECTED: &str =
    "comma-separated bits=1..32, sparsity=0..<1, encoding=dense|bitmask, bpc=1..3 (e.g. bits=8,sparsity=0.5,encoding=bitmask,bpc=2)";

impl Default for Plan {
    /// Uncompressed 8-bit dense, single-level cells.
    fn default() -> Self {
        Plan {
            bits: 8,
            sparsity: 0.0,
            encoding: Encoding::Dense,
            bits_per_cell: 1,
        }
    }
}

impl FromStr for Plan {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| HwError::Spec {
            what: "compression plan",
            input: s.to_string(),
            expected: format!("{PLAN_EXPECTED}; {why}"),
        };
        let mut plan = Plan::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| bad("missing `=`"))?;
            let v = v.trim();
            match k.trim() {
                "bits" => {
                    plan.bits = v
                        .parse()
                        .ok()
                        .filter(|b| (1..=32).contains(b))
                        .ok_or_else(|| bad("bad bits"))?
                }
                "sparsity" => {
                    plan.sparsity = v
                        .parse()
                        .ok()
                        .filter(|x: &f64| (0.0..1.0).contains(x))
                        .ok_or_else(|| bad("bad sparsity"))?
                }
                "encoding" => {
                    plan.encoding = match v {
                        "dense" => Encoding::Dense,
                        "bitmask" => Encoding::Bitmask,
                        _ => return Err(bad("bad encoding")),
                    }
                }
                "bpc" => {
                    plan.bits_per_cell = v
                        .parse()
                        .ok()
                        .filter(|b| (1..=3).contains(b))
                        .ok_or_else(|| bad("bad bpc"))?
                }
                other => return Err(bad(&format!("unknown key `{other}`"))),
            }
        }
        Ok(plan)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = match self.encoding {
            Encoding::Dense => "dense",
            Encoding::Bitmask => "bitmask",
        };
        write!(
            f,
            "bits={},sparsity={},encoding={enc},bpc={}",
            self.bits, self.sparsity, self.bits_per_cell
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

/// Where adapter policies keep the task-specific tensors of inactive tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStore {
    /// All tasks resident in on-chip SRAM: a switch moves no data.
    OnChip,
    /// Only the active task on chip; a switch loads its task-specific tensors from DRAM.
    Dram,
}

impl fmt::Display for TaskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStore::OnChip => "on-chip",
            TaskStore::Dram => "dram",
        })
    }
}

impl FromStr for TaskStore {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "on-chip" => Ok(TaskStore::OnChip),
            "dram" => Ok(TaskStore::Dram),
            _ => Err(HwError::Spec {
                what: "task store",
                input: s.to_string(),
                expected: "on-chip or dram".into(),
            }),
        }
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
    fn adapter_specs_parse_and_round_trip() {
        assert_eq!(
            "houlsby:64".parse::<AdapterSpec>().unwrap(),
            AdapterSpec::Houlsby { size: 64 }
        );
        assert_eq!(
            "pfeiffer:16".parse::<AdapterSpec>().unwrap(),
            AdapterSpec::Pfeiffer { size: 16 }
        );
        assert_eq!(
            "parallel:8".parse::<AdapterSpec>().unwrap(),
            AdapterSpec::Parallel { size: 8 }
        );
        assert_eq!(
            "lora:r=8,alpha=16".parse::<AdapterSpec>().unwrap(),
            AdapterSpec::Lora {
                rank: 8,
                alpha: 16.0
            }
        );
        assert_eq!(
            "lora:r=4".parse::<AdapterSpec>().unwrap(),
            AdapterSpec::Lora {
                rank: 4,
                alpha: 4.0
            }
        );
        assert_eq!("none".parse::<AdapterSpec>().unwrap(), AdapterSpec::None);
        for bad in [
            "houlsby",
            "houlsby:0",
            "lora:8",
            "mystery:3",
            "lora:r=8,beta=2",
        ] {
            let err = bad.parse::<AdapterSpec>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("houlsby:M"), "{err}");
        }
        let s = AdapterSpec::Lora {
            rank: 8,
            alpha: 16.0,
        };
        assert_eq!(s.to_string().parse::<AdapterSpec>().unwrap(), s);
    }

    #[test]
    fn plan_parses_with_defaults_and_rejects_bad_keys() {
        let p: Plan = "bits=4,sparsity=0.75,encoding=bitmask,bpc=3"
            .parse()
            .unwrap();
        assert_eq!(
            (p.bits, p.sparsity, p.encoding, p.bits_per_cell),
            (4, 0.75, Encoding::Bitmask, 3)
        );
        assert_eq!("".parse::<Plan>().unwrap(), Plan::default());
        assert_eq!(p.to_string().parse::<Plan>().unwrap(), p);
        for bad in [
            "bits=0",
            "sparsity=1.0",
            "encoding=csr",
            "bpc=4",
            "speed=2",
            "bits",
        ] {
            assert!(bad.parse::<Plan>().is_err(), "{bad}");
        }
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
