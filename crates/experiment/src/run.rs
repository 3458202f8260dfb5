//! `adalbert run EXPERIMENT.toml`: plan the items, compute them (all, or one shard's) through
//! the cache under `<out>/cache`, and build the report from the cache alone. Progress goes to
//! stderr.
//!
//! - A plain run computes every item in stage order (train -> compress/faults -> simulate),
//!   then writes the report; with `resume` it reuses finished items.
//! - `--shard I/N` computes the items of shard I only ([`crate::shard`]), always reusing
//!   finished ones, so a failed shard is re-run by running it again.
//! - `--merge` computes nothing: it checks that every item has a result and writes the report,
//!   or names the missing items and their shards.
//!
//! `<out>/plan.json` records which experiment (name and plan fingerprint) the folder holds,
//! so a shard or a merge of another experiment, or of an edited file, is refused instead of
//! silently mixing two studies. `<out>/timings/` records the wall and CPU time of every item a
//! process computed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use adalbert_model::checkpoint::{sha256_file, weights_file};
use adalbert_model::EncoderConfig;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::config::Experiment;
use crate::error::{Context, ExperimentError, Result};
use crate::plan::{cpu_text, Plan, Work, SIMULATED_LABELS};
use crate::report;
use crate::shard::Shard;
use crate::stages::compress::{self, CompressRecord};
use crate::stages::simulate::{self, DseRow, SimResult};
use crate::stages::submit;
use crate::stages::train::{self, TrainRecord};
use crate::sweep::Row;

/// What a run does with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compute every item, then write the report.
    All,
    /// Compute the items of one shard (reusing finished ones); no report.
    Shard(Shard),
    /// Compute nothing: write the report if every item is cached, else list what is missing.
    Merge,
}

/// How to run an experiment file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub experiment: PathBuf,
    /// Output folder (default: `runs/<name>`).
    pub out: Option<PathBuf>,
    /// Reuse finished items of an earlier run into the same folder (always on for shards).
    pub resume: bool,
    pub mode: Mode,
}

/// What a run produced.
#[derive(Debug)]
pub enum RunOutcome {
    /// A whole run or a merge: the report.
    Report {
        /// The headline rows of Tables 1-3 (what `make demo` prints).
        headlines: Vec<String>,
        /// The report's Markdown file.
        report: PathBuf,
    },
    /// One shard's items are in the cache.
    Shard {
        shard: Shard,
        /// Items of the shard, and how many of them this process computed.
        items: usize,
        computed: usize,
        cache: PathBuf,
        timings: PathBuf,
    },
}

/// Validates an experiment file; returns how many training items it has.
pub fn check(path: &Path) -> Result<usize> {
    let (exp, _) = Experiment::load(path)?;
    let points = compress::points(&exp)?;
    Ok(train::items(&exp, &points).len())
}

/// An experiment file with its plan and output folder.
struct Study {
    exp: Experiment,
    text: String,
    file: PathBuf,
    out: PathBuf,
    plan: Plan,
}

impl Study {
    fn open(experiment: &Path, out: Option<&Path>) -> Result<Self> {
        let (exp, text) = Experiment::load(experiment)?;
        let out = out.map_or_else(|| PathBuf::from("runs").join(&exp.name), Path::to_path_buf);
        let mut shas = Vec::new();
        for b in &exp.backbones {
            let sha = sha256_file(&weights_file(&b.path)?)
                .context(|| format!("hashing the weights of backbone `{}`", b.name))?;
            shas.push((b.name.clone(), sha));
        }
        let plan = Plan::build(&exp, &shas)
            .context(|| format!("planning the items of {}", experiment.display()))?;
        Ok(Self {
            exp,
            text,
            file: experiment.to_path_buf(),
            out,
            plan,
        })
    }

    fn cache_dir(&self) -> PathBuf {
        self.out.join("cache")
    }

    /// The command line that runs this study into its folder with `flags`.
    fn command(&self, flags: &str) -> String {
        format!(
            "adalbert run {} --out {} {flags}",
            self.file.display(),
            self.out.display()
        )
    }
}

