//! The experiment file: one TOML that reproduces a whole study (`configs/*.toml`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use adalbert_tasks::Split;

use crate::error::{ExperimentError, Result};
use crate::sweep::{self, Group};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    /// Backbone model directory (relative paths are relative to the working directory); the
    /// short form of one `[[backbones]]` entry named after the folder.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// The backbones every training item runs on (a BERT and the ALBERT distilled from it,
    /// for the paper's comparison). Either this or `model`.
    #[serde(default)]
    pub backbones: Vec<BackboneEntry>,
    /// `full` runs the file as written; `reduced` first applies the `[reduced]` section (fewer
    /// seeds, capped data), so one file holds both scales of a study.
    #[serde(default = "default_scale")]
    pub scale: String,
    #[serde(default)]
    pub reduced: Option<ReducedSection>,
    /// Offline-suite data folder.
    #[serde(default = "default_data")]
    pub data: PathBuf,
    /// Folder holding the GLUE task folders (CoLA/, SST-2/, ...), for GLUE task names.
    #[serde(default)]
    pub glue_dir: Option<PathBuf>,
    /// GLUE: the fraction of each `train.tsv` held out (seeded by `split_seed`) as the
    /// selection split; training uses the rest and the official dev set is reported, because
    /// GLUE's test set is unlabeled (see `adalbert_tasks::study`).
    #[serde(default = "default_select_fraction")]
    pub glue_select_fraction: f64,
    /// GLUE: the most examples the selection slice takes from a `train.tsv`.
    #[serde(default = "default_select_max")]
    pub glue_select_max: usize,
    /// Seed of the offline suite's train/dev/test split, and of GLUE's selection slice.
    #[serde(default)]
    pub split_seed: u64,
    /// Training seeds; every training item runs once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Free text printed at the top of the report (e.g. which subsets were used).
    #[serde(default)]
    pub note: String,
    pub train: TrainSection,
    pub tasks: TasksSection,
    #[serde(default)]
    pub sweep: Option<SweepSection>,
    #[serde(default)]
    pub compress: Option<CompressSection>,
    #[serde(default)]
    pub simulate: Option<SimulateSection>,
    /// `tasks.files`, resolved (label set and kind read from the training files) with the
    /// sha256 of each file, filled in by [`Experiment::load`].
    #[serde(skip)]
    pub file_tasks: Vec<ResolvedFiles>,
}

/// One `[[tasks.files]]` task, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedFiles {
    pub task: adalbert_tasks::FileTask,
    /// sha256 of the train, validation and test files, in that order: in the training key,
    /// so editing a file retrains.
    pub sha256: Vec<String>,
}

/// One backbone of the study.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackboneEntry {
    /// Short name used in item labels and tables (`minilm`, `albert-minilm`).
    pub name: String,
    /// Model directory (config.json, weights, tokenizer.json).
    pub path: PathBuf,
}

/// What `scale = "reduced"` changes: every key given here replaces the one of the full study.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReducedSection {
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub max_train: Option<usize>,
    #[serde(default)]
    pub max_eval: Option<usize>,
    #[serde(default)]
    pub max_test: Option<usize>,
    #[serde(default)]
    pub max_len: Option<usize>,
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    #[serde(default)]
    pub sweep_tasks: Option<Vec<String>>,
    #[serde(default)]
    pub sweep_sizes: Option<Vec<usize>>,
    #[serde(default)]
    pub sweep_seeds: Option<usize>,
    #[serde(default)]
    pub lr_grid: Option<LrGrid>,
    /// Training seeds of the compress-then-train items.
    #[serde(default)]
    pub compress_train_seeds: Option<usize>,
}

