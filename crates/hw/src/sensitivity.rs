//! Sensitivity of the hardware conclusions to their assumptions.
//!
//! A space (`data/sensitivity.toml`, or a user file) gives every uncertain assumption (a
//! [`Knob`]) a range with its source; the default of each knob is the value of the data files.
//! For every setting the study evaluates the whole comparison: adapter-hetero against
//! albert-dram and albert-sram, per adapter sharing and task store, for N = 1..=[`MAX_N`]. Then:
//! - one at a time: each knob at its two ends, the others at their defaults (a tornado);
//! - jointly: a seeded sample of every knob at once (the seed is recorded in the output);
//! - conclusions ("adapter-hetero uses less energy than albert-dram at N = 8") are checked at
//!   every setting; where one flips when a knob alone moves to an end, the value where it
//!   flips is found by bisection between the default and that end.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use adalbert_compress::PruneSpec;
use adalbert_core::rng::SplitMix64;
use adalbert_core::{AdapterSpec, ModelShape, Sharing};
use serde::{Deserialize, Serialize};

use crate::arch::Accelerator;
use crate::error::{field_err, HwError, Result};
use crate::mapping::Platform;
use crate::memory::MemoryTable;
use crate::scenario::Scenario;
use crate::spec::{Policy, StoragePlan, TaskStore, Usage};

/// The embedded default space.
pub const BUILTIN_SPACE_TOML: &str = include_str!("../data/sensitivity.toml");

/// Task counts the conclusions are checked at.
pub const CONCLUSION_NS: [u64; 5] = [1, 2, 4, 8, 16];
/// Largest task count searched for a crossover.
pub const MAX_N: u64 = 64;
/// Sharings evaluated at every setting.
pub const SHARINGS: [Sharing; 2] = [Sharing::PerApplication, Sharing::Shared];

/// An uncertain assumption the study varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    ClockGhz,
    MacArray,
    SramLeakageScale,
    SramReadEnergyScale,
    RramReadEnergyScale,
    RramReadLatencyScale,
    RramLeakageScale,
    DramPjPerBit,
    DramBackgroundScale,
    AdapterSize,
    Sparsity,
    BitsPerCell,
    RatePerS,
    RequestsPerSwitch,
    SramIdleLeakageFactor,
    RramWakeNs,
    RramWakeEnergyLeakageNs,
    RramPowerGating,
}

impl Knob {
    /// Every knob, in report order.
    pub const ALL: [Knob; 18] = [
        Knob::ClockGhz,
        Knob::MacArray,
        Knob::SramLeakageScale,
        Knob::SramReadEnergyScale,
        Knob::RramReadEnergyScale,
        Knob::RramReadLatencyScale,
        Knob::RramLeakageScale,
        Knob::DramPjPerBit,
        Knob::DramBackgroundScale,
        Knob::AdapterSize,
        Knob::Sparsity,
        Knob::BitsPerCell,
        Knob::RatePerS,
        Knob::RequestsPerSwitch,
        Knob::SramIdleLeakageFactor,
        Knob::RramWakeNs,
        Knob::RramWakeEnergyLeakageNs,
        Knob::RramPowerGating,
    ];

