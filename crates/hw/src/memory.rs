//! Memory technologies: the NVMExplorer anchor rows (2 MB, 22 nm, 1 bit per cell), the capacity
//! scaling by bank tiling, the multi-level-cell model and off-chip DRAM. The formulas are written
//! out in `data/memory.toml`; this file only evaluates them. Sources:
//! docs/sources.md#nvmexplorer-memory-rows, docs/sources.md#memory-scaling, docs/sources.md#dram.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{field_err, HwError, Result};
use crate::sourced::{Num, Provenance};

/// The default technology table, embedded so the binary works from any directory.
pub const BUILTIN_MEMORY_TOML: &str = include_str!("../data/memory.toml");

/// Technology family of a cell row: decides whether multi-level cells are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Technology {
    Sram,
    Rram,
}

/// One NVMExplorer row: a 2 MB array characterised at the anchor point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellRow {
    pub name: String,
    pub technology: Technology,
    pub cell: String,
    pub optimised_for: String,
    pub area_mm2: f64,
    pub read_ns: f64,
    pub write_ns: f64,
    pub read_pj: f64,
    pub write_pj: f64,
    pub leakage_mw: f64,
    pub max_bits_per_cell: u32,
    pub source: String,
}

/// The point at which every cell row was characterised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub capacity_bytes: Num,
    pub node_nm: Num,
    pub word_bits: Num,
}

/// Coefficients of the capacity and multi-level-cell scaling rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    pub wire_ns_per_mm: Num,
    pub wire_pj_per_bit_mm: Num,
    pub mlc_read_latency_per_extra_bit: Num,
    pub mlc_read_energy_per_extra_bit: Num,
    pub mlc_write_per_extra_bit: Num,
    pub mlc_area_overhead_per_extra_bit: Num,
}

/// Off-chip DRAM: energy per bit moved, interface bandwidth, size, and the dies' background
/// power (self-refresh when idle, active standby while a switch streams data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DramSpec {
    pub name: String,
    pub energy_pj_per_bit: Num,
    pub bandwidth_gb_s: Num,
    pub capacity_bytes: Num,
    pub die_bytes: Num,
    pub die_width_bits: Num,
    pub interface_bits: Num,
    pub self_refresh_mw_per_die: Num,
    pub active_standby_mw_per_die: Num,
}

impl DramSpec {
    /// Dies powered to hold `bytes`: at least the interface's width of dies, more when the
    /// data needs them; none when nothing is kept in DRAM.
    pub fn dies_for(&self, bytes: f64) -> f64 {
        if bytes <= 0.0 {
            return 0.0;
        }
        let interface = (self.interface_bits.value / self.die_width_bits.value).ceil();
        interface.max((bytes / self.die_bytes.value).ceil())
    }
}

/// Power management figures of the on-chip memories (which of them a chip uses is the
/// architecture's `[power]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSpec {
    /// Idle SRAM leakage in retention mode, as a fraction of its active leakage.
    pub sram_retention_leakage_factor: Num,
    /// Latency of waking a power-gated RRAM array.
    pub rram_wake_ns: Num,
    /// Energy of one wake-up, as nanoseconds of the array's own leakage (its break-even time).
    pub rram_wake_energy_leakage_ns: Num,
}

/// A whole technology file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryTable {
    pub anchor: Anchor,
    pub scaling: Scaling,
    pub cells: Vec<CellRow>,
    pub dram: DramSpec,
    pub power: PowerSpec,
}

/// A memory instance after scaling: what the simulator charges per access, per mm2 and per ns.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct MemoryModel {
    /// Bits it can store (cells x bits per cell).
    pub capacity_bits: f64,
    pub bits_per_cell: u32,
    /// Number of anchor-sized banks (fractional: a partial bank is a proportionally smaller array).
    pub banks: f64,
    /// Banks read or written in parallel (at least one; raised by the architecture's sub-banking).
    pub parallel_banks: f64,
    pub area_mm2: f64,
    pub read_ns: f64,
    pub write_ns: f64,
    /// Energy per `word_bits` read.
    pub read_pj: f64,
    pub write_pj: f64,
    pub leakage_mw: f64,
    pub word_bits: f64,
}