/// Learning rates tried per method kind; the one with the best mean dev metric over seeds is
/// reported (on test). A kind left out uses its single `lr_*` value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LrGrid {
    #[serde(default)]
    pub full: Vec<f64>,
    #[serde(default)]
    pub adapter: Vec<f64>,
    #[serde(default)]
    pub head: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    #[serde(default)]
    pub max_train: Option<usize>,
    #[serde(default)]
    pub max_eval: Option<usize>,
    #[serde(default = "default_lr_small")]
    pub lr_adapter: f64,
    #[serde(default = "default_lr_small")]
    pub lr_head: f64,
    #[serde(default = "default_lr_full")]
    pub lr_full: f64,
    /// `auto` (mean for sentence-transformers models, else pooler), `pooler`, `mean`, `cls`.
    #[serde(default = "default_auto")]
    pub pooling: String,
    /// Adapter sharing over ALBERT's layer applications: `per-application` or `shared`.
    #[serde(default = "default_sharing")]
    pub sharing: String,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Learning-rate grid per method kind (selection on dev).
    #[serde(default)]
    pub lr_grid: Option<LrGrid>,
    /// Early stopping: stop after this many epochs without a better dev metric (the bundle
    /// keeps the best dev epoch either way).
    #[serde(default)]
    pub patience: Option<usize>,
    /// Report on at most this many test examples (the first ones of the test split).
    #[serde(default)]
    pub max_test: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    /// Registry task names and the names of `files` tasks to run.
    pub names: Vec<String>,
    /// Adapter specs (`houlsby:64`, ...) and the baselines `full` and `head`.
    pub methods: Vec<String>,
    /// Tasks of the user's own data files (`[[tasks.files]]`: `name`, `train_file`,
    /// `validation_file`, `test_file`, `format`, `text_column`, `text_pair_column`,
    /// `label_column`, `labels`, `task_type`, as the command line's flags); each runs when
    /// its name is listed in `names` (or `sweep.tasks`).
    #[serde(default)]
    pub files: Vec<adalbert_tasks::DataFiles>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    pub tasks: Vec<String>,
    /// Adapter kind swept: houlsby, pfeiffer, parallel or lora.
    #[serde(default)]
    pub kind: Option<String>,
    /// Several kinds swept (with `kind`, if given, first).
    #[serde(default)]
    pub kinds: Vec<String>,
    pub sizes: Vec<usize>,
    /// Adapter sharing variants swept on ALBERT backbones (`per-application`, `shared`);
    /// empty: `train.sharing` only. BERT backbones have one application per layer, so only
    /// `train.sharing` is trained on them.
    #[serde(default)]
    pub sharing: Vec<String>,
    /// Learning rate of the sweep's items (default: the adapter grid, each chosen on dev).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Training seeds of the sweep's items (the first N of `seeds`; default all).
    #[serde(default)]
    pub seeds: Option<usize>,
}

impl SweepSection {
    /// The kinds swept, in order.
    pub fn kinds(&self) -> Vec<String> {
        let mut v: Vec<String> = self.kind.iter().cloned().collect();
        for k in &self.kinds {
            if !v.contains(k) {
                v.push(k.clone());
            }
        }
        v
    }
}

/// The `[compress]` section: which trained bundles are evaluated on the compressed backbone,
/// and the compression groups, in the vocabulary of `adalbert compress --sweep` (see
/// [`crate::sweep`]). The section's own group keys (`plans`, `faults`, `seeds`, ...) form one
/// group named `compress`; `[[compress.group]]` tables add more.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct CompressSection {
    /// Which trained method's bundles are evaluated (one of `tasks.methods`, not `full`).
    pub method: String,
    /// Evaluate on the first N test examples (default: `train.max_test`).
    pub max_eval: Option<usize>,
    /// Also train `method` on each compressed backbone (compress first, then train: the
    /// paper's robustness claim), besides evaluating the fp32-trained bundles on it.
    pub train_on_compressed: bool,
    /// Learning rate of the compared bundles (both sides); default: the first of the
    /// method's grid, or its `lr_*`.
    pub lr: Option<f64>,
    /// Training seeds (the first N of `seeds`) of the compress-then-train items.
    pub train_seeds: usize,
    pub groups: Vec<Group>,
}

/// Name of the group the `[compress]` section's own keys form.
pub const SECTION_GROUP: &str = "compress";

impl TryFrom<toml::Table> for CompressSection {
    type Error = String;