    /// The name in space files and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Knob::ClockGhz => "clock_ghz",
            Knob::MacArray => "mac_array",
            Knob::SramLeakageScale => "sram_leakage_scale",
            Knob::SramReadEnergyScale => "sram_read_energy_scale",
            Knob::RramReadEnergyScale => "rram_read_energy_scale",
            Knob::RramReadLatencyScale => "rram_read_latency_scale",
            Knob::RramLeakageScale => "rram_leakage_scale",
            Knob::DramPjPerBit => "dram_pj_per_bit",
            Knob::DramBackgroundScale => "dram_background_scale",
            Knob::AdapterSize => "adapter_size",
            Knob::Sparsity => "sparsity",
            Knob::BitsPerCell => "bits_per_cell",
            Knob::RatePerS => "rate_per_s",
            Knob::RequestsPerSwitch => "requests_per_switch",
            Knob::SramIdleLeakageFactor => "sram_idle_leakage_factor",
            Knob::RramWakeNs => "rram_wake_ns",
            Knob::RramWakeEnergyLeakageNs => "rram_wake_energy_leakage_ns",
            Knob::RramPowerGating => "rram_power_gating",
        }
    }

    /// Knobs that only take whole values.
    pub fn integer(&self) -> bool {
        matches!(
            self,
            Knob::MacArray
                | Knob::AdapterSize
                | Knob::BitsPerCell
                | Knob::RequestsPerSwitch
                | Knob::RramPowerGating
        )
    }

    /// Values the knob's meaning allows, checked on every range.
    fn admissible(&self, v: f64) -> std::result::Result<(), &'static str> {
        let ok = match self {
            Knob::BitsPerCell => (1.0..=3.0).contains(&v),
            Knob::Sparsity => (0.0..1.0).contains(&v),
            Knob::SramIdleLeakageFactor => v > 0.0 && v <= 1.0,
            Knob::RramPowerGating => v == 0.0 || v == 1.0,
            Knob::RramWakeNs | Knob::RramWakeEnergyLeakageNs => v >= 0.0,
            _ => v > 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                Knob::BitsPerCell => "values in 1..=3",
                Knob::Sparsity => "values in [0, 1)",
                Knob::SramIdleLeakageFactor => "values in (0, 1]",
                Knob::RramPowerGating => "0 or 1",
                Knob::RramWakeNs | Knob::RramWakeEnergyLeakageNs => "values >= 0",
                _ => "values > 0",
            })
        }
    }
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Knob {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self> {
        Knob::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| HwError::Unknown {
                what: "sensitivity knob",
                name: s.to_string(),
                known: Knob::ALL.map(|k| k.name()).join(", "),
            })
    }
}

/// One range as written in the space file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    pub min: f64,
    pub max: f64,
    #[serde(default)]
    pub log: bool,
    pub source: String,
}

/// The space file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceFile {
    pub model: String,
    pub sharing: String,
    pub tasks: u64,
    pub seed: u64,
    pub samples: usize,
    pub ranges: BTreeMap<String, RangeSpec>,
}

/// A checked range of one knob.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    pub knob: Knob,
    pub min: f64,
    pub max: f64,
    pub log: bool,
    pub source: String,
}

impl Range {
    /// The value at fraction `u` in [0, 1] of the range (log-uniform when `log`), rounded for
    /// integer knobs.
    pub fn at(&self, u: f64) -> f64 {
        let v = if self.log && self.min > 0.0 {
            (self.min.ln() + u * (self.max.ln() - self.min.ln())).exp()
        } else {
            self.min + u * (self.max - self.min)
        };
        if self.knob.integer() {
            v.round().clamp(self.min.ceil(), self.max.floor())
        } else {
            v.clamp(self.min, self.max)
        }
    }

