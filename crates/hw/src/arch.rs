//! The accelerator description: MAC array, clock, operand widths, energy per operation scaled
//! from Horowitz (ISSCC 2014, 45 nm) to the chip's node, datapath area, buffers and the choice and
//! size of its main memories. Parsed from TOML (`data/edgebert.toml` is the default). Sources:
//! docs/sources.md#edgebert, docs/sources.md#horowitz-energies, docs/sources.md#node-scaling,
//! docs/sources.md#accelerator-assumptions.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{field_err, HwError, Result};
use crate::sourced::{Num, Provenance};

/// The default EdgeBERT-like architecture, embedded so it is found from any directory.
pub const BUILTIN_ARCH_TOML: &str = include_str!("../data/edgebert.toml");

/// Raw `[datapath]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatapathSpec {
    pub mac_rows: Num,
    pub mac_cols: Num,
    pub clock_ghz: Num,
    pub weight_bits: Num,
    pub activation_bits: Num,
    pub sfu_lanes: Num,
    pub datapath_area_overhead: Num,
}

/// Raw `[technology]` section: the node scaling rule's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnologySpec {
    pub node_nm: Num,
    pub vdd: Num,
    pub reference_node_nm: Num,
    pub reference_vdd: Num,
}

/// Horowitz energies at the reference node, pJ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergySpec {
    pub int16_add: Num,
    pub int8_mult: Num,
    pub fp16_add: Num,
    pub fp16_mult: Num,
}

/// Horowitz areas at the reference node, um^2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaSpec {
    pub int16_add: Num,
    pub int8_mult: Num,
    pub fp16_add: Num,
    pub fp16_mult: Num,
}

/// How a MAC is composed from the primitives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacSpec {
    pub mult_width_factor: Num,
}

/// A special function as fp16 multiplies and adds per element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpMix {
    pub mult: f64,
    pub add: f64,
    pub source: String,
}

/// Raw `[sfu_ops]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SfuSpec {
    pub softmax: OpMix,
    pub layernorm: OpMix,
    pub gelu: OpMix,
    pub tanh: OpMix,
    pub add: OpMix,
    pub entropy: OpMix,
}

/// Raw `[buffers]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSpec {
    pub input_kib: Num,
    pub mask_kib: Num,
    pub aux_kib: Num,
    pub double_buffered: bool,
    pub resident_weight_kib: Num,
}

/// A capacity as written in TOML: a number of decimal MB or the word "auto".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CapacityField {
    Mb(f64),
    Word(String),
}

/// A memory capacity: sized to the policy's need, or fixed (bits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Capacity {
    Auto,
    Bits(f64),
}

impl Capacity {
    /// Parse "auto" or a number of decimal MB (as used on the command line and in DSE spaces).
    pub fn parse(text: &str, what: &'static str) -> Result<Self> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Capacity::Auto);
        }
        match t.parse::<f64>() {
            Ok(mb) if mb.is_finite() && mb >= 0.0 => Ok(Capacity::Bits(mb * 8e6)),
            _ => Err(HwError::Spec {
                what,
                input: text.to_string(),
                expected: "\"auto\" or a capacity in decimal MB (e.g. 8 or 2.5)".into(),
            }),
        }
    }

    fn from_field(field: &CapacityField, origin: &str, name: &str) -> Result<Self> {
        match field {
            CapacityField::Mb(mb) if mb.is_finite() && *mb >= 0.0 => Ok(Capacity::Bits(mb * 8e6)),
            CapacityField::Word(w) if w.eq_ignore_ascii_case("auto") => Ok(Capacity::Auto),
            _ => Err(field_err(
                origin,
                name,
                "\"auto\" or a capacity in decimal MB",
            )),
        }
    }

    /// Human label: "auto" or "N MB".
    pub fn label(&self) -> String {
        match self {
            Capacity::Auto => "auto".into(),
            Capacity::Bits(b) => format!("{} MB", b / 8e6),
        }
    }
}

/// Raw `[memories]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoriesSpec {
    pub sram_cell: String,
    pub rram_cell: String,
    pub sram_mb: CapacityField,
    pub rram_mb: CapacityField,
    pub mask_in_slc: bool,
    pub min_parallel_banks: Num,
}

/// Raw `[power]` section: which power-management features the chip has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFeatures {
    /// Idle RRAM arrays are power gated (non-volatile: no data is lost).
    pub rram_power_gating: bool,
    /// Idle SRAM and buffers sit in a low-voltage retention mode.
    pub sram_retention: bool,
}