    fn try_from(mut table: toml::Table) -> std::result::Result<Self, String> {
        let method = match table.remove("method") {
            Some(toml::Value::String(m)) => m,
            Some(other) => return Err(format!("`method`: expected a string, found {other}")),
            None => return Err("missing field `method`".into()),
        };
        let max_eval = table
            .remove("max_eval")
            .map(|v| v.try_into::<usize>())
            .transpose()
            .map_err(|e| format!("`max_eval`: {e}"))?;
        let train_on_compressed = match table.remove("train_on_compressed") {
            Some(toml::Value::Boolean(b)) => b,
            Some(other) => {
                return Err(format!(
                    "`train_on_compressed`: expected true or false, found {other}"
                ))
            }
            None => false,
        };
        let lr = match table.remove("lr") {
            Some(toml::Value::Float(f)) => Some(f),
            Some(other) => return Err(format!("`lr`: expected a number, found {other}")),
            None => None,
        };
        let train_seeds = table
            .remove("train_seeds")
            .map(|v| v.try_into::<usize>())
            .transpose()
            .map_err(|e| format!("`train_seeds`: {e}"))?
            .unwrap_or(1);
        let listed: Vec<Group> = table
            .remove("group")
            .map(|v| v.try_into())
            .transpose()
            .map_err(|e| format!("`group`: {e}"))?
            .unwrap_or_default();
        let mut groups = Vec::with_capacity(listed.len() + 1);
        if !table.is_empty() {
            let mut own: Group = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string())?;
            if own.name.is_empty() {
                own.name = SECTION_GROUP.into();
            }
            groups.push(own);
        }
        groups.extend(listed);
        Ok(Self {
            method,
            max_eval,
            train_on_compressed,
            lr,
            train_seeds,
            groups,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSection {
    /// Built-in names (albert-base, bert-base, minilm) or model directories.
    pub models: Vec<String>,
    pub adapter: String,
    #[serde(default = "default_sharing")]
    pub sharing: String,
    /// Backbone compression plan, as `adalbert compress` takes it (`int8+prune=0.5+bitmask`).
    pub plan: String,
    /// Bits per RRAM cell of the backbone's values.
    #[serde(default = "default_bits_per_cell")]
    pub bits_per_cell: u32,
    #[serde(default = "default_max_tasks")]
    pub max_tasks: u64,
    #[serde(default = "default_seq")]
    pub seq_len: u64,
    #[serde(default = "default_one_f")]
    pub requests_per_switch: f64,
    /// Optional design space (as for `adalbert dse`) for the Pareto figure.
    #[serde(default)]
    pub dse_space: Option<PathBuf>,
}

impl SimulateSection {
    /// Every value the simulate stage will use, as (key, reason) on the first bad one: the
    /// models must resolve, the sequence length fit each model's positions, the design space
    /// file exist and parse.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let err = |key: &str, why: String| (format!("simulate.{key}"), why);
        if self.max_tasks == 0 || self.max_tasks > 64 {
            return Err(err("max_tasks", "must be in 1..=64".into()));
        }
        adalbert_hw::StoragePlan::parse(&self.plan, self.bits_per_cell)
            .map_err(|e| err("plan", e.to_string()))?;
        adalbert_hw::spec::parse_adapter(&self.adapter)
            .map_err(|e| err("adapter", e.to_string()))?;
        self.sharing
            .parse::<adalbert_hw::Sharing>()
            .map_err(|e| err("sharing", e.to_string()))?;
        if !(self.requests_per_switch.is_finite() && self.requests_per_switch > 0.0) {
            return Err(err(
                "requests_per_switch",
                format!("= {}: must be a number > 0", self.requests_per_switch),
            ));
        }
        if self.models.is_empty() {
            return Err(err("models", "must list at least one model".into()));
        }
        for m in &self.models {
            let shape = adalbert_hw::ModelShape::resolve(m)
                .map_err(|e| err("models", format!("`{m}`: {e}")))?;
            shape
                .check_seq_len(self.seq_len)
                .map_err(|e| err("seq_len", format!("for model `{m}`: {e}")))?;
        }
        if let Some(path) = &self.dse_space {
            let (arch, tech) = (
                adalbert_hw::Accelerator::builtin(),
                adalbert_hw::MemoryTable::builtin(),
            );
            let (arch, tech) = match (arch, tech) {
                (Ok(a), Ok(t)) => (a, t),
                (Err(e), _) | (_, Err(e)) => return Err(err("dse_space", e.to_string())),
            };
            adalbert_hw::dse::Space::from_path(path, &arch, &tech)
                .map_err(|e| err("dse_space", crate::error::chain(&e)))?;
        }
        Ok(())
    }
}

fn default_select_fraction() -> f64 {
    adalbert_tasks::study::DEFAULT_SELECT_FRACTION
}
fn default_select_max() -> usize {
    adalbert_tasks::study::DEFAULT_SELECT_MAX
}
fn default_scale() -> String {
    "full".into()
}
fn default_data() -> PathBuf {
    PathBuf::from("assets/data")
}
fn default_seeds() -> Vec<u64> {
    vec![42]
}
fn default_batch() -> usize {
    32
}
fn default_max_len() -> usize {
    128
}
fn default_lr_small() -> f64 {
    1e-3
}
fn default_lr_full() -> f64 {
    3e-5
}
fn default_auto() -> String {
    "auto".into()
}
fn default_sharing() -> String {
    "per-application".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_bits_per_cell() -> u32 {
    2
}
fn default_max_tasks() -> u64 {
    8
}
fn default_seq() -> u64 {
    128
}

impl TrainSection {
    /// The peak learning rate of a method when it has no grid.
    pub fn lr_for(&self, method: &Method) -> f64 {
        match method {
            Method::Adapter(_) => self.lr_adapter,
            Method::Full => self.lr_full,
            Method::Head => self.lr_head,
        }
    }

    /// The learning rates tried for a method: its grid, or its single `lr_*`.
    pub fn lrs_for(&self, method: &Method) -> Vec<f64> {
        let grid = self.lr_grid.as_ref().map(|g| match method {
            Method::Adapter(_) => &g.adapter,
            Method::Full => &g.full,
            Method::Head => &g.head,
        });
        match grid {
            Some(g) if !g.is_empty() => g.clone(),
            _ => vec![self.lr_for(method)],
        }
    }

    /// The training configuration of one item: what the train stage runs and what
    /// validation checks.
    pub fn config(&self, lr: f64, seed: u64) -> adalbert_train::TrainConfig {
        adalbert_train::TrainConfig {
            epochs: self.epochs,
            lr,
            batch_size: self.batch,
            max_len: self.max_len,
            dropout: self.dropout,
            seed,
            patience: self.patience,
            max_train_examples: self.max_train,
            max_eval_examples: self.max_eval,
            ..adalbert_train::TrainConfig::default()
        }
    }

    /// The key of this section a training setting comes from (`lr` depends on the method).
    fn key_of(field: &str, method: &Method) -> String {
        let key = match (field, method) {
            ("lr", Method::Adapter(_)) => "lr_adapter or lr_grid.adapter",
            ("lr", Method::Full) => "lr_full or lr_grid.full",
            ("lr", Method::Head) => "lr_head or lr_grid.head",
            ("batch_size", _) => "batch",
            ("max_train_examples", _) => "max_train",
            ("max_eval_examples", _) => "max_eval",
            (other, _) => other,
        };
        format!("train.{key}")
    }
}

impl Experiment {
    /// Reads and validates an experiment file (returned with its text); errors name the key
    /// and what was expected. With `scale = "reduced"` the `[reduced]` section is applied
    /// first, so what is validated (and keyed) is what runs.
    pub fn load(path: &Path) -> Result<(Self, String)> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let exp = Self::from_toml_str(&text, path)?;
        Ok((exp, text))
    }

    /// Parses and validates an experiment file's text, as [`Experiment::load`] does; `path`
    /// names it in errors (the paths inside are still resolved against the working
    /// directory, and the model's `config.json` is read). Public so the loader can be fuzzed
    /// on text (`fuzz/`).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let mut exp: Experiment = toml::from_str(text).map_err(|e| ExperimentError::Toml {
            what: "experiment file",
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        exp.normalize(path)?;
        exp.resolve_files(path)?;
        exp.validate(path)?;
        Ok(exp)
    }

    /// Reads each `[[tasks.files]]` entry's training file to fix its labels, checks every
    /// split's file, and hashes the files. An experiment trains on train, selects on
    /// validation and reports on test, so all three files are required.
    fn resolve_files(&mut self, path: &Path) -> Result<()> {
        let at = |key: &str, why: String| ExperimentError::Config {
            origin: path.display().to_string(),
            key: key.into(),
            reason: why,
        };
        let mut resolved: Vec<ResolvedFiles> = Vec::new();
        for files in &self.tasks.files {
            let name = files
                .task_name()
                .map_err(|e| at("tasks.files.name", e.to_string()))?;
            if resolved.iter().any(|r| r.task.spec.name == name) {
                return Err(at("tasks.files.name", format!("lists `{name}` twice")));
            }
            let mut sha256 = Vec::new();
            for (key, file) in [
                ("train_file", &files.train_file),
                ("validation_file", &files.validation_file),
                ("test_file", &files.test_file),
            ] {
                let file = file.as_ref().ok_or_else(|| {
                    at(
                        &format!("tasks.files.{key}"),
                        format!("missing for `{name}`: an experiment trains on train_file, picks the epoch on validation_file and reports on test_file"),
                    )
                })?;
                sha256.push(
                    adalbert_model::checkpoint::sha256_file(file).map_err(|e| {
                        at(&format!("tasks.files.{key}"), format!("(`{name}`): {e}"))
                    })?,
                );
            }
            let task = files
                .resolve()
                .map_err(|e| at("tasks.files", format!("(`{name}`): {e}")))?;
            // Read every split now, so a bad row fails here and not after hours of training.
            for split in [Split::Train, Split::Dev, Split::Test] {
                task.load(split)
                    .map_err(|e| at("tasks.files", format!("(`{name}`): {e}")))?;
            }
            resolved.push(ResolvedFiles { task, sha256 });
        }
        self.file_tasks = resolved;
        Ok(())
    }

    /// The `[[tasks.files]]` task named `name`, if there is one.
    pub fn file_task(&self, name: &str) -> Option<&ResolvedFiles> {
        self.file_tasks.iter().find(|r| r.task.spec.name == name)
    }

    /// One split of a task: a `[[tasks.files]]` task's file, or a registry task read from
    /// [`Experiment::data_for`] with the experiment's split seed.
    pub fn load_split(&self, task: &str, split: Split) -> Result<adalbert_tasks::Dataset> {
        Ok(match self.file_task(task) {
            Some(r) => r.task.load(split)?,
            None => adalbert_tasks::load_dataset(
                task,
                Some(&self.data_for(task)),
                split,
                self.split_seed,
            )?,
        })
    }

    /// Resolves `model` into `backbones` and applies the scale.
    fn normalize(&mut self, path: &Path) -> Result<()> {
        let at = |key: &str, why: String| ExperimentError::Config {
            origin: path.display().to_string(),
            key: key.into(),
            reason: why,
        };
        match (self.model.take(), self.backbones.is_empty()) {
            (Some(_), false) => {
                return Err(at(
                    "model",
                    "give either `model` or `[[backbones]]`, not both".into(),
                ))
            }
            (None, true) => {
                return Err(at(
                    "backbones",
                    "missing: give `model = \"DIR\"` or one `[[backbones]]` table (name, path) per backbone".into(),
                ))
            }
            (Some(m), true) => {
                let name = m
                    .file_name()
                    .map_or_else(|| "backbone".into(), |n| n.to_string_lossy().into_owned());
                self.backbones.push(BackboneEntry { name, path: m });
            }
            (None, false) => {}
        }
        let names: Vec<String> = self.backbones.iter().map(|b| b.name.clone()).collect();
        check_unique(&names).map_err(|e| at("backbones.name", e))?;
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.contains(['/', '|', ' ']))
        {
            return Err(at(
                "backbones.name",
                format!("`{bad}`: must be non-empty, without spaces, `/` or `|`"),
            ));
        }
        match self.scale.as_str() {
            "full" => {}
            "reduced" => {
                let r = self.reduced.clone().ok_or_else(|| {
                    at(
                        "scale",
                        "= \"reduced\" needs a `[reduced]` section (the caps of the reduced study)"
                            .into(),
                    )
                })?;
                self.apply_reduced(&r);
            }
            other => {
                return Err(at(
                    "scale",
                    format!("= \"{other}\": expected \"full\" or \"reduced\""),
                ))
            }
        }
        Ok(())
    }