    /// The position of `v` in the range, the inverse of [`Range::at`].
    fn fraction(&self, v: f64) -> f64 {
        let f = if self.log && self.min > 0.0 && v > 0.0 {
            (v.ln() - self.min.ln()) / (self.max.ln() - self.min.ln())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// A parsed space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Space {
    pub model: String,
    pub sharing: Sharing,
    pub tasks: u64,
    pub seed: u64,
    pub samples: usize,
    pub ranges: Vec<Range>,
}

impl Space {
    /// The embedded default space.
    pub fn builtin() -> Result<Self> {
        Self::from_toml_str(BUILTIN_SPACE_TOML, "built-in data/sensitivity.toml")
    }

    /// Load a space file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and check a space; `origin` names the document in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let file: SpaceFile = crate::error::parse_toml(text, origin)?;
        if file.tasks == 0 || file.tasks > MAX_N {
            return Err(field_err(origin, "tasks", format!("1..={MAX_N}")));
        }
        if file.samples == 0 {
            return Err(field_err(origin, "samples", "at least 1"));
        }
        let mut ranges = Vec::new();
        for (name, r) in &file.ranges {
            let knob: Knob = name.parse()?;
            let field = format!("ranges.{name}");
            if !(r.min.is_finite() && r.max.is_finite()) {
                return Err(field_err(origin, &field, "finite min and max"));
            }
            if r.min > r.max {
                return Err(field_err(
                    origin,
                    &field,
                    format!("min <= max, found min {} > max {}", r.min, r.max),
                ));
            }
            for v in [r.min, r.max] {
                knob.admissible(v)
                    .map_err(|what| field_err(origin, &field, format!("{what}, found {v}")))?;
            }
            // An integer knob takes whole values in [min, max] ([`Range::at`] rounds and
            // clamps to [ceil(min), floor(max)]), so the range must hold one.
            if knob.integer() && r.min.ceil() > r.max.floor() {
                return Err(field_err(
                    origin,
                    &field,
                    format!(
                        "a range holding a whole number (the knob is an integer), found min {} and max {}",
                        r.min, r.max
                    ),
                ));
            }
            if r.log && r.min <= 0.0 {
                return Err(field_err(origin, &field, "min > 0 for a log range"));
            }
            if r.source.trim().is_empty() {
                return Err(field_err(
                    origin,
                    &format!("{field}.source"),
                    "a non-empty source (paper, data, or \"assumed: reason\")",
                ));
            }
            ranges.push(Range {
                knob,
                min: r.min,
                max: r.max,
                log: r.log,
                source: r.source.clone(),
            });
        }
        ranges.sort_by_key(|r| r.knob);
        Ok(Space {
            model: file.model.clone(),
            sharing: file.sharing.parse()?,
            tasks: file.tasks,
            seed: file.seed,
            samples: file.samples,
            ranges,
        })
    }
}

/// Everything a setting starts from: the data files' values and the workload defaults.
#[derive(Debug, Clone)]
pub struct Base {
    pub arch: Accelerator,
    pub tech: MemoryTable,
    pub model: ModelShape,
    pub adapter: AdapterSpec,
    pub plan: StoragePlan,
    pub seq_len: u64,
    pub num_labels: u64,
    pub usage: Usage,
}

/// A setting: some knobs moved away from their defaults.
pub type Setting = [(Knob, f64)];

impl Base {
    /// The knob's value in the data files (`None` for the rate: back to back).
    pub fn default_of(&self, knob: Knob) -> Option<f64> {
        let (a, t) = (&self.arch, &self.tech);
        Some(match knob {
            Knob::ClockGhz => a.clock_ghz,
            Knob::MacArray => a.mac_rows as f64,
            Knob::SramLeakageScale
            | Knob::SramReadEnergyScale
            | Knob::RramReadEnergyScale
            | Knob::RramReadLatencyScale
            | Knob::RramLeakageScale
            | Knob::DramBackgroundScale => 1.0,
            Knob::DramPjPerBit => t.dram.energy_pj_per_bit.value,
            Knob::AdapterSize => self.adapter.size as f64,
            Knob::Sparsity => self.plan.plan.prune.map_or(0.0, |p| p.sparsity),
            Knob::BitsPerCell => f64::from(self.plan.bits_per_cell),
            Knob::RatePerS => return self.usage.rate_per_s,
            Knob::RequestsPerSwitch => self.usage.requests_per_switch,
            Knob::SramIdleLeakageFactor => {
                if a.sram_retention {
                    t.power.sram_retention_leakage_factor.value
                } else {
                    1.0
                }
            }
            Knob::RramWakeNs => t.power.rram_wake_ns.value,
            Knob::RramWakeEnergyLeakageNs => t.power.rram_wake_energy_leakage_ns.value,
            Knob::RramPowerGating => f64::from(u8::from(a.rram_power_gating)),
        })
    }

