//! Compression plans and fault specs: the string grammar the CLI takes, and the
//! equivalent serde structs for TOML experiment files.
//!
//! # Plan grammar
//!
//! ```text
//! plan     := stage ('+' stage)*          at most one stage of each kind, any order
//! stage    := format | prune | encoding | scope
//! format   := 'fp32' | 'fp16' | 'bf16' | 'edgebert8'
//!           | 'int' B (':' ('per-tensor' | 'per-channel' | 'sym' | 'asym'))*
//!                                         B in 2..=8; default per-tensor, sym
//!           | 'af' N 'e' E                AdaptivFloat, N in 2..=16, E in 1..=7, E < N
//!           | 'q' M '.' N                 signed fixed point, 1 + M + N in 2..=32 bits
//! prune    := 'prune=' S (':' ('per-tensor' | 'global' | 'emb'))*
//!                                         S in [0, 1); default per-tensor, no embeddings
//! encoding := 'dense' | 'bitmask'         default dense
//! scope    := 'scope=' ('matrices' | 'weights' | 'all')
//!                                         tensors quantized; default weights
//! ```
//!
//! Examples: `int8`, `int4:per-channel:asym`, `af8e3`, `edgebert8`, `q4.11`, `fp16`,
//! `af8e3+prune=0.5:global+bitmask`. A plan without a format stage keeps fp32 codes.
//!
//! Which tensors each stage touches ([`TensorRole`]): pruning takes matrices, and
//! embeddings too with `emb`; quantization takes `matrices`, `weights` (matrices and
//! embeddings) or `all` (also biases, norms and others). Tensors a plan does not
//! quantize stay fp32, dense and fault-free, and are counted at 32 bits each.
//!
//! # Fault grammar
//!
//! ```text
//! faults := 'none'
//!         | 'mlc' (':' mopt)*             MLC RRAM read faults
//!                                         (docs/sources.md#mlc-rram-read-faults)
//!         | 'bitflip:rate=' P             independent flips, P in [0, 1]
//! mopt   := 'bpc=' (1|2|3)                default 2
//!         | 'coding=' ('binary' | 'gray') default binary
//!         | 'mask=' ('slc' | 'mlc')       default slc
//!         | 'sigma=' X                    sigma scale, default 1
//!         | 'threshold=' ('intersection' | 'midpoint')   default intersection
//! ```
//!
//! Example: `mlc:bpc=2:coding=gray:mask=slc`, `bitflip:rate=1e-6`, `none`.
//!
//! Every type here prints in canonical form with `Display`, and parsing that text
//! gives the same value back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{out_of_range, CompressError, Result};
use crate::faults::mlc::{LevelCoding, Threshold};
use crate::faults::{bitflip, validate_bpc, FaultSpec, MaskCells, MlcSpec};
use crate::formats::int::IntSpec;
use crate::formats::Format;
use crate::layout::Encoding;
use crate::prune::{prune_count, validate_sparsity};
use crate::storage::{dense_bits, Storage};
use crate::tensor::TensorRole;

/// Which tensors a plan quantizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantScope {
    /// Only [`TensorRole::Matrix`].
    Matrices,
    /// Matrices and embeddings.
    #[default]
    Weights,
    /// Every tensor.
    All,
}

impl QuantScope {
    /// Whether a tensor of `role` is quantized.
    pub fn selects(self, role: TensorRole) -> bool {
        match self {
            QuantScope::Matrices => role == TensorRole::Matrix,
            QuantScope::Weights => matches!(role, TensorRole::Matrix | TensorRole::Embedding),
            QuantScope::All => true,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            QuantScope::Matrices => "matrices",
            QuantScope::Weights => "weights",
            QuantScope::All => "all",
        }
    }
}

/// Magnitude-pruning settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSpec {
    /// Fraction of elements pruned, in `[0, 1)`.
    pub sparsity: f64,
    /// One threshold across all selected tensors instead of one per tensor.
    #[serde(default)]
    pub global: bool,
    /// Also prune embedding tables.
    #[serde(default)]
    pub include_embeddings: bool,
}

impl PruneSpec {
    /// Whether a tensor of `role` is pruned.
    pub fn selects(&self, role: TensorRole) -> bool {
        role == TensorRole::Matrix || (self.include_embeddings && role == TensorRole::Embedding)
    }
}