/// Runs an experiment file: every item, one shard's, or none (merge), then the report.
pub fn run(opts: &RunOptions) -> Result<RunOutcome> {
    let study = Study::open(&opts.experiment, opts.out.as_deref())?;
    let plan = &study.plan;
    let manifest = Manifest::check(&study, opts.mode != Mode::All)?;
    let resume = opts.resume || matches!(opts.mode, Mode::Shard(_));
    match opts.mode {
        Mode::Merge => {
            let cache = Cache::new(study.cache_dir(), true)?;
            let shards = manifest.and_then(|m| m.shards);
            report_from_cache(&study, &cache, shards)
        }
        Mode::All => {
            Manifest::write(&study, None)?;
            let cache = Cache::new(study.cache_dir(), resume)?;
            eprintln!(
                "experiment `{}`: {} item(s), estimated {}",
                study.exp.name,
                plan.items.len(),
                cpu_text(plan.total_cost_seconds())
            );
            let all: Vec<usize> = (0..plan.items.len()).collect();
            let log = study.out.join("timings").join("run.json");
            execute(&study, &cache, &all, &log)?;
            eprintln!("[4/4] report");
            report_from_cache(&study, &cache, None)
        }
        Mode::Shard(shard) => {
            Manifest::write(&study, Some(shard.count()))?;
            let cache = Cache::new(study.cache_dir(), true)?;
            let mine = plan.shard_items(shard);
            let costs = plan.shard_costs(shard.count());
            eprintln!(
                "shard {shard} of experiment `{}`: {} of {} item(s), estimated {} (all shards: {}); results go to {}",
                study.exp.name,
                mine.len(),
                plan.items.len(),
                cpu_text(costs[shard.index() - 1]),
                cpu_text(costs.iter().sum()),
                study.cache_dir().display()
            );
            let log = study.out.join("timings").join(format!(
                "shard-{}-of-{}.json",
                shard.index(),
                shard.count()
            ));
            let computed = execute(&study, &cache, &mine, &log)?;
            Ok(RunOutcome::Shard {
                shard,
                items: mine.len(),
                computed,
                cache: study.cache_dir(),
                timings: log,
            })
        }
    }
}

/// `<out>/plan.json`: which experiment and plan a run folder holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    experiment: String,
    /// The experiment file as it was given.
    file: PathBuf,
    /// [`Plan::fingerprint`].
    plan: String,
    items: usize,
    /// The shard count of the latest sharded run (names the shards of missing items).
    #[serde(default)]
    shards: Option<usize>,
}

const MANIFEST_FORMAT: u32 = 1;

impl Manifest {
    fn path(out: &Path) -> PathBuf {
        out.join("plan.json")
    }

    fn read(out: &Path) -> Result<Option<Self>> {
        let path = Self::path(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ExperimentError::Read { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ExperimentError::OutDir {
                path,
                reason: format!(
                    "is not a plan file of `adalbert run` ({e}); remove it to use this folder"
                ),
            })
    }

    /// The folder's manifest, after checking that it holds this experiment, and (when
    /// `same_plan`: for shards and merges) this very plan. A whole run may re-plan a folder of
    /// the same experiment: its items are keyed by their inputs, so changed ones are
    /// recomputed.
    fn check(study: &Study, same_plan: bool) -> Result<Option<Self>> {
        let Some(m) = Self::read(&study.out)? else {
            return Ok(None);
        };
        let path = Self::path(&study.out);
        if m.format != MANIFEST_FORMAT || m.experiment != study.exp.name {
            return Err(ExperimentError::OutDir {
                path,
                reason: format!(
                    "--out {} holds a run of experiment `{}` ({}), not `{}` ({}): give another --out",
                    study.out.display(),
                    m.experiment,
                    m.file.display(),
                    study.exp.name,
                    study.file.display()
                ),
            });
        }
        let fingerprint = study.plan.fingerprint();
        if m.plan != fingerprint {
            if !same_plan {
                eprintln!(
                    "note: {} changed since the last run into {} ({} -> {} items); items whose inputs changed have no result there yet",
                    study.file.display(),
                    study.out.display(),
                    m.items,
                    study.plan.items.len()
                );
            } else {
                return Err(ExperimentError::OutDir {
                    path,
                    reason: format!(
                        "--out {} was planned from another version of {} (plan {}, {} items; the file now gives plan {}, {} items). The shards of one run must all use one experiment file: run them all again with this one, or remove {} to re-plan the folder (its cached items are kept and reused)",
                        study.out.display(),
                        study.file.display(),
                        m.plan,
                        m.items,
                        fingerprint,
                        study.plan.items.len(),
                        Self::path(&study.out).display()
                    ),
                });
            }
        }
        Ok(Some(m))
    }

    /// Records the plan (and the shard count of a sharded run; a whole run keeps the one
    /// recorded). Every shard writes the same content, atomically, so their races are
    /// harmless.
    fn write(study: &Study, shards: Option<usize>) -> Result<()> {
        let shards = match shards {
            Some(n) => Some(n),
            None => Self::read(&study.out)?.and_then(|m| m.shards),
        };
        let m = Manifest {
            format: MANIFEST_FORMAT,
            experiment: study.exp.name.clone(),
            file: study.file.clone(),
            plan: study.plan.fingerprint(),
            items: study.plan.items.len(),
            shards,
        };
        let json = serde_json::to_vec_pretty(&m)?;
        adalbert_core::files::write_atomic(&Self::path(&study.out), &json)?;
        Ok(())
    }
}

/// Wall and CPU time of items one process computed (`<out>/timings/*.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// [`crate::plan::Item::kind`].
    pub kind: String,
    /// The item, or for a batch of compress items the number of items.
    pub label: String,
    pub items: usize,
    /// What the cost model estimated, CPU seconds.
    pub estimated_cpu_s: f64,
    pub wall_s: f64,
    /// Process CPU time (all threads; Linux only).
    pub cpu_s: Option<f64>,
}