    /// The platform, adapter, plan and usage of a setting.
    fn apply(&self, setting: &Setting) -> Result<(Platform, AdapterSpec, StoragePlan, Usage)> {
        let (mut arch, mut tech) = (self.arch.clone(), self.tech.clone());
        let (mut adapter, mut plan, mut usage) = (self.adapter, self.plan, self.usage);
        let scale_row =
            |tech: &mut MemoryTable, name: &str, f: &dyn Fn(&mut crate::memory::CellRow)| {
                if let Some(row) = tech.cells.iter_mut().find(|c| c.name == name) {
                    f(row);
                }
            };
        for &(knob, v) in setting {
            let (sram, rram) = (arch.sram_cell.clone(), arch.rram_cell.clone());
            match knob {
                Knob::ClockGhz => arch.clock_ghz = v,
                Knob::MacArray => arch = arch.with_mac_array(v as u64),
                Knob::SramLeakageScale => scale_row(&mut tech, &sram, &|r| r.leakage_mw *= v),
                Knob::SramReadEnergyScale => scale_row(&mut tech, &sram, &|r| r.read_pj *= v),
                Knob::RramReadEnergyScale => scale_row(&mut tech, &rram, &|r| r.read_pj *= v),
                Knob::RramReadLatencyScale => scale_row(&mut tech, &rram, &|r| r.read_ns *= v),
                Knob::RramLeakageScale => scale_row(&mut tech, &rram, &|r| r.leakage_mw *= v),
                Knob::DramPjPerBit => tech.dram.energy_pj_per_bit.value = v,
                Knob::DramBackgroundScale => tech.dram.self_refresh_mw_per_die.value *= v,
                Knob::AdapterSize => adapter.size = v as usize,
                Knob::Sparsity => {
                    let prune = plan.plan.prune.unwrap_or(PruneSpec {
                        sparsity: 0.0,
                        global: false,
                        include_embeddings: true,
                    });
                    plan.plan.prune = Some(PruneSpec {
                        sparsity: v,
                        ..prune
                    });
                }
                Knob::BitsPerCell => plan.bits_per_cell = v as u32,
                Knob::RatePerS => usage.rate_per_s = Some(v),
                Knob::RequestsPerSwitch => usage.requests_per_switch = v,
                Knob::SramIdleLeakageFactor => {
                    arch.sram_retention = true;
                    tech.power.sram_retention_leakage_factor.value = v;
                }
                Knob::RramWakeNs => tech.power.rram_wake_ns.value = v,
                Knob::RramWakeEnergyLeakageNs => tech.power.rram_wake_energy_leakage_ns.value = v,
                Knob::RramPowerGating => arch.rram_power_gating = v >= 0.5,
            }
        }
        let plan = StoragePlan::new(plan.plan, plan.bits_per_cell)?;
        let usage = Usage::new(usage.requests_per_switch, usage.rate_per_s)?;
        Ok((Platform::new(arch, tech)?, adapter, plan, usage))
    }

    /// The scenario of one sharing under a setting, and the setting's usage.
    fn scenario(&self, setting: &Setting, sharing: Sharing) -> Result<(Scenario, Usage)> {
        let (platform, adapter, plan, usage) = self.apply(setting)?;
        let s = Scenario::new(
            platform,
            self.model,
            Some(adapter),
            sharing,
            plan,
            self.seq_len,
            self.num_labels,
        )?;
        Ok((s, usage))
    }

    /// The comparison of a setting: every sharing and store, N = 1..=MAX_N.
    pub fn outcome(&self, setting: &Setting) -> Result<Outcome> {
        let mut cells = Vec::new();
        let mut saturated = false;
        for sharing in SHARINGS {
            let (s, usage) = self.scenario(setting, sharing)?;
            let mut baselines = Vec::new();
            for n in 1..=MAX_N {
                let d = s.run(Policy::AlbertDram, n, TaskStore::Sram)?;
                let r = s.run(Policy::AlbertSram, n, TaskStore::Sram)?;
                baselines.push((figures(&d, &usage), figures(&r, &usage)));
            }
            for store in TaskStore::ALL {
                let mut vs = [Vec::new(), Vec::new()];
                for (i, n) in (1..=MAX_N).enumerate() {
                    let h = s.run(Policy::AdapterHetero, n, store)?;
                    let mine = figures(&h, &usage);
                    saturated |= mine.3 || baselines[i].0 .3 || baselines[i].1 .3;
                    let (d, r) = (&baselines[i].0, &baselines[i].1);
                    vs[0].push(ratios(&mine, d));
                    vs[1].push(ratios(&mine, r));
                }
                let [vs_dram, vs_sram] = vs;
                cells.push(Cell {
                    sharing,
                    store,
                    vs_dram,
                    vs_sram,
                });
            }
        }
        Ok(Outcome { cells, saturated })
    }