/// A compression plan: format, optional pruning, storage encoding, quantized roles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plan {
    /// Number format of the quantized tensors.
    pub format: Format,
    /// Pruning, applied before quantization.
    pub prune: Option<PruneSpec>,
    /// Storage layout.
    pub encoding: Encoding,
    /// Which tensors are quantized.
    pub scope: QuantScope,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            format: Format::Fp32,
            prune: None,
            encoding: Encoding::Dense,
            scope: QuantScope::Weights,
        }
    }
}

impl Plan {
    /// Whether the plan prunes tensors of `role`.
    pub fn prunes(&self, role: TensorRole) -> bool {
        self.prune.is_some_and(|p| p.selects(role))
    }

    /// The storage of a tensor of `role` with `numel` elements under this plan, from its
    /// size alone (what the hardware simulator sizes memories with): pruned roles keep
    /// `numel - round(sparsity * numel)` non-zeros; quantized roles store the format's bits
    /// per value (bit-mask: non-zeros only, plus one mask bit per element); other roles
    /// stay dense fp32. Zeros the format itself creates (e.g. AdaptivFloat's flush to zero)
    /// depend on the weights and are not counted; per-tensor metadata is not counted.
    pub fn planned_storage(&self, role: TensorRole, numel: u64) -> Storage {
        let pruned = match self.prune {
            Some(p) if p.selects(role) => prune_count(numel as usize, p.sparsity) as u64,
            _ => 0,
        };
        let nnz = numel - pruned;
        if !self.scope.selects(role) {
            return Storage {
                numel,
                nnz,
                value_bits: dense_bits(numel, 32),
                ..Storage::default()
            };
        }
        let bits = self.format.bits();
        let (value_bits, mask_bits) = match self.encoding {
            Encoding::Dense => (dense_bits(numel, bits), 0),
            Encoding::Bitmask => (dense_bits(nnz, bits), numel),
        };
        Storage {
            numel,
            nnz,
            value_bits,
            mask_bits,
            metadata_bits: 0,
        }
    }

    /// Checks every parameter (used after deserializing from TOML, where the
    /// parser's checks did not run).
    pub fn validate(&self) -> Result<()> {
        self.format.validate()?;
        if let Some(p) = &self.prune {
            validate_sparsity(p.sparsity)?;
        }
        Ok(())
    }
}

/// Plans written as a grid, the vocabulary of compression sweeps and design spaces:
/// explicit `plans`, plus the product `formats` x `sparsity` x `encodings`, each built as
/// `FORMAT[+prune=S[:PRUNE]][+ENCODING][+EXTRA]` (sparsity 0 adds no prune stage).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanGrid {
    pub plans: Vec<String>,
    /// Default `["fp32"]` when `sparsity` or `encodings` is given.
    pub formats: Vec<String>,
    /// Default `[0]`.
    pub sparsity: Vec<f64>,
    /// Default `["dense"]`.
    pub encodings: Vec<String>,
    /// Prune options appended to every prune stage (`global`, `emb`, `global:emb`).
    pub prune: String,
    /// A stage appended to every grid plan (e.g. `scope=all`).
    pub extra: Option<String>,
}

impl PlanGrid {
    /// The plan texts of the grid, as written: `plans` first, then the product with
    /// encodings varying fastest, then sparsities, then formats.
    pub fn texts(&self) -> Vec<String> {
        let mut texts = self.plans.clone();
        if !(self.formats.is_empty() && self.sparsity.is_empty() && self.encodings.is_empty()) {
            let or = |v: &[String], d: &str| {
                if v.is_empty() {
                    vec![d.to_string()]
                } else {
                    v.to_vec()
                }
            };
            let sparsity = if self.sparsity.is_empty() {
                vec![0.0]
            } else {
                self.sparsity.clone()
            };
            for f in or(&self.formats, "fp32") {
                for &s in &sparsity {
                    for e in or(&self.encodings, "dense") {
                        let mut p = f.clone();
                        if s != 0.0 {
                            p += &format!("+prune={s}");
                            if !self.prune.is_empty() {
                                p += &format!(":{}", self.prune);
                            }
                        }
                        if e != "dense" {
                            p += &format!("+{e}");
                        }
                        if let Some(x) = &self.extra {
                            p += &format!("+{x}");
                        }
                        texts.push(p);
                    }
                }
            }
        }
        texts
    }