/// The architecture file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    pub name: String,
    pub datapath: DatapathSpec,
    pub technology: TechnologySpec,
    pub energy_45nm_pj: EnergySpec,
    pub area_45nm_um2: AreaSpec,
    pub mac: MacSpec,
    pub sfu_ops: SfuSpec,
    pub buffers: BufferSpec,
    pub memories: MemoriesSpec,
    pub power: PowerFeatures,
}

/// Per-element energies of the special functions at the chip's node, pJ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SfuEnergy {
    pub softmax: f64,
    pub layernorm: f64,
    pub gelu: f64,
    pub tanh: f64,
    pub add: f64,
    pub entropy: f64,
}

/// The architecture with every derived figure computed once, ready for fast simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accelerator {
    pub name: String,
    pub mac_rows: u64,
    pub mac_cols: u64,
    pub clock_ghz: f64,
    pub weight_bits: u64,
    pub activation_bits: u64,
    pub sfu_lanes: u64,
    /// Energy of one MAC at the chip's node, pJ.
    pub mac_pj: f64,
    pub sfu_pj: SfuEnergy,
    /// MAC array + special-function lanes, mm2 (buffers and memories counted separately).
    pub datapath_area_mm2: f64,
    /// Input + mask + auxiliary buffers, bits.
    pub buffer_bits: f64,
    /// A weight set up to this size stays resident and is read once per inference.
    pub resident_weight_bits: f64,
    pub sram_cell: String,
    pub rram_cell: String,
    pub sram_capacity: Capacity,
    pub rram_capacity: Capacity,
    pub mask_in_slc: bool,
    /// Main memories serve at least this many banks in parallel.
    pub min_parallel_banks: f64,
    /// Idle RRAM arrays are power gated.
    pub rram_power_gating: bool,
    /// Idle SRAM and buffers sit in retention mode.
    pub sram_retention: bool,
    /// Energy factor applied to the 45 nm figures.
    pub energy_scale: f64,
    /// Area factor applied to the 45 nm figures.
    pub area_scale: f64,
    spec: ArchSpec,
}

impl Accelerator {
    /// The embedded EdgeBERT-like default.
    pub fn builtin() -> Result<Self> {
        Self::from_toml_str(BUILTIN_ARCH_TOML, "built-in data/edgebert.toml")
    }