    /// One ratio of a setting, computed alone (the bisection's cheap path).
    pub fn ratio(&self, setting: &Setting, c: &Conclusion) -> Result<f64> {
        let (s, usage) = self.scenario(setting, c.sharing)?;
        let mine = figures(&s.run(Policy::AdapterHetero, c.n, c.store)?, &usage);
        let base = figures(&s.run(c.baseline, c.n, TaskStore::Sram)?, &usage);
        Ok(ratios(&mine, &base)[c.metric.index()])
    }
}

/// (energy, latency, area, saturated) of one policy run.
fn figures(r: &crate::sim::PolicyReport, usage: &Usage) -> (f64, f64, f64, bool) {
    let q = r.request(usage);
    (q.energy_pj, q.latency_ns, r.area_mm2, q.saturated)
}

fn ratios(a: &(f64, f64, f64, bool), b: &(f64, f64, f64, bool)) -> [f64; 3] {
    [a.0 / b.0, a.1 / b.1, a.2 / b.2]
}

/// adapter-hetero / baseline ratios of one sharing and task store, index N - 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub sharing: Sharing,
    pub store: TaskStore,
    /// [energy, latency, area] per N.
    pub vs_dram: Vec<[f64; 3]>,
    pub vs_sram: Vec<[f64; 3]>,
}

/// The comparison at one setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub cells: Vec<Cell>,
    /// Some policy could not keep up with the request rate.
    pub saturated: bool,
}

/// energy, latency or area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Energy,
    Latency,
    Area,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Energy, Metric::Latency, Metric::Area];

    fn index(&self) -> usize {
        *self as usize
    }

    pub fn name(&self) -> &'static str {
        match self {
            Metric::Energy => "energy",
            Metric::Latency => "latency",
            Metric::Area => "area",
        }
    }
}

/// A statement checked at every setting: adapter-hetero uses less `metric` than `baseline`
/// at N tasks (with `sharing` and `store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Conclusion {
    pub sharing: Sharing,
    pub store: TaskStore,
    pub baseline: Policy,
    pub metric: Metric,
    pub n: u64,
}