    fn apply_reduced(&mut self, r: &ReducedSection) {
        if let Some(v) = &r.seeds {
            self.seeds = v.clone();
        }
        let t = &mut self.train;
        if let Some(v) = r.epochs {
            t.epochs = v;
        }
        if let Some(v) = r.max_train {
            t.max_train = Some(v);
        }
        if let Some(v) = r.max_eval {
            t.max_eval = Some(v);
        }
        if let Some(v) = r.max_test {
            t.max_test = Some(v);
        }
        if let Some(v) = r.max_len {
            t.max_len = v;
        }
        if let Some(v) = &r.lr_grid {
            t.lr_grid = Some(v.clone());
        }
        if let Some(v) = &r.tasks {
            self.tasks.names = v.clone();
        }
        if let Some(s) = &mut self.sweep {
            if let Some(v) = &r.sweep_tasks {
                s.tasks = v.clone();
            }
            if let Some(v) = &r.sweep_sizes {
                s.sizes = v.clone();
            }
            if let Some(v) = r.sweep_seeds {
                s.seeds = Some(v);
            }
        }
        if let (Some(c), Some(n)) = (&mut self.compress, r.compress_train_seeds) {
            c.train_seeds = n;
        }
    }

    /// The backbone named `name`.
    pub fn backbone(&self, name: &str) -> Option<&BackboneEntry> {
        self.backbones.iter().find(|b| b.name == name)
    }

