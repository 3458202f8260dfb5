//! One module per subcommand.
pub mod bench;
pub mod compress;
pub mod distill;
pub mod dse;
pub mod embed;
pub mod eval;
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