impl Conclusion {
    /// Every conclusion the study checks.
    pub fn all() -> Vec<Conclusion> {
        let mut out = Vec::new();
        for sharing in SHARINGS {
            for store in TaskStore::ALL {
                for baseline in [Policy::AlbertDram, Policy::AlbertSram] {
                    for metric in Metric::ALL {
                        for n in CONCLUSION_NS {
                            out.push(Conclusion {
                                sharing,
                                store,
                                baseline,
                                metric,
                                n,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// Its ratio in an outcome.
    pub fn ratio(&self, o: &Outcome) -> f64 {
        o.series(self.sharing, self.store, self.baseline, self.metric)[self.n as usize - 1]
    }

    /// "adapter-hetero uses less energy than albert-dram at N = 8 (per-application, store sram)".
    pub fn statement(&self) -> String {
        format!(
            "adapter-hetero uses less {} than {} at N = {} ({} adapters, task store {})",
            self.metric.name(),
            self.baseline,
            self.n,
            self.sharing,
            self.store
        )
    }
}

impl Outcome {
    /// The ratios of one cell against one baseline on one metric, index N - 1.
    pub fn series(
        &self,
        sharing: Sharing,
        store: TaskStore,
        baseline: Policy,
        metric: Metric,
    ) -> Vec<f64> {
        self.cells
            .iter()
            .find(|c| c.sharing == sharing && c.store == store)
            .map(|c| {
                let v = if baseline == Policy::AlbertDram {
                    &c.vs_dram
                } else {
                    &c.vs_sram
                };
                v.iter().map(|r| r[metric.index()]).collect()
            })
            .unwrap_or_default()
    }

    /// Where adapter-hetero stops winning on `metric` against `baseline`.
    pub fn crossover(
        &self,
        sharing: Sharing,
        store: TaskStore,
        baseline: Policy,
        metric: Metric,
    ) -> crate::compare::Crossover {
        crate::compare::Crossover::from_wins(
            self.series(sharing, store, baseline, metric)
                .into_iter()
                .map(|r| r < 1.0),
        )
    }
}

/// One knob at its two ends, the others at their defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneAtATime {
    pub range: Range,
    pub default: Option<f64>,
    pub low: Outcome,
    pub high: Outcome,
}

/// Where a conclusion flips when one knob alone moves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flip {
    pub conclusion: Conclusion,
    pub holds_at_default: bool,
    pub knob: Knob,
    /// The end at which it flips (`low_end`: the range's min) and the value found by
    /// bisection where it first does (between the default, or the range's other end for the
    /// rate, and that end): it is flipped from `threshold` to `end`.
    pub end: f64,
    pub low_end: bool,
    pub threshold: f64,
}

/// The joint sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Joint {
    pub seed: u64,
    /// Each sample's knob values (in the order of the space's ranges) and outcome.
    pub values: Vec<Vec<f64>>,
    pub outcomes: Vec<Outcome>,
}

/// Everything the study found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Study {
    pub space: Space,
    pub default: Outcome,
    pub one_at_a_time: Vec<OneAtATime>,
    pub flips: Vec<Flip>,
    pub joint: Joint,
}

/// Run the study of `space` from `base`.
pub fn run(base: &Base, space: &Space) -> Result<Study> {
    let default = base.outcome(&[])?;
    let mut one = Vec::new();
    for r in &space.ranges {
        one.push(OneAtATime {
            range: r.clone(),
            default: base.default_of(r.knob),
            low: base.outcome(&[(r.knob, r.min)])?,
            high: base.outcome(&[(r.knob, r.max)])?,
        });
    }
    let flips = find_flips(base, &default, &one)?;
    let joint = joint_sample(base, space)?;
    Ok(Study {
        space: space.clone(),
        default,
        one_at_a_time: one,
        flips,
        joint,
    })
}

fn joint_sample(base: &Base, space: &Space) -> Result<Joint> {
    let mut rng = SplitMix64::new(space.seed);
    let mut values = Vec::with_capacity(space.samples);
    let mut outcomes = Vec::with_capacity(space.samples);
    for _ in 0..space.samples {
        let setting: Vec<(Knob, f64)> = space
            .ranges
            .iter()
            .map(|r| (r.knob, r.at(rng.next_open01())))
            .collect();
        outcomes.push(base.outcome(&setting)?);
        values.push(setting.into_iter().map(|(_, v)| v).collect());
    }
    Ok(Joint {
        seed: space.seed,
        values,
        outcomes,
    })
}

fn find_flips(base: &Base, default: &Outcome, one: &[OneAtATime]) -> Result<Vec<Flip>> {
    let mut flips = Vec::new();
    for c in Conclusion::all() {
        let holds = c.ratio(default) < 1.0;
        for o in one {
            let r = &o.range;
            for (end, outcome, other, low_end) in
                [(r.min, &o.low, r.max, true), (r.max, &o.high, r.min, false)]
            {
                if (c.ratio(outcome) < 1.0) == holds {
                    continue;
                }
                // Start from the default; for a knob without one (the rate: back to back) from
                // the other end when the conclusion is as at the default there, else the whole
                // range is flipped and the other end is the threshold.
                let threshold = match o.default {
                    Some(d) => bisect(base, &c, r, d, end, holds)?,
                    None if (base.ratio(&[(r.knob, other)], &c)? < 1.0) == holds => {
                        bisect(base, &c, r, other, end, holds)?
                    }
                    None => other,
                };
                flips.push(Flip {
                    conclusion: c,
                    holds_at_default: holds,
                    knob: r.knob,
                    end,
                    low_end,
                    threshold,
                });
            }
        }
    }
    Ok(flips)
}

/// The knob value nearest `start` (where the conclusion is `holds`) at which it no longer is,
/// between `start` and `end`, by bisection on the range's scale.
fn bisect(
    base: &Base,
    c: &Conclusion,
    r: &Range,
    start: f64,
    end: f64,
    holds: bool,
) -> Result<f64> {
    let (mut good, mut bad) = (r.fraction(start), r.fraction(end));
    for _ in 0..40 {
        let mid = 0.5 * (good + bad);
        let v = r.at(mid);
        if v == r.at(good) || v == r.at(bad) {
            break;
        }
        if (base.ratio(&[(r.knob, v)], c)? < 1.0) == holds {
            good = mid;
        } else {
            bad = mid;
        }
        if (bad - good).abs() < 1e-4 {
            break;
        }
    }
    Ok(r.at(bad))
}

/// Spearman rank correlation of two equally long series (0 when either is constant).
pub fn rank_correlation(x: &[f64], y: &[f64]) -> f64 {
    let rank = |v: &[f64]| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut ranks = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0;
            for k in &idx[i..=j] {
                ranks[*k] = avg;
            }
            i = j + 1;
        }
        ranks
    };
    let (rx, ry) = (rank(x), rank(y));
    let n = rx.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mean) * (b - mean);
        sxx += (a - mean) * (a - mean);
        syy += (b - mean) * (b - mean);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// The p-th quantile (0..=1) of `v` by linear interpolation between order statistics.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let pos = p.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (pos - lo as f64) * (s[hi] - s[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space_with(range: &str) -> String {
        format!(
            "model = \"albert-base\"\nsharing = \"shared\"\ntasks = 8\nseed = 1\nsamples = 4\n{range}"
        )
    }