/// CPU time of this process so far (user + system, all threads), from `/proc/self/stat`
/// (clock ticks of 1/100 s, Linux's fixed USER_HZ); `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3, `state`;
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Times work and appends the entry to the timing log (a re-run adds to what an earlier
/// process logged there).
struct Timings {
    path: PathBuf,
    entries: Vec<Timing>,
}

impl Timings {
    fn open(path: &Path) -> Self {
        let entries = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Self {
            path: path.to_path_buf(),
            entries,
        }
    }

    fn measure<T>(
        &mut self,
        kind: &str,
        label: String,
        items: usize,
        estimated_cpu_s: f64,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let (t0, c0) = (Instant::now(), process_cpu_seconds());
        let out = work()?;
        let cpu_s = process_cpu_seconds().zip(c0).map(|(b, a)| b - a);
        self.entries.push(Timing {
            kind: kind.to_string(),
            label,
            items,
            estimated_cpu_s,
            wall_s: t0.elapsed().as_secs_f64(),
            cpu_s,
        });
        let json = serde_json::to_vec_pretty(&self.entries)?;
        adalbert_core::files::write_atomic(&self.path, &json)?;
        Ok(out)
    }
}

/// Computes the items `which` (indices into the plan, in plan order) through `cache`;
/// returns how many were computed rather than found. A dependency outside `which` is read
/// from the cache (the partition keeps dependencies in one shard, so this is a safeguard).
fn execute(study: &Study, cache: &Cache, which: &[usize], log: &Path) -> Result<usize> {
    let (exp, plan, out) = (&study.exp, &study.plan, &study.out);
    let mut timings = Timings::open(log);
    let mut computed = 0;
    let of_stage = |s| {
        which
            .iter()
            .copied()
            .filter(move |&i| plan.items[i].stage() == s)
    };

    let trains: Vec<usize> = of_stage(crate::plan::Stage::Train).collect();
    eprintln!("[1/4] train: {} item(s)", trains.len());
    let mut trained: HashMap<usize, TrainRecord> = HashMap::new();
    for (n, &i) in trains.iter().enumerate() {
        let item = &plan.items[i];
        let Work::Train(t) = &item.work else { continue };
        let sha = plan.sha_of(&t.backbone);
        let found = if cache.resume() {
            train::cached(exp, t, sha, out, cache)?
        } else {
            None
        };
        let done = found.is_some();
        eprintln!(
            "  ({}/{}) {}{}",
            n + 1,
            trains.len(),
            item.label,
            if done { " (cached)" } else { "" }
        );
        let record = match found {
            Some(r) => r,
            None => {
                computed += 1;
                let trained = timings.measure(
                    item.kind(),
                    item.label.clone(),
                    1,
                    item.cost_seconds(),
                    || train::run_item(exp, t, sha, out, cache, &plan.points),
                );
                match trained {
                    Ok(r) => r,
                    // Another shard training a copy of the same item may have finished (and
                    // removed the run state this one was reading) meanwhile: its result is
                    // this item's result.
                    Err(e) => match train::cached(exp, t, sha, out, cache)? {
                        Some(r) => r,
                        None => return Err(e),
                    },
                }
            }
        };
        trained.insert(i, record);
    }

    let compresses: Vec<usize> = of_stage(crate::plan::Stage::Compress).collect();
    eprintln!("[2/4] compress and faults: {} item(s)", compresses.len());
    let mut pending: Vec<usize> = Vec::new();
    for &i in &compresses {
        let Work::Compress { bundle, .. } = plan.items[i].work else {
            continue;
        };
        if cache.resume() && cache.read::<Row>(&plan.items[i].key).is_some() {
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = trained.entry(bundle) {
            let Work::Train(t) = &plan.items[bundle].work else {
                continue;
            };
            let sha = plan.sha_of(&t.backbone);
            let r =
                train::cached(exp, t, sha, out, cache)?.ok_or_else(|| ExperimentError::Bundle {
                    path: study.cache_dir(),
                    reason: format!(
                        "the bundle of `{}` is not trained yet (needed by `{}`)",
                        plan.items[bundle].label, plan.items[i].label
                    ),
                })?;
            slot.insert(r);
        }
        pending.push(i);
    }
    if !pending.is_empty() {
        let pairs: Vec<(usize, compress::Trained)> = pending
            .iter()
            .filter_map(|&i| match plan.items[i].work {
                Work::Compress { point, bundle } => Some((
                    point,
                    compress::Trained {
                        record: &trained[&bundle],
                        key: plan.items[bundle].id(),
                    },
                )),
                _ => None,
            })
            .collect();
        let estimate: f64 = pending.iter().map(|&i| plan.items[i].cost_seconds()).sum();
        let label = format!("{} compress item(s)", pending.len());
        timings.measure("compress", label, pending.len(), estimate, || {
            compress::run_pairs(exp, &plan.points, &pairs, out, cache)
        })?;
        computed += pending.len();
    }

    let sims: Vec<usize> = of_stage(crate::plan::Stage::Simulate).collect();
    eprintln!("[3/4] simulate: {} item(s)", sims.len());
    for &i in &sims {
        let item = &plan.items[i];
        let is_cached = cache.resume() && read_back_one(study, cache, i)?.is_some();
        if is_cached {
            continue;
        }
        computed += 1;
        timings.measure(
            item.kind(),
            item.label.clone(),
            1,
            item.cost_seconds(),
            || match (&item.work, &exp.simulate) {
                (Work::Simulate { model }, Some(sec)) => {
                    simulate::run_model(sec, model, SIMULATED_LABELS, cache).map(|_| ())
                }
                (Work::Dse { space }, _) => simulate::run_dse(space, cache).map(|_| ()),
                _ => Ok(()),
            },
        )?;
    }
    Ok(computed)
}

/// A finished result read back from the cache.
enum Done {
    Train(Box<TrainRecord>),
    Compress(Box<Row>),
    Simulate(SimResult),
    Dse(Vec<DseRow>),
}

/// The cached result of item `i`.
fn read_back_one(study: &Study, cache: &Cache, i: usize) -> Result<Option<Done>> {
    let (exp, plan, out) = (&study.exp, &study.plan, &study.out);
    let item = &plan.items[i];
    Ok(match &item.work {
        Work::Train(t) => train::cached(exp, t, plan.sha_of(&t.backbone), out, cache)?
            .map(|r| Done::Train(Box::new(r))),
        Work::Compress { .. } => cache.read(&item.key).map(|r| Done::Compress(Box::new(r))),
        Work::Simulate { .. } => cache.read(&item.key).map(Done::Simulate),
        Work::Dse { .. } => cache.read(&item.key).map(Done::Dse),
    })
}

/// The cached result of every item of the plan (`None` where missing), in plan order.
fn read_back(study: &Study, cache: &Cache) -> Result<Vec<Option<Done>>> {
    (0..study.plan.items.len())
        .map(|i| read_back_one(study, cache, i))
        .collect()
}

/// Which items of `study` have a result in its cache (without creating the folder).
fn statuses(study: &Study) -> Result<Vec<bool>> {
    if !study.cache_dir().is_dir() {
        return Ok(vec![false; study.plan.items.len()]);
    }
    let cache = Cache::new(study.cache_dir(), true)?;
    Ok(read_back(study, &cache)?
        .iter()
        .map(Option::is_some)
        .collect())
}

/// Builds the report from the cache, or names the missing items (and their shards, among
/// `shards` when the folder was run in shards).
fn report_from_cache(study: &Study, cache: &Cache, shards: Option<usize>) -> Result<RunOutcome> {
    let (exp, plan) = (&study.exp, &study.plan);
    let done = read_back(study, cache)?;
    let missing: Vec<usize> = (0..done.len()).filter(|&i| done[i].is_none()).collect();
    if !missing.is_empty() {
        return Err(missing_error(study, &missing, shards));
    }
    let mut train_records: Vec<TrainRecord> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut sim: Vec<SimResult> = Vec::new();
    let mut dse: Option<Vec<DseRow>> = None;
    for d in done.into_iter().flatten() {
        match d {
            Done::Train(r) => train_records.push(*r),
            Done::Compress(r) => rows.push(*r),
            Done::Simulate(s) => sim.push(s),
            Done::Dse(d) => dse = Some(d),
        }
    }
    // The backbone of each bundle of a point, in the order of the compress items of a point.
    let bundle_backbones: Vec<String> = plan
        .items
        .iter()
        .filter_map(
            |i| match (&i.work, &plan.items.get(bundle_of(&i.work)?)?.work) {
                (Work::Compress { point: 0, .. }, Work::Train(t)) => Some(t.backbone.clone()),
                _ => None,
            },
        )
        .collect();
    let compress_records: Vec<CompressRecord> =
        if plan.points.is_empty() || bundle_backbones.is_empty() {
            vec![]
        } else {
            compress::aggregate(&plan.points, &rows, &bundle_backbones)
        };
    let mut backbones = Vec::new();
    for b in &exp.backbones {
        let config = EncoderConfig::from_path(&b.path)?;
        backbones.push(report::BackboneInfo {
            name: b.name.clone(),
            path: b.path.clone(),
            sha256: plan.sha_of(&b.name).to_string(),
            params: config.shape.param_counts().total(),
            albert: config.shape.family == adalbert_core::Family::Albert,
        });
    }
    let prov = report::Provenance {
        config_text: study.text.clone(),
        backbones,
        git_revision: git_revision(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        estimated_cpu_s: plan.total_cost_seconds(),
    };
    let dir = study.out.join("report");
    adalbert_core::files::remove_stale_temporaries(&dir);
    let heads = report::write(
        &dir,
        &report::Inputs {
            exp,
            prov: &prov,
            train: &train_records,
            compress: &compress_records,
            sim: &sim,
            dse: dse.as_deref(),
        },
    )
    .context(|| format!("writing the report into {}", dir.display()))?;
    submit::write_all(exp, &train_records, cache, &dir)
        .context(|| format!("writing the GLUE submission files into {}", dir.display()))?;
    Ok(RunOutcome::Report {
        headlines: heads.lines,
        report: dir.join("report.md"),
    })
}

/// The training item a compress item evaluates.
fn bundle_of(work: &Work) -> Option<usize> {
    match work {
        Work::Compress { bundle, .. } => Some(*bundle),
        _ => None,
    }
}

/// Most missing items named per shard; the rest are counted.
const MISSING_SHOWN: usize = 5;

fn missing_error(study: &Study, missing: &[usize], shards: Option<usize>) -> ExperimentError {
    let plan = &study.plan;
    let summary = format!(
        "{} of {} items of experiment `{}` have no result in {}:",
        missing.len(),
        plan.items.len(),
        study.exp.name,
        study.cache_dir().display()
    );
    let name = |i: usize| {
        format!(
            "{} {} ({})",
            plan.items[i].stage().name(),
            plan.items[i].label,
            plan.items[i].id()
        )
    };
    // The first few of `items`, then how many more.
    let list = |lines: &mut Vec<String>, items: &[usize], indent: &str| {
        for &i in items.iter().take(MISSING_SHOWN) {
            lines.push(format!("{indent}{}", name(i)));
        }
        if items.len() > MISSING_SHOWN {
            lines.push(format!(
                "{indent}... and {} more",
                items.len() - MISSING_SHOWN
            ));
        }
    };
    let mut lines = Vec::new();
    match shards {
        Some(n) => {
            let shards_of = plan.partition(n);
            let mut per_shard: Vec<Vec<usize>> = vec![Vec::new(); n];
            for &i in missing {
                for &s in &shards_of[i] {
                    per_shard[s - 1].push(i);
                }
            }
            let mut rerun = Vec::new();
            for (s, items) in per_shard.iter().enumerate() {
                if items.is_empty() {
                    continue;
                }
                rerun.push((s + 1).to_string());
                lines.push(format!(
                    "  shard {}/{n}: {} item(s) missing",
                    s + 1,
                    items.len()
                ));
                list(&mut lines, items, "    ");
            }
            lines.push(format!(
                "Run (or re-run) shard(s) {} with `{}`, then --merge again; `--list-items --shard I/{n}` shows each shard's items and whether they are done.",
                rerun.join(", "),
                study.command(&format!("--shard I/{n}"))
            ));
        }
        None => {
            list(&mut lines, missing, "  ");
            lines.push(format!(
                "No sharded run has used this folder: compute them with `{}` (or in shards with --shard I/N).",
                study.command("--resume")
            ));
        }
    }
    ExperimentError::Missing {
        summary,
        missing: lines,
    }
}

/// One item of a plan listing.
#[derive(Debug, Clone, Serialize)]
pub struct ListedItem {
    pub id: String,
    pub stage: &'static str,
    pub kind: &'static str,
    pub label: String,
    pub estimated_cpu_s: f64,
    /// The shards (1-based) that compute it, when listing a shard: one, or several for a
    /// training item copied into the parts of a large group.
    pub shards: Vec<usize>,
    pub depends_on: Vec<String>,
    /// Whether the output folder's cache holds its result.
    pub done: bool,
}

/// `adalbert run --list-items`: the plan, or one shard's part of it.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub experiment: String,
    /// The plan fingerprint (`<out>/plan.json` records it).
    pub plan: String,
    pub out: PathBuf,
    /// `I/N` when listing one shard.
    pub shard: Option<String>,
    /// Items in the whole plan.
    pub total_items: usize,
    pub total_estimated_cpu_s: f64,
    /// Estimated CPU seconds of every shard (when listing one).
    pub shard_estimated_cpu_s: Vec<f64>,
    pub items: Vec<ListedItem>,
}

/// The plan of `experiment` (its items, estimated costs and, with `shard`, one shard's
/// part), with which items the output folder already holds. Writes nothing.
pub fn list_items(experiment: &Path, out: Option<&Path>, shard: Option<Shard>) -> Result<Listing> {
    let study = Study::open(experiment, out)?;
    Manifest::check(&study, false)?;
    let plan = &study.plan;
    let done = statuses(&study)?;
    let shards_of = shard.map(|s| plan.partition(s.count()));
    let items = plan
        .items
        .iter()
        .enumerate()
        .filter(|(i, _)| match (&shard, &shards_of) {
            (Some(s), Some(of)) => of[*i].contains(&s.index()),
            _ => true,
        })
        .map(|(i, item)| ListedItem {
            id: item.id().to_string(),
            stage: item.stage().name(),
            kind: item.kind(),
            label: item.label.clone(),
            estimated_cpu_s: item.cost_seconds(),
            shards: shards_of.as_ref().map_or_else(Vec::new, |of| of[i].clone()),
            depends_on: item
                .deps
                .iter()
                .map(|&d| plan.items[d].id().to_string())
                .collect(),
            done: done[i],
        })
        .collect();
    Ok(Listing {
        experiment: study.exp.name.clone(),
        plan: plan.fingerprint(),
        out: study.out.clone(),
        shard: shard.map(|s| s.to_string()),
        total_items: plan.items.len(),
        total_estimated_cpu_s: plan.total_cost_seconds(),
        shard_estimated_cpu_s: shard.map_or_else(Vec::new, |s| plan.shard_costs(s.count())),
        items,
    })
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
