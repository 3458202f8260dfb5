//! The one compression runner: quantize / prune / bit-mask-encode the shared backbone, inject
//! eNVM faults, optionally re-train the task parameters on the result, and measure what each
//! point costs in accuracy (every bundle on its dev split) and bytes. `adalbert compress`
//! (flags or `--sweep FILE.toml`) and the experiment's compress stage both run it.
//!
//! # One vocabulary for compression groups
//!
//! A group is the product `formats` x `sparsity` x `encodings` (plus `plans` as written),
//! crossed with `faults`; fault specs other than `none` run `seeds` seeds from `first_seed`
//! (`none` runs once, at `first_seed`). A dense plan crossed with an MLC spec with `mask=mlc`
//! is skipped: a dense layout has no mask, so it would repeat the `mask=slc` point.
//!
//! | key | meaning |
//! |---|---|
//! | `name`, `title`, `about` | identity, heading and Markdown text of the group |
//! | `plans` | plans used as written (grammar in `adalbert_compress::plan`) |
//! | `formats` | formats crossed with `sparsity` and `encodings` (default `["fp32"]` when either is set) |
//! | `sparsity` | pruning sparsities (0 = no prune stage) |
//! | `prune` | options appended to every generated prune stage, e.g. `global` |
//! | `encodings` | `dense` and/or `bitmask` |
//! | `extra` | stages appended to every generated plan, e.g. `scope=matrices` |
//! | `faults` | fault specs (default `["none"]`) |
//! | `seeds`, `first_seed` | fault seeds per spec other than `none` (default 1 from 0) |
//! | `recover_epochs`, `recover_train` | re-train each bundle's task parameters on the compressed backbone for N epochs, on at most this many training examples |
//!
//! A sweep file (`configs/compression/minilm.toml`) lists groups as `[[group]]` tables; an
//! experiment's `[compress]` section writes one group's keys directly (and may add
//! `[[compress.group]]` tables). Both expand through [`expand`].

mod report;
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use adalbert_compress::faults::MaskCells;
use adalbert_compress::plan::PlanGrid;
use adalbert_compress::{Encoding, FaultSpec, Plan};
use serde::Deserialize;

use crate::cache::Cache;
use crate::error::{Context, ExperimentError, Result};

pub use report::{csv, markdown, terminal_summary};
pub use run::{execute, execute_where, row_key, Progress, Row};

/// One group of compression points (see the module docs for the keys).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    /// Markdown placed under the group's heading.
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub plans: Vec<String>,
    #[serde(default)]
    pub formats: Vec<String>,
    #[serde(default)]
    pub sparsity: Vec<f64>,
    #[serde(default)]
    pub prune: String,
    #[serde(default)]
    pub encodings: Vec<String>,
    #[serde(default)]
    pub extra: Option<String>,
    #[serde(default)]
    pub faults: Vec<String>,
    #[serde(default)]
    pub seeds: Option<u64>,
    #[serde(default)]
    pub first_seed: u64,
    #[serde(default)]
    pub recover_epochs: usize,
    #[serde(default)]
    pub recover_train: Option<usize>,
}

impl Group {
    /// The heading of the group's tables.
    pub fn heading(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// The plan texts of the group ([`PlanGrid::texts`]: the vocabulary design spaces share).
    fn plan_texts(&self) -> Vec<String> {
        PlanGrid {
            plans: self.plans.clone(),
            formats: self.formats.clone(),
            sparsity: self.sparsity.clone(),
            encodings: self.encodings.clone(),
            prune: self.prune.clone(),
            extra: self.extra.clone(),
        }
        .texts()
    }
}

fn non_empty(v: &[String], default: &str) -> Vec<String> {
    if v.is_empty() {
        vec![default.to_string()]
    } else {
        v.to_vec()
    }
}

/// One point of a sweep: a plan, a fault spec and seed, and the recovery setting.
#[derive(Debug, Clone)]
pub struct Point {
    /// Index of its group.
    pub group: usize,
    pub plan: Plan,
    /// The plan as the configuration wrote (or generated) it.
    pub plan_text: String,
    pub faults: FaultSpec,
    /// The fault spec as the configuration wrote it.
    pub faults_text: String,
    pub seed: u64,
    pub recover_epochs: usize,
    pub recover_train: Option<usize>,
}

/// The points of every group, in order: plans x faults x seeds. Every group needs a name,
/// unique among the groups.
pub fn expand(groups: &[Group]) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let origin = || format!("group `{}`", g.name);
        let bad = |key: &str, reason: &str| ExperimentError::Config {
            origin: origin(),
            key: key.into(),
            reason: reason.into(),
        };
        if g.name.is_empty() {
            return Err(ExperimentError::Config {
                origin: format!("group {}", gi + 1),
                key: "name".into(),
                reason: "is missing: every group needs a name".into(),
            });
        }
        if groups[..gi].iter().any(|o| o.name == g.name) {
            return Err(bad("name", "is used by an earlier group"));
        }
        let plan_texts = g.plan_texts();
        if plan_texts.is_empty() {
            return Err(bad(
                "plans",
                "is empty: no plans (give `plans` or `formats`/`sparsity`)",
            ));
        }
        let faults = non_empty(&g.faults, "none");
        let seeds = g.seeds.unwrap_or(1);
        if seeds == 0 {
            return Err(bad("seeds", "must be at least 1"));
        }
        for p in &plan_texts {
            let plan: Plan = p.parse().context(|| format!("{}: plan `{p}`", origin()))?;
            for f in &faults {
                let fs: FaultSpec = f
                    .parse()
                    .context(|| format!("{}: faults `{f}`", origin()))?;
                if !faults_matter(&plan, &fs) {
                    continue;
                }
                let n = if fs == FaultSpec::None { 1 } else { seeds };
                for seed in g.first_seed..g.first_seed + n {
                    points.push(Point {
                        group: gi,
                        plan,
                        plan_text: p.clone(),
                        faults: fs,
                        faults_text: f.clone(),
                        seed,
                        recover_epochs: g.recover_epochs,
                        recover_train: g.recover_train,
                    });
                }
            }
        }
    }
    Ok(points)
}