    /// The model folder of the first backbone (tokenizer for estimates, the report's default).
    pub fn first_model(&self) -> &Path {
        self.backbones
            .first()
            .map_or_else(|| Path::new(""), |b| b.path.as_path())
    }

    /// Whether the backbone `name` is an ALBERT (layers applied several times).
    pub fn is_albert(&self, name: &str) -> bool {
        self.backbone(name)
            .and_then(|b| adalbert_model::EncoderConfig::from_path(&b.path).ok())
            .is_some_and(|c| c.shape.family == adalbert_core::Family::Albert)
    }

    /// The learning rate of the compress stage's bundles (and of the compress-then-train
    /// items).
    pub fn compress_lr(&self) -> Option<f64> {
        let c = self.compress.as_ref()?;
        let m = method_of(&c.method).ok()?;
        Some(c.lr.unwrap_or_else(|| self.train.lrs_for(&m)[0]))
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let at = |key: &str, why: String| ExperimentError::Config {
            origin: path.display().to_string(),
            key: key.into(),
            reason: why,
        };
        for b in &self.backbones {
            if !b.path.join("config.json").is_file() {
                return Err(at(
                    "backbones.path",
                    format!(
                        "= {} (backbone `{}`): no config.json there. Download the checkpoint (config.json, model.safetensors or pytorch_model.bin, tokenizer.json) from the Hugging Face hub into that folder, run scripts/fetch-assets for assets/minilm, or `adalbert distill` for an ALBERT student",
                        b.path.display(),
                        b.name
                    ),
                ));
            }
            let positions = adalbert_model::EncoderConfig::from_path(&b.path)
                .map_err(|e| at("backbones.path", e.to_string()))?
                .shape
                .max_position_embeddings;
            if self.train.max_len > positions {
                return Err(at(
                    "train.max_len",
                    format!(
                        "= {}: more than the {positions} positions of backbone `{}` (max_position_embeddings in {})",
                        self.train.max_len,
                        b.name,
                        b.path.join("config.json").display()
                    ),
                ));
            }
        }
        if self.seeds.is_empty() {
            return Err(at("seeds", "must list at least one seed".into()));
        }
        if self.tasks.names.is_empty() || self.tasks.methods.is_empty() {
            return Err(at("tasks", "needs at least one name and one method".into()));
        }
        check_unique(&self.tasks.names).map_err(|e| at("tasks.names", e))?;
        check_unique(&self.tasks.methods).map_err(|e| at("tasks.methods", e))?;
        let mut glue_tasks: Vec<String> = Vec::new();
        let mut offline_tasks: Vec<String> = Vec::new();
        for name in self.all_tasks() {
            if self.file_task(&name).is_some() {
                continue;
            }
            let spec = adalbert_tasks::task_spec(&name).map_err(|e| {
                let mut why = e.to_string();
                if !self.file_tasks.is_empty() {
                    let own: Vec<&str> = self
                        .file_tasks
                        .iter()
                        .map(|r| r.task.spec.name.as_str())
                        .collect();
                    why.push_str(&format!("; [[tasks.files]] tasks: {}", own.join(", ")));
                }
                at("tasks.names", why)
            })?;
            if spec.is_glue() {
                self.check_glue_task(&spec, path)?;
                glue_tasks.push(name);
            } else {
                offline_tasks.push(name);
            }
        }
        if let (Some(g), Some(o)) = (glue_tasks.first(), offline_tasks.first()) {
            return Err(at(
                "tasks.names",
                format!("mixes the GLUE task `{g}` with the offline-suite task `{o}`: a study reports GLUE on its dev set and the offline suite on its test split, so give each its own experiment file"),
            ));
        }
        if !glue_tasks.is_empty() {
            self.glue_selection()
                .check()
                .map_err(|(field, why)| at(&format!("glue_select_{field}"), why))?;
        }
        // Every value a training item will use, checked as the trainer checks it, so a bad
        // value fails here and not after earlier stages have run.
        let mut methods: Vec<Method> = Vec::new();
        for m in &self.tasks.methods {
            methods.push(method_of(m).map_err(|e| at("tasks.methods", e.to_string()))?);
        }
        if let Some(s) = &self.sweep {
            let kinds = s.kinds();
            if kinds.is_empty() {
                return Err(at("sweep.kind", "missing: give `kind` or `kinds`".into()));
            }
            for k in &kinds {
                for &m in &s.sizes {
                    methods.push(
                        method_of(&format!("{k}:{m}")).map_err(|e| at("sweep", e.to_string()))?,
                    );
                }
            }
            for sh in &s.sharing {
                adalbert_model::Sharing::parse(sh)
                    .map_err(|e| at("sweep.sharing", e.to_string()))?;
            }
            if let Some(n) = s.seeds {
                if n == 0 || n > self.seeds.len() {
                    return Err(at(
                        "sweep.seeds",
                        format!(
                            "= {n}: must be in 1..={} (the number of seeds)",
                            self.seeds.len()
                        ),
                    ));
                }
            }
            if let Some(lr) = s.lr {
                let cfg = self.train.config(lr, 0);
                if let Err(adalbert_train::TrainError::Config { reason, .. }) = cfg.validate() {
                    return Err(at("sweep.lr", format!("= invalid value: {reason}")));
                }
            }
        }
        if let Some(g) = &self.train.lr_grid {
            for (k, v) in [
                ("full", &g.full),
                ("adapter", &g.adapter),
                ("head", &g.head),
            ] {
                let mut seen: Vec<f64> = Vec::new();
                for &lr in v {
                    if seen.contains(&lr) {
                        return Err(at(
                            &format!("train.lr_grid.{k}"),
                            format!("lists {lr} twice"),
                        ));
                    }
                    seen.push(lr);
                }
            }
        }
        for method in &methods {
            for lr in self.train.lrs_for(method) {
                let cfg = self.train.config(lr, 0);
                if let Err(adalbert_train::TrainError::Config { field, reason }) = cfg.validate() {
                    let key = TrainSection::key_of(field, method);
                    return Err(at(&key, format!("= invalid value: {reason}")));
                }
            }
        }
        if self.train.max_test == Some(0) {
            return Err(at("train.max_test", "= 0: leaves nothing to report".into()));
        }
        if let Some(c) = &self.compress {
            if !self.tasks.methods.contains(&c.method) {
                return Err(at(
                    "compress.method",
                    format!("`{}` is not one of tasks.methods", c.method),
                ));
            }
            if method_of(&c.method)? == Method::Full {
                return Err(at(
                    "compress.method",
                    "= full: a full fine-tuning bundle carries its own backbone; compress evaluates adapter and head bundles on the shared backbone".into(),
                ));
            }
            sweep::expand(&c.groups).map_err(|e| at("compress", crate::error::chain(&e)))?;
            if c.groups.iter().any(|g| g.recover_epochs > 0) {
                return Err(at(
                    "compress.recover_epochs",
                    "recovery training picks its epoch on the evaluated split, which is test in an experiment; use `train_on_compressed = true` (compress, then train with selection on dev) instead. `adalbert compress --sweep` still recovers on dev".into(),
                ));
            }
            if let (Some(lr), Ok(m)) = (c.lr, method_of(&c.method)) {
                if !self.train.lrs_for(&m).contains(&lr) {
                    return Err(at(
                        "compress.lr",
                        format!(
                            "= {lr}: not one of the learning rates trained for `{}`",
                            c.method
                        ),
                    ));
                }
            }
            if c.train_seeds == 0 || c.train_seeds > self.seeds.len() {
                return Err(at(
                    "compress.train_seeds",
                    format!(
                        "= {}: must be in 1..={} (the number of seeds)",
                        c.train_seeds,
                        self.seeds.len()
                    ),
                ));
            }
            if c.max_eval == Some(0) {
                return Err(at(
                    "compress.max_eval",
                    "= 0: leaves nothing to evaluate".into(),
                ));
            }
        }
        if let Some(s) = &self.simulate {
            s.validate().map_err(|(key, why)| at(&key, why))?;
        }
        adalbert_model::Sharing::parse(&self.train.sharing)
            .map_err(|e| at("train.sharing", e.to_string()))?;
        if self.train.pooling != "auto" {
            adalbert_model::Pooling::parse(&self.train.pooling)
                .map_err(|e| at("train.pooling", e.to_string()))?;
        }
        Ok(())
    }

