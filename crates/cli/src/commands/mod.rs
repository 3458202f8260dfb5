//! One module per subcommand.
pub mod bench;
pub mod compress;
pub mod distill;
pub mod dse;
pub mod embed;
pub mod eval;
pub mod export;
pub mod import;
pub mod info;
pub mod predict;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod train;

/// The files a command reads from a model directory (its weights, config and tokenizer
/// files): an output must never be one of them.
pub fn model_inputs(model: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(model)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    if let Ok(w) = adalbert_model::checkpoint::weights_file(model) {
        files.push(w);
    }
    files
}

use adalbert_model::Kernels;

/// `--precision` of the inference commands: the number format of the backbone's products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// fp32 weights and products (adalbert's kernels or candle's ops, as `ADALBERT_KERNELS`
    /// and the CPU decide).
    Fp32,
    /// bf16 weights and products with fp32 accumulation: AMX-BF16, AVX-512 BF16, else the
    /// fp32 kernels on bf16-rounded weights.
    Bf16,
    /// int8 weights (per output channel) and activations (per row), i32 accumulation:
    /// AMX-INT8, AVX512-VNNI, AVX-VNNI or portable code.
    Int8,
}

impl Precision {
    /// The backbone kernels this precision asks for; says on stderr when int8 will run the
    /// portable kernel (no VNNI or AMX here), which is slower than the fp32 kernels.
    pub fn kernels(self) -> Kernels {
        if self == Precision::Int8 {
            use adalbert_model::exec::{inference_path, InferencePath, Int8Isa};
            if let InferencePath::Kernels {
                precision: adalbert_model::exec::Precision::Int8(Int8Isa::Portable),
                ..
            } = inference_path(Kernels::Int8)
            {
                eprintln!(
                    "note: --precision int8 runs the portable int8 kernel here (this CPU has no \
                     AVX512-VNNI, AVX-VNNI or AMX-INT8, or ADALBERT_KERNELS asks for it): \
                     expect it to be slower than fp32"
                );
            }
        }
        match self {
            Precision::Fp32 => Kernels::Auto,
            Precision::Bf16 => Kernels::Bf16,
            Precision::Int8 => Kernels::Int8,
        }
    }

    /// `fp32`, `bf16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

/// The options that make a task of the user's own data files, shared by `train`, `eval` and
/// `predict`; they map one to one onto [`adalbert_tasks::DataFiles`] (the same keys as an
/// experiment's `[[tasks.files]]` table), which reads and checks the files.
#[derive(clap::Args, Clone, Debug)]
pub struct DataFileArgs {
    /// Training examples: a CSV, TSV or JSON Lines file (instead of a registry task).
    #[arg(long)]
    pub train_file: Option<std::path::PathBuf>,
    /// Validation examples (the dev split: picks the epoch in `train`).
    #[arg(long)]
    pub validation_file: Option<std::path::PathBuf>,
    /// Test examples.
    #[arg(long)]
    pub test_file: Option<std::path::PathBuf>,
    /// csv, tsv or jsonl; default: each file's extension (.csv, .tsv, .jsonl).
    #[arg(long)]
    pub format: Option<adalbert_tasks::FileFormat>,
    /// Column (JSON key) of the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column of the second text, for a sentence-pair task.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Column of the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The classes, in this order (e.g. `neg,pos`); default: the sorted set found in the
    /// training file (integers in numeric order).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// classification or regression; default: decimal labels (`0.5`) make a regression
    /// task, integer or word labels classes (a mix of integers and decimals is refused).
    #[arg(long)]
    pub task_type: Option<adalbert_tasks::TaskType>,
}

impl DataFileArgs {
    /// Whether any data file was given.
    pub fn any_file(&self) -> bool {
        self.to_files(None).any_file()
    }

    /// These options as the tasks crate's description, with the task name `name`.
    pub fn to_files(&self, name: Option<String>) -> adalbert_tasks::DataFiles {
        adalbert_tasks::DataFiles {
            name,
            train_file: self.train_file.clone(),
            validation_file: self.validation_file.clone(),
            test_file: self.test_file.clone(),
            format: self.format,
            text_column: self.text_column.clone(),
            text_pair_column: self.text_pair_column.clone(),
            label_column: self.label_column.clone(),
            labels: self.labels.clone(),
            task_type: self.task_type,
        }
    }
}

/// The task kind a bundle records: its label names, or regression when it has none.
pub fn bundle_kind(meta: &adalbert_model::BundleMeta) -> adalbert_tasks::TaskKind {
    if meta.labels.is_empty() {
        adalbert_tasks::TaskKind::Regression
    } else {
        adalbert_tasks::TaskKind::Classification {
            labels: meta.labels.clone(),
        }
    }
}

/// The task a bundle is scored on when data files are given: the bundle's own name and
/// labels (so class indices mean what they meant in training). `--labels` / `--task-type`,
/// if given, must agree with the bundle.
pub fn bundle_file_task(
    meta: &adalbert_model::BundleMeta,
    data: &DataFileArgs,
) -> anyhow::Result<adalbert_tasks::FileTask> {
    let kind = bundle_kind(meta);
    if let Some(given) = &data.labels {
        let given: Vec<String> = given.iter().map(|l| l.trim().to_string()).collect();
        if given != meta.labels {
            anyhow::bail!(
                "--labels {} differs from the labels the bundle was trained with ({}); leave --labels out",
                given.join(","),
                if meta.labels.is_empty() { "none: regression".to_string() } else { meta.labels.join(",") }
            );
        }
    }
    let is_regression = kind == adalbert_tasks::TaskKind::Regression;
    if let Some(t) = data.task_type {
        if (t == adalbert_tasks::TaskType::Regression) != is_regression {
            anyhow::bail!(
                "--task-type {} differs from the bundle's task (a {})",
                if t == adalbert_tasks::TaskType::Regression {
                    "regression"
                } else {
                    "classification"
                },
                if is_regression {
                    "regression"
                } else {
                    "classification"
                }
            );
        }
    }
    Ok(data.to_files(None).with_kind(meta.task.clone(), kind))
}
