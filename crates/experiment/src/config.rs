//! The experiment file: one TOML that reproduces a whole study (`configs/*.toml`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};
use crate::sweep::{self, Group};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    /// Backbone model directory (relative paths are relative to the working directory).
    pub model: PathBuf,
    /// Offline-suite data folder.
    #[serde(default = "default_data")]
    pub data: PathBuf,
    /// Folder holding the GLUE task folders (CoLA/, SST-2/, ...), for GLUE task names.
    #[serde(default)]
    pub glue_dir: Option<PathBuf>,
    /// Seed of the offline suite's train/dev/test split.
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    pub names: Vec<String>,
    /// Adapter specs (`houlsby:64`, ...) and the baselines `full` and `head`.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    pub tasks: Vec<String>,
    /// Adapter kind swept: houlsby, pfeiffer, parallel or lora.
    pub kind: String,
    pub sizes: Vec<usize>,
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
    /// Evaluate on the first N dev examples (default: `train.max_eval`).
    pub max_eval: Option<usize>,
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
    /// The peak learning rate of a method.
    pub fn lr_for(&self, method: &Method) -> f64 {
        match method {
            Method::Adapter(_) => self.lr_adapter,
            Method::Full => self.lr_full,
            Method::Head => self.lr_head,
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
            max_train_examples: self.max_train,
            max_eval_examples: self.max_eval,
            ..adalbert_train::TrainConfig::default()
        }
    }

    /// The key of this section a training setting comes from (`lr` depends on the method).
    fn key_of(field: &str, method: &Method) -> String {
        let key = match (field, method) {
            ("lr", Method::Adapter(_)) => "lr_adapter",
            ("lr", Method::Full) => "lr_full",
            ("lr", Method::Head) => "lr_head",
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
    /// and what was expected.
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
        let exp: Experiment = toml::from_str(text).map_err(|e| ExperimentError::Toml {
            what: "experiment file",
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        exp.validate(path)?;
        Ok(exp)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let at = |key: &str, why: String| ExperimentError::Config {
            origin: path.display().to_string(),
            key: key.into(),
            reason: why,
        };
        if !self.model.join("config.json").is_file() {
            return Err(at(
                "model",
                format!(
                    "= {}: no config.json there. Download the checkpoint (config.json, model.safetensors or pytorch_model.bin, tokenizer.json) from the Hugging Face hub into that folder, or run scripts/fetch-assets for assets/minilm",
                    self.model.display()
                ),
            ));
        }
        if self.seeds.is_empty() {
            return Err(at("seeds", "must list at least one seed".into()));
        }
        if self.tasks.names.is_empty() || self.tasks.methods.is_empty() {
            return Err(at("tasks", "needs at least one name and one method".into()));
        }
        check_unique(&self.tasks.names).map_err(|e| at("tasks.names", e))?;
        check_unique(&self.tasks.methods).map_err(|e| at("tasks.methods", e))?;
        for name in self.all_tasks() {
            let spec =
                adalbert_tasks::task_spec(&name).map_err(|e| at("tasks.names", e.to_string()))?;
            if spec.is_glue() {
                let dir = self.glue_dir.as_ref().ok_or_else(|| {
                    at("glue_dir", format!("is required for the GLUE task `{name}`: the folder holding the GLUE task folders"))
                })?;
                if !dir.is_dir() {
                    return Err(at("glue_dir", format!("= {}: not found. Download GLUE (e.g. with the HF datasets or the original download_glue_data.py script) and put the task folders there", dir.display())));
                }
            }
        }
        // Every value a training item will use, checked as the trainer checks it, so a bad
        // value fails here and not after earlier stages have run.
        let positions = adalbert_model::EncoderConfig::from_path(&self.model)
            .map_err(|e| at("model", e.to_string()))?
            .shape
            .max_position_embeddings;
        let mut methods: Vec<Method> = Vec::new();
        for m in &self.tasks.methods {
            methods.push(method_of(m).map_err(|e| at("tasks.methods", e.to_string()))?);
        }
        if let Some(s) = &self.sweep {
            for &m in &s.sizes {
                methods.push(
                    method_of(&format!("{}:{m}", s.kind))
                        .map_err(|e| at("sweep", e.to_string()))?,
                );
            }
        }
        for method in &methods {
            let cfg = self.train.config(self.train.lr_for(method), 0);
            if let Err(adalbert_train::TrainError::Config { field, reason }) = cfg.validate() {
                let key = TrainSection::key_of(field, method);
                return Err(at(&key, format!("= invalid value: {reason}")));
            }
        }
        if self.train.max_len > positions {
            return Err(at(
                "train.max_len",
                format!(
                    "= {}: more than the model's {positions} positions (max_position_embeddings in {})",
                    self.train.max_len,
                    self.model.join("config.json").display()
                ),
            ));
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