/// False for a dense layout with an MLC spec that puts the mask in MLC cells: a dense layout
/// has no mask, so the point would repeat its `mask=slc` twin.
fn faults_matter(plan: &Plan, faults: &FaultSpec) -> bool {
    !matches!(
        (plan.encoding, faults),
        (Encoding::Dense, FaultSpec::Mlc(m)) if m.mask == MaskCells::Mlc
    )
}

/// A bundle to evaluate and the data folder of its task (`None`: the tasks crate's default).
#[derive(Debug, Clone)]
pub struct BundleSource {
    pub path: PathBuf,
    pub data: Option<PathBuf>,
    /// What stands for the bundle's contents in cache keys: by default the file's sha256. An
    /// experiment gives the key of the training item that wrote the bundle, which says the
    /// same (training is deterministic) and is known before the bundle exists.
    pub identity: Option<String>,
    /// The bundle's task when it is read from the user's data files (an experiment's
    /// `[[tasks.files]]`); `None`: a registry task read from `data`.
    pub files: Option<adalbert_tasks::FileTask>,
}

/// What a sweep evaluates, on what, and where recovered bundles go.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Backbone model directory.
    pub model: PathBuf,
    /// Adapter or head bundles trained on `model`.
    pub bundles: Vec<BundleSource>,
    /// Seed of the offline suite's train/dev/test split.
    pub split_seed: u64,
    /// The split evaluated: dev for `adalbert compress --sweep`, test in an experiment (whose
    /// selection reads dev only).
    pub split: adalbert_tasks::Split,
    /// Evaluate on the first N examples of that split of each task.
    pub max_eval: Option<usize>,
    pub max_len: usize,
    /// Work folder: recovered bundles go to `<out>/recovered`.
    pub out: PathBuf,
    pub groups: Vec<Group>,
}

/// Where and how `adalbert compress` writes its CSV and Markdown summary.
#[derive(Debug, Clone)]
pub struct SweepReport {
    pub csv: PathBuf,
    pub markdown: PathBuf,
    pub title: String,
    /// Markdown placed after the title.
    pub intro: String,
    /// Markdown placed after the tables.
    pub conclusions: String,
    /// The command that regenerates the report (shown in it).
    pub command: String,
}

const DEFAULT_TITLE: &str = "Backbone compression";

fn default_max_len() -> usize {
    128
}

/// A sweep file (see `configs/compression/minilm.toml`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    model: PathBuf,
    bundles: Vec<PathBuf>,
    /// GLUE folder or offline-suite data folder, for every bundle.
    #[serde(default)]
    data: Option<PathBuf>,
    #[serde(default)]
    split_seed: u64,
    #[serde(default)]
    max_eval: Option<usize>,
    #[serde(default = "default_max_len")]
    max_len: usize,
    /// Work folder (cache, recovered bundles).
    out: PathBuf,
    /// CSV path (default `<out>/compression.csv`).
    #[serde(default)]
    csv: Option<PathBuf>,
    /// Markdown path (default `<out>/compression.md`).
    #[serde(default)]
    report: Option<PathBuf>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    intro: String,
    #[serde(default)]
    conclusions: String,
    #[serde(default)]
    command: Option<String>,
    group: Vec<Group>,
}