    /// Every plan of the grid ([`PlanGrid::texts`]) parsed; errors quote the plan.
    pub fn expand(&self) -> Result<Vec<Plan>> {
        self.texts()
            .iter()
            .map(|t| {
                t.parse().map_err(|e: CompressError| match e {
                    CompressError::Spec { .. } => e,
                    other => spec_error("plan", t, other.to_string()),
                })
            })
            .collect()
    }
}

fn spec_error(kind: &'static str, spec: &str, reason: impl Into<String>) -> CompressError {
    CompressError::Spec {
        kind,
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// Parses a decimal integer field, naming the field on failure.
fn parse_num<T: FromStr>(kind: &'static str, spec: &str, field: &str, text: &str) -> Result<T> {
    text.parse().map_err(|_| {
        spec_error(
            kind,
            spec,
            format!("{field} `{text}` is not a valid number"),
        )
    })
}

impl FromStr for Format {
    type Err = CompressError;

    fn from_str(s: &str) -> Result<Format> {
        let mut parts = s.split(':');
        let head = parts.next().unwrap_or_default();
        let opts: Vec<&str> = parts.collect();
        let format = match head {
            "fp32" | "f32" => Format::Fp32,
            "fp16" | "f16" => Format::Fp16,
            "bf16" => Format::Bf16,
            "edgebert8" => Format::EdgeBert8,
            _ if head.starts_with("int") => Format::Int(parse_int(s, &head[3..], &opts)?),
            _ if head.starts_with("af") => parse_af(s, &head[2..])?,
            _ if head.starts_with('q') => parse_fixed(s, &head[1..])?,
            _ => return Err(spec_error("format", s, UNKNOWN_FORMAT)),
        };
        if !opts.is_empty() && !matches!(format, Format::Int(_)) {
            return Err(spec_error("format", s, "only int formats take `:` options"));
        }
        format.validate()?;
        Ok(format)
    }
}

const UNKNOWN_FORMAT: &str =
    "unknown format; expected fp32, fp16, bf16, edgebert8, int<2..8>, af<n>e<e> or q<m>.<n>";

fn parse_int(spec: &str, bits: &str, opts: &[&str]) -> Result<IntSpec> {
    let mut out = IntSpec {
        bits: parse_num("format", spec, "int bits", bits)?,
        symmetric: true,
        per_channel: false,
    };
    // Each option kind (granularity, symmetry) may be given once.
    let mut seen = [false; 2];
    for &o in opts {
        let slot = match o {
            "per-tensor" | "per-channel" => 0,
            _ => 1,
        };
        match o {
            "per-tensor" => out.per_channel = false,
            "per-channel" => out.per_channel = true,
            "sym" => out.symmetric = true,
            "asym" => out.symmetric = false,
            _ => {
                return Err(spec_error(
                    "format",
                    spec,
                    format!(
                        "unknown int option `{o}`; expected per-tensor, per-channel, sym or asym"
                    ),
                ))
            }
        }
        if std::mem::replace(&mut seen[slot], true) {
            return Err(repeated_option("format", spec, o));
        }
    }
    Ok(out)
}

fn parse_af(spec: &str, rest: &str) -> Result<Format> {
    let (n, e) = rest.split_once('e').ok_or_else(|| {
        spec_error(
            "format",
            spec,
            "AdaptivFloat is written af<bits>e<exponent bits>, e.g. af8e3",
        )
    })?;
    Ok(Format::AdaptivFloat {
        bits: parse_num("format", spec, "AdaptivFloat bits", n)?,
        exp_bits: parse_num("format", spec, "AdaptivFloat exponent bits", e)?,
    })
}

fn parse_fixed(spec: &str, rest: &str) -> Result<Format> {
    let (m, n) = rest.split_once('.').ok_or_else(|| {
        spec_error(
            "format",
            spec,
            "fixed point is written q<int bits>.<frac bits>, e.g. q4.11",
        )
    })?;
    Ok(Format::Fixed {
        int_bits: parse_num("format", spec, "fixed-point integer bits", m)?,
        frac_bits: parse_num("format", spec, "fixed-point fraction bits", n)?,
    })
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Format::Fp32 => f.write_str("fp32"),
            Format::Fp16 => f.write_str("fp16"),
            Format::Bf16 => f.write_str("bf16"),
            Format::EdgeBert8 => f.write_str("edgebert8"),
            Format::Int(s) => {
                let ch = if s.per_channel {
                    "per-channel"
                } else {
                    "per-tensor"
                };
                let sym = if s.symmetric { "sym" } else { "asym" };
                write!(f, "int{}:{ch}:{sym}", s.bits)
            }
            Format::AdaptivFloat { bits, exp_bits } => write!(f, "af{bits}e{exp_bits}"),
            Format::Fixed {
                int_bits,
                frac_bits,
            } => write!(f, "q{int_bits}.{frac_bits}"),
        }
    }
}