    /// Load an architecture file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse, validate and derive; `origin` names the document in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let spec: ArchSpec = crate::error::parse_toml(text, origin)?;
        Self::derive(spec, origin)
    }

    fn derive(spec: ArchSpec, origin: &str) -> Result<Self> {
        let d = &spec.datapath;
        let t = &spec.technology;
        let node = t.node_nm.positive(origin, "technology.node_nm")?;
        let ref_node = t
            .reference_node_nm
            .positive(origin, "technology.reference_node_nm")?;
        let vdd = t.vdd.positive(origin, "technology.vdd")?;
        let ref_vdd = t
            .reference_vdd
            .positive(origin, "technology.reference_vdd")?;
        let energy_scale = (node / ref_node) * (vdd / ref_vdd).powi(2);
        let area_scale = (node / ref_node).powi(2);
        let e = &spec.energy_45nm_pj;
        let width = spec
            .mac
            .mult_width_factor
            .positive(origin, "mac.mult_width_factor")?;
        let mac45 = e.int8_mult.positive(origin, "energy_45nm_pj.int8_mult")? * width
            + e.int16_add.positive(origin, "energy_45nm_pj.int16_add")?;
        let fp_mult = e.fp16_mult.positive(origin, "energy_45nm_pj.fp16_mult")?;
        let fp_add = e.fp16_add.positive(origin, "energy_45nm_pj.fp16_add")?;
        let s = &spec.sfu_ops;
        let mix = |m: &OpMix, name: &str| -> Result<f64> {
            if !(m.mult >= 0.0 && m.add >= 0.0) || m.source.trim().is_empty() {
                return Err(field_err(
                    origin,
                    &format!("sfu_ops.{name}"),
                    "mult >= 0, add >= 0 and a source",
                ));
            }
            Ok((m.mult * fp_mult + m.add * fp_add) * energy_scale)
        };
        let sfu_pj = SfuEnergy {
            softmax: mix(&s.softmax, "softmax")?,
            layernorm: mix(&s.layernorm, "layernorm")?,
            gelu: mix(&s.gelu, "gelu")?,
            tanh: mix(&s.tanh, "tanh")?,
            add: mix(&s.add, "add")?,
            entropy: mix(&s.entropy, "entropy")?,
        };
        let a = &spec.area_45nm_um2;
        let overhead = d
            .datapath_area_overhead
            .positive(origin, "datapath.datapath_area_overhead")?;
        let mac_um2 = a.int8_mult.positive(origin, "area_45nm_um2.int8_mult")? * width
            + a.int16_add.positive(origin, "area_45nm_um2.int16_add")?;
        let lane_um2 = a.fp16_mult.positive(origin, "area_45nm_um2.fp16_mult")?
            + a.fp16_add.positive(origin, "area_45nm_um2.fp16_add")?;
        let mac_rows = d.mac_rows.count(origin, "datapath.mac_rows")?;
        let mac_cols = d.mac_cols.count(origin, "datapath.mac_cols")?;
        let sfu_lanes = d.sfu_lanes.count(origin, "datapath.sfu_lanes")?;
        let datapath_um2 =
            ((mac_rows * mac_cols) as f64 * mac_um2 + sfu_lanes as f64 * lane_um2) * overhead;
        let b = &spec.buffers;
        let kib_bits = 1024.0 * 8.0;
        let buffer_bits = (b.input_kib.positive(origin, "buffers.input_kib")?
            + b.mask_kib.non_negative(origin, "buffers.mask_kib")?
            + b.aux_kib.non_negative(origin, "buffers.aux_kib")?)
            * kib_bits;
        let m = &spec.memories;
        Ok(Accelerator {
            name: spec.name.clone(),
            mac_rows,
            mac_cols,
            clock_ghz: d.clock_ghz.positive(origin, "datapath.clock_ghz")?,
            weight_bits: d.weight_bits.count(origin, "datapath.weight_bits")?,
            activation_bits: d
                .activation_bits
                .count(origin, "datapath.activation_bits")?,
            sfu_lanes,
            mac_pj: mac45 * energy_scale,
            sfu_pj,
            datapath_area_mm2: datapath_um2 * area_scale / 1e6,
            buffer_bits,
            resident_weight_bits: b
                .resident_weight_kib
                .non_negative(origin, "buffers.resident_weight_kib")?
                * kib_bits,
            sram_cell: m.sram_cell.clone(),
            rram_cell: m.rram_cell.clone(),
            sram_capacity: Capacity::from_field(&m.sram_mb, origin, "memories.sram_mb")?,
            rram_capacity: Capacity::from_field(&m.rram_mb, origin, "memories.rram_mb")?,
            mask_in_slc: m.mask_in_slc,
            min_parallel_banks: m
                .min_parallel_banks
                .positive(origin, "memories.min_parallel_banks")?,
            rram_power_gating: spec.power.rram_power_gating,
            sram_retention: spec.power.sram_retention,
            energy_scale,
            area_scale,
            spec,
        })
    }

    /// A copy with a square `size x size` MAC array (design-space sweeps).
    pub fn with_mac_array(&self, size: u64) -> Self {
        let mut out = self.clone();
        let old = (self.mac_rows * self.mac_cols) as f64;
        let a = &self.spec.area_45nm_um2;
        let mac_um2 = a.int8_mult.value * self.spec.mac.mult_width_factor.value + a.int16_add.value;
        let mac_mm2 =
            mac_um2 * self.spec.datapath.datapath_area_overhead.value * self.area_scale / 1e6;
        out.datapath_area_mm2 += ((size * size) as f64 - old) * mac_mm2;
        out.mac_rows = size;
        out.mac_cols = size;
        out
    }

    /// The spec as parsed (for reports).
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// Every sourced number of the architecture, for assumption lists.
    pub fn provenance(&self) -> Vec<Provenance> {
        let s = &self.spec;
        let d = &s.datapath;
        let t = &s.technology;
        let e = &s.energy_45nm_pj;
        let a = &s.area_45nm_um2;
        let b = &s.buffers;
        let mut out = vec![
            Provenance::of("arch.datapath.mac_rows", &d.mac_rows),
            Provenance::of("arch.datapath.mac_cols", &d.mac_cols),
            Provenance::of("arch.datapath.clock_ghz", &d.clock_ghz),
            Provenance::of("arch.datapath.weight_bits", &d.weight_bits),
            Provenance::of("arch.datapath.activation_bits", &d.activation_bits),
            Provenance::of("arch.datapath.sfu_lanes", &d.sfu_lanes),
            Provenance::of(
                "arch.datapath.datapath_area_overhead",
                &d.datapath_area_overhead,
            ),
            Provenance::of("arch.technology.node_nm", &t.node_nm),
            Provenance::of("arch.technology.vdd", &t.vdd),
            Provenance::of("arch.technology.reference_node_nm", &t.reference_node_nm),
            Provenance::of("arch.technology.reference_vdd", &t.reference_vdd),
            Provenance::of("arch.energy_45nm_pj.int16_add", &e.int16_add),
            Provenance::of("arch.energy_45nm_pj.int8_mult", &e.int8_mult),
            Provenance::of("arch.energy_45nm_pj.fp16_add", &e.fp16_add),
            Provenance::of("arch.energy_45nm_pj.fp16_mult", &e.fp16_mult),
            Provenance::of("arch.area_45nm_um2.int16_add", &a.int16_add),
            Provenance::of("arch.area_45nm_um2.int8_mult", &a.int8_mult),
            Provenance::of("arch.area_45nm_um2.fp16_add", &a.fp16_add),
            Provenance::of("arch.area_45nm_um2.fp16_mult", &a.fp16_mult),
            Provenance::of("arch.mac.mult_width_factor", &s.mac.mult_width_factor),
            Provenance::of("arch.buffers.input_kib", &b.input_kib),
            Provenance::of("arch.buffers.mask_kib", &b.mask_kib),
            Provenance::of("arch.buffers.aux_kib", &b.aux_kib),
            Provenance::of("arch.buffers.resident_weight_kib", &b.resident_weight_kib),
            Provenance::of(
                "arch.memories.min_parallel_banks",
                &s.memories.min_parallel_banks,
            ),
        ];
        let f = &s.sfu_ops;
        for (name, m) in [
            ("softmax", &f.softmax),
            ("layernorm", &f.layernorm),
            ("gelu", &f.gelu),
            ("tanh", &f.tanh),
            ("add", &f.add),
            ("entropy", &f.entropy),
        ] {
            out.push(Provenance {
                key: format!("arch.sfu_ops.{name} (fp16 mult, add per element)"),
                value: m.mult + m.add,
                source: format!("{} mult + {} add: {}", m.mult, m.add, m.source),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_derives_hand_computed_figures() {
        let a = Accelerator::builtin().unwrap();
        assert_eq!((a.mac_rows, a.mac_cols, a.sfu_lanes), (16, 16, 16));
        // energy scale = (22/45) * (0.8/0.9)^2
        let scale = (22.0 / 45.0) * (0.8f64 / 0.9).powi(2);
        assert!((a.energy_scale - scale).abs() < 1e-12);
        // MAC at 45 nm = 2 * 0.2 + 0.05 = 0.45 pJ
        assert!((a.mac_pj - 0.45 * scale).abs() < 1e-12);
        // softmax = 5 * 1.1 + 5 * 0.4 = 7.5 pJ at 45 nm
        assert!((a.sfu_pj.softmax - 7.5 * scale).abs() < 1e-12);
        // datapath = (256 * (2*282 + 67) + 16 * (1640 + 1360)) * 1.5 um2 at 45 nm, x (22/45)^2
        let um2 = (256.0 * 631.0 + 16.0 * 3000.0) * 1.5;
        assert!((a.datapath_area_mm2 - um2 * (22.0f64 / 45.0).powi(2) / 1e6).abs() < 1e-12);
        assert_eq!(a.buffer_bits, 76.0 * 1024.0 * 8.0);
        assert_eq!(a.sram_capacity, Capacity::Auto);
        assert_eq!(a.min_parallel_banks, 16.0);
    }

    #[test]
    fn mac_array_resize_changes_only_the_array_area() {
        let a = Accelerator::builtin().unwrap();
        let b = a.with_mac_array(32);
        let per_mac = (2.0 * 282.0 + 67.0) * 1.5 * a.area_scale / 1e6;
        assert!((b.datapath_area_mm2 - a.datapath_area_mm2 - 768.0 * per_mac).abs() < 1e-12);
        assert_eq!(b.mac_rows, 32);
    }

    #[test]
    fn capacity_parsing_and_errors() {
        assert_eq!(Capacity::parse("auto", "sram").unwrap(), Capacity::Auto);
        assert_eq!(
            Capacity::parse("2.5", "sram").unwrap(),
            Capacity::Bits(2.0e7)
        );
        assert!(Capacity::parse("big", "sram").is_err());
        let text = BUILTIN_ARCH_TOML.replace("sram_mb = \"auto\"", "sram_mb = \"lots\"");
        let err = Accelerator::from_toml_str(&text, "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.toml") && err.contains("memories.sram_mb"),
            "{err}"
        );
    }
}