/// Reads a sweep file.
pub fn load_sweep_file(path: &Path) -> Result<(Sweep, SweepReport)> {
    let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let s: SweepFile = toml::from_str(&text).map_err(|e| ExperimentError::Toml {
        what: "sweep file",
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    let origin = path.display().to_string();
    if s.group.is_empty() {
        return Err(ExperimentError::Config {
            origin,
            key: "group".into(),
            reason: "is missing: no [[group]] tables".into(),
        });
    }
    if s.bundles.is_empty() {
        return Err(ExperimentError::Config {
            origin,
            key: "bundles".into(),
            reason: "is empty".into(),
        });
    }
    let report = SweepReport {
        csv: s.csv.unwrap_or_else(|| s.out.join("compression.csv")),
        markdown: s.report.unwrap_or_else(|| s.out.join("compression.md")),
        title: s.title.unwrap_or_else(|| DEFAULT_TITLE.into()),
        intro: s.intro,
        conclusions: s.conclusions,
        command: s
            .command
            .unwrap_or_else(|| format!("adalbert compress --sweep {}", path.display())),
    };
    let sweep = Sweep {
        bundles: s
            .bundles
            .into_iter()
            .map(|path| BundleSource {
                path,
                data: s.data.clone(),
                identity: None,
                files: None,
            })
            .collect(),
        model: s.model,
        split_seed: s.split_seed,
        split: adalbert_tasks::Split::Dev,
        max_eval: s.max_eval,
        max_len: s.max_len,
        out: s.out,
        groups: s.group,
    };
    Ok((sweep, report))
}

/// The flag form of `adalbert compress`: one group, every plan crossed with every fault spec.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub model: Option<PathBuf>,
    pub bundles: Vec<PathBuf>,
    pub plans: Vec<String>,
    pub faults: Vec<String>,
    pub seeds: u64,
    pub first_seed: u64,
    pub max_eval: Option<usize>,
    pub max_len: usize,
    pub data: Option<PathBuf>,
    pub split_seed: u64,
    pub recover_epochs: usize,
    pub recover_train: Option<usize>,
    /// Work folder (default `runs/compress`).
    pub out: Option<PathBuf>,
    /// The command line, shown in the summary.
    pub command: String,
}

impl Flags {
    pub fn into_sweep(self) -> Result<(Sweep, SweepReport)> {
        let (Some(model), false) = (self.model, self.bundles.is_empty()) else {
            return Err(ExperimentError::Config {
                origin: "adalbert compress".into(),
                key: "--model/--bundle".into(),
                reason:
                    "missing: give --model DIR and at least one --bundle FILE, or --sweep FILE.toml"
                        .into(),
            });
        };
        let out = self.out.unwrap_or_else(|| PathBuf::from("runs/compress"));
        let group = Group {
            name: "cli".into(),
            title: Some("Results".into()),
            plans: self.plans,
            faults: self.faults,
            seeds: Some(self.seeds),
            first_seed: self.first_seed,
            recover_epochs: self.recover_epochs,
            recover_train: self.recover_train,
            ..Group::default()
        };
        let report = SweepReport {
            csv: out.join("compression.csv"),
            markdown: out.join("compression.md"),
            title: DEFAULT_TITLE.into(),
            intro: String::new(),
            conclusions: String::new(),
            command: self.command,
        };
        let sweep = Sweep {
            model,
            bundles: self
                .bundles
                .into_iter()
                .map(|path| BundleSource {
                    path,
                    data: self.data.clone(),
                    identity: None,
                    files: None,
                })
                .collect(),
            split_seed: self.split_seed,
            split: adalbert_tasks::Split::Dev,
            max_eval: self.max_eval,
            max_len: self.max_len,
            out,
            groups: vec![group],
        };
        Ok((sweep, report))
    }
}

/// What `adalbert compress` computed.
pub struct Outcome {
    /// One row per (point, bundle), point-major.
    pub rows: Vec<Row>,
    /// Wall time of this invocation.
    pub seconds: f64,
}

/// Runs a whole sweep for `adalbert compress`: every point through the cache in
/// `<out>/cache`, then the CSV and the Markdown summary, written atomically.
pub fn run_sweep(
    sweep: &Sweep,
    report: &SweepReport,
    resume: bool,
    progress: Progress,
) -> Result<Outcome> {
    let points = expand(&sweep.groups)?;
    let cache = Cache::new(sweep.out.join("cache"), resume)?;
    for f in [&report.csv, &report.markdown] {
        if let Some(dir) = f.parent() {
            adalbert_core::files::remove_stale_temporaries(dir);
        }
    }
    let t0 = Instant::now();
    let rows = execute(sweep, &points, &cache, progress)?;
    let seconds = t0.elapsed().as_secs_f64();
    adalbert_core::files::write_atomic(&report.csv, csv(&rows).as_bytes())?;
    let md = markdown(sweep, report, &rows, seconds);
    adalbert_core::files::write_atomic(&report.markdown, md.as_bytes())?;
    Ok(Outcome { rows, seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(toml_text: &str) -> Group {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn groups_expand_to_the_product_with_one_seed_for_no_faults() {
        let g = group(
            r#"
            name = "g"
            formats = ["int8", "af8e3"]
            sparsity = [0.0, 0.5]
            encodings = ["dense", "bitmask"]
            faults = ["none", "mlc:bpc=3"]
            seeds = 3
            first_seed = 10
            "#,
        );
        let pts = expand(&[g]).unwrap();
        // 2 formats x 2 sparsities x 2 encodings = 8 plans; per plan 1 (none) + 3 seeds.
        assert_eq!(pts.len(), 8 * 4);
        assert_eq!(pts[0].plan.to_string(), "int8:per-tensor:sym");
        assert_eq!(pts[0].plan_text, "int8");
        assert_eq!(
            pts[4].plan.to_string(),
            "int8:per-tensor:sym+bitmask",
            "encodings vary fastest"
        );
        assert_eq!(pts[4].plan_text, "int8+bitmask");
        assert_eq!(
            pts[8].plan.to_string(),
            "int8:per-tensor:sym+prune=0.5:per-tensor"
        );
        let seeds: Vec<u64> = pts[..4].iter().map(|p| p.seed).collect();
        assert_eq!(seeds, [10, 10, 11, 12]);
        assert_eq!(pts[0].faults, FaultSpec::None);
        assert_eq!(pts[1].faults_text, "mlc:bpc=3");
        let g = group(
            "name = \"m\"\nplans = [\"int8\", \"int8+bitmask\"]\nfaults = [\"mlc:bpc=2:mask=mlc\"]",
        );
        let pts = expand(&[g]).unwrap();
        assert_eq!(
            pts.len(),
            1,
            "the dense twin of a mask=mlc point is skipped"
        );
        assert_eq!(pts[0].plan.encoding, Encoding::Bitmask);
    }

    #[test]
    fn invalid_groups_are_named() {
        let bad = |t: &str| crate::error::chain(&expand(&[group(t)]).unwrap_err());
        let e = bad("name = \"x\"\nplans = [\"int12\"]");
        assert!(e.contains("group `x`") && e.contains("int12"), "{e}");
        let e = bad("name = \"y\"\nsparsity = [1.0]");
        assert!(e.contains("group `y`") && e.contains("sparsity"), "{e}");
        let e = bad("name = \"z\"\nplans = [\"fp32\"]\nfaults = [\"mlc:bpc=4\"]");
        assert!(e.contains("group `z`") && e.contains("bpc"), "{e}");
        let e = bad("name = \"w\"");
        assert!(e.contains("no plans"), "{e}");
        let e = bad("name = \"s\"\nplans = [\"fp32\"]\nseeds = 0");
        assert!(e.contains("group `s`") && e.contains("seeds"), "{e}");
        let e = bad("plans = [\"fp32\"]");
        assert!(e.contains("name"), "{e}");
        let twice = [
            group("name = \"a\"\nplans = [\"fp32\"]"),
            group("name = \"a\"\nplans = [\"int8\"]"),
        ];
        let e = crate::error::chain(&expand(&twice).unwrap_err());
        assert!(e.contains("group `a`") && e.contains("earlier"), "{e}");
        assert!(toml::from_str::<Group>("name = \"v\"\nformat = [\"int8\"]").is_err());
    }

    #[test]
    fn the_flag_form_is_one_group() {
        let flags = Flags {
            model: Some("m".into()),
            bundles: vec!["b.safetensors".into()],
            plans: vec!["fp32".into(), "int4".into()],
            faults: vec!["none".into(), "mlc:bpc=3".into()],
            seeds: 2,
            first_seed: 5,
            max_len: 16,
            ..Flags::default()
        };
        let (sweep, report) = flags.into_sweep().unwrap();
        assert_eq!(report.csv, Path::new("runs/compress/compression.csv"));
        let seeds: Vec<u64> = expand(&sweep.groups)
            .unwrap()
            .iter()
            .map(|p| p.seed)
            .collect();
        assert_eq!(seeds, [5, 5, 6, 5, 5, 6]);
        let e = Flags::default().into_sweep().unwrap_err().to_string();
        assert!(e.contains("--model"), "{e}");
    }
}