impl TryFrom<String> for Format {
    type Error = CompressError;
    fn try_from(s: String) -> Result<Format> {
        s.parse()
    }
}

impl From<Format> for String {
    fn from(f: Format) -> String {
        f.to_string()
    }
}

fn parse_prune(spec: &str, body: &str) -> Result<PruneSpec> {
    let mut parts = body.split(':');
    let s = parts.next().unwrap_or_default();
    let mut p = PruneSpec {
        sparsity: parse_num("prune", spec, "sparsity", s)?,
        global: false,
        include_embeddings: false,
    };
    validate_sparsity(p.sparsity)?;
    // Each option kind (scope, embeddings) may be given once.
    let mut seen = [false; 2];
    for o in parts {
        let slot = usize::from(o == "emb");
        match o {
            "global" => p.global = true,
            "per-tensor" => p.global = false,
            "emb" => p.include_embeddings = true,
            _ => {
                return Err(spec_error(
                    "prune",
                    spec,
                    format!("unknown prune option `{o}`; expected global, per-tensor or emb"),
                ))
            }
        }
        if std::mem::replace(&mut seen[slot], true) {
            return Err(repeated_option("prune", spec, o));
        }
    }
    Ok(p)
}

/// The error for an option whose kind was already given (`int8:sym:asym`, `mlc:bpc=2:bpc=3`):
/// silently keeping the last one would run something other than what the user read.
fn repeated_option(kind: &'static str, spec: &str, option: &str) -> CompressError {
    spec_error(
        kind,
        spec,
        format!("option `{option}` repeats an earlier option of its kind; give each once"),
    )
}

impl fmt::Display for PruneSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = if self.global { "global" } else { "per-tensor" };
        write!(f, "prune={}:{scope}", self.sparsity)?;
        if self.include_embeddings {
            f.write_str(":emb")?;
        }
        Ok(())
    }
}

impl FromStr for Plan {
    type Err = CompressError;

    fn from_str(s: &str) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut seen = [false; 4];
        for stage in s.split('+').map(str::trim) {
            let slot = if let Some(body) = stage.strip_prefix("prune=") {
                plan.prune = Some(parse_prune(s, body)?);
                1
            } else if let Some(body) = stage.strip_prefix("scope=") {
                plan.scope = parse_scope(s, body)?;
                3
            } else if stage == "bitmask" || stage == "dense" {
                plan.encoding = if stage == "bitmask" {
                    Encoding::Bitmask
                } else {
                    Encoding::Dense
                };
                2
            } else {
                plan.format = stage.parse().map_err(|e| match e {
                    CompressError::Spec { reason, .. } => spec_error("plan", s, reason),
                    other => other,
                })?;
                0
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(spec_error(
                    "plan",
                    s,
                    format!("stage `{stage}` repeats an earlier stage of its kind"),
                ));
            }
        }
        Ok(plan)
    }
}