    /// How GLUE's selection slices are cut.
    pub fn glue_selection(&self) -> adalbert_tasks::GlueSelection {
        adalbert_tasks::GlueSelection {
            fraction: self.glue_select_fraction,
            max: self.glue_select_max,
        }
    }

    /// Whether the experiment's tasks are GLUE's (validation refuses a mix with the offline
    /// suite).
    pub fn is_glue(&self) -> bool {
        self.all_tasks()
            .iter()
            .any(|t| adalbert_tasks::task_spec(t).is_ok_and(|s| s.is_glue()))
    }

    /// The GLUE files a study of `spec` reads, each named when missing: train, dev and the
    /// unlabeled test file (predicted for the submission), and AX's for `mnli`.
    fn check_glue_task(&self, spec: &adalbert_tasks::TaskSpec, path: &Path) -> Result<()> {
        use adalbert_tasks::glue::{glue_file, GlueTask};
        use adalbert_tasks::{Split, TaskSource};
        let at = |key: &str, why: String| ExperimentError::Config {
            origin: path.display().to_string(),
            key: key.into(),
            reason: why,
        };
        let name = &spec.name;
        let TaskSource::Glue(task) = spec.source else {
            return Ok(());
        };
        if task == GlueTask::Ax {
            return Err(at("tasks.names", "`ax` has no training data: GLUE's diagnostic set is predicted with the `mnli` model, so list `mnli` and AX.tsv is written next to MNLI-m.tsv".into()));
        }
        let dir = self.glue_dir.as_ref().ok_or_else(|| {
            at("glue_dir", format!("is required for the GLUE task `{name}`: the folder holding the GLUE task folders"))
        })?;
        if !dir.is_dir() {
            return Err(at("glue_dir", format!("= {}: not found. Download GLUE (e.g. with the HF datasets or the original download_glue_data.py script) and put the task folders (CoLA/, SST-2/, ..., diagnostic/) there", dir.display())));
        }
        let mut files: Vec<(GlueTask, Split)> = [Split::Train, Split::Dev, Split::Test]
            .into_iter()
            .map(|s| (task, s))
            .collect();
        if task == GlueTask::Mnli {
            files.push((GlueTask::Ax, Split::Test));
        }
        for (t, split) in files {
            let file = glue_file(t, dir, split).map_err(|e| at("glue_dir", e.to_string()))?;
            if !file.is_file() {
                // Named where the GLUE download puts it: <glue_dir>/<Folder>/<file>.
                let expected = match t.file_name(split) {
                    Some(f) => dir.join(t.folder_name()).join(f),
                    None => file,
                };
                return Err(at(
                    "glue_dir",
                    format!(
                        "{}: not found; the GLUE {} {split} file{} (download GLUE and put the {}/ folder under {})",
                        expected.display(),
                        t.name(),
                        if t == GlueTask::Ax { ", predicted with the `mnli` model for the submission" } else { "" },
                        t.folder_name(),
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every task the experiment trains.
    pub fn all_tasks(&self) -> Vec<String> {
        let mut v = self.tasks.names.clone();
        if let Some(s) = &self.sweep {
            for t in &s.tasks {
                if !v.contains(t) {
                    v.push(t.clone());
                }
            }
        }
        v
    }

    /// The data folder for a task: the GLUE root for GLUE names, else the offline suite.
    pub fn data_for(&self, task: &str) -> PathBuf {
        match adalbert_tasks::task_spec(task) {
            Ok(spec) if spec.is_glue() => self
                .glue_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("glue")),
            _ => self.data.clone(),
        }
    }
}

/// A training method: an adapter spec, `full` or `head`.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Adapter(adalbert_model::AdapterSpec),
    Full,
    Head,
}

pub fn method_of(s: &str) -> Result<Method> {
    Ok(match s {
        "full" => Method::Full,
        "head" => Method::Head,
        spec => Method::Adapter(adalbert_model::AdapterSpec::parse(spec)?),
    })
}

/// The first entry `xs` lists twice, as an error message.
fn check_unique(xs: &[String]) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for x in xs {
        if !seen.insert(x) {
            return Err(format!("lists `{x}` twice"));
        }
    }
    Ok(())
}