impl MemoryModel {
    /// Read bandwidth in bits per ns: banks work in parallel, one word per read latency each.
    pub fn read_bits_per_ns(&self) -> f64 {
        self.word_bits * self.parallel_banks / self.read_ns
    }

    /// Write bandwidth in bits per ns, by the same rule as reads.
    pub fn write_bits_per_ns(&self) -> f64 {
        self.word_bits * self.parallel_banks / self.write_ns
    }

    /// The same memory split into at least `banks` independently accessed sub-banks: more
    /// bandwidth, same energy per access, area and leakage (sub-banking overhead neglected).
    pub fn with_min_parallel_banks(mut self, banks: f64) -> Self {
        self.parallel_banks = self.parallel_banks.max(banks);
        self
    }
}

impl MemoryTable {
    /// The embedded default table.
    pub fn builtin() -> Result<Self> {
        Self::from_toml_str(BUILTIN_MEMORY_TOML, "built-in data/memory.toml")
    }

    /// Load a user table from a file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and validate a table; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let table: MemoryTable = crate::error::parse_toml(text, origin)?;
        table.validate(origin)?;
        Ok(table)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        self.anchor
            .capacity_bytes
            .positive(origin, "anchor.capacity_bytes")?;
        self.anchor.node_nm.positive(origin, "anchor.node_nm")?;
        self.anchor.word_bits.positive(origin, "anchor.word_bits")?;
        let s = &self.scaling;
        s.wire_ns_per_mm
            .non_negative(origin, "scaling.wire_ns_per_mm")?;
        s.wire_pj_per_bit_mm
            .non_negative(origin, "scaling.wire_pj_per_bit_mm")?;
        s.mlc_read_latency_per_extra_bit
            .non_negative(origin, "scaling.mlc_read_latency_per_extra_bit")?;
        s.mlc_read_energy_per_extra_bit
            .non_negative(origin, "scaling.mlc_read_energy_per_extra_bit")?;
        s.mlc_write_per_extra_bit
            .non_negative(origin, "scaling.mlc_write_per_extra_bit")?;
        s.mlc_area_overhead_per_extra_bit
            .non_negative(origin, "scaling.mlc_area_overhead_per_extra_bit")?;
        self.dram
            .energy_pj_per_bit
            .positive(origin, "dram.energy_pj_per_bit")?;
        self.dram
            .bandwidth_gb_s
            .positive(origin, "dram.bandwidth_gb_s")?;
        let d = &self.dram;
        d.capacity_bytes.positive(origin, "dram.capacity_bytes")?;
        d.die_bytes.positive(origin, "dram.die_bytes")?;
        d.die_width_bits.positive(origin, "dram.die_width_bits")?;
        d.interface_bits.positive(origin, "dram.interface_bits")?;
        d.self_refresh_mw_per_die
            .non_negative(origin, "dram.self_refresh_mw_per_die")?;
        d.active_standby_mw_per_die
            .non_negative(origin, "dram.active_standby_mw_per_die")?;
        let p = &self.power;
        let retention = p
            .sram_retention_leakage_factor
            .non_negative(origin, "power.sram_retention_leakage_factor")?;
        if retention > 1.0 {
            return Err(field_err(
                origin,
                "power.sram_retention_leakage_factor",
                format!("a fraction in [0, 1], found {retention}"),
            ));
        }
        p.rram_wake_ns.non_negative(origin, "power.rram_wake_ns")?;
        p.rram_wake_energy_leakage_ns
            .non_negative(origin, "power.rram_wake_energy_leakage_ns")?;
        if self.cells.is_empty() {
            return Err(field_err(origin, "cells", "at least one [[cells]] row"));
        }
        self.cells.iter().try_for_each(|c| c.validate(origin))
    }

    /// The row called `name`, or an error listing the known rows.
    pub fn cell(&self, name: &str) -> Result<&CellRow> {
        self.cells
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| HwError::Unknown {
                what: "memory cell row",
                name: name.to_string(),
                known: self
                    .cells
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Bits held by one anchor array (one bit per cell).
    pub fn anchor_cells(&self) -> f64 {
        self.anchor.capacity_bytes.value * 8.0
    }

    /// Scale `row` to an array of `cells` cells holding `bits_per_cell` bits each.
    ///
    /// At `cells == anchor cells` and one bit per cell this returns the row unchanged, which is
    /// what makes the NVMExplorer anchor the single point of truth.
    pub fn scale(&self, row: &CellRow, cells: f64, bits_per_cell: u32) -> MemoryModel {
        let s = &self.scaling;
        let k = cells / self.anchor_cells();
        let extra = f64::from(bits_per_cell.saturating_sub(1));
        let word_bits = self.anchor.word_bits.value;
        let route_mm = row.area_mm2.sqrt() * (k.sqrt() - 1.0).max(0.0);
        let wire_ns = route_mm * s.wire_ns_per_mm.value;
        let wire_pj = word_bits * route_mm * s.wire_pj_per_bit_mm.value;
        MemoryModel {
            capacity_bits: cells * f64::from(bits_per_cell),
            bits_per_cell,
            banks: k,
            parallel_banks: k.max(1.0),
            area_mm2: k * row.area_mm2 * (1.0 + s.mlc_area_overhead_per_extra_bit.value * extra),
            read_ns: row.read_ns * (1.0 + s.mlc_read_latency_per_extra_bit.value * extra) + wire_ns,
            write_ns: row.write_ns * (1.0 + s.mlc_write_per_extra_bit.value * extra) + wire_ns,
            read_pj: row.read_pj * (1.0 + s.mlc_read_energy_per_extra_bit.value * extra) + wire_pj,
            write_pj: row.write_pj * (1.0 + s.mlc_write_per_extra_bit.value * extra) + wire_pj,
            leakage_mw: k * row.leakage_mw,
            word_bits,
        }
    }

    /// Scale `row` to hold `bits` of data at `bits_per_cell`, checking the cell supports it.
    pub fn scale_for_bits(
        &self,
        row: &CellRow,
        bits: f64,
        bits_per_cell: u32,
    ) -> Result<MemoryModel> {
        row.check_bits_per_cell(bits_per_cell)?;
        Ok(self.scale(row, bits / f64::from(bits_per_cell), bits_per_cell))
    }

    /// Every sourced number of the table, for assumption lists.
    pub fn provenance(&self) -> Vec<Provenance> {
        let s = &self.scaling;
        let mut out = vec![
            Provenance::of("memory.anchor.capacity_bytes", &self.anchor.capacity_bytes),
            Provenance::of("memory.anchor.node_nm", &self.anchor.node_nm),
            Provenance::of("memory.anchor.word_bits", &self.anchor.word_bits),
            Provenance::of("memory.scaling.wire_ns_per_mm", &s.wire_ns_per_mm),
            Provenance::of("memory.scaling.wire_pj_per_bit_mm", &s.wire_pj_per_bit_mm),
            Provenance::of(
                "memory.scaling.mlc_read_latency_per_extra_bit",
                &s.mlc_read_latency_per_extra_bit,
            ),
            Provenance::of(
                "memory.scaling.mlc_read_energy_per_extra_bit",
                &s.mlc_read_energy_per_extra_bit,
            ),
            Provenance::of(
                "memory.scaling.mlc_write_per_extra_bit",
                &s.mlc_write_per_extra_bit,
            ),
            Provenance::of(
                "memory.scaling.mlc_area_overhead_per_extra_bit",
                &s.mlc_area_overhead_per_extra_bit,
            ),
            Provenance::of(
                "memory.dram.energy_pj_per_bit",
                &self.dram.energy_pj_per_bit,
            ),
            Provenance::of("memory.dram.bandwidth_gb_s", &self.dram.bandwidth_gb_s),
            Provenance::of("memory.dram.capacity_bytes", &self.dram.capacity_bytes),
            Provenance::of("memory.dram.die_bytes", &self.dram.die_bytes),
            Provenance::of("memory.dram.die_width_bits", &self.dram.die_width_bits),
            Provenance::of("memory.dram.interface_bits", &self.dram.interface_bits),
            Provenance::of(
                "memory.dram.self_refresh_mw_per_die",
                &self.dram.self_refresh_mw_per_die,
            ),
            Provenance::of(
                "memory.dram.active_standby_mw_per_die",
                &self.dram.active_standby_mw_per_die,
            ),
            Provenance::of(
                "memory.power.sram_retention_leakage_factor",
                &self.power.sram_retention_leakage_factor,
            ),
            Provenance::of("memory.power.rram_wake_ns", &self.power.rram_wake_ns),
            Provenance::of(
                "memory.power.rram_wake_energy_leakage_ns",
                &self.power.rram_wake_energy_leakage_ns,
            ),
        ];
        out.extend(self.cells.iter().map(|c| Provenance {
            key: format!("memory.cells.{}", c.name),
            value: c.area_mm2,
            source: format!(
                "{} ({} opt. {}): {} mm2, read {} ns / {} pJ, write {} ns / {} pJ, leakage {} mW",
                c.source,
                c.cell,
                c.optimised_for,
                c.area_mm2,
                c.read_ns,
                c.read_pj,
                c.write_ns,
                c.write_pj,
                c.leakage_mw
            ),
        }));
        out
    }
}

impl CellRow {
    fn validate(&self, origin: &str) -> Result<()> {
        let fields = [
            ("area_mm2", self.area_mm2),
            ("read_ns", self.read_ns),
            ("write_ns", self.write_ns),
            ("read_pj", self.read_pj),
            ("write_pj", self.write_pj),
            ("leakage_mw", self.leakage_mw),
        ];
        for (field, v) in fields {
            if !(v.is_finite() && v > 0.0) {
                return Err(field_err(
                    origin,
                    &format!("cells.{}.{field}", self.name),
                    "a finite value > 0",
                ));
            }
        }
        if !(1..=3).contains(&self.max_bits_per_cell) {
            return Err(field_err(
                origin,
                &format!("cells.{}.max_bits_per_cell", self.name),
                "1, 2 or 3",
            ));
        }
        if self.source.trim().is_empty() {
            return Err(field_err(
                origin,
                &format!("cells.{}.source", self.name),
                "a non-empty source",
            ));
        }
        Ok(())
    }

    /// Refuse bits per cell beyond what the technology supports (SRAM is single-level).
    pub fn check_bits_per_cell(&self, bits_per_cell: u32) -> Result<()> {
        if bits_per_cell == 0 || bits_per_cell > self.max_bits_per_cell {
            return Err(HwError::Spec {
                what: "bits per cell",
                input: bits_per_cell.to_string(),
                expected: format!(
                    "1..={} for cell row `{}`",
                    self.max_bits_per_cell, self.name
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MemoryTable {
        MemoryTable::builtin().expect("built-in table parses")
    }

    #[test]
    fn every_reference_row_is_reproduced_exactly_at_the_anchor() {
        let t = table();
        // (name, area, read ns, write ns, read pJ, write pJ, leakage mW), the rows of
        // docs/sources.md#nvmexplorer-memory-rows.
        let rows = [
            (
                "rram-best-readedp",
                0.526,
                0.793,
                5.53,
                6.178,
                49.72,
                11.979,
            ),
            (
                "rram-readenergy",
                0.443,
                13.737,
                16.659,
                1.118,
                83.81,
                1.316,
            ),
            (
                "rram-readlatency",
                0.576,
                0.781,
                5.53,
                7.253,
                47.951,
                23.112,
            ),
            (
                "rram-writelatency",
                0.639,
                0.849,
                5.51,
                11.149,
                49.729,
                44.408,
            ),
            ("sram-readedp", 1.309, 4.684, 4.679, 1.128, 17.016, 56.345),
            (
                "sram-readlatency",
                1.291,
                2.614,
                2.608,
                36.826,
                6.625,
                54.796,
            ),
            ("sram-writeedp", 1.387, 3.676, 3.67, 4.606, 2.565, 66.9),
        ];
        assert_eq!(t.cells.len(), rows.len());
        for (name, area, rns, wns, rpj, wpj, leak) in rows {
            let row = t.cell(name).unwrap();
            let m = t
                .scale_for_bits(row, 2.0 * 1024.0 * 1024.0 * 8.0, 1)
                .unwrap();
            assert_eq!(m.banks, 1.0, "{name}");
            assert_eq!(
                (
                    m.area_mm2,
                    m.read_ns,
                    m.write_ns,
                    m.read_pj,
                    m.write_pj,
                    m.leakage_mw
                ),
                (area, rns, wns, rpj, wpj, leak),
                "{name}"
            );
        }
    }

    #[test]
    fn capacity_scaling_is_monotonic_and_tiles_banks() {
        let t = table();
        for row in &t.cells {
            let mut prev = t.scale(row, t.anchor_cells() / 4.0, 1);
            for factor in [0.5, 1.0, 2.0, 4.0, 16.0, 64.0] {
                let m = t.scale(row, t.anchor_cells() * factor, 1);
                assert!(
                    m.area_mm2 > prev.area_mm2 && m.leakage_mw > prev.leakage_mw,
                    "{}",
                    row.name
                );
                assert!(
                    m.read_ns >= prev.read_ns && m.read_pj >= prev.read_pj,
                    "{}",
                    row.name
                );
                prev = m;
            }
        }
        // 4 banks of sram-readedp: area and leakage x4; route = sqrt(1.309) * (2 - 1) mm.
        let row = t.cell("sram-readedp").unwrap();
        let m = t.scale(row, 4.0 * t.anchor_cells(), 1);
        let route = 1.309f64.sqrt();
        assert!((m.area_mm2 - 4.0 * 1.309).abs() < 1e-12);
        assert!((m.leakage_mw - 4.0 * 56.345).abs() < 1e-12);
        assert!((m.read_ns - (4.684 + 0.1 * route)).abs() < 1e-12);
        assert!((m.read_pj - (1.128 + 64.0 * 0.1 * route)).abs() < 1e-12);
        assert!((m.read_bits_per_ns() - 64.0 * 4.0 / m.read_ns).abs() < 1e-12);
    }

    #[test]
    fn more_bits_per_cell_means_less_area_but_slower_costlier_reads() {
        let t = table();
        let row = t.cell("rram-best-readedp").unwrap();
        for bits in [
            t.anchor_cells(),
            8.0 * t.anchor_cells(),
            64.0 * t.anchor_cells(),
        ] {
            let m: Vec<MemoryModel> = (1..=3)
                .map(|b| t.scale_for_bits(row, bits, b).unwrap())
                .collect();
            for w in m.windows(2) {
                assert!(w[1].area_mm2 < w[0].area_mm2);
                assert!(w[1].leakage_mw < w[0].leakage_mw);
                assert!(w[1].read_ns > w[0].read_ns);
            }
        }
        // Sensing: on the same array (same cells) every extra bit costs a slower, costlier read.
        // (For a fixed amount of data the denser array also has a shorter H-tree, which can win
        // back part of the read energy at large capacities: that is the model, not an accident.)
        for cells in [t.anchor_cells(), 8.0 * t.anchor_cells()] {
            let m: Vec<MemoryModel> = (1..=3).map(|b| t.scale(row, cells, b)).collect();
            for w in m.windows(2) {
                assert!(w[1].read_ns > w[0].read_ns && w[1].read_pj > w[0].read_pj);
                assert!(w[1].write_ns > w[0].write_ns && w[1].write_pj > w[0].write_pj);
            }
        }
        // 8 anchors of data at 2 bpc: 4 banks of cells -> area 4 * 0.526 * 1.05;
        // read latency 2x the SLC sense plus the wire over sqrt(0.526) * (2 - 1) mm.
        let bits = 8.0 * t.anchor_cells();
        let m = t.scale_for_bits(row, bits, 2).unwrap();
        let route = 0.526f64.sqrt();
        assert!((m.area_mm2 - 4.0 * 0.526 * 1.05).abs() < 1e-12);
        assert!((m.read_ns - (2.0 * 0.793 + 0.1 * route)).abs() < 1e-12);
        assert!((m.read_pj - (1.5 * 6.178 + 6.4 * route)).abs() < 1e-12);
        assert_eq!(m.capacity_bits, bits);
    }

    #[test]
    fn sram_refuses_multi_level_cells() {
        let t = table();
        let err = t
            .scale_for_bits(t.cell("sram-readedp").unwrap(), 1e6, 2)
            .unwrap_err();
        assert!(err.to_string().contains("sram-readedp"), "{err}");
    }

    #[test]
    fn missing_source_is_rejected_with_the_field_name() {
        let text = BUILTIN_MEMORY_TOML.replace(
            "source = \"assumed: a 4 GiB LPDDR4 part, typical of edge SoCs; docs/sources.md#dram\"",
            "source = \"\"",
        );
        let err = MemoryTable::from_toml_str(&text, "test.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("dram.capacity_bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_gating_figure_without_its_source_is_rejected_with_the_field_name() {
        let table = table();
        let source = &table.power.rram_wake_ns.source;
        let text = BUILTIN_MEMORY_TOML.replace(&format!("source = \"{source}\""), "source = \" \"");
        assert_ne!(text, BUILTIN_MEMORY_TOML);
        let err = MemoryTable::from_toml_str(&text, "gating.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gating.toml")
                && err.contains("power.rram_wake_ns")
                && err.contains("source"),
            "{err}"
        );
        let text = BUILTIN_MEMORY_TOML.replace(
            "sram_retention_leakage_factor = { value = 0.3,",
            "sram_retention_leakage_factor = { value = 1.5,",
        );
        let err = MemoryTable::from_toml_str(&text, "r.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("power.sram_retention_leakage_factor"), "{err}");
    }

    #[test]
    fn dram_figures_follow_from_the_jedec_memspec_currents() {
        // JEDEC_8Gb_LPDDR4-3200_16bit (DRAMSys): VDD1 1.8 V, VDD2 = VDDQ = 1.1 V.
        let d = table().dram;
        let read_w: f64 = (0.275 - 0.030) * 1.1 + (0.150 - 0.00075) * 1.1;
        let pj_per_bit = read_w / (3200e6 * 16.0) * 1e12;
        assert!((pj_per_bit - 8.470).abs() < 1e-3, "{pj_per_bit}");
        assert!((d.energy_pj_per_bit.value - 8.47).abs() < 1e-12);
        assert!(
            (d.self_refresh_mw_per_die.value - (0.3 * 1.8 + 0.5 * 1.1 + 0.1 * 1.1)).abs() < 1e-12
        );
        assert!(
            (d.active_standby_mw_per_die.value - (2.25 * 1.8 + 30.0 * 1.1 + 0.75 * 1.1)).abs()
                < 1e-12
        );
        // a x32 interface of x16 dies powers two dies; 3 GiB of data needs three
        assert_eq!(d.dies_for(0.0), 0.0);
        assert_eq!(d.dies_for(1.0), 2.0);
        assert_eq!(d.dies_for(3.0 * 1024.0 * 1024.0 * 1024.0), 3.0);
    }
}