fn parse_scope(spec: &str, body: &str) -> Result<QuantScope> {
    match body {
        "matrices" => Ok(QuantScope::Matrices),
        "weights" => Ok(QuantScope::Weights),
        "all" => Ok(QuantScope::All),
        _ => Err(spec_error(
            "plan",
            spec,
            format!("unknown scope `{body}`; expected matrices, weights or all"),
        )),
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.format)?;
        if let Some(p) = &self.prune {
            write!(f, "+{p}")?;
        }
        if self.encoding == Encoding::Bitmask {
            f.write_str("+bitmask")?;
        }
        if self.scope != QuantScope::Weights {
            write!(f, "+scope={}", self.scope.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for FaultSpec {
    type Err = CompressError;

    fn from_str(s: &str) -> Result<FaultSpec> {
        let mut parts = s.split(':');
        match parts.next().unwrap_or_default() {
            "none" if s == "none" => Ok(FaultSpec::None),
            "mlc" => parse_mlc(s, parts).map(FaultSpec::Mlc),
            "bitflip" => {
                let rate = parts
                    .next()
                    .and_then(|p| p.strip_prefix("rate="))
                    .ok_or_else(|| spec_error("faults", s, "bitflip needs :rate=<probability>"))?;
                let rate: f64 = parse_num("faults", s, "rate", rate)?;
                bitflip::validate_rate(rate)?;
                if parts.next().is_some() {
                    return Err(spec_error("faults", s, "bitflip takes only :rate="));
                }
                Ok(FaultSpec::Bitflip { rate })
            }
            _ => Err(spec_error(
                "faults",
                s,
                "expected none, mlc[:...] or bitflip:rate=<p>",
            )),
        }
    }
}

fn parse_mlc<'a>(s: &str, opts: impl Iterator<Item = &'a str>) -> Result<MlcSpec> {
    let mut m = MlcSpec::default();
    let mut seen: Vec<&str> = Vec::new();
    for o in opts {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            spec_error("faults", s, format!("mlc option `{o}` must be key=value"))
        })?;
        // A repeated key would silently keep only its last value.
        if seen.contains(&k) {
            return Err(repeated_option("faults", s, o));
        }
        seen.push(k);
        match (k, v) {
            ("bpc", _) => m.bits_per_cell = parse_num("faults", s, "bpc", v)?,
            ("coding", "binary") => m.coding = LevelCoding::Binary,
            ("coding", "gray") => m.coding = LevelCoding::Gray,
            ("mask", "slc") => m.mask = MaskCells::Slc,
            ("mask", "mlc") => m.mask = MaskCells::Mlc,
            ("sigma", _) => m.sigma_scale = parse_num("faults", s, "sigma", v)?,
            ("threshold", "intersection") => m.threshold = Threshold::Intersection,
            ("threshold", "midpoint") => m.threshold = Threshold::Midpoint,
            _ => {
                return Err(spec_error(
                    "faults",
                    s,
                    format!("unknown mlc option `{o}`; expected bpc=1|2|3, coding=binary|gray, mask=slc|mlc, sigma=<x>, threshold=intersection|midpoint"),
                ))
            }
        }
    }
    validate_bpc(m.bits_per_cell)?;
    if !(m.sigma_scale > 0.0 && m.sigma_scale.is_finite()) {
        return Err(out_of_range(
            "mlc.sigma",
            m.sigma_scale,
            "a finite number > 0",
        ));
    }
    Ok(m)
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSpec::None => f.write_str("none"),
            FaultSpec::Bitflip { rate } => write!(f, "bitflip:rate={rate:e}"),
            FaultSpec::Mlc(m) => {
                let coding = match m.coding {
                    LevelCoding::Binary => "binary",
                    LevelCoding::Gray => "gray",
                };
                let mask = match m.mask {
                    MaskCells::Slc => "slc",
                    MaskCells::Mlc => "mlc",
                };
                write!(f, "mlc:bpc={}:coding={coding}:mask={mask}", m.bits_per_cell)?;
                if m.sigma_scale != 1.0 {
                    write!(f, ":sigma={}", m.sigma_scale)?;
                }
                if m.threshold == Threshold::Midpoint {
                    f.write_str(":threshold=midpoint")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let p: Plan = "af8e3+prune=0.5:global+bitmask".parse().unwrap();
        assert_eq!(
            p.format,
            Format::AdaptivFloat {
                bits: 8,
                exp_bits: 3
            }
        );
        assert_eq!(
            p.prune,
            Some(PruneSpec {
                sparsity: 0.5,
                global: true,
                include_embeddings: false
            })
        );
        assert_eq!(p.encoding, Encoding::Bitmask);
        let p: Plan = "int4:per-channel:asym".parse().unwrap();
        assert_eq!(
            p.format,
            Format::Int(IntSpec {
                bits: 4,
                symmetric: false,
                per_channel: true
            })
        );
        assert_eq!(
            "q4.11".parse::<Format>().unwrap(),
            Format::Fixed {
                int_bits: 4,
                frac_bits: 11
            }
        );
        assert_eq!("edgebert8".parse::<Format>().unwrap(), Format::EdgeBert8);
        assert_eq!("int8".parse::<Format>().unwrap().bits(), 8);
        let f: FaultSpec = "mlc:bpc=2:coding=gray:mask=slc".parse().unwrap();
        assert_eq!(
            f,
            FaultSpec::Mlc(MlcSpec {
                bits_per_cell: 2,
                coding: LevelCoding::Gray,
                ..MlcSpec::default()
            })
        );
        assert_eq!(
            "bitflip:rate=1e-6".parse::<FaultSpec>().unwrap(),
            FaultSpec::Bitflip { rate: 1e-6 }
        );
        assert_eq!("none".parse::<FaultSpec>().unwrap(), FaultSpec::None);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "fp32",
            "bf16+bitmask",
            "int8:per-tensor:sym",
            "int3:per-channel:asym+prune=0.25:per-tensor:emb+scope=all",
            "af5e2+prune=0.9:global+bitmask+scope=matrices",
            "q5.10",
            "edgebert8+prune=0.5:per-tensor",
        ] {
            let p: Plan = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(p.to_string().parse::<Plan>().unwrap(), p);
        }
        for s in [
            "none",
            "bitflip:rate=1e-6",
            "mlc:bpc=3:coding=gray:mask=mlc:sigma=2:threshold=midpoint",
        ] {
            let f: FaultSpec = s.parse().unwrap();
            assert_eq!(f.to_string(), s);
        }
    }

    #[test]
    fn invalid_plans_are_clear_errors() {
        let err = |s: &str| s.parse::<Plan>().unwrap_err().to_string();
        assert!(err("int9").contains("int.bits = 9"), "{}", err("int9"));
        assert!(err("int1").contains("2..=8"));
        assert!(err("af8e8").contains("adaptivfloat.exp_bits"));
        assert!(err("af17e3").contains("adaptivfloat.bits"));
        assert!(
            err("af12e8").contains("adaptivfloat.exp_bits"),
            "{}",
            err("af12e8")
        );
        assert!(err("q20.20").contains("fixed.bits"));
        assert!(
            err("int8+prune=1.0").contains("prune.sparsity = 1"),
            "{}",
            err("int8+prune=1.0")
        );
        assert!(err("int8+prune=-0.1").contains("[0, 1)"));
        assert!(err("fp8").contains("unknown format"), "{}", err("fp8"));
        assert!(err("int8+prune=0.5:sideways").contains("sideways"));
        assert!(err("int8:per-row").contains("per-row"));
        assert!(err("int8+fp16").contains("repeats"));
        assert!(err("intx").contains("int bits `x`"));
        let ferr = |s: &str| s.parse::<FaultSpec>().unwrap_err().to_string();
        assert!(ferr("mlc:bpc=4").contains("mlc.bpc = 4"));
        assert!(ferr("bitflip:rate=2").contains("bitflip.rate"));
        assert!(ferr("bitflip").contains("rate="));
        assert!(ferr("mlc:coding=hex").contains("coding=hex"));
        assert!(ferr("mlc:bpc=2:bpc=3").contains("option `bpc=3` repeats"));
        assert!(ferr("mlc:sigma=1:coding=gray:sigma=2").contains("`sigma=2` repeats"));
        assert!(err("int8:sym:asym").contains("`asym` repeats"));
        assert!(err("int8:per-channel:per-tensor").contains("`per-tensor` repeats"));
        assert!(err("int8+prune=0.5:global:per-tensor").contains("repeats"));
        assert!(err("int8+prune=0.5:emb:emb").contains("`emb` repeats"));
        assert!(ferr("cosmic").contains("expected none"));
    }

    #[test]
    fn grids_expand_in_order() {
        let g = PlanGrid {
            plans: vec!["fp16".into()],
            formats: vec!["int8".into(), "af8e3".into()],
            sparsity: vec![0.0, 0.5],
            encodings: vec!["bitmask".into()],
            prune: "emb".into(),
            ..PlanGrid::default()
        };
        let got: Vec<String> = g.expand().unwrap().iter().map(Plan::to_string).collect();
        assert_eq!(
            got,
            [
                "fp16",
                "int8:per-tensor:sym+bitmask",
                "int8:per-tensor:sym+prune=0.5:per-tensor:emb+bitmask",
                "af8e3+bitmask",
                "af8e3+prune=0.5:per-tensor:emb+bitmask"
            ]
        );
        let bad = PlanGrid {
            formats: vec!["int9".into()],
            ..PlanGrid::default()
        };
        assert!(bad.expand().unwrap_err().to_string().contains("int9"));
    }

    fn any_format() -> impl proptest::strategy::Strategy<Value = Format> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Format::Fp32),
            Just(Format::Fp16),
            Just(Format::Bf16),
            Just(Format::EdgeBert8),
            (2u8..=8, any::<bool>(), any::<bool>()).prop_map(|(bits, symmetric, per_channel)| {
                Format::Int(IntSpec {
                    bits,
                    symmetric,
                    per_channel,
                })
            }),
            (2u8..=16, 1u8..=7)
                .prop_filter("exponent < bits", |(n, e)| e < n)
                .prop_map(|(bits, exp_bits)| Format::AdaptivFloat { bits, exp_bits }),
            (0u8..=15, 0u8..=15)
                .prop_filter("2..=32 bits", |(m, n)| (1 + m + n) >= 2)
                .prop_map(|(int_bits, frac_bits)| Format::Fixed {
                    int_bits,
                    frac_bits
                }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn every_plan_round_trips(
            format in any_format(),
            prune in proptest::option::of((0u32..1000, proptest::bool::ANY, proptest::bool::ANY)),
            bitmask in proptest::bool::ANY,
            scope in 0usize..3,
        ) {
            let plan = Plan {
                format,
                prune: prune.map(|(s, global, include_embeddings)| PruneSpec {
                    sparsity: f64::from(s) / 1000.0,
                    global,
                    include_embeddings,
                }),
                encoding: if bitmask { Encoding::Bitmask } else { Encoding::Dense },
                scope: [QuantScope::Matrices, QuantScope::Weights, QuantScope::All][scope],
            };
            proptest::prop_assert_eq!(plan.to_string().parse::<Plan>().unwrap(), plan);
        }

        #[test]
        fn every_fault_spec_round_trips(
            kind in 0usize..3,
            bpc in 1u8..=3,
            gray in proptest::bool::ANY,
            mlc_mask in proptest::bool::ANY,
            sigma in 1u32..400,
            midpoint in proptest::bool::ANY,
            rate in 0u32..=1000,
        ) {
            let spec = match kind {
                0 => FaultSpec::None,
                1 => FaultSpec::Bitflip { rate: f64::from(rate) / 1000.0 },
                _ => FaultSpec::Mlc(MlcSpec {
                    bits_per_cell: bpc,
                    coding: if gray { LevelCoding::Gray } else { LevelCoding::Binary },
                    mask: if mlc_mask { MaskCells::Mlc } else { MaskCells::Slc },
                    sigma_scale: f64::from(sigma) / 100.0,
                    threshold: if midpoint { Threshold::Midpoint } else { Threshold::Intersection },
                }),
            };
            proptest::prop_assert_eq!(spec.to_string().parse::<FaultSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn toml_form_matches_string_form() {
        let text = r#"
            format = "af8e3"
            encoding = "bitmask"
            [prune]
            sparsity = 0.5
            global = true
        "#;
        let p: Plan = toml::from_str(text).unwrap();
        assert_eq!(p, "af8e3+prune=0.5:global+bitmask".parse().unwrap());
        let f: FaultSpec =
            toml::from_str("kind = \"mlc\"\nbits_per_cell = 3\ncoding = \"gray\"").unwrap();
        assert_eq!(f, "mlc:bpc=3:coding=gray".parse().unwrap());
        let f: FaultSpec = toml::from_str("kind = \"bitflip\"\nrate = 1e-6").unwrap();
        assert_eq!(f, FaultSpec::Bitflip { rate: 1e-6 });
        let bad: std::result::Result<Plan, _> = toml::from_str("format = \"int12\"");
        assert!(bad.unwrap_err().to_string().contains("int.bits"));
        let round = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<Plan>(&round).unwrap(), p);
    }
}