    /// The error of a space with one range, as text.
    fn range_error(range: &str) -> String {
        Space::from_toml_str(&space_with(range), "s.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_integer_knob_range_without_a_whole_number_is_refused() {
        // Found by the hw_toml fuzz target (fuzz/): such a range loaded, then `Range::at`
        // panicked clamping to [ceil(min), floor(max)] = [2, 1].
        let err = range_error("[ranges.mac_array]\nmin = 1.2\nmax = 1.5\nsource = \"x\"\n");
        assert!(
            err.contains("ranges.mac_array") && err.contains("whole number"),
            "{err}"
        );
        let space = Space::from_toml_str(
            &space_with("[ranges.mac_array]\nmin = 1.2\nmax = 2.5\nsource = \"x\"\n"),
            "s.toml",
        )
        .unwrap();
        for u in [0.0, 0.5, 1.0] {
            assert_eq!(space.ranges[0].at(u), 2.0);
        }
    }

    #[test]
    fn a_range_with_min_above_max_is_refused_naming_it() {
        let err = range_error("[ranges.clock_ghz]\nmin = 2.0\nmax = 1.0\nsource = \"x\"\n");
        assert!(
            err.contains("s.toml")
                && err.contains("ranges.clock_ghz")
                && err.contains("min 2 > max 1"),
            "{err}"
        );
        let err = range_error("[ranges.bits_per_cell]\nmin = 1\nmax = 4\nsource = \"x\"\n");
        assert!(
            err.contains("ranges.bits_per_cell") && err.contains("1..=3"),
            "{err}"
        );
        let err = range_error("[ranges.clock_ghz]\nmin = 1.0\nmax = 2.0\nsource = \"\"\n");
        assert!(err.contains("ranges.clock_ghz.source"), "{err}");
        let err = range_error("[ranges.clock]\nmin = 1.0\nmax = 2.0\nsource = \"x\"\n");
        assert!(
            err.contains("clock_ghz") && err.contains("`clock`"),
            "{err}"
        );
    }

    #[test]
    fn the_builtin_space_names_a_source_for_every_knob() {
        let s = Space::builtin().unwrap();
        assert_eq!(s.ranges.len(), Knob::ALL.len());
        let anchor = concat!("docs/sources.md", "#sensitivity-ranges");
        assert!(s.ranges.iter().all(|r| r.source.contains(anchor)));
    }

    #[test]
    fn ranges_map_fractions_linearly_log_and_to_whole_values() {
        let r = |knob, min, max, log| Range {
            knob,
            min,
            max,
            log,
            source: "x".into(),
        };
        let lin = r(Knob::ClockGhz, 0.5, 1.5, false);
        assert_eq!((lin.at(0.0), lin.at(0.5), lin.at(1.0)), (0.5, 1.0, 1.5));
        let log = r(Knob::RatePerS, 0.1, 10.0, true);
        assert!((log.at(0.5) - 1.0).abs() < 1e-12);
        assert!((log.fraction(1.0) - 0.5).abs() < 1e-12);
        let int = r(Knob::MacArray, 8.0, 32.0, true);
        assert_eq!(int.at(0.5), 16.0);
        assert_eq!(r(Knob::BitsPerCell, 1.0, 3.0, false).at(0.8), 3.0);
    }

    #[test]
    fn rank_correlation_and_quantiles() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(rank_correlation(&x, &[10.0, 20.0, 30.0, 40.0]), 1.0);
        assert_eq!(rank_correlation(&x, &[4.0, 3.0, 2.0, 1.0]), -1.0);
        assert_eq!(rank_correlation(&x, &[5.0; 4]), 0.0);
        assert_eq!(quantile(&x, 0.5), 2.5);
        assert_eq!(quantile(&x, 0.0), 1.0);
        assert_eq!(quantile(&x, 1.0), 4.0);
    }
}
